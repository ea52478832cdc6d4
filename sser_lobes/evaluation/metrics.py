"""Classification metrics for SER, on a whole evaluation set.

The metrics reported in the SER literature are computed over the *whole*
evaluation set, never averaged over batches:

* **WA** (weighted accuracy): plain accuracy, ``correct / n``.
* **UA** (unweighted accuracy): mean per-class recall (a.k.a. balanced accuracy).
* **macro-F1**: unweighted mean of the per-class F1 scores.
* **micro-F1**: F1 of the pooled counts; for single-label multi-class
  classification it equals WA.

Averaging convention (the scikit-learn default):

* UA averages recall over the classes **present in the targets** (recall of a
  class that never occurs is undefined, so it is excluded, as in
  ``sklearn.metrics.balanced_accuracy_score``).
* macro-F1 averages F1 over the classes that appear in the targets **or** in
  the predictions (as ``sklearn.metrics.f1_score(average="macro")`` without
  ``labels``): a class that is predicted but never true counts with F1 = 0.
  Classes that appear in neither are excluded.
* Any 0/0 (precision of a never-predicted class, recall of an absent class,
  F1 when precision and recall are both 0) is 0.0, without a warning.

:class:`ClassificationStats` accumulates utterance ids, targets and class
probabilities batch after batch and summarises at the end.

Continuous targets (arousal, valence, dominance on MSP-Podcast) have their
metrics in :mod:`sser_lobes.evaluation.regression_metrics`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ClassificationStats",
    "write_csv",
    "classification_metrics",
    "confusion_matrix",
]


def _to_numpy(x, name):
    """Convert a torch tensor (any device / dtype), list or array to numpy."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, no hard import
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()  # bfloat16 / float16 cannot go to numpy directly
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} cannot be converted to an array: {err}") from None


def _as_index_vector(x, name, n_classes=None):
    """Return ``x`` as a 1-D int64 vector of class indices, with checks."""
    arr = _to_numpy(x, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of class indices (or [N, 1]), "
            f"got shape {tuple(arr.shape)}"
        )
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iuf":  # bool, str, object... are not indices
        raise TypeError(
            f"{name} must contain integer class indices, got dtype {arr.dtype}"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must contain integer class indices, got floats")
    arr = arr.astype(np.int64)
    if n_classes is not None and arr.size:
        bad = (arr < 0) | (arr >= n_classes)
        if bad.any():
            raise ValueError(
                f"{name} contains class index {int(arr[bad][0])}, outside "
                f"[0, {n_classes - 1}] for {n_classes} classes"
            )
    return arr


def _check_n_classes(n_classes):
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {n_classes!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return int(n_classes)


def _check_labels(labels):
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(
            f"labels must be a list of class names in index order, got {labels!r}"
        )
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels must contain at least one class name")
    if len(set(labels)) != len(labels):
        dups = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"labels must be unique, duplicated: {dups}")
    return labels


def _safe_div(num, den):
    """Element-wise ``num / den`` with 0/0 (or x/0) -> 0.0 and no warning."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _as_ids(ids):
    """Return ``ids`` as a list of str, refusing a bare string."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a list of utterance ids, got string {ids!r}")
    ids = list(ids)
    for uid in ids:
        if not isinstance(uid, str):
            raise TypeError(f"utterance ids must be str, got {uid!r}")
    return ids


def _check_new_ids(ids, known):
    """Raise if ``ids`` repeat each other or an id already in ``known``."""
    seen = set()
    dups = set()
    for uid in ids:
        if uid in known or uid in seen:
            dups.add(uid)
        seen.add(uid)
    if dups:
        raise ValueError(
            f"utterance id(s) appended more than once: {sorted(dups)[:5]} "
            "(each utterance must be evaluated exactly once; check the "
            "data loader / sampler)"
        )


def confusion_matrix(targets, predictions, n_classes):
    """Confusion matrix of integer class indices.

    Parameters
    ----------
    targets : array-like of int, shape [N] (or [N, 1])
        True class indices (list, numpy array or torch tensor).
    predictions : array-like of int, shape [N] (or [N, 1])
        Predicted class indices.
    n_classes : int
        Number of classes; every index must be in ``[0, n_classes)``.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``[n_classes, n_classes]``; rows are true
        classes, columns are predicted classes.

    Example
    -------
    >>> confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], n_classes=3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 1]])
    """
    n_classes = _check_n_classes(n_classes)
    t = _as_index_vector(targets, "targets", n_classes)
    p = _as_index_vector(predictions, "predictions", n_classes)
    if t.shape != p.shape:
        raise ValueError(
            f"targets and predictions differ in length: {t.size} vs {p.size}"
        )
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def classification_metrics(targets, predictions, labels):
    """WA, UA, macro-F1, micro-F1 and per-class scores over a whole set.

    See the module docstring for the averaging convention: UA averages recall
    over the classes present in ``targets``; macro-F1 averages F1 over the
    classes present in ``targets`` or ``predictions``; 0/0 gives 0.0.

    Parameters
    ----------
    targets : array-like of int, shape [N]
        True class indices.
    predictions : array-like of int, shape [N]
        Predicted class indices.
    labels : list of str
        Class names in index order (``labels[i]`` is class ``i``).

    Returns
    -------
    dict
        ``{"WA", "UA", "macro_F1", "micro_F1"}`` as Python floats in [0, 1];
        ``"per_class"``: ``{label: {"precision", "recall", "F1", "support"}}``
        (support is an int, every label is listed);
        ``"confusion_matrix"``: list of lists (rows true, columns predicted);
        ``"labels"``: list of names; ``"n"``: number of utterances;
        ``"absent_classes"``: the labels without a target utterance (a
        split that lacks a class) and ``"UA_classes"``: the labels UA
        averages over, so that a metrics file says when UA covers fewer
        classes than the model has.

    Example
    -------
    >>> m = classification_metrics([0, 0, 0, 1], [0, 0, 1, 1], ["neu", "ang"])
    >>> m["WA"], round(m["UA"], 4)  # UA = (2/3 + 1/1) / 2
    (0.75, 0.8333)
    >>> {k: round(v, 4) for k, v in m["per_class"]["ang"].items()}
    {'precision': 0.5, 'recall': 1.0, 'F1': 0.6667, 'support': 1}
    >>> m = classification_metrics([0, 0], [0, 1], ["neu", "ang"])
    >>> m["UA"], m["absent_classes"], m["UA_classes"]
    (0.5, ['ang'], ['neu'])
    """
    labels = _check_labels(labels)
    cm = confusion_matrix(targets, predictions, len(labels))
    n = int(cm.sum())
    if n == 0:
        raise ValueError("cannot compute metrics on an empty set (no utterances)")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # true counts per class
    predicted = cm.sum(axis=0)  # predicted counts per class
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)

    in_targets = support > 0
    in_either = in_targets | (predicted > 0)
    fp = predicted - tp
    fn = support - tp
    micro_f1 = _safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())

    return {
        "WA": float(tp.sum() / n),
        "UA": float(recall[in_targets].mean()),
        "macro_F1": float(f1[in_either].mean()),
        "micro_F1": float(micro_f1),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "F1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
        "n": n,
        "absent_classes": [label for i, label in enumerate(labels) if not support[i]],
        "UA_classes": [label for i, label in enumerate(labels) if support[i]],
    }


class ClassificationStats:
    """Accumulates per-utterance ids, target indices and class probabilities.

    Append every batch of an evaluation set, then call :meth:`summarize` once
    for the metrics of the whole set (see :func:`classification_metrics`),
    and/or :meth:`write_predictions` for a per-utterance CSV. The predicted
    class is the argmax of the probabilities (first class on ties).

    Parameters
    ----------
    labels : list of str
        Class names in index order.

    Example
    -------
    >>> import torch
    >>> stats = ClassificationStats(["neu", "ang"])
    >>> stats.append(["u2", "u1"], torch.tensor([[0.9, 0.1], [0.3, 0.7]]),
    ...              torch.tensor([[0], [0]]))
    >>> stats.append(["u3"], torch.tensor([[0.2, 0.8]]), torch.tensor([1]))
    >>> len(stats)
    3
    >>> m = stats.summarize()
    >>> round(m["WA"], 4), m["UA"]
    (0.6667, 0.75)
    >>> [(p["id"], p["prediction"]) for p in stats.predictions()]
    [('u1', 'ang'), ('u2', 'neu'), ('u3', 'ang')]
    """

    #: tolerance of the probability checks (values in [0, 1], rows sum to 1)
    prob_atol = 1e-3
    sum_atol = 1e-2

    def __init__(self, labels):
        self.labels = _check_labels(labels)
        self._ids = []
        self._id_set = set()
        self._probs = []  # list of float64 arrays [B, C]
        self._targets = []  # list of int64 arrays [B], -1 = missing

    def __len__(self):
        return len(self._ids)

    def append(self, ids, probabilities, targets=None):
        """Add one batch.

        Parameters
        ----------
        ids : list of str
            Utterance ids of the batch; must be unique across all appends.
        probabilities : torch.Tensor or numpy.ndarray, shape [B, C]
            Class probabilities (any float dtype, any device), rows summing to
            1. Log-probabilities or logits are rejected: apply ``.exp()`` or
            ``.softmax(-1)`` first.
        targets : torch.Tensor or array-like of int, shape [B] or [B, 1], optional
            True class indices, or None for an unlabelled set (e.g. a hidden
            test set): such utterances can be written but not summarised.

        Example
        -------
        >>> import numpy as np
        >>> stats = ClassificationStats(["a", "b", "c"])
        >>> stats.append(["x"], np.array([[0.2, 0.5, 0.3]]))  # unlabelled
        >>> stats.predictions()[0]["prediction"]
        'b'
        """
        ids = _as_ids(ids)
        probs = _to_numpy(probabilities, "probabilities")
        if probs.dtype.kind not in "iuf":
            raise TypeError(f"probabilities must be numeric, got dtype {probs.dtype}")
        probs = probs.astype(np.float64)
        n_classes = len(self.labels)
        if probs.ndim != 2 or probs.shape[1] != n_classes:
            raise ValueError(
                f"probabilities must have shape [batch, {n_classes}] for "
                f"{n_classes} labels, got {tuple(probs.shape)}"
            )
        if probs.shape[0] != len(ids):
            raise ValueError(
                f"{len(ids)} ids but {probs.shape[0]} rows of probabilities"
            )
        self._check_probabilities(probs)
        if targets is None:
            tgt = np.full(len(ids), -1, dtype=np.int64)
        else:
            tgt = _as_index_vector(targets, "targets", n_classes)
            if tgt.size != len(ids):
                raise ValueError(f"{len(ids)} ids but {tgt.size} targets")

        _check_new_ids(ids, self._id_set)
        self._ids.extend(ids)
        self._id_set.update(ids)
        self._probs.append(probs)
        self._targets.append(tgt)

    def _check_probabilities(self, probs):
        if probs.size == 0:
            return
        if not np.all(np.isfinite(probs)):
            raise ValueError("probabilities contain NaN or infinite values")
        low, high = probs.min(), probs.max()
        sums = probs.sum(axis=1)
        if (
            low < -self.prob_atol
            or high > 1 + self.prob_atol
            or np.abs(sums - 1).max() > self.sum_atol
        ):
            raise ValueError(
                "probabilities must be in [0, 1] with rows summing to 1 (got "
                f"min {low:.4g}, max {high:.4g}, row sums in "
                f"[{sums.min():.4g}, {sums.max():.4g}]); for log-probabilities "
                "pass .exp(), for logits pass .softmax(-1)"
            )

    def _gather(self):
        """Return ids, probabilities [N, C] and targets [N], sorted by id."""
        if not self._ids:
            return [], np.zeros((0, len(self.labels))), np.zeros(0, dtype=np.int64)
        order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
        probs = np.concatenate(self._probs)[order]
        targets = np.concatenate(self._targets)[order]
        return [self._ids[i] for i in order], probs, targets

    def summarize(self):
        """Metrics over everything appended (see :func:`classification_metrics`).

        Returns
        -------
        dict
            Output of :func:`classification_metrics`.

        Raises
        ------
        ValueError
            If nothing was appended or some utterances have no target.

        Example
        -------
        >>> stats = ClassificationStats(["a", "b"])
        >>> stats.append(["x", "y"], [[1.0, 0.0], [0.4, 0.6]], [0, 0])
        >>> stats.summarize()["WA"]
        0.5
        """
        if not self._ids:
            raise ValueError("ClassificationStats is empty: nothing was appended")
        ids, probs, targets = self._gather()
        missing = targets < 0
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} of {len(ids)} utterances have no target "
                f"(e.g. {ids[int(np.argmax(missing))]!r}); metrics need labels, "
                "use write_predictions() for an unlabelled set"
            )
        return classification_metrics(targets, probs.argmax(axis=1), self.labels)

    def predictions(self):
        """Per-utterance predictions, sorted by id (JSON-friendly).

        Returns
        -------
        list of dict
            One dict per utterance with keys ``id``, ``target`` (label name
            or None), ``prediction`` (label name), ``score`` (max probability)
            and ``prob_<label>`` for every class; floats rounded to 6
            decimals, as in :meth:`write_predictions`.

        Example
        -------
        >>> stats = ClassificationStats(["a", "b"])
        >>> stats.append(["x"], [[0.25, 0.75]], [0])
        >>> stats.predictions()
        [{'id': 'x', 'target': 'a', 'prediction': 'b', 'score': 0.75, 'prob_a': 0.25, 'prob_b': 0.75}]
        """  # noqa: E501
        ids, probs, targets = self._gather()
        preds = probs.argmax(axis=1)
        rows = []
        for uid, p, t, k in zip(ids, probs, targets, preds):
            row = {
                "id": uid,
                "target": self.labels[t] if t >= 0 else None,
                "prediction": self.labels[k],
                "score": round(float(p[k]), 6),
            }
            for label, value in zip(self.labels, p):
                row[f"prob_{label}"] = round(float(value), 6)
            rows.append(row)
        return rows

    def write_predictions(self, path):
        """Write per-utterance predictions to a CSV file, sorted by id.

        Columns: ``id, target, prediction, score, prob_<label>...``;
        ``target`` is the label name or empty for unlabelled utterances,
        ``score`` the max probability; floats with 6 decimals. Parent
        folders are created.

        Parameters
        ----------
        path : str or os.PathLike
            Output CSV file.

        Returns
        -------
        pathlib.Path
            The written file.

        Example
        -------
        >>> import os, tempfile
        >>> stats = ClassificationStats(["a", "b"])
        >>> stats.append(["x"], [[0.25, 0.75]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = stats.write_predictions(os.path.join(tmp, "pred.csv"))
        ...     print(out.read_text().strip())
        id,target,prediction,score,prob_a,prob_b
        x,,b,0.750000,0.250000,0.750000
        """
        header = ["id", "target", "prediction", "score"]
        header += [f"prob_{label}" for label in self.labels]
        rows = [[row[key] for key in header] for row in self.predictions()]
        return write_csv(path, header, rows)

    def write_submission(self, folder, split):
        """Write the challenge files of an unlabelled split (e.g. Test3).

        ``<split>_submission.csv`` has the columns ``FileName, EmoClass``
        (the predicted label) and ``<split>_probabilities.csv`` the columns
        ``FileName`` and one per label; file names are ``<id>.wav``, rows
        sorted by id, probabilities with 6 decimals.

        Parameters
        ----------
        folder : str or os.PathLike
            Output folder (created if needed).
        split : str
            Split name, the prefix of the file names.

        Returns
        -------
        tuple of pathlib.Path
            The submission and the probabilities files.

        Example
        -------
        >>> import tempfile
        >>> stats = ClassificationStats(["A", "N"])
        >>> stats.append(["u1"], [[0.25, 0.75]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     submission, probs = stats.write_submission(tmp, "test3")
        ...     print(submission.read_text() + probs.read_text().strip())
        FileName,EmoClass
        u1.wav,N
        FileName,A,N
        u1.wav,0.250000,0.750000
        """
        folder = Path(os.fspath(folder))
        rows = self.predictions()
        submission = write_csv(
            folder / f"{split}_submission.csv",
            ["FileName", "EmoClass"],
            [[f"{r['id']}.wav", r["prediction"]] for r in rows],
        )
        probabilities = write_csv(
            folder / f"{split}_probabilities.csv",
            ["FileName", *self.labels],
            [[f"{r['id']}.wav", *(r[f"prob_{c}"] for c in self.labels)] for r in rows],
        )
        return submission, probabilities


def write_csv(path, header, rows):
    """Write a CSV file: ``\\n`` line ends, floats with 6 decimals, None empty.

    Parent folders are created.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    header : list of str
        Column names.
    rows : iterable of sequences
        The rows.

    Returns
    -------
    pathlib.Path
        The written file.

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = write_csv(os.path.join(tmp, "a.csv"), ["id", "p"], [["x", 0.5], ["y", None]])
    ...     print(out.read_text().strip())
    id,p
    x,0.500000
    y,
    """  # noqa: E501
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_csv_cell(value) for value in row] for row in rows)
    return path


def _csv_cell(value):
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else value
