"""The tiny-model command line writes folders that load like hub checkpoints."""

import json
import sys

import pytest
import torch
from conftest import run_script

from sser_lobes import SSLEncoder


@pytest.mark.parametrize(
    "arch, norm", [("wavlm", "layer"), ("hubert", "group"), ("wav2vec2", "group")]
)
def test_cli_writes_a_loadable_model(tmp_path, arch, norm):
    out = tmp_path / arch
    run_script(
        [
            sys.executable,
            "-m",
            "sser_lobes.tiny_ssl",
            "--arch",
            arch,
            "--feat-extract-norm",
            norm,
            "--out",
            out,
        ],
        cwd=tmp_path,
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == arch and config["feat_extract_norm"] == norm
    assert config["hidden_size"] <= 64 and config["num_hidden_layers"] == 2
    assert (out / "model.safetensors").is_file()
    assert (out / "preprocessor_config.json").is_file()
    encoder = SSLEncoder(out)
    feats, _ = encoder(torch.randn(1, 3200))
    assert feats.shape == (1, 9, 32)


def test_cli_refuses_to_overwrite(tmp_path):
    out = tmp_path / "m"
    run_script(
        [sys.executable, "-m", "sser_lobes.tiny_ssl", "--out", out], cwd=tmp_path
    )
    before = (out / "model.safetensors").read_bytes()
    proc = run_script(
        [sys.executable, "-m", "sser_lobes.tiny_ssl", "--out", out, "--seed", "3"],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "already holds a model" in proc.stderr
    assert (out / "model.safetensors").read_bytes() == before


def test_same_seed_same_weights(tmp_path):
    from sser_lobes.tiny_ssl import make_tiny_ssl

    a = make_tiny_ssl(tmp_path / "a", seed=5)
    b = make_tiny_ssl(tmp_path / "b", seed=5)
    assert (a / "model.safetensors").read_bytes() == (
        b / "model.safetensors"
    ).read_bytes()
