"""bench/serve_load.py runs end to end on a tiny model: two servers
(batching on and off), two load levels, a short soak; the report has every
figure and no request failed. The script is loaded by path (bench/ is not
part of the package)."""

import doctest
import importlib.util
import json

import pytest
from conftest import ROOT

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def _module():
    path = ROOT / "bench" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doctests():
    failures, _ = doctest.testmod(_module())
    assert failures == 0


def test_a_small_run(tmp_path, capsys):
    module = _module()
    out = tmp_path / "report.json"
    status = module.main(
        [
            "--tiny",
            "--threads=1",
            "--clients=1,16",
            "--rounds=1",
            "--files=6",
            "--soak-seconds=3",
            "--servers=fp32_batching,fp32_no_batching",
            f"--json={out}",
        ]
    )
    assert status == 0
    report = json.loads(out.read_text())
    for name in ("fp32_batching", "fp32_no_batching"):
        for clients in ("1", "16"):
            figures = report["medians"][name][clients]
            assert figures["errors"] == 0 and figures["rps"] > 0
            assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert report["medians"]["fp32_no_batching"]["16"]["mean_batch"] == 1
    assert report["medians"]["fp32_batching"]["16"]["mean_batch"] > 1
    assert set(report["headline"]) == {"fp32"}
    soak = report["soak"]
    assert soak["served"] > 0 and soak["errors"] == 0 and soak["rss_samples"]
    assert "| fp32_batching | 16 |" in capsys.readouterr().out
