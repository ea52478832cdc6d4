"""Two-process DDP training on CPU (gloo) through torchrun, as users launch it."""

import json
import re
import socket
import sys

import pytest
from conftest import FAST_TRAINING, RECIPES, run_script

RECIPE = RECIPES / "IEMOCAP"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(corpus, model, out, *extra, expect_ok=True):
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        RECIPE / "train.py",
        RECIPE / "hparams" / "train_wavlm_large.yaml",
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        "--number_of_epochs=2",
        "--distributed_backend=gloo",
        *FAST_TRAINING,
        *extra,
    ]
    return run_script(args, cwd=out.parent, expect_ok=expect_ok, timeout=900)


@pytest.mark.parametrize("finetune", ["partial", "frozen"])
def test_ddp_two_processes_with_unused_and_frozen_parameters(
    iemocap_corpus, tiny_models, tmp_path, finetune
):
    """output_layer=1 leaves the last transformer layer unused and frozen mode
    leaves the whole encoder without gradients: neither crashes DDP. The
    partial run also checkpoints the transformer layers' activations."""
    out = tmp_path / f"ddp_{finetune}"
    proc = _torchrun(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        f"--finetune={finetune}",
        "--output_layer=1",
        f"--gradient_checkpointing={finetune == 'partial'}",
    )
    # The training batches are shared between the two processes.
    train = json.loads((out / "manifests/train.json").read_text()).values()
    n_train = sum(e["emo"] is not None for e in train)  # labelled: hard targets
    all_batches = -(-n_train // 8)
    found = re.search(
        r"DDP process 0: (\d+) of the training batches", proc.stdout + proc.stderr
    )
    assert found, "DDP was not initialised"
    assert int(found.group(1)) == -(-all_batches // 2)
    metrics = json.loads((out / "test_metrics.json").read_text())
    test = json.loads((out / "manifests/test.json").read_text())
    assert metrics["n"] == sum(e["emo"] is not None for e in test.values())
    history = json.loads((out / "history.json").read_text())
    assert list(history) == ["1", "2"]


def test_ddp_without_find_unused_parameters_fails_on_unused_layer(
    iemocap_corpus, tiny_models, tmp_path
):
    """Why find_unused_parameters is on by default (SpeechBrain #701, #2340)."""
    out = tmp_path / "ddp_strict"
    proc = _torchrun(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--output_layer=1",
        "--find_unused_parameters=False",
        expect_ok=False,
    )
    assert proc.returncode != 0
    assert "find_unused_parameters" in proc.stdout + proc.stderr
