"""The inference benchmark runs end to end (tiny model) and its outputs agree."""

import json

import pytest
import torch

from sser_lobes import benchmark_inference


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.json"
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        status = benchmark_inference.main(
            ["--tiny", "--threads", str(threads), "--json", str(out)]
        )
    torch.set_num_threads(threads)
    assert status == 0
    return json.loads(out.read_text())


def test_report_fields(report):
    assert report["settings"]["tiny"] and report["settings"]["utterances"] == 4
    assert report["model"]["hidden_size"] == 32
    assert report["model"]["num_layers"] == 2
    assert set(report["modes"]) == set(benchmark_inference.MODES)
    for mode in report["modes"].values():
        assert mode["utterances_per_second"] > 0
        assert mode["audio_seconds_per_second"] > 0
        assert 0.0 <= mode["padding_share"] < 1.0
        assert len(mode["all_seconds"]) == report["settings"]["repeats"]
    assert report["modes"]["sser_single"]["padding_share"] == 0.0
    assert report["modes"]["sser_single"]["model_calls"] == 4
    assert report["best_peer"] not in benchmark_inference.OURS
    assert report["speedup_vs_best_peer"] > 0
    assert report["target_met"] == (
        report["speedup_vs_best_peer"] >= report["target_speedup"]
    )
    assert report["gflop_per_audio_second"] > 0
    for key in ("brief_audio_seconds_per_second", "measured_peak_gflops"):
        assert report["roofline"][key] > 0


def test_same_probabilities_as_the_pipeline(report):
    agreement = report["agreement"]
    assert agreement["ok"], agreement
    assert agreement["max_abs_diff_ours"] <= agreement["tolerance"] <= 1e-5
    assert agreement["same_labels_ours"] == 1.0
    # SpeechBrain's wrapper on single files has no padding: it agrees too.
    assert report["modes"]["speechbrain_single"]["max_abs_diff_vs_pipeline"] < 1e-5


def test_folded_head_is_the_hf_head():
    """sser's mean pooling + one linear layer = HF's projector, masked mean
    and classifier, also over padded frames."""
    from transformers import WavLMForSequenceClassification

    from sser_lobes import MeanPooling

    config = benchmark_inference.base_config(tiny=True)
    hf = WavLMForSequenceClassification(config).eval()
    weight, bias = benchmark_inference.fold_linear_head(hf.projector, hf.classifier)
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
