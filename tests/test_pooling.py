"""Pooling over valid frames only, heads and the composed EmotionModel."""

import pytest
import torch

from sser_lobes import (
    AttentiveStatisticsPooling,
    EmotionModel,
    LinearHead,
    MeanPooling,
    MeanStdPooling,
    MLPHead,
    SSLEncoder,
    StdPooling,
    make_pooling,
)


def _padded_pair(dim=3, valid=5, total=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, valid, dim, generator=gen)
    garbage = 1e3 * torch.randn(1, total - valid, dim, generator=gen)
    other = torch.randn(1, total, dim, generator=gen)
    batch = torch.cat([torch.cat([x, garbage], dim=1), other], dim=0)
    return x, batch, torch.tensor([valid / total, 1.0])


def test_mean_and_std_by_hand():
    # valid frames 1, 2, 6 (mean 3, biased var (4 + 1 + 9) / 3); padding 100
    x = torch.tensor([[[1.0], [2.0], [6.0], [100.0]]])
    lens = torch.tensor([0.75])
    assert MeanPooling(1)(x, lens).item() == pytest.approx(3.0)
    assert StdPooling(1)(x, lens).item() == pytest.approx((14 / 3) ** 0.5, rel=1e-6)
    both = MeanStdPooling(1)(x, lens)
    assert both[0].tolist() == pytest.approx([3.0, (14 / 3) ** 0.5], rel=1e-6)


@pytest.mark.parametrize("name", ["mean", "std", "mean_std", "attentive_statistics"])
def test_padding_never_enters_pooling(name):
    torch.manual_seed(0)
    pool = make_pooling(name, 3)
    x, batch, lens = _padded_pair()
    alone = pool(x)
    batched = pool(batch, lens)
    assert batched.shape == (2, pool.output_size)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_attentive_pooling_weights_sum_to_one_on_constant_input():
    pool = AttentiveStatisticsPooling(2)
    x = torch.ones(1, 4, 2) * 3.0
    out = pool(x)
    # weighted mean of a constant is that constant; std is the floor sqrt(1e-5)
    assert out[0, :2].tolist() == pytest.approx([3.0, 3.0])
    assert out[0, 2:].tolist() == pytest.approx([1e-5**0.5] * 2, rel=1e-3)


def test_attentive_pooling_gradients_finite():
    pool = AttentiveStatisticsPooling(4)
    x, batch, lens = _padded_pair(dim=4)
    batch.requires_grad_(True)
    pool(batch, lens).sum().backward()
    assert torch.isfinite(batch.grad).all()
    assert batch.grad[0, 5:].abs().max() == 0  # no gradient into padding
    assert pool.attention.grad is not None


def test_unknown_pooling():
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        make_pooling("max", 4)


def test_heads():
    linear = LinearHead(6, 4, bias=False)
    assert linear.linear.bias is None
    assert linear(torch.randn(2, 6)).shape == (2, 4)
    mlp = MLPHead(6, 8, hidden_size=16, dropout=0.5)
    layers = [type(m).__name__ for m in mlp.layers]
    assert layers == ["Linear", "LayerNorm", "ReLU", "Dropout", "Linear"]
    assert mlp(torch.randn(3, 6)).shape == (3, 8)


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2_base"])
def test_model_prediction_same_alone_or_in_batch(tiny_models, name):
    torch.manual_seed(0)
    encoder = SSLEncoder(tiny_models[name], output_norm=True)
    pooling = make_pooling("attentive_statistics", encoder.output_size)
    model = EmotionModel(encoder, pooling, MLPHead(pooling.output_size, 4, 16)).eval()
    gen = torch.Generator().manual_seed(2)
    short = torch.randn(1, 6000, generator=gen) * 0.1
    batch = torch.zeros(3, 20000)
    batch[0, :6000] = short
    batch[1:] = torch.randn(2, 20000, generator=gen) * 0.2
    with torch.no_grad():
        alone = model(short)["logits"]
        batched = model(batch, torch.tensor([0.3, 1.0, 1.0]))["logits"]
    assert torch.allclose(alone[0], batched[0], atol=1e-4)
    assert alone.argmax() == batched[0].argmax()
