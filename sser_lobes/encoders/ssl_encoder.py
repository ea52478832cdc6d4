"""A batch-invariant wrapper around HuggingFace wav2vec 2.0 / HuBERT / WavLM models.

Compared with SpeechBrain's HuggingFace wrappers, padding never changes the
features of an utterance:

* the waveform is normalised with the statistics of its valid samples only
  (SpeechBrain's wrapper layer-normalises over the padded length);
* the attention mask is always passed, so the transformer ignores padded
  frames;
* for group-norm checkpoints (wav2vec2-base, HuBERT-base), whose first CNN
  layer normalises every channel over time, the statistics are computed over
  the valid frames only (:class:`MaskedGroupNorm`). The transformers docs
  advise not to pass an attention mask to these models at all, which leaves
  the padding inside the statistics.

An utterance alone and the same utterance padded in a batch give the same
frames (to float rounding), which the test-suite checks for both kinds of
checkpoints.

In eval mode (inference, validation, and the frozen CNN of partial
fine-tuning) the same function is computed faster on CPU, with the same
parameters and state-dict keys, by the modules of
:mod:`sser_lobes.encoders.fast_path` (utterance-wise time-major CNN, feed-forward
blocks on valid frames only, SDPA attention, channels-last position
convolution). Their per-call state lives in a context variable, not on the
shared modules: one encoder can serve several threads at once.
"""

import contextlib
import json
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from sser_lobes.encoders.fast_path.call_state import CURRENT_CALL, EncoderCall
from sser_lobes.encoders.fast_path.group_norm import MaskedGroupNorm
from sser_lobes.encoders.fast_path.registry import (
    FAST_MODULES,
    check_transformers_version,
)
from sser_lobes.encoders.gradient_checkpointing import enable_checkpointing
from sser_lobes.encoders.hf_utils import quiet_transformers
from sser_lobes.encoders.layer_stack import final_norm, run_layers, transformer_input
from sser_lobes.encoders.lora import add_lora, merge_lora, parse_targets

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
FINETUNE_MODES = ("frozen", "partial", "entire", "top", "lora")
OUTPUT_NORMS = ("utterance", "frame", None)
WAVEFORM_NORMS = ("layer_norm", "utterance", "global", "off")
#: The epsilon each per-utterance waveform normalisation adds to the variance:
#: ``layer_norm`` is ``F.layer_norm``'s (SpeechBrain's wrapper, fairseq's
#: pretraining), ``utterance`` transformers' ``Wav2Vec2FeatureExtractor``'s.
#: At an RMS of 0.01 the two differ by 4.8 % in the normalised waveform.
WAVEFORM_NORM_EPS = {"layer_norm": 1e-5, "utterance": 1e-7}
#: Added to the standard deviation by ``normalize_waveform="global"`` (as the
#: Odyssey 2024 baseline's ``(x - mean) / (std + 1e-6)``).
GLOBAL_NORM_EPS = 1e-6


def relative_to_absolute(lengths, max_length):
    """Convert SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths in (0, 1], ``[batch]``; ``None`` means all full.
    max_length : int
        The padded length.

    Returns
    -------
    torch.Tensor
        Long tensor ``[batch]`` of lengths in ``[1, max_length]``.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 10)
    tensor([10,  5])
    """
    lengths = torch.as_tensor(lengths, dtype=torch.float32)
    return torch.round(lengths * max_length).long().clamp(1, max_length)


def length_mask(lengths, max_length):
    """Boolean mask ``[batch, max_length]`` that is True on valid positions.

    Example
    -------
    >>> length_mask(torch.tensor([2, 3]), 3)
    tensor([[ True,  True, False],
            [ True,  True,  True]])
    """
    positions = torch.arange(max_length, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def normalize_valid(wavs, mask, eps=1e-7):
    """Zero-mean, unit-variance normalisation of each row over its valid samples.

    Matches transformers' ``Wav2Vec2FeatureExtractor`` normalisation for one
    utterance (biased variance, ``eps=1e-7``), or with ``eps=1e-5``
    ``F.layer_norm(wav, wav.shape)`` on the valid samples (SpeechBrain's
    wrapper), and sets padding to zero.

    Example
    -------
    >>> wav = torch.tensor([[1.0, 3.0, 0.0]])
    >>> normalize_valid(wav, torch.tensor([[True, True, False]]))
    tensor([[-1.,  1.,  0.]])
    """
    maskf = mask.to(wavs.dtype)
    count = maskf.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (wavs * maskf).sum(-1, keepdim=True) / count
    var = (((wavs - mean) * maskf) ** 2).sum(-1, keepdim=True) / count
    normalized = (wavs - mean) / torch.sqrt(var + eps)
    return torch.where(mask, normalized, torch.zeros_like(normalized))


class SSLEncoder(nn.Module):
    """A wav2vec 2.0 / HuBERT / WavLM encoder with three fine-tuning modes.

    The architecture is read from the checkpoint's config, so any HuggingFace
    model of a supported type loads from a hub id (``microsoft/wavlm-large``)
    or a local folder (``python -m sser_lobes.tiny_ssl`` writes one).

    Arguments
    ---------
    source : str
        Hub id or local folder of the checkpoint.
    finetune : str
        ``"frozen"``: no parameter of the model trains, it runs in eval mode
        without gradients (features only). ``"partial"``: the CNN feature
        encoder is frozen and kept in eval mode, the transformer trains (best
        in Wang et al. 2021). ``"entire"``: everything trains. ``"top"``: the
        top ``trainable_layers`` transformer layers train (with the final
        layer norm of stable-layer-norm models, which follows them); the
        CNN, the position embedding and the layers below are frozen and run
        in eval mode without gradients. ``"lora"``: low-rank adapters
        (:mod:`sser_lobes.encoders.lora`, through peft) train on the
        transformer layers (the top ``trainable_layers`` ones, or all),
        every weight of the model is frozen.
    trainable_layers : int or None
        ``finetune="top"``: how many top layers train (required).
        ``finetune="lora"``: adapters on the top ``k`` layers only (``None``:
        on all of them). With ``k`` set, :meth:`hidden_states` computes the
        frozen part, the input of the first trained layer
        (``hidden_states[num_layers - k]``), and :meth:`features_from_hidden`
        runs the trained layers on it: a
        :mod:`~sser_lobes.training.feature_cache` can store the frozen part.
        The model's SpecAugment, which masks the transformer's input, is
        not applied then (that input is frozen). The features come from the
        trained layers: ``output_layer`` is ``"last"``, an index from
        ``num_layers - k``, or ``weighted_sum`` over such indices.
    lora_rank, lora_alpha, lora_targets :
        The adapters of ``finetune="lora"`` (ignored by the other modes):
        rank ``r``, peft's ``lora_alpha`` (the update is scaled by
        ``alpha / r``; ``None``: ``2 r``) and the linear layers adapted,
        ``"attention"`` (query, key, value and output projections) and / or
        ``"feed_forward"`` (both dense layers).
    output_layer : str or int
        Which output of the transformer encoder gives the features, exactly
        as transformers returns it (the stock model's outputs, from
        transformers 5.16 on).

        * ``"last"``: the encoder's output (``last_hidden_state``). On
          stable-layer-norm checkpoints (``do_stable_layer_norm=True``:
          wav2vec2-large-lv60, HuBERT large, WavLM large), whose layers
          normalise their inputs, the encoder's final layer norm is applied
          to the last layer's output; on post-norm checkpoints (the base
          models) it is the last layer's output itself. This is what
          SpeechBrain's wrapper and the reference recipes use.
        * an int ``k`` in ``0..num_layers``: ``hidden_states[k]``, the
          SUPERB convention. ``0`` is the input of the first transformer
          layer (the projected CNN features plus the convolutional position
          embedding, layer-normalised on post-norm models); ``k`` is the
          output of layer ``k``, never with the final layer norm of
          stable-layer-norm models. ``output_layer=num_layers`` thus equals
          ``"last"`` on post-norm models only.
        * ``"weighted_sum"``: a learned softmax-weighted sum of
          ``hidden_states[0..num_layers]`` as for an int (SUPERB style; the
          weights train in every mode), or of ``weighted_sum_layers``.
    num_layers : int or None
        Build, load and run only the first ``num_layers`` transformer layers
        (the others are neither loaded nor computed); ``None`` keeps them
        all. The truncated encoder is a complete one: hidden states ``0`` to
        ``num_layers`` are those of the full model, and with ``"last"`` its
        output on stable-layer-norm models is the final layer norm applied to
        hidden state ``num_layers`` (on post-norm models, that hidden state).
    output_norm : str or bool or None
        Normalisation of the output features, without learned parameters
        (:func:`normalize_features`). ``"utterance"``: zero mean and unit
        variance over each utterance's valid frames and all channels, which is
        what SpeechBrain's wrapper computes with ``output_norm: True``
        (``F.layer_norm`` over time and channels) except that padded frames
        do not enter the statistics. ``"frame"`` (or ``True``): each frame
        over its channels. ``None`` or ``False``: none.
    normalize_waveform : str or bool or None
        Normalisation of the input waveforms, over each utterance's valid
        samples only (padding is zero). ``"layer_norm"``: zero mean and unit
        variance per utterance with ``F.layer_norm``'s epsilon (1e-5), as
        SpeechBrain's wrapper and fairseq's pretraining normalise.
        ``"utterance"`` (or ``True``): the same with transformers' feature
        extractor's epsilon (1e-7); the two differ on quiet audio (4.8 % at
        an RMS of 0.01). ``"global"``: ``(x - mean) / (std + 1e-6)`` with one
        mean and standard deviation for the whole training set (the Odyssey
        2024 baseline), set with :meth:`set_waveform_stats` and kept in the
        state dict. ``"off"`` (or ``False``): none. ``None``: as SpeechBrain's
        wrapper, ``"layer_norm"`` if the checkpoint's feature-extractor
        config says ``do_normalize`` (without one, for layer-norm models),
        else ``"off"``.
    apply_spec_augment : bool or None
        SpecAugment-style time (and feature) masking of the transformer
        input in training mode. ``None`` follows the checkpoint's config
        (``apply_spec_augment``, ``mask_time_prob``; on for most hub
        checkpoints, as in a plain transformers model); ``False`` turns it
        off, as SpeechBrain's wrapper does by default.
    gradient_checkpointing : bool
        Recompute the activations of each transformer layer (and of the CNN
        when it trains) in the backward pass instead of storing them: less
        memory for about one more forward pass; the gradients are the same
        (the random state is restored for the recompute). For ``partial``
        and ``entire`` fine-tuning; a frozen encoder stores nothing anyway.
    normalize_layers : bool
        With ``output_layer="weighted_sum"``, layer-normalise each hidden
        state before the sum.
    config_overrides : dict or None
        Values set on the transformers config before loading, e.g.
        ``{"layerdrop": 0.0, "mask_time_prob": 0.0}``.
    cache_dir : str or None
        Where hub downloads are cached (transformers' default if None).
    revision : str or None
        Hub revision (branch, tag or commit) of the checkpoint.
    config : dict, str, transformers.PretrainedConfig or None
        Build from this config (or this config.json file) instead of reading
        the source's.
    load_weights : bool
        ``False`` builds the architecture only (random weights), for models
        whose weights are loaded afterwards from a saved state dict.
    weighted_sum_layers : list of int or str or None
        With ``output_layer="weighted_sum"``, sum only these hidden states
        (indices as for an int ``output_layer``; ``"8-16"`` is the range 8
        to 16 inclusive). ``None``: all of them.

    The forward pass is two steps (:meth:`hidden_states`, then
    :meth:`features_from_hidden`), so that the outputs of a frozen encoder
    can be stored and fed back (:mod:`sser_lobes.training.feature_cache`).

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="wavlm")
    >>> encoder = SSLEncoder(folder, finetune="partial")
    >>> feats, lens = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, encoder.output_size
    (torch.Size([2, 49, 32]), 32)
    >>> lens
    tensor([1.0000, 0.4898])
    """

    #: Frames per chunk of the utterance-wise CNN (eval mode): 150 frames
    #: are 3 s of audio, whose activations fit in the CPU cache.
    cnn_chunk_frames = 150

    def __init__(
        self,
        source=None,
        finetune="partial",
        output_layer="last",
        num_layers=None,
        output_norm=None,
        normalize_waveform=None,
        normalize_layers=False,
        apply_spec_augment=None,
        gradient_checkpointing=False,
        config_overrides=None,
        cache_dir=None,
        revision=None,
        config=None,
        load_weights=True,
        weighted_sum_layers=None,
        trainable_layers=None,
        lora_rank=16,
        lora_alpha=None,
        lora_targets=("attention", "feed_forward"),
    ):
        super().__init__()
        check_transformers_version()
        if source is None and (config is None or load_weights):
            raise ValueError(
                "SSLEncoder needs a source (hub id or folder), or a config with "
                "load_weights=False."
            )
        if finetune not in FINETUNE_MODES:
            raise ValueError(
                f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}."
            )
        self.source = None if source is None else str(source)
        self.finetune = finetune
        self.output_norm = _choice(
            "output_norm", output_norm, OUTPUT_NORMS, {True: "frame", False: None}
        )
        self.normalize_layers = normalize_layers
        self.apply_spec_augment = apply_spec_augment
        if apply_spec_augment is not None:
            config_overrides = {
                **(config_overrides or {}),
                "apply_spec_augment": bool(apply_spec_augment),
            }

        config = self.build_config(
            source,
            config=config,
            num_layers=num_layers,
            config_overrides=config_overrides,
            cache_dir=cache_dir,
            revision=revision,
        )
        self.num_layers = config.num_hidden_layers
        #: The first trained transformer layer (0-based) when the layers
        #: below it are frozen and split off (``trainable_layers``), else None.
        self.split_layer = _split_layer(finetune, trainable_layers, self.num_layers)
        self.trainable_layers = trainable_layers

        if output_layer not in ("last", "weighted_sum"):
            if isinstance(output_layer, bool) or not isinstance(output_layer, int):
                raise ValueError(
                    "output_layer must be 'last', 'weighted_sum' or a layer index, "
                    f"got {output_layer!r}."
                )
            if not 0 <= output_layer <= self.num_layers:
                raise ValueError(
                    f"output_layer must be in 0..{self.num_layers}, got {output_layer}."
                )
        self.output_layer = output_layer
        if weighted_sum_layers is not None and output_layer != "weighted_sum":
            raise ValueError(
                "weighted_sum_layers is for output_layer='weighted_sum', got "
                f"output_layer={output_layer!r}."
            )
        self.weighted_sum_layers = weighted_sum_layers
        #: The hidden states :meth:`hidden_states` returns: ``["last"]``, or
        #: indices into transformers' ``hidden_states``.
        self.selected_layers = (
            [output_layer]
            if output_layer != "weighted_sum"
            else layer_selection(weighted_sum_layers, self.num_layers)
        )
        if self.split_layer is not None:
            below = [k for k in self.selected_layers if k != "last"]
            if any(k < self.split_layer for k in below):
                raise ValueError(
                    f"with trainable_layers={trainable_layers} the features come "
                    f"from hidden states {self.split_layer}..{self.num_layers}; "
                    f"output_layer / weighted_sum_layers select {below}."
                )
        #: The hidden states :meth:`hidden_states` returns: those of
        #: :attr:`selected_layers`, or, with trainable layers split off, the
        #: input of the first of them.
        self.hidden_state_indices = (
            list(self.selected_layers)
            if self.split_layer is None
            else [self.split_layer]
        )

        if load_weights:
            # Only the layers kept in the config are loaded; transformers
            # reports the dropped ones as unused weights, as asked for.
            self.model = _quiet_from_pretrained(
                self.source, config=config, cache_dir=cache_dir, revision=revision
            )
        else:
            # Architecture only: the weights come from a saved state dict
            # (exported models carry the whole EmotionModel, encoder included).
            with quiet_transformers():
                self.model = AutoModel.from_config(config)
        self.config = self.model.config

        if normalize_waveform is None:
            normalizes = (
                _checkpoint_normalizes(self.source, config, cache_dir, revision)
                if source is not None
                else config.feat_extract_norm == "layer"
            )
            normalize_waveform = "layer_norm" if normalizes else "off"
        self.normalize_waveform = _choice(
            "normalize_waveform",
            normalize_waveform,
            WAVEFORM_NORMS,
            {True: "utterance", False: "off"},
        )
        if self.normalize_waveform == "global":
            # Training-set statistics (set_waveform_stats), saved with the
            # model so that inference normalises exactly as training did.
            self.register_buffer("waveform_mean", torch.zeros(()))
            self.register_buffer("waveform_std", torch.ones(()))
            self.register_buffer("waveform_stats_samples", torch.zeros(()))

        # Same parameters, faster eval-mode forward (see FAST_MODULES).
        for module in self.model.modules():
            if type(module) in FAST_MODULES:
                module.__class__ = FAST_MODULES[type(module)]

        self.uses_group_norm = config.feat_extract_norm == "group"
        if self.uses_group_norm:
            first = self.model.feature_extractor.conv_layers[0]
            masked = MaskedGroupNorm(
                first.layer_norm.num_channels, first.layer_norm.eps
            )
            masked.load_state_dict(first.layer_norm.state_dict())
            first.layer_norm = masked

        if output_layer == "weighted_sum":
            self.layer_weights = nn.Parameter(torch.zeros(len(self.selected_layers)))

        self.output_size = config.hidden_size
        self.min_samples = int(self._receptive_field())

        #: The LoRA adapters as data (``finetune="lora"``), None without.
        self.adapters = None
        if finetune == "lora":
            if lora_alpha is None:
                lora_alpha = 2 * lora_rank
            first = self.split_layer or 0
            self.adapters = add_lora(
                self.model,
                lora_rank,
                lora_alpha,
                parse_targets(lora_targets),
                range(first, self.num_layers),
            )

        self.gradient_checkpointing = bool(gradient_checkpointing)
        if self.gradient_checkpointing:
            enable_checkpointing(self.model)

        if finetune in ("frozen", "top"):
            for param in self.model.parameters():
                param.requires_grad = False
        if finetune == "top":
            for module in self._trained_modules():
                for param in module.parameters():
                    param.requires_grad = True
        if finetune in ("partial", "top", "lora"):
            # HubertModel has no freeze_feature_encoder(); do what it does.
            for param in self.model.feature_extractor.parameters():
                param.requires_grad = False
            self.model.feature_extractor._requires_grad = False
        self.train(self.training)

    @staticmethod
    def build_config(
        source=None,
        config=None,
        num_layers=None,
        config_overrides=None,
        cache_dir=None,
        revision=None,
    ):
        """The transformers config the encoder is built from.

        Arguments
        ---------
        source : str or None
            Hub id or folder to read the config from (if ``config`` is None).
        config : dict, str, transformers.PretrainedConfig or None
            A config given directly (e.g. stored in an exported model), or
            the path of a config.json.
        num_layers, config_overrides :
            As in the constructor, applied to the config.

        Returns
        -------
        transformers.PretrainedConfig

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
        >>> SSLEncoder.build_config(folder, num_layers=1).num_hidden_layers
        1
        """
        name = source if source is not None else "the given config"
        if config is None:
            config = AutoConfig.from_pretrained(
                source, cache_dir=cache_dir, revision=revision
            )
        elif isinstance(config, (str, os.PathLike)):
            with open(config, encoding="utf-8") as handle:
                config = AutoConfig.for_model(**json.load(handle))
        elif isinstance(config, dict):
            config = AutoConfig.for_model(**dict(config))
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"{name} is a {config.model_type!r} model; SSLEncoder "
                f"supports {SUPPORTED_MODEL_TYPES}."
            )
        for key, value in (config_overrides or {}).items():
            if not hasattr(config, key):
                raise ValueError(
                    f"config_overrides: {key!r} is not a field of the "
                    f"{config.model_type} config of {name}."
                )
            setattr(config, key, value)
        if num_layers is not None:
            if not 1 <= int(num_layers) <= config.num_hidden_layers:
                raise ValueError(
                    f"num_layers must be in 1..{config.num_hidden_layers} for "
                    f"{name}, got {num_layers}."
                )
            config.num_hidden_layers = int(num_layers)
        return config

    def _receptive_field(self):
        """Samples needed for one output frame."""
        return receptive_field(self.config.conv_kernel, self.config.conv_stride)

    def train(self, mode=True):
        """Set train/eval mode; frozen parts always stay in eval mode."""
        super().train(mode)
        if self.finetune == "frozen":
            self.model.eval()
        elif self.split_layer is not None:
            self.model.eval()
            for module in self._trained_modules():
                module.train(mode)
        elif self.finetune in ("partial", "lora"):
            self.model.feature_extractor.eval()
        return self

    def _trained_modules(self):
        """With trainable layers split off: the modules above the split (the
        layers, and the final layer norm of stable-layer-norm models)."""
        encoder = self.model.encoder
        modules = list(encoder.layers[self.split_layer :])
        if self.config.do_stable_layer_norm:
            modules.append(encoder.layer_norm)
        return modules

    @property
    def cacheable(self):
        """Whether :meth:`hidden_states` depends on frozen weights only (a
        frozen encoder, or the frozen part below trainable layers), so that
        a feature cache may store it."""
        return self.finetune == "frozen" or self.split_layer is not None

    def frozen_state_names(self):
        """The state-dict entries :meth:`hidden_states` depends on (the
        feature cache's fingerprint covers them): all of the model's for a
        frozen encoder; below the split, without the trained layers and
        their adapters, with trainable layers split off. Never the trainable
        ``layer_weights``.

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")  # 2 layers
        >>> top = SSLEncoder(folder, finetune="top", trainable_layers=1)
        >>> names = top.frozen_state_names()
        >>> any(".layers.0." in n for n in names), any(".layers.1." in n for n in names)
        (True, False)
        """
        names = [k for k in self.state_dict() if k != "layer_weights"]
        if self.split_layer is None:
            return names
        trained = {
            f"model.encoder.layers.{index}."
            for index in range(self.split_layer, self.num_layers)
        }
        if self.config.do_stable_layer_norm:
            trained.add("model.encoder.layer_norm.")
        return [n for n in names if not n.startswith(tuple(trained))]

    def merge_adapters(self):
        """Merge the LoRA adapters into the weights (peft's merge): the same
        function, computed by the plain model; returns how many layers."""
        merged = merge_lora(self.model)
        self.adapters = None
        return merged

    def frame_lengths(self, sample_lengths):
        """Number of output frames for integer sample lengths.

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> enc = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"))
        >>> enc.frame_lengths(torch.tensor([400, 16000]))
        tensor([ 1, 49])
        """
        return self.model._get_feat_extract_output_lengths(sample_lengths).long()

    def _call_state(self, input_shape, sample_lengths, frames):
        """The :class:`EncoderCall` of one forward pass.

        Arguments
        ---------
        input_shape : torch.Size
            ``(batch, samples)`` of the padded waveforms.
        sample_lengths : torch.Tensor
            Long ``[batch]``: valid samples of each row.
        frames : torch.Tensor
            Long ``[batch]``: valid frames of each row.

        Returns
        -------
        EncoderCall

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> enc = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"))
        >>> lengths = torch.tensor([16000, 8000])
        >>> call = enc._call_state((2, 16000), lengths, enc.frame_lengths(lengths))
        >>> call.frame_shape, call.valid_rows.shape  # 49 + 24 valid frames
        ((2, 49), torch.Size([73]))
        """
        config = self.config
        padded_frames = input_shape[1]
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            padded_frames = (padded_frames - kernel) // stride + 1
        # Utterance-wise CNN for layer-norm models and masked group-norm
        # ones; a group-norm model whose masking was turned off
        # (uses_group_norm = False) runs batched, as transformers does.
        utterance_wise = config.feat_extract_norm == "layer" or self.uses_group_norm
        first_norm_frames = None
        if self.uses_group_norm:
            kernel, stride = config.conv_kernel[0], config.conv_stride[0]
            first_norm_frames = (sample_lengths - kernel) // stride + 1
        valid_rows = None
        if bool((frames < padded_frames).any()):
            valid = length_mask(frames, padded_frames).flatten()
            valid_rows = torch.nonzero(valid).flatten()
        return EncoderCall(
            input_shape=tuple(input_shape),
            sample_lengths=sample_lengths,
            cnn_chunk_frames=self.cnn_chunk_frames if utterance_wise else None,
            first_norm_frames=first_norm_frames,
            frame_shape=(input_shape[0], padded_frames),
            valid_rows=valid_rows,
        )

    def _utterance_cnn(self, wav):
        """CNN features ``[frames, channels]`` of one waveform ``[samples]``,
        as the eval path computes them
        (:meth:`~sser_lobes.encoders.fast_path.feature_encoder.UtteranceWiseFeatureEncoder.utterance_features`).

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="wav2vec2")
        >>> enc = SSLEncoder(folder)  # wav2vec2-base style: group norm
        >>> wav = torch.randn(16000)
        >>> whole = enc._utterance_cnn(wav)
        >>> reference = enc.model.feature_extractor(wav[None])[0]  # transformers
        >>> whole.shape, torch.allclose(whole, reference.T, atol=1e-5)
        (torch.Size([49, 32]), True)
        """
        return self.model.feature_extractor.utterance_features(
            wav, self.cnn_chunk_frames
        )

    def _short_batch_masking(self, wavs):
        """No SpecAugment time mask for batches shorter than one mask span.

        transformers raises "mask_length has to be smaller than
        sequence_length" when the padded batch has fewer frames than
        ``mask_time_length`` (10 frames, 0.2 s); duration-bucketed batches of
        very short utterances hit that. Such batches are simply not masked.
        """
        config = self.config
        if not (
            self.model.training
            and getattr(config, "apply_spec_augment", False)
            and getattr(config, "mask_time_prob", 0) > 0
        ):
            return {}
        frames = int(self.frame_lengths(torch.tensor([wavs.shape[1]]))[0])
        if frames > config.mask_time_length:
            return {}
        return {
            "mask_time_indices": torch.zeros(
                wavs.shape[0], frames, dtype=torch.bool, device=wavs.device
            )
        }

    def forward(self, wavs, wav_lens=None):
        """Encode a padded batch of waveforms.

        :meth:`hidden_states` followed by :meth:`features_from_hidden`.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at the model's sample rate.
        wav_lens : torch.Tensor or None
            Relative lengths ``[batch]`` (SpeechBrain convention).

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, output_size]`` features; padded frames are zero.
        feat_lens : torch.Tensor
            Relative lengths of the frames ``[batch]``.
        """
        return self.features_from_hidden(*self.hidden_states(wavs, wav_lens))

    def hidden_states(self, wavs, wav_lens=None):
        """The transformers part: waveform normalisation and the model.

        For a frozen encoder this is a deterministic function of the
        waveform (eval mode, no gradient), which
        :mod:`sser_lobes.training.feature_cache` stores. With trained top
        layers split off (``trainable_layers``) it is the frozen part below
        them, also without gradient: the input of the first trained layer,
        which :meth:`features_from_hidden` runs them on.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at the model's sample rate.
        wav_lens : torch.Tensor or None
            Relative lengths ``[batch]`` (SpeechBrain convention).

        Returns
        -------
        hidden : torch.Tensor
            ``[batch, frames, len(hidden_state_indices), hidden_size]``: the
            hidden states of :attr:`hidden_state_indices` (those of
            :attr:`selected_layers`, or the trained layers' input). Padded
            frames hold whatever the model computed there (zeros for the
            trained layers' input).
        hidden_lens : torch.Tensor
            Relative lengths of the frames ``[batch]``.

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
        >>> encoder = SSLEncoder(folder, output_layer="weighted_sum")
        >>> hidden, lens = encoder.hidden_states(torch.randn(2, 16000))
        >>> hidden.shape, encoder.selected_layers  # 2 layers: 3 hidden states
        (torch.Size([2, 49, 3, 32]), [0, 1, 2])
        """
        if wavs.dim() != 2:
            raise ValueError(
                "SSLEncoder expects waveforms [batch, samples], got "
                f"{tuple(wavs.shape)}."
            )
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        sample_lengths = relative_to_absolute(wav_lens, wavs.shape[1]).to(wavs.device)
        too_short = sample_lengths < self.min_samples
        if too_short.any():
            raise ValueError(
                f"{int(too_short.sum())} utterance(s) shorter than {self.min_samples} "
                "samples, the receptive field of one frame of the SSL encoder."
            )
        sample_mask = length_mask(sample_lengths, wavs.shape[1])
        wavs = wavs.float()
        if self.normalize_waveform in WAVEFORM_NORM_EPS:
            eps = WAVEFORM_NORM_EPS[self.normalize_waveform]
            wavs = normalize_valid(wavs, sample_mask, eps)
        elif self.normalize_waveform == "global":
            if float(self.waveform_stats_samples) <= 0:
                raise ValueError(
                    "normalize_waveform='global' needs the training set's "
                    "statistics: call set_waveform_stats() first (the recipes do "
                    "after the data preparation)."
                )
            wavs = (wavs - self.waveform_mean) / (self.waveform_std + GLOBAL_NORM_EPS)
            wavs = wavs * sample_mask
        else:
            wavs = wavs * sample_mask

        frames = self.frame_lengths(sample_lengths)
        if self.split_layer is not None:
            return self._frozen_part(wavs, sample_lengths, frames)
        need_hidden = self.output_layer != "last"
        grad_context = torch.no_grad() if self.finetune == "frozen" else _null()
        # This call's batch, for the modules of the fast path; set in the
        # thread that runs this forward (a DataParallel replica's own).
        token = CURRENT_CALL.set(self._call_state(wavs.shape, sample_lengths, frames))
        try:
            with grad_context:
                out = self.model(
                    wavs,
                    attention_mask=sample_mask.long(),
                    output_hidden_states=need_hidden,
                    **self._short_batch_masking(wavs),
                )
        finally:
            CURRENT_CALL.reset(token)

        if self.output_layer == "last":
            selected = [out.last_hidden_state]
        else:
            selected = [out.hidden_states[k] for k in self.selected_layers]
        if len(selected) == 1:
            hidden = selected[0][:, :, None]
        else:
            hidden = torch.stack(selected, dim=2)
        return hidden, frames.float() / hidden.shape[1]

    def _frozen_part(self, wavs, sample_lengths, frames):
        """:meth:`hidden_states` with trainable layers split off: the input of
        the first trained layer, in eval mode without gradients (padded
        frames zeroed, as the cache stores them)."""
        call = self._call_state(wavs.shape, sample_lengths, frames)
        token = CURRENT_CALL.set(call)
        try:
            with torch.no_grad():
                mask = length_mask(frames, call.frame_shape[1])
                hidden = transformer_input(self.model, wavs, mask)
                if self.split_layer > 0:
                    hidden = run_layers(self.model, hidden, mask, 0, self.split_layer)
                    hidden = hidden[-1]
                hidden = hidden * mask[:, :, None].to(hidden.dtype)
        finally:
            CURRENT_CALL.reset(token)
        return hidden[:, :, None], frames.float() / hidden.shape[1]

    def _trained_part(self, hidden, frames):
        """The trained layers on the input of the first of them (``[batch,
        frames, 1, hidden_size]``): the hidden states of
        :attr:`selected_layers`, ``[batch, frames, layers, hidden_size]``."""
        start = hidden[:, :, 0]
        batch, length = start.shape[:2]
        mask = length_mask(frames, length)
        valid_rows = None
        if not bool(mask.all()):
            valid_rows = torch.nonzero(mask.flatten()).flatten()
        call = EncoderCall(
            input_shape=(),
            sample_lengths=None,
            cnn_chunk_frames=None,
            first_norm_frames=None,
            frame_shape=(batch, length),
            valid_rows=valid_rows,
        )
        token = CURRENT_CALL.set(call)
        try:
            states = [start] + run_layers(
                self.model, start, mask, self.split_layer, self.num_layers
            )
            selected = [
                final_norm(self.model, states[-1])
                if k == "last"
                else states[k - self.split_layer]
                for k in self.selected_layers
            ]
        finally:
            CURRENT_CALL.reset(token)
        return torch.stack(selected, dim=2)

    def features_from_hidden(self, hidden, hidden_lens):
        """What follows the frozen part: the trained top layers (with
        ``trainable_layers``), the learned weighted sum, ``normalize_layers``,
        ``output_norm`` and the padding mask.

        Arguments
        ---------
        hidden : torch.Tensor
            ``[batch, frames, len(hidden_state_indices), hidden_size]``, as
            :meth:`hidden_states` returns it (or as read from a feature
            cache, zero-padded).
        hidden_lens : torch.Tensor
            Relative lengths of the frames ``[batch]``.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, output_size]`` features; padded frames are zero.
        feat_lens : torch.Tensor
            Relative lengths of the frames ``[batch]``.

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
        >>> encoder = SSLEncoder(folder, output_layer="weighted_sum").eval()
        >>> wavs, lens = torch.randn(2, 16000), torch.tensor([1.0, 0.6])
        >>> hidden, hidden_lens = encoder.hidden_states(wavs, lens)
        >>> feats, _ = encoder.features_from_hidden(hidden, hidden_lens)
        >>> torch.equal(feats, encoder(wavs, lens)[0])
        True
        """
        frames = relative_to_absolute(hidden_lens, hidden.shape[1]).to(hidden.device)
        if self.split_layer is not None:
            hidden = self._trained_part(hidden, frames)
        if self.output_layer == "weighted_sum":
            if self.normalize_layers:
                hidden = F.layer_norm(hidden, hidden.shape[-1:])
            weights = F.softmax(self.layer_weights, dim=0).to(hidden.dtype)
            # [layers] @ [batch, frames, layers, dim]: no [.., layers, dim]
            # temporary, in the forward or the backward pass.
            feats = torch.matmul(weights, hidden)
        else:
            feats = hidden[:, :, 0]

        frame_mask = length_mask(frames, feats.shape[1])
        feats = normalize_features(feats, frame_mask, self.output_norm)
        feats = feats * frame_mask[:, :, None].to(feats.dtype)
        return feats, frames.float() / feats.shape[1]

    def set_waveform_stats(self, mean, std, samples):
        """Set the training-set statistics of ``normalize_waveform="global"``.

        Arguments
        ---------
        mean, std : float
            Mean and standard deviation of every sample of the training audio.
        samples : int
            How many samples they were computed on (kept, to tell set
            statistics from the defaults).

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
        >>> enc = SSLEncoder(folder, normalize_waveform="global")
        >>> enc.set_waveform_stats(0.01, 0.2, 16000)
        >>> sorted(k for k in enc.state_dict() if k.startswith("waveform"))
        ['waveform_mean', 'waveform_stats_samples', 'waveform_std']
        """
        if self.normalize_waveform != "global":
            raise ValueError(
                "set_waveform_stats is for normalize_waveform='global', this "
                f"encoder uses {self.normalize_waveform!r}."
            )
        if not std > 0 or samples <= 0:
            raise ValueError(f"invalid waveform statistics: std={std}, n={samples}")
        self.waveform_mean.fill_(float(mean))
        self.waveform_std.fill_(float(std))
        self.waveform_stats_samples.fill_(float(samples))


def receptive_field(kernels, strides):
    """Samples the CNN feature encoder needs for one output frame.

    Example
    -------
    >>> receptive_field([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    400
    """
    field = 1
    for kernel, stride in zip(reversed(kernels), reversed(strides)):
        field = (field - 1) * stride + kernel
    return field


def _null():
    return contextlib.nullcontext()


def _split_layer(finetune, trainable_layers, num_layers):
    """The first trained layer of ``finetune`` with ``trainable_layers``
    (None: no split).

    Example
    -------
    >>> _split_layer("top", 3, 12), _split_layer("lora", None, 12)
    (9, None)
    >>> _split_layer("partial", 3, 12)
    Traceback (most recent call last):
    ...
    ValueError: trainable_layers is for finetune='top' or 'lora', got ...
    """
    if trainable_layers is None:
        if finetune == "top":
            raise ValueError("finetune='top' needs trainable_layers (e.g. 3).")
        return None
    if finetune not in ("top", "lora"):
        raise ValueError(
            "trainable_layers is for finetune='top' or 'lora', got "
            f"finetune={finetune!r}."
        )
    if (
        isinstance(trainable_layers, bool)
        or not isinstance(trainable_layers, int)
        or not 1 <= trainable_layers <= num_layers
    ):
        raise ValueError(
            f"trainable_layers must be in 1..{num_layers} (the model's "
            f"transformer layers), got {trainable_layers!r}."
        )
    return num_layers - trainable_layers


def _choice(name, value, choices, aliases):
    """``value`` (or its alias, e.g. a bool) if it is one of ``choices``."""
    if isinstance(value, bool) or value is None:
        value = aliases.get(value, value)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def layer_selection(layers, num_layers=None):
    """Hidden-state indices of ``weighted_sum_layers``.

    Arguments
    ---------
    layers : list of int, str or None
        Indices, a range ``"A-B"`` (inclusive), or ``None`` for all.
    num_layers : int or None
        Transformer layers of the model (hidden states ``0..num_layers``);
        ``None`` checks the form only (and ``layers=None`` is then ``None``).

    Returns
    -------
    list of int or None
        Sorted, distinct indices.

    Example
    -------
    >>> layer_selection("8-11", 12), layer_selection(None, 2)
    ([8, 9, 10, 11], [0, 1, 2])
    >>> layer_selection([3, 1], 12)
    [1, 3]
    >>> layer_selection([1, 13], 12)
    Traceback (most recent call last):
    ...
    ValueError: weighted_sum_layers: hidden states are 0..12, got [1, 13].
    """
    if layers is None:
        return None if num_layers is None else list(range(num_layers + 1))
    if isinstance(layers, str):
        first, sep, last = layers.partition("-")
        if not (sep and first.strip().isdigit() and last.strip().isdigit()):
            raise ValueError(
                f"weighted_sum_layers: a range is 'A-B' (e.g. '8-16'), got {layers!r}."
            )
        layers = list(range(int(first), int(last) + 1))
    if (
        not isinstance(layers, (list, tuple))
        or not layers
        or any(isinstance(k, bool) or not isinstance(k, int) for k in layers)
        or len(set(layers)) != len(layers)
    ):
        raise ValueError(
            "weighted_sum_layers must be distinct hidden-state indices (e.g. "
            f"[8, 9, 10]) or a range 'A-B', got {layers!r}."
        )
    top = num_layers if num_layers is not None else float("inf")
    if any(not 0 <= k <= top for k in layers):
        span = f"0..{num_layers}" if num_layers is not None else ">= 0"
        raise ValueError(
            f"weighted_sum_layers: hidden states are {span}, got {list(layers)}."
        )
    return sorted(layers)


def normalize_features(feats, mask, mode):
    """Normalise encoder features over valid frames only.

    Arguments
    ---------
    feats : torch.Tensor
        ``[batch, frames, dim]``.
    mask : torch.Tensor
        Bool ``[batch, frames]``, True on valid frames.
    mode : str or None
        ``"utterance"``: zero mean, unit variance over each utterance's
        valid frames and all channels (SpeechBrain's ``output_norm``, which
        takes ``F.layer_norm`` over time and channels, without the padding);
        ``"frame"``: each frame over its channels; ``None``: unchanged.

    Example
    -------
    >>> x = torch.randn(1, 6, 4)
    >>> padded = torch.cat([x, torch.randn(1, 3, 4)], dim=1)
    >>> mask = torch.tensor([[True] * 6 + [False] * 3])
    >>> full = torch.ones(1, 6, dtype=torch.bool)
    >>> alone = normalize_features(x, full, "utterance")
    >>> torch.allclose(alone, F.layer_norm(x, x.shape[1:]), atol=1e-5)
    True
    >>> batched = normalize_features(padded, mask, "utterance")[:, :6]
    >>> torch.allclose(batched, alone, atol=1e-5)
    True
    """
    if mode is None:
        return feats
    if mode == "frame":
        return F.layer_norm(feats, feats.shape[-1:])
    weights = mask.to(feats.dtype)[:, :, None]
    count = (weights.sum(dim=(1, 2)) * feats.shape[-1]).clamp(min=1.0)
    mean = (feats * weights).sum(dim=(1, 2)) / count
    centred = feats - mean[:, None, None]
    var = ((centred * weights) ** 2).sum(dim=(1, 2)) / count
    # eps as F.layer_norm's default
    return centred * torch.rsqrt(var + 1e-5)[:, None, None]


def _quiet_from_pretrained(source, **kwargs):
    """``AutoModel.from_pretrained`` without the unused-weights report.

    Pretraining-only weights (quantizer, project_q, ...) and layers dropped by
    ``num_layers`` are expected to be unused.
    """
    with quiet_transformers():
        return AutoModel.from_pretrained(source, **kwargs)


def _checkpoint_normalizes(source, config, cache_dir, revision):
    """``do_normalize`` from the checkpoint's feature-extractor config."""
    try:
        extractor = AutoFeatureExtractor.from_pretrained(
            source, cache_dir=cache_dir, revision=revision
        )
        return bool(getattr(extractor, "do_normalize", True))
    except OSError:
        logger.info(
            "%s has no feature-extractor config; normalising waveforms for "
            "layer-norm models only.",
            source,
        )
        return config.feat_extract_norm == "layer"
