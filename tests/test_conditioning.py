"""Gender conditioning and text fusion lobes, and the EmotionModel using them."""

import pytest
import torch

from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
from sser_lobes.nnet.gender import GenderConditioning, gender_index
from sser_lobes.nnet.text_fusion import TextFusion


@pytest.mark.parametrize("mode", ["embedding", "film", "concat"])
def test_gender_shapes_and_gradients(mode):
    cond = GenderConditioning(6, mode=mode, embedding_size=3)
    x = torch.randn(4, 6, requires_grad=True)
    out, logits = cond(x, torch.tensor([0, 1, -1, 1]))
    assert out.shape == (4, cond.output_size) and logits.shape == (4, 2)
    assert cond.output_size == (9 if mode == "concat" else 6)
    (out.sum() + logits.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert cond.table.weight.grad is not None
    assert all(p.grad is not None for p in cond.classifier.parameters())


def test_film_and_embedding_start_as_identity():
    x = torch.randn(3, 5)
    for mode in ("film", "embedding"):
        out, _ = GenderConditioning(5, mode=mode)(x, torch.tensor([0, 1, 0]))
        assert torch.equal(out, x)


def test_labels_where_known_prediction_where_unknown():
    cond = GenderConditioning(4, mode="concat", embedding_size=2)
    with torch.no_grad():
        cond.classifier.weight.zero_()
        cond.classifier.bias.copy_(torch.tensor([0.0, 5.0]))  # always predicts M
        cond.table.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    x = torch.zeros(3, 4)
    out, _ = cond(x, torch.tensor([0, -1, 1]))
    assert out[:, 4].tolist() == [1.0, -1.0, -1.0]  # F label, predicted M, M label
    out, _ = cond(x)  # inference: no gender given -> prediction for all
    assert out[:, 4].tolist() == [-1.0, -1.0, -1.0]


def test_gender_index_aliases():
    assert [gender_index(v) for v in ("F", "M", "Female", "male", "", "Unknown")] == [
        0,
        1,
        0,
        1,
        -1,
        -1,
    ]


def test_bad_modes():
    with pytest.raises(ValueError, match="mode must be one of"):
        GenderConditioning(4, mode="add")
    with pytest.raises(ValueError, match="mode must be one of"):
        TextFusion(4, 4, mode="sum")
    with pytest.raises(ValueError, match="needs frame_size"):
        TextFusion(4, 4, mode="cross_attention")


@pytest.mark.parametrize("mode", ["concat", "gated", "cross_attention"])
def test_text_fusion_shapes_gradients_and_empty_text(mode):
    torch.manual_seed(0)
    fusion = TextFusion(6, 5, mode=mode, hidden_size=4, frame_size=3, num_heads=2)
    fusion.eval()
    audio = torch.randn(2, 6)
    text = torch.randn(2, 5, requires_grad=True)
    frames = torch.randn(2, 7, 3)
    lens = torch.tensor([1.0, 4 / 7])
    out = fusion(audio, text, torch.tensor([True, False]), frames, lens)
    assert out.shape == (2, fusion.output_size)
    out.sum().backward()
    # the utterance without text ignores its text vector, uses the learned one
    assert text.grad[1].abs().max() == 0 and text.grad[0].abs().max() > 0
    assert fusion.empty_text.grad is not None
    other = text.detach().clone()
    other[1] = 100.0
    again = fusion(audio, other, torch.tensor([True, False]), frames, lens)
    assert torch.allclose(out[1], again[1])


def test_cross_attention_ignores_padded_frames():
    torch.manual_seed(0)
    fusion = TextFusion(4, 5, "cross_attention", hidden_size=4, frame_size=3).eval()
    audio, text = torch.randn(1, 4), torch.randn(1, 5)
    frames = torch.randn(1, 5, 3)
    padded = torch.cat([frames, 1e3 * torch.randn(1, 4, 3)], dim=1)
    alone = fusion(audio, text, None, frames, torch.ones(1))
    batched = fusion(audio, text, None, padded, torch.tensor([5 / 9]))
    assert torch.allclose(alone, batched, atol=1e-5)


def test_model_with_gender_and_text(tiny_models):
    torch.manual_seed(0)
    encoder = SSLEncoder(tiny_models["wavlm"])
    pooling = MeanPooling(encoder.output_size)
    gender = GenderConditioning(pooling.output_size, mode="concat", embedding_size=4)
    fusion = TextFusion(gender.output_size, 6, mode="gated", hidden_size=8)
    model = EmotionModel(
        encoder, pooling, LinearHead(fusion.output_size, 4), gender, fusion
    ).eval()
    wavs = torch.randn(2, 8000)
    text = torch.randn(2, 6)
    out = model(wavs, torch.tensor([1.0, 0.7]), text=text)
    assert out["logits"].shape == (2, 4) and out["gender_logits"].shape == (2, 2)
    with pytest.raises(ValueError, match="pass the text embeddings"):
        model(wavs)
    # inference needs only audio (+ text): gender comes from the model itself
    labelled = model(
        wavs,
        torch.tensor([1.0, 0.7]),
        gender=out["gender_logits"].argmax(-1),
        text=text,
    )
    assert torch.allclose(out["logits"], labelled["logits"])
