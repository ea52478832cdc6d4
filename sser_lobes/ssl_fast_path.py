"""The faster CPU path of :class:`sser_lobes.SSLEncoder`: kernels that
subclass transformers internals.

In eval mode (inference, validation, and the frozen CNN of partial
fine-tuning) :class:`~sser_lobes.SSLEncoder` computes the same function as
stock transformers, with the same parameters and state-dict keys, faster on
CPU. It switches the class of the model's modules to the ones here
(:data:`FAST_MODULES`):

* the CNN runs on each utterance's valid samples alone, time-major, in
  cache-sized chunks, with the first-layer group norm folded into its
  convolution (:class:`UtteranceWiseFeatureEncoder`): no padding is computed
  and no masking is needed;
* the feed-forward blocks skip padded frames (:class:`_PackedFeedForward`);
* WavLM's attention uses ``scaled_dot_product_attention`` on contiguous
  projections in eval mode, and in CPU training runs in cache-sized blocks
  (:class:`FastWavLMAttention`,
  :func:`sser_lobes.blocked_attention.gated_bias_attention`); the position
  convolution runs channels-last (:class:`_ChannelsLastPositionalConv`);
* the dropouts draw their CPU training masks about 9x faster than torch's
  ``bernoulli_`` (:class:`sser_lobes.cpu_dropout.CPUDropout`);
* the first-layer group norm of wav2vec2-base / HuBERT-base style models is
  masked to the valid frames when the CNN trains (:class:`MaskedGroupNorm`).

The lengths of the batch that these modules need are the state of one
:meth:`SSLEncoder.forward` call, held in a context variable
(:class:`EncoderCall`, :data:`CURRENT_CALL`) and not on the shared modules:
one encoder can serve several threads at once, each call seeing only its own
batch.

Checked against transformers 5.16.0 and 5.23.0 (:data:`TRANSFORMERS_RANGE`,
:func:`check_transformers_version`); the equality tests against stock
transformers, for the four kinds of checkpoints (WavLM, wav2vec 2.0 with layer
and group norm, HuBERT), are in ``tests/test_ssl_fast_path.py``. The
transformers internals used: ``WavLMAttention.forward(hidden_states,
attention_mask, position_bias, index)``, ``torch_multi_head_self_attention``,
``compute_bias``, ``gru_rel_pos_linear`` / ``gru_rel_pos_const``; the
positional conv embeddings' ``conv`` / ``padding`` / ``activation``; the
feed-forward blocks' ``intermediate_dense`` / ``intermediate_act_fn`` /
``output_dense``; the feature encoders' ``conv_layers[i].conv`` /
``.layer_norm`` / ``.activation``.
"""

import contextlib
import contextvars
import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from packaging.version import Version
from torch import nn
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

from sser_lobes.blocked_attention import gated_bias_attention
from sser_lobes.cpu_dropout import CPUDropout

logger = logging.getLogger(__name__)

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


class EncoderCall(NamedTuple):
    """What the model's modules need to know about the batch of one
    :meth:`SSLEncoder.forward` call.

    :meth:`SSLEncoder.forward` sets it in :data:`CURRENT_CALL` for the
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
    cnn_chunk_frames : int or None
        The eval-mode feature encoder runs each row's valid samples alone
        (:meth:`UtteranceWiseFeatureEncoder.utterance_features`), in chunks
        of this many frames; ``None``: the CNN runs batched.
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
    cnn_chunk_frames: int | None
    first_norm_frames: torch.Tensor | None
    frame_shape: tuple
    valid_rows: torch.Tensor | None


#: The :class:`EncoderCall` of the running :meth:`SSLEncoder.forward` in this
#: thread or task (``None`` outside one).
CURRENT_CALL = contextvars.ContextVar("sser_ssl_encoder_call", default=None)


def checkpoint_contexts():
    """``context_fn`` of ``torch.utils.checkpoint``: the recompute of a
    checkpointed layer (in the backward pass, outside
    :meth:`SSLEncoder.forward`) sees the call state of the forward pass.

    Returns
    -------
    tuple
        (context of the forward pass, context of the recompute).

    Example
    -------
    >>> forward, recompute = checkpoint_contexts()
    >>> with recompute:
    ...     CURRENT_CALL.get() is None  # no call state outside a forward
    True
    """
    call = CURRENT_CALL.get()

    @contextlib.contextmanager
    def replay():
        token = CURRENT_CALL.set(call)
        try:
            yield
        finally:
            CURRENT_CALL.reset(token)

    return contextlib.nullcontext(), replay()


def enable_checkpointing(model):
    """Gradient (activation) checkpointing of a transformers model's layers,
    non-reentrant, with the call state replayed in the recompute.

    Activations of each transformer layer (and of a trained CNN's layers) are
    recomputed in the backward pass instead of being stored; the random state
    is restored for the recompute, so dropout masks are the same and the
    gradients equal those of a run without checkpointing.
    """
    kwargs = {"use_reentrant": False, "context_fn": checkpoint_contexts}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers before the activation_checkpointing_* names
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel group norm whose statistics ignore padded frames.

    Drop-in replacement (same parameters and state-dict keys) for the
    ``nn.GroupNorm(num_groups=C, num_channels=C)`` of the first CNN layer of
    wav2vec2-base style models. The number of valid frames of each row is
    passed as ``valid_frames`` or, when transformers calls the module inside
    :meth:`SSLEncoder.forward`, read from that call's state
    (:class:`EncoderCall`); without either it is a plain group norm.
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
            call = CURRENT_CALL.get()
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
    """transformers' WavLM attention through ``scaled_dot_product_attention``.

    transformers runs WavLM's self-attention through
    ``F.multi_head_attention_forward`` on a time-major view of the hidden
    states, and WavLM has no ``attn_implementation="sdpa"`` (its relative
    position bias is an additive float mask). With frozen weights and a
    batch of more than one utterance, the query, key and value projections
    of that non-contiguous view become one small matrix product per frame
    (torch only folds them into one product when the weights need a
    gradient), and the explicit attention weights cost a softmax pass and
    copies (in training too: transformers asks for the averaged attention
    weights, ``need_weights=True``, which keeps torch on its slow path).
    This class projects the contiguous ``[batch, time, dim]`` tensor instead
    and calls ``F.scaled_dot_product_attention`` with the gated position bias
    (padded keys set to ``-inf``) as the mask: the same function, about twice
    as fast on a CPU batch of 8 in eval mode (base size). In training on CPU
    (float32) it runs :func:`~sser_lobes.blocked_attention.gated_bias_attention`
    instead, which keeps the ``time x time`` passes in cache (on other devices
    and under autocast, ``scaled_dot_product_attention`` with the attention
    dropout as its ``dropout_p``). Gradients are those of stock transformers
    (checked with dropout off). The position bias, ``[heads, time, time]``,
    is computed once by the first layer and shared by the batch (transformers
    repeats it per utterance). Parameters and state-dict keys are unchanged:
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
    >>> bias.shape  # handed to the next layer: one bias for the whole batch
    torch.Size([1, 2, 5, 5])
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

        The gate is projected from the contiguous hidden states (transformers
        projects a permuted view, which frozen weights turn into one small
        product per head and utterance) and padded keys are masked in the
        gated bias itself.
        """
        batch, length, _ = hidden_states.shape
        heads = self.num_heads
        if position_bias is None:
            # [1, heads, time, time]: one bias for the whole batch.
            position_bias = self.compute_bias(length, length)[None]
        else:
            position_bias = position_bias.view(-1, heads, length, length)
        gate_input = hidden_states.view(batch, length, heads, self.head_dim)
        projected = self.gru_rel_pos_linear(gate_input)
        projected = projected.view(batch, length, heads, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(projected).unbind(-1)
        const = self.gru_rel_pos_const.view(1, 1, heads)
        gate = (gate_a * (gate_b * const - 1.0) + 2.0).transpose(1, 2).contiguous()
        valid = None  # [batch, time] bool, when some frame is padded
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            valid = attention_mask.bool()
        if (
            self.training
            and torch.is_grad_enabled()
            and hidden_states.device.type == "cpu"
        ):
            output = self._blocked_attention(hidden_states, gate, position_bias, valid)
            if output is not None:
                return output, None, position_bias
        gated = gate[..., None] * position_bias
        if valid is not None:
            gated.masked_fill_(~valid[:, None, None, :], float("-inf"))
        output, _ = self.torch_multi_head_self_attention(
            hidden_states, None, gated.view(batch * heads, length, length)
        )
        return output, None, position_bias

    def _blocked_attention(self, hidden_states, gate, position_bias, valid):
        """Training attention on CPU through
        :func:`~sser_lobes.blocked_attention.gated_bias_attention`, on each
        utterance's valid frames (padded frames get a zero output); ``None``
        when the projections are not float32 (autocast) or the valid frames
        are not a prefix of each row: those take
        ``scaled_dot_product_attention``."""
        batch, length, dim = hidden_states.shape
        lengths = rows = None
        flat = hidden_states.reshape(batch * length, dim)
        if valid is not None:
            counts = valid.sum(-1)
            prefix = torch.arange(length, device=valid.device) < counts[:, None]
            if not bool((valid == prefix).all()) or not bool((counts > 0).all()):
                return None
            lengths = counts.tolist()
            # The projections run on the valid frames only, as the
            # feed-forward blocks do: the blocked attention never reads a
            # padded frame.
            rows = valid.flatten().nonzero().flatten()
            flat = flat.index_select(0, rows)
        query = self.q_proj(flat)
        if query.dtype != torch.float32:
            return None
        shape = (batch, length, self.num_heads, self.head_dim)

        def padded(projected):
            return scatter_rows(projected, rows, shape[:2]).view(shape).transpose(1, 2)

        context = gated_bias_attention(
            padded(query * self.head_dim**-0.5),
            padded(self.k_proj(flat)),
            padded(self.v_proj(flat)),
            gate,
            position_bias,
            lengths,
            float(self.dropout),
        )
        context = context.transpose(1, 2).reshape(batch * length, dim)
        if rows is not None:
            context = context.index_select(0, rows)
        return scatter_rows(self.out_proj(context), rows, (batch, length))

    def torch_multi_head_self_attention(
        self, hidden_states, attention_mask, gated_position_bias
    ):
        """Self-attention of ``[batch, time, dim]`` states (see the class doc)."""
        batch, length, dim = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)

        def project(layer):
            # A module call, not F.linear on its weight: a dynamically
            # quantized Linear (sser_lobes.quantize) has no float weight.
            return layer(hidden_states).view(shape).transpose(1, 2)

        query, key, value = (
            project(self.q_proj),
            project(self.k_proj),
            project(self.v_proj),
        )
        bias = gated_position_bias.view(batch, self.num_heads, length, length)
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            padded = ~attention_mask.bool()[:, None, None, :]
            bias = bias.masked_fill(padded, float("-inf"))
        dropout = float(self.dropout) if self.training else 0.0
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias.to(query.dtype), dropout_p=dropout
        )
        context = context.transpose(1, 2).reshape(batch, length, dim)
        return self.out_proj(context), None


class _ChannelsLastPositionalConv:
    """Forward of the convolutional position embedding of wav2vec 2.0 /
    HuBERT / WavLM with a channels-last convolution.

    The embedding is a grouped convolution with a long kernel (128) over
    ``[batch, dim, time]``, the transpose of contiguous hidden states: as a
    2-D convolution on that layout (no copy) oneDNN runs it about twice as
    fast as transformers' 1-D call, with the same weights (weight norm
    included), result and gradients (training and eval mode).

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
        if getattr(self, "batch_norm", None) is not None:
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


def scatter_rows(values, rows, frame_shape):
    """``[*frame_shape, dim]`` tensor of the per-frame ``values`` computed on
    the valid frames ``rows`` (flat indices; padded frames get zeros), or
    ``values`` reshaped when ``rows`` is ``None`` (every frame computed).

    Example
    -------
    >>> scatter_rows(torch.ones(2, 3), torch.tensor([0, 2]), (1, 3))[0, :, 0]
    tensor([1., 0., 1.])
    """
    if rows is None:
        return values.view(*frame_shape, values.shape[-1])
    full = values.new_zeros(math.prod(frame_shape), values.shape[-1])
    return full.index_copy(0, rows, values).view(*frame_shape, values.shape[-1])


class _PackedFeedForward:
    """Forward of a transformer layer's feed-forward block that skips padded
    frames, in training and in eval mode.

    The feed-forward block is two thirds of a transformer layer's matrix
    products and works frame by frame; padded frames never reach a valid one
    (attention masks them out as keys) nor the loss, so only the valid frames
    are computed (padded rows get zeros) and the gradients are those of the
    full block. Their flat indices are passed as
    ``valid_rows`` or, when transformers calls the block inside
    :meth:`SSLEncoder.forward`, read from that call's state
    (:class:`EncoderCall`).

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
        rows = valid_rows
        if rows is None:
            call = CURRENT_CALL.get()
            if call is not None and call.frame_shape == hidden_states.shape[:2]:
                rows = call.valid_rows
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        if rows is not None:
            flat = flat.index_select(0, rows)
        inner = _activate(self.intermediate_act_fn, self.intermediate_dense(flat))
        if self.training:  # the dropouts are identities in eval mode
            inner = self.intermediate_dropout(inner)
        out = self.output_dense(inner)
        if self.training:
            out = self.output_dropout(out)
        return scatter_rows(out, rows, hidden_states.shape[:-1])


class FastWavLMFeedForward(_PackedFeedForward, WavLMFeedForward):
    """WavLM's feed-forward block, on valid frames only."""


class FastWav2Vec2FeedForward(_PackedFeedForward, Wav2Vec2FeedForward):
    """wav2vec 2.0's feed-forward block, on valid frames only."""


class FastHubertFeedForward(_PackedFeedForward, HubertFeedForward):
    """HuBERT's feed-forward block, on valid frames only."""


class UtteranceWiseFeatureEncoder:
    """Eval-mode forward of the CNN feature encoder that runs each utterance
    of a padded batch alone, on its valid samples.

    Inside :meth:`SSLEncoder.forward`, whose call state
    (:class:`EncoderCall`) gives the sample lengths, the features of each row
    are computed from its valid samples only (:meth:`utterance_features`): no
    padding is computed, and a group-norm first layer normalises over the
    utterance itself. Padded frames are zero. Otherwise (training mode, a
    call from outside :class:`SSLEncoder`, or a batched CNN) it is
    transformers' forward, whose group norm is masked in training
    (:class:`MaskedGroupNorm`). Parameters and state-dict keys are
    unchanged: :class:`SSLEncoder` switches the class of the model's feature
    encoder.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.ssl_encoder import SSLEncoder
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
        call = None if self.training else CURRENT_CALL.get()
        if (
            call is None
            or call.cnn_chunk_frames is None
            or call.input_shape != input_values.shape
        ):
            return super().forward(input_values)
        channels = self.conv_layers[-1].conv.out_channels
        out = input_values.new_zeros(call.frame_shape[0], call.frame_shape[1], channels)
        for row, length in enumerate(call.sample_lengths.tolist()):
            feats = self.utterance_features(
                input_values[row, :length], call.cnn_chunk_frames
            )
            out[row, : feats.shape[0]] = feats
        return out.transpose(1, 2)

    def output_frames(self, samples):
        """Frames of the CNN output for ``samples`` input samples.

        Example
        -------
        >>> from transformers import WavLMConfig
        >>> FastWavLMFeatureEncoder(WavLMConfig()).output_frames(16000)
        49
        """
        for layer in self.conv_layers:
            conv = layer.conv
            samples = (samples - conv.kernel_size[0]) // conv.stride[0] + 1
        return samples

    def receptive_field(self):
        """Samples needed for one output frame (400 for wav2vec 2.0's CNN)."""
        field = 1
        for layer in reversed(self.conv_layers):
            conv = layer.conv
            field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
        return field

    def utterance_features(self, wav, chunk_frames=150):
        """CNN features ``[frames, channels]`` of one waveform ``[samples]``.

        Each convolution runs time-major, as one or two matrix products on
        strided views of the ``[time, channels]`` input
        (:func:`time_major_conv`), so the activations stay contiguous for the
        GELU and the layer norms. The CNN has no padding, so output frame
        ``t`` only sees samples ``[t * hop, t * hop + field)`` (``hop`` the
        product of the strides, ``field`` the receptive field) and the
        waveform can be processed in chunks of ``chunk_frames`` frames with
        the same result: the tensors of a chunk stay in the CPU cache (below
        3 s there is one chunk). A group-norm first layer normalises over the
        whole utterance: its statistics are computed first and folded into
        the convolution (:meth:`_first_norm_affine`).

        Example
        -------
        >>> from transformers import Wav2Vec2Config
        >>> config = Wav2Vec2Config(conv_dim=(8, 8), conv_kernel=(10, 3),
        ...                         conv_stride=(5, 2), feat_extract_norm="group")
        >>> cnn = FastWav2Vec2FeatureEncoder(config).eval()
        >>> wav = torch.randn(1600)
        >>> whole = cnn.utterance_features(wav)
        >>> reference = Wav2Vec2FeatureEncoder.forward(cnn, wav[None])[0].T
        >>> whole.shape, torch.allclose(whole, reference, atol=1e-5)
        (torch.Size([159, 8]), True)
        >>> chunked = cnn.utterance_features(wav, chunk_frames=7)
        >>> torch.allclose(chunked, whole, atol=1e-5)
        True
        """
        layers = self.conv_layers
        first = layers[0]
        total = self.output_frames(wav.shape[0])
        hop = math.prod(layer.conv.stride[0] for layer in layers)
        field = self.receptive_field()
        # Per layer: time-major matrices and bias (None: the conv's own). A
        # group-norm first layer is folded into its conv for this utterance.
        weights = [self._time_major_weights(layer.conv) for layer in layers]
        biases = [None] * len(layers)
        if isinstance(getattr(first, "layer_norm", None), nn.GroupNorm):
            weight, biases[0] = self._first_norm_affine(wav)
            weights[0] = time_major_weights(weight, first.conv.stride[0])
        chunk = max(1, int(chunk_frames))
        pieces = []
        for start in range(0, total, chunk):
            stop = min(total, start + chunk)
            hidden = wav[start * hop : (stop - 1) * hop + field, None]
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
        first = self.conv_layers[0]
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


class FastWavLMFeatureEncoder(UtteranceWiseFeatureEncoder, WavLMFeatureEncoder):
    """WavLM's CNN feature encoder, utterance by utterance in eval mode."""


class FastWav2Vec2FeatureEncoder(UtteranceWiseFeatureEncoder, Wav2Vec2FeatureEncoder):
    """wav2vec 2.0's CNN feature encoder, utterance by utterance in eval mode."""


class FastHubertFeatureEncoder(UtteranceWiseFeatureEncoder, HubertFeatureEncoder):
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


# transformers (or torch) class -> the same module with a faster path.
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
    nn.Dropout: CPUDropout,
}
