"""Calibration: how far a model's probabilities can be trusted, and the fix.

A classifier is calibrated when, of the utterances it gives a top
probability of 0.8, 80 % are right. Fine-tuned SSL models are usually
over-confident. This module measures it on a whole evaluation set and fits
the post-hoc fix of Guo et al. (2017, "On calibration of modern neural
networks"):

* :func:`calibration_metrics`: expected calibration error (ECE, 15 equal-width
  bins of the top-label confidence, l1; computed by torchmetrics'
  ``multiclass_calibration_error``), its adaptive version (equal-mass bins,
  :func:`adaptive_calibration_error`), the negative log-likelihood
  (:func:`negative_log_likelihood`) and the Brier score
  (:func:`brier_score`: the squared error summed over the classes, averaged
  over utterances, as ``sklearn.metrics.brier_score_loss`` for several
  classes); :func:`reliability_bins` for the reliability diagram;
* :func:`fit_calibration`: temperature scaling (one scalar ``T``: logits /
  ``T``; never changes the predicted class) or vector scaling (one
  temperature and one bias per class: ``logits / T_c + b_c``), fitted by
  minimising the negative log-likelihood of validation logits (L-BFGS on
  ``log T``, kept inside :data:`TEMPERATURE_RANGE`; vector scaling has
  ``2 C`` parameters and overfits a small validation set: temperature
  scaling is the default);
* :func:`apply_calibration` / :func:`calibrated_probabilities`: the fitted
  calibration on new logits, as the recognizer applies it.

A calibration is a plain dict, the ``calibration`` entry of a model's
description (``sser_model.json``)::

    {"method": "temperature", "temperature": [1.7], "bias": null,
     "fitted_on": "valid", "n": 120, "nll_before": 0.91, "nll_after": 0.62}

Example
-------
>>> import numpy as np
>>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
>>> targets = np.array([0, 1, 1, 1])  # over-confident: 3 of 4 right at 0.98
>>> calibration = fit_calibration(logits, targets)
>>> calibration["temperature"][0] > 1  # the fit softens the probabilities
True
>>> before = softmax(logits)
>>> after = calibrated_probabilities(logits, calibration)
>>> bool((before.argmax(1) == after.argmax(1)).all())
True
"""

import numpy as np

#: The calibration methods of :func:`fit_calibration`.
CALIBRATION_METHODS = ("temperature", "vector", "none")
#: Bins of the (adaptive) expected calibration error, as in Guo et al.
N_BINS = 15
#: Temperatures are kept in this range (a description outside it is refused).
TEMPERATURE_RANGE = (0.01, 100.0)
#: Biases of vector scaling are kept in [-BIAS_LIMIT, BIAS_LIMIT].
BIAS_LIMIT = 50.0
#: Probabilities are clipped to this before a logarithm.
EPSILON = 1e-12


def _as_probs(probs, targets):
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != targets.shape[0] or not len(targets):
        raise ValueError(
            f"need probabilities [N, C] and N targets, got {probs.shape} and "
            f"{targets.shape}"
        )
    if targets.min() < 0 or targets.max() >= probs.shape[1]:
        raise ValueError(f"targets must be class indices in 0..{probs.shape[1] - 1}")
    return probs, targets


def softmax(logits):
    """Row-wise softmax of a numpy array (float64).

    Example
    -------
    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(2).tolist()
    [[0.25, 0.75]]
    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probs, targets):
    """Mean ``-log p(true class)`` (probabilities clipped at 1e-12).

    Example
    -------
    >>> round(negative_log_likelihood([[0.5, 0.5], [0.9, 0.1]], [0, 0]), 4)
    0.3993
    """
    probs, targets = _as_probs(probs, targets)
    picked = probs[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(picked, EPSILON, 1.0)).mean())


def brier_score(probs, targets):
    """Mean over utterances of ``sum_c (p_c - 1[c = y])^2``.

    Example
    -------
    >>> brier_score([[0.5, 0.5], [0.9, 0.1]], [0, 0])  # (0.5 + 0.02) / 2
    0.26
    """
    probs, targets = _as_probs(probs, targets)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(targets)), targets] = 1.0
    return float(np.round(((probs - onehot) ** 2).sum(axis=1).mean(), 12))


def expected_calibration_error(probs, targets, n_bins=N_BINS):
    """ECE with ``n_bins`` equal-width bins of the top-label confidence (l1),
    computed by torchmetrics.

    Example
    -------
    >>> round(expected_calibration_error([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]],
    ...                                  [0, 0, 1]), 4)
    0.6
    """
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs, targets = _as_probs(probs, targets)
    value = multiclass_calibration_error(
        torch.from_numpy(probs),
        torch.from_numpy(targets),
        num_classes=probs.shape[1],
        n_bins=n_bins,
        norm="l1",
    )
    return float(value)


def adaptive_calibration_error(probs, targets, n_bins=N_BINS):
    """ECE with equal-mass bins: the utterances sorted by their top-label
    confidence and cut into ``n_bins`` groups of (nearly) equal size, so that
    every bin holds data (Nixon et al. 2019).

    Example
    -------
    >>> # bins {0.6 right, 0.7 wrong} and {0.8 right, 0.9 right}
    >>> probs = [[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]]
    >>> round(adaptive_calibration_error(probs, [0, 1, 0, 0], n_bins=2), 4)
    0.15
    """
    probs, targets = _as_probs(probs, targets)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(np.float64)
    order = np.argsort(confidence, kind="stable")
    total = 0.0
    for members in np.array_split(order, min(n_bins, len(order))):
        gap = abs(correct[members].mean() - confidence[members].mean())
        total += len(members) / len(order) * gap
    return float(total)


def reliability_bins(probs, targets, n_bins=N_BINS):
    """Per equal-width confidence bin: its bounds, count, accuracy and mean
    confidence (None for an empty bin), for the reliability diagram.

    Example
    -------
    >>> bins = reliability_bins([[0.9, 0.1], [0.2, 0.8]], [0, 0], n_bins=2)
    >>> [(b["count"], b["accuracy"]) for b in bins]
    [(0, None), (2, 0.5)]
    """
    probs, targets = _as_probs(probs, targets)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins [lower, upper): a confidence on an edge is in the bin above it (1.0
    # in the last bin), compared in float32 as torchmetrics compares them, so
    # that the diagram's bins are those of the ECE.
    index = np.searchsorted(
        edges.astype(np.float32), confidence.astype(np.float32), side="right"
    )
    index = np.clip(index - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "accuracy": float(correct[members].mean()) if count else None,
                "confidence": float(confidence[members].mean()) if count else None,
            }
        )
    return bins


def calibration_metrics(probs, targets, n_bins=N_BINS):
    """ECE, adaptive ECE, NLL and Brier score of a whole set.

    Returns
    -------
    dict
        ``ECE``, ``adaptive_ECE``, ``NLL``, ``Brier``, ``accuracy``,
        ``mean_confidence`` (floats), ``n_bins`` and ``n``.

    Example
    -------
    >>> # bins [0.8, 0.9) and [0.9, 1.0): (|1 - 0.9| + |0 - 0.8|) / 2
    >>> m = calibration_metrics([[0.9, 0.1], [0.8, 0.2]], [0, 1], n_bins=10)
    >>> round(m["ECE"], 4), m["accuracy"], m["n"]
    (0.45, 0.5, 2)
    """
    probs, targets = _as_probs(probs, targets)
    return {
        "ECE": expected_calibration_error(probs, targets, n_bins),
        "adaptive_ECE": adaptive_calibration_error(probs, targets, n_bins),
        "NLL": negative_log_likelihood(probs, targets),
        "Brier": brier_score(probs, targets),
        "accuracy": float((probs.argmax(axis=1) == targets).mean()),
        "mean_confidence": float(probs.max(axis=1).mean()),
        "n_bins": int(n_bins),
        "n": int(len(targets)),
    }


def _bounded(raw, limit):
    """``limit * tanh(raw / limit)``: the optimiser's free parameter mapped
    into ``(-limit, limit)`` (identity near 0)."""
    return limit * (raw / limit).tanh()


def _torch_calibrate(logits, raw_log_t, raw_bias):
    log_limit = float(np.log(TEMPERATURE_RANGE[1]))
    out = logits / _bounded(raw_log_t, log_limit).exp()
    return out if raw_bias is None else out + _bounded(raw_bias, BIAS_LIMIT)


def fit_calibration(logits, targets, method="temperature", max_iter=100):
    """Fit temperature or vector scaling by minimising the NLL of ``logits``.

    Arguments
    ---------
    logits : array-like, shape [N, C]
        Validation logits (raw model outputs).
    targets : array-like of int, shape [N]
        Their classes.
    method : str
        ``"temperature"`` (one ``T``), ``"vector"`` (one ``T`` and one bias
        per class) or ``"none"`` (returns None).
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    dict or None
        ``{"method", "temperature": [T...], "bias": [b...] or None, "n",
        "nll_before", "nll_after"}``.

    Example
    -------
    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    >>> fit = fit_calibration(logits, [0, 1, 1, 0], method="vector")
    >>> len(fit["temperature"]), len(fit["bias"]), fit["nll_after"] <= fit["nll_before"]
    (2, 2, True)
    """
    import torch

    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got "
            f"{method!r}"
        )
    if method == "none":
        return None
    logits = np.asarray(logits, dtype=np.float64)
    _, targets = _as_probs(logits, targets)
    x = torch.from_numpy(logits)
    y = torch.from_numpy(targets)
    n_temperatures = 1 if method == "temperature" else logits.shape[1]
    log_t = torch.zeros(n_temperatures, dtype=torch.float64, requires_grad=True)
    params = [log_t]
    bias = None
    if method == "vector":
        bias = torch.zeros(logits.shape[1], dtype=torch.float64, requires_grad=True)
        params.append(bias)
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(_torch_calibrate(x, log_t, bias), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    log_limit = float(np.log(TEMPERATURE_RANGE[1]))
    with torch.no_grad():
        temperature = _bounded(log_t, log_limit).exp()
        temperature = temperature.clamp(*TEMPERATURE_RANGE)
        fitted_bias = None if bias is None else _bounded(bias, BIAS_LIMIT)
    calibration = {
        "method": method,
        "temperature": [float(t) for t in temperature],
        "bias": None if fitted_bias is None else [float(b) for b in fitted_bias],
        "n": int(len(targets)),
    }
    before = negative_log_likelihood(softmax(logits), targets)
    after = negative_log_likelihood(
        calibrated_probabilities(logits, calibration), targets
    )
    if after > before:  # never worse than no calibration on its own data
        calibration["temperature"] = [1.0] * n_temperatures
        calibration["bias"] = None if bias is None else [0.0] * logits.shape[1]
        after = before
    calibration["nll_before"] = before
    calibration["nll_after"] = after
    return calibration


def apply_calibration(logits, calibration):
    """Calibrated logits ``logits / T + b`` (numpy array or torch tensor);
    ``calibration`` None leaves them as they are.

    Example
    -------
    >>> apply_calibration(np.array([[2.0, 4.0]]), {"temperature": [2.0],
    ...                                            "bias": None}).tolist()
    [[1.0, 2.0]]
    """
    if not calibration:
        return logits
    temperature = calibration["temperature"]
    bias = calibration.get("bias")
    if hasattr(logits, "new_tensor"):  # a torch tensor, on its device
        out = logits / logits.new_tensor(temperature)
        return out if bias is None else out + logits.new_tensor(bias)
    logits = np.asarray(logits, dtype=np.float64)
    out = logits / np.asarray(temperature, dtype=np.float64)
    return out if bias is None else out + np.asarray(bias, dtype=np.float64)


def calibrated_probabilities(logits, calibration):
    """``softmax(apply_calibration(logits, calibration))`` of a numpy array.

    Example
    -------
    >>> calibrated_probabilities(np.array([[0.0, 2.0]]),
    ...     {"temperature": [2.0], "bias": None}).round(3).tolist()
    [[0.269, 0.731]]
    """
    return softmax(apply_calibration(np.asarray(logits, dtype=np.float64), calibration))


def probabilities_as_logits(probs):
    """``log p`` (clipped at 1e-12): logits of given probabilities, e.g. of a
    fusion's output, for :func:`fit_calibration`.

    Example
    -------
    >>> softmax(probabilities_as_logits([[0.25, 0.75]])).round(2).tolist()
    [[0.25, 0.75]]
    """
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPSILON, 1.0))
