"""The report pieces on fixed arrays: groups, selective prediction, agreement
with the votes, their aggregation over folds, the calibration of a fusion.
"""

import json

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.metrics import balanced_accuracy_score, f1_score

from sser_lobes.evaluation.aggregate import aggregate_runs, format_markdown
from sser_lobes.evaluation.agreement import agreement_metrics
from sser_lobes.evaluation.groups import fairness_report, group_metrics
from sser_lobes.evaluation.metrics import ClassificationStats
from sser_lobes.evaluation.selective import (
    accepted_at,
    selective_curve,
    threshold_for_accuracy,
)

LABELS = ["neu", "hap", "sad", "ang"]


def test_group_metrics_equal_scikit_learn_per_group():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 60)
    predictions = np.where(rng.random(60) < 0.6, targets, rng.integers(0, 4, 60))
    speakers = np.array([f"s{i % 5}" for i in range(60)], dtype=object)
    speakers[:3] = "Unknown"
    report = group_metrics(targets, predictions, LABELS, list(speakers))
    assert report["n_unknown"] == 3 and report["n_groups"] == 5
    for name, scores in report["groups"].items():
        rows = speakers == name
        assert scores["n"] == rows.sum()
        assert scores["WA"] == pytest.approx(
            (targets[rows] == predictions[rows]).mean()
        )
        assert scores["UA"] == pytest.approx(
            balanced_accuracy_score(targets[rows], predictions[rows])
        )
        assert scores["macro_F1"] == pytest.approx(
            f1_score(targets[rows], predictions[rows], average="macro")
        )
    ua = {g: s["UA"] for g, s in report["groups"].items()}
    assert report["worst"]["UA"]["group"] == min(ua, key=ua.get)
    assert report["largest_gap"]["UA"]["value"] == pytest.approx(
        max(ua.values()) - min(ua.values())
    )
    assert report["std"]["UA"] == pytest.approx(np.std(list(ua.values())))
    assert fairness_report(targets, predictions, LABELS, {"gender": [None] * 60}) == {}


def test_selective_thresholds_against_brute_force():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=200)
    targets = np.where(rng.random(200) < 0.7, probs.argmax(1), rng.integers(0, 4, 200))
    for target in (0.8, 0.9, 0.95):
        found = threshold_for_accuracy(probs, targets, target)
        best = None
        for t in sorted(set(probs.max(1))):
            got = accepted_at(probs, targets, t)
            if got["accuracy"] is not None and got["accuracy"] >= target:
                if best is None or got["coverage"] > best["coverage"]:
                    best = got
        if best is None:
            assert found is None
            continue
        assert found["coverage"] == pytest.approx(best["coverage"])
        assert found["accuracy"] >= target
    curve = selective_curve(probs, targets, LABELS)
    coverages = [p["coverage"] for p in curve]
    assert coverages == sorted(coverages) and coverages[-1] == 1.0
    assert curve[-1]["accuracy"] == pytest.approx((probs.argmax(1) == targets).mean())
    assert threshold_for_accuracy([[0.5, 0.5]], [1], 0.9) is None


def test_agreement_against_scipy():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    votes = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], None]
    report = agreement_metrics(probs, [0, 0, 2], votes)
    assert report["n_with_votes"] == 2
    expected = np.mean([entropy(votes[0], probs[0]), entropy(votes[1], probs[1])])
    assert report["KL"] == pytest.approx(expected)
    assert report["clear"] == {"n": 1, "accuracy": 1.0}
    assert report["ambiguous"] == {"n": 1, "accuracy": 0.0}
    assert agreement_metrics(probs, [0, 0, 2], [None] * 3) is None


def _run(fold, gender_ua, speakers, targets=None, experiment="wavlm"):
    groups = {
        "gender": {
            "groups": {
                g: {"n": 10, "WA": ua, "UA": ua, "macro_F1": ua}
                for g, ua in gender_ua.items()
            }
        },
        "speaker": {
            "groups": {
                s: {"n": 5, "WA": ua, "UA": ua, "macro_F1": ua}
                for s, ua in speakers.items()
            }
        },
    }
    run = {
        "experiment": experiment,
        "fold": fold,
        "seed": 1,
        "WA": 0.7,
        "UA": 0.7,
        "macro_F1": 0.7,
        "groups": groups,
    }
    if targets:
        run["training_targets"] = {
            "targets": targets,
            "soft_label_smoothing": 0.0,
            "use_no_agreement": 0.0,
        }
    return run


def test_aggregate_carries_groups_and_separates_targets():
    runs = [
        _run("s1", {"F": 0.6, "M": 0.8}, {"Ses01F": 0.5, "Ses01M": 0.9}),
        _run("s2", {"F": 0.8, "M": 0.8}, {"Ses02F": 0.7, "Ses02M": 0.9}),
    ]
    summary = aggregate_runs(runs)
    (row,) = summary["experiments"]
    gender = row["groups"]["gender"]
    assert gender["groups"]["F"]["UA"]["mean"] == pytest.approx(0.7)
    assert gender["groups"]["F"]["n"] == 20 and gender["groups"]["F"]["n_runs"] == 2
    speaker = row["groups"]["speaker"]
    assert len(speaker["groups"]) == 4  # every fold's speakers together
    assert speaker["worst"]["UA"]["group"] == "Ses01F"
    assert speaker["largest_gap"]["UA"]["value"] == pytest.approx(0.4)
    text = format_markdown(summary)
    assert "## Per group" in text and "Ses01F, n 5" in text
    # Soft-target runs of the same experiment are another row, never averaged;
    # a file without training targets was trained on hard labels.
    soft = [_run(f, {"F": 0.9}, {"x": 0.9}, targets="soft") for f in ("s1", "s2")]
    hard = [_run(f, {"F": 0.9}, {"x": 0.9}, targets="hard") for f in ("s3",)]
    summary = aggregate_runs(runs + soft + hard)
    assert len(summary["experiments"]) == 2
    assert any("training_targets" in w for w in summary["warnings"])
    rows = {
        r["configuration"]["training_targets"]["targets"]: r
        for r in summary["experiments"]
    }
    assert rows["hard"]["n_runs"] == 3 and rows["soft"]["n_runs"] == 2


def test_fusion_calibrates_the_fused_probabilities(tmp_path):
    from sser_lobes.evaluation.calibration import expected_calibration_error
    from sser_lobes.evaluation.fuse import run_fusion

    rng = np.random.default_rng(3)
    for split, n in (("valid", 300), ("test", 300)):
        z = rng.normal(size=(n, 4))
        truth = np.array(
            [rng.choice(4, p=p) for p in np.exp(z) / np.exp(z).sum(1, keepdims=True)]
        )
        ids = [f"u{i:03d}" for i in range(n)]
        for member, scale in (("a", 4.0), ("b", 5.0)):
            logits = scale * z + rng.normal(0, 0.3, size=z.shape)
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            stats = ClassificationStats(LABELS)
            stats.append(ids, probs, truth)
            stats.write_predictions(tmp_path / member / f"{split}_predictions.csv")
    out = tmp_path / "fused"
    fusion = run_fusion(
        [tmp_path / "a", tmp_path / "b"],
        out,
        search_split="valid",
        apply_splits=["test"],
    )
    calibration = fusion["calibration"]
    assert calibration["temperature"][0] > 1.5 and calibration["fitted_on"] == "valid"
    test = calibration["splits"]["test"]
    assert test["calibrated"]["ECE"] < test["raw"]["ECE"] / 2
    assert test["raw"]["accuracy"] == test["calibrated"]["accuracy"]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["ECE_calibrated"] == test["calibrated"]["ECE"]
    written = np.loadtxt(
        out / "test_predictions.csv", delimiter=",", skiprows=1, usecols=range(4, 8)
    )
    assert expected_calibration_error(
        written,
        np.array(
            [
                LABELS.index(r.split(",")[1])
                for r in (out / "test_predictions.csv").read_text().splitlines()[1:]
            ]
        ),
    ) == pytest.approx(test["calibrated"]["ECE"], abs=1e-4)
    assert "Calibrated: temperature" in (out / "fusion.md").read_text()


def test_bench_trust_table_reads_a_run(iemocap_trained_run, capsys):
    """bench/trust_table.py: one row per run, read from its test metrics."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "trust_table", ROOT / "bench" / "trust_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run, _ = iemocap_trained_run
    assert module.main([f"demo={run}"]) == 0
    header, rule, row = capsys.readouterr().out.strip().splitlines()
    assert header.count("|") == rule.count("|") == row.count("|")
    metrics = json.loads((run / "test_metrics.json").read_text())
    raw = metrics["calibration"]["raw"]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[:3] == ["demo", "hard", str(metrics["n"])]
    assert cells[5].startswith(f"{100 * raw['ECE']:.1f} -> ")
    assert cells[6].startswith(f"{raw['NLL']:.3f} -> ")
    assert cells[9] == f"{metrics['agreement']['KL']:.3f}"
