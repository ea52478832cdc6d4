"""Regression metrics for SER attributes (arousal, valence, dominance), on a
whole evaluation set.

The metric is Lin's concordance correlation coefficient, :func:`ccc`, over
the whole set (a mean of per-batch CCCs is biased), as in the Odyssey 2024
challenge (Task 2); :class:`RegressionStats` accumulates predictions batch
after batch, as :class:`~sser_lobes.evaluation.metrics.ClassificationStats`
does for classes, and summarises at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sser_lobes.evaluation.metrics import _as_ids, _check_new_ids, _to_numpy, write_csv

__all__ = ["RegressionStats", "ccc"]


def ccc(pred, target):
    """Lin's concordance correlation coefficient of two 1-D arrays.

    ``CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2)`` with
    population (biased, ``1/N``) moments, computed in float64: the metric of
    the MSP-Podcast / Odyssey 2024 attribute task. It is 1 for perfect
    agreement, -1 for perfect reversed agreement around a common mean, and
    penalises shifts and scale differences that Pearson's correlation
    ignores. The torch counterpart, for training, is
    :func:`sser_lobes.nnet.losses.concordance_correlation`.

    Parameters
    ----------
    pred, target : array-like of float, shape [N]
        Predictions and true values (lists, numpy arrays or torch tensors of
        any float dtype and device; ``[N, 1]`` is accepted).

    Returns
    -------
    float
        The CCC; ``nan`` when it is undefined, i.e. both inputs are constant
        and equal (0/0).

    Raises
    ------
    ValueError
        On empty input, different lengths, or NaN / infinite values.

    Example
    -------
    >>> ccc([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])  # 5 / 12.5
    0.4
    >>> ccc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    """
    p = _as_float_vector(pred, "pred")
    t = _as_float_vector(target, "target")
    if p.size != t.size:
        raise ValueError(f"pred and target differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        raise ValueError("ccc needs at least one value (got empty input)")
    mean_p, mean_t = p.mean(), t.mean()
    cov = float(np.mean((p - mean_p) * (t - mean_t)))
    denominator = float(p.var() + t.var() + (mean_p - mean_t) ** 2)
    if denominator == 0:
        return float("nan")
    return 2 * cov / denominator


def _as_float_vector(x, name):
    """Return ``x`` as a finite 1-D float64 vector (``[N, 1]`` is flattened)."""
    arr = _to_numpy(x, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_names(names):
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"names must be a list of target names (e.g. ['arousal', 'valence', "
            f"'dominance']), got {names!r}"
        )
    names = [str(name) for name in names]
    if not names:
        raise ValueError("names must contain at least one target name")
    if len(set(names)) != len(names):
        dups = sorted({x for x in names if names.count(x) > 1})
        raise ValueError(f"names must be unique, duplicated: {dups}")
    return names


class RegressionStats:
    """Accumulates per-utterance ids, predictions and targets of K attributes.

    The regression counterpart of :class:`ClassificationStats`: append every
    batch of an evaluation set, then :meth:`summarize` once for the CCC (see
    :func:`ccc`) and mean squared error of each attribute over the *whole*
    set, and/or :meth:`write_predictions` for a per-utterance CSV. Targets may
    be left out for an unlabelled set (e.g. MSP-Podcast Test3).

    Parameters
    ----------
    names : list of str
        Names of the K continuous targets, in column order.

    Example
    -------
    >>> import torch
    >>> stats = RegressionStats(["arousal", "valence"])
    >>> stats.append(["u2", "u1"], torch.tensor([[2.0, 4.0], [1.0, 3.0]]),
    ...              torch.tensor([[4.0, 4.0], [2.0, 3.0]]))
    >>> stats.append(["u3"], [[3.0, 5.0]], [[6.0, 5.0]])
    >>> m = stats.summarize()
    >>> # arousal: pred [1, 2, 3] (u1, u2, u3), target [2, 4, 6]: var 2/3 and 8/3,
    >>> # cov 4/3, shift (2 - 4)^2 = 4: CCC = (8/3) / (2/3 + 8/3 + 4) = 8/22
    >>> round(m["CCC"]["arousal"], 4), m["CCC"]["valence"], m["n"]
    (0.3636, 1.0, 3)
    """

    def __init__(self, names):
        self.names = _check_names(names)
        self._ids = []
        self._id_set = set()
        self._preds = []  # list of float64 arrays [B, K]
        self._targets = []  # list of float64 arrays [B, K], NaN = missing

    def __len__(self):
        return len(self._ids)

    def _as_matrix(self, x, name, n_rows):
        arr = _to_numpy(x, name)
        k = len(self.names)
        if arr.ndim == 1 and k == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != k:
            raise ValueError(
                f"{name} must have shape [batch, {k}] for {k} target(s) "
                f"{self.names}, got {tuple(arr.shape)}"
            )
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        if arr.shape[0] != n_rows:
            raise ValueError(f"{n_rows} ids but {arr.shape[0]} rows of {name}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contain NaN or infinite values")
        return arr

    def append(self, ids, predictions, targets=None):
        """Add one batch.

        Parameters
        ----------
        ids : list of str
            Utterance ids of the batch; must be unique across all appends.
        predictions : torch.Tensor or array-like, shape [B, K]
            Predicted values (any float dtype, any device); ``[B]`` is
            accepted when K = 1.
        targets : torch.Tensor or array-like, shape [B, K], optional
            True values, or None for an unlabelled set: such utterances can
            be written but not summarised.

        Example
        -------
        >>> stats = RegressionStats(["arousal"])
        >>> stats.append(["x", "y"], [3.5, 4.25])  # unlabelled, K = 1
        >>> len(stats)
        2
        """
        ids = _as_ids(ids)
        preds = self._as_matrix(predictions, "predictions", len(ids))
        if targets is None:
            tgt = np.full(preds.shape, np.nan)
        else:
            tgt = self._as_matrix(targets, "targets", len(ids))
        _check_new_ids(ids, self._id_set)
        self._ids.extend(ids)
        self._id_set.update(ids)
        self._preds.append(preds)
        self._targets.append(tgt)

    def _gather(self):
        """Return ids, predictions [N, K] and targets [N, K], sorted by id."""
        k = len(self.names)
        if not self._ids:
            return [], np.zeros((0, k)), np.zeros((0, k))
        order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
        preds = np.concatenate(self._preds)[order]
        targets = np.concatenate(self._targets)[order]
        return [self._ids[i] for i in order], preds, targets

    def summarize(self):
        """CCC and MSE of every target over everything appended.

        Returns
        -------
        dict
            ``"CCC"``: ``{name: CCC}`` (see :func:`ccc`); ``"CCC_mean"``: their
            unweighted mean (the challenge's ranking score); ``"MSE"``:
            ``{name: mean squared error}``; ``"n"``: number of utterances;
            ``"names"``: the target names. Values are Python floats.

        Raises
        ------
        ValueError
            If nothing was appended or some utterances have no targets.

        Example
        -------
        >>> stats = RegressionStats(["valence"])
        >>> stats.append(["a", "b", "c"], [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
        >>> m = stats.summarize()
        >>> # var_p 2/3, var_t 14/9, cov 1, shift 1/9: 2 / (21/9) = 6/7; MSE 1/3
        >>> round(m["CCC"]["valence"], 4), round(m["MSE"]["valence"], 4)
        (0.8571, 0.3333)
        """
        if not self._ids:
            raise ValueError("RegressionStats is empty: nothing was appended")
        ids, preds, targets = self._gather()
        missing = np.isnan(targets).any(axis=1)
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} of {len(ids)} utterances have no targets "
                f"(e.g. {ids[int(np.argmax(missing))]!r}); metrics need labels, "
                "use write_predictions() for an unlabelled set"
            )
        values = {
            name: ccc(preds[:, j], targets[:, j]) for j, name in enumerate(self.names)
        }
        mse = {
            name: float(np.mean((preds[:, j] - targets[:, j]) ** 2))
            for j, name in enumerate(self.names)
        }
        return {
            "CCC": values,
            "CCC_mean": float(np.mean(list(values.values()))),
            "MSE": mse,
            "n": len(ids),
            "names": list(self.names),
        }

    def _columns(self):
        return [f"target_{name}" for name in self.names] + [
            f"pred_{name}" for name in self.names
        ]

    def predictions(self):
        """Per-utterance targets and predictions, sorted by id (JSON-friendly).

        Returns
        -------
        list of dict
            One dict per utterance: ``id``, ``target_<name>`` (None when
            unlabelled) then ``pred_<name>`` for every target, floats rounded
            to 6 decimals as in :meth:`write_predictions`.

        Example
        -------
        >>> stats = RegressionStats(["arousal", "valence"])
        >>> stats.append(["x"], [[3.25, 4.0]])
        >>> stats.predictions()
        [{'id': 'x', 'target_arousal': None, 'target_valence': None, 'pred_arousal': 3.25, 'pred_valence': 4.0}]
        """  # noqa: E501
        ids, preds, targets = self._gather()
        columns = self._columns()
        rows = []
        for uid, p, t in zip(ids, preds, targets):
            values = [None if np.isnan(v) else round(float(v), 6) for v in t]
            values += [round(float(v), 6) for v in p]
            rows.append({"id": uid, **dict(zip(columns, values))})
        return rows

    def write_predictions(self, path):
        """Write per-utterance targets and predictions to a CSV file, by id.

        Columns: ``id, target_<name>..., pred_<name>...``; targets are empty
        for unlabelled utterances; floats with 6 decimals. Parent folders are
        created.

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
        >>> stats = RegressionStats(["arousal", "valence"])
        >>> stats.append(["x"], [[3.25, 4.0]], [[3.0, 4.5]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = stats.write_predictions(os.path.join(tmp, "pred.csv"))
        ...     print(out.read_text().strip())
        id,target_arousal,target_valence,pred_arousal,pred_valence
        x,3.000000,4.500000,3.250000,4.000000
        """
        header = ["id", *self._columns()]
        rows = [[row[key] for key in header] for row in self.predictions()]
        return write_csv(path, header, rows)

    def write_submission(self, folder, split, columns=None, clip=None):
        """Write the challenge file of an unlabelled split (e.g. Test3).

        ``<split>_submission.csv`` has the columns ``FileName`` and one per
        target (the predictions, 6 decimals); file names are ``<id>.wav``,
        rows sorted by id. With ``clip=(low, high)`` the values are clipped
        to the scale first (the Odyssey 2024 baseline clips its linear
        outputs to 1-7 in the submission only).

        Parameters
        ----------
        folder : str or os.PathLike
            Output folder (created if needed).
        split : str
            Split name, the prefix of the file name.
        columns : list of str, optional
            Column name of each target, in the order of ``names`` (default:
            the names).
        clip : tuple of float, optional
            ``(low, high)`` bounds of the written values.

        Returns
        -------
        pathlib.Path
            The written file.

        Example
        -------
        >>> import tempfile
        >>> stats = RegressionStats(["arousal", "valence"])
        >>> stats.append(["u1"], [[3.25, 4.0]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = stats.write_submission(tmp, "test3", ["EmoAct", "EmoVal"])
        ...     print(out.read_text().strip())
        FileName,EmoAct,EmoVal
        u1.wav,3.250000,4.000000
        >>> stats.append(["u2"], [[7.5, 0.2]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = stats.write_submission(tmp, "test3", clip=(1.0, 7.0))
        ...     print(out.read_text().strip().splitlines()[-1])
        u2.wav,7.000000,1.000000
        """
        columns = list(self.names) if columns is None else list(columns)
        if len(columns) != len(self.names):
            raise ValueError(
                f"{len(columns)} column names for {len(self.names)} targets"
            )
        return write_csv(
            Path(os.fspath(folder)) / f"{split}_submission.csv",
            ["FileName", *columns],
            [
                [
                    f"{r['id']}.wav",
                    *(_clipped(r[f"pred_{n}"], clip) for n in self.names),
                ]
                for r in self.predictions()
            ],
        )


def _clipped(value, bounds):
    if bounds is None:
        return value
    low, high = bounds
    return min(max(value, low), high)
