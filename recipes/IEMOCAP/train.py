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
import logging
import os
import sys
import tempfile
from pathlib import Path

import speechbrain as sb
import torch
from iemocap_prepare import PreparationError, prepare_iemocap
from speechbrain.utils.distributed import (
    if_main_process,
    rank_prefixed_message,
    run_on_main,
)

from sser_lobes.audio import AudioError, read_audio
from sser_lobes.batching import DurationBucketBatchSampler
from sser_lobes.hparams import load_hparams
from sser_lobes.metrics import ClassificationStats
from sser_lobes.plots import plot_confusion_matrix, plot_learning_curves

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPORTED_METRICS = ("WA", "UA", "macro_F1")


class EmotionBrain(sb.Brain):
    """Trains and evaluates an :class:`sser_lobes.EmotionModel`."""

    def compute_forward(self, batch, stage):
        """Waveforms -> logits, through the shared EmotionModel."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.modules.model(wavs, wav_lens)

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy in fp32 outside autocast; collects eval predictions."""
        logits = predictions["logits"]
        targets = batch.emo_encoded.data.squeeze(-1)
        # The loss stays out of autocast (fp16 wav2vec2 pitfall, SB #1803).
        with torch.autocast(device_type=self.device_type, enabled=False):
            loss = self.hparams.compute_cost(logits.float(), targets)
        if stage != sb.Stage.TRAIN:
            self.stats.append(batch.id, torch.softmax(logits.float(), dim=-1), targets)
        return loss

    def init_optimizers(self):
        """Two optimisers: the SSL encoder's and everything else (head, pooling)."""
        ssl_params = {
            id(p)
            for p in self.hparams.ssl_encoder.model.parameters()
            if p.requires_grad
        }
        model_params = [p for p in self.modules.parameters() if p.requires_grad]
        head_params = [p for p in model_params if id(p) not in ssl_params]
        encoder_params = [p for p in model_params if id(p) in ssl_params]

        self.optimizer = self.hparams.opt_class(head_params)
        self.optimizers_dict = {"model_optimizer": self.optimizer}
        self.ssl_optimizer = None
        if encoder_params:
            self.ssl_optimizer = self.hparams.ssl_opt_class(encoder_params)
            self.optimizers_dict["ssl_optimizer"] = self.ssl_optimizer
        if self.checkpointer is not None:
            for name, optimizer in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(name, optimizer)

    def on_fit_start(self):
        """Recover the latest checkpoint, then the history up to its epoch."""
        super().on_fit_start()
        if self.distributed_launch and self.train_sampler is not None:
            logger.info(
                rank_prefixed_message(
                    f"DDP process {self.rank}: {len(self.train_sampler)} of the "
                    "training batches per epoch"
                )
            )
        self.history = {}
        history_file = Path(self.hparams.output_folder) / "history.json"
        if history_file.exists():
            done = self.hparams.epoch_counter.current
            saved = json.loads(history_file.read_text(encoding="utf-8"))
            self.history = {e: v for e, v in saved.items() if int(e) <= done}

    def on_stage_start(self, stage, epoch=None):
        """Reset the whole-set statistics; give the sampler its epoch."""
        if stage == sb.Stage.TRAIN and self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        if stage != sb.Stage.TRAIN:
            self.stats = ClassificationStats(self.hparams.emotions)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Whole-set metrics, LR annealing, checkpointing and reports."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        metrics = self.stats.summarize()
        stats = {"loss": stage_loss, **{k: metrics[k] for k in REPORTED_METRICS}}
        stats["error_rate"] = 1.0 - metrics["WA"]

        if stage == sb.Stage.VALID:
            # NewBob on the validation error rate, as the reference recipe.
            old_lr, new_lr = self.hparams.lr_annealing(stats["error_rate"])
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            lrs = {"lr": old_lr}
            if self.ssl_optimizer is not None:
                old_ssl, new_ssl = self.hparams.lr_annealing_ssl(stats["error_rate"])
                sb.nnet.schedulers.update_learning_rate(self.ssl_optimizer, new_ssl)
                lrs["lr_ssl"] = old_ssl
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, **lrs},
                train_stats={"loss": self.train_loss},
                valid_stats=stats,
            )
            self.history[str(epoch)] = {
                "train_loss": float(self.train_loss),
                "valid_loss": float(stage_loss),
                **{f"valid_{k}": metrics[k] for k in REPORTED_METRICS},
                **lrs,
            }
            if if_main_process():
                out = Path(self.hparams.output_folder)
                _write_json(out / "history.json", self.history)
                plot_learning_curves(
                    self.history,
                    out / "learning_curves.png",
                    title=self.hparams.experiment_name,
                )
            self.checkpointer.save_and_keep_only(
                meta={**stats, "epoch": epoch},
                max_keys=[self.hparams.selection_metric],
                num_to_keep=1,
            )

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
        record = {
            "experiment": self.hparams.experiment_name,
            "protocol": self.split_info["protocol"],
            "speaker_independent": self.split_info["speaker_independent"],
            "split_description": self.split_info.get("split_description"),
            "fold": str(self.hparams.fold),
            "seed": self.hparams.seed,
            "split": split,
            "ssl_source": self.hparams.ssl_source,
            "finetune": self.hparams.finetune,
            "pooling": self.hparams.pooling_type,
            "selection_metric": self.hparams.selection_metric,
            "selected_epoch": self.hparams.epoch_counter.current,
            "loss": float(loss),
            **metrics,
        }
        _write_json(out / f"{split}_metrics.json", record)
        self.stats.write_predictions(out / f"{split}_predictions.csv")
        plot_confusion_matrix(
            metrics["confusion_matrix"],
            metrics["labels"],
            out / f"{split}_confusion_matrix.png",
            title=f"{self.hparams.experiment_name} {split} ({self.hparams.fold})",
        )


def _write_json(path, data):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class ManifestError(ValueError):
    """A manifest entry the recipe cannot use; the message names file and entry."""


def check_manifest_labels(path, labels):
    """Fail early, naming the manifest and utterance, on a label not in ``labels``."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    for utt_id, entry in data.items():
        if entry.get("emo") not in labels:
            raise ManifestError(
                f"{path}: utterance {utt_id} has label {entry.get('emo')!r}, which is "
                f"not one of the classes {list(labels)} of the hparams (emotions)."
            )
    return len(data)


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
    sample_rate = hparams["sample_rate"]
    min_samples = hparams["ssl_encoder"].min_samples

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, sample_rate=sample_rate, min_samples=min_samples)

    label_encoder = sb.dataio.encoder.CategoricalEncoder()
    label_encoder.update_from_iterable(hparams["emotions"])
    label_encoder.expect_len(len(hparams["emotions"]))

    @sb.utils.data_pipeline.takes("emo")
    @sb.utils.data_pipeline.provides("emo", "emo_encoded")
    def label_pipeline(emo):
        yield emo
        yield label_encoder.encode_label_torch(emo)

    datasets = {}
    for split in ("train", "valid", "test"):
        manifest = hparams[f"{split}_annotation"]
        check_manifest_labels(manifest, hparams["emotions"])
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=manifest,
            dynamic_items=[audio_pipeline, label_pipeline],
            output_keys=["id", "sig", "emo_encoded"],
        )
    if if_main_process():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        label_encoder.save(os.path.join(hparams["save_folder"], "label_encoder.txt"))
    return datasets, label_encoder


def make_loader_kwargs(hparams, datasets):
    """Loader options: duration buckets (or random batches) for training,
    sorted fixed batches for evaluation."""
    workers = {"num_workers": hparams["num_workers"]}
    if hparams["batching"] == "bucketed":
        train_sampler = DurationBucketBatchSampler.from_dataset(
            datasets["train"],
            hparams["batch_size"],
            shuffle=True,
            seed=hparams["seed"],
            jitter=hparams["bucket_jitter"],
        )
        train_kwargs = {"batch_sampler": train_sampler, **workers}
    elif hparams["batching"] == "random":
        train_sampler = None
        train_kwargs = {"batch_size": hparams["batch_size"], "shuffle": True, **workers}
    else:
        raise ValueError(
            f"batching must be 'bucketed' or 'random', got {hparams['batching']!r}."
        )
    eval_kwargs = {
        split: {
            "batch_sampler": DurationBucketBatchSampler.from_dataset(
                datasets[split], hparams["eval_batch_size"], shuffle=False
            ),
            **workers,
        }
        for split in ("valid", "test")
    }
    return train_sampler, train_kwargs, eval_kwargs


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
                "seed": hparams["seed"],
                "merge_exc_into_hap": hparams["merge_exc_into_hap"],
                "emotions": tuple(hparams["emotions"]),
                "sample_rate": hparams["sample_rate"],
            },
        )
    info_file = Path(hparams["manifest_folder"]) / "split_info.json"
    if info_file.exists():
        return json.loads(info_file.read_text(encoding="utf-8"))
    return {"protocol": hparams["split_mode"], "speaker_independent": None}


def format_results_table(results):
    """Markdown table of the reported metrics per evaluated split."""
    lines = ["| split | n | WA | UA | macro-F1 |", "|---|---|---|---|---|"]
    for split, m in results.items():
        cells = " | ".join(f"{100 * m[k]:.2f}" for k in REPORTED_METRICS)
        lines.append(f"| {split} | {m['n']} | {cells} |")
    return "\n".join(lines)


def main(argv=None):
    """Run one fold: prepare, train, select on valid, evaluate valid and test."""
    hparams_file, run_opts, overrides = sb.parse_arguments(
        sys.argv[1:] if argv is None else argv
    )
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams, merged_text = load_hparams(hparams_file, overrides)

    # Save the merged (overlay-resolved) hyperparameters with the experiment.
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(merged_text)
    try:
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=handle.name,
            overrides=overrides,
        )
    finally:
        os.unlink(handle.name)

    split_info = prepare_data(hparams)
    datasets, _ = dataio_prep(hparams)
    train_sampler, train_kwargs, eval_kwargs = make_loader_kwargs(hparams, datasets)

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
        print(format_results_table(results))
        print(f"Outputs in {hparams['output_folder']}")
    if torch.distributed.is_initialized():
        # A process group left open aborts some ranks at interpreter exit
        # ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return results


if __name__ == "__main__":
    try:
        main()
    except (AudioError, ManifestError, PreparationError) as error:
        # Problems with the user's data: the message names the file; a
        # traceback would only hide it.
        sys.exit(f"error: {error}")
