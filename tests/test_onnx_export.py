"""ONNX export (python -m sser_lobes.export RUN OUT --onnx): the graph equals
the PyTorch model on padded batches, ONNX Runtime runs it, and a graph that
differs is refused.

The trained run is the session fixture ``exported`` (a tiny wav2vec2 with a
group-norm CNN: the masked group norm must survive the export).
"""

import json

import numpy as np
import pytest
import torch
from conftest import recipe_process_state

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def onnx_export(exported, tmp_path_factory):
    """``(run, folder)``: the run exported again, with ``--onnx``."""
    from sser_lobes.inference import export

    run, _ = exported
    out = tmp_path_factory.mktemp("onnx") / "model"
    with recipe_process_state() as (stdout, _):
        assert export.main([str(run), str(out), "--onnx"]) == 0
    assert "ONNX Runtime equals PyTorch" in stdout.getvalue()
    return run, out


def _test_paths(run):
    manifest = json.loads((run / "manifests" / "test.json").read_text())
    return [entry["wav"] for entry in manifest.values()]


def test_onnx_predictions_equal_pytorch(onnx_export, tmp_path):
    """OnnxEmotionRecognizer on the test files (sorted, padded batches of 8,
    and one at a time), and on a file longer than the window (chunked and
    pooled), gives EmotionRecognizer's probabilities."""
    import soundfile

    from sser_lobes.inference.onnx_export import ATOL, OnnxEmotionRecognizer
    from sser_lobes.inference.recognizer import EmotionRecognizer

    run, out = onnx_export
    onnx = OnnxEmotionRecognizer(out, threads=1)
    paths = _test_paths(run)
    wav, rate = soundfile.read(paths[0], dtype="float32")
    repeats = int(2.3 * onnx.window_seconds * rate / len(wav)) + 1
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, np.tile(wav, repeats), rate)
    paths.append(str(long_file))
    torch_results = EmotionRecognizer.from_hparams(str(out)).predict_files(paths)
    assert torch_results[-1]["chunks"] >= 3
    assert onnx.labels == ["neu", "hap", "sad", "ang"]
    assert onnx.output_names == ["probabilities", "logits"]
    for batch_size in (8, 1):
        onnx_results = onnx.predict_files(paths, batch_size=batch_size)
        assert [r["file"] for r in onnx_results] == paths
        diff = max(
            abs(a["probabilities"][c] - b["probabilities"][c])
            for a, b in zip(onnx_results, torch_results)
            for c in onnx.labels
        )
        assert diff < ATOL, (batch_size, diff)
        assert [r["label"] for r in onnx_results] == [r["label"] for r in torch_results]


def test_onnx_graph_has_dynamic_axes_and_metadata(onnx_export):
    import onnx

    _, out = onnx_export
    model = onnx.load(str(out / "model.onnx"))
    inputs = {i.name: i for i in model.graph.input}
    assert set(inputs) == {"waveforms", "wav_lens"}
    dims = [d.dim_param for d in inputs["waveforms"].type.tensor_type.shape.dim]
    assert dims == ["batch", "samples"]
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["sser_task"] == "categorical" and meta["sser_sample_rate"] == 16000


def test_a_graph_that_differs_is_refused(exported, tmp_path, monkeypatch):
    """If the traced graph computed something else than the PyTorch model
    (here: a copy whose head has the opposite sign), the export fails with one
    ``error:`` line and leaves no model.onnx."""
    from sser_lobes.inference import export, onnx_export

    original = onnx_export.stock_graph_copy

    def diverging_copy(model):
        copied = original(model)
        with torch.no_grad():
            copied.head.linear.weight.neg_()
        return copied

    monkeypatch.setattr(onnx_export, "stock_graph_copy", diverging_copy)
    run, _ = exported
    out = tmp_path / "model"
    with recipe_process_state() as (_, stderr):
        assert export.main([str(run), str(out), "--onnx"]) == 1
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "differ from PyTorch's on a padded batch" in lines[0]
    assert not (out / "model.onnx").exists()


def test_reexport_without_onnx_removes_a_stale_graph(onnx_export, tmp_path):
    """A folder exported with --onnx and then again without it must not keep
    (and publish) the old graph next to new weights."""
    import shutil

    from sser_lobes.inference import export

    run, out = onnx_export
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    assert (copy / "model.onnx").is_file()
    with recipe_process_state():
        assert export.main([str(run), str(copy)]) == 0
    assert not (copy / "model.onnx").exists()


def test_text_fused_models_are_not_exported():
    from sser_lobes import EmotionModel, LinearHead, MeanPooling
    from sser_lobes.errors import OnnxExportError
    from sser_lobes.inference.onnx_export import OnnxGraph
    from sser_lobes.nnet.text_fusion import TextFusion

    class Encoder(torch.nn.Module):
        min_samples = 400

        def forward(self, wavs, lens):
            return wavs[:, :, None], lens

    fusion = TextFusion(1, 4, mode="concat")
    model = EmotionModel(
        Encoder(), MeanPooling(1), LinearHead(fusion.output_size, 2), text_fusion=fusion
    )
    with pytest.raises(OnnxExportError, match="text-fused"):
        OnnxGraph(model)


def test_traceable_group_norm_equals_the_masked_one():
    """The export's group norm (tensor operations only) is the training
    path's masked group norm, padded frames included."""
    from sser_lobes.encoders.fast_path.group_norm import MaskedGroupNorm
    from sser_lobes.inference.onnx_export import TraceableMaskedGroupNorm

    norm = MaskedGroupNorm(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 6, 40)
    frames = torch.tensor([40, 17, 3])
    with torch.no_grad():
        reference = norm(x, valid_frames=frames)
        norm.__class__ = TraceableMaskedGroupNorm
        out = norm(x, valid_frames=frames)
    assert np.abs((out - reference).numpy()).max() < 1e-5
    assert out[1, :, 17:].abs().max() == 0 and out[2, :, 3:].abs().max() == 0


def test_gender_conditioned_attribute_model(tiny_models, tmp_path):
    """An attribute model (arousal / valence / dominance on the corpus scale)
    with gender conditioning exports too: the graph predicts the gender
    itself, and its outputs equal PyTorch's (the export checks them)."""
    from sser_lobes import EmotionModel, LinearHead, SSLEncoder
    from sser_lobes.inference.onnx_export import (
        OnnxEmotionRecognizer,
        export_onnx,
    )
    from sser_lobes.nnet.description import FORMAT, FORMAT_VERSION, describe_model
    from sser_lobes.nnet.gender import GenderConditioning
    from sser_lobes.nnet.pooling import AttentiveStatisticsPooling

    torch.manual_seed(0)
    encoder = SSLEncoder(tiny_models["hubert_base"], finetune="frozen")
    pooling = AttentiveStatisticsPooling(encoder.output_size)
    gender = GenderConditioning(pooling.output_size, mode="film")
    with torch.no_grad():
        gender.table.weight.normal_()
    head = LinearHead(pooling.output_size, 3, output_activation="sigmoid")
    model = EmotionModel(encoder, pooling, head, gender=gender).eval()
    meta = {
        "task": "attributes",
        "labels": ["arousal", "valence", "dominance"],
        "sample_rate": 16000,
        "window_seconds": 10.0,
        "chunk_hop_seconds": 5.0,
        "eval_crop_seconds": None,
        "min_samples": encoder.min_samples,
    }
    path = tmp_path / "model.onnx"
    report = export_onnx(model, path, meta, task="attributes", attribute_range=(1, 7))
    assert list(report) == ["attributes", "logits", "gender_probabilities"]
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **{k: meta[k] for k in ("task", "labels", "sample_rate", "window_seconds")},
        "architecture": describe_model(model),
    }
    (tmp_path / "sser_model.json").write_text(json.dumps(description))
    onnx = OnnxEmotionRecognizer(path)
    wavs = 0.1 * torch.randn(2, 12000)
    out = onnx.run(wavs.numpy(), np.array([1.0, 0.6], np.float32))
    assert out["attributes"].shape == (2, 3)
    assert ((out["attributes"] >= 1) & (out["attributes"] <= 7)).all()
    assert out["gender_probabilities"].sum(1) == pytest.approx([1.0, 1.0], abs=1e-5)
