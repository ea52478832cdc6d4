"""Figures for SER experiments: confusion matrices, learning curves, the
reliability diagram of a model's probabilities and its coverage-accuracy
curve.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg
canvas, so no display is ever needed and the global ``pyplot`` state (and
its backend) is left untouched.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "plot_confusion_matrix",
    "plot_coverage_accuracy",
    "plot_learning_curves",
    "plot_reliability_diagram",
]


def _new_figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_confusion_matrix(confusion, labels, path, title=None, normalize=True):
    """Save a confusion matrix as a PNG.

    Each cell is annotated with its row-normalised percentage (share of the
    true class) and its count; rows of classes absent from the targets show
    ``-`` instead of a percentage.

    Parameters
    ----------
    confusion : array-like of int, shape [C, C]
        Counts, rows = true class, columns = predicted class (e.g.
        ``classification_metrics(...)["confusion_matrix"]``).
    labels : list of str
        Class names in index order.
    path : str or os.PathLike
        Output PNG file (parent folders are created).
    title : str, optional
        Figure title.
    normalize : bool
        Colour cells by row-normalised share (True, scale 0-100 %) or by raw
        counts (False). Annotations show both either way.

    Returns
    -------
    pathlib.Path
        The written file.

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_confusion_matrix([[5, 1], [2, 4]], ["neu", "ang"],
    ...                                 os.path.join(tmp, "cm.png"), title="test")
    ...     out.read_bytes()[:4]
    b'\\x89PNG'
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(
            f"confusion must be a square [C, C] matrix, got shape {cm.shape}"
        )
    if cm.dtype.kind not in "iuf" or not np.all(np.isfinite(cm)) or (cm < 0).any():
        raise ValueError("confusion must contain finite non-negative counts")
    if isinstance(labels, str) or len(labels) != cm.shape[0]:
        raise ValueError(
            f"labels must be a list of {cm.shape[0]} class names, got {labels!r}"
        )
    labels = [str(label) for label in labels]
    n = cm.shape[0]
    cm = cm.astype(np.float64)
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros_like(cm), where=row_sums > 0)

    size = max(4.0, 1.0 + 0.9 * n)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    values = share * 100 if normalize else cm
    vmax = 100.0 if normalize else max(1.0, float(cm.max()))
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("% of true class" if normalize else "count")

    font = max(6, 11 - n // 3)
    for i in range(n):
        for j in range(n):
            count = cm[i, j]
            count_text = f"{int(count)}" if count == int(count) else f"{count:.2f}"
            pct = f"{100 * share[i, j]:.1f}%" if row_sums[i, 0] > 0 else "-"
            dark = values[i, j] > 0.5 * vmax
            ax.text(
                j,
                i,
                f"{pct}\n({count_text})",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(
        labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center"
    )
    ax.set_yticklabels(labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _is_lr_key(key):
    key = key.lower()
    return (
        key in ("lr", "learning_rate")
        or key.startswith(("lr_", "learning_rate"))
        or key.endswith(("_lr", "_learning_rate"))
    )


def _epoch_number(epoch):
    if isinstance(epoch, bool):
        raise ValueError(f"epoch keys must be ints (or int strings), got {epoch!r}")
    if isinstance(epoch, numbers.Integral):
        return int(epoch)
    if isinstance(epoch, str):
        try:
            return int(epoch.strip())
        except ValueError:
            pass
    raise ValueError(f"epoch keys must be ints (or int strings), got {epoch!r}")


def plot_learning_curves(history, path, title=None):
    """Save learning curves as a PNG: losses on top, other metrics below.

    Keys containing ``loss`` go to the loss panel; learning-rate keys
    (``lr``, ``lr_*``, ``*_lr``, ``learning_rate``...) are skipped; every
    other key is a metric, drawn on a second panel (omitted when there is
    none). A key missing from some epochs (or None, or non-finite) is drawn
    only where present.

    Parameters
    ----------
    history : dict
        ``{epoch: {"train_loss": float, "valid_loss": float, "valid_UA":
        float, ...}}``; epochs are ints or int strings (e.g. from JSON), and
        are sorted numerically.
    path : str or os.PathLike
        Output PNG file (parent folders are created).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        The written file.

    Example
    -------
    >>> import os, tempfile
    >>> history = {1: {"train_loss": 1.3, "valid_loss": 1.2, "valid_UA": 0.4},
    ...            "2": {"train_loss": 1.0, "valid_loss": 1.1, "valid_UA": 0.5}}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_learning_curves(history, os.path.join(tmp, "curves.png"))
    ...     out.stat().st_size > 0
    True
    """
    if not isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty dict {epoch: {metric: value}}")
    epochs = {}
    for epoch, values in history.items():
        number = _epoch_number(epoch)
        if number in epochs:
            raise ValueError(f"epoch {number} appears twice in history")
        if not isinstance(values, Mapping):
            raise ValueError(
                f"history[{epoch!r}] must be a dict of metric values, got {values!r}"
            )
        epochs[number] = values

    series = {}  # key -> ([epochs], [values]), in first-seen key order
    for number in sorted(epochs):
        for key, value in epochs[number].items():
            key = str(key)
            if _is_lr_key(key) or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"history[{number}][{key!r}] must be a number, got {value!r}"
                )
            if not math.isfinite(value):
                continue  # e.g. a diverged loss: leave a gap
            xs, ys = series.setdefault(key, ([], []))
            xs.append(number)
            ys.append(float(value))

    loss_keys = [k for k in series if "loss" in k.lower()]
    metric_keys = [k for k in series if "loss" not in k.lower()]
    n_panels = 2 if metric_keys else 1
    fig = _new_figure(7.0, 3.2 * n_panels + 0.4)
    axes = [fig.add_subplot(n_panels, 1, i + 1) for i in range(n_panels)]
    panels = [(axes[0], loss_keys, "loss")]
    if metric_keys:
        panels.append((axes[1], metric_keys, "metric"))
    for ax, keys, ylabel in panels:
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if keys:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(
                0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes
            )
        ax.set_xlabel("epoch")
        if len(epochs) <= 20:
            ax.set_xticks(sorted(epochs))
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability_diagram(curves, path, title=None):
    """Save a reliability diagram: accuracy against confidence per bin.

    Parameters
    ----------
    curves : dict
        Curve name (e.g. ``"raw"``, ``"calibrated"``) -> ``(bins, ece)``:
        :func:`sser_lobes.evaluation.calibration.reliability_bins` and the
        ECE shown in the legend.
    path : str or os.PathLike
        Output PNG file.
    title : str, optional

    Returns
    -------
    pathlib.Path

    Example
    -------
    >>> import os, tempfile
    >>> bins = [{"lower": 0.5, "upper": 1.0, "count": 2, "accuracy": 0.5,
    ...          "confidence": 0.9}]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_reliability_diagram({"raw": (bins, 0.4)},
    ...                                    os.path.join(tmp, "r.png"))
    ...     out.read_bytes()[:4]
    b'\\x89PNG'
    """
    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect calibration")
    for name, (bins, ece) in curves.items():
        full = [b for b in bins if b["count"]]
        ax.plot(
            [b["confidence"] for b in full],
            [b["accuracy"] for b in full],
            marker="o",
            label=f"{name} (ECE {100 * ece:.1f} %)",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability, bin mean)")
    ax.set_ylabel("accuracy in the bin")
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_coverage_accuracy(curve, path, title=None, marks=()):
    """Save the coverage-accuracy curve of selective prediction.

    Parameters
    ----------
    curve : list of dict
        :func:`sser_lobes.evaluation.selective.selective_curve` points
        (``coverage``, ``accuracy``, ``UA``).
    path : str or os.PathLike
        Output PNG file.
    title : str, optional
    marks : sequence of dict
        Thresholds to mark (``coverage``, ``accuracy``, ``threshold``).

    Returns
    -------
    pathlib.Path

    Example
    -------
    >>> import os, tempfile
    >>> curve = [{"coverage": 0.5, "accuracy": 1.0, "UA": 1.0},
    ...          {"coverage": 1.0, "accuracy": 0.5, "UA": 0.5}]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_coverage_accuracy(curve, os.path.join(tmp, "c.png"))
    ...     out.read_bytes()[:4]
    b'\\x89PNG'
    """
    fig = _new_figure(5.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    coverage = [p["coverage"] for p in curve]
    ax.plot(coverage, [p["accuracy"] for p in curve], label="accuracy (WA)")
    ax.plot(coverage, [p["UA"] for p in curve], label="UA", linestyle="--")
    for mark in marks:
        ax.plot([mark["coverage"]], [mark["accuracy"]], marker="o", color="k")
        ax.annotate(
            f"p >= {mark['threshold']:.2f}",
            (mark["coverage"], mark["accuracy"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage (share of utterances answered)")
    ax.set_ylabel("score on the answered utterances")
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
