"""Loading a model never runs what it downloads; exports publish no local path.

A model folder whose ``hyperparams.yaml`` names code (``!apply:os.system``,
``subprocess``, ``eval``, an ``!include`` of another file, a python tag) is
refused before anything is built, by ``EmotionRecognizer.from_hparams`` and by
``sser-predict``, and the code's side effect (a marker file) never happens.
"""

import importlib.metadata
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import test_inference
import torch
from conftest import ROOT

from sser_lobes.errors import ExportError, UnsafeHparamsError
from sser_lobes.inference.export import export_run, upload_plan
from sser_lobes.inference.recognizer import EmotionRecognizer
from sser_lobes.inference.safe_hparams import (
    ALLOWED_TAGS,
    check_hparams_text,
    load_checked_hparams,
)

# The trained-and-exported tiny model is conftest's session fixture
# ``exported``, shared with test_inference.
_test_files = test_inference._test_files

INSERT_LINE = 5  # malicious lines go here, after the file's header comment


class RunsCommand:
    """Pickles into a call of os.system (what a crafted checkpoint holds)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _model_folder(exported, folder, lines=()):
    """A copy of the exported model with ``lines`` inserted in its YAML."""
    shutil.copytree(exported[1], folder)
    path = folder / "hyperparams.yaml"
    text = path.read_text().splitlines()
    text[INSERT_LINE - 1 : INSERT_LINE - 1] = list(lines)
    path.write_text("\n".join(text) + "\n")
    return folder


def _few_files(exported, count=4):
    manifest, _ = _test_files(exported[0])
    return [manifest[u]["wav"] for u in sorted(manifest)[:count]]


@pytest.fixture(scope="module")
def genuine(exported):
    return EmotionRecognizer.from_hparams(str(exported[1]))


def _probabilities(recognizer, files):
    return torch.tensor(
        [
            [r["probabilities"][label] for label in recognizer.labels]
            for r in recognizer.predict_files(files)
        ]
    )


def _attacks(tmp_path, marker):
    """Lines naming code, and the tag each error must name."""
    outside = tmp_path / "outside.yaml"  # an !include target, outside the model
    return {
        "os.system": (
            f'pwned: !apply:os.system ["touch {marker}"]',
            "!apply:os.system",
        ),
        "subprocess.run": (
            f'pwned: !apply:subprocess.run [["touch", "{marker}"]]',
            "!apply:subprocess.run",
        ),
        "subprocess.Popen": (
            f'pwned: !new:subprocess.Popen [["touch", "{marker}"]]',
            "!new:subprocess.Popen",
        ),
        "eval": (
            "pwned: !apply:builtins.eval "
            f"[\"__import__('os').system('touch {marker}')\"]",
            "!apply:builtins.eval",
        ),
        "include": (f"pwned: !include:{outside}", f"!include:{outside}"),
        "python tag": (
            f'pwned: !!python/object/apply:os.system ["touch {marker}"]',
            "!!python/object/apply:os.system",
        ),
        # HyperPyYAML parses a plain (...) value with PyYAML's full loader.
        "tuple": (
            f'pwned: (!!python/object/apply:os.system ["touch {marker}"], 1)',
            "!!python/object/apply:os.system",
        ),
    }


ATTACKS = list(_attacks(Path("tmp"), "marker"))


@pytest.mark.parametrize("attack", ATTACKS)
def test_yaml_naming_code_is_refused_and_runs_nothing(exported, tmp_path, attack):
    marker = tmp_path / "pwned"
    line, tag = _attacks(tmp_path, marker)[attack]
    (tmp_path / "outside.yaml").write_text(f'x: !apply:os.system ["touch {marker}"]\n')
    folder = _model_folder(exported, tmp_path / "model", [line])
    with pytest.raises(UnsafeHparamsError) as info:
        EmotionRecognizer.from_hparams(str(folder))
    message = str(info.value)
    assert f"{folder / 'hyperparams.yaml'}, line {INSERT_LINE}: " in message
    assert tag in message and "trust_hparams=True" in message
    assert "\n" not in message
    assert not marker.exists()


def test_cli_refuses_with_one_error_line(exported, tmp_path, capsys):
    """sser-predict's main() (its command line is run as a subprocess in
    test_inference): exit status 2, one error line, no traceback."""
    from sser_lobes.inference import predict

    marker = tmp_path / "pwned"
    line, _ = _attacks(tmp_path, marker)["os.system"]
    folder = _model_folder(exported, tmp_path / "model", [line])
    status = predict.main(["--model", str(folder), _few_files(exported, 1)[0]])
    stderr = capsys.readouterr().err
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert status == 2, stderr
    assert len(errors) == 1 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert f"line {INSERT_LINE}: !apply:os.system is not allowed" in errors[0]
    assert "--trust-hparams" in errors[0]
    assert not marker.exists()


def test_custom_py_is_never_imported(exported, genuine, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Hook: pass\n"
    plain = _model_folder(exported, tmp_path / "plain")
    (plain / "custom.py").write_text(code)
    rec = EmotionRecognizer.from_hparams(str(plain))
    files = _few_files(exported, 2)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))
    # A YAML naming the folder's module, even with the folder importable
    # (as foreign_class makes it), is refused before anything is imported.
    named = _model_folder(exported, tmp_path / "named", ["hook: !name:custom.Hook"])
    (named / "custom.py").write_text(code)
    monkeypatch.syspath_prepend(str(named))
    monkeypatch.delitem(sys.modules, "custom", raising=False)
    with pytest.raises(UnsafeHparamsError, match="!name:custom.Hook"):
        EmotionRecognizer.from_hparams(str(named))
    assert not marker.exists() and "custom" not in sys.modules


def test_weights_come_only_from_model_safetensors(exported, genuine, tmp_path):
    """A pretrainer section pointing at other weights is ignored."""
    folder = _model_folder(exported, tmp_path / "model")
    zeros = {k: torch.zeros_like(v) for k, v in genuine.model.state_dict().items()}
    torch.save(zeros, folder / "other.ckpt")
    path = folder / "hyperparams.yaml"
    text = path.read_text().replace(
        "        model: !ref <model>\n",
        "        model: !ref <model>\n        other: !ref <model>\n",
    )
    text = text.replace(
        "        model: model.safetensors\n",
        f"        model: model.safetensors\n        other: {folder}/other.ckpt\n",
    )
    path.write_text(text)
    rec = EmotionRecognizer.from_hparams(str(folder))
    files = _few_files(exported)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))


def test_trust_hparams_runs_a_hand_written_yaml(exported, genuine, tmp_path):
    folder = _model_folder(
        exported, tmp_path / "model", ["extra: !new:torch.nn.Identity"]
    )
    with pytest.raises(UnsafeHparamsError, match="!new:torch.nn.Identity"):
        EmotionRecognizer.from_hparams(str(folder))
    rec = EmotionRecognizer.from_hparams(str(folder), trust_hparams=True)
    assert isinstance(rec.hparams.extra, torch.nn.Identity)
    files = _few_files(exported)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))


def test_genuine_export_gives_the_recipe_predictions(exported, genuine):
    run, out = exported
    check_hparams_text((out / "hyperparams.yaml").read_text())
    manifest, rows = _test_files(run)
    ids = sorted(manifest)[:6]
    results = genuine.predict_files([manifest[u]["wav"] for u in ids])
    for utt, result in zip(ids, results):
        assert result["label"] == rows[utt]["prediction"]
        for label, prob in result["probabilities"].items():
            assert prob == pytest.approx(float(rows[utt][f"prob_{label}"]), abs=2e-6)


def test_plain_speechbrain_still_loads_the_export(exported, genuine):
    """For users who want SpeechBrain's own (unchecked) loader."""
    from safetensors.torch import load_file
    from speechbrain.inference.interfaces import Pretrained

    out = exported[1]
    plain = Pretrained.from_hparams(
        str(out),
        overrides={"pretrainer": {"paths": {"model": f"{out}/model.safetensors"}}},
    )
    saved = load_file(str(out / "model.safetensors"))
    state = plain.mods.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())


def test_text_encoder_files_stay_inside_the_model(exported, tmp_path):
    folder = _model_folder(
        exported, tmp_path / "model", ['text_encoder_files: ["../../.bashrc"]']
    )
    with pytest.raises(UnsafeHparamsError, match="text_encoder_files"):
        EmotionRecognizer.from_hparams(str(folder))


@pytest.mark.parametrize(
    "text, problem",
    [
        # Values built by !ref substitution are checked too.
        (
            'a: "!!python/object/apply:os.system [\\"touch MARKER\\"]"\n'
            "x: !ref (<a>, 1)\n",
            "!!python/object/apply:os.system",
        ),
        # <node.attribute> makes HyperPyYAML call getattr on built objects.
        (
            "h: !new:sser_lobes.nnet.heads.LinearHead [2, 2]\nx: !ref <h.__class__>\n",
            "reads an attribute",
        ),
        (
            'h: !new:sser_lobes.nnet.heads.LinearHead [2, 2]\ns: "<h.forward>"\n'
            "x: !ref <s>\n",
            "!apply:getattr",
        ),
        (
            "%TAG !p! tag:yaml.org,2002:python/\n---\n"
            'x: !p!object/apply:os.system ["touch MARKER"]\n',
            "!!python/object/apply:os.system",
        ),
        ('x: !applyref:os.system ["touch MARKER"]\n', "!applyref:os.system"),
        ("x: !PLACEHOLDER\n", "!PLACEHOLDER"),
        # An allowed constructor may not download weights from elsewhere.
        (
            "e: !new:sser_lobes.SSLEncoder\n    source: someone/model\n"
            "    load_weights: True\n",
            "load_weights: False and no source",
        ),
    ],
)
def test_checker_refuses_indirect_code(tmp_path, text, problem):
    marker = tmp_path / "pwned"
    path = tmp_path / "hyperparams.yaml"
    path.write_text(text.replace("MARKER", str(marker)))
    with pytest.raises(UnsafeHparamsError) as info:
        load_checked_hparams(path)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert not marker.exists()


def test_allowlist_is_exactly_what_export_writes():
    source = (ROOT / "sser_lobes" / "inference" / "export.py").read_text()
    written = set(re.findall(r"!(?:new|apply|name):[\w.]+", source))
    assert written == set(ALLOWED_TAGS)


def test_export_refuses_a_pickle_checkpoint(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported[0], run)
    checkpoints = sorted((run / "save").glob("CKPT*/model.ckpt"))
    assert checkpoints  # the best one, and the last one if it is another
    marker = tmp_path / "pwned"
    for checkpoint in checkpoints:
        torch.save({"weight": RunsCommand(f"touch {marker}")}, checkpoint)
    with pytest.raises(ExportError) as info:
        export_run(run, tmp_path / "out")
    message = str(info.value)
    assert any(str(c) in message for c in checkpoints)
    assert "weights_only=True" in message
    assert "\n" not in message
    assert not marker.exists()


def test_uploaded_files_hold_no_local_path(exported, iemocap_corpus):
    run, out = exported
    local = {str(run.parent), str(run.parent.resolve()), str(iemocap_corpus)}
    plan = [name for name, _ in upload_plan(out)]
    assert "sser_export.json" not in plan and "README.md" in plan
    for name in plan:
        data = (out / name).read_bytes()
        for path in local:
            assert path.encode() not in data, (name, path)
    card = (out / "README.md").read_text()
    assert "https://github.com/" not in card
    version = re.escape(importlib.metadata.version("sser"))
    assert re.search(rf"package `sser` \(version\s+{version}", card)
    assert "a local wav2vec2 checkpoint (hidden_size 32, 2 layers" in card
    assert "IEMOCAP leave-one-session-out" in card and "trust_hparams=True" in card
    copied = json.loads((out / "test_metrics.json").read_text())
    assert copied["ssl_source"].startswith("a local wav2vec2 checkpoint")
    # The run folder itself is never changed.
    original = json.loads((run / "test_metrics.json").read_text())
    assert original["ssl_source"] == str(run.parent / "tiny_ssl_gone_after_export")
