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
"""

import contextlib
import json
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from sser_lobes.hf_utils import quiet_transformers

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
FINETUNE_MODES = ("frozen", "partial", "entire")


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel group norm whose statistics ignore padded frames.

    Drop-in replacement (same parameters and state-dict keys) for the
    ``nn.GroupNorm(num_groups=C, num_channels=C)`` of the first CNN layer of
    wav2vec2-base style models. The owner sets ``valid_frames`` (a long tensor
    ``[batch]`` with the number of valid frames of each row) just before the
    forward pass and clears it afterwards; with ``valid_frames=None`` it is a
    plain group norm.

    Arguments
    ---------
    num_channels : int
        Number of channels (one group per channel).
    eps : float
        Added to the variance.

    Example
    -------
    >>> norm = MaskedGroupNorm(4)
    >>> x = torch.randn(1, 4, 10)
    >>> padded = torch.cat([x, torch.randn(1, 4, 6)], dim=2)
    >>> norm.valid_frames = torch.tensor([10])
    >>> y = norm(padded)[..., :10]
    >>> norm.valid_frames = None
    >>> torch.allclose(y, norm(x), atol=1e-5)
    True
    """

    def __init__(self, num_channels, eps=1e-5):
        super().__init__(num_channels, num_channels, eps=eps, affine=True)
        self.valid_frames = None

    def forward(self, x):
        """Normalise ``x`` ``[batch, channels, time]`` over its valid frames."""
        if self.valid_frames is None:
            return super().forward(x)
        x32 = x.float()
        time = torch.arange(x.shape[-1], device=x.device)
        mask = (time[None, :] < self.valid_frames[:, None].to(x.device)).float()
        mask = mask[:, None, :]
        count = mask.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (x32 * mask).sum(-1, keepdim=True) / count
        var = (((x32 - mean) * mask) ** 2).sum(-1, keepdim=True) / count
        y = (x32 - mean) / torch.sqrt(var + self.eps)
        y = y * self.weight.float()[None, :, None] + self.bias.float()[None, :, None]
        return (y * mask).to(x.dtype)


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
    utterance (biased variance, ``eps=1e-7``), and sets padding to zero.

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
        in Wang et al. 2021). ``"entire"``: everything trains.
    output_layer : str or int
        ``"last"``: the last transformer layer; an int ``k``: hidden state
        ``k`` (0 is the input of the first transformer layer, ``num_layers``
        the last); ``"weighted_sum"``: a learned softmax-weighted sum of all
        hidden states (SUPERB style; the weights train in every mode).
    num_layers : int or None
        Keep only the first ``num_layers`` transformer layers (the others are
        neither loaded nor computed).
    output_norm : bool
        Layer-normalise the output features (no learned parameters), as
        SpeechBrain's wrapper does with ``output_norm: True``.
    normalize_waveform : bool or None
        Zero-mean unit-variance normalisation of each waveform over its valid
        samples. ``None`` follows the checkpoint's feature-extractor config
        (``do_normalize``), falling back to ``True`` for layer-norm models.
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

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="wavlm")
    >>> encoder = SSLEncoder(folder, finetune="partial")
    >>> feats, lens = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, encoder.output_size
    (torch.Size([2, 49, 32]), 32)
    >>> lens
    tensor([1.0000, 0.4898])
    """

    def __init__(
        self,
        source=None,
        finetune="partial",
        output_layer="last",
        num_layers=None,
        output_norm=False,
        normalize_waveform=None,
        normalize_layers=False,
        config_overrides=None,
        cache_dir=None,
        revision=None,
        config=None,
        load_weights=True,
    ):
        super().__init__()
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
        self.output_norm = output_norm
        self.normalize_layers = normalize_layers

        config = self.build_config(
            source,
            config=config,
            num_layers=num_layers,
            config_overrides=config_overrides,
            cache_dir=cache_dir,
            revision=revision,
        )
        self.num_layers = config.num_hidden_layers

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
            normalize_waveform = (
                _checkpoint_normalizes(self.source, config, cache_dir, revision)
                if source is not None
                else config.feat_extract_norm == "layer"
            )
        self.normalize_waveform = bool(normalize_waveform)

        self.uses_group_norm = config.feat_extract_norm == "group"
        if self.uses_group_norm:
            first = self.model.feature_extractor.conv_layers[0]
            masked = MaskedGroupNorm(
                first.layer_norm.num_channels, first.layer_norm.eps
            )
            masked.load_state_dict(first.layer_norm.state_dict())
            first.layer_norm = masked

        if output_layer == "weighted_sum":
            self.layer_weights = nn.Parameter(torch.zeros(self.num_layers + 1))

        self.output_size = config.hidden_size
        self.min_samples = int(self._receptive_field())

        if finetune == "frozen":
            for param in self.model.parameters():
                param.requires_grad = False
        elif finetune == "partial":
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
        >>> from sser_lobes.tiny_ssl import make_tiny_ssl
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
        field = 1
        for kernel, stride in zip(
            reversed(self.config.conv_kernel), reversed(self.config.conv_stride)
        ):
            field = (field - 1) * stride + kernel
        return field

    def train(self, mode=True):
        """Set train/eval mode; frozen parts always stay in eval mode."""
        super().train(mode)
        if self.finetune == "frozen":
            self.model.eval()
        elif self.finetune == "partial":
            self.model.feature_extractor.eval()
        return self

    def frame_lengths(self, sample_lengths):
        """Number of output frames for integer sample lengths.

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.tiny_ssl import make_tiny_ssl
        >>> enc = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"))
        >>> enc.frame_lengths(torch.tensor([400, 16000]))
        tensor([ 1, 49])
        """
        return self.model._get_feat_extract_output_lengths(sample_lengths).long()

    @contextlib.contextmanager
    def _masked_first_norm(self, sample_lengths):
        """Give the first-layer group norm the valid frame counts of this batch."""
        if not self.uses_group_norm:
            yield
            return
        # Looked up through the module tree (not cached on self) so that
        # DataParallel replicas set their own copy.
        first = self.model.feature_extractor.conv_layers[0]
        kernel, stride = self.config.conv_kernel[0], self.config.conv_stride[0]
        first.layer_norm.valid_frames = (sample_lengths - kernel) // stride + 1
        try:
            yield
        finally:
            first.layer_norm.valid_frames = None

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
        if self.normalize_waveform:
            wavs = normalize_valid(wavs, sample_mask)
        else:
            wavs = wavs * sample_mask

        need_hidden = self.output_layer != "last"
        grad_context = torch.no_grad() if self.finetune == "frozen" else _null()
        with grad_context, self._masked_first_norm(sample_lengths):
            out = self.model(
                wavs,
                attention_mask=sample_mask.long(),
                output_hidden_states=need_hidden,
                **self._short_batch_masking(wavs),
            )

        if self.output_layer == "last":
            feats = out.last_hidden_state
        elif self.output_layer == "weighted_sum":
            hidden = torch.stack(out.hidden_states, dim=0)
            if self.normalize_layers:
                hidden = F.layer_norm(hidden, hidden.shape[-1:])
            weights = F.softmax(self.layer_weights, dim=0).to(hidden.dtype)
            feats = (weights[:, None, None, None] * hidden).sum(0)
        else:
            feats = out.hidden_states[self.output_layer]

        if self.output_norm:
            feats = F.layer_norm(feats, feats.shape[-1:])
        frames = self.frame_lengths(sample_lengths)
        feats = feats * length_mask(frames, feats.shape[1])[:, :, None].to(feats.dtype)
        return feats, frames.float() / feats.shape[1]


def _null():
    return contextlib.nullcontext()


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
