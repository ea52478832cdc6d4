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
parameters and state-dict keys:

* the CNN runs on each utterance's valid samples alone, in cache-sized
  chunks, with the first-layer group norm folded into its convolution
  (:meth:`SSLEncoder._utterance_cnn`): no padding is computed and no masking
  is needed;
* the feed-forward blocks skip padded frames (:class:`_PackedFeedForward`);
* WavLM's attention uses ``scaled_dot_product_attention`` on contiguous
  projections (:class:`FastWavLMAttention`) and the position convolution runs
  channels-last (:class:`_ChannelsLastPositionalConv`).

The lengths of the batch that these modules need are the state of one
:meth:`SSLEncoder.forward` call, held in a context variable
(:class:`_EncoderCall`) and not on the shared modules: one encoder can serve
several threads at once (a web server's or a batch job's thread pool,
DataParallel's replicas), each call seeing only its own batch.

``python -m sser_lobes.benchmark_inference`` measures the result against
transformers' pipeline and SpeechBrain's wrapper on the same model.
"""

import contextlib
import contextvars
import json
import logging
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from packaging.version import Version
from torch import nn
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
from transformers.activations import GELUActivation
from transformers.models.hubert.modeling_hubert import (
    HubertFeatureEncoder,
    HubertFeedForward,
    HubertPositionalConvEmbedding,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2FeatureEncoder,
    Wav2Vec2FeedForward,
    Wav2Vec2PositionalConvEmbedding,
)
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
    WavLMFeatureEncoder,
    WavLMFeedForward,
    WavLMPositionalConvEmbedding,
)

from sser_lobes.hf_utils import quiet_transformers

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
FINETUNE_MODES = ("frozen", "partial", "entire")
OUTPUT_NORMS = ("utterance", "frame", None)
WAVEFORM_NORMS = ("utterance", "global", "off")
#: Added to the standard deviation by ``normalize_waveform="global"`` (as the
#: Odyssey 2024 baseline's ``(x - mean) / (std + 1e-6)``).
GLOBAL_NORM_EPS = 1e-6

#: transformers versions whose internals the fast path was checked against
#: (setup.py requires the same range).
TRANSFORMERS_RANGE = ("5.16", "6")


def check_transformers_version(version=None):
    """Raise if ``transformers`` is older than the fast path supports.

    Before 5.16, WavLM's attention took ``output_attentions`` before
    ``index`` (the training path of :class:`FastWavLMAttention` breaks) and
    ``hidden_states[num_layers]`` of stable-layer-norm models carried the
    final layer norm (``output_layer`` would silently change meaning). A
    version from 6 on is untested and only logged.

    Arguments
    ---------
    version : str or None
        The version to check; ``None`` checks the installed one.

    Example
    -------
    >>> check_transformers_version("5.23.0")
    >>> check_transformers_version("4.57.6")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    RuntimeError: sser_lobes.ssl_encoder needs transformers>=5.16,<6; 4.57.6 is ...
    """
    if version is None:
        import transformers

        version = transformers.__version__
    low, high = TRANSFORMERS_RANGE
    spec = f"transformers>={low},<{high}"
    if Version(version) < Version(low):
        raise RuntimeError(
            f"sser_lobes.ssl_encoder needs {spec}; {version} is installed "
            f'(pip install "{spec}").'
        )
    if Version(version) >= Version(high):
        logger.warning(
            "sser_lobes.ssl_encoder was tested with %s; %s is installed.",
            spec,
            version,
        )


class _EncoderCall(NamedTuple):
    """What the model's modules need to know about the batch of one
    :meth:`SSLEncoder.forward` call.

    :meth:`SSLEncoder.forward` sets it in :data:`_CURRENT_CALL` for the
    duration of the transformers forward pass and resets it afterwards; the
    modules read it there. A context variable has one value per thread (and
    per asyncio task), so calls running at the same time on one encoder, or
    on DataParallel replicas, never see each other's batch, and nested calls
    (one encoder inside another model's forward) restore the outer state.
    Each module checks that the tensor it receives has the shape of this
    call's batch and otherwise runs its plain transformers code.

    Attributes
    ----------
    input_shape : tuple of int
        ``(batch, samples)`` of the padded waveforms.
    sample_lengths : torch.Tensor
        Long ``[batch]``: valid samples of each row.
    utterance_cnn : callable or None
        Features ``[frames, channels]`` of one waveform ``[samples]``
        (:meth:`SSLEncoder._utterance_cnn`), run by the eval-mode feature
        encoder on each row's valid samples; ``None``: the CNN runs batched.
    first_norm_frames : torch.Tensor or None
        Long ``[batch]``: valid frames of the first CNN layer, for the
        group norm of a batched CNN (:class:`MaskedGroupNorm`).
    frame_shape : tuple of int
        ``(batch, frames)`` of the transformer's hidden states.
    valid_rows : torch.Tensor or None
        Flat indices of the valid frames in ``[batch * frames]``, for the
        feed-forward blocks (:class:`_PackedFeedForward`); ``None`` when
        the batch has no padded frame.
    """

    input_shape: tuple
    sample_lengths: torch.Tensor
    utterance_cnn: Callable | None
    first_norm_frames: torch.Tensor | None
    frame_shape: tuple
    valid_rows: torch.Tensor | None


#: The :class:`_EncoderCall` of the running :meth:`SSLEncoder.forward` in this
#: thread or task (``None`` outside one).
_CURRENT_CALL = contextvars.ContextVar("sser_ssl_encoder_call", default=None)


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel group norm whose statistics ignore padded frames.

    Drop-in replacement (same parameters and state-dict keys) for the
    ``nn.GroupNorm(num_groups=C, num_channels=C)`` of the first CNN layer of
    wav2vec2-base style models. The number of valid frames of each row is
    passed as ``valid_frames`` or, when transformers calls the module inside
    :meth:`SSLEncoder.forward`, read from that call's state
    (:class:`_EncoderCall`); without either it is a plain group norm.
    :class:`SSLEncoder` uses it when the CNN trains (``finetune="entire"``);
    in eval mode the CNN runs utterance by utterance and needs no mask.

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
    >>> y = norm(padded, valid_frames=torch.tensor([10]))[..., :10]
    >>> torch.allclose(y, norm(x), atol=1e-5)
    True
    """

    def __init__(self, num_channels, eps=1e-5):
        super().__init__(num_channels, num_channels, eps=eps, affine=True)

    def forward(self, x, valid_frames=None):
        """Normalise ``x`` ``[batch, channels, time]`` over its valid frames.

        Padded frames are set to zero. The statistics of each row are taken
        on its valid slice, then one fused scale-and-shift pass normalises
        the batch; a batch without padding goes through the plain group norm.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, time]`` activations.
        valid_frames : torch.Tensor or None
            Long ``[batch]``: valid frames of each row. ``None`` takes them
            from the running :meth:`SSLEncoder.forward` call, if any.
        """
        if valid_frames is None:
            call = _CURRENT_CALL.get()
            if call is not None and call.first_norm_frames is not None:
                if call.first_norm_frames.shape[0] == x.shape[0]:
                    valid_frames = call.first_norm_frames
        if valid_frames is None:
            return super().forward(x)
        length = x.shape[-1]
        frames = valid_frames.to(x.device).clamp(max=length)
        if bool((frames >= length).all()):
            return super().forward(x)
        x32 = x.float()
        stats = [
            torch.var_mean(x32[row, :, : max(n, 1)], dim=-1, correction=0)
            for row, n in enumerate(frames.tolist())
        ]
        var = torch.stack([v for v, _ in stats])
        mean = torch.stack([m for _, m in stats])
        scale = self.weight.float() * torch.rsqrt(var + self.eps)
        shift = self.bias.float() - mean * scale
        y = torch.addcmul(shift[:, :, None], x32, scale[:, :, None])
        padded = torch.arange(length, device=x.device)[None, :] >= frames[:, None]
        return y.masked_fill_(padded[:, None, :], 0.0).to(x.dtype)


class FastWavLMAttention(WavLMAttention):
    """transformers' WavLM attention with a faster evaluation path.

    transformers runs WavLM's self-attention through
    ``F.multi_head_attention_forward`` on a time-major view of the hidden
    states, and WavLM has no ``attn_implementation="sdpa"`` (its relative
    position bias is an additive float mask). With frozen weights and a
    batch of more than one utterance, the query, key and value projections
    of that non-contiguous view become one small matrix product per frame
    (torch only folds them into one product when the weights need a
    gradient), and the explicit attention weights cost a softmax pass and
    copies. In eval mode this class projects the contiguous
    ``[batch, time, dim]`` tensor instead and calls
    ``F.scaled_dot_product_attention`` with the gated position bias (padded
    keys set to ``-inf``) as the mask: the same function, about twice as
    fast on a CPU batch of 8 (base size). Training mode (attention dropout)
    runs the original code. Parameters and state-dict keys are unchanged:
    :class:`SSLEncoder` switches the class of the model's attention modules.

    Example
    -------
    >>> att = FastWavLMAttention(embed_dim=8, num_heads=2).eval()
    >>> h = torch.randn(2, 5, 8)
    >>> mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    >>> fast, _, bias = att(h, mask)
    >>> slow, _, _ = WavLMAttention.forward(att, h, mask)
    >>> torch.allclose(fast[0], slow[0], atol=1e-6)
    True
    >>> torch.allclose(fast[1, :3], slow[1, :3], atol=1e-6)
    True
    >>> bias.shape  # the position bias handed to the next layer, as in HF
    torch.Size([4, 5, 5])
    """

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        position_bias=None,
        index=0,
        **kwargs,
    ):
        """Attention with the gated relative position bias.

        In eval mode the gate is projected from the contiguous hidden states
        (transformers projects a permuted view, which frozen weights turn
        into one small product per head and utterance) and padded keys are
        masked in the gated bias itself.
        """
        if self.training:
            return super().forward(
                hidden_states, attention_mask, position_bias, index, **kwargs
            )
        batch, length, _ = hidden_states.shape
        heads = self.num_heads
        if position_bias is None:
            position_bias = self.compute_bias(length, length)
            position_bias = position_bias.unsqueeze(0).repeat(batch, 1, 1, 1)
            position_bias = position_bias.view(batch * heads, length, length)
        gate_input = hidden_states.view(batch, length, heads, self.head_dim)
        projected = self.gru_rel_pos_linear(gate_input)
        projected = projected.view(batch, length, heads, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(projected).unbind(-1)
        const = self.gru_rel_pos_const.view(1, 1, heads)
        gate = (gate_a * (gate_b * const - 1.0) + 2.0).transpose(1, 2).contiguous()
        gated = gate[..., None] * position_bias.view(batch, heads, length, length)
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            gated.masked_fill_(~attention_mask.bool()[:, None, None, :], float("-inf"))
        output, _ = self.torch_multi_head_self_attention(
            hidden_states, None, gated.view(batch * heads, length, length)
        )
        return output, None, position_bias

    def torch_multi_head_self_attention(
        self, hidden_states, attention_mask, gated_position_bias
    ):
        """Self-attention of ``[batch, time, dim]`` states (see the class doc)."""
        if self.training:
            return super().torch_multi_head_self_attention(
                hidden_states, attention_mask, gated_position_bias
            )
        batch, length, dim = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)

        def project(layer):
            out = F.linear(hidden_states, layer.weight, layer.bias)
            return out.view(shape).transpose(1, 2)

        query, key, value = (
            project(self.q_proj),
            project(self.k_proj),
            project(self.v_proj),
        )
        bias = gated_position_bias.view(batch, self.num_heads, length, length)
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            padded = ~attention_mask.bool()[:, None, None, :]
            bias = bias.masked_fill(padded, float("-inf"))
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias.to(query.dtype)
        )
        context = context.transpose(1, 2).reshape(batch, length, dim)
        return F.linear(context, self.out_proj.weight, self.out_proj.bias), None


class _ChannelsLastPositionalConv:
    """Eval-mode forward of the convolutional position embedding of
    wav2vec 2.0 / HuBERT / WavLM with a channels-last convolution.

    The embedding is a grouped convolution with a long kernel (128) over
    ``[batch, dim, time]``, the transpose of contiguous hidden states: as a
    2-D convolution on that layout (no copy) oneDNN runs it about twice as
    fast as transformers' 1-D call, with the same weights (weight norm
    included) and result.

    Example
    -------
    >>> from transformers import WavLMConfig
    >>> config = WavLMConfig(
    ...     hidden_size=16, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4
    ... )
    >>> conv = FastWavLMPositionalConvEmbedding(config).eval()
    >>> h = torch.randn(2, 10, 16)
    >>> slow = WavLMPositionalConvEmbedding.forward(conv, h)
    >>> torch.allclose(conv(h), slow, atol=1e-6)
    True
    """

    def forward(self, hidden_states):
        """Position embeddings ``[batch, time, dim]`` of ``hidden_states``."""
        if self.training or getattr(self, "batch_norm", None) is not None:
            return super().forward(hidden_states)
        conv = self.conv
        x = hidden_states.transpose(1, 2)[:, :, None, :]
        x = x.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(
            x,
            conv.weight[:, :, None, :],
            conv.bias,
            stride=(1, conv.stride[0]),
            padding=(0, conv.padding[0]),
            dilation=(1, conv.dilation[0]),
            groups=conv.groups,
        )
        out = self.activation(self.padding(out[:, :, 0, :]))
        return out.transpose(1, 2)


class FastWavLMPositionalConvEmbedding(
    _ChannelsLastPositionalConv, WavLMPositionalConvEmbedding
):
    """WavLM's position embedding, channels-last in eval mode."""


class FastWav2Vec2PositionalConvEmbedding(
    _ChannelsLastPositionalConv, Wav2Vec2PositionalConvEmbedding
):
    """wav2vec 2.0's position embedding, channels-last in eval mode."""


class FastHubertPositionalConvEmbedding(
    _ChannelsLastPositionalConv, HubertPositionalConvEmbedding
):
    """HuBERT's position embedding, channels-last in eval mode."""


def _activate(activation, x):
    """``activation(x)``, in place for the exact GELU of transformers when
    ``x`` is a temporary that autograd does not track (no new buffer)."""
    if (
        isinstance(activation, GELUActivation)
        and activation.act is F.gelu
        and not x.requires_grad
    ):
        return torch.ops.aten.gelu_(x)
    return activation(x)


class _PackedFeedForward:
    """Eval-mode forward of a transformer layer's feed-forward block that
    skips padded frames.

    The feed-forward block is two thirds of a transformer layer's matrix
    products and works frame by frame; padded frames never reach a valid one
    (attention masks them out as keys), so only the valid frames are
    computed (padded rows get zeros). Their flat indices are passed as
    ``valid_rows`` or, when transformers calls the block inside
    :meth:`SSLEncoder.forward`, read from that call's state
    (:class:`_EncoderCall`).

    Example
    -------
    >>> from transformers import WavLMConfig
    >>> ffn = FastWavLMFeedForward(WavLMConfig(hidden_size=8, intermediate_size=16))
    >>> ffn = ffn.eval()
    >>> h = torch.randn(2, 3, 8)
    >>> rows = torch.tensor([0, 1, 2, 3])  # the second utterance: 1 frame
    >>> out = ffn(h, valid_rows=rows)
    >>> torch.allclose(out[0], WavLMFeedForward.forward(ffn, h)[0], atol=1e-6)
    True
    >>> out[1, 1:].abs().max().item()
    0.0
    """

    def forward(self, hidden_states, valid_rows=None):
        """Feed-forward output of ``[batch, time, dim]`` hidden states.

        ``valid_rows`` (long ``[n]``, flat indices of the valid frames in
        ``[batch * time]``) defaults to those of the running
        :meth:`SSLEncoder.forward` call; ``None`` there: every frame.
        """
        if self.training:
            return super().forward(hidden_states)
        rows = valid_rows
        if rows is None:
            call = _CURRENT_CALL.get()
            if call is not None and call.frame_shape == hidden_states.shape[:2]:
                rows = call.valid_rows
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        if rows is not None:
            flat = flat.index_select(0, rows)
        # Eval mode: the dropouts are identities.
        inner = _activate(self.intermediate_act_fn, self.intermediate_dense(flat))
        out = self.output_dense(inner)
        if rows is None:
            return out.view(hidden_states.shape)
        packed = out.new_zeros(hidden_states.shape[:-1].numel(), out.shape[-1])
        return packed.index_copy_(0, rows, out).view(hidden_states.shape)


class FastWavLMFeedForward(_PackedFeedForward, WavLMFeedForward):
    """WavLM's feed-forward block, valid frames only in eval mode."""


class FastWav2Vec2FeedForward(_PackedFeedForward, Wav2Vec2FeedForward):
    """wav2vec 2.0's feed-forward block, valid frames only in eval mode."""


class FastHubertFeedForward(_PackedFeedForward, HubertFeedForward):
    """HuBERT's feed-forward block, valid frames only in eval mode."""


class _UtteranceWiseFeatureEncoder:
    """Eval-mode forward of the CNN feature encoder that runs each utterance
    of a padded batch alone, on its valid samples.

    Inside :meth:`SSLEncoder.forward`, whose call state
    (:class:`_EncoderCall`) gives the sample lengths and the per-utterance
    CNN (:meth:`SSLEncoder._utterance_cnn`), the features of each row are
    computed from its valid samples only: no padding is computed, and a
    group-norm first layer normalises over the utterance itself. Padded
    frames are zero. Otherwise (training mode, a call from outside
    :class:`SSLEncoder`, or a batched CNN) it is transformers' forward, whose
    group norm is masked in training (:class:`MaskedGroupNorm`).
    Parameters and state-dict keys are unchanged: :class:`SSLEncoder`
    switches the class of the model's feature encoder.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="hubert")
    >>> enc = SSLEncoder(folder, finetune="frozen")  # group-norm CNN
    >>> type(enc.model.feature_extractor).__name__
    'FastHubertFeatureEncoder'
    >>> wavs, lens = torch.randn(2, 9000), torch.tensor([1.0, 0.5])
    >>> fast, _ = enc(wavs, lens)  # eval: utterance by utterance
    >>> _ = enc.model.feature_extractor.train()  # batched, masked norm
    >>> slow, _ = enc(wavs, lens)
    >>> torch.allclose(fast, slow, atol=1e-5)
    True
    """

    def forward(self, input_values):
        """CNN features ``[batch, channels, frames]`` of ``[batch, samples]``.

        In eval mode the features are stored time-major
        (``[batch, frames, channels]``) and returned as a transposed view,
        which is the layout transformers' feature projection reads next.
        """
        call = None if self.training else _CURRENT_CALL.get()
        if (
            call is None
            or call.utterance_cnn is None
            or call.input_shape != input_values.shape
        ):
            return super().forward(input_values)
        channels = self.conv_layers[-1].conv.out_channels
        out = input_values.new_zeros(call.frame_shape[0], call.frame_shape[1], channels)
        for row, length in enumerate(call.sample_lengths.tolist()):
            feats = call.utterance_cnn(input_values[row, :length])
            out[row, : feats.shape[0]] = feats
        return out.transpose(1, 2)


class FastWavLMFeatureEncoder(_UtteranceWiseFeatureEncoder, WavLMFeatureEncoder):
    """WavLM's CNN feature encoder, utterance by utterance in eval mode."""


class FastWav2Vec2FeatureEncoder(_UtteranceWiseFeatureEncoder, Wav2Vec2FeatureEncoder):
    """wav2vec 2.0's CNN feature encoder, utterance by utterance in eval mode."""


class FastHubertFeatureEncoder(_UtteranceWiseFeatureEncoder, HubertFeatureEncoder):
    """HuBERT's CNN feature encoder, utterance by utterance in eval mode."""


def time_major_weights(weight, stride):
    """Matrices of a strided 1-D convolution for :func:`time_major_conv`.

    Arguments
    ---------
    weight : torch.Tensor
        ``[out_channels, in_channels, kernel]`` convolution weight.
    stride : int
        The convolution's stride.

    Returns
    -------
    list of torch.Tensor
        One ``[taps * in_channels, out_channels]`` matrix per group of
        ``stride`` consecutive taps (the last group may be shorter).
    """
    kernel = weight.shape[-1]
    return [
        weight[:, :, start : start + stride]
        .permute(2, 1, 0)
        .reshape(-1, weight.shape[0])
        .contiguous()
        for start in range(0, kernel, stride)
    ]


def time_major_conv(x, weights, conv, bias=None):
    """``conv`` (no padding, no dilation, one group) on time-major input.

    Output frame ``t`` of a convolution with kernel ``k`` and stride ``s``
    is ``sum_j x[s t + j] W_j``. Taps ``j = s q .. s q + s - 1`` read the
    consecutive rows ``s (t + q) ..``, which for all ``t`` form a strided
    matrix view of ``x`` (rows ``s * channels`` apart): the convolution is
    ``ceil(k / s)`` matrix products, without an unfolded copy of ``x``.

    Arguments
    ---------
    x : torch.Tensor
        ``[time, in_channels]`` contiguous input.
    weights : list of torch.Tensor
        :func:`time_major_weights` of the convolution.
    conv : torch.nn.Conv1d
        The convolution (kernel size and stride are read from it).
    bias : torch.Tensor or None
        ``[out_channels]``; defaults to ``conv.bias``.

    Returns
    -------
    torch.Tensor
        ``[frames, out_channels]``, equal to ``conv(x.T[None])[0].T``.

    Example
    -------
    >>> conv = nn.Conv1d(4, 6, kernel_size=3, stride=2)
    >>> x = torch.randn(11, 4)
    >>> out = time_major_conv(x, time_major_weights(conv.weight, 2), conv)
    >>> out.shape
    torch.Size([5, 6])
    >>> torch.allclose(out, conv(x.T[None])[0].T, atol=1e-6)
    True
    """
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    if bias is None:
        bias = conv.bias
    x = x.contiguous()
    length, channels = x.shape
    frames = (length - kernel) // stride + 1
    out = None
    for group, matrix in enumerate(weights):
        view = x.as_strided(
            (frames, matrix.shape[0]),
            (stride * channels, 1),
            x.storage_offset() + group * stride * channels,
        )
        if out is not None:
            # In place, so not autocast: follow the first product's dtype.
            out = out.addmm_(view.to(out.dtype), matrix.to(out.dtype))
        elif bias is not None:
            out = torch.addmm(bias, view, matrix)
        else:
            out = view @ matrix
    return out


# transformers class -> the same module with a faster eval path.
FAST_MODULES = {
    WavLMAttention: FastWavLMAttention,
    WavLMPositionalConvEmbedding: FastWavLMPositionalConvEmbedding,
    Wav2Vec2PositionalConvEmbedding: FastWav2Vec2PositionalConvEmbedding,
    HubertPositionalConvEmbedding: FastHubertPositionalConvEmbedding,
    WavLMFeedForward: FastWavLMFeedForward,
    Wav2Vec2FeedForward: FastWav2Vec2FeedForward,
    HubertFeedForward: FastHubertFeedForward,
    WavLMFeatureEncoder: FastWavLMFeatureEncoder,
    Wav2Vec2FeatureEncoder: FastWav2Vec2FeatureEncoder,
    HubertFeatureEncoder: FastHubertFeatureEncoder,
}


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
          weights train in every mode).
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
        samples only (padding is zero). ``"utterance"`` (or ``True``): zero
        mean and unit variance per utterance, as transformers' feature
        extractor with ``do_normalize``. ``"global"``: ``(x - mean) / (std +
        1e-6)`` with one mean and standard deviation for the whole training
        set (the Odyssey 2024 baseline), set with
        :meth:`set_waveform_stats` and kept in the state dict. ``"off"`` (or
        ``False``): none. ``None``: the checkpoint's feature-extractor config
        decides (``do_normalize``; without one, layer-norm models normalise).
    apply_spec_augment : bool or None
        SpecAugment-style time (and feature) masking of the transformer
        input in training mode. ``None`` follows the checkpoint's config
        (``apply_spec_augment``, ``mask_time_prob``; on for most hub
        checkpoints, as in a plain transformers model); ``False`` turns it
        off, as SpeechBrain's wrapper does by default.
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
        config_overrides=None,
        cache_dir=None,
        revision=None,
        config=None,
        load_weights=True,
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

    def _call_state(self, input_shape, sample_lengths, frames):
        """The :class:`_EncoderCall` of one forward pass.

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
        _EncoderCall

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.tiny_ssl import make_tiny_ssl
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
        return _EncoderCall(
            input_shape=tuple(input_shape),
            sample_lengths=sample_lengths,
            utterance_cnn=self._utterance_cnn if utterance_wise else None,
            first_norm_frames=first_norm_frames,
            frame_shape=(input_shape[0], padded_frames),
            valid_rows=valid_rows,
        )

    def _utterance_cnn(self, wav):
        """CNN features ``[frames, channels]`` of one waveform ``[samples]``.

        Each convolution runs time-major, as one or two matrix products on
        strided views of the ``[time, channels]`` input
        (:func:`time_major_conv`), so the activations stay contiguous for the
        GELU and the layer norms. The CNN has no padding, so output frame
        ``t`` only sees samples ``[t * hop, t * hop + field)`` (``hop`` the
        product of the strides, ``field`` the receptive field) and the
        waveform can be processed in chunks of :attr:`cnn_chunk_frames`
        frames with the same result: the tensors of a chunk stay in the CPU
        cache (below 3 s there is one chunk). Group-norm models normalise
        the first layer over the whole utterance: its statistics are computed
        first and folded into the convolution (:meth:`_first_norm_affine`).

        Example
        -------
        >>> import tempfile
        >>> from sser_lobes.tiny_ssl import make_tiny_ssl
        >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="wav2vec2")
        >>> enc = SSLEncoder(folder)  # wav2vec2-base style: group norm
        >>> wav = torch.randn(16000)
        >>> whole = enc._utterance_cnn(wav)
        >>> whole.shape
        torch.Size([49, 32])
        >>> reference = enc.model.feature_extractor(wav[None])[0]  # transformers
        >>> torch.allclose(whole, reference.T, atol=1e-5)
        True
        >>> enc.cnn_chunk_frames = 7
        >>> torch.allclose(enc._utterance_cnn(wav), whole, atol=1e-5)
        True
        """
        layers = self.model.feature_extractor.conv_layers
        first = layers[0]
        total = int(self.frame_lengths(torch.tensor(wav.shape[0])))
        hop = math.prod(self.config.conv_stride)
        # Per layer: time-major matrices and bias (None: the conv's own). A
        # group-norm first layer is folded into its conv for this utterance.
        weights = [self._time_major_weights(layer.conv) for layer in layers]
        biases = [None] * len(layers)
        if self.uses_group_norm:
            weight, biases[0] = self._first_norm_affine(wav)
            weights[0] = time_major_weights(weight, first.conv.stride[0])
        chunk = max(1, int(self.cnn_chunk_frames))
        pieces = []
        for start in range(0, total, chunk):
            stop = min(total, start + chunk)
            hidden = wav[start * hop : (stop - 1) * hop + self.min_samples, None]
            for layer, matrices, bias in zip(layers, weights, biases):
                hidden = time_major_conv(hidden, matrices, layer.conv, bias)
                norm = getattr(layer, "layer_norm", None)
                if isinstance(norm, nn.LayerNorm):
                    hidden = norm(hidden)
                hidden = _activate(layer.activation, hidden)
            pieces.append(hidden)
        return torch.cat(pieces, dim=0)

    def _time_major_weights(self, conv):
        """:func:`time_major_weights` of a CNN convolution, kept until its
        weight changes (frozen CNNs compute them once)."""
        weight = conv.weight
        if weight.requires_grad and torch.is_grad_enabled():
            return time_major_weights(weight, conv.stride[0])
        cache = self.__dict__.setdefault("_time_major_cache", {})
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = cache.get(id(conv))
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, time_major_weights(weight, conv.stride[0]))
            cache[id(conv)] = cached
        return cached[1]

    def _first_norm_affine(self, wav):
        """Weight and bias of one convolution equal to the first layer's
        convolution followed by its group norm, on this utterance.

        The first convolution is linear in the waveform's patches, so the
        per-channel mean and variance of its output follow from the mean and
        covariance of the patches (computed in float64), without computing
        the output twice; the normalisation's scale and shift then fold into
        the convolution.
        """
        first = self.model.feature_extractor.conv_layers[0]
        conv, norm = first.conv, first.layer_norm
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        patches = wav.double().unfold(0, kernel, stride)
        centre = patches.mean(0)
        centred = patches - centre
        covariance = centred.T @ centred / patches.shape[0]
        weight = conv.weight.double()[:, 0, :]
        mean = weight @ centre
        if conv.bias is not None:
            mean = mean + conv.bias.double()
        var = ((weight @ covariance) * weight).sum(1)
        scale = norm.weight.double() * torch.rsqrt(var + norm.eps)
        shift = norm.bias.double() - mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        folded = conv.weight.double() * scale[:, None, None]
        return folded.to(conv.weight.dtype), shift.to(conv.weight.dtype)

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
        if self.normalize_waveform == "utterance":
            wavs = normalize_valid(wavs, sample_mask)
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

        need_hidden = self.output_layer != "last"
        grad_context = torch.no_grad() if self.finetune == "frozen" else _null()
        frames = self.frame_lengths(sample_lengths)
        # This call's batch, for the modules of the fast path; set in the
        # thread that runs this forward (a DataParallel replica's own).
        token = _CURRENT_CALL.set(self._call_state(wavs.shape, sample_lengths, frames))
        try:
            with grad_context:
                out = self.model(
                    wavs,
                    attention_mask=sample_mask.long(),
                    output_hidden_states=need_hidden,
                    **self._short_batch_masking(wavs),
                )
        finally:
            _CURRENT_CALL.reset(token)

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
        >>> from sser_lobes.tiny_ssl import make_tiny_ssl
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


def _null():
    return contextlib.nullcontext()


def _choice(name, value, choices, aliases):
    """``value`` (or its alias, e.g. a bool) if it is one of ``choices``."""
    if isinstance(value, bool) or value is None:
        value = aliases.get(value, value)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


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
