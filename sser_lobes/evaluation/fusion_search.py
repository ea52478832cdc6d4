"""Late fusion of several models' class probabilities, with searched weights.

System B of the project brief (Diatlova et al., Odyssey 2024 SER challenge)
fused the predictions of several model variants with weights found by
constrained optimisation. This module does the same on the per-utterance
probability files that the recipes write (``<split>_predictions.csv``):

* :func:`load_member_predictions` reads one run folder's probabilities for a
  split (labelled or not; for the hidden MSP-Podcast Test3 set it falls back
  to the challenge file ``test3_probabilities.csv``).
* :func:`fuse_probabilities` combines members: a weighted arithmetic mean of
  the probabilities, optionally followed by a per-class additive bias on the
  log-probabilities (a prior / threshold correction).
* :func:`search_fusion_weights` finds the weights (non-negative, summing to
  one) and, optionally, the biases that maximise a whole-set metric
  (macro-F1 by default) on a labelled search set, e.g. MSP-Podcast
  Development or the IEMOCAP validation fold.

The fusion rule
---------------
For members ``m = 1..M`` with probabilities ``p[m, n, c]`` and weights
``w[m] >= 0`` (divided by their sum, so they sum to one)::

    fused[n, c] = sum_m w[m] * p[m, n, c]

and, with a bias vector ``b`` (one value per class)::

    biased[n, c] = softmax_c(log fused[n, c] + b[c])
                 = fused[n, c] * exp(b[c]) / sum_k fused[n, k] * exp(b[k])

A positive ``b[c]`` makes class ``c`` more likely to win the argmax; adding
the same constant to every ``b[c]`` changes nothing. The predicted class is
the argmax (first class on ties), as in
:class:`sser_lobes.evaluation.metrics.ClassificationStats`.

The search
----------
The metric is piecewise constant in the weights (it only depends on argmax
decisions), so gradients are useless; the search is a deterministic
derivative-free coordinate ascent on the simplex:

1. Start from the best of: each member alone (weight 1), then the uniform
   mixture (ties keep the earlier candidate, i.e. the simpler solution).
2. For each step size ``delta`` in ``1/4, 1/8, ..., 1/256``: evaluate every
   move of weight from member ``j`` to member ``i`` (all ordered pairs
   ``i != j``) by ``k * delta`` for ``k = 1..4`` (those below ``w[j]``) and
   by all of ``w[j]``; take the best move (ties: the first in ``(i, j, k)``
   order) if it *strictly* improves the score (by more than ``1e-12``), and
   repeat until no move improves; then halve ``delta``. The multiples are a
   short line search along each pair direction: the metric is flat between
   argmax changes, so single small steps alone stall on plateaus (at
   ``delta = 1/4`` the whole segment between two members is scanned on the
   1/4 grid).
3. With ``bias=True``, the weights are then kept fixed and the biases are
   searched the same way: starting from zero, moves of ``+-k * step``
   (``k = 1..4``) on one class at a time for ``step`` in ``1, 1/2, ...,
   1/16``, each bias kept in ``[-bias_limit, bias_limit]``.

Only strict improvements are accepted and a member alone is a starting
candidate, so the fused score on the search set is never below the best
member's score there. There is no randomness: the same inputs give the same
output. The score on the search set is optimistic (it was maximised there):
report the fused model on the held-out splits.

Metrics are computed with :func:`sser_lobes.evaluation.metrics.classification_metrics`
(``"macro_F1"``, ``"UA"``, ``"WA"`` or ``"micro_F1"``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from sser_lobes.evaluation.metrics import classification_metrics

__all__ = [
    "DEFAULT_BIAS_STEPS",
    "DEFAULT_WEIGHT_STEPS",
    "SEARCH_METRICS",
    "fuse_probabilities",
    "load_member_predictions",
    "search_fusion_weights",
]

#: metrics that the search can maximise (keys of classification_metrics)
SEARCH_METRICS = ("macro_F1", "UA", "WA", "micro_F1")
#: weight moved between two members per coordinate step: 1/4, 1/8 ... 1/256
DEFAULT_WEIGHT_STEPS = tuple(1.0 / 2**k for k in range(2, 9))
#: bias steps on the log-probabilities: 1, 1/2 ... 1/16
DEFAULT_BIAS_STEPS = tuple(1.0 / 2**k for k in range(0, 5))
#: an improvement must exceed this to be accepted (float noise is not one)
_IMPROVEMENT_TOL = 1e-12
#: tolerance on the row sums of the probabilities read from a file
_SUM_ATOL = 1e-2


# --------------------------------------------------------------------------
# Reading run folders
# --------------------------------------------------------------------------


def _read_rows(path):
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    rows = [row for row in rows if row]  # tolerate blank lines
    if not rows:
        raise ValueError(f"{path}: empty file (no header)")
    return rows[0], rows[1:]


def _parse_probabilities(path, rows, first, n_classes):
    """Float matrix from ``row[first:first + n_classes]`` of every row."""
    probs = np.empty((len(rows), n_classes), dtype=np.float64)
    for k, row in enumerate(rows):
        if len(row) != first + n_classes:
            raise ValueError(
                f"{path}: line {k + 2} has {len(row)} fields, expected "
                f"{first + n_classes}"
            )
        try:
            probs[k] = [float(x) for x in row[first:]]
        except ValueError:
            raise ValueError(
                f"{path}: line {k + 2} has a non-numeric probability"
            ) from None
    if probs.size:
        sums = probs.sum(axis=1)
        if (
            not np.all(np.isfinite(probs))
            or probs.min() < 0
            or np.abs(sums - 1).max() > _SUM_ATOL
        ):
            raise ValueError(
                f"{path}: probabilities must be finite, non-negative, with rows "
                "summing to 1"
            )
    return probs


def _check_unique_ids(path, ids):
    if len(set(ids)) != len(ids):
        seen, dups = set(), []
        for uid in ids:
            if uid in seen:
                dups.append(uid)
            seen.add(uid)
        raise ValueError(f"{path}: duplicated utterance id(s) {sorted(set(dups))[:5]}")
    if any(uid == "" for uid in ids):
        raise ValueError(f"{path}: empty utterance id")


def _read_predictions_csv(path):
    """ids, labels, probs, targets from a ClassificationStats predictions CSV."""
    header, rows = _read_rows(path)
    fixed = ["id", "target", "prediction", "score"]
    prob_cols = header[len(fixed) :]
    if (
        header[: len(fixed)] != fixed
        or not prob_cols
        or not all(col.startswith("prob_") and len(col) > 5 for col in prob_cols)
    ):
        raise ValueError(
            f"{path}: not a predictions file (expected columns id,target,"
            f"prediction,score,prob_<label>..., got {','.join(header)})"
        )
    labels = [col[len("prob_") :] for col in prob_cols]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: duplicated probability columns")
    probs = _parse_probabilities(path, rows, len(fixed), len(labels))
    ids = [row[0] for row in rows]
    _check_unique_ids(path, ids)
    raw_targets = [row[1] for row in rows]
    if all(t == "" for t in raw_targets):
        targets = None
    else:
        index = {label: i for i, label in enumerate(labels)}
        targets = np.empty(len(rows), dtype=np.int64)
        for k, t in enumerate(raw_targets):
            if t not in index:
                what = "no target" if t == "" else f"unknown target {t!r}"
                raise ValueError(
                    f"{path}: line {k + 2} ({ids[k]}) has {what} (labels: {labels}); "
                    "a split must be entirely labelled or entirely unlabelled"
                )
            targets[k] = index[t]
    return ids, labels, probs, targets


def _read_probabilities_csv(path):
    """ids, labels, probs from a challenge file ``FileName,<class>...``."""
    header, rows = _read_rows(path)
    if len(header) < 2 or header[0] != "FileName":
        raise ValueError(
            f"{path}: not a probabilities file (expected columns FileName,"
            f"<class>..., got {','.join(header)})"
        )
    labels = header[1:]
    if len(set(labels)) != len(labels) or "" in labels:
        raise ValueError(f"{path}: duplicated or empty class columns")
    probs = _parse_probabilities(path, rows, 1, len(labels))
    ids = [
        row[0][: -len(".wav")] if row[0].endswith(".wav") else row[0] for row in rows
    ]
    _check_unique_ids(path, ids)
    return ids, labels, probs, None


def load_member_predictions(run_folder, split):
    """Class probabilities of one run (one fusion member) on one split.

    Reads ``<run_folder>/<split>_predictions.csv`` (the format of
    :meth:`sser_lobes.evaluation.metrics.ClassificationStats.write_predictions`:
    ``id,target,prediction,score,prob_<label>...``). An unlabelled split
    (empty ``target`` column) is allowed. If that file does not exist, the
    challenge file ``<split>_probabilities.csv`` (``FileName,<class>...``,
    written by the MSP-Podcast recipe for the hidden Test3 set) is read
    instead; ids are the file names without ``.wav``.

    Parameters
    ----------
    run_folder : str or os.PathLike
        Output folder of one run.
    split : str
        Split name, e.g. ``"valid"``, ``"test"``, ``"development"``,
        ``"test1"``, ``"test3"``.

    Returns
    -------
    ids : list of str
        Utterance ids, sorted.
    labels : list of str
        Class names in column order.
    probs : numpy.ndarray
        ``float64 [N, C]`` probabilities, rows in ``ids`` order.
    targets : numpy.ndarray or None
        ``int64 [N]`` class indices, or None for an unlabelled split.

    Raises
    ------
    FileNotFoundError
        If the folder has neither file.
    ValueError
        If the file is malformed (the file is named).

    Example
    -------
    >>> import os, tempfile
    >>> from sser_lobes.evaluation.metrics import ClassificationStats
    >>> stats = ClassificationStats(["neu", "ang"])
    >>> stats.append(["u2", "u1"], [[0.9, 0.1], [0.3, 0.7]], [0, 1])
    >>> with tempfile.TemporaryDirectory() as run:
    ...     _ = stats.write_predictions(os.path.join(run, "test_predictions.csv"))
    ...     ids, labels, probs, targets = load_member_predictions(run, "test")
    >>> ids, labels, probs.tolist(), targets.tolist()
    (['u1', 'u2'], ['neu', 'ang'], [[0.3, 0.7], [0.9, 0.1]], [1, 0])
    """
    folder = Path(os.fspath(run_folder))
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder not found (or not a folder): {folder}")
    predictions = folder / f"{split}_predictions.csv"
    probabilities = folder / f"{split}_probabilities.csv"
    if predictions.is_file():
        ids, labels, probs, targets = _read_predictions_csv(predictions)
    elif probabilities.is_file():
        ids, labels, probs, targets = _read_probabilities_csv(probabilities)
    else:
        raise FileNotFoundError(
            f"{folder}: no {predictions.name} (nor {probabilities.name}) for "
            f"split {split!r}"
        )
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ids = [ids[i] for i in order]
    probs = probs[order]
    if targets is not None:
        targets = targets[order]
    return ids, labels, probs, targets


# --------------------------------------------------------------------------
# Fusion
# --------------------------------------------------------------------------


def _stack_members(member_probs):
    if isinstance(member_probs, np.ndarray) and member_probs.ndim == 3:
        member_probs = list(member_probs)
    if not isinstance(member_probs, (list, tuple)) or not member_probs:
        raise ValueError("member_probs must be a non-empty list of [N, C] arrays")
    arrays = []
    for m, probs in enumerate(member_probs):
        arr = np.asarray(probs, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(
                f"member {m}: probabilities must be [N, C], got shape {arr.shape}"
            )
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(
                f"member {m}: probabilities of shape {arr.shape} differ from "
                f"member 0's {arrays[0].shape} (same utterances and classes needed)"
            )
        if not np.all(np.isfinite(arr)) or (arr.size and arr.min() < 0):
            raise ValueError(f"member {m}: probabilities must be finite and >= 0")
        arrays.append(arr)
    return np.stack(arrays)


def _check_weights(weights, n_members):
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_members,):
        raise ValueError(
            f"weights must have one value per member ({n_members}), got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError(
            f"weights must be finite, non-negative and not all zero, got {w.tolist()}"
        )
    return w


def _check_bias(bias, n_classes):
    if bias is None:
        return None
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (n_classes,) or not np.all(np.isfinite(b)):
        raise ValueError(
            f"bias must be {n_classes} finite values (one per class), got {bias!r}"
        )
    return b


def _weighted_mean(stack, w):
    """``sum_m w[m] / sum(w) * stack[m]`` as one matrix-vector product.

    The search and :func:`fuse_probabilities` both call this function, so the
    probabilities scored during the search are bit-identical to the ones
    written out.
    """
    w = w / w.sum()
    n_members = stack.shape[0]
    return (w @ stack.reshape(n_members, -1)).reshape(stack.shape[1:])


def _apply_bias(fused, bias):
    """fused * exp(bias), renormalised per row (= softmax(log fused + bias)).

    An all-zero bias returns ``fused`` itself, so that "no bias" and "zero
    bias" give bit-identical predictions.
    """
    if not np.any(bias):
        return fused
    scaled = fused * np.exp(bias - bias.max())
    total = scaled.sum(axis=1, keepdims=True)
    np.divide(scaled, total, out=scaled, where=total > 0)
    return scaled


def fuse_probabilities(member_probs, weights, bias=None):
    """Weighted arithmetic mean of members' probabilities, optional class bias.

    ``fused = sum_m w[m] * probs[m] / sum(w)``; with ``bias``,
    ``softmax(log(fused) + bias)`` per row, i.e. ``fused[:, c] * exp(bias[c])``
    renormalised to sum to one (see the module docstring).

    Parameters
    ----------
    member_probs : list of numpy.ndarray
        One ``[N, C]`` probability array per member, same utterance order.
    weights : array-like of float, shape [M]
        Non-negative member weights (divided by their sum).
    bias : array-like of float, shape [C], optional
        Additive per-class bias on the fused log-probabilities.

    Returns
    -------
    numpy.ndarray
        ``float64 [N, C]`` fused probabilities, rows summing to one.

    Example
    -------
    >>> a = np.array([[0.8, 0.2], [0.4, 0.6]])
    >>> b = np.array([[0.2, 0.8], [0.2, 0.8]])
    >>> fuse_probabilities([a, b], [0.75, 0.25]).round(3).tolist()
    [[0.65, 0.35], [0.35, 0.65]]
    >>> fuse_probabilities([a, b], [3, 1], bias=[math.log(2), 0.0]).round(3).tolist()
    [[0.788, 0.212], [0.519, 0.481]]
    """
    stack = _stack_members(member_probs)
    w = _check_weights(weights, stack.shape[0])
    b = _check_bias(bias, stack.shape[2])
    fused = _weighted_mean(stack, w)
    return fused if b is None else _apply_bias(fused, b)


# --------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------


class _Scorer:
    """Metric of the argmax of fused probabilities, with a cache of points."""

    def __init__(self, stack, targets, labels, metric):
        self.stack = stack
        self.targets = targets
        self.labels = labels
        self.metric = metric
        self.cache = {}
        self.evaluations = 0

    def _metric(self, probs):
        self.evaluations += 1
        preds = probs.argmax(axis=1)
        return classification_metrics(self.targets, preds, self.labels)[self.metric]

    def weights(self, w, bias=None):
        key = (tuple(w.tolist()), None if bias is None else tuple(bias.tolist()))
        if key not in self.cache:
            fused = _weighted_mean(self.stack, w)
            if bias is not None:
                fused = _apply_bias(fused, bias)
            self.cache[key] = self._metric(fused)
        return self.cache[key]


def _ascend(score_of, start, start_score, moves_of, steps, max_passes):
    """Best-improvement coordinate ascent; returns (point, score, passes)."""
    point, best = start, start_score
    passes = 0
    for step in steps:
        while True:
            if passes >= max_passes:
                return point, best, passes
            passes += 1
            best_move, best_move_score = None, best
            for candidate in moves_of(point, step):
                score = score_of(candidate)
                if score > best_move_score + _IMPROVEMENT_TOL:
                    best_move, best_move_score = candidate, score
            if best_move is None:
                break
            point, best = best_move, best_move_score
    return point, best, passes


def _check_steps(steps, name):
    steps = tuple(float(s) for s in steps)
    if not steps or not all(math.isfinite(s) and s > 0 for s in steps):
        raise ValueError(f"{name} must be positive numbers, got {steps!r}")
    return steps


def search_fusion_weights(
    member_probs,
    targets,
    labels,
    metric="macro_F1",
    bias=False,
    weight_steps=DEFAULT_WEIGHT_STEPS,
    bias_steps=DEFAULT_BIAS_STEPS,
    bias_limit=4.0,
    line_multiples=4,
    max_passes=10000,
):
    """Fusion weights (and class biases) maximising a metric on a labelled set.

    Deterministic coordinate ascent on the simplex (see the module docstring):
    start from the best single member or the uniform mixture, move weight
    between pairs of members by multiples of steps 1/4 ... 1/256, accept only
    strict
    improvements; with ``bias=True``, then search per-class biases on the
    fused log-probabilities on a grid of steps 1 ... 1/16 within
    ``[-bias_limit, bias_limit]``. The returned score is never below the best
    member's score.

    Parameters
    ----------
    member_probs : list of numpy.ndarray
        One ``[N, C]`` probability array per member, rows in the same
        utterance order.
    targets : array-like of int, shape [N]
        True class indices of the search set.
    labels : list of str
        Class names in index order.
    metric : str
        One of ``"macro_F1"`` (default), ``"UA"``, ``"WA"``, ``"micro_F1"``.
    bias : bool
        Also search the per-class biases (after the weights).
    weight_steps, bias_steps : sequence of float
        Step sizes, used in the given order (each until no improvement).
    bias_limit : float
        Bound on the absolute value of each bias.
    line_multiples : int
        Moves of ``k * step`` for ``k = 1..line_multiples`` are tried along
        each coordinate (a short line search, see the module docstring).
    max_passes : int
        Safety bound on the number of improving passes per stage.

    Returns
    -------
    dict
        ``"weights"``: list of M floats >= 0 summing to one (up to float
        rounding); ``"bias"``: list of C floats or None; ``"score"``: the
        metric of the fusion on the search set; ``"member_scores"``: each
        member's metric alone; ``"metric"``; ``"start"`` (``"member <m>"`` or
        ``"uniform"``); ``"weight_score"`` (the score before the bias stage);
        ``"n_evaluations"``.

    Example
    -------
    >>> # member a is right on utterances 0-1, b on 2-3; 50/50 on all four
    >>> a = np.array([[0.9, 0.1], [0.1, 0.9], [0.45, 0.55], [0.55, 0.45]])
    >>> b = np.array([[0.45, 0.55], [0.55, 0.45], [0.9, 0.1], [0.1, 0.9]])
    >>> result = search_fusion_weights([a, b], [0, 1, 0, 1], ["x", "y"])
    >>> result["member_scores"], result["score"], result["weights"]
    ([0.5, 0.5], 1.0, [0.5, 0.5])
    """
    if metric not in SEARCH_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {SEARCH_METRICS}")
    stack = _stack_members(member_probs)
    n_members, n_items, n_classes = stack.shape
    labels = list(labels)
    if len(labels) != n_classes:
        raise ValueError(
            f"{len(labels)} labels for probabilities with {n_classes} classes"
        )
    targets = np.asarray(targets)
    if targets.shape != (n_items,):
        raise ValueError(f"{n_items} utterances but targets of shape {targets.shape}")
    if n_items == 0:
        raise ValueError("cannot search fusion weights on an empty set")
    weight_steps = _check_steps(weight_steps, "weight_steps")
    bias_steps = _check_steps(bias_steps, "bias_steps")
    if not (math.isfinite(bias_limit) and bias_limit > 0):
        raise ValueError(f"bias_limit must be a positive number, got {bias_limit!r}")
    if isinstance(line_multiples, bool) or not isinstance(line_multiples, int):
        raise TypeError(f"line_multiples must be an int, got {line_multiples!r}")
    if line_multiples < 1:
        raise ValueError(f"line_multiples must be >= 1, got {line_multiples}")
    multiples = range(1, line_multiples + 1)
    scorer = _Scorer(stack, targets, labels, metric)

    # 1. Starting candidates: each member alone, then the uniform mixture.
    candidates = [(f"member {m}", np.eye(n_members)[m]) for m in range(n_members)]
    if n_members > 1:
        candidates.append(("uniform", np.full(n_members, 1.0 / n_members)))
    scores = [scorer.weights(w) for _, w in candidates]
    member_scores = scores[:n_members]
    first_best = int(np.argmax(scores))  # first maximum: the simpler candidate
    start, w0 = candidates[first_best]

    # 2. Pairwise mass moves with halving steps.
    def weight_moves(w, step):
        for i in range(n_members):
            for j in range(n_members):
                if i == j or w[j] <= 0:
                    continue
                amounts = [k * step for k in multiples if k * step < w[j]]
                for amount in [*amounts, w[j]]:
                    moved = w.copy()
                    moved[i] += amount
                    moved[j] = 0.0 if amount == w[j] else w[j] - amount
                    yield moved

    w, weight_score, _ = _ascend(
        scorer.weights, w0, scores[first_best], weight_moves, weight_steps, max_passes
    )

    # 3. Per-class biases on the fused log-probabilities, weights fixed.
    best_bias, score = None, weight_score
    if bias:

        def bias_moves(b, step):
            for c in range(n_classes):
                for sign in (1.0, -1.0):
                    for k in multiples:
                        moved = b.copy()
                        moved[c] += sign * k * step
                        if abs(moved[c]) <= bias_limit + 1e-12:
                            yield moved

        best_bias, score, _ = _ascend(
            lambda b: scorer.weights(w, b),
            np.zeros(n_classes),
            weight_score,
            bias_moves,
            bias_steps,
            max_passes,
        )
    return {
        "weights": [float(x) for x in w],
        "bias": None if best_bias is None else [float(x) for x in best_bias],
        "score": float(score),
        "member_scores": [float(s) for s in member_scores],
        "metric": metric,
        "start": start,
        "weight_score": float(weight_score),
        "n_evaluations": scorer.evaluations,
    }
