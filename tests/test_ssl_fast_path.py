"""The faster eval path of SSLEncoder (sser_lobes.encoders.fast_path.registry) computes
what stock transformers computes, for the four kinds of checkpoints, and is
safe to share between threads."""

import numpy as np
import pytest
import torch
from conftest import ENCODER_ATOL as ATOL
from conftest import NO_DROPOUT, alone_and_padded

from sser_lobes import SSLEncoder
from sser_lobes.encoders.fast_path.group_norm import MaskedGroupNorm


def test_masked_group_norm_matches_group_norm():
    norm = MaskedGroupNorm(3)
    x = torch.randn(2, 3, 11)
    masked = norm(x, valid_frames=torch.tensor([11, 11]))
    assert torch.allclose(masked, norm(x), atol=1e-5)


@pytest.mark.parametrize(
    "name", ["wavlm", "wav2vec2_large", "wav2vec2_base", "hubert_base"]
)
def test_eval_fast_path_equals_transformers(tiny_models, name):
    """The eval-mode CPU path (utterance-wise time-major CNN, packed
    feed-forward, SDPA attention, channels-last position conv) computes the
    stock transformers model: each utterance of a padded batch equals the
    unmodified model run on that utterance alone."""
    from transformers import AutoModel

    encoder = SSLEncoder(
        tiny_models[name], finetune="frozen", normalize_waveform=False
    ).eval()
    stock = AutoModel.from_pretrained(tiny_models[name]).eval()
    assert (
        type(stock.encoder.layers[0].attention)
        is not type(encoder.model.encoder.layers[0].attention)
        or "wavlm" not in name
    )
    gen = torch.Generator().manual_seed(7)
    lengths = [23000, 9000, 5200]
    batch = torch.zeros(3, max(lengths))
    for row, length in enumerate(lengths):
        batch[row, :length] = 0.2 * torch.randn(length, generator=gen)
    lens = torch.tensor(lengths) / max(lengths)
    with torch.no_grad():
        feats, feat_lens = encoder(batch, lens)
        for row, length in enumerate(lengths):
            reference = stock(batch[row : row + 1, :length]).last_hidden_state[0]
            frames = reference.shape[0]
            assert round(float(feat_lens[row]) * feats.shape[1]) == frames
            diff = (feats[row, :frames] - reference).abs().max().item()
            assert diff < ATOL, f"{name}, utterance {row}: {diff}"


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2_base"])
def test_training_and_eval_paths_agree(tiny_models, name):
    """The batched training-mode CNN (masked group norm) and the eval-mode
    utterance-wise CNN give the same features (dropouts off)."""
    encoder = SSLEncoder(
        tiny_models[name],
        finetune="entire",
        config_overrides={
            "hidden_dropout": 0.0,
            "attention_dropout": 0.0,
            "activation_dropout": 0.0,
            "feat_proj_dropout": 0.0,
            "layerdrop": 0.0,
            "mask_time_prob": 0.0,
            "mask_feature_prob": 0.0,
        },
    )
    _, _, padded_eval, _ = alone_and_padded(encoder.eval(), seed=5)
    _, _, padded_train, _ = alone_and_padded(encoder.train(), seed=5)
    assert (padded_eval - padded_train).abs().max().item() < ATOL


def _padded_batches(count, seed):
    """``count`` padded batches of 1 to 4 utterances with different lengths;
    some have no padding (the padded length is their longest utterance), the
    others a padded tail of up to 3,000 samples."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for index in range(count):
        size = 1 + index % 4
        lengths = torch.randint(1200, 12000, (size,), generator=gen)
        padded = int(lengths.max()) + (0 if index % 3 == 0 else 3000 * index // count)
        wavs = torch.zeros(size, padded)
        for row, length in enumerate(lengths.tolist()):
            wavs[row, :length] = 0.2 * torch.randn(length, generator=gen)
        batches.append((wavs, lengths.float() / padded))
    return batches


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2_base"])
def test_concurrent_calls_equal_sequential_calls(tiny_models, name):
    """One eval-mode encoder shared by 4 threads (a web server's or a batch
    job's thread pool): every call gives the features it gives alone. The
    per-call state of the fast path (utterance-wise CNN, valid rows of the
    feed-forward blocks, valid frames of the group norm) belongs to the call,
    not to the shared modules."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = SSLEncoder(tiny_models[name], finetune="frozen").eval()
    batches = _padded_batches(48, seed=11)
    sequential = [encoder(wavs, lens)[0] for wavs, lens in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            concurrent = list(pool.map(lambda batch: encoder(*batch)[0], batches))
            for index, (alone, shared) in enumerate(zip(sequential, concurrent)):
                assert shared.shape == alone.shape, f"batch {index}"
                diff = (shared - alone).abs().max().item()
                assert diff < 1e-5, f"{name}, batch {index}: {diff}"


@pytest.mark.parametrize("finetune", ["partial", "entire"])
@pytest.mark.parametrize(
    "name", ["wavlm", "wav2vec2_large", "wav2vec2_base", "hubert_base"]
)
def test_training_gradients_equal_stock_transformers(tiny_models, name, finetune):
    """In training mode too (SDPA attention, feed-forward blocks on valid
    frames, channels-last position conv, utterance-wise frozen CNN), the
    gradients of a padded batch equal those of stock transformers run on each
    utterance alone (dropouts off, so that both compute the same function)."""
    from transformers import AutoModel

    encoder = SSLEncoder(
        tiny_models[name],
        finetune=finetune,
        normalize_waveform=False,
        config_overrides=NO_DROPOUT,
    ).train()
    stock = AutoModel.from_pretrained(tiny_models[name], **NO_DROPOUT).train()
    if finetune == "partial":
        for param in stock.feature_extractor.parameters():
            param.requires_grad = False
    gen = torch.Generator().manual_seed(11)
    lengths = [21000, 9000, 5200]
    batch = torch.zeros(3, max(lengths))
    for row, length in enumerate(lengths):
        batch[row, :length] = 0.2 * torch.randn(length, generator=gen)
    feats, _ = encoder(batch, torch.tensor(lengths) / max(lengths))
    weights = torch.randn(feats.shape, generator=gen)
    (feats * weights).sum().backward()
    total = 0.0
    for row, length in enumerate(lengths):
        alone = stock(batch[row : row + 1, :length]).last_hidden_state[0]
        total = total + (alone * weights[row, : alone.shape[0]]).sum()
    total.backward()
    ours = dict(encoder.model.named_parameters())
    compared = 0
    for key, param in stock.named_parameters():
        if param.grad is None:
            assert ours[key].grad is None or not ours[key].grad.any(), key
            continue
        scale = float(param.grad.abs().max()) + 1e-6
        diff = float((ours[key].grad - param.grad).abs().max())
        assert diff <= 1e-4 * scale + 1e-6, f"{name} {finetune} {key}: {diff} / {scale}"
        compared += 1
    assert compared > 10


@pytest.mark.parametrize("finetune", ["partial", "entire"])
@pytest.mark.parametrize("name", ["wavlm", "wav2vec2_base"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_models, name, finetune):
    """Dropout and layerdrop on: the recompute restores the random state and
    the call state (valid rows, group-norm frames), so the gradients equal
    those of a run that stores the activations."""
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        encoder = SSLEncoder(
            tiny_models[name],
            finetune=finetune,
            gradient_checkpointing=checkpointing,
            config_overrides={"layerdrop": 0.5, "hidden_dropout": 0.2},
        ).train()
        gen = torch.Generator().manual_seed(3)
        batch = 0.2 * torch.randn(3, 15000, generator=gen)
        batch[1, 9000:] = 0.0
        batch[2, 4000:] = 0.0
        torch.manual_seed(1)  # the same dropout masks in both runs
        np.random.seed(1)  # and SpecAugment masks (drawn with numpy)
        feats, _ = encoder(batch, torch.tensor([1.0, 0.6, 4000 / 15000]))
        (feats * torch.randn(feats.shape, generator=gen)).sum().backward()
        grads.append(
            {
                k: p.grad.clone()
                for k, p in encoder.named_parameters()
                if p.grad is not None
            }
        )
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for key, value in grads[0].items():
        assert torch.allclose(value, grads[1][key], atol=1e-6, rtol=1e-4), key


def test_gradient_checkpointing_under_bf16_autocast(tiny_models):
    encoder = SSLEncoder(tiny_models["wavlm"], gradient_checkpointing=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = encoder(torch.randn(2, 12000), torch.tensor([1.0, 0.5]))
        loss = feats.float().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
