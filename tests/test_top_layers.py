"""Top-k fine-tuning (``finetune="top"``, issue 23): the frozen part below the
trained layers and the trained layers, run apart, compute stock transformers'
model (outputs and gradients, for the four kinds of checkpoints), and training
from the feature cache's stored input of the trained layers gives the losses
and gradients of training from audio."""

import numpy as np
import pytest
import soundfile
import speechbrain as sb
import torch
from conftest import NO_DROPOUT, THREE_LAYER_KINDS

from sser_lobes import EmotionModel, LinearHead, SSLEncoder, make_pooling
from sser_lobes.dataio.pipelines import audio_pipeline, encoder_input_of
from sser_lobes.training.feature_cache import (
    FeatureCache,
    encoder_fingerprint,
    fill,
)


def _batch(lengths, seed):
    gen = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        batch[row, :length] = 0.2 * torch.randn(length, generator=gen)
    return batch, torch.tensor(lengths) / max(lengths), gen


@pytest.mark.parametrize("output_layer", ["last", 2])
@pytest.mark.parametrize("name", list(THREE_LAYER_KINDS))
def test_trained_layers_equal_stock_transformers(
    three_layer_models, name, output_layer
):
    """Top 2 of 3 layers in training mode (dropout off) on a padded batch: the
    features and the gradients of the trained layers equal stock transformers
    run on each utterance alone with the lower part frozen; the frozen part
    gets no gradient. For WavLM the trained layers get the relative position
    bias recomputed from the length."""
    from transformers import AutoModel

    folder = three_layer_models[name]
    encoder = SSLEncoder(
        folder,
        finetune="top",
        trainable_layers=2,
        output_layer=output_layer,
        normalize_waveform=False,
        config_overrides=NO_DROPOUT,
    ).train()
    assert encoder.split_layer == 1
    stock = AutoModel.from_pretrained(folder, **NO_DROPOUT).train()
    trained = ("encoder.layers.1.", "encoder.layers.2.")
    if stock.config.do_stable_layer_norm:
        trained += ("encoder.layer_norm.",)
    for key, param in stock.named_parameters():
        param.requires_grad = key.startswith(trained)
    lengths = [21000, 9000, 5200]
    batch, lens, gen = _batch(lengths, seed=11)
    feats, _ = encoder(batch, lens)
    weights = torch.randn(feats.shape, generator=gen)
    (feats * weights).sum().backward()
    total = 0.0
    for row, length in enumerate(lengths):
        out = stock(batch[row : row + 1, :length], output_hidden_states=True)
        alone = (
            out.last_hidden_state if output_layer == "last" else out.hidden_states[2]
        )[0]
        frames = alone.shape[0]
        assert torch.allclose(feats[row, :frames], alone, atol=1e-4), row
        total = total + (alone * weights[row, :frames]).sum()
    total.backward()
    ours = dict(encoder.model.named_parameters())
    compared = 0
    for key, param in stock.named_parameters():
        if not param.requires_grad:
            assert not ours[key].requires_grad and ours[key].grad is None, key
            continue
        assert ours[key].requires_grad, key
        if param.grad is None:  # the last layer with output_layer=2
            assert ours[key].grad is None or not ours[key].grad.any(), key
            continue
        scale = float(param.grad.abs().max()) + 1e-6
        diff = float((ours[key].grad - param.grad).abs().max())
        assert diff <= 1e-4 * scale + 1e-6, f"{name} {key}: {diff} / {scale}"
        compared += 1
    assert compared >= 8


@pytest.mark.parametrize("name", ["wavlm_stable", "hubert_post_norm"])
def test_gradient_checkpointing_of_the_trained_layers(three_layer_models, name):
    """Dropout and layerdrop on: checkpointing the trained layers replays the
    random and call states, so the gradients equal those of a run that keeps
    the activations."""
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        encoder = SSLEncoder(
            three_layer_models[name],
            finetune="top",
            trainable_layers=2,
            gradient_checkpointing=checkpointing,
            config_overrides={"layerdrop": 0.3, "hidden_dropout": 0.2},
        ).train()
        batch, lens, gen = _batch([15000, 9000, 4000], seed=3)
        torch.manual_seed(1)
        feats, _ = encoder(batch, lens)
        (feats * torch.randn(feats.shape, generator=gen)).sum().backward()
        grads.append(
            {
                k: p.grad.clone()
                for k, p in encoder.named_parameters()
                if p.grad is not None
            }
        )
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    assert all(".layers.0." not in key for key in grads[0])
    for key, value in grads[0].items():
        assert torch.allclose(value, grads[1][key], atol=1e-6, rtol=1e-4), key


def test_only_the_top_layers_train_and_the_rest_stays_in_eval(three_layer_models):
    encoder = SSLEncoder(
        three_layer_models["wavlm_stable"], finetune="top", trainable_layers=1
    ).train()
    trainable = {k for k, p in encoder.model.named_parameters() if p.requires_grad}
    assert trainable and all(
        k.startswith(("encoder.layers.2.", "encoder.layer_norm.")) for k in trainable
    )
    layers = encoder.model.encoder.layers
    assert layers[2].training and not layers[1].training
    assert not encoder.model.feature_extractor.training
    assert not encoder.model.encoder.pos_conv_embed.training


def test_bad_trainable_layers_are_refused(three_layer_models):
    folder = three_layer_models["hubert_post_norm"]
    with pytest.raises(ValueError, match="needs trainable_layers"):
        SSLEncoder(folder, finetune="top")
    with pytest.raises(ValueError, match=r"must be in 1\.\.3"):
        SSLEncoder(folder, finetune="top", trainable_layers=4)
    with pytest.raises(ValueError, match="is for finetune='top' or 'lora'"):
        SSLEncoder(folder, finetune="partial", trainable_layers=2)
    with pytest.raises(ValueError, match="come from hidden states 2..3"):
        SSLEncoder(folder, finetune="top", trainable_layers=1, output_layer=1)
    with pytest.raises(ValueError, match="come from hidden states 1..3"):
        SSLEncoder(
            folder, finetune="top", trainable_layers=2, output_layer="weighted_sum"
        )
    summed = SSLEncoder(
        folder,
        finetune="top",
        trainable_layers=2,
        output_layer="weighted_sum",
        weighted_sum_layers="1-3",
    )
    assert summed.selected_layers == [1, 2, 3] and summed.hidden_state_indices == [1]


# --------------------------------------------------------------------------
# Training from the cache equals training from audio
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    """Four 16 kHz wav files of different lengths and their labels."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    files = {}
    for index, seconds in enumerate((1.3, 0.7, 2.1, 1.0)):
        path = folder / f"u{index}.wav"
        signal = 0.1 * rng.standard_normal(int(seconds * 16000))
        soundfile.write(path, signal.astype("float32"), 16000, subtype="PCM_16")
        files[f"u{index}"] = (path, index % 4)
    return files


def _dataset(files):
    data = {
        utt: {"wav": str(path), "duration": soundfile.info(path).duration}
        for utt, (path, _) in files.items()
    }
    return sb.dataio.dataset.DynamicItemDataset(
        data, dynamic_items=[audio_pipeline(16000, 400)], output_keys=["id", "sig"]
    )


def _model(folder, trainable_layers, **options):
    torch.manual_seed(0)
    encoder = SSLEncoder(
        folder,
        finetune=options.pop("finetune", "top"),
        trainable_layers=trainable_layers,
        output_norm="utterance",
        config_overrides=NO_DROPOUT,
        **options,
    )
    pooling = make_pooling("mean", encoder.output_size)
    return EmotionModel(encoder, pooling, LinearHead(pooling.output_size, 4)).train()


def _loss_and_grads(model, batch, labels, cached):
    model.zero_grad(set_to_none=True)
    if cached:
        hidden, lens = batch.ssl_hidden
        logits = model(hidden=hidden, hidden_lens=lens)["logits"]
    else:
        wavs, lens = batch.sig
        logits = model(wavs, lens)["logits"]
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    grads = {
        k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None
    }
    return float(loss.detach()), grads


def _cached_batch(cache, names, ids):
    rows = [
        {"id": u, "ssl_hidden": torch.from_numpy(cache.load(names[u]))} for u in ids
    ]
    return sb.dataio.batch.PaddedBatch(rows)


@pytest.mark.parametrize(
    "name, finetune",
    [
        ("wavlm_stable", "top"),
        ("wavlm_post_norm", "top"),
        ("hubert_post_norm", "top"),
        ("wav2vec2_stable", "top"),
        ("wavlm_stable", "lora"),
    ],
)
def test_training_from_the_cache_equals_training_from_audio(
    three_layer_models, audio_files, tmp_path, name, finetune
):
    """Top-2 (or LoRA on the top 2) with dropout off: the loss and every
    gradient of a padded batch read from a float32 cache equal those of the
    same batch computed from audio. The cache is filled in batches of
    another composition (other padding) than the training batch."""
    folder = three_layer_models[name]
    model = _model(folder, 2, finetune=finetune)
    encoder = model.encoder
    dataset = _dataset(audio_files)
    cache = FeatureCache(tmp_path / "cache", encoder, "float32")
    cache.create()
    reading = encoder_input_of(dataset)
    names = cache.index([(u, str(p), reading) for u, (p, _) in audio_files.items()])
    fill(cache, encoder, dataset, names, list(names), batch_size=3)
    assert cache.layers == [1] and model.training
    audio_batch = sb.dataio.batch.PaddedBatch([dataset[i] for i in range(4)])
    ids = list(audio_batch.id)
    labels = torch.tensor([audio_files[u][1] for u in ids])
    loss_audio, grads_audio = _loss_and_grads(model, audio_batch, labels, cached=False)
    cached_batch = _cached_batch(cache, names, ids)
    loss_cache, grads_cache = _loss_and_grads(model, cached_batch, labels, cached=True)
    assert loss_cache == pytest.approx(loss_audio, rel=1e-5)
    assert grads_audio.keys() == grads_cache.keys()
    assert not any(".layers.0." in k for k in grads_audio)  # the frozen part
    assert any(".layers.2." in k for k in grads_audio)
    for key, grad in grads_audio.items():
        scale = float(grad.abs().max())
        error = float((grads_cache[key] - grad).abs().max())
        assert error <= 1e-4 * scale + 1e-9, key


def test_half_precision_storage_error_is_small(
    three_layer_models, audio_files, tmp_path
):
    """float16 and bfloat16 storage of the trained layers' input: the loss and
    the gradients move by a small relative amount (measured on base size by
    bench/finetune_budget.py)."""
    folder = three_layer_models["wavlm_stable"]
    model = _model(folder, 2)
    dataset = _dataset(audio_files)
    reading = encoder_input_of(dataset)
    ids = list(audio_files)
    labels = torch.tensor([audio_files[u][1] for u in ids])
    results = {}
    for dtype in ("float32", "float16", "bfloat16"):
        cache = FeatureCache(tmp_path / dtype, model.encoder, dtype)
        cache.create()
        names = cache.index([(u, str(p), reading) for u, (p, _) in audio_files.items()])
        fill(cache, model.encoder, dataset, names, ids, batch_size=4)
        results[dtype] = _loss_and_grads(
            model, _cached_batch(cache, names, ids), labels, cached=True
        )
    loss32, grads32 = results["float32"]
    for dtype, tolerance in (("float16", 2e-3), ("bfloat16", 2e-2)):
        loss, grads = results[dtype]
        assert loss == pytest.approx(loss32, rel=tolerance), dtype
        assert loss != loss32  # the storage is really half precision
        reference = torch.cat([g.flatten() for g in grads32.values()])
        moved = torch.cat([grads[k].flatten() for k in grads32]) - reference
        error = float(moved.norm() / reference.norm())
        assert error < 10 * tolerance, (dtype, error)


def test_the_cache_key_covers_the_frozen_part_only(three_layer_models, tmp_path):
    """Training the top layers keeps the key; a change below the split, or
    another split, changes it; a frozen encoder's key is unchanged by the
    feature (its old entries stay valid)."""
    folder = three_layer_models["hubert_post_norm"]
    top = SSLEncoder(folder, finetune="top", trainable_layers=2)
    key = encoder_fingerprint(top)
    with torch.no_grad():
        top.model.encoder.layers[2].feed_forward.output_dense.weight.add_(1.0)
    assert encoder_fingerprint(top) == key
    with torch.no_grad():
        top.model.encoder.layers[0].feed_forward.output_dense.weight.add_(1.0)
    assert encoder_fingerprint(top) != key
    other_split = SSLEncoder(folder, finetune="top", trainable_layers=1)
    fresh = SSLEncoder(folder, finetune="top", trainable_layers=2)
    assert encoder_fingerprint(other_split) != encoder_fingerprint(fresh)
    lora = SSLEncoder(folder, finetune="lora", trainable_layers=2)
    assert encoder_fingerprint(lora) == encoder_fingerprint(fresh)
    frozen = SSLEncoder(folder, finetune="frozen", output_layer=1)
    assert "split_layer" not in str(FeatureCache(tmp_path, frozen).meta)
    assert FeatureCache(tmp_path, fresh).layers == [1]
    with pytest.raises(ValueError, match="stores a frozen encoder"):
        FeatureCache(tmp_path, SSLEncoder(folder, finetune="lora"))
