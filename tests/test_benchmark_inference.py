"""The benchmarks of bench/ run end to end (tiny model) and their outputs
agree: bench/benchmark_inference.py (fp32, like for like) and
bench/benchmark_int8.py (int8 and ONNX Runtime). The scripts are not part
of the package: they are loaded by path."""

import doctest
import importlib.util
import json
import sys

import pytest
import torch
from conftest import ROOT

BENCH = ROOT / "bench"


def _load(name):
    """``bench/<name>.py`` as the module ``name`` (as ``python bench/...``
    would import it; benchmark_int8 imports benchmark_inference by name)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _run_main(module, out, *extra):
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        status = module.main(
            ["--tiny", "--threads", str(threads), "--json", str(out), *extra]
        )
    torch.set_num_threads(threads)
    return status, json.loads(out.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.json"
    status, report = _run_main(_load("benchmark_inference"), out)
    assert status == 0
    return report


def test_report_fields(report, capsys):
    bench = _load("benchmark_inference")
    assert report["settings"]["tiny"] and report["settings"]["utterances"] == 4
    assert report["model"]["hidden_size"] == 32
    assert report["model"]["num_layers"] == 2
    assert set(report["modes"]) == set(bench.MODES)
    for mode in report["modes"].values():
        assert mode["utterances_per_second"] > 0
        assert mode["audio_seconds_per_second"] > 0
        assert 0.0 <= mode["padding_share"] < 1.0
        assert len(mode["all_seconds"]) == report["settings"]["repeats"]
    modes = report["modes"]
    for single in ("sser_single", "pipeline_single", "speechbrain_single"):
        assert modes[single]["padding_share"] == 0.0
        assert modes[single]["model_calls"] == 4
    # Every batched system sees the same length-sorted batches.
    batched = [m for m in modes.values() if m["kind"] == "batched"]
    assert len({round(m["padding_share"], 9) for m in batched}) == 1
    assert all(m["model_calls"] == 1 for m in batched)
    split = report["split"]
    assert report["best_peer"] not in bench.OURS
    assert split["headline"] == pytest.approx(
        split["code_path"] * split["batching"], rel=1e-9
    )
    assert report["target_met"] == (
        report["speedup_vs_best_peer"] >= report["target_speedup"]
    )
    assert report["gflop_per_audio_second"] > 0
    assert report["machine"]["cores"] >= 1 and report["machine"]["date"]


def test_same_probabilities_as_the_pipeline(report):
    agreement = report["agreement"]
    assert agreement["ok"], agreement
    assert agreement["max_abs_diff_ours"] <= agreement["tolerance"] <= 1e-5
    assert agreement["same_labels_ours"] == 1.0
    # SpeechBrain's wrapper on single files has no padding: it agrees too.
    assert report["modes"]["speechbrain_single"]["max_abs_diff_vs_pipeline"] < 1e-5


def test_markdown_row(report):
    row = _load("benchmark_inference").markdown_row(report)
    assert row.startswith("| ") and row.endswith(" |")
    assert row.count(" | ") == 9
    assert f"{report['split']['headline']:.2f}x" in row


def test_int8_benchmark(tmp_path):
    pytest.importorskip("onnxruntime")
    bench = _load("benchmark_int8")
    status, report = _run_main(bench, tmp_path / "int8.json")
    assert status == 0
    assert set(report["modes"]) == set(bench.Int8Systems.modes)
    assert set(report["targets"]) == set(bench.TARGETS)
    for name, target in report["targets"].items():
        assert target["ratio"] == report["splits"][name]["headline"]
        assert target["met"] == (target["ratio"] >= target["target"])
    assert report["splits"]["int8_vs_best_onnxruntime"]["best_peer"].startswith(
        "onnxruntime"
    )
    agreement = report["agreement"]
    # ONNX Runtime runs sser's graph: the pipeline's probabilities.
    assert agreement["onnxruntime_vs_pipeline_max_abs_diff"] < 1e-5
    assert 0 < agreement["int8_vs_fp32_sser"]["max_abs_probability_diff"] < 0.05
    row = bench.markdown_row(report)
    assert row.count(" | ") == 10


def test_bench_doctests():
    for name in ("benchmark_inference", "benchmark_int8", "int8_agreement", "memory"):
        result = doctest.testmod(_load(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
    assert doctest.testmod(_load("benchmark_inference")).attempted >= 5


def test_folded_head_is_the_hf_head():
    """sser's mean pooling + one linear layer = HF's projector, masked mean
    and classifier, also over padded frames."""
    from transformers import WavLMForSequenceClassification

    from sser_lobes import MeanPooling

    bench = _load("benchmark_inference")
    config = bench.base_config(tiny=True)
    hf = WavLMForSequenceClassification(config).eval()
    weight, bias = bench.fold_linear_head(hf.projector, hf.classifier)
    feats = torch.randn(2, 7, config.hidden_size)
    feats[1, 4:] = 0.0
    lens = torch.tensor([1.0, 4 / 7])
    ours = MeanPooling(config.hidden_size)(feats, lens) @ weight.T + bias
    projected = hf.projector(feats)
    theirs = (
        torch.stack([projected[0].mean(0), projected[1, :4].mean(0)])
        @ hf.classifier.weight.T
        + hf.classifier.bias
    )
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_memory_table_follows_the_fitted_model(monkeypatch):
    """bench/memory.py on synthetic measurements ``g + a L + c L**2`` (plus the
    per-utterance part once more for a batch of two): the fit recovers the
    terms from the saved activations (not the RSS peak), and a larger GPU or a
    shorter crop never fits fewer utterances."""
    import argparse

    memory = _load("memory")
    trained, params = 1_000_000, 1_200_000
    g, a, c = 50e6, 30e6, 0.5e6

    def fake_measure(name, seconds, batch, checkpointing, threads):
        per_utterance = a * seconds + c * seconds**2
        return {
            "saved_bytes": g + batch * per_utterance,
            "peak_increase": 2 * (g + batch * per_utterance),
            "trained": trained,
            "params": params,
        }

    monkeypatch.setattr(memory, "measure", fake_measure)
    args = argparse.Namespace(models=["base"], seconds=[4.0, 8.0, 12.0], threads=1)
    row = memory.run(args)["rows"]["base, no checkpointing"]
    assert row["fit_step_bytes"] == pytest.approx(g)
    assert row["fit_a_bytes_per_s"] == pytest.approx(a)
    assert row["fit_c_bytes_per_s2"] == pytest.approx(c)
    assert row["batch2_measured_over_predicted"] == pytest.approx(1.0)
    static = 4 * params + 12 * trained
    free = 24e9 * memory.HEADROOM - memory.CONTEXT_GB * 1e9 - static - 50e6
    expected = int(free // ((a * 12 + c * 144) / 2))
    assert row["largest_batch"]["12s"]["24GB"] == expected
    sizes = row["largest_batch"]
    for crop in ("4s", "12s", "30s"):
        assert sizes[crop]["24GB"] <= sizes[crop]["40GB"] <= sizes[crop]["80GB"]
    assert sizes["4s"]["24GB"] >= sizes["12s"]["24GB"] >= sizes["30s"]["24GB"]
    assert "| base, no checkpointing |" in memory.format_report(
        {"rows": {"base, no checkpointing": row}}
    )


def test_attention_kernels_benchmark(tmp_path):
    """bench/attention_kernels.py runs end to end on a tiny layer, and the
    two attention layers it times compute the same function."""
    bench = _load("attention_kernels")
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        report = bench.main(
            [
                "--tiny",
                "--seconds",
                "1,0.5",
                "--rounds",
                "1",
                "--json",
                str(tmp_path / "a.json"),
            ]
        )
    torch.set_num_threads(threads)
    assert json.loads((tmp_path / "a.json").read_text())["ratios"] == report["ratios"]
    assert len(report["median_seconds"]) == 6 and report["frames"] == 50
    stock, fast = bench.build(tiny=True)
    stock.dropout = fast.dropout = 0.0
    hidden, mask, weights = bench.make_batch([1, 0.5], stock.embed_dim)
    outs = [layer(hidden, attention_mask=mask, index=0)[0] for layer in (stock, fast)]
    valid = mask.bool()
    assert torch.allclose(outs[0][valid], outs[1][valid], atol=1e-5)
