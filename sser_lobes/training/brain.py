"""The training machinery shared by the sser recipes (a SpeechBrain ``Brain``).

Each recipe's ``train.py`` subclasses :class:`SERBrain` and writes, as in any
SpeechBrain recipe, ``compute_objectives``, ``on_stage_start`` and
``on_stage_end``. This class supplies what the recipes have in common:

* ``compute_forward``: the shared :class:`~sser_lobes.nnet.model.EmotionModel` on
  the batch's waveforms, or on the encoder hidden states read from the
  feature cache (:mod:`sser_lobes.training.feature_cache`);
* two optimisers, ``ssl_opt_class`` for the SSL encoder's own weights and
  ``opt_class`` for everything else (pooling, heads, layer weights); a frozen
  encoder gets none;
* ``set_epoch`` on the training batch sampler at every epoch (SpeechBrain only
  does it under DDP);
* NewBob annealing of both learning rates when the hparams define
  ``lr_annealing`` / ``lr_annealing_ssl``;
* ``history.json`` and ``learning_curves.png`` updated every epoch and
  trimmed to the recovered epoch on resume;
* the best checkpoint kept by ``selection_metric`` (higher is better);
* loss computation outside autocast (fp16 pitfall, SpeechBrain #1803);
* with ``grad_accumulation_factor`` > 1, the last group of each epoch is
  stepped even when it holds fewer batches (as the Odyssey 2024 baseline
  does; SpeechBrain's loop discards those gradients: up to 3 of every
  epoch's batches at the baseline's factor of 4);
* with ``finetune: top`` or ``lora``, checkpoints of the trainable tensors
  only, the frozen encoder written once per run
  (:mod:`sser_lobes.training.trainable_checkpoint`);
* ``<split>_metrics.json`` records with the run's identity (experiment,
  protocol, fold, seed, encoder, selected epoch);
* the inputs and the auxiliary loss of the optional gender conditioning and
  text fusion (:meth:`model_inputs`, :meth:`gender_loss`), with the gender
  accuracy on whole evaluation sets;
* the classification loss on the majority label or on the annotators'
  votes (:meth:`classification_loss`, :mod:`sser_lobes.training.targets`),
  and the raw outputs of every evaluation (:attr:`eval_outputs`) for the
  calibration and the reports of :mod:`sser_lobes.training.reliability`.
"""

import json
import logging
import os
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.utils.distributed import (
    if_main_process,
    rank_prefixed_message,
    run_on_main,
)

from sser_lobes.dataio.chunking import inference_window_seconds
from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.evaluation.metrics import ClassificationStats
from sser_lobes.evaluation.plots import plot_learning_curves
from sser_lobes.nnet.description import describe_run
from sser_lobes.nnet.gender import GENDERS
from sser_lobes.training.eval_outputs import EvaluationOutputs
from sser_lobes.training.targets import target_options
from sser_lobes.training.trainable_checkpoint import (
    guard_frozen_encoder,
    keep_trainable_only,
    write_frozen_encoder,
)

#: The run's model description, in its save folder (the name a model
#: folder's description has too).
RUN_DESCRIPTION = "sser_model.json"

logger = logging.getLogger(__name__)


def write_json(path, data):
    """Write JSON atomically (temporary file, then rename).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> write_json(path, {"a": 1})
    >>> path.read_text()
    '{\\n  "a": 1\\n}\\n'
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class SERBrain(sb.Brain):
    """Base ``Brain`` of the sser recipes; see the module docstring.

    Expected hparams: ``ssl_encoder`` (the :class:`sser_lobes.SSLEncoder`
    inside the model), ``opt_class``, optionally ``ssl_opt_class``,
    ``lr_annealing`` and ``lr_annealing_ssl``, ``selection_metric``,
    ``output_folder``, ``experiment_name``, ``epoch_counter``,
    ``train_logger``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # finetune: top / lora: checkpoints of the trainable tensors only,
        # the frozen encoder once per run (trainable_checkpoint).
        model = getattr(self.hparams, "model", None)
        self.trainable_only = model is not None and keep_trainable_only(
            self.checkpointer, model
        )

    def compute_forward(self, batch, stage):
        """Waveforms (``sig``), or cached encoder hidden states
        (``ssl_hidden``, with ``feature_cache: True``), through the shared
        EmotionModel."""
        batch = batch.to(self.device)
        inputs = self.model_inputs(batch, stage)
        if hasattr(batch, "ssl_hidden"):
            hidden, hidden_lens = batch.ssl_hidden
            return self.modules.model(hidden=hidden, hidden_lens=hidden_lens, **inputs)
        wavs, wav_lens = batch.sig
        return self.modules.model(wavs, wav_lens, **inputs)

    #: Training batches per epoch (set by :meth:`make_dataloader`), to find
    #: the epoch's last batch.
    train_batches = None

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kwargs):
        """SpeechBrain's loader; remembers the training loader's length."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)
        if stage == sb.Stage.TRAIN:
            try:
                self.train_batches = len(loader)
            except TypeError:  # an iterable without a length
                self.train_batches = None
        return loader

    def fit_batch(self, batch):
        """SpeechBrain's ``fit_batch``; the epoch's last batch also steps a
        partial accumulation group.

        SpeechBrain steps when ``step % grad_accumulation_factor == 0``, and
        zeroes the gradients at the end of the epoch, so the batches after
        the last full group trained nothing. On the last batch this call
        presents the step as the end of a group (the loss is scaled by the
        factor as in every group, as the baseline scales it).
        """
        factor = self.grad_accumulation_factor
        partial = factor > 1 and self.step % factor != 0
        if not (partial and self.train_batches and self.step == self.train_batches):
            return super().fit_batch(batch)
        step = self.step
        self.step = step + factor - step % factor
        try:
            return super().fit_batch(batch)
        finally:
            self.step = step

    def init_optimizers(self):
        """One optimiser for the SSL encoder's weights, one for the rest."""
        encoder = self.hparams.ssl_encoder.model
        ssl_ids = {id(p) for p in encoder.parameters() if p.requires_grad}
        trainable = [p for p in self.modules.parameters() if p.requires_grad]
        rest = [p for p in trainable if id(p) not in ssl_ids]
        ssl_params = [p for p in trainable if id(p) in ssl_ids]

        self.optimizer = self.hparams.opt_class(rest)
        self.optimizers_dict = {"model_optimizer": self.optimizer}
        self.ssl_optimizer = None
        if ssl_params:
            self.ssl_optimizer = self.hparams.ssl_opt_class(ssl_params)
            self.optimizers_dict["ssl_optimizer"] = self.ssl_optimizer
        if self.checkpointer is not None:
            for name, optimizer in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(name, optimizer)

    def on_fit_start(self):
        """Recover the latest checkpoint, then the history up to its epoch.

        With trainable-only checkpoints, first writes (once) and checks the
        frozen encoder weights they build on. Also keeps, next to the
        checkpoints, the model's description as data
        (``sser_model.json``, :func:`sser_lobes.nnet.description.describe_run`),
        from which ``python -m sser_lobes.export`` rebuilds the model without
        running the run's YAML, and the SSL encoder's config (for runs
        exported with ``--trust-run``).
        """
        if self.trainable_only:
            save = self.hparams.save_folder
            run_on_main(write_frozen_encoder, args=[self.hparams.model, save])
            guard_frozen_encoder(self.hparams.model, save)
        super().on_fit_start()
        if if_main_process():
            save = Path(self.hparams.save_folder)
            save.mkdir(parents=True, exist_ok=True)
            config = self.hparams.ssl_encoder.config.to_json_string()
            (save / "ssl_config.json").write_text(config, encoding="utf-8")
            hparams = vars(self.hparams)
            manifests = sorted(Path(hparams["manifest_folder"]).glob("*.json"))
            window = inference_window_seconds(
                manifests, hparams.get("train_crop_seconds")
            )
            atomic_write_json(save / RUN_DESCRIPTION, describe_run(hparams, window))
        self.history = {}
        history_file = Path(self.hparams.output_folder) / "history.json"
        if history_file.exists():
            done = self.hparams.epoch_counter.current
            saved = json.loads(history_file.read_text(encoding="utf-8"))
            self.history = {e: v for e, v in saved.items() if int(e) <= done}
        if self.distributed_launch and self.train_sampler is not None:
            logger.info(
                rank_prefixed_message(
                    f"DDP process {self.rank}: {len(self.train_sampler)} of the "
                    "training batches per epoch"
                )
            )

    def on_stage_start(self, stage, epoch=None):
        """Give the training batch sampler its epoch (new buckets each epoch);
        fresh whole-set gender statistics and raw outputs for evaluation
        stages."""
        if stage == sb.Stage.TRAIN and self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        self.gender_stats = None
        if stage != sb.Stage.TRAIN and self.uses_gender:
            self.gender_stats = ClassificationStats(list(GENDERS))
        if stage != sb.Stage.TRAIN:
            self.eval_outputs = EvaluationOutputs()

    #: The soft-target loss (:func:`sser_lobes.training.targets.soft_loss`)
    #: when the run trains on the annotators' votes, else None.
    soft_loss = None

    def classification_loss(self, logits, batch, hard_loss):
        """The loss of classification ``logits``, in fp32 outside autocast:
        against the vote distributions (``emo_target``, weighted per
        utterance by ``target_weight``) when the run has a :attr:`soft_loss`,
        else ``hard_loss(logits)`` on the majority labels."""
        with self.outside_autocast():
            if self.soft_loss is not None:
                return self.soft_loss(
                    logits.float(), batch.emo_target.data, batch.target_weight.data
                )
            return hard_loss(logits.float())

    def collect_outputs(self, batch, logits, targets):
        """Keep an evaluation batch's raw logits, targets and votes."""
        votes = getattr(batch, "emo_target", None)
        self.eval_outputs.append(
            batch.id,
            logits,
            targets,
            None if votes is None else votes.data,
            None if votes is None else batch.has_votes.data,
        )

    @property
    def uses_gender(self):
        """Whether the model conditions on gender."""
        return getattr(self.hparams.model, "gender", None) is not None

    @property
    def uses_text(self):
        """Whether the model fuses a text embedding."""
        return getattr(self.hparams.model, "text_fusion", None) is not None

    def model_inputs(self, batch, stage):
        """Keyword inputs of the EmotionModel besides the waveforms.

        Gender labels are given in training (teacher forcing; -1 = unknown
        uses the prediction). In evaluation the model predicts the gender, as
        at inference, unless ``gender_at_evaluation: label``.
        """
        inputs = {}
        if self.uses_gender:
            use_labels = stage == sb.Stage.TRAIN or (
                self.hparams.gender_at_evaluation == "label"
            )
            if use_labels:
                inputs["gender"] = batch.gender_index.data.reshape(-1)
        if self.uses_text:
            inputs["text"] = batch.text_embedding.data
            inputs["has_text"] = batch.has_text.data.reshape(-1)
        return inputs

    def gender_loss(self, predictions, batch, stage):
        """Weighted auxiliary gender cross-entropy (0 without conditioning).

        Utterances of unknown gender are ignored. On evaluation stages the
        predictions are collected for the whole-set gender accuracy.
        """
        if not self.uses_gender:
            return 0.0
        logits = predictions["gender_logits"].float()
        targets = batch.gender_index.data.reshape(-1).to(logits.device)
        known = targets >= 0
        if self.gender_stats is not None and bool(known.any()):
            ids = [i for i, k in zip(batch.id, known.tolist()) if k]
            self.gender_stats.append(
                ids, torch.softmax(logits[known], dim=-1), targets[known]
            )
        if not bool(known.any()):
            return logits.sum() * 0.0
        with self.outside_autocast():
            loss = torch.nn.functional.cross_entropy(logits[known], targets[known])
        return self.hparams.gender_loss_weight * loss

    def gender_metrics(self):
        """``{"gender_accuracy": ...}`` on the whole evaluation set, or {}."""
        if self.gender_stats is None or len(self.gender_stats) == 0:
            return {}
        return {"gender_accuracy": self.gender_stats.summarize()["WA"]}

    def outside_autocast(self):
        """Context in which the loss is computed in fp32 (no autocast)."""
        return torch.autocast(device_type=self.device_type, enabled=False)

    def anneal_learning_rates(self, metric):
        """NewBob step on both optimisers (if configured); return the old rates.

        Arguments
        ---------
        metric : float
            Lower is better (e.g. the validation error rate).
        """
        rates = {}
        for key, optimizer, annealing in (
            ("lr", self.optimizer, "lr_annealing"),
            ("lr_ssl", self.ssl_optimizer, "lr_annealing_ssl"),
        ):
            if optimizer is None:
                continue
            scheduler = getattr(self.hparams, annealing, None)
            if scheduler is None:
                rates[key] = optimizer.param_groups[0]["lr"]
                continue
            old, new = scheduler(metric)
            sb.nnet.schedulers.update_learning_rate(optimizer, new)
            rates[key] = old
        return rates

    def end_of_validation(self, epoch, valid_stats, curve_stats, lrs):
        """Log, update history and curves, and checkpoint (keep the best).

        Arguments
        ---------
        epoch : int
            The finished epoch.
        valid_stats : dict
            Whole-set validation statistics; must hold ``selection_metric``.
        curve_stats : dict
            Values for the learning curves (``valid_`` prefix added).
        lrs : dict
            Learning rates used in this epoch.
        """
        self.hparams.train_logger.log_stats(
            {"epoch": epoch, **lrs},
            train_stats={"loss": self.train_loss},
            valid_stats=valid_stats,
        )
        self.history[str(epoch)] = {
            "train_loss": float(self.train_loss),
            **{f"valid_{k}": float(v) for k, v in curve_stats.items()},
            **lrs,
        }
        if if_main_process():
            out = Path(self.hparams.output_folder)
            write_json(out / "history.json", self.history)
            plot_learning_curves(
                self.history,
                out / "learning_curves.png",
                title=self.hparams.experiment_name,
            )
        rng_state = getattr(self.hparams, "rng_state", None)
        if rng_state is not None:
            # Every rank's RNG state goes into the main process' checkpoint.
            rng_state.gather()
        self.checkpointer.save_and_keep_only(
            meta={**valid_stats, "epoch": epoch},
            max_keys=[self.hparams.selection_metric],
            num_to_keep=1,
        )

    def run_record(self, split, loss, **extra):
        """Identity of this run for a ``<split>_metrics.json``.

        ``task_identity`` (:func:`sser_lobes.training.recipe.task_identity`,
        set by the recipe as ``self.task_identity``) is what
        :mod:`sser_lobes.evaluation.aggregate` groups runs by, with the
        experiment, ``encoder`` and ``finetune``.
        """
        info = getattr(self, "split_info", None) or {}
        return {
            "experiment": self.hparams.experiment_name,
            "task_identity": getattr(self, "task_identity", None),
            "encoder": getattr(self.hparams, "ssl_name", None),
            "protocol": info.get("protocol"),
            "split_description": info.get("split_description"),
            "speaker_independent": info.get("speaker_independent"),
            "fold": str(getattr(self.hparams, "fold", "")),
            "seed": self.hparams.seed,
            "split": split,
            "ssl_source": self.hparams.ssl_source,
            "finetune": self.hparams.finetune,
            "trainable_layers": getattr(self.hparams, "trainable_layers", None),
            "pooling": getattr(self.hparams, "pooling_type", None),
            "selection_metric": self.hparams.selection_metric,
            "selected_epoch": self.hparams.epoch_counter.current,
            "training_targets": target_options(vars(self.hparams)),
            "loss": float(loss),
            **extra,
        }
