"""WavLM's self-attention: SDPA in eval mode, cache-sized blocks on valid
frames in CPU training.

:class:`FastWavLMAttention` keeps WavLM's gated relative position bias and
its parameters; the position bias is computed once per batch and shared by
its utterances.
"""

import torch
import torch.nn.functional as F
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
)

from sser_lobes.encoders.fast_path.blocked_attention import gated_bias_attention
from sser_lobes.encoders.fast_path.feed_forward import scatter_rows


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
    (float32) it runs
    :func:`~sser_lobes.encoders.fast_path.blocked_attention.gated_bias_attention`
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
        :func:`~sser_lobes.encoders.fast_path.blocked_attention.gated_bias_attention`,
        on each
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
            # quantized Linear (sser_lobes.encoders.quantize) has no float weight.
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
