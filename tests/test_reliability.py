"""What a trained run reports about trusting it, and what its export does.

After training, the recipe fits a temperature on the validation split, keeps
it in ``save/sser_model.json`` (for the checkpoint it evaluated), and every
metrics file reports calibration (raw and calibrated), the agreement with the
annotators, per-gender and per-speaker scores and selective prediction, with
the figures. The export carries the calibration: the recognizer,
``sser-predict`` and ONNX return calibrated probabilities unless asked for
the raw ones, abstain below ``min_confidence``, and the model card states the
thresholds and the groups. A description's calibration is checked like the
rest of it.
"""

import copy
import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import recipe_process_state

from sser_lobes.errors import ModelFormatError
from sser_lobes.evaluation.calibration import softmax


def _metrics(run, split):
    return json.loads((run / f"{split}_metrics.json").read_text())


def test_run_reports_calibration_groups_and_selective_prediction(
    iemocap_trained_run,
):
    run, recipe = iemocap_trained_run
    description = json.loads((run / "save" / "sser_model.json").read_text())
    calibration = description["calibration"]
    assert (
        calibration["method"] == "temperature" and calibration["fitted_on"] == "valid"
    )
    checkpoints = [p.name for p in (run / "save").glob("CKPT+*")]
    assert calibration["checkpoint"] in checkpoints
    assert calibration["nll_after"] <= calibration["nll_before"]
    valid, test = _metrics(run, "valid"), _metrics(run, "test")
    for split, metrics in (("valid", valid), ("test", test)):
        section = metrics["calibration"]
        assert section["temperature"] == calibration["temperature"]
        for kind in ("raw", "calibrated"):
            assert {"ECE", "adaptive_ECE", "NLL", "Brier"} <= set(section[kind])
            assert section[kind]["n"] == metrics["n"]
        # A temperature never changes the predicted class.
        assert section["raw"]["accuracy"] == section["calibrated"]["accuracy"]
        assert section["raw"]["accuracy"] == pytest.approx(metrics["WA"])
        assert metrics["ECE_raw"] == section["raw"]["ECE"]
        assert (run / f"{split}_reliability_diagram.png").read_bytes()[:4] == b"\x89PNG"
        curve = json.loads((run / f"{split}_coverage_accuracy.json").read_text())
        assert curve["curve"][-1]["coverage"] == 1.0
        assert curve["curve"][-1]["accuracy"] == pytest.approx(metrics["WA"])
        assert (run / f"{split}_coverage_accuracy.png").is_file()
        assert set(metrics["selective"]["thresholds"]) == {"0.90", "0.95"}
        groups = metrics["groups"]
        assert set(groups) == {"gender", "speaker"}
        assert sum(g["n"] for g in groups["gender"]["groups"].values()) == metrics["n"]
        gap = groups["speaker"]["largest_gap"]["UA"]
        assert gap["value"] == pytest.approx(
            gap["best"]["value"] - gap["worst"]["value"]
        )
        assert gap["worst"]["n"] > 0
    assert (
        valid["calibration"]["calibrated"]["NLL"] <= valid["calibration"]["raw"]["NLL"]
    )
    assert set(test["selective"]["at_valid_thresholds"]) == {"0.90", "0.95"}
    assert set(test["groups"]["speaker"]["groups"]) == {"Ses02F", "Ses02M"}
    assert "test: ECE" in recipe.stdout and "test: speaker: UA mean" in recipe.stdout


def test_export_carries_the_calibration(exported, tmp_path):
    from sser_lobes.inference import predict
    from sser_lobes.inference.recognizer import EmotionRecognizer

    run, model = exported
    description = json.loads((model / "sser_model.json").read_text())
    saved = json.loads((run / "save" / "sser_model.json").read_text())
    assert description["calibration"] == saved["calibration"]
    temperature = description["calibration"]["temperature"][0]
    recognizer = EmotionRecognizer.from_hparams(str(model))
    path = next(
        iter(json.loads((run / "manifests" / "test.json").read_text()).values())
    )
    path = path["wav"]
    calibrated = recognizer.classify_file(path)
    raw = recognizer.classify_file(path, calibrated=False)
    assert calibrated[2] == raw[2]  # same class
    expected = torch.softmax(torch.log(raw[0]) / temperature, dim=-1)
    assert torch.allclose(calibrated[0], expected, atol=1e-5)
    # Abstention: below min_confidence the label is "uncertain", probabilities stay.
    uncertain = recognizer.classify_file(path, min_confidence=1.0)
    assert uncertain[3] == "uncertain" and torch.allclose(uncertain[0], calibrated[0])
    assert recognizer.classify_file(path, min_confidence=0.0)[3] == calibrated[3]
    # sser-predict: calibrated by default, --raw-probabilities, --min-confidence.
    outputs = {}
    for name, extra in (
        ("default", []),
        ("raw", ["--raw-probabilities"]),
        ("abstain", ["--min-confidence", "1"]),
    ):
        out = tmp_path / f"{name}.jsonl"
        with recipe_process_state():
            status = predict.main(
                ["--model", str(model), path, "--output", str(out), *extra]
            )
        assert status == 0
        outputs[name] = json.loads(out.read_text())
    probs = [outputs["default"]["probabilities"][c] for c in recognizer.labels]
    assert probs == pytest.approx(calibrated[0].tolist(), abs=1e-6)
    raw_probs = [outputs["raw"]["probabilities"][c] for c in recognizer.labels]
    assert raw_probs == pytest.approx(raw[0].tolist(), abs=1e-6)
    assert outputs["abstain"]["label"] == "uncertain"
    with recipe_process_state(), pytest.raises(SystemExit):
        predict.main(["--model", str(model), path, "--min-confidence", "1.5"])
    card = (model / "README.md").read_text()
    assert "## How far to trust a probability" in card and "### Abstaining" in card
    assert "## Who it fails" in card and "### Speaker (test split)" in card
    # The thresholds for 90 % and 95 % validation accuracy, or why there is none.
    thresholds = _metrics(run, "valid")["selective"]["thresholds"]
    for key, found in thresholds.items():
        if found:
            assert f"| {key} | min_confidence={found['threshold']:.4f} |" in card
        else:
            assert f"| {key} | none: no threshold reaches it |" in card
    assert (model / "test_reliability_diagram.png").is_file()


def test_onnx_applies_the_calibration_to_its_logits(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    from sser_lobes.inference import export
    from sser_lobes.inference.onnx_export import ATOL, OnnxEmotionRecognizer

    run, _ = exported
    out = tmp_path / "model"
    with recipe_process_state():
        assert export.main([str(run), str(out), "--onnx"]) == 0
    recognizer = OnnxEmotionRecognizer(out, threads=1)
    calibration = recognizer.calibration
    assert calibration is not None
    wavs = torch.randn(2, 16000).numpy() * 0.1
    lens = np.array([1.0, 0.6], dtype=np.float32)
    outputs = recognizer.run(wavs, lens)
    expected = softmax(outputs["logits"] / calibration["temperature"][0])
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=ATOL)
    raw = recognizer.predict_batch(wavs, lens, calibrated=False)
    np.testing.assert_allclose(raw, softmax(outputs["logits"]), atol=ATOL)


def test_export_leaves_out_a_calibration_of_another_checkpoint(exported, tmp_path):
    from sser_lobes.inference import export

    run, _ = exported
    copy_run = tmp_path / "run"
    shutil.copytree(run, copy_run)
    path = copy_run / "save" / "sser_model.json"
    data = json.loads(path.read_text())
    data["calibration"]["checkpoint"] = "CKPT+another"
    path.write_text(json.dumps(data))
    out = tmp_path / "model"
    with recipe_process_state() as (stdout, _):
        assert export.main([str(copy_run), str(out)]) == 0
    assert "exported uncalibrated" in stdout.getvalue()
    assert json.loads((out / "sser_model.json").read_text())["calibration"] is None


def test_a_description_calibration_is_checked(exported):
    from sser_lobes.inference.model_description import (
        read_description,
        validate_description,
    )

    _, model = exported
    data = read_description(model)
    good = validate_description(copy.deepcopy(data), "m.json")
    assert good["calibration"]["method"] == "temperature"
    without = copy.deepcopy(data)
    del without["calibration"]
    assert validate_description(without, "m.json")["calibration"] is None
    cases = {
        "negative": ({"temperature": [-1.0]}, "calibration.temperature[0]"),
        "huge": ({"temperature": [1e9]}, "calibration.temperature[0]"),
        "length": ({"temperature": [1.0, 2.0]}, "must hold 1 value"),
        "bias": ({"bias": [0.0] * 4}, "must be null for method temperature"),
        "method": ({"method": "platt"}, "calibration.method must be one of"),
        "vector": (
            {"method": "vector", "temperature": [1.0] * 4, "bias": [0.0] * 3},
            "must hold 4 values",
        ),
        "missing": ({"temperature": None}, "calibration.temperature must be a list"),
    }
    for name, (change, message) in cases.items():
        bad = copy.deepcopy(data)
        bad["calibration"].update(change)
        with pytest.raises(ModelFormatError, match=re.escape(message)) as error:
            validate_description(bad, "m.json")
        assert "\n" not in str(error.value), name
    vector = copy.deepcopy(data)
    vector["calibration"].update(
        method="vector", temperature=[1.0, 2.0, 0.5, 1.0], bias=[0.1, 0.0, -0.1, 0.2]
    )
    assert validate_description(vector, "m.json")["calibration"]["bias"][0] == 0.1
