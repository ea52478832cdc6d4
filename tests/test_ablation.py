"""Ablation table over variant folders (sser_lobes.evaluation.ablation) and its
wrappers."""

import json
import math
import runpy
import sys

import pytest
from conftest import RECIPES

from sser_lobes.evaluation.ablation import (
    ablation_table,
    format_ablation,
    main,
    parse_variants,
)

# variant -> {(seed, fold): (WA, UA, macro_F1)}
VALUES = {
    "wavlm": {
        (1993, "session1"): (0.70, 0.68, 0.66),
        (1993, "session2"): (0.74, 0.70, 0.69),
        (7, "session1"): (0.72, 0.71, 0.70),
        (7, "session2"): (0.76, 0.73, 0.71),
    },
    "gender": {
        (1993, "session1"): (0.71, 0.70, 0.69),
        (1993, "session2"): (0.77, 0.74, 0.72),
    },
    "fused": {(1993, "session1"): (0.78, 0.75, 0.74)},
}


def _write_runs(root, variant, protocol="loso", file="test_metrics.json", nested=""):
    """<root>/<variant>/<nested>/seed_<seed>/<fold>/<file> for every run."""
    for (seed, fold), (wa, ua, f1) in VALUES[variant].items():
        folder = root / variant / nested / f"seed_{seed}" / fold
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "experiment": f"{variant}_exp",
            "protocol": protocol,
            "fold": fold,
            "seed": seed,
            "WA": wa,
            "UA": ua,
            "macro_F1": f1,
        }
        (folder / file).write_text(json.dumps(record))
    return root / variant


def _mean_std(values):
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def test_rows_in_given_order_with_hand_computed_means(tmp_path):
    folders = {
        "wavlm": _write_runs(tmp_path, "wavlm"),
        "gender": _write_runs(tmp_path, "gender", nested="deep/er"),
        "fused": _write_runs(tmp_path, "fused"),
    }
    # Not alphabetical: the table must keep this order.
    variants = [("zbase", folders["wavlm"]), ("gender", folders["gender"])]
    variants.append(("fused", folders["fused"]))
    table = ablation_table(variants, metrics=["UA", "WA"])
    rows = table["rows"]
    assert [r["label"] for r in rows] == ["zbase", "gender", "fused"]
    assert [r["n_runs"] for r in rows] == [4, 2, 1]
    assert rows[0]["folds"] == ["session1", "session2"]
    assert rows[0]["seeds"] == [7, 1993]
    assert rows[0]["experiments"] == ["wavlm_exp"]
    for row, variant in zip(rows, ["wavlm", "gender", "fused"]):
        for index, metric in [(1, "UA"), (0, "WA")]:
            mean, std = _mean_std([v[index] for v in VALUES[variant].values()])
            assert row["metrics"][metric]["mean"] == pytest.approx(mean)
            assert row["metrics"][metric]["std"] == pytest.approx(std)
    ua_base = (0.68 + 0.70 + 0.71 + 0.73) / 4  # 0.705
    assert rows[0]["delta"] is None
    assert rows[1]["delta"] == pytest.approx((0.70 + 0.74) / 2 - ua_base)
    assert rows[2]["delta"] == pytest.approx(0.75 - ua_base)
    assert table["delta_metric"] == "UA"
    # gender and fused ran fewer seeds / folds than zbase: said, not hidden.
    assert table["warnings"] == [
        "variants 'zbase' and 'gender' cover different seeds ([7, 1993] vs [1993]): "
        "their means are not over the same runs",
        "variants 'zbase' and 'fused' cover different folds (['session1', "
        "'session2'] vs ['session1']): their means are not over the same runs",
        "variants 'zbase' and 'fused' cover different seeds ([7, 1993] vs [1993]): "
        "their means are not over the same runs",
    ]

    text = format_ablation(table)
    lines = text.splitlines()
    assert lines[2] == "| variant | runs | UA | WA | Δ UA |"
    # UA of zbase: mean 70.50, std of (68, 70, 71, 73) = 2.0817
    assert lines[4] == "| zbase | 4 | 70.50 ± 2.08 | 73.00 ± 2.58 | ref |"
    assert lines[5] == "| gender | 2 | 72.00 ± 2.83 | 74.00 ± 4.24 | +1.50 |"
    assert lines[6] == "| fused | 1 | 75.00 ± 0.00 | 78.00 ± 0.00 | +4.50 |"
    assert "Protocol: loso." in text


def test_errors(tmp_path):
    base = _write_runs(tmp_path, "wavlm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="variant 'new'.*no 'test_metrics"):
        ablation_table([("base", base), ("new", empty)])
    with pytest.raises(FileNotFoundError, match="variant 'x'.*not found"):
        ablation_table([("x", tmp_path / "missing")])
    # Runs of two protocols under one folder.
    _write_runs(tmp_path / "mixed", "wavlm", protocol="loso")
    _write_runs(tmp_path / "mixed", "gender", protocol="random")
    with pytest.raises(ValueError, match="not one configuration.*protocol 'random'"):
        ablation_table([("mixed", tmp_path / "mixed")])
    # Two runs with the same fold and seed (folder too high in the tree).
    _write_runs(tmp_path / "dup", "wavlm", nested="a")
    _write_runs(tmp_path / "dup", "wavlm", nested="b")
    with pytest.raises(ValueError, match="variant 'dup'.*duplicate run"):
        ablation_table([("dup", tmp_path / "dup")])
    with pytest.raises(ValueError, match="LABEL=FOLDER"):
        parse_variants(["results/a"])
    with pytest.raises(ValueError, match="more than once"):
        parse_variants(["a=x", "a=y"])
    with pytest.raises(ValueError, match="missing metric 'CCC'"):
        ablation_table([("base", base)], metrics=["CCC"])


def test_cli_outputs_and_different_tasks_refused(tmp_path, capsys):
    base = _write_runs(tmp_path, "wavlm")
    other = _write_runs(tmp_path, "fused", protocol="random")
    argv = [f"base={base}", f"fused={other}"]
    assert main(argv) == 1
    assert "are not one task (protocol 'loso' vs 'random')" in capsys.readouterr().err
    other = _write_runs(tmp_path / "same", "fused")
    md, js = tmp_path / "out" / "ab.md", tmp_path / "out" / "ab.json"
    argv = [f"base={base}", f"fused={other}", "--markdown", str(md), "--json", str(js)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out == md.read_text()
    assert "| base | 4 | 73.00 ± 2.58 |" in out  # WA first by default
    assert "Protocol: loso." in out
    saved = json.loads(js.read_text())
    assert [r["label"] for r in saved["rows"]] == ["base", "fused"]
    assert saved["delta_metric"] == "WA"
    assert saved["rows"][1]["delta"] == pytest.approx(0.78 - 0.73)
    assert main([f"base={tmp_path / 'nothing'}"]) == 1
    assert "ablation: error: variant 'base'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "recipe, file, first_metric",
    [
        ("IEMOCAP", "test_metrics.json", "WA"),
        ("MSP-Podcast", "test1_metrics.json", "macro_F1"),
    ],
)
def test_recipe_wrappers_defaults(
    recipe, file, first_metric, tmp_path, monkeypatch, capsys
):
    base = _write_runs(tmp_path, "wavlm", file=file)
    new = _write_runs(tmp_path, "gender", file=file)
    monkeypatch.setattr(sys, "argv", ["ablation.py", f"base={base}", f"new={new}"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(RECIPES / recipe / "ablation.py"), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"## Ablation on {file}" in out
    assert f"| Δ {first_metric} |" in out
