#!/usr/bin/env python3
"""Recipe: MSP-Podcast v1.11 emotion recognition (Odyssey 2024 SER challenge).

Task 1, 8 categorical classes (A S H U F D C N), and Task 2, arousal /
valence / dominance regression, with an SSL encoder fine-tuned as in the
official challenge baseline (see the hparams files):

    python train.py hparams/train_wavlm_large.yaml --data_folder=/path/to/MSP-Podcast
    python train.py hparams/train_wavlm_large_attributes.yaml --data_folder=...

The checkpoint is selected on the whole Development set (macro-F1, or mean
CCC). After training, the selected model is evaluated on Development, Test1
and Test2 (``<split>_metrics.json``, ``<split>_predictions.csv``, confusion
matrix PNG) and writes the challenge files for the hidden Test3 set
(``test3_submission.csv`` and, for Task 1, ``test3_probabilities.csv``).

Authors
 * sser authors 2026
"""

import json
import logging
import sys
from collections import Counter
from pathlib import Path

import speechbrain as sb
import torch
from msp_podcast_prepare import (
    WAVEFORM_STATS_FILE,
    find_audio_folder,
    find_labels_file,
    find_msp_root,
    prepare_msp_podcast,
)
from speechbrain.utils.distributed import if_main_process

from sser_lobes.dataio.corpus_facts import MSP_PODCAST_CLASSES
from sser_lobes.dataio.pipelines import (
    CROP_MODES,
    audio_pipeline,
    categorical_label_encoder,
    check_manifest_labels,
    label_pipeline,
    make_loader_kwargs,
    read_manifest,
)
from sser_lobes.errors import RecipeError
from sser_lobes.evaluation.metrics import ClassificationStats
from sser_lobes.evaluation.plots import plot_confusion_matrix
from sser_lobes.evaluation.regression_metrics import RegressionStats
from sser_lobes.training.brain import SERBrain, write_json
from sser_lobes.training.emotion_brain import selected_checkpoint, training_weights
from sser_lobes.training.feature_cache import setup_feature_cache
from sser_lobes.training.options import check_choice
from sser_lobes.training.preflight import check_model_options, run_recipe_main
from sser_lobes.training.recipe import (
    conditioning_items,
    finish_distributed,
    format_results_table,
    setup_experiment,
    task_identity,
    use_cuda_precision,
)
from sser_lobes.training.reliability import finish_reliability
from sser_lobes.training.targets import (
    categorical_manifest_data,
    soft_loss,
    soft_targets,
    vote_items,
)

logger = logging.getLogger(__name__)

CATEGORICAL_METRICS = ("macro_F1", "micro_F1", "UA", "WA")
# Corpus column of each attribute, for the Test3 submission file.
ATTRIBUTE_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
ATTRIBUTE_RANGE = (1.0, 7.0)  # MSP-Podcast attribute scale


def to_unit(values):
    """Map attributes from the 1-7 scale to [0, 1] (training targets)."""
    low, high = ATTRIBUTE_RANGE
    return (values - low) / (high - low)


def from_unit(values):
    """Map model outputs from [0, 1] back to the corpus' 1-7 scale."""
    low, high = ATTRIBUTE_RANGE
    return values * (high - low) + low


class MSPBrain(SERBrain):
    """Task 1 (classification) or Task 2 (attributes), set by ``hparams.task``."""

    @property
    def categorical(self):
        return self.hparams.task == "categorical"

    def compute_objectives(self, predictions, batch, stage):
        """Loss in fp32 outside autocast; collects whole-set predictions."""
        # logits (Task 1) or attributes in (0, 1) (Task 2, sigmoid head)
        outputs = predictions["logits"].float()
        labelled = stage == sb.Stage.TRAIN or self.eval_labelled
        if self.categorical:
            scores = torch.softmax(outputs, dim=-1)
            targets = batch.emo_encoded.data.squeeze(-1) if labelled else None
        else:
            scores = from_unit(outputs)
            targets = batch.attributes.data if labelled else None
        if stage != sb.Stage.TRAIN:
            shown = (
                None
                if targets is None
                else (targets if self.categorical else from_unit(targets))
            )
            self.stats.append(batch.id, scores, shown)
        if targets is None:
            return torch.zeros((), device=outputs.device)
        if self.categorical and stage != sb.Stage.TRAIN:
            self.collect_outputs(batch, outputs, targets)
        if self.categorical:
            loss = self.classification_loss(
                outputs, batch, lambda x: self.loss_fn(x, targets)
            )
        else:
            with self.outside_autocast():
                loss = self.loss_fn(outputs, targets)
        return loss + self.gender_loss(predictions, batch, stage)

    def on_stage_start(self, stage, epoch=None):
        """Sampler epoch; fresh whole-set statistics for evaluation stages."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.VALID:
            self.eval_labelled = True
        if stage != sb.Stage.TRAIN:
            if self.categorical:
                self.stats = ClassificationStats(self.hparams.emotions)
            else:
                self.stats = RegressionStats(self.hparams.attributes)

    def summarize(self):
        """Whole-set metrics as a flat dict of floats (checkpoint meta)."""
        metrics = {**self.stats.summarize(), **self.gender_metrics()}
        if self.categorical:
            flat = {k: metrics[k] for k in CATEGORICAL_METRICS}
        else:
            flat = {f"CCC_{name}": value for name, value in metrics["CCC"].items()}
            flat["CCC_mean"] = metrics["CCC_mean"]
        if "gender_accuracy" in metrics:
            flat["gender_accuracy"] = metrics["gender_accuracy"]
        return metrics, flat

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Metrics on the whole set, checkpointing, reports and submissions."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        if stage == sb.Stage.TEST and not self.eval_labelled:
            if if_main_process():
                self._write_submission()
            return
        metrics, flat = self.summarize()
        stats = {"loss": stage_loss, **flat}
        if stage == sb.Stage.VALID:
            lrs = self.anneal_learning_rates(1.0 - flat[self.hparams.selection_metric])
            self.end_of_validation(epoch, stats, stats, lrs)
        else:
            self.hparams.train_logger.log_stats(
                {
                    "split": self.eval_split,
                    "epoch loaded": self.hparams.epoch_counter.current,
                },
                test_stats=stats,
            )
            self.last_eval_metrics = {**flat, "n": metrics["n"]}
            if if_main_process():
                self._write_eval_outputs(metrics, flat, stage_loss)

    def _write_eval_outputs(self, metrics, flat, loss):
        """<split>_metrics.json, <split>_predictions.csv (+ confusion PNG)."""
        out = Path(self.hparams.output_folder)
        split = self.eval_split
        record = self.run_record(split, loss, task=self.hparams.task, **flat)
        record.update(metrics)
        write_json(out / f"{split}_metrics.json", record)
        self.stats.write_predictions(out / f"{split}_predictions.csv")
        if self.categorical:
            plot_confusion_matrix(
                metrics["confusion_matrix"],
                metrics["labels"],
                out / f"{split}_confusion_matrix.png",
                title=f"{self.hparams.experiment_name} {split}",
            )

    def _write_submission(self):
        """Challenge files for an unlabelled split (Test3)."""
        out = Path(self.hparams.output_folder)
        split = self.eval_split
        if self.categorical:
            self.stats.write_submission(out, split)
        else:
            columns = [ATTRIBUTE_COLUMNS[n] for n in self.hparams.attributes]
            self.stats.write_submission(out, split, columns, clip=ATTRIBUTE_RANGE)


def manifest_path(hparams, split):
    """The manifest written by the preparation for a split name."""
    return Path(hparams["manifest_folder"]) / f"{split}.json"


def dataio_prep(hparams):
    """Datasets of every split, with the task's targets.

    Task 1 keeps the entries with a class (O and X have none; with
    ``targets: soft`` and ``use_no_agreement`` > 0 their votes train too);
    Task 2 keeps the entries with the requested attributes. Training crops to
    ``train_crop_seconds`` (``train_crop``: the first or a random window);
    evaluation to the first ``eval_crop_seconds`` (null: whole utterances).

    Returns
    -------
    dict
        Split name -> DynamicItemDataset (``train`` plus ``eval_splits`` and
        ``prediction_splits``).
    """
    min_samples = hparams["ssl_encoder"].min_samples
    train_audio = audio_pipeline(
        hparams["sample_rate"],
        min_samples,
        crop_seconds=hparams["train_crop_seconds"],
        crop=hparams["train_crop"],
    )
    eval_audio = audio_pipeline(
        hparams["sample_rate"],
        min_samples,
        crop_seconds=hparams["eval_crop_seconds"],
        crop="first",
    )
    categorical = hparams["task"] == "categorical"
    names = hparams["attributes"]

    if categorical:
        encoder = categorical_label_encoder(hparams["emotions"])
        targets = label_pipeline(encoder, key="emo")
        target_key, keep = "emo_encoded", {"emo": lambda emo: emo is not None}
    else:

        @sb.utils.data_pipeline.takes(*names)
        @sb.utils.data_pipeline.provides("attributes")
        def targets(*values):
            return to_unit(torch.tensor(values, dtype=torch.float32))

        target_key = "attributes"
        keep = {name: (lambda value: value is not None) for name in names}

    datasets = {}
    labelled = ["train", *hparams["eval_splits"]]
    all_splits = labelled + list(hparams["prediction_splits"])
    conditioning, conditioning_keys = conditioning_items(
        hparams, [manifest_path(hparams, split) for split in all_splits]
    )
    votes, vote_keys = [], []
    if categorical:
        votes, vote_keys = vote_items(
            hparams, [manifest_path(hparams, split) for split in labelled]
        )
    for split in all_splits:
        path = manifest_path(hparams, split)
        is_labelled = split in labelled
        if is_labelled and categorical:
            check_manifest_labels(path, hparams["emotions"], allow_missing=True)
        if not read_manifest(path):
            _empty_split(hparams, split, f"{path} lists no utterance")
            continue
        dataset = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=path,
            dynamic_items=[train_audio if split == "train" else eval_audio]
            + ([targets, *votes] if is_labelled else [])
            + conditioning,
            output_keys=["id", "sig"]
            + ([target_key, *vote_keys] if is_labelled else [])
            + conditioning_keys,
        )
        if is_labelled and categorical:
            kept = categorical_manifest_data(
                path, hparams["emotions"], split == "train", hparams
            )
            dataset = dataset.filtered_sorted(key_test={"id": kept.__contains__})
        elif is_labelled:
            dataset = dataset.filtered_sorted(key_test=keep)
            if len(dataset) == 0:
                wanted = "class" if categorical else "attributes"
                _empty_split(
                    hparams,
                    split,
                    f"{path} has no utterance with the {wanted} of task "
                    f"{hparams['task']!r}",
                )
                continue
        datasets[split] = dataset
    if categorical and if_main_process():
        Path(hparams["save_folder"]).mkdir(parents=True, exist_ok=True)
        encoder.save(str(Path(hparams["save_folder"]) / "label_encoder.txt"))
    return datasets


def _empty_split(hparams, split, reason):
    """An empty training or validation split stops the run; an empty
    evaluation split (e.g. a release whose Partitions.txt lists no Test2
    file) is skipped with a warning."""
    if split in ("train", hparams["valid_split"]):
        role = "training" if split == "train" else "validation (model selection)"
        raise RecipeError(
            f"the {split} split is empty: {reason}. The {role} split must hold "
            "utterances; check Partitions.txt and the labels file of --data_folder"
        )
    logger.warning("Skipping the %s split: %s.", split, reason)
    print(f"warning: skipping the {split} split: {reason}", file=sys.stderr)


def categorical_weights(hparams, datasets):
    """Class weights of the loss and sampling weights (Task 1 only)."""
    if hparams["task"] != "categorical":
        return None, None
    return training_weights(hparams, datasets, manifest_path(hparams, "train"))


def run_splits(hparams):
    """The manifest names of the run: train, the evaluation and prediction splits."""
    return ["train", *hparams["eval_splits"], *hparams["prediction_splits"]]


def prepare_data(hparams, folder):
    """The MSP-Podcast preparation into ``folder`` (unless skip_prep; a
    staging copy of the run's manifest folder,
    :func:`~sser_lobes.training.recipe.setup_experiment`), then the check
    that Train holds every class of Task 1; returns the manifests."""
    if not hparams["skip_prep"]:
        prepare_msp_podcast(
            data_folder=hparams["data_folder"],
            save_folder=folder,
            splits=tuple(SPLIT_NAMES[s] for s in run_splits(hparams)),
            emotions=tuple(hparams["emotions"]),
            sample_rate=hparams["sample_rate"],
            num_workers=hparams["header_workers"],
        )
    manifests = [Path(folder) / f"{split}.json" for split in run_splits(hparams)]
    for path in manifests:
        if not path.is_file():
            raise RecipeError(
                f"{Path(hparams['manifest_folder']) / path.name}: manifest not found "
                "(with --skip_prep=True the manifests must already be there)"
            )
    if hparams["task"] == "categorical":
        check_train_classes(hparams, manifests[0])
    return manifests


def check_train_classes(hparams, train_manifest):
    """One line naming the classes of ``emotions`` that Train lacks.

    A release (or subset) without, e.g., Contempt in Train cannot train the
    8-class task: the class weights divide by its count and the head could
    never learn it. The line names the absent classes by letter and name,
    and the ``--emotions`` of the classes Train has.
    """
    counts = Counter(
        entry.get("emo") for entry in read_manifest(train_manifest).values()
    )
    emotions = list(hparams["emotions"])
    absent = [c for c in emotions if not counts[c]]
    present = [c for c in emotions if counts[c]]
    if absent and present:  # (no class at all: an empty split, reported later)
        named = ", ".join(f"{c} ({MSP_PODCAST_CLASSES.get(c, '?')})" for c in absent)
        raise RecipeError(
            f"the Train split of {hparams['data_folder']} has no utterance of "
            f"class(es) {named}, so the {len(emotions)}-class task cannot learn "
            f"them; train on the classes it has with --emotions=[{','.join(present)}]"
        )


def set_global_waveform_stats(hparams):
    """Give the encoder the Train audio statistics of ``normalize_waveform:
    global`` (computed once by the preparation, for this task's utterances).
    """
    encoder = hparams["ssl_encoder"]
    if encoder.normalize_waveform != "global":
        return
    path = Path(hparams["manifest_folder"]) / WAVEFORM_STATS_FILE
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))[hparams["task"]]
    except (OSError, ValueError, KeyError) as error:
        raise RecipeError(
            f"{path}: cannot read the Train waveform statistics of "
            f"normalize_waveform: global ({error}); run the preparation (without "
            "--skip_prep) or use --normalize_waveform=utterance"
        ) from None
    if not stats:
        raise RecipeError(f"{path}: no {hparams['task']} training utterance")
    encoder.set_waveform_stats(stats["mean"], stats["std"], stats["samples"])


def check_options(hparams):
    """Checks on the hparams preview, before the encoder is built.

    Returns no derived override, and the options that define the split (for
    the run folder's split guard).
    """
    check_choice(hparams, "task", ("categorical", "attributes"))
    if hparams["task"] == "categorical":
        metrics = CATEGORICAL_METRICS
    else:
        metrics = ("CCC_mean", *(f"CCC_{a}" for a in hparams["attributes"]))
    check_model_options(hparams, metrics, global_waveform_norm=True)
    for key in ("eval_splits", "prediction_splits"):
        unknown = [s for s in hparams[key] if s not in SPLIT_NAMES]
        if unknown or "train" in hparams[key]:
            raise RecipeError(
                f"--{key}: unknown or misplaced split(s) {unknown or ['train']}; "
                f"choose among {', '.join(s for s in SPLIT_NAMES if s != 'train')}"
            )
    if hparams["valid_split"] not in hparams["eval_splits"]:
        raise RecipeError(
            f"--valid_split={hparams['valid_split']} must be one of the eval_splits "
            f"{list(hparams['eval_splits'])}"
        )
    check_choice(hparams, "class_weighting", ("inverse_frequency", "none"))
    check_choice(hparams, "train_crop", CROP_MODES)
    if not hparams["skip_prep"]:
        root = find_msp_root(hparams["data_folder"])
        find_labels_file(root)
        find_audio_folder(root)
        if not (root / "Partitions.txt").is_file():
            raise RecipeError(f"{root / 'Partitions.txt'}: file not found")
    split = {
        "splits": run_splits(hparams),
        "sample_rate": hparams["sample_rate"],
        "task": hparams["task"],
    }
    if hparams["task"] == "categorical":
        split["emotions"] = list(hparams["emotions"])
    else:
        split["attributes"] = list(hparams["attributes"])
    return {}, split


# Manifest name -> the corpus' Split_Set name.
SPLIT_NAMES = {
    "train": "Train",
    "development": "Development",
    "test1": "Test1",
    "test2": "Test2",
    "test3": "Test3",
}


def main(argv=None):
    """Prepare, train, select on Development, evaluate and write submissions."""
    hparams, run_opts = setup_experiment(
        sys.argv[1:] if argv is None else argv,
        script=__file__,
        check_options=check_options,
        prepare=prepare_data,
    )
    datasets = dataio_prep(hparams)
    set_global_waveform_stats(hparams)
    loss_weight, sampling = categorical_weights(hparams, datasets)
    eval_splits = [
        split
        for split in (*hparams["eval_splits"], *hparams["prediction_splits"])
        if split in datasets
    ]
    train_sampler, train_kwargs, eval_kwargs = make_loader_kwargs(
        hparams, datasets, eval_splits, train_weights=sampling
    )

    use_cuda_precision(hparams, run_opts)
    brain = MSPBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if hparams["task"] == "categorical":
        brain.loss_fn = hparams["compute_cost"](weight=loss_weight)
        if soft_targets(hparams):
            brain.soft_loss = soft_loss(hparams, loss_weight)
    else:
        brain.loss_fn = hparams["compute_cost"]
    brain.split_info = {
        "protocol": "MSP-Podcast v1.11 official partitions (speaker-independent)",
        "speaker_independent": True,
        "num_folds": None,
    }
    brain.task_identity = task_identity(
        hparams,
        brain.split_info,
        [manifest_path(hparams, split) for split in run_splits(hparams)],
    )
    brain.train_sampler = train_sampler
    # feature_cache: True: encoder outputs computed once, read every epoch.
    setup_feature_cache(hparams, datasets, brain)
    valid = hparams["valid_split"]
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets[valid],
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=eval_kwargs[valid],
    )

    results = {}
    outputs = {}
    for split in eval_splits:
        brain.eval_split = split
        brain.eval_labelled = split in hparams["eval_splits"]
        brain.evaluate(
            datasets[split],
            max_key=hparams["selection_metric"],
            test_loader_kwargs=eval_kwargs[split],
        )
        if brain.eval_labelled:
            results[split] = brain.last_eval_metrics
            outputs[split] = brain.eval_outputs
    lines = []
    if if_main_process() and hparams["task"] == "categorical":
        lines = finish_reliability(
            hparams,
            outputs,
            {split: manifest_path(hparams, split) for split in outputs},
            hparams["valid_split"],
            checkpoint=selected_checkpoint(brain),
        )
    if if_main_process():
        print(f"\nResults ({hparams['experiment_name']}):")
        gender = ["gender_accuracy"] if brain.uses_gender else []
        if hparams["task"] == "categorical":
            columns = [*CATEGORICAL_METRICS, *gender]
            print(format_results_table(results, columns))
        else:
            columns = [f"CCC_{n}" for n in hparams["attributes"]] + ["CCC_mean"]
            print(format_results_table(results, columns + gender, percent=False))
        if lines:
            print("\n".join(lines))
        print(f"Outputs in {hparams['output_folder']}")
    finish_distributed()
    return results


if __name__ == "__main__":
    # A mistake in the options or the data: one line that names it.
    run_recipe_main(main)
