"""The CPU training kernels: fast dropout masks
(sser_lobes.encoders.fast_path.cpu_dropout) and
WavLM's attention in cache-sized blocks
(sser_lobes.encoders.fast_path.blocked_attention)
compute what the plain torch composition computes, gradients included."""

import pytest
import torch

from sser_lobes.encoders.fast_path import blocked_attention, cpu_dropout
from sser_lobes.encoders.fast_path.blocked_attention import gated_bias_attention
from sser_lobes.encoders.fast_path.cpu_dropout import CPUDropout, drop_mask


def test_drop_mask_rate_and_seeding():
    torch.manual_seed(5)
    shape = (3, cpu_dropout.STREAM_ELEMENTS // 2 + 7)  # two streams, odd count
    mask = drop_mask(shape, 0.1)
    assert mask.shape == shape and mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - 0.1) < 0.002
    torch.manual_seed(5)
    assert torch.equal(drop_mask(shape, 0.1), mask)
    torch.manual_seed(6)
    assert not torch.equal(drop_mask(shape, 0.1), mask)
    # the streams differ from each other
    flat = mask.flatten()
    half = cpu_dropout.STREAM_ELEMENTS
    assert not torch.equal(flat[:1000], flat[half : half + 1000])
    assert not drop_mask((10, 10), 0.0).any()
    assert drop_mask((10, 10), 1.0).all()


def test_drop_mask_does_not_depend_on_threads():
    threads = torch.get_num_threads()
    masks = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(1)
            masks.append(drop_mask((3 * cpu_dropout.STREAM_ELEMENTS + 5,), 0.3))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(masks[0], masks[1])


def test_cpu_dropout_matches_its_mask():
    drop = CPUDropout(0.25).train()
    x = torch.randn(64, 300, requires_grad=True)
    torch.manual_seed(2)
    y = drop(x)
    torch.manual_seed(2)
    dropped = drop_mask(tuple(x.shape), 0.25)
    expected = torch.where(dropped, 0.0, x.detach() / 0.75)
    assert torch.allclose(y, expected)
    y.backward(torch.ones_like(y))
    assert torch.allclose(
        x.grad, torch.where(dropped, 0.0, torch.full_like(x, 1 / 0.75))
    )
    assert torch.equal(drop.eval()(x), x)


def _inputs(batch=3, heads=4, length=40, dim=8, shared_bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, dim, generator=gen) for _ in range(3))
    gate = torch.rand(batch, heads, length, generator=gen) * 2
    bias = torch.randn(
        1 if shared_bias else batch, heads, length, length, generator=gen
    )
    lengths = torch.tensor([length, length - 13, 9][:batch])
    padded = torch.arange(length)[None, :] >= lengths[:, None]
    tensors = [t.requires_grad_() for t in (q, k, v, gate, bias)]
    return tensors, padded[:, None, :], lengths


def _reference(q, k, v, gate, bias, padded, dropped=None, p=0.0):
    scores = q @ k.transpose(-1, -2) + gate[..., None] * bias
    scores = scores.masked_fill(padded[:, None], float("-inf"))
    probs = torch.softmax(scores, -1)
    if dropped is not None:
        probs = torch.where(dropped, 0.0, probs) / (1 - p)
    return probs @ v


@pytest.mark.parametrize("shared_bias", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.2])
def test_blocked_attention_equals_plain_composition(monkeypatch, shared_bias, p):
    """Outputs and the gradients of every input equal the plain torch ops on
    the whole padded tensor (keys masked), with blocks of two heads (several
    per utterance) on the valid frames, and the dropout mask drawn from the
    same seed."""
    length = 40
    monkeypatch.setattr(blocked_attention, "BLOCK_ELEMENTS", 2 * length * length)
    ours, padded, lengths = _inputs(length=length, shared_bias=shared_bias)
    ref = [t.detach().clone().requires_grad_() for t in ours]
    torch.manual_seed(3)
    out = gated_bias_attention(*ours, lengths.tolist(), p)
    torch.manual_seed(3)
    dropped = None
    if p > 0:  # the mask of the packed valid scores, utterance after utterance
        flat = drop_mask((4 * sum(n * n for n in lengths.tolist()),), p)
        dropped = torch.zeros(3, 4, length, length, dtype=torch.bool)
        offset = 0
        for row, n in enumerate(lengths.tolist()):
            dropped[row, :, :n, :n] = flat[offset : offset + 4 * n * n].view(4, n, n)
            offset += 4 * n * n
    expected = _reference(*ref, padded, dropped, p)
    # only valid query frames matter (padded ones never reach a valid frame)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    for row, n in enumerate(lengths.tolist()):
        assert torch.allclose(out[row, :, :n], expected[row, :, :n], atol=1e-5)
        weights[row, :, n:] = 0.0
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    for name, a, b in zip(("q", "k", "v", "gate", "bias"), ours, ref):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def test_dropout_on_changes_the_output():
    tensors, _, lengths = _inputs()
    plain = gated_bias_attention(*tensors, lengths.tolist(), 0.0)
    dropped = gated_bias_attention(*tensors, lengths.tolist(), 0.3)
    assert not torch.allclose(plain, dropped)
