"""Selective prediction: accuracy when the model may abstain.

A model that says ``uncertain`` below a confidence threshold
(:func:`sser_lobes.inference.abstention.decide`) answers fewer utterances
(its coverage) more accurately. :func:`selective_curve` gives accuracy and UA
at each coverage, accepting the utterances in decreasing order of their top
probability; :func:`threshold_for_accuracy` the lowest threshold (the
largest coverage) at which the accepted utterances reach an accuracy, e.g.
the 90 % and 95 % the model card states; :func:`selective_report` both, and
the area under the risk-coverage curve (AURC: the mean error over the
coverages, lower is better).

Example
-------
>>> probs = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]
>>> found = threshold_for_accuracy(probs, [0, 0, 1, 1], 0.9)
>>> found["threshold"], found["coverage"]
(0.7, 0.75)
"""

import numpy as np

from sser_lobes.evaluation.metrics import classification_metrics

#: Target accuracies whose thresholds the reports give.
TARGET_ACCURACIES = (0.9, 0.95)
#: Points of a written curve (the exact thresholds are computed on all data).
CURVE_POINTS = 101


def _sorted(probs, targets):
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or len(probs) != len(targets) or not len(targets):
        raise ValueError("need probabilities [N, C] and N targets (N > 0)")
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    predictions = probs.argmax(axis=1)
    return confidence[order], predictions[order], targets[order]


def _accepted_counts(confidence):
    """For each utterance (sorted), how many are accepted at its confidence
    as a threshold (ties are accepted together)."""
    # the last index of each run of equal confidences, + 1
    n = len(confidence)
    counts = np.empty(n, dtype=np.int64)
    end = n
    for i in range(n - 1, -1, -1):
        if i < n - 1 and confidence[i] != confidence[i + 1]:
            end = i + 1
        counts[i] = end
    return counts


def threshold_for_accuracy(probs, targets, accuracy):
    """The lowest confidence threshold whose accepted utterances reach
    ``accuracy``, or None when no threshold does.

    Returns
    -------
    dict or None
        ``{"target_accuracy", "threshold", "coverage", "accuracy", "n"}``.
    """
    confidence, predictions, targets = _sorted(probs, targets)
    correct = np.cumsum(predictions == targets)
    counts = _accepted_counts(confidence)
    accuracies = correct[counts - 1] / counts
    good = np.flatnonzero(accuracies >= accuracy - 1e-12)
    if not len(good):
        return None
    i = int(good[-1])
    return {
        "target_accuracy": float(accuracy),
        "threshold": float(confidence[i]),
        "coverage": float(counts[i] / len(confidence)),
        "accuracy": float(accuracies[i]),
        "n": int(counts[i]),
    }


def selective_curve(probs, targets, labels, points=CURVE_POINTS):
    """Accuracy and UA of the accepted utterances at evenly spaced coverages.

    Returns
    -------
    list of dict
        ``{"threshold", "coverage", "n", "accuracy", "UA"}``, coverage
        increasing (the first point accepts at least one utterance, the last
        all of them).

    Example
    -------
    >>> curve = selective_curve([[0.9, 0.1], [0.6, 0.4]], [0, 1], ["a", "b"], 2)
    >>> [(p["coverage"], p["accuracy"]) for p in curve]
    [(0.5, 1.0), (1.0, 0.5)]
    """
    confidence, predictions, targets = _sorted(probs, targets)
    n = len(confidence)
    counts = _accepted_counts(confidence)
    wanted = sorted({max(1, int(round(c * n))) for c in np.linspace(0, 1, points)})
    curve = []
    seen = set()
    for k in wanted:
        i = int(np.searchsorted(counts, k, side="left"))
        size = int(counts[min(i, n - 1)])
        if size in seen:
            continue
        seen.add(size)
        metrics = classification_metrics(targets[:size], predictions[:size], labels)
        curve.append(
            {
                "threshold": float(confidence[size - 1]),
                "coverage": size / n,
                "n": size,
                "accuracy": metrics["WA"],
                "UA": metrics["UA"],
            }
        )
    return curve


def area_under_risk_coverage(probs, targets):
    """Mean error rate of the accepted utterances over all coverages (AURC).

    Example
    -------
    >>> area_under_risk_coverage([[0.9, 0.1], [0.6, 0.4]], [0, 1])  # (0 + 1/2) / 2
    0.25
    """
    confidence, predictions, targets = _sorted(probs, targets)
    errors = np.cumsum(predictions != targets)
    counts = np.arange(1, len(confidence) + 1)
    return float((errors / counts).mean())


def selective_report(
    probs, targets, labels, target_accuracies=TARGET_ACCURACIES, thresholds=None
):
    """The curve, the thresholds of the target accuracies, the AURC and, with
    ``thresholds`` (e.g. found on the validation set), what they give here.

    Returns
    -------
    dict
        ``curve``, ``thresholds`` (``{"0.90": threshold_for_accuracy or
        None, ...}``), ``AURC`` and ``at_given_thresholds``
        (``{"0.90": {"threshold", "coverage", "accuracy", "n"} or None}``).

    Example
    -------
    >>> report = selective_report([[0.9, 0.1], [0.6, 0.4]], [0, 1], ["a", "b"])
    >>> report["thresholds"]["0.95"]["coverage"]
    0.5
    """
    report = {
        "curve": selective_curve(probs, targets, labels),
        "thresholds": {
            f"{a:.2f}": threshold_for_accuracy(probs, targets, a)
            for a in target_accuracies
        },
        "AURC": area_under_risk_coverage(probs, targets),
    }
    if thresholds is not None:
        report["at_given_thresholds"] = {
            key: None
            if found is None
            else accepted_at(probs, targets, found["threshold"])
            for key, found in thresholds.items()
        }
    return report


def accepted_at(probs, targets, threshold):
    """Coverage and accuracy when the utterances below ``threshold`` abstain.

    Example
    -------
    >>> accepted_at([[0.9, 0.1], [0.6, 0.4]], [0, 0], 0.7)
    {'threshold': 0.7, 'coverage': 0.5, 'accuracy': 1.0, 'n': 1}
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    accepted = probs.max(axis=1) >= threshold
    n = int(accepted.sum())
    correct = probs.argmax(axis=1)[accepted] == targets[accepted]
    return {
        "threshold": float(threshold),
        "coverage": n / len(targets),
        "accuracy": float(correct.mean()) if n else None,
        "n": n,
    }
