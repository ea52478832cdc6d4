"""Loading a model runs nothing it downloaded, by construction; exports
publish no local path.

A model folder is data: ``sser_model.json`` (read with ``json``, checked
against sser's schema) and ``model.safetensors`` (names and shapes checked
before loading). Each attack below is put into a copy of a genuine export;
``EmotionRecognizer.from_hparams`` and ``sser-predict`` must refuse it with
one line (or ignore it, where the file is one sser never reads) and its side
effect (a marker file) must never happen. Every attack test has a timeout:
a loader that evaluates what it reads (HyperPyYAML's arithmetic, ``!copy``
bombs, anchors) would hang there.
"""

import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import test_inference
import torch
from conftest import MSP, recipe_process_state, run_recipe
from safetensors.torch import load_file, save_file

from sser_lobes.errors import ExportError, ModelFormatError
from sser_lobes.inference.export import export_run, upload_plan
from sser_lobes.inference.model_description import MAX_DESCRIPTION_BYTES
from sser_lobes.inference.recognizer import EmotionRecognizer

# The trained-and-exported tiny model is conftest's session fixture
# ``exported``, shared with test_inference.
_test_files = test_inference._test_files

#: Generous bounds for a refusal: a hang of an evaluating loader fails here.
ATTACK_TIMEOUT = 60


class RunsCommand:
    """Pickles into a call of os.system (what a crafted checkpoint holds)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _copy(exported, folder):
    shutil.copytree(exported[1], folder)
    return folder


def _description(folder):
    return json.loads((folder / "sser_model.json").read_text())


def _write_description(folder, data):
    (folder / "sser_model.json").write_text(json.dumps(data))


def _few_files(exported, count=4):
    manifest, _ = _test_files(exported[0])
    return [manifest[u]["wav"] for u in sorted(manifest)[:count]]


@pytest.fixture(scope="module")
def genuine(exported):
    return EmotionRecognizer.from_hparams(str(exported[1]))


def _probabilities(recognizer, files):
    """The network's own (raw) probabilities: a folder built from its trusted
    hyperparams.yaml has no calibration."""
    return torch.tensor(
        [
            [r["probabilities"][label] for label in recognizer.labels]
            for r in recognizer.predict_files(files, calibrated=False)
        ]
    )


def _refused(folder, *fragments):
    """from_hparams raises one ModelFormatError line holding ``fragments``."""
    with pytest.raises(ModelFormatError) as info:
        EmotionRecognizer.from_hparams(str(folder))
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------
# 1-3. A hyperparams.yaml full of code is never read
# --------------------------------------------------------------------------


def _yaml_attacks(outside, marker):
    """Payloads an attacker writes into hyperparams.yaml: HyperPyYAML runs
    each of them, or hangs on it, when the file is built (``outside``: a
    YAML file elsewhere that the ``!include`` names)."""
    bomb = "b0: [1, 2, 3, 4, 5, 6, 7, 8]\n" + "".join(
        f"b{i}: [!copy <b{i - 1}>, !copy <b{i - 1}>, !copy <b{i - 1}>, "
        f"!copy <b{i - 1}>, !copy <b{i - 1}>, !copy <b{i - 1}>]\n"
        for i in range(1, 6)
    )
    laughs = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + (
        "".join(
            f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, "
            f"*l{i - 1}, *l{i - 1}, *l{i - 1}]\n"
            for i in range(1, 9)
        )
    )
    return {
        "os.system": f'pwned: !apply:os.system ["touch {marker}"]\n',
        "subprocess": f'pwned: !new:subprocess.Popen [["touch", "{marker}"]]\n',
        "eval": "pwned: !apply:builtins.eval "
        f"[\"__import__('os').system('touch {marker}')\"]\n",
        "include": f"pwned: !include:{outside}\n",
        "python tag": f'pwned: !!python/object/apply:os.system ["touch {marker}"]\n',
        "tuple": f'pwned: (!!python/object/apply:os.system ["touch {marker}"], 1)\n',
        # a chain that the first !ref pass leaves unresolved; the second pass
        # (inside load_hyperpyyaml) builds the tagged tuple
        "ref chain": 'p: "(1, !"\n'
        f"q: \"!python/object/apply:os.system ['touch {marker}'])\"\n"
        "a: !ref <b>\nb: !ref <s>\ns: !ref <p><q>\n",
        # attribute walks from a built object
        "attribute walk": "h: !new:sser_lobes.nnet.heads.LinearHead [2, 2]\n"
        "x: !ref <h.forward.__globals__>\n",
        "arithmetic": "n: 9\nx: !ref <n>**<n>**<n>**<n>\n",
        "copy bomb": bomb,
        "billion laughs": laughs,
    }


YAML_ATTACKS = list(_yaml_attacks("outside.yaml", "marker"))


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize("attack", YAML_ATTACKS)
def test_a_yaml_full_of_code_is_never_read(exported, genuine, tmp_path, attack):
    """The folder's hyperparams.yaml holds the attack: loading reads
    sser_model.json only, gives the genuine predictions, and runs nothing.
    Without sser_model.json, the folder is refused in one line, still
    without reading the YAML."""
    marker = tmp_path / "pwned"
    outside = tmp_path / "outside.yaml"
    outside.write_text(f'x: !apply:os.system ["touch {marker}"]\n')
    folder = _copy(exported, tmp_path / "model")
    payload = _yaml_attacks(outside, marker)[attack]
    (folder / "hyperparams.yaml").write_text(payload)
    rec = EmotionRecognizer.from_hparams(str(folder))
    files = _few_files(exported, 2)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))
    (folder / "sser_model.json").unlink()
    message = _refused(folder, "no sser_model.json", "python -m sser_lobes.export")
    assert "trust_hparams=True" in message
    assert not marker.exists()


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_cli_on_a_yaml_only_folder_prints_one_line(exported, tmp_path, capsys):
    """sser-predict --model on such a folder: exit status 2, one error line,
    nothing run."""
    from sser_lobes.inference import predict

    marker = tmp_path / "pwned"
    folder = _copy(exported, tmp_path / "model")
    (folder / "hyperparams.yaml").write_text(
        _yaml_attacks(tmp_path / "outside.yaml", marker)["ref chain"]
    )
    (folder / "sser_model.json").unlink()
    status = predict.main(["--model", str(folder), _few_files(exported, 1)[0]])
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ")
    assert "no sser_model.json" in stderr and "--trust-hparams" in stderr
    assert not marker.exists()


def test_trust_hparams_builds_the_yaml_and_says_it_runs_code(
    exported, genuine, tmp_path
):
    """The documented opt-in: the YAML is built (here it adds a module)."""
    folder = _copy(exported, tmp_path / "model")
    path = folder / "hyperparams.yaml"
    path.write_text(path.read_text() + "extra: !new:torch.nn.Identity\n")
    rec = EmotionRecognizer.from_hparams(str(folder), trust_hparams=True)
    assert isinstance(rec.hparams.extra, torch.nn.Identity)
    files = _few_files(exported)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))
    assert "RUNS the code" in EmotionRecognizer.from_hparams.__doc__


def test_custom_py_is_never_imported(exported, genuine, tmp_path):
    marker = tmp_path / "imported"
    folder = _copy(exported, tmp_path / "model")
    (folder / "custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    )
    rec = EmotionRecognizer.from_hparams(str(folder))
    files = _few_files(exported, 2)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))
    assert not marker.exists() and "custom" not in sys.modules


# --------------------------------------------------------------------------
# The description: a data file with limits and a schema
# --------------------------------------------------------------------------


def _set(data, path, value):
    """``data`` with the value at ``path`` (keys and indices) replaced."""
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


DESCRIPTION_ATTACKS = {
    # a string naming code is only a string: in a closed set it is refused
    "pooling type names code": (
        ("architecture", "pooling", "type"),
        "!!python/object/apply:os.system",
        "architecture.pooling.type must be one of",
    ),
    "head type names a class": (
        ("architecture", "head", "type"),
        "!new:torch.nn.Identity",
        "architecture.head.type must be one of",
    ),
    "encoder of another kind": (
        ("architecture", "encoder", "config", "model_type"),
        "bert",
        "model_type must be one of",
    ),
    "a huge encoder": (
        ("architecture", "encoder", "config", "num_hidden_layers"),
        10**7,
        "num_hidden_layers must be an integer in 1..96",
    ),
    "a negative size": (
        ("architecture", "head", "input_size"),
        -4,
        "architecture.head.input_size must be an integer",
    ),
    "an activation that is a name of code": (
        ("architecture", "encoder", "config", "hidden_act"),
        "os.system",
        "hidden_act must be one of",
    ),
    "labels fewer than the head's outputs": (
        ("labels",),
        ["neu", "hap"],
        "labels names 2 classes, the head has 4 outputs",
    ),
    "a label that is not a string": (("labels", 0), {"a": 1}, "labels[0] must be"),
    "a window of a year": (
        ("window_seconds",),
        3.2e7,
        "window_seconds must be a number",
    ),
    "a text encoder file outside the folder": (
        ("text_encoder",),
        {"files": ["../../.bashrc"], "max_length": 16, "normalize": True},
        "text_encoder.files[0]",
    ),
    "a newer format": (("format_version",), 99, "format_version is 99"),
    # found by the review of the loader
    "adapter layers (a meta-device memory bomb)": (
        ("architecture", "encoder", "config", "add_adapter"),
        True,
        "add_adapter True is not a configuration sser builds",
    ),
    "a hop of 10 ms (a CPU bomb)": (
        ("chunk_hop_seconds",),
        0.01,
        "chunk_hop_seconds must be a number in [",
    ),
    "a label with a direction override": (("labels", 0), "neu\u202e", "control"),
    "labels equal but for case": (("labels", 1), "NEU", "distinct (ignoring case)"),
    "position conv groups that do not divide": (
        ("architecture", "encoder", "config", "num_conv_pos_embedding_groups"),
        3,
        "not a multiple of num_conv_pos_embedding_groups",
    ),
    "a CNN that needs more than a second": (
        ("architecture", "encoder", "config", "conv_stride"),
        [16, 16, 16, 16, 16, 16, 16],
        "more than one second",
    ),
}


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize("attack", list(DESCRIPTION_ATTACKS))
def test_description_values_are_checked(exported, tmp_path, attack):
    path, value, problem = DESCRIPTION_ATTACKS[attack]
    folder = _copy(exported, tmp_path / "model")
    _write_description(folder, _set(_description(folder), path, value))
    _refused(folder, str(folder / "sser_model.json"), problem)


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"format": "sser-model", "format": "sser-model"}', "given twice"),
        ('{"format": NaN}', "not a number a description may hold"),
        ("[" * 5000 + "]" * 5000, "nested"),
        # YAML (anchors, tags) is not JSON: it is not parsed at all
        ("a: &x [1]\nb: *x\n", "Expecting value"),
        ("!!python/object/apply:os.system ['touch x']", "Expecting value"),
        ('"just a string"', "a model description is a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_description_must_be_plain_json(exported, tmp_path, text, problem):
    folder = _copy(exported, tmp_path / "model")
    data = text if isinstance(text, bytes) else text.encode()
    (folder / "sser_model.json").write_bytes(data)
    _refused(folder, problem)


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_a_huge_description_is_refused_unread(exported, tmp_path):
    """A 100 MB description (sparse: nothing is written) is refused by its
    size alone."""
    folder = _copy(exported, tmp_path / "model")
    with open(folder / "sser_model.json", "r+b") as handle:
        handle.truncate(100 * 1024 * 1024)
    _refused(folder, f"a model description is at most {MAX_DESCRIPTION_BYTES}")


def test_unknown_keys_are_ignored_with_a_warning(exported, genuine, tmp_path, caplog):
    folder = _copy(exported, tmp_path / "model")
    data = _description(folder)
    data["future_option"] = {"anything": [1, 2]}
    data["architecture"]["head"]["colour"] = "blue"
    data["architecture"]["encoder"]["config"]["auto_map"] = {"AutoModel": "x.Y"}
    _write_description(folder, data)
    with caplog.at_level(logging.WARNING):
        rec = EmotionRecognizer.from_hparams(str(folder))
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'future_option'" in warned and "'colour'" in warned
    assert "auto_map" not in warned  # a transformers bookkeeping key: dropped
    files = _few_files(exported, 2)
    assert torch.equal(_probabilities(rec, files), _probabilities(genuine, files))


# --------------------------------------------------------------------------
# Weights and files
# --------------------------------------------------------------------------


def _rewrite_weights(folder, change):
    path = folder / "model.safetensors"
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda s: s.pop("head.linear.weight"), "lacks the tensor head.linear.weight"),
        (lambda s: s.update(extra=torch.zeros(2)), "holds the tensor extra"),
        (
            lambda s: s.update({"head.linear.weight": torch.zeros(4, 7)}),
            "head.linear.weight has shape [4, 7]",
        ),
        (
            lambda s: s.update({"head.linear.weight": torch.zeros(4, 32).long()}),
            "head.linear.weight is I64; the description's model needs a float tensor",
        ),
    ],
)
def test_weights_must_match_the_description(exported, tmp_path, change, problem):
    folder = _copy(exported, tmp_path / "model")
    _rewrite_weights(folder, change)
    _refused(folder, str(folder / "model.safetensors"), problem)


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_a_pickle_in_place_of_the_weights_is_not_unpickled(exported, tmp_path):
    marker = tmp_path / "pwned"
    folder = _copy(exported, tmp_path / "model")
    torch.save({"w": RunsCommand(f"touch {marker}")}, folder / "model.safetensors")
    _refused(folder, "not a safetensors file")
    assert not marker.exists()


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize("name", ["model.safetensors", "sser_model.json"])
def test_symlinks_out_of_the_folder_are_not_followed(exported, tmp_path, name):
    """A downloaded folder's symlink to a file elsewhere (here a genuine copy,
    so only the link's target decides) is refused."""
    elsewhere = _copy(exported, tmp_path / "elsewhere")
    folder = _copy(exported, tmp_path / "model")
    (folder / name).unlink()
    os.symlink(elsewhere / name, folder / name)
    _refused(folder, "leads out of the model folder", "not followed")
    # a link inside the folder is fine
    (folder / name).unlink()
    os.rename(elsewhere / name, folder / f"real_{name}")
    os.symlink(folder / f"real_{name}", folder / name)
    EmotionRecognizer.from_hparams(str(folder))


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_the_command_line_refuses_each_kind_in_one_line(exported, tmp_path, capsys):
    """sser-predict --model on a description attack, a weights attack and a
    symlink attack: exit status 2, one error line naming the file."""
    from sser_lobes.inference import predict

    wav = _few_files(exported, 1)[0]
    folders = {}
    folders["schema"] = _copy(exported, tmp_path / "schema")
    _write_description(
        folders["schema"],
        _set(_description(folders["schema"]), ("labels",), ["a", "b"]),
    )
    folders["weights"] = _copy(exported, tmp_path / "weights")
    _rewrite_weights(folders["weights"], lambda s: s.pop("head.linear.weight"))
    folders["link"] = _copy(exported, tmp_path / "link")
    (folders["link"] / "model.safetensors").unlink()
    os.symlink("/etc/hostname", folders["link"] / "model.safetensors")
    for kind, folder in folders.items():
        status = predict.main(["--model", str(folder), wav])
        stderr = capsys.readouterr().err
        assert status == 2, (kind, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (kind, stderr)
        assert str(folder) in lines[0] and "Traceback" not in stderr


# --------------------------------------------------------------------------
# Genuine exports load and predict what the recipe predicted
# --------------------------------------------------------------------------


def test_genuine_export_gives_the_recipe_predictions(exported, genuine):
    run, out = exported
    manifest, rows = _test_files(run)
    ids = sorted(manifest)[:6]
    results = genuine.predict_files(  # the recipe wrote the raw probabilities
        [manifest[u]["wav"] for u in ids], calibrated=False
    )
    for utt, result in zip(ids, results):
        assert result["label"] == rows[utt]["prediction"]
        for label, prob in result["probabilities"].items():
            assert prob == pytest.approx(float(rows[utt][f"prob_{label}"]), abs=1e-5)


def _msp_run(corpus, model, out, hparams, *extra):
    argv = [
        MSP / "hparams" / hparams,
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        "--number_of_epochs=2",
        "--num_workers=0",
        "--noprogressbar",
        "--head_hidden_size=16",
        *extra,
    ]
    return run_recipe(MSP, argv)


def _csv_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "hparams, extra",
    [
        ("train_wavlm_large.yaml", ()),  # attentive statistics, MLP head
        ("train_wavlm_large_attributes.yaml", ("--pooling_type=mean_std",)),
    ],
)
def test_msp_exports_load_with_the_recipe_predictions(
    msp_small_corpus, tiny_models, tmp_path, hparams, extra
):
    """The MSP-Podcast recipe's kinds (attentive statistics pooling with the
    baseline's MLP head; the attribute task) export and reload from data
    only, with the recipe's own development predictions."""
    from sser_lobes.inference import export

    run = tmp_path / "run"
    _msp_run(msp_small_corpus, tiny_models["wavlm"], run, hparams, *extra)
    out = tmp_path / "model"
    with recipe_process_state():
        assert export.main([str(run), str(out)]) == 0
    rec = EmotionRecognizer.from_hparams(str(out))
    manifest = json.loads((run / "manifests" / "development.json").read_text())
    rows = {r["id"]: r for r in _csv_rows(run / "development_predictions.csv")}
    ids = sorted(rows)[:6]
    results = rec.predict_files([manifest[u]["wav"] for u in ids], calibrated=False)
    for utt, result in zip(ids, results):
        values = result.get("probabilities") or result["attributes"]
        for name, value in values.items():
            column = f"prob_{name}" if "probabilities" in result else f"pred_{name}"
            assert value == pytest.approx(float(rows[utt][column]), abs=1e-5), utt


def test_plain_speechbrain_still_loads_the_export(exported, genuine):
    """For users who want SpeechBrain's own loader (which builds the YAML)."""
    from speechbrain.inference.interfaces import Pretrained

    out = exported[1]
    plain = Pretrained.from_hparams(
        str(out),
        overrides={"pretrainer": {"paths": {"model": f"{out}/model.safetensors"}}},
    )
    saved = load_file(str(out / "model.safetensors"))
    state = plain.mods.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())


# --------------------------------------------------------------------------
# Export reads a run folder as data
# --------------------------------------------------------------------------


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


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_export_of_a_received_run_never_runs_its_yaml(exported, tmp_path):
    """A run folder whose hyperparams.yaml holds code exports from its data
    (save/sser_model.json and the checkpoint tensors); without the
    description it is refused unless --trust-run."""
    from sser_lobes.inference import export

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(exported[0], run)
    yaml = run / "hyperparams.yaml"
    yaml.write_text(yaml.read_text() + f'pwned: !apply:os.system ["touch {marker}"]\n')
    with recipe_process_state():
        assert export.main([str(run), str(tmp_path / "out")]) == 0
    assert not marker.exists()
    (run / "save" / "sser_model.json").unlink()
    with pytest.raises(ExportError, match="pass --trust-run"):
        export_run(run, tmp_path / "out2")
    assert not marker.exists()
    with recipe_process_state():
        export_run(run, tmp_path / "out3", trust_run=True)
    assert marker.exists()  # the documented opt-in builds (runs) the YAML


def test_export_help_says_trust_run_executes_the_yaml(capsys):
    from sser_lobes.inference import export

    with pytest.raises(SystemExit):
        export.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--trust-run" in help_text and "RUNS the code" in help_text
    assert "nothing of the run folder is executed" in help_text


def test_uploaded_files_hold_no_local_path(exported, iemocap_corpus):
    run, out = exported
    local = {str(run.parent), str(run.parent.resolve()), str(iemocap_corpus)}
    plan = [name for name, _ in upload_plan(out)]
    assert "sser_export.json" not in plan and "README.md" in plan
    assert "sser_model.json" in plan
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
    assert "sser_model.json" in card and "no pickle" in card
    copied = json.loads((out / "test_metrics.json").read_text())
    assert copied["ssl_source"].startswith("a local wav2vec2 checkpoint")
    description = _description(out)
    assert description["training"]["ssl_source"].startswith("a local wav2vec2")
    assert "data_folder" not in description["training"]
    # The run folder itself is never changed.
    original = json.loads((run / "test_metrics.json").read_text())
    assert original["ssl_source"] == str(run.parent / "tiny_ssl_gone_after_export")


# --------------------------------------------------------------------------
# Found by the review of the loader (each failed before its fix)
# --------------------------------------------------------------------------


def test_global_normalisation_needs_its_statistics(exported, tmp_path):
    folder = _copy(exported, tmp_path / "model")
    description = _description(folder)
    description["architecture"]["encoder"]["normalize_waveform"] = "global"
    _write_description(folder, description)
    _refused(folder, "model.safetensors", "lacks the tensor encoder.waveform_mean")
    zero = {
        "encoder.waveform_mean": torch.zeros(()),
        "encoder.waveform_std": torch.ones(()),
        "encoder.waveform_stats_samples": torch.zeros(()),
    }
    _rewrite_weights(folder, lambda s: s.update(zero))
    _refused(folder, "training-set waveform statistics, and its weights hold none")


def test_overrides_must_be_a_mapping(exported):
    with pytest.raises(ModelFormatError, match="overrides must be a dict"):
        EmotionRecognizer.from_hparams(str(exported[1]), overrides=[1, 2])


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_non_finite_weights_are_refused(exported, tmp_path):
    """NaN weights used to load and label every file labels[0] with score nan."""
    folder = _copy(exported, tmp_path / "model")
    _rewrite_weights(
        folder, lambda s: s["head.linear.weight"].__setitem__((0, 0), float("nan"))
    )
    _refused(folder, "head.linear.weight holds NaN or infinite values")


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize(
    "header, problem",
    [
        (
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": '
            b'{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
            "given twice",
        ),
        (
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 99999]}}',
            "the header entry of 'a' is malformed",
        ),
        (b"[1, 2]", "not a safetensors file"),
    ],
)
def test_safetensors_headers_are_read_strictly(exported, tmp_path, header, problem):
    import struct

    folder = _copy(exported, tmp_path / "model")
    data = struct.pack("<Q", len(header)) + header + b"\0" * 4
    (folder / "model.safetensors").write_bytes(data)
    _refused(folder, problem)


def test_a_huge_safetensors_header_is_refused_unread(exported, tmp_path):
    import struct

    folder = _copy(exported, tmp_path / "model")
    with open(folder / "model.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", 200 * 1024 * 1024))
        handle.truncate(200 * 1024 * 1024 + 8)
    _refused(folder, "not a safetensors file sser reads")


def _in_memory_folder(folder, tiny_models, fusion=None, text_size=32):
    """A model folder written from a model built in memory (no training):
    a tiny WavLM, mean pooling, optional text fusion, a linear head."""
    from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    from sser_lobes.inference.export import write_model_folder
    from sser_lobes.nnet.description import describe_run
    from sser_lobes.nnet.text_fusion import TextFusion

    torch.manual_seed(0)
    encoder = SSLEncoder(tiny_models["wavlm"], finetune="frozen")
    text = None
    size = 32
    if fusion is not None:
        text = TextFusion(32, text_size, fusion, 16, frame_size=32, num_heads=2)
        size = text.output_size
    model = EmotionModel(
        encoder, MeanPooling(32), LinearHead(size, 4), text_fusion=text
    )
    hparams = {
        "model": model.eval(),
        "emotions": ["neu", "hap", "sad", "ang"],
        "sample_rate": 16000,
        "text_max_length": 16,
        "text_normalize": True,
    }
    description = describe_run(hparams, 10.0)
    folder.mkdir(parents=True)
    if fusion is not None:
        from sser_lobes.text.tiny import tiny_text_encoder

        bert = Path(tiny_text_encoder(folder.parent / f"bert_{folder.name}"))
        shutil.copytree(bert, folder / "text_encoder")
        description["text_encoder"]["files"] = sorted(
            p.name for p in (folder / "text_encoder").iterdir()
        )
    write_model_folder(folder, description, model)
    return folder, model


@pytest.mark.parametrize("fusion", ["concat", "gated", "cross_attention"])
def test_every_text_fusion_kind_loads_with_its_text_encoder(
    tiny_models, tmp_path, fusion
):
    """Gated and cross-attention models were refused (the validator took
    their output size for the audio size)."""
    folder, model = _in_memory_folder(tmp_path / "model", tiny_models, fusion)
    rec = EmotionRecognizer.from_hparams(str(folder))
    wav = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(1))
    with_text = rec.predict_batch(wav[None], texts=["I am so happy."])
    assert with_text["probabilities"].shape == (1, 4)
    texts = rec._embed_texts(["I am so happy."])
    with torch.no_grad():
        direct = model(wav[None], torch.ones(1), text=texts, has_text=torch.ones(1))
    expected = torch.softmax(direct["logits"], -1)
    assert torch.allclose(with_text["probabilities"], expected, atol=1e-6)


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize(
    "attack, problem",
    [
        ("unlisted file", "a file sser_model.json does not list"),
        ("listed file linked out", "leads out of the model folder"),
        ("another width", "the model's text fusion takes 32"),
        ("another kind", "model_type must be one of"),
        ("a pickle listed", "weights are safetensors only"),
    ],
)
def test_the_text_encoder_folder_is_checked_before_transformers_reads_it(
    tiny_models, tmp_path, attack, problem
):
    """transformers reads whatever lies in text_encoder/: an unlisted
    vocab.txt linked to a file elsewhere became the tokenizer's vocabulary."""
    folder, _ = _in_memory_folder(tmp_path / "model", tiny_models, "concat")
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET\n")
    text = folder / "text_encoder"
    description = _description(folder)
    if attack == "unlisted file":
        os.symlink(secret, text / "merges.txt")
    elif attack == "listed file linked out":
        (text / "vocab.txt").unlink()
        os.symlink(secret, text / "vocab.txt")
    elif attack in ("another width", "another kind"):
        config = json.loads((text / "config.json").read_text())
        key, value = (
            ("hidden_size", 64) if attack == "another width" else ("model_type", "gpt2")
        )
        config[key] = value
        (text / "config.json").write_text(json.dumps(config))
    else:
        torch.save({}, text / "pytorch_model.bin")
        description["text_encoder"]["files"].append("pytorch_model.bin")
        _write_description(folder, description)
    _refused(folder, problem)


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_onnx_control_flow_and_unknown_operators_are_refused(exported, tmp_path):
    """A Loop of 2^62 iterations hung ONNX Runtime in C code."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from sser_lobes.inference.onnx_export import OnnxEmotionRecognizer

    folder = _copy(exported, tmp_path / "model")
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])],
    )
    loop = helper.make_node("Loop", ["n", "cond"], [], body=body)
    graph = helper.make_graph(
        [loop],
        "bomb",
        [
            helper.make_tensor_value_info("n", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph), folder / "model.onnx")
    with pytest.raises(ModelFormatError, match="uses the operator ai.onnx.Loop"):
        OnnxEmotionRecognizer(folder)


@pytest.mark.timeout(ATTACK_TIMEOUT)
def test_export_publishes_only_the_runs_own_files(exported, tmp_path):
    """A received run's figure linked to a file elsewhere was copied into the
    export (and pushed); metrics that inject markup reach the card as text."""
    run = tmp_path / "run"
    shutil.copytree(exported[0], run)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    (run / "valid_confusion_matrix.png").unlink()
    os.symlink(secret, run / "valid_confusion_matrix.png")
    metrics = json.loads((run / "test_metrics.json").read_text())
    metrics["split"] = "test <script>alert(1)</script> [x](http://evil)"
    metrics["protocol"] = "see <img src=https://evil.example/x.png> (here)"
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    os.mkfifo(run / "x_metrics.json")  # a reader that opened it would block
    out = export_run(run, tmp_path / "out")
    assert not (out / "valid_confusion_matrix.png").exists()
    assert all(b"SECRET" not in p.read_bytes() for p in out.rglob("*") if p.is_file())
    card = (out / "README.md").read_text()
    assert "<script>" not in card and "http://evil" not in card
    assert "evil.example" not in card and "<img" not in card


@pytest.mark.timeout(ATTACK_TIMEOUT)
@pytest.mark.parametrize("attack", ["fifo", "huge", "linked out", "nan weights"])
def test_export_checks_the_runs_checkpoints(exported, tmp_path, attack):
    """A FIFO as CKPT.yaml blocked the export forever; a checkpoint folder
    linked out of the run was read."""
    run = tmp_path / "run"
    shutil.copytree(exported[0], run)
    checkpoint = sorted((run / "save").glob("CKPT+*"))[0]
    if attack == "fifo":
        (checkpoint / "CKPT.yaml").unlink()
        os.mkfifo(checkpoint / "CKPT.yaml")
        problem = "not a checkpoint's metadata file"
    elif attack == "huge":
        with open(checkpoint / "CKPT.yaml", "a") as handle:
            handle.write("# padding\n" * 20000)
        problem = "not a checkpoint's metadata file"
    elif attack == "linked out":
        elsewhere = tmp_path / "elsewhere"
        shutil.move(checkpoint, elsewhere)
        os.symlink(elsewhere, checkpoint)
        problem = "not a checkpoint folder inside the run"
    else:
        for path in (run / "save").glob("CKPT+*/model.ckpt"):
            state = torch.load(path, weights_only=True)
            state["head.linear.weight"][0, 0] = float("inf")
            torch.save(state, path)
        problem = "holds NaN or infinite values"
    with pytest.raises(ExportError, match=re.escape(problem)):
        export_run(run, tmp_path / "out")


@pytest.mark.parametrize(
    "adapters, message",
    [
        ({"rank": 10**6}, "adapters.rank"),
        ({"rank": 0}, "adapters.rank"),
        ({"alpha": 1e30}, "adapters.alpha"),
        ({"kind": "__import__"}, "adapters.kind"),
        ({"targets": ["attention", "attention"]}, "distinct targets"),
        ({"targets": ["__class__"]}, "adapters.targets[0]"),
        ({"targets": ["attention"] * 10**5}, "adapters.targets"),
        ({"layers": [7]}, "adapters.layers[0]"),
        ({"layers": [0]}, "must be the top layers"),
        ({"layers": list(range(10**4))}, "adapters.layers"),
    ],
    ids=lambda value: str(value)[:24],
)
def test_kept_adapters_in_a_description_are_checked(exported, adapters, message):
    """``adapters`` (``export --keep-adapters``) is numbers sser's code hands
    to peft: hostile values are one line, before anything is built."""
    from sser_lobes.inference.model_description import (
        read_description,
        validate_description,
    )

    _, model = exported
    data = read_description(model)
    good = {
        "kind": "lora",
        "rank": 4,
        "alpha": 8.0,
        "targets": ["attention", "feed_forward"],
        "layers": [1],
    }
    # an unknown key (e.g. a peft config) is dropped, never handed to peft
    data["architecture"]["encoder"]["adapters"] = dict(
        good, config={"target_modules": ".*"}
    )
    checked = validate_description(json.loads(json.dumps(data)), "m.json")
    assert checked["architecture"]["encoder"]["adapters"] == good
    data["architecture"]["encoder"]["adapters"] = dict(good, **adapters)
    with pytest.raises(ModelFormatError, match=re.escape(message)) as error:
        validate_description(data, "m.json")
    assert "\n" not in str(error.value)
