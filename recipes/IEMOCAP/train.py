#!/usr/bin/env python3
"""Recipe: 4-class speech emotion recognition on IEMOCAP with an SSL encoder.

Fine-tunes wav2vec 2.0 / HuBERT / WavLM (frozen, partial or entire) with a
pooling layer and a classification head, as in Wang et al. 2021 (system A of
the project brief). One run is one fold of the chosen protocol:

    python train.py hparams/train_wavlm_large.yaml \
        --data_folder=/path/to/IEMOCAP_full_release --test_session=3

``run_loso.sh`` loops over the five sessions (and seeds), ``aggregate.py``
turns the run folders into a table. Each run writes, in its output folder,
``test_metrics.json`` / ``valid_metrics.json`` (whole-set WA, UA, macro-F1,
confusion matrix), ``*_predictions.csv`` (per utterance), confusion-matrix
PNGs, ``history.json`` and ``learning_curves.png``.

Authors
 * sser authors 2026
"""

import json
import sys
from pathlib import Path

from iemocap_prepare import find_iemocap_root, prepare_iemocap, validate_options

from sser_lobes.errors import RecipeError
from sser_lobes.training.emotion_brain import (
    SELECTION_METRICS,
    EmotionBrain,
    categorical_datasets,
    train_and_evaluate,
)
from sser_lobes.training.preflight import check_model_options, run_recipe_main
from sser_lobes.training.recipe import setup_experiment

SPLITS = ("train", "valid", "test")


def dataio_prep(hparams):
    """The train / valid / test datasets of the manifests (16 kHz mono files)."""
    return categorical_datasets(hparams)


def split_options(hparams):
    """The hparams that define the split and the labels, as the preparation's
    arguments (checked by :func:`protocol_options`, used by
    :func:`prepare_data`)."""
    return dict(
        split_mode=hparams["split_mode"],
        test_session=hparams["test_session"],
        test_speaker=hparams["test_speaker"],
        valid_ratio=hparams["valid_ratio"],
        seed=hparams["split_seed"],
        merge_exc_into_hap=hparams["merge_exc_into_hap"],
        emotions=tuple(hparams["emotions"]),
        sample_rate=hparams["sample_rate"],
    )


def protocol_options(hparams):
    """The preparation's checked options; a bad one is a RecipeError."""
    try:
        return validate_options(**split_options(hparams))
    except ValueError as error:
        raise RecipeError(str(error)) from None


def default_fold(options):
    """Run-folder name of a fold: session<N>, the test speaker, or the seed.

    Example
    -------
    >>> default_fold({"split_mode": "lospk", "test_speaker": "Ses01F"})
    'Ses01F'
    >>> default_fold({"split_mode": "random", "seed": 7})
    'random_seed7'
    """
    if options["split_mode"] == "lospk":
        return options["test_speaker"]
    if options["split_mode"] == "random":
        return f"random_seed{options['seed']}"
    return f"session{options['test_session']}"


def check_options(hparams):
    """Checks on the hparams preview, before the encoder is built.

    Returns the derived overrides (the fold name when ``fold: auto``) and the
    options that define the split (for the run folder's split guard).
    """
    check_model_options(hparams, SELECTION_METRICS)
    options = protocol_options(hparams)
    if not hparams["skip_prep"]:
        find_iemocap_root(hparams["data_folder"])
    derived = {}
    if hparams["fold"] == "auto":
        derived["fold"] = default_fold(options)
    split = dict(options)
    if split["split_mode"] == "random":
        split["test_session"] = None  # not used by the random split
    return derived, split


def prepare_data(hparams, folder):
    """The IEMOCAP preparation into ``folder`` (unless skip_prep): the
    manifests it wrote (a staging copy of the run's manifest folder,
    :func:`~sser_lobes.training.recipe.setup_experiment`)."""
    if not hparams["skip_prep"]:
        prepare_iemocap(
            data_folder=hparams["data_folder"],
            save_folder=folder,
            **split_options(hparams),
        )
    manifests = [Path(folder) / f"{split}.json" for split in SPLITS]
    for path in manifests:
        if not path.is_file():
            raise RecipeError(
                f"{Path(hparams['manifest_folder']) / path.name}: manifest not found "
                "(with --skip_prep=True the manifests must already be there)"
            )
    return manifests


def read_split_info(hparams):
    """The preparation's split_info.json (a minimal one without it)."""
    info_file = Path(hparams["manifest_folder"]) / "split_info.json"
    if info_file.exists():
        return json.loads(info_file.read_text(encoding="utf-8"))
    return {"protocol": hparams["split_mode"], "speaker_independent": None}


def main(argv=None):
    """Run one fold: prepare, train, select on valid, evaluate valid and test."""
    hparams, run_opts = setup_experiment(
        sys.argv[1:] if argv is None else argv,
        script=__file__,
        check_options=check_options,
        prepare=prepare_data,
    )
    datasets, _ = dataio_prep(hparams)
    return train_and_evaluate(
        EmotionBrain, hparams, run_opts, datasets, read_split_info(hparams)
    )


if __name__ == "__main__":
    # A mistake in the options or the data: one line that names it.
    run_recipe_main(main)
