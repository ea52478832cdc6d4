"""The categorical emotion recipe's ``Brain`` and datasets, shared by recipes.

The IEMOCAP recipe and the generic CSV recipe (``recipes/Custom``) train the
same model the same way; only their data preparation differs. This module
holds what they share: :class:`EmotionBrain` (cross-entropy on the majority
labels or on the annotators' votes, whole-set metrics at every evaluation,
NewBob annealing, metrics files, confusion matrices), :func:`categorical_datasets`
(the datasets of the three manifests) and :func:`train_and_evaluate`, which
ends with the calibration and the reliability reports
(:mod:`sser_lobes.training.reliability`).

Authors
 * sser authors 2026
"""

import os
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from sser_lobes.dataio.batching import class_balanced_weights
from sser_lobes.dataio.pipelines import (
    audio_pipeline,
    categorical_label_encoder,
    label_pipeline,
    make_loader_kwargs,
    read_manifest,
    require_entries,
)
from sser_lobes.errors import ManifestError
from sser_lobes.evaluation.metrics import ClassificationStats
from sser_lobes.evaluation.plots import plot_confusion_matrix
from sser_lobes.nnet.losses import class_weights, labels_counts_from_manifest
from sser_lobes.training.brain import SERBrain, write_json
from sser_lobes.training.feature_cache import setup_feature_cache
from sser_lobes.training.recipe import (
    conditioning_items,
    finish_distributed,
    format_results_table,
    task_identity,
)
from sser_lobes.training.reliability import finish_reliability
from sser_lobes.training.targets import (
    categorical_manifest_data,
    soft_loss,
    soft_targets,
    vote_items,
)

REPORTED_METRICS = ("WA", "UA", "macro_F1")
SELECTION_METRICS = ("WA", "UA", "macro_F1", "micro_F1")


class EmotionBrain(SERBrain):
    """Trains and evaluates an :class:`sser_lobes.EmotionModel` on classes.

    ``class_weight`` (a tensor, set by :func:`train_and_evaluate` when
    ``class_weighting`` asks for it) weights the cross-entropy, and
    ``soft_loss`` replaces it with ``targets: soft``.
    """

    class_weight = None

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy in fp32 outside autocast; collects eval predictions."""
        logits = predictions["logits"]
        targets = batch.emo_encoded.data.squeeze(-1)
        loss = self.classification_loss(
            logits,
            batch,
            lambda x: self.hparams.compute_cost(x, targets, weight=self.class_weight),
        )
        if stage != sb.Stage.TRAIN:
            self.stats.append(batch.id, torch.softmax(logits.float(), dim=-1), targets)
            self.collect_outputs(batch, logits, targets)
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


def categorical_datasets(hparams, audio=None):
    """Build the train / valid / test ``DynamicItemDataset`` s from the manifests.

    Arguments
    ---------
    hparams : dict
        With ``emotions``, ``sample_rate``, ``ssl_encoder``, ``save_folder``
        and ``<split>_annotation`` (plus the gender / text overlay keys).
    audio : DynamicItem, optional
        The ``sig`` item (default: :func:`~sser_lobes.dataio.pipelines.audio_pipeline`,
        16 kHz mono files; the generic recipe reads segments of any file).

    Returns
    -------
    datasets : dict
        ``{"train", "valid", "test"}`` -> DynamicItemDataset with outputs
        ``id``, ``sig``, ``emo_encoded`` (and ``emo_target``, ``has_votes``,
        ``target_weight`` when the manifests carry annotator votes). The
        utterances without a label (a corpus' "no agreement" ones, kept in
        the manifests with their votes) are left out, except from training
        with ``targets: soft`` and ``use_no_agreement`` > 0
        (:func:`~sser_lobes.training.targets.categorical_manifest_data`).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Index order = ``hparams["emotions"]`` (saved in the save folder).
    """
    if audio is None:
        audio = audio_pipeline(
            hparams["sample_rate"], hparams["ssl_encoder"].min_samples
        )
    label_encoder = categorical_label_encoder(hparams["emotions"])
    labels = label_pipeline(label_encoder, key="emo")
    manifests = [hparams[f"{split}_annotation"] for split in ("train", "valid", "test")]
    conditioning, conditioning_keys = conditioning_items(hparams, manifests)
    votes, vote_keys = vote_items(hparams, manifests)

    datasets = {}
    for split in ("train", "valid", "test"):
        manifest = hparams[f"{split}_annotation"]
        require_entries(manifest, split)
        kept = categorical_manifest_data(
            manifest, hparams["emotions"], split == "train", hparams
        )
        if not kept:
            raise ManifestError(
                f"the {split} split is empty: {manifest} lists no utterance of the "
                f"classes {list(hparams['emotions'])}"
            )
        dataset = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=manifest,
            dynamic_items=[audio, labels, *conditioning, *votes],
            output_keys=["id", "sig", "emo_encoded", *conditioning_keys, *vote_keys],
        )
        if len(kept) < len(read_manifest(manifest)):
            dataset = dataset.filtered_sorted(key_test={"id": kept.__contains__})
        datasets[split] = dataset
    if if_main_process():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        label_encoder.save(os.path.join(hparams["save_folder"], "label_encoder.txt"))
    return datasets, label_encoder


def selected_checkpoint(brain):
    """The folder name of the checkpoint the evaluations loaded (or None)."""
    checkpoint = brain.checkpointer.find_checkpoint(
        max_key=brain.hparams.selection_metric
    )
    return None if checkpoint is None else checkpoint.path.name


CLASS_WEIGHTINGS = ("inverse_frequency", "none")


def training_weights(hparams, datasets, train_manifest):
    """Class weights of the loss and per-utterance sampling weights.

    Arguments
    ---------
    hparams : dict
        ``emotions``; ``class_weighting`` (``inverse_frequency``: ``w_c = N /
        (C count_c)``, the Odyssey 2024 baseline's; ``none``) and
        ``class_balanced_sampling`` (draw training utterances with
        probability ``1 / count(class)``). A recipe without these keys
        (IEMOCAP, as its reference) uses neither.
    datasets : dict
        With the ``train`` dataset (its ``emo`` values).
    train_manifest : str
        The training manifest (its class counts).

    Returns
    -------
    loss_weight : list of float or None
    sampling : numpy.ndarray or None
    """
    weighting = hparams.get("class_weighting", "none")
    if weighting not in CLASS_WEIGHTINGS:
        raise ValueError(
            f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, got "
            f"{weighting!r}."
        )
    loss_weight = None
    if weighting == "inverse_frequency":
        counts = labels_counts_from_manifest(train_manifest, hparams["emotions"])
        loss_weight = class_weights(counts)
    sampling = None
    if hparams.get("class_balanced_sampling", False):
        with datasets["train"].output_keys_as(["emo"]):
            sampling = class_balanced_weights(
                [item["emo"] for item in datasets["train"]]
            )
    return loss_weight, sampling


def train_and_evaluate(brain_class, hparams, run_opts, datasets, split_info):
    """Train on ``train``, select on ``valid``, evaluate ``valid`` and ``test``.

    Arguments
    ---------
    brain_class : type
        :class:`EmotionBrain` or a subclass.
    hparams, run_opts : dict
        As given by :func:`~sser_lobes.training.recipe.setup_experiment`.
    datasets : dict
        ``{"train", "valid", "test"}`` datasets.
    split_info : dict
        The preparation's ``split_info.json`` (recorded in the metrics files).

    Returns
    -------
    dict
        ``{"valid": metrics, "test": metrics}`` of the selected checkpoint.
    """
    loss_weight, sampling = training_weights(
        hparams, datasets, hparams["train_annotation"]
    )
    train_sampler, train_kwargs, eval_kwargs = make_loader_kwargs(
        hparams, datasets, ("valid", "test"), train_weights=sampling
    )
    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.split_info = split_info
    brain.task_identity = task_identity(
        hparams,
        split_info,
        [hparams[f"{split}_annotation"] for split in ("train", "valid", "test")],
    )
    if loss_weight is not None:
        brain.class_weight = torch.as_tensor(loss_weight, dtype=torch.float32).to(
            brain.device
        )
    if soft_targets(hparams):
        brain.soft_loss = soft_loss(hparams, loss_weight)
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
    outputs = {}
    for split in ("valid", "test"):
        brain.eval_split = split
        brain.evaluate(
            datasets[split],
            max_key=hparams["selection_metric"],
            test_loader_kwargs=eval_kwargs[split],
        )
        results[split] = brain.last_eval_metrics
        outputs[split] = brain.eval_outputs
    if if_main_process():
        lines = finish_reliability(
            hparams,
            outputs,
            {split: hparams[f"{split}_annotation"] for split in outputs},
            "valid",
            checkpoint=selected_checkpoint(brain),
        )
        print(f"\nResults ({split_info['protocol']}, fold {hparams['fold']}):")
        columns = [
            m for m in (*REPORTED_METRICS, "gender_accuracy") if m in results["test"]
        ]
        print(format_results_table(results, columns))
        print("\n".join(lines))
        print(f"Outputs in {hparams['output_folder']}")
    finish_distributed()
    return results
