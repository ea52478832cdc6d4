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
