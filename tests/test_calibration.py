"""Calibration metrics against maintained libraries, and the temperature fit.

ECE is torchmetrics' ``multiclass_calibration_error``; NLL and Brier score
equal scikit-learn's ``log_loss`` and ``brier_score_loss`` on fixed arrays;
the adaptive ECE and the reliability bins agree with torchmetrics where
their definitions meet. Temperature scaling lowers the test ECE of a
deliberately over-confident model and never changes its predictions.
"""

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from sser_lobes.evaluation.calibration import (
    TEMPERATURE_RANGE,
    adaptive_calibration_error,
    apply_calibration,
    brier_score,
    calibrated_probabilities,
    calibration_metrics,
    expected_calibration_error,
    fit_calibration,
    negative_log_likelihood,
    probabilities_as_logits,
    reliability_bins,
    softmax,
)

#: Fixed probabilities of 4 classes for 8 utterances and their classes.
PROBS = np.array(
    [
        [0.70, 0.10, 0.10, 0.10],
        [0.25, 0.25, 0.40, 0.10],
        [0.05, 0.90, 0.03, 0.02],
        [0.30, 0.30, 0.20, 0.20],
        [0.10, 0.20, 0.60, 0.10],
        [0.55, 0.05, 0.05, 0.35],
        [0.15, 0.15, 0.15, 0.55],
        [0.97, 0.01, 0.01, 0.01],
    ]
)
TARGETS = np.array([0, 2, 1, 1, 3, 3, 3, 0])


def _torchmetrics_ece(probs, targets, n_bins):
    return float(
        multiclass_calibration_error(
            torch.tensor(probs),
            torch.tensor(targets),
            num_classes=probs.shape[1],
            n_bins=n_bins,
            norm="l1",
        )
    )


def test_nll_and_brier_equal_scikit_learn():
    assert negative_log_likelihood(PROBS, TARGETS) == pytest.approx(
        log_loss(TARGETS, PROBS, labels=[0, 1, 2, 3]), abs=1e-12
    )
    assert brier_score(PROBS, TARGETS) == pytest.approx(
        brier_score_loss(TARGETS, PROBS, labels=[0, 1, 2, 3]), abs=1e-12
    )


@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_ece_and_reliability_bins_equal_torchmetrics(n_bins):
    expected = _torchmetrics_ece(PROBS, TARGETS, n_bins)
    assert expected_calibration_error(PROBS, TARGETS, n_bins) == pytest.approx(
        expected, abs=1e-12
    )
    # The diagram's bins are torchmetrics' bins: their weighted gaps sum to ECE.
    bins = reliability_bins(PROBS, TARGETS, n_bins)
    assert sum(b["count"] for b in bins) == len(TARGETS)
    from_bins = sum(
        b["count"] / len(TARGETS) * abs(b["accuracy"] - b["confidence"])
        for b in bins
        if b["count"]
    )
    assert from_bins == pytest.approx(expected, abs=1e-6)  # torchmetrics: float32


def test_adaptive_ece():
    # One bin: the same as the equal-width ECE with one bin.
    assert adaptive_calibration_error(PROBS, TARGETS, 1) == pytest.approx(
        _torchmetrics_ece(PROBS, TARGETS, 1), abs=1e-6
    )
    # Equal-mass bins of 2 over the sorted confidences, computed by hand:
    # conf sorted 0.30 (wrong) 0.40 (right) | 0.55 (wrong) 0.55 (right) |
    # 0.60 (wrong) 0.70 (right) | 0.90 (right) 0.97 (right)
    gaps = [abs(0.5 - 0.35), abs(0.5 - 0.55), abs(0.5 - 0.65), abs(1.0 - 0.935)]
    assert adaptive_calibration_error(PROBS, TARGETS, 4) == pytest.approx(
        sum(gaps) / 4, abs=1e-9
    )


def test_calibration_metrics_report():
    metrics = calibration_metrics(PROBS, TARGETS)
    assert metrics["n"] == 8 and metrics["n_bins"] == 15
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert set(metrics) >= {"ECE", "adaptive_ECE", "NLL", "Brier"}


def _overconfident(n, seed):
    """Logits of a model 5 times too sure of itself: the classes are drawn
    from softmax(z), the model says softmax(5 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, size=(n, 4))
    targets = np.array([rng.choice(4, p=p) for p in softmax(z)])
    return 5.0 * z, targets


def test_temperature_scaling_fixes_an_overconfident_model():
    valid_logits, valid_targets = _overconfident(400, 0)
    test_logits, test_targets = _overconfident(400, 1)
    calibration = fit_calibration(valid_logits, valid_targets, "temperature")
    assert calibration["temperature"][0] == pytest.approx(5.0, rel=0.3)
    assert calibration["nll_after"] < calibration["nll_before"]
    raw = softmax(test_logits)
    calibrated = calibrated_probabilities(test_logits, calibration)
    before = expected_calibration_error(raw, test_targets)
    after = expected_calibration_error(calibrated, test_targets)
    assert after < before / 2
    np.testing.assert_array_equal(raw.argmax(1), calibrated.argmax(1))


def test_vector_scaling_and_bounds():
    logits, targets = _overconfident(300, 2)
    fit = fit_calibration(logits, targets, "vector")
    assert len(fit["temperature"]) == 4 and len(fit["bias"]) == 4
    assert all(
        TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1] for t in fit["temperature"]
    )
    assert fit["nll_after"] <= fit["nll_before"]
    # Separable logits push the temperature down: it stops at the bound.
    separable = np.array([[0.1, 0.0], [0.0, 0.1]] * 10)
    fit = fit_calibration(separable, [0, 1] * 10)
    assert TEMPERATURE_RANGE[0] <= fit["temperature"][0] < 0.05
    assert fit_calibration(separable, [0, 1] * 10, "none") is None
    with pytest.raises(ValueError, match="calibration must be one of"):
        fit_calibration(separable, [0, 1] * 10, "platt")


def test_apply_calibration_numpy_and_torch_agree():
    calibration = {"temperature": [2.0, 1.0, 0.5], "bias": [0.1, 0.0, -0.1]}
    logits = np.array([[1.0, 2.0, 3.0]])
    expected = logits / np.array([2.0, 1.0, 0.5]) + np.array([0.1, 0.0, -0.1])
    np.testing.assert_allclose(apply_calibration(logits, calibration), expected)
    as_torch = apply_calibration(torch.tensor(logits), calibration)
    np.testing.assert_allclose(as_torch.numpy(), expected)
    assert apply_calibration(logits, None) is logits
    np.testing.assert_allclose(softmax(probabilities_as_logits(PROBS)), PROBS)
