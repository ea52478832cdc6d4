"""WavLM's training attention on CPU, in cache-sized blocks, without padding.

In training, WavLM's self-attention needs its ``time x time`` matrices: the
gated relative-position bias takes a gradient and the attention dropout masks
the probabilities, so no flash kernel applies. Run as separate torch ops over
the whole ``[batch, heads, time, time]`` tensor (what transformers and
``scaled_dot_product_attention``'s math path do), each of some ten element-wise
passes reads and writes hundreds of megabytes for a batch of long utterances,
and the step spends more time moving those matrices through memory than in
the matrix products; the padded keys and queries cost as much as valid ones.

:func:`gated_bias_attention` computes the same function one block of heads
of one utterance at a time (:data:`BLOCK_ELEMENTS` scores), on that
utterance's valid frames only (``valid x valid`` scores, no key mask), so
that the passes over a block (gated bias, scores, softmax, dropout) run in
cache, and writes to memory only what the backward pass needs: the
probabilities and the dropout mask (one byte per score), packed without
padding. The backward pass recomputes the dropped probabilities block by
block and accumulates the position bias gradient over the batch in place.
Padded query frames get a zero context and no gradient: they never reach a
valid frame (they are masked keys) nor the loss. The dropout mask is a
:func:`sser_lobes.encoders.fast_path.cpu_dropout.drop_mask`. Gradients equal those of
the plain
composition (``tests/test_blocked_attention.py``) and of stock transformers
(``tests/test_ssl_fast_path.py``).
"""

import torch

from sser_lobes.encoders.fast_path.cpu_dropout import drop_mask

#: Scores per block (``heads x time x time``, at least one head): 2 MB of
#: float32, about one core's L2 cache.
BLOCK_ELEMENTS = 1 << 19


def _blocks(lengths, heads):
    """``(utterance, valid frames, first head, end head, offset)`` of each
    block; ``offset``: where the block's scores start in the packed
    ``sum(heads * valid**2)`` storage."""
    offset = 0
    for row, length in enumerate(lengths):
        per_block = max(1, min(heads, BLOCK_ELEMENTS // (length * length)))
        for start in range(0, heads, per_block):
            end = min(heads, start + per_block)
            yield row, length, start, end, offset
            offset += (end - start) * length * length


class _GatedBiasAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, gate, position_bias, lengths, p):
        heads = query.shape[1]
        total = heads * sum(n * n for n in lengths)
        probs = query.new_empty(total)
        drop = drop_mask((total,), p) if p > 0 else None
        context = torch.zeros_like(value)
        shared_bias = position_bias.shape[0] == 1
        for row, n, start, end, offset in _blocks(lengths, heads):
            size = (end - start) * n * n
            block = probs[offset : offset + size].view(end - start, n, n)
            bias = position_bias[0 if shared_bias else row, start:end, :n, :n]
            torch.mul(gate[row, start:end, :n, None], bias, out=block)
            block.baddbmm_(
                query[row, start:end, :n], key[row, start:end, :n].transpose(1, 2)
            )
            torch._softmax(block, -1, False, out=block)
            if drop is not None:
                dropped = drop[offset : offset + size].view(end - start, n, n)
                block = torch.where(dropped, 0.0, block)
            context[row, start:end, :n] = torch.bmm(block, value[row, start:end, :n])
        if p > 0:
            context.mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(query, key, value, gate, position_bias, probs, drop)
        ctx.lengths, ctx.p = lengths, p
        return context

    @staticmethod
    def backward(ctx, grad_context):
        query, key, value, gate, position_bias, probs, drop = ctx.saved_tensors
        heads = query.shape[1]
        if ctx.p > 0:
            grad_context = grad_context * (1.0 / (1.0 - ctx.p))
        grads = [torch.zeros_like(t) for t in (query, key, value, gate, position_bias)]
        grad_query, grad_key, grad_value, grad_gate, grad_bias = grads
        shared_bias = position_bias.shape[0] == 1
        for row, n, start, end, offset in _blocks(ctx.lengths, heads):
            size = (end - start) * n * n
            prob = probs[offset : offset + size].view(end - start, n, n)
            dropped = None
            if drop is not None:
                dropped = drop[offset : offset + size].view(end - start, n, n)
            at = (row, slice(start, end), slice(0, n))
            kept = prob if dropped is None else torch.where(dropped, 0.0, prob)
            grad_value[at] = torch.bmm(kept.transpose(1, 2), grad_context[at])
            grad = torch.bmm(grad_context[at], value[at].transpose(1, 2))
            if dropped is not None:
                grad.masked_fill_(dropped, 0.0)
            torch._softmax_backward_data(grad, prob, -1, prob.dtype, grad_input=grad)
            grad_query[at] = torch.bmm(grad, key[at])
            grad_key[at] = torch.bmm(grad.transpose(1, 2), query[at])
            bias_at = (0 if shared_bias else row, slice(start, end), slice(0, n))
            bias = position_bias[bias_at][..., :n]
            grad_gate[at] = (grad * bias).sum(-1)
            grad_bias[bias_at][..., :n].addcmul_(grad, gate[at][..., None])
        return grad_query, grad_key, grad_value, grad_gate, grad_bias, None, None


def gated_bias_attention(query, key, value, gate, position_bias, lengths=None, p=0.0):
    """Softmax attention with WavLM's gated relative-position bias and
    attention dropout, block by block on valid frames (see the module doc).

    ``softmax(q k^T + gate * position_bias) v`` over each utterance's first
    ``lengths[i]`` frames, with the probabilities dropped with probability
    ``p`` (inverted dropout); the query carries the ``1 / sqrt(head_dim)``
    scale. Frames after ``lengths[i]`` get a zero context.

    Arguments
    ---------
    query, key, value : torch.Tensor
        ``[batch, heads, time, head_dim]`` float32 on CPU (made contiguous).
    gate : torch.Tensor
        ``[batch, heads, time]``: the gate of each query's bias row.
    position_bias : torch.Tensor
        ``[1, heads, time, time]`` (shared by the batch) or
        ``[batch, heads, time, time]``.
    lengths : list of int or None
        Valid frames of each utterance (at least 1); ``None``: all.
    p : float
        Attention dropout probability (0 in eval mode).

    Returns
    -------
    torch.Tensor
        ``[batch, heads, time, head_dim]`` context.

    Example
    -------
    >>> q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    >>> gate, bias = torch.rand(2, 3, 5), torch.randn(1, 3, 5, 5)
    >>> out = gated_bias_attention(q, k, v, gate, bias)
    >>> mask = gate[..., None] * bias
    >>> ref = torch.softmax(q @ k.transpose(-1, -2) + mask, -1) @ v
    >>> torch.allclose(out, ref, atol=1e-5)
    True
    >>> short = gated_bias_attention(q, k, v, gate, bias, lengths=[5, 3])
    >>> ref = torch.softmax(q[1, :, :3] @ k[1, :, :3].transpose(-1, -2)
    ...                     + mask[1, :, :3, :3], -1) @ v[1, :, :3]
    >>> torch.allclose(short[1, :, :3], ref, atol=1e-5)
    True
    >>> short[1, :, 3:].abs().max().item()
    0.0
    """
    batch, _, length, _ = query.shape
    if lengths is None:
        lengths = [length] * batch
    lengths = [int(n) for n in lengths]
    if len(lengths) != batch or min(lengths) < 1 or max(lengths) > length:
        raise ValueError(
            f"lengths {lengths} do not fit a batch of {tuple(query.shape)}"
        )
    tensors = (query, key, value, gate, position_bias)
    return _GatedBiasAttention.apply(*(t.contiguous() for t in tensors), lengths, p)
