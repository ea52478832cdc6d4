"""Shared fixtures: tiny SSL model folders and recipe paths.

Every model here is written by ``sser_lobes.tiny_ssl`` and loaded through the
same ``SSLEncoder`` code path that loads hub checkpoints: nothing is
downloaded.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# Tests never touch the network: a hub lookup would be a bug.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folders of tiny random models: layer-norm and group-norm variants."""
    from sser_lobes.tiny_ssl import make_tiny_ssl

    root = tmp_path_factory.mktemp("tiny_ssl")
    specs = {
        "wavlm": ("wavlm", "layer"),
        "wav2vec2_large": ("wav2vec2", "layer"),
        "wav2vec2_base": ("wav2vec2", "group"),
        "hubert_base": ("hubert", "group"),
    }
    return {
        name: make_tiny_ssl(root / name, arch=arch, feat_extract_norm=norm)
        for name, (arch, norm) in specs.items()
    }


@pytest.fixture
def iemocap_recipe(monkeypatch):
    """Put recipes/IEMOCAP on sys.path (recipe modules import each other)."""
    path = str(RECIPES / "IEMOCAP")
    monkeypatch.syspath_prepend(path)
    yield Path(path)
    for name in ("train", "iemocap_prepare", "aggregate"):
        sys.modules.pop(name, None)


def run_script(args, cwd, timeout=600, env=None, expect_ok=True):
    """Run a command, fail with the tail of its output if it does not succeed."""
    import subprocess

    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if expect_ok and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{tail}")
    return proc


@pytest.fixture(scope="session")
def iemocap_corpus(tmp_path_factory):
    """A synthetic IEMOCAP_full_release: 12 target utterances per speaker."""
    from sser_lobes.synthetic.iemocap import make_iemocap_corpus

    return make_iemocap_corpus(
        tmp_path_factory.mktemp("iemocap"), utterances_per_speaker=12, seed=0
    )


# Overrides that make the real recipe fast and able to learn in a few epochs
# on the synthetic corpus with a tiny model.
FAST_TRAINING = [
    "--num_workers=0",
    "--noprogressbar",
    "--batch_size=8",
    "--lr=0.01",
    "--lr_ssl=0.002",
]
