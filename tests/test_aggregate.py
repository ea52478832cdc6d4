"""Tests of sser_lobes.evaluation.aggregate on fabricated run folders."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sser_lobes.evaluation.aggregate import (
    aggregate_runs,
    collect_runs,
    format_markdown,
    main,
)

REPO = Path(__file__).resolve().parents[1]


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def results(tmp_path):
    """results/expA/<seed>/<fold>/test_metrics.json (no experiment key) + expB."""
    root = tmp_path / "results"
    # expA: 2 seeds x 2 folds.
    #   WA:        s1: 0.60 (1993), 0.80 (1994); s2: 0.70 (1993), 0.90 (1994)
    #   UA:        all 0.50
    #   macro_F1:  0.40, 0.40, 0.40, 0.60
    values = {
        ("1993", "session_1"): (0.60, 0.50, 0.40),
        ("1993", "session_2"): (0.70, 0.50, 0.40),
        ("1994", "session_1"): (0.80, 0.50, 0.40),
        ("1994", "session_2"): (0.90, 0.50, 0.60),
    }
    for (seed, fold), (wa, ua, f1) in values.items():
        _write(
            root / "expA" / seed / fold / "test_metrics.json",
            {"WA": wa, "UA": ua, "macro_F1": f1, "fold": fold, "seed": int(seed)},
        )
    # expB: one run, explicit experiment name, unusual folder layout
    _write(
        root / "misc" / "whatever" / "test_metrics.json",
        {"WA": 0.5, "UA": 0.25, "macro_F1": 0.125, "experiment": "expB"},
    )
    # unrelated JSON files are ignored
    _write(root / "expA" / "1993" / "hyperparams.json", {"lr": 1})
    return root


def test_collect_runs(results):
    runs = collect_runs([results])
    assert len(runs) == 5
    experiments = sorted(r["experiment"] for r in runs)
    assert experiments == ["expA"] * 4 + ["expB"]
    assert all(Path(r["_path"]).name == "test_metrics.json" for r in runs)
    # overlapping folders do not load a file twice
    assert len(collect_runs([results, results / "expA", str(results)])) == 5


def test_experiment_name_from_folders(tmp_path):
    cases = {
        "hubert/pf/seed_7/fold_2": "hubert/pf",
        "wavlm_frozen/1993/session_1": "wavlm_frozen",
        "w2v/Ses01F": "w2v",  # equal to the run's own fold value
        "": "root",  # nothing left: name of the given folder
    }
    for sub, expected in cases.items():
        root = tmp_path / "root"
        if root.exists():
            for f in root.rglob("test_metrics.json"):
                f.unlink()
        _write(root / sub / "test_metrics.json", {"WA": 0.5, "fold": "Ses01F"})
        (run,) = collect_runs(root)
        assert run["experiment"] == expected, sub


def test_aggregate_hand_computed(results):
    agg = aggregate_runs(collect_runs([results]), ["WA", "UA", "macro_F1"])
    assert agg["metrics"] == ["WA", "UA", "macro_F1"]
    exp_a, exp_b = agg["experiments"]
    assert exp_a["experiment"] == "expA" and exp_b["experiment"] == "expB"
    assert exp_a["n_runs"] == 4
    assert exp_a["folds"] == ["session_1", "session_2"]
    assert exp_a["seeds"] == [1993, 1994]
    assert exp_a["protocol"] is None
    # WA mean (0.6+0.7+0.8+0.9)/4 = 0.75; deviations -.15 -.05 .05 .15
    # sum of squares .0225+.0025+.0025+.0225 = .05; std = sqrt(.05/3) = 0.129099
    wa = exp_a["metrics"]["WA"]
    assert wa["mean"] == pytest.approx(0.75)
    assert wa["std"] == pytest.approx((0.05 / 3) ** 0.5)
    assert (wa["min"], wa["max"]) == (0.6, 0.9)
    # UA constant: std 0
    assert exp_a["metrics"]["UA"] == pytest.approx(
        {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}
    )
    # macro_F1 mean 1.8/4 = .45; squares .0025*3 + .0225 = .03; std sqrt(.03/3) = .1
    assert exp_a["metrics"]["macro_F1"]["mean"] == pytest.approx(0.45)
    assert exp_a["metrics"]["macro_F1"]["std"] == pytest.approx(0.1)
    # per fold: session_1 WA {.6, .8} -> mean .7, std sqrt(2 * .01 / 1) = .141421
    fold1, fold2 = exp_a["per_fold"]
    assert fold1["fold"] == "session_1" and fold1["n_runs"] == 2
    assert fold1["metrics"]["WA"]["mean"] == pytest.approx(0.7)
    assert fold1["metrics"]["WA"]["std"] == pytest.approx(0.02**0.5)
    assert fold2["metrics"]["WA"]["mean"] == pytest.approx(0.8)
    assert fold2["metrics"]["macro_F1"]["mean"] == pytest.approx(0.5)
    # a single run has std 0
    assert exp_b["n_runs"] == 1
    assert exp_b["metrics"]["WA"]["std"] == 0.0
    assert exp_b["per_fold"][0]["fold"] is None
    json.dumps(agg)


def test_protocols_are_not_pooled():
    runs = [
        {"experiment": "e", "protocol": "loso", "fold": "s1", "WA": 0.6},
        {"experiment": "e", "protocol": "loso", "fold": "s2", "WA": 0.7},
        {"experiment": "e", "protocol": "random", "WA": 0.8},
    ]
    agg = aggregate_runs(runs, ["WA"])
    assert [(e["protocol"], e["n_runs"]) for e in agg["experiments"]] == [
        ("loso", 2),
        ("random", 1),
    ]
    assert agg["experiments"][0]["metrics"]["WA"]["mean"] == pytest.approx(0.65)


def test_folds_sorted_naturally():
    runs = [{"experiment": "e", "fold": f"fold_{i}", "WA": 0.5} for i in (10, 2, 1)]
    folds = [
        f["fold"] for f in aggregate_runs(runs, ["WA"])["experiments"][0]["per_fold"]
    ]
    assert folds == ["fold_1", "fold_2", "fold_10"]


def test_markdown(results):
    agg = aggregate_runs(collect_runs([results]), ["WA", "UA", "macro_F1"])
    md = format_markdown(agg, ["WA", "UA", "macro_F1"])
    lines = md.splitlines()
    assert (
        "| experiment | protocol | runs | folds | seeds | WA | UA | macro_F1 |" in lines
    )
    # WA 75.00 ± 12.91, UA 50.00 ± 0.00, macro_F1 45.00 ± 10.00
    assert (
        "| expA | - | 4 | 2 | 2 | 75.00 ± 12.91 | 50.00 ± 0.00 | 45.00 ± 10.00 |"
        in lines
    )
    assert "| expB | - | 1 | 0 | 0 | 50.00 ± 0.00 | 25.00 ± 0.00 | 12.50 ± 0.00 |" in (
        lines
    )
    # per-fold breakdown
    assert (
        "| expA | - | session_1 | 2 | 70.00 ± 14.14 | 50.00 ± 0.00 | 40.00 ± 0.00 |"
        in lines
    )
    assert (
        "| expA | - | session_2 | 2 | 80.00 ± 14.14 | 50.00 ± 0.00 | 50.00 ± 14.14 |"
        in lines
    )
    # a subset / reordering of the metrics
    md_wa = format_markdown(agg, ["UA", "WA"])
    assert "| expA | - | 4 | 2 | 2 | 50.00 ± 0.00 | 75.00 ± 12.91 |" in md_wa
    with pytest.raises(ValueError, match="not aggregated"):
        format_markdown(agg, ["CCC"])


def test_main_writes_markdown_and_json(results, tmp_path, capsys):
    md_path = tmp_path / "out" / "summary.md"
    json_path = tmp_path / "out" / "summary.json"
    code = main([str(results), "--markdown", str(md_path), "--json", str(json_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed == md_path.read_text()
    assert "75.00 ± 12.91" in printed
    data = json.loads(json_path.read_text())
    assert data["experiments"][0]["metrics"]["WA"]["mean"] == pytest.approx(0.75)
    assert data["metrics"] == ["WA", "UA", "macro_F1"]


def test_cli_subprocess(results, tmp_path):
    # one subprocess only (importing the package can be slow); the error
    # paths of main() are tested in-process below
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sser_lobes.evaluation.aggregate",
            str(results),
            "--metrics",
            "WA",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| expA | - | 4 | 2 | 2 | 75.00 ± 12.91 |" in proc.stdout


def test_main_error_names_file(tmp_path, capsys):
    bad = _write(tmp_path / "bad" / "exp" / "m.json", "{not json")
    assert main([str(tmp_path / "bad"), "--file", "m.json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(bad) in captured.err


def test_no_files_found(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'test_metrics.json' found"):
        collect_runs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="not found"):
        collect_runs([tmp_path / "missing"])
    assert main([str(tmp_path / "empty")]) == 1
    assert "no 'test_metrics.json' found" in capsys.readouterr().err


def test_malformed_files_are_named(tmp_path):
    bad = _write(tmp_path / "a" / "test_metrics.json", "{oops")
    with pytest.raises(ValueError, match="malformed.*" + str(bad.name)) as err:
        collect_runs(tmp_path / "a")
    assert str(bad) in str(err.value)

    not_dict = _write(tmp_path / "b" / "test_metrics.json", [0.5])
    with pytest.raises(ValueError, match="JSON object") as err:
        collect_runs(tmp_path / "b")
    assert str(not_dict) in str(err.value)

    missing = _write(tmp_path / "c" / "test_metrics.json", {"WA": 0.5})
    runs = collect_runs(tmp_path / "c")
    with pytest.raises(ValueError, match="missing metric 'UA'") as err:
        aggregate_runs(runs, ["WA", "UA"])
    assert str(missing) in str(err.value)

    percent = _write(tmp_path / "d" / "test_metrics.json", {"WA": 71.2})
    with pytest.raises(ValueError, match=r"not in \[0, 1\]") as err:
        aggregate_runs(collect_runs(tmp_path / "d"), ["WA"])
    assert str(percent) in str(err.value)

    text = _write(tmp_path / "e" / "test_metrics.json", {"WA": "0.5"})
    with pytest.raises(ValueError, match="not a number") as err:
        aggregate_runs(collect_runs(tmp_path / "e"), ["WA"])
    assert str(text) in str(err.value)


def test_duplicate_runs_rejected(tmp_path):
    content = {"WA": 0.5, "experiment": "e", "fold": "s1", "seed": 1}
    first = _write(tmp_path / "copy1" / "test_metrics.json", content)
    second = _write(tmp_path / "copy2" / "test_metrics.json", content)
    with pytest.raises(ValueError, match="duplicate run") as err:
        aggregate_runs(collect_runs(tmp_path), ["WA"])
    assert str(first) in str(err.value) and str(second) in str(err.value)


def test_aggregate_errors():
    with pytest.raises(ValueError, match="no runs"):
        aggregate_runs([], ["WA"])
    with pytest.raises(ValueError, match="metrics"):
        aggregate_runs([{"WA": 0.5}], [])


# --------------------------------------------------------------------------
# Never average different tasks (issue 19, item 4)
# --------------------------------------------------------------------------


def _task(labels, num_folds=5, corpus="c0ffee", protocol="loso", label_map=None):
    return {
        "labels": labels,
        "label_map": label_map or {},
        "test_label_map": None,
        "corpus": corpus,
        "protocol": protocol,
        "num_folds": num_folds,
    }


def _run(tmp_path, name, fold, wa, task, seed=1993, **extra):
    return _write(
        tmp_path / name / f"seed_{seed}" / fold / "test_metrics.json",
        {
            "experiment": "wavlm_large_partial",
            "protocol": task["protocol"],
            "fold": fold,
            "seed": seed,
            "encoder": "wavlm_large",
            "finetune": "partial",
            "task_identity": task,
            "labels": task["labels"],
            "WA": wa,
            "UA": wa,
            "macro_F1": wa,
            **extra,
        },
    )


def test_a_4_class_and_a_3_class_run_are_never_averaged(tmp_path, capsys):
    four = _task(["neu", "hap", "sad", "ang"])
    three = _task(["neu", "sad", "ang"])
    for k in (1, 2):
        _run(tmp_path, "four", f"session{k}", 0.6, four)
        _run(tmp_path, "three", f"session{k}", 0.8, three)
    agg = aggregate_runs(collect_runs(tmp_path), ["WA"])
    rows = agg["experiments"]
    means = sorted((r["n_runs"], round(r["metrics"]["WA"]["mean"], 6)) for r in rows)
    assert means == [(2, 0.6), (2, 0.8)]
    (warning,) = agg["warnings"]
    assert "never averaged" in warning and "['neu', 'sad', 'ang']" in warning
    assert main([str(tmp_path), "--metrics", "WA"]) == 0
    out, err = capsys.readouterr()
    assert "aggregate: warning: experiment 'wavlm_large_partial'" in err
    assert "| wavlm_large_partial [neu,hap,sad,ang; 5 folds; corpus c0ffee] |" in out
    assert "| wavlm_large_partial [neu,sad,ang; 5 folds; corpus c0ffee] |" in out
    assert "| 2 of 5 |" in out


def test_a_5_fold_and_a_2_fold_run_of_one_corpus_are_separate(tmp_path):
    five = _task(
        ["ang", "hap", "neu", "sad"], num_folds=5, protocol="corpus speaker_kfold"
    )
    two = _task(["ang", "neu"], num_folds=2, protocol="corpus speaker_kfold")
    for k in range(1, 6):
        _run(tmp_path, "five", f"fold{k}of5", 0.5, five)
    for k in (1, 2):
        _run(tmp_path, "two", f"fold{k}of2", 0.9, two)
    rows = aggregate_runs(collect_runs(tmp_path), ["WA"])["experiments"]
    assert sorted((len(r["folds"]), r["n_runs"]) for r in rows) == [(2, 2), (5, 5)]


def test_the_same_classes_in_another_order_or_map_are_another_task(tmp_path):
    _run(tmp_path, "a", "session1", 0.5, _task(["neu", "hap", "sad", "ang"]))
    _run(tmp_path, "b", "session2", 0.5, _task(["ang", "sad", "hap", "neu"]))
    _run(
        tmp_path,
        "c",
        "session3",
        0.5,
        _task(["neu", "hap", "sad", "ang"], label_map={"exc": "hap"}),
    )
    _run(
        tmp_path,
        "d",
        "session4",
        0.5,
        _task(["neu", "hap", "sad", "ang"], corpus="beef"),
    )
    _run(
        tmp_path,
        "e",
        "session5",
        0.5,
        _task(["neu", "hap", "sad", "ang"]),
        finetune="frozen",
    )
    assert len(aggregate_runs(collect_runs(tmp_path), ["WA"])["experiments"]) == 5


def test_folds_with_different_seeds_are_refused(tmp_path, capsys):
    task = _task(["neu", "ang"])
    _run(tmp_path, "x", "session1", 0.5, task, seed=1993)
    _run(tmp_path, "x", "session1", 0.6, task, seed=1994)
    _run(tmp_path, "x", "session2", 0.7, task, seed=1993)
    with pytest.raises(
        ValueError, match=r"session1: \[1993, 1994\]; session2: \[1993\]"
    ):
        aggregate_runs(collect_runs(tmp_path), ["WA"])
    assert main([str(tmp_path)]) == 1
    assert "different seeds" in capsys.readouterr().err
