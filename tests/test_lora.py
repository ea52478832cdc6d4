"""LoRA fine-tuning through peft (``finetune="lora"``, issue 23): sser's fast
modules call peft's adapted linear layers, so the outputs and the adapters'
gradients equal stock transformers with the adapter written into the weight
(``W + alpha / r * B A``), for the four kinds of checkpoints; merging the
adapters gives the plain model's function and keys; int8 merges first."""

import pytest
import torch
from conftest import NO_DROPOUT, THREE_LAYER_KINDS
from torch.nn.utils import parametrize

from sser_lobes import SSLEncoder
from sser_lobes.encoders.lora import LORA_TARGETS, lora_layers, merge_lora
from sser_lobes.encoders.quantize import quantize_int8


class _LowRankUpdate(torch.nn.Module):
    """``W + scale * B A``: the reference LoRA, as a weight parametrization of
    a stock transformers module (which may read the weight directly)."""

    def __init__(self, a, b, scale):
        super().__init__()
        self.a = torch.nn.Parameter(a.detach().clone())
        self.b = torch.nn.Parameter(b.detach().clone())
        self.scale = scale

    def forward(self, weight):
        return weight + self.scale * self.b @ self.a


def _lora_encoder(folder, trainable_layers, seed=0):
    torch.manual_seed(seed)
    encoder = SSLEncoder(
        folder,
        finetune="lora",
        trainable_layers=trainable_layers,
        lora_rank=4,
        lora_alpha=6,
        normalize_waveform=False,
        config_overrides=NO_DROPOUT,
    ).train()
    # peft starts B at zero (the identity): give it values, so that the
    # adapters change the function and A gets a gradient.
    with torch.no_grad():
        for name, param in encoder.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    return encoder


@pytest.mark.parametrize("trainable_layers", [None, 2])
@pytest.mark.parametrize("name", list(THREE_LAYER_KINDS))
def test_fast_path_with_lora_equals_stock_transformers(
    three_layer_models, name, trainable_layers
):
    """A padded batch through sser (packed feed-forward blocks, sser's WavLM
    attention, the split below the adapted layers) against stock transformers
    on each utterance alone, with every adapter written into its weight:
    the same features, and the same gradients for every A and B."""
    from transformers import AutoModel

    folder = three_layer_models[name]
    encoder = _lora_encoder(folder, trainable_layers)
    trainable = {k for k, p in encoder.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)
    stock = AutoModel.from_pretrained(folder, **NO_DROPOUT).train()
    stock.requires_grad_(False)
    references = {}
    for _, _, layer in lora_layers(encoder.model):
        path = next(n for n, m in encoder.model.named_modules() if m is layer)
        a = layer.lora_A["default"].weight
        b = layer.lora_B["default"].weight
        update = _LowRankUpdate(a, b, layer.scaling["default"])
        parametrize.register_parametrization(
            stock.get_submodule(path), "weight", update
        )
        references[path] = (a, b, update)
    layers = [2, 3] if trainable_layers == 2 else [1, 2, 3]
    expected = {f"encoder.layers.{i - 1}" for i in layers}
    assert {p.rsplit(".", 2)[0] for p in references} == expected
    assert {p.rsplit(".", 1)[1] for p in references} == {
        n for group in LORA_TARGETS.values() for n in group
    }
    gen = torch.Generator().manual_seed(5)
    lengths = [20000, 8800, 5200]
    batch = torch.zeros(3, max(lengths))
    for row, length in enumerate(lengths):
        batch[row, :length] = 0.2 * torch.randn(length, generator=gen)
    feats, _ = encoder(batch, torch.tensor(lengths) / max(lengths))
    weights = torch.randn(feats.shape, generator=gen)
    (feats * weights).sum().backward()
    total = 0.0
    for row, length in enumerate(lengths):
        alone = stock(batch[row : row + 1, :length]).last_hidden_state[0]
        frames = alone.shape[0]
        assert torch.allclose(feats[row, :frames], alone, atol=1e-4), row
        total = total + (alone * weights[row, :frames]).sum()
    total.backward()
    for path, (a, b, update) in references.items():
        for ours, theirs in ((a, update.a), (b, update.b)):
            scale = float(theirs.grad.abs().max())
            assert scale > 0, path
            diff = float((ours.grad - theirs.grad).abs().max())
            assert diff <= 1e-4 * scale + 1e-7, f"{name} {path}: {diff} / {scale}"


@pytest.mark.parametrize("name", ["wavlm_stable", "hubert_post_norm"])
def test_merged_adapters_compute_the_same_function(three_layer_models, name):
    encoder = _lora_encoder(three_layer_models[name], None).eval()
    plain = SSLEncoder(
        three_layer_models[name],
        finetune="frozen",
        normalize_waveform=False,
        config_overrides=NO_DROPOUT,
    )
    wavs, lens = torch.randn(2, 12000), torch.tensor([1.0, 0.55])
    with torch.no_grad():
        adapted, _ = encoder(wavs, lens)
        before, _ = plain(wavs, lens)
    assert encoder.adapters["rank"] == 4 and encoder.adapters["alpha"] == 6.0
    assert (adapted - before).abs().max() > 1e-3  # the adapters do something
    assert encoder.merge_adapters() == 18  # 3 layers x 6 linear layers
    assert encoder.adapters is None and not lora_layers(encoder)
    assert sorted(encoder.state_dict()) == sorted(plain.state_dict())
    with torch.no_grad():
        merged, _ = encoder(wavs, lens)
    assert torch.allclose(merged, adapted, atol=1e-5)


def test_int8_merges_kept_adapters_first(three_layer_models):
    encoder = _lora_encoder(three_layer_models["wavlm_stable"], 2).eval()
    wavs, lens = torch.randn(2, 12000), torch.tensor([1.0, 0.55])
    with torch.no_grad():
        reference, _ = encoder(wavs, lens)
    summary = quantize_int8(encoder)
    assert not lora_layers(encoder) and summary["linear_layers"] == 19
    with torch.no_grad():
        feats, _ = encoder(wavs, lens)
    assert float((feats - reference).norm() / reference.norm()) < 0.1


def test_lora_options_are_checked(three_layer_models):
    folder = three_layer_models["hubert_post_norm"]
    with pytest.raises(ValueError, match="'attn' is not a target"):
        SSLEncoder(folder, finetune="lora", lora_targets="attn")
    with pytest.raises(ValueError, match="lora_rank must be an integer >= 1"):
        SSLEncoder(folder, finetune="lora", lora_rank=0)
    encoder = SSLEncoder(folder, finetune="lora", lora_targets="attention")
    names = {n.split(".")[-4] for n, _ in encoder.named_parameters() if "lora_A" in n}
    assert names == set(LORA_TARGETS["attention"])
    assert encoder.adapters["alpha"] == 32.0  # 2 r by default
    assert merge_lora(torch.nn.Linear(2, 2)) == 0
