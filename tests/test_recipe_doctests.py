"""The doctests of the recipe scripts (``recipes/`` is outside pytest's
doctest collection: three recipes have a ``train.py`` and an ``aggregate.py``,
which pytest cannot import side by side under their plain names)."""

import doctest
import importlib

import pytest
from conftest import CUSTOM, IEMOCAP, MSP, load_recipe_script

SCRIPTS = [
    (IEMOCAP, "iemocap_prepare.py"),
    (IEMOCAP, "train.py"),
    (MSP, "msp_podcast_prepare.py"),
    (MSP, "train.py"),
    (CUSTOM, "custom_prepare.py"),
    (CUSTOM, "train.py"),
]


@pytest.mark.parametrize(
    "recipe, script", SCRIPTS, ids=[f"{r.name}/{s}" for r, s in SCRIPTS]
)
def test_recipe_script_doctests(recipe, script):
    if script == "train.py":
        module = load_recipe_script(recipe, script)
    else:  # on sys.path (conftest); dataclasses need it in sys.modules
        module = importlib.import_module(script[: -len(".py")])
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if script != "train.py" or recipe != MSP:
        assert result.attempted > 0
