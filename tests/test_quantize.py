"""int8 inference (sser_lobes.encoders.quantize): loading through from_hparams and
sser-predict, agreement with fp32 on a trained model, refusal off the CPU.

The trained and exported model is the session fixture ``exported`` (a tiny
wav2vec2 with a group-norm CNN, 4 epochs, test session 4: 24 test files).
"""

import json

import numpy as np
import pytest
import torch

from sser_lobes.errors import QuantizationError

#: int8 against fp32 on the exported model's test files. Per-channel int8
#: weights and per-call int8 activations move the encoder's features by
#: 1-2 % (relative); on this model that moves the probabilities by at most
#: 0.011 and changes no label (measured with the oneDNN, x86 and fbgemm
#: engines alike). The bounds leave a 4x margin for other CPUs' kernels
#: while still failing if a layer were quantized wrongly (a wrong weight
#: layout or scale moves the probabilities by tenths).
MIN_TOP1_AGREEMENT = 0.95
MAX_PROBABILITY_DIFF = 0.05


def _test_paths(run):
    manifest = json.loads((run / "manifests" / "test.json").read_text())
    return [entry["wav"] for entry in manifest.values()]


def _probabilities(recognizer, paths, batch_size=8):
    results = recognizer.predict_files(paths, batch_size=batch_size)
    return np.array(
        [[r["probabilities"][c] for c in recognizer.labels] for r in results]
    )


@pytest.fixture(scope="module")
def recognizers(exported):
    from sser_lobes.inference.recognizer import EmotionRecognizer

    _, out = exported
    fp32 = EmotionRecognizer.from_hparams(str(out))
    int8 = EmotionRecognizer.from_hparams(str(out), quantize="int8")
    return fp32, int8


def test_int8_replaces_the_encoder_linear_layers(recognizers):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    fp32, int8 = recognizers
    float_linears = [
        name
        for name, m in fp32.mods.model.encoder.model.named_modules()
        if type(m) is torch.nn.Linear
    ]
    quantized = {
        name
        for name, m in int8.mods.model.encoder.model.named_modules()
        if isinstance(m, DynamicLinear)
    }
    assert float_linears and quantized == set(float_linears)
    # The fp32 path is untouched: no int8 module in the default recognizer.
    assert not any(isinstance(m, DynamicLinear) for m in fp32.mods.model.modules())
    # Pooling and head stay in fp32, on the CPU.
    assert type(int8.mods.model.head.linear) is torch.nn.Linear
    assert str(int8.device) == "cpu"


def test_int8_agrees_with_fp32_on_the_trained_model(exported, recognizers):
    run, _ = exported
    fp32, int8 = recognizers
    paths = _test_paths(run)
    p32 = _probabilities(fp32, paths)
    p8 = _probabilities(int8, paths)
    agreement = float(np.mean(p32.argmax(1) == p8.argmax(1)))
    assert agreement >= MIN_TOP1_AGREEMENT, agreement
    assert 0 < np.abs(p32 - p8).max() <= MAX_PROBABILITY_DIFF
    # Alone or in a padded batch: the same up to the per-call scale.
    alone = _probabilities(int8, paths[:6], batch_size=1)
    assert np.abs(alone - p8[:6]).max() <= MAX_PROBABILITY_DIFF


def test_int8_wavlm_fast_attention(tiny_models):
    """WavLM's eval attention calls its projections as modules, so int8
    projections run through it (F.linear on their weight would fail)."""
    from sser_lobes import SSLEncoder
    from sser_lobes.encoders.quantize import quantize_int8

    encoder = SSLEncoder(tiny_models["wavlm"], finetune="frozen").eval()
    gen = torch.Generator().manual_seed(3)
    wavs = 0.2 * torch.randn(3, 20000, generator=gen)
    lens = torch.tensor([1.0, 0.7, 0.45])
    reference, _ = encoder(wavs, lens)
    engine = torch.backends.quantized.engine
    summary = quantize_int8(encoder)
    assert torch.backends.quantized.engine == engine
    assert summary["linear_layers"] == 2 * 6 + 1
    feats, _ = encoder(wavs, lens)
    relative = (feats - reference).norm() / reference.norm()
    assert 0 < relative < 0.05, relative


def test_sser_predict_int8(exported, tmp_path, capsys):
    from sser_lobes.inference import predict

    run, out = exported
    paths = _test_paths(run)[:4]
    output = tmp_path / "int8.jsonl"
    argv = ["--model", str(out), *paths, "--quantize", "int8", "--output", str(output)]
    assert predict.main(argv) == 0
    int8 = [json.loads(line) for line in output.read_text().splitlines()]
    fp32_out = tmp_path / "fp32.jsonl"
    assert predict.main(["--model", str(out), *paths, "--output", str(fp32_out)]) == 0
    fp32 = [json.loads(line) for line in fp32_out.read_text().splitlines()]
    assert [r["file"] for r in int8] == paths
    diffs = [
        abs(a["probabilities"][c] - b["probabilities"][c])
        for a, b in zip(int8, fp32)
        for c in a["probabilities"]
    ]
    assert 0 < max(diffs) <= MAX_PROBABILITY_DIFF
    assert "4 of 4 files processed" in capsys.readouterr().err


def test_int8_is_refused_off_the_cpu(exported, capsys):
    """Refused before anything is loaded, so no GPU is needed to check it."""
    from sser_lobes.inference import predict
    from sser_lobes.inference.recognizer import EmotionRecognizer

    _, out = exported
    with pytest.raises(QuantizationError, match="runs on the CPU only") as info:
        EmotionRecognizer.from_hparams(
            str(out), quantize="int8", run_opts={"device": "cuda:0"}
        )
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="quantize must be one of"):
        EmotionRecognizer.from_hparams(str(out), quantize="int4")
    argv = ["--model", str(out), str(out / "model.safetensors")]
    assert predict.main([*argv, "--quantize", "int8", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "CPU only" in err[0]
