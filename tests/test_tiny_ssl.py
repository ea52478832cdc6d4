"""The tiny-model command line writes folders that load like hub checkpoints."""

import json
import sys

import pytest
import torch
from conftest import run_script

from sser_lobes import SSLEncoder
from sser_lobes.encoders.tiny_ssl import main


@pytest.mark.parametrize(
    "arch, norm", [("wavlm", "layer"), ("hubert", "group"), ("wav2vec2", "group")]
)
def test_cli_writes_a_loadable_model(tmp_path, capsys, arch, norm):
    # main() in this process; the command line runs as a subprocess below.
    out = tmp_path / arch
    argv = ["--arch", arch, "--feat-extract-norm", norm, "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
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
    assert main(["--out", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    # The command line: exit status 2 and the reason, the model untouched.
    proc = run_script(
        [
            sys.executable,
            "-m",
            "sser_lobes.encoders.tiny_ssl",
            "--out",
            out,
            "--seed",
            "3",
        ],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "already holds a model" in proc.stderr
    assert (out / "model.safetensors").read_bytes() == before


def test_same_seed_same_weights(tmp_path):
    from sser_lobes.encoders.tiny_ssl import make_tiny_ssl

    a = make_tiny_ssl(tmp_path / "a", seed=5)
    b = make_tiny_ssl(tmp_path / "b", seed=5)
    assert (a / "model.safetensors").read_bytes() == (
        b / "model.safetensors"
    ).read_bytes()
