"""SSLEncoder: loading, fine-tuning modes, layer options and batch invariance."""

import pytest
import torch
from conftest import ENCODER_ATOL as ATOL
from conftest import alone_and_padded

from sser_lobes import SSLEncoder


@pytest.mark.parametrize(
    "name", ["wavlm", "wav2vec2_large", "wav2vec2_base", "hubert_base"]
)
@pytest.mark.parametrize("finetune", ["frozen", "partial", "entire"])
def test_batch_invariance(tiny_models, name, finetune):
    """Alone vs padded in a batch: same frames within 1e-4, for layer-norm
    (WavLM, wav2vec2-large) and group-norm (wav2vec2-base, HuBERT-base)."""
    encoder = SSLEncoder(tiny_models[name], finetune=finetune).eval()
    alone, _, padded, padded_lens = alone_and_padded(encoder)
    frames = alone.shape[1]
    assert round(float(padded_lens[0]) * padded.shape[1]) == frames
    diff = (alone[0] - padded[0, :frames]).abs().max().item()
    assert diff < ATOL, f"{name}/{finetune}: alone vs batch differ by {diff}"
    assert padded[0, frames:].abs().max().item() == 0.0  # padding zeroed


@pytest.mark.parametrize("output_layer", [0, 1, "weighted_sum"])
def test_batch_invariance_of_layer_options(tiny_models, output_layer):
    encoder = SSLEncoder(
        tiny_models["wav2vec2_base"], output_layer=output_layer, output_norm=True
    ).eval()
    alone, _, padded, _ = alone_and_padded(encoder, seed=3)
    frames = alone.shape[1]
    assert (alone[0] - padded[0, :frames]).abs().max().item() < ATOL


def test_unmasked_group_norm_breaks_invariance(tiny_models):
    """The test above can fail: with a plain GroupNorm (what transformers and
    SpeechBrain do) padding changes the features of a group-norm model."""
    encoder = SSLEncoder(tiny_models["wav2vec2_base"]).eval()
    first = encoder.model.feature_extractor.conv_layers[0]
    plain = torch.nn.GroupNorm(
        first.layer_norm.num_groups, first.layer_norm.num_channels
    )
    plain.load_state_dict(first.layer_norm.state_dict())
    first.layer_norm = plain
    encoder.uses_group_norm = False
    alone, _, padded, _ = alone_and_padded(encoder)
    frames = alone.shape[1]
    assert (alone[0] - padded[0, :frames]).abs().max().item() > 100 * ATOL


def test_padded_normalisation_breaks_invariance(tiny_models):
    """SpeechBrain's wrapper layer-normalises over the padded length: emulate
    it to show our check is sensitive to it."""
    encoder = SSLEncoder(tiny_models["wavlm"], normalize_waveform=False).eval()
    gen = torch.Generator().manual_seed(1)
    short = 0.1 * torch.randn(1, 7000, generator=gen) + 0.02
    batch = torch.zeros(2, 23000)
    batch[0, :7000] = short
    batch[1] = 0.3 * torch.randn(23000, generator=gen)
    norm = torch.nn.functional.layer_norm
    with torch.no_grad():
        alone, _ = encoder(norm(short, short.shape[1:]))
        padded, _ = encoder(
            norm(batch, batch.shape[1:]), torch.tensor([7000 / 23000, 1])
        )
    frames = alone.shape[1]
    assert (alone[0] - padded[0, :frames]).abs().max().item() > 10 * ATOL


def _trainable(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_frozen_mode(tiny_models):
    encoder = SSLEncoder(tiny_models["wavlm"], finetune="frozen")
    assert _trainable(encoder) == set()
    encoder.train()
    assert not encoder.model.training  # dropout etc. stay off
    feats, _ = encoder(torch.randn(1, 4000))
    assert not feats.requires_grad


def test_frozen_mode_keeps_layer_weights_trainable(tiny_models):
    encoder = SSLEncoder(
        tiny_models["wavlm"], finetune="frozen", output_layer="weighted_sum"
    )
    assert _trainable(encoder) == {"layer_weights"}
    feats, _ = encoder(torch.randn(1, 4000))
    feats.sum().backward()
    assert encoder.layer_weights.grad is not None


def test_partial_mode_freezes_cnn_only(tiny_models):
    # layerdrop 0: a dropped first layer would get no gradient.
    encoder = SSLEncoder(
        tiny_models["wav2vec2_base"],
        finetune="partial",
        config_overrides={"layerdrop": 0.0},
    )
    trainable = _trainable(encoder)
    assert trainable, "the transformer must train"
    assert not any(n.startswith("model.feature_extractor.") for n in trainable)
    assert any(n.startswith("model.encoder.layers.") for n in trainable)
    assert any(n.startswith("model.feature_projection.") for n in trainable)
    encoder.train()
    assert encoder.model.encoder.training
    assert not encoder.model.feature_extractor.training
    feats, _ = encoder(torch.randn(2, 4000))
    feats.pow(2).mean().backward()
    cnn_grads = [p.grad for p in encoder.model.feature_extractor.parameters()]
    assert all(g is None for g in cnn_grads)
    assert encoder.model.encoder.layers[0].attention.k_proj.weight.grad is not None


def test_entire_mode_trains_everything(tiny_models):
    encoder = SSLEncoder(tiny_models["hubert_base"], finetune="entire")
    assert _trainable(encoder) == {n for n, _ in encoder.named_parameters()}
    feats, _ = encoder(torch.randn(1, 4000))
    feats.pow(2).mean().backward()
    assert encoder.model.feature_extractor.conv_layers[0].conv.weight.grad is not None


def test_num_layers_and_output_layer(tiny_models):
    full = SSLEncoder(tiny_models["wav2vec2_base"], output_layer=1).eval()
    one = SSLEncoder(tiny_models["wav2vec2_base"], num_layers=1).eval()
    assert len(one.model.encoder.layers) == 1 and one.num_layers == 1
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        a, _ = full(wav)
        b, _ = one(wav)
    # hidden state 1 of the full model is the output of its first layer
    assert torch.allclose(a, b, atol=1e-5)


def test_output_size_from_config(tiny_models):
    assert SSLEncoder(tiny_models["wavlm"]).output_size == 32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"finetune": "half"}, "finetune must be one of"),
        ({"output_layer": 7}, "output_layer must be in 0..2"),
        ({"output_layer": "first"}, "output_layer must be"),
        ({"num_layers": 5}, "num_layers must be in 1..2"),
        ({"config_overrides": {"no_such_field": 1}}, "no_such_field"),
    ],
)
def test_bad_arguments(tiny_models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SSLEncoder(tiny_models["wavlm"], **kwargs)


def test_too_short_input_is_a_clear_error(tiny_models):
    encoder = SSLEncoder(tiny_models["wavlm"])
    with pytest.raises(ValueError, match="shorter than 400 samples"):
        encoder(torch.randn(1, 300))


def test_unsupported_model_type(tmp_path):
    from transformers import BertConfig

    BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'bert' model"):
        SSLEncoder(tmp_path)


def test_config_overrides_apply(tiny_models):
    encoder = SSLEncoder(
        tiny_models["wavlm"], config_overrides={"mask_time_prob": 0.0, "layerdrop": 0.0}
    )
    assert encoder.config.mask_time_prob == 0.0 and encoder.config.layerdrop == 0.0


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2_base", "hubert_base"])
def test_training_on_a_batch_shorter_than_a_mask_span(tiny_models, name):
    """SpecAugment needs more than mask_time_length (10) frames; a bucket of
    very short utterances (here 0.1 s, 4 frames) must still train."""
    encoder = SSLEncoder(
        tiny_models[name], finetune="entire", config_overrides={"mask_time_prob": 0.5}
    ).train()
    feats, _ = encoder(torch.randn(3, 1600))
    assert feats.shape[1] == 4
    feats.mean().backward()
    # a longer batch is still masked: masked_spec_embed receives a gradient
    encoder.zero_grad()
    feats, _ = encoder(torch.randn(2, 32000))
    feats.mean().backward()
    assert encoder.model.masked_spec_embed.grad is not None


# Stable-layer-norm (pre-norm, large-style) and post-norm (base-style) models.
STABLE = {"wavlm": True, "wav2vec2_large": True, "wav2vec2_base": False}


def _stock_outputs(folder, wav, num_layers=None):
    """A stock transformers model's outputs on ``wav``, and, from forward
    hooks, the input of its first transformer layer and the raw output of
    each layer (never with the final layer norm)."""
    from transformers import AutoModel

    kwargs = {} if num_layers is None else {"num_hidden_layers": num_layers}
    stock = AutoModel.from_pretrained(folder, **kwargs).eval()
    layers = stock.encoder.layers
    raw = []
    layers[0].register_forward_pre_hook(lambda module, args: raw.append(args[0]))
    for layer in layers:
        layer.register_forward_hook(
            lambda module, args, out: raw.append(
                out[0] if isinstance(out, tuple) else out
            )
        )
    with torch.no_grad():
        out = stock(wav, output_hidden_states=True)
    return stock, out, raw


def _features(folder, wav, **kwargs):
    encoder = SSLEncoder(folder, finetune="frozen", normalize_waveform=False, **kwargs)
    with torch.no_grad():
        return encoder.eval()(wav)[0]


def _close(a, b):
    return (a - b).abs().max().item() < ATOL


@pytest.mark.parametrize("name", sorted(STABLE))
def test_output_layer_semantics(tiny_models, name):
    """``output_layer=k`` is transformers' ``hidden_states[k]``: 0 the input of
    the first layer, k the raw output of layer k (no final layer norm);
    ``"last"`` is ``last_hidden_state``: the final layer norm applied to the
    last layer's output on stable-layer-norm models, that output itself on
    post-norm ones; ``"weighted_sum"`` mixes the raw hidden states."""
    folder = tiny_models[name]
    wav = 0.2 * torch.randn(1, 12000, generator=torch.Generator().manual_seed(4))
    stock, out, raw = _stock_outputs(folder, wav)
    assert len(raw) == len(out.hidden_states) == 3
    for k in range(3):
        feats = _features(folder, wav, output_layer=k)
        assert _close(feats, raw[k]) and _close(feats, out.hidden_states[k]), k
    last = _features(folder, wav)
    assert _close(last, out.last_hidden_state)
    final_norm = stock.encoder.layer_norm
    with torch.no_grad():
        expected_last = final_norm(raw[2]) if STABLE[name] else raw[2]
    assert _close(last, expected_last)
    # On stable-layer-norm models the final layer norm makes them differ.
    top = _features(folder, wav, output_layer=2)
    assert _close(top, last) is not STABLE[name]
    # Zero weights: the plain mean of the raw hidden states.
    mixed = _features(folder, wav, output_layer="weighted_sum")
    assert _close(mixed, torch.stack(raw).mean(0))


@pytest.mark.parametrize("name", sorted(STABLE))
def test_num_layers_semantics(tiny_models, name):
    """``num_layers=N`` builds a truncated encoder: with ``"last"`` its output
    is the stock truncated model's ``last_hidden_state``, i.e. the final layer
    norm applied to hidden state N of the full model on stable-layer-norm
    models, hidden state N itself on post-norm ones; ``output_layer=N`` stays
    the raw hidden state N."""
    folder = tiny_models[name]
    wav = 0.2 * torch.randn(1, 12000, generator=torch.Generator().manual_seed(5))
    full, _, raw = _stock_outputs(folder, wav)
    _, truncated, truncated_raw = _stock_outputs(folder, wav, num_layers=1)
    last = _features(folder, wav, num_layers=1)
    assert _close(last, truncated.last_hidden_state)
    with torch.no_grad():
        expected = full.encoder.layer_norm(raw[1]) if STABLE[name] else raw[1]
    assert _close(last, expected)
    layer_one = _features(folder, wav, num_layers=1, output_layer=1)
    assert _close(layer_one, raw[1]) and _close(layer_one, truncated_raw[1])
    assert _close(layer_one, truncated.hidden_states[1])
    assert _close(layer_one, last) is not STABLE[name]


def test_old_transformers_is_a_clear_error(tiny_models, monkeypatch):
    """Below 5.16 the fast path breaks (WavLM attention signature) and
    ``output_layer`` would silently change meaning: refuse, naming the fix."""
    import transformers

    monkeypatch.setattr(transformers, "__version__", "5.15.0")
    with pytest.raises(RuntimeError, match=r'pip install "transformers>=5.16,<6"'):
        SSLEncoder(tiny_models["wavlm"])
