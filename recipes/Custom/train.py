#!/usr/bin/env python3
"""Recipe: speech emotion recognition on any labelled corpus in a CSV file.

The IEMOCAP recipe's model and training (``EmotionBrain``, the lobes,
duration-bucketed batches, whole-set metrics, the gender and text overlays,
export) on a user's corpus; only the data preparation is this recipe's own
(``custom_prepare.py``). One run is one fold:

    python train.py hparams/train_wavlm_large.yaml --csv_file=corpus.csv --test_fold=1

``run_folds.sh`` runs every fold (and seeds), ``aggregate.py`` turns the run
folders into a table, ``python -m sser_lobes.export RUN_FOLDER OUT`` exports a
run for ``sser-predict``. Each run writes ``test_metrics.json`` /
``valid_metrics.json`` (whole-set WA, UA, macro-F1, confusion matrix; the
protocol, corpora and label maps in ``split_info``), ``*_predictions.csv``,
confusion-matrix PNGs, ``history.json`` and ``learning_curves.png``.

Authors
 * sser authors 2026
"""

import json
import sys
from pathlib import Path

from custom_prepare import (
    corpus_classes,
    count_folds,
    prepare_custom,
    validate_options,
)

from sser_lobes.dataio.files import file_sha256
from sser_lobes.dataio.pipelines import segment_audio_pipeline
from sser_lobes.errors import RecipeError
from sser_lobes.training.emotion_brain import (
    CLASS_WEIGHTINGS,
    SELECTION_METRICS,
    EmotionBrain,
    categorical_datasets,
    train_and_evaluate,
)
from sser_lobes.training.options import check_choice
from sser_lobes.training.preflight import check_model_options, run_recipe_main
from sser_lobes.training.recipe import setup_experiment

SPLITS = ("train", "valid", "test")


def dataio_prep(hparams):
    """The datasets of the manifests; audio read as segments of any file."""
    audio = segment_audio_pipeline(
        hparams["sample_rate"], hparams["ssl_encoder"].min_samples
    )
    return categorical_datasets(hparams, audio)


def split_options(hparams):
    """The hparams that define the split, as the preparation's arguments
    (checked by :func:`protocol_options`, used by :func:`prepare_data`)."""
    return dict(
        split_mode=hparams["split_mode"],
        num_folds=hparams["num_folds"],
        test_fold=hparams["test_fold"],
        valid_ratio=hparams["valid_ratio"],
        test_ratio=hparams["test_ratio"],
        valid_split=hparams["valid_split"],
        seed=hparams["split_seed"],
        emotions=hparams["emotions"],
        label_map=hparams["label_map"],
        test_label_map=hparams["test_label_map"],
        allow_overlap=hparams["allow_overlap"],
    )


def protocol_options(hparams):
    """The preparation's checked options; a bad one is a RecipeError."""
    try:
        return validate_options(**split_options(hparams))
    except ValueError as error:
        raise RecipeError(str(error)) from None


def default_fold(options, num_folds, test_csv):
    """Run-folder name of a fold.

    Example
    -------
    >>> default_fold({"split_mode": "speaker_kfold", "test_fold": 2}, 5, None)
    'fold2of5'
    >>> default_fold({"split_mode": "random", "seed": 7}, None, None)
    'random_seed7'
    >>> default_fold({"split_mode": "given"}, None, "/data/ravdess.csv")
    'cross_ravdess'
    """
    if test_csv:
        return f"cross_{Path(test_csv).stem}"
    if options["split_mode"] == "speaker_kfold":
        return f"fold{options['test_fold']}of{num_folds}"
    if options["split_mode"] == "random":
        return f"random_seed{options['seed']}"
    return "given"


def check_options(hparams):
    """Checks on the hparams preview, before the encoder is built.

    Reads the CSV's header and labels (not the audio): the classes size the
    classifier, the speakers the number of folds. Returns the derived
    overrides (``emotions``, ``corpus_name``, ``fold``) and the options that
    define the split (for the run folder's split guard).
    """
    check_model_options(hparams, SELECTION_METRICS)
    check_choice(hparams, "class_weighting", CLASS_WEIGHTINGS)
    check_choice(hparams, "class_balanced_sampling", (True, False))
    options = protocol_options(hparams)
    csv_file = hparams["csv_file"]
    test_csv = hparams["test_csv"]
    for name, path in (("csv_file", csv_file), ("test_csv", test_csv)):
        if path is not None and not Path(path).is_file():
            raise RecipeError(f"--{name}: {path}: corpus file not found")
    emotions = corpus_classes(csv_file, options["label_map"], options["emotions"])
    num_folds = None
    if options["split_mode"] == "speaker_kfold" and not test_csv:
        num_folds = count_folds(csv_file, options["num_folds"])
        if options["test_fold"] > num_folds:
            raise RecipeError(
                f"--test_fold={options['test_fold']}: {csv_file} has "
                f"{num_folds} folds (test_fold 1..{num_folds})"
            )
    derived = {"emotions": emotions}
    if hparams["corpus_name"] == "auto":
        derived["corpus_name"] = Path(csv_file).stem
    if hparams["fold"] == "auto":
        derived["fold"] = default_fold(options, num_folds, test_csv)
    split = {
        **options,
        "emotions": emotions,
        "csv_sha256": file_sha256(csv_file),
        "test_csv_sha256": file_sha256(test_csv) if test_csv else None,
    }
    return derived, split


def prepare_data(hparams, folder):
    """The preparation into ``folder`` (a staging copy of the run's manifest
    folder, :func:`~sser_lobes.training.recipe.setup_experiment`); returns
    the manifests."""
    prepare_custom(
        csv_file=hparams["csv_file"],
        save_folder=folder,
        test_csv=hparams["test_csv"],
        num_workers=hparams["num_prep_workers"],
        **split_options(hparams),
    )
    return [Path(folder) / f"{split}.json" for split in SPLITS]


def main(argv=None):
    """Run one fold: prepare, train, select on valid, evaluate valid and test."""
    hparams, run_opts = setup_experiment(
        sys.argv[1:] if argv is None else argv,
        script=__file__,
        check_options=check_options,
        prepare=prepare_data,
    )
    info_file = Path(hparams["manifest_folder"]) / "split_info.json"
    split_info = json.loads(info_file.read_text(encoding="utf-8"))
    datasets, _ = dataio_prep(hparams)
    return train_and_evaluate(EmotionBrain, hparams, run_opts, datasets, split_info)


if __name__ == "__main__":
    # A mistake in the options or the data: one line that names it.
    run_recipe_main(main)
