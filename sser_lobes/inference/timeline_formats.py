"""Emotion timelines on disk: segment files, per-file summaries, the PNG.

The text formats (JSON lines, CSV, RTTM-style lines, Audacity labels) are
written by :mod:`sser_lobes.dataio.timeline_files`, which also reads them
back for :mod:`sser_lobes.evaluation.timeline_eval`. This module adds the
picture, :func:`plot_timeline`: the recording's level on top, the label
band in the middle, each class's window probabilities below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sser_lobes.dataio.segments import SILENCE, UNCERTAIN
from sser_lobes.dataio.timeline_files import SUFFIXES, write_segments

__all__ = ["label_colours", "plot_timeline", "write_summary", "write_timeline"]

#: Most points drawn for the level curve (a 2-hour file has 225,000 frames).
_MAX_POINTS = 4000


def label_colours(labels):
    """A colour per class (tab10), grey for silence and uncertain.

    Example
    -------
    >>> colours = label_colours(["neu", "ang"])
    >>> sorted(colours), colours["silence"]
    (['ang', 'neu', 'silence', 'uncertain'], '#dddddd')
    """
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    colours = {
        label: matplotlib.colors.to_hex(palette(i % 10))
        for i, label in enumerate(labels)
    }
    colours[SILENCE] = "#dddddd"
    colours[UNCERTAIN] = "#888888"
    return colours


def _envelope(levels, frame_seconds):
    """Times and per-bucket maxima of the level curve, at most _MAX_POINTS."""
    levels = np.asarray(levels, dtype=np.float32)
    step = max(1, int(np.ceil(len(levels) / _MAX_POINTS)))
    usable = len(levels) // step * step
    peaks = levels[:usable].reshape(-1, step).max(axis=1) if usable else levels
    if usable < len(levels):
        peaks = np.append(peaks, levels[usable:].max())
    times = (np.arange(len(peaks)) * step + step / 2) * frame_seconds
    return times, np.maximum(peaks, -80.0)


def _probability_steps(windows):
    """Step curves of window probabilities: each window's value over the
    time nearest its centre (as the segments use it), a gap (NaN) between
    speech regions.

    Example
    -------
    >>> x, y = _probability_steps([(0, 2, np.array([1.0])), (2, 4, np.array([0.0])),
    ...                            (9, 10, np.array([0.5]))])
    >>> x.tolist()[:4], y[:, 0].tolist()[:4]
    ([0.0, 2.0, 2.0, 4.0], [1.0, 1.0, 0.0, 0.0])
    >>> bool(np.isnan(y[4, 0])), x.tolist()[5:]
    (True, [9.0, 10.0])
    """
    windows = sorted(windows, key=lambda w: w[0])
    xs, ys = [], []
    for i, (start, end, row) in enumerate(windows):
        new_region = i == 0 or start > windows[i - 1][1] + 1e-6
        last = i + 1 == len(windows) or windows[i + 1][0] > end + 1e-6
        centre = (start + end) / 2
        left = start if new_region else (sum(windows[i - 1][:2]) / 2 + centre) / 2
        right = end if last else (centre + sum(windows[i + 1][:2]) / 2) / 2
        if new_region and i:
            xs.append(np.nan)
            ys.append(np.full(len(row), np.nan))
        xs += [left, right]
        ys += [np.asarray(row, dtype=float)] * 2
    return np.array(xs, dtype=float), np.stack(ys)


def plot_timeline(timeline, path, title=None, reference=None):
    """Write the timeline's PNG: level (dBFS), labels, window probabilities.

    Arguments
    ---------
    timeline : sser_lobes.inference.timeline.Timeline
    path : str or Path
        The PNG written.
    title : str or None
        Default: the file's name.
    reference : list of Span or None
        A reference timeline
        (:func:`~sser_lobes.dataio.timeline_files.read_segments`), drawn
        as a second band under the labels.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = label_colours(timeline.labels)
    duration = max(timeline.duration, 1e-3)
    figure, (top, band, curves) = plt.subplots(
        3,
        1,
        figsize=(12, 5.5),
        sharex=True,
        gridspec_kw={"height_ratios": [1.2, 0.5, 1.6]},
    )
    times, peaks = _envelope(timeline.levels, timeline.frame_seconds)
    top.fill_between(times, -80, peaks, color="#4a6fa5", linewidth=0)
    top.set_ylim(-80, 0)
    top.set_ylabel("level\n(dBFS)")
    top.set_title(title or Path(timeline.name).name)

    speakers = sorted({s.speaker for s in timeline.segments if s.speaker})
    rows = [
        (speaker, [s for s in timeline.segments if s.speaker == speaker])
        for speaker in (speakers or [None])
    ]
    if reference is not None:
        rows.append(("reference", list(reference)))
    for row, (_, segments) in enumerate(reversed(rows)):
        for segment in segments:
            band.broken_barh(
                [(segment.start, segment.end - segment.start)],
                (row, 0.9),
                facecolors=colours.get(segment.label, "#000000"),
            )
    band.set_ylim(0, len(rows))
    band.set_yticks([r + 0.45 for r in range(len(rows))])
    band.set_yticklabels([name or "label" for name, _ in reversed(rows)])
    present = {s.label for s in timeline.segments}
    shown = list(timeline.labels) + [
        lab for lab in (UNCERTAIN, SILENCE) if lab in present
    ]
    band.legend(
        handles=[Patch(color=colours[lab], label=lab) for lab in shown],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.4),
        fontsize=8,
        frameon=False,
    )

    if timeline.windows:
        x, values = _probability_steps(timeline.windows)
        for column, label in enumerate(timeline.labels):
            curves.plot(x, values[:, column], color=colours[label], linewidth=1.2)
    curves.set_ylim(0, 1)
    curves.set_ylabel("probability\n(windows)")
    curves.set_xlabel("time (s)")
    curves.set_xlim(0, duration)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_timeline(timeline, path, fmt):
    """Write a timeline's segments in ``fmt`` (``jsonl``, ``csv``, ``rttm``,
    ``audacity``)."""
    write_segments(
        timeline.segments, path, fmt, timeline.labels, file_id=Path(timeline.name).stem
    )
    return Path(path)


def write_summary(summaries, path):
    """Write the per-file summaries as one JSON file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    return path


def default_name(audio_path, fmt):
    """``<stem><suffix>`` of a file's timeline in a folder.

    Example
    -------
    >>> default_name("/data/call 1.flac", "rttm")
    'call 1.rttm'
    """
    return Path(audio_path).stem + SUFFIXES[fmt]
