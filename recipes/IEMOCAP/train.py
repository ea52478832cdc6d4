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
import os
import sys
from pathlib import Path

import speechbrain as sb
import torch
from iemocap_prepare import find_iemocap_root, prepare_iemocap, validate_options
from speechbrain.utils.distributed import if_main_process, run_on_main

from sser_lobes.brain import SERBrain, write_json
from sser_lobes.feature_cache import setup_feature_cache
from sser_lobes.metrics import ClassificationStats
from sser_lobes.plots import plot_confusion_matrix
from sser_lobes.preflight import RecipeError, check_model_options, run_recipe_main
from sser_lobes.recipe import (
    audio_pipeline,
    categorical_label_encoder,
    check_manifest_labels,
    conditioning_items,
    finish_distributed,
    format_results_table,
    label_pipeline,
    make_loader_kwargs,
    require_entries,
    setup_experiment,
)

REPORTED_METRICS = ("WA", "UA", "macro_F1")
SELECTION_METRICS = ("WA", "UA", "macro_F1", "micro_F1")


class EmotionBrain(SERBrain):
    """Trains and evaluates an :class:`sser_lobes.EmotionModel` on 4 classes."""

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy in fp32 outside autocast; collects eval predictions."""
        logits = predictions["logits"]
        targets = batch.emo_encoded.data.squeeze(-1)
        with self.outside_autocast():
            loss = self.hparams.compute_cost(logits.float(), targets)
        if stage != sb.Stage.TRAIN:
            self.stats.append(batch.id, torch.softmax(logits.float(), dim=-1), targets)
        return loss + self.gender_loss(predictions, batch, stage)

    def on_stage_start(self, stage, epoch=None):
        """Sampler epoch; fresh whole-set statistics for evaluation stages."""
        super().on_stage_start(stage, epoch)
        if stage != sb.Stage.TRAIN:
            self.stats = ClassificationStats(self.hparams.emotions)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Whole-set metrics, LR annealing, checkpointing and reports."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        metrics = {**self.stats.summarize(), **self.gender_metrics()}
        reported = [k for k in (*REPORTED_METRICS, "gender_accuracy") if k in metrics]
        stats = {"loss": stage_loss, **{k: metrics[k] for k in reported}}
        stats["error_rate"] = 1.0 - metrics["WA"]

        if stage == sb.Stage.VALID:
            # NewBob on the validation error rate, as the reference recipe.
            lrs = self.anneal_learning_rates(stats["error_rate"])
            curves = {"loss": stage_loss, **{k: metrics[k] for k in reported}}
            self.end_of_validation(epoch, stats, curves, lrs)

        if stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {
                    "split": self.eval_split,
                    "epoch loaded": self.hparams.epoch_counter.current,
                },
                test_stats=stats,
            )
            self.last_eval_metrics = {**metrics, "loss": float(stage_loss)}
            if if_main_process():
                self._write_eval_outputs(metrics, stage_loss)

    def _write_eval_outputs(self, metrics, loss):
        """<split>_metrics.json, <split>_predictions.csv, confusion PNG."""
        out = Path(self.hparams.output_folder)
        split = self.eval_split
        write_json(
            out / f"{split}_metrics.json", self.run_record(split, loss, **metrics)
        )
        self.stats.write_predictions(out / f"{split}_predictions.csv")
        plot_confusion_matrix(
            metrics["confusion_matrix"],
            metrics["labels"],
            out / f"{split}_confusion_matrix.png",
            title=f"{self.hparams.experiment_name} {split} ({self.hparams.fold})",
        )


def dataio_prep(hparams):
    """Build the train / valid / test ``DynamicItemDataset`` s from the manifests.

    Returns
    -------
    datasets : dict
        ``{"train", "valid", "test"}`` -> DynamicItemDataset with outputs
        ``id``, ``sig``, ``emo_encoded``.
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Index order = ``hparams["emotions"]`` (saved in the save folder).
    """
    audio = audio_pipeline(hparams["sample_rate"], hparams["ssl_encoder"].min_samples)
    label_encoder = categorical_label_encoder(hparams["emotions"])
    labels = label_pipeline(label_encoder, key="emo")
    manifests = [hparams[f"{split}_annotation"] for split in ("train", "valid", "test")]
    conditioning, conditioning_keys = conditioning_items(hparams, manifests)

    datasets = {}
    for split in ("train", "valid", "test"):
        manifest = hparams[f"{split}_annotation"]
        require_entries(manifest, split)
        check_manifest_labels(manifest, hparams["emotions"], key="emo")
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=manifest,
            dynamic_items=[audio, labels, *conditioning],
            output_keys=["id", "sig", "emo_encoded", *conditioning_keys],
        )
    if if_main_process():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        label_encoder.save(os.path.join(hparams["save_folder"], "label_encoder.txt"))
    return datasets, label_encoder


def protocol_options(hparams):
    """The preparation's checked options; a bad one is a RecipeError."""
    try:
        return validate_options(
            split_mode=hparams["split_mode"],
            test_session=hparams["test_session"],
            test_speaker=hparams["test_speaker"],
            valid_ratio=hparams["valid_ratio"],
            seed=hparams["split_seed"],
            merge_exc_into_hap=hparams["merge_exc_into_hap"],
            emotions=tuple(hparams["emotions"]),
            sample_rate=hparams["sample_rate"],
        )
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


def prepare_data(hparams):
    """Run the IEMOCAP preparation (main process only) unless skip_prep."""
    if not hparams["skip_prep"]:
        run_on_main(
            prepare_iemocap,
            kwargs={
                "data_folder": hparams["data_folder"],
                "save_folder": hparams["manifest_folder"],
                "split_mode": hparams["split_mode"],
                "test_session": hparams["test_session"],
                "test_speaker": hparams["test_speaker"],
                "valid_ratio": hparams["valid_ratio"],
                "seed": hparams["split_seed"],
                "merge_exc_into_hap": hparams["merge_exc_into_hap"],
                "emotions": tuple(hparams["emotions"]),
                "sample_rate": hparams["sample_rate"],
            },
        )
    for split in ("train", "valid", "test"):
        if not Path(hparams[f"{split}_annotation"]).is_file():
            raise RecipeError(
                f"{hparams[f'{split}_annotation']}: manifest not found (with "
                "--skip_prep=True the manifests must already be there)"
            )
    info_file = Path(hparams["manifest_folder"]) / "split_info.json"
    if info_file.exists():
        return json.loads(info_file.read_text(encoding="utf-8"))
    return {"protocol": hparams["split_mode"], "speaker_independent": None}


def main(argv=None):
    """Run one fold: prepare, train, select on valid, evaluate valid and test."""
    hparams, run_opts, guard = setup_experiment(
        sys.argv[1:] if argv is None else argv,
        script=__file__,
        check_options=check_options,
    )
    split_info = prepare_data(hparams)
    # Never resume checkpoints trained on another split (or corpus).
    guard.check_manifests(
        [hparams[f"{split}_annotation"] for split in ("train", "valid", "test")],
        write=if_main_process(),
    )
    datasets, _ = dataio_prep(hparams)
    train_sampler, train_kwargs, eval_kwargs = make_loader_kwargs(
        hparams, datasets, ("valid", "test")
    )

    brain = EmotionBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.split_info = split_info
    # Outside DDP, Brain does not call set_epoch() on a batch sampler unless
    # it is its train_sampler; under DDP it wraps it and passes set_epoch on.
    brain.train_sampler = train_sampler
    # feature_cache: True: encoder outputs computed once, read every epoch.
    setup_feature_cache(hparams, datasets, brain)

    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=eval_kwargs["valid"],
    )

    results = {}
    for split in ("valid", "test"):
        brain.eval_split = split
        brain.evaluate(
            datasets[split],
            max_key=hparams["selection_metric"],
            test_loader_kwargs=eval_kwargs[split],
        )
        results[split] = brain.last_eval_metrics
    if if_main_process():
        print(f"\nResults ({split_info['protocol']}, fold {hparams['fold']}):")
        columns = [
            m for m in (*REPORTED_METRICS, "gender_accuracy") if m in results["test"]
        ]
        print(format_results_table(results, columns))
        print(f"Outputs in {hparams['output_folder']}")
    finish_distributed()
    return results


if __name__ == "__main__":
    # A mistake in the options or the data: one line that names it.
    run_recipe_main(main)
