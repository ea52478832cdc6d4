"""From per-window emotion probabilities to segments of constant label.

The model-free half of an emotion timeline, decided as the windows come in,
so that a live stream and a whole file give the same segments:

1. :class:`RegionWindows`: the windows of a speech region, the ones of
   :func:`sser_lobes.dataio.chunking.chunk_bounds` (start every ``hop``;
   the rest of the region as the last one if it lasts ``min_tail``, else a
   window aligned to the region's end; one window if the region is
   shorter), each announced as soon as the region is known to outlast it.
2. :class:`RegionLabeler`: smooths each class's probability over
   neighbouring windows (median or mean of ``smoothing_windows``), gives
   each window the time nearest to its centre, labels it (its most probable
   class, or ``uncertain`` below a probability), and passes the spans to
3. :class:`SegmentBuilder`: runs of equal labels; a run shorter than
   ``min_duration`` joins the segment before it (the first runs of a
   region join the segment after them); equal neighbours merge.

Times are sample indices (ends excluded); :class:`Segment` converts to
seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sser_lobes.dataio.chunking import chunk_bounds

__all__ = [
    "RegionLabeler",
    "RegionWindows",
    "Segment",
    "SegmentBuilder",
    "SMOOTHING_CHOICES",
    "SILENCE",
    "UNCERTAIN",
]

#: Label of the time between speech regions.
SILENCE = "silence"
#: Label of speech whose most probable class is below the threshold.
UNCERTAIN = "uncertain"
#: Smoothing of window probabilities (``--smoothing``).
SMOOTHING_CHOICES = ("median", "mean", "none")


@dataclass
class Segment:
    """A span of a recording with one label.

    Arguments
    ---------
    start, end : float
        Seconds from the start of the recording.
    label : str
        An emotion, :data:`UNCERTAIN` or :data:`SILENCE`.
    probabilities : dict or None
        Mean class probabilities over the span (None for silence).
    vad : float
        Mean speech probability of the VAD frames of the span.
    speaker : str or None
        The speaker of the turn the span belongs to, if turns were given.

    Example
    -------
    >>> row = Segment(0.5, 2.0, "ang", {"ang": 0.75, "neu": 0.25}, 0.9).as_dict()
    >>> row["label"], row["probabilities"], row["vad_confidence"]
    ('ang', {'ang': 0.75, 'neu': 0.25}, 0.9)
    """

    start: float
    end: float
    label: str
    probabilities: dict | None = None
    vad: float = 0.0
    speaker: str | None = None

    @property
    def duration(self):
        return self.end - self.start

    @property
    def is_speech(self):
        return self.label != SILENCE

    def as_dict(self):
        """Plain types for JSON, times and probabilities rounded to 1 ms and
        1e-4."""
        row = {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "label": self.label,
            "probabilities": None
            if self.probabilities is None
            else {k: round(float(v), 4) for k, v in self.probabilities.items()},
            "vad_confidence": round(float(self.vad), 3),
        }
        if self.speaker is not None:
            row["speaker"] = self.speaker
        return row


class RegionWindows:
    """The windows of one speech region, announced as soon as they are
    certain.

    Arguments
    ---------
    window, hop : int
        In samples, ``0 < hop <= window``.
    min_tail : int or None
        Shortest last window that is the rest of the region (None: the last
        window is always a full one aligned to the region's end).

    Example
    -------
    >>> windows = RegionWindows(window=4, hop=2)
    >>> windows.begin(100)
    >>> windows.ready(through=107)  # the region lasts at least to 107
    [(100, 104), (102, 106)]
    >>> windows.end(111)  # the region is over: the rest, the last aligned
    [(104, 108), (106, 110), (107, 111)]
    """

    def __init__(self, window, hop, min_tail=None):
        self.window, self.hop = int(window), int(hop)
        self.min_tail = None if min_tail is None else int(min_tail)
        chunk_bounds(self.window, self.window, self.hop)  # checks the values
        self.start = None
        self.count = 0

    def begin(self, start):
        """A region starts at sample ``start``."""
        self.start, self.count = int(start), 0

    @property
    def next_start(self):
        """Start of the next regular window (the audio needed from there)."""
        return self.start + self.count * self.hop

    def ready(self, through):
        """Windows the region certainly outlasts (it lasts to ``through``)."""
        found = []
        while self.next_start + self.window < through:
            found.append((self.next_start, self.next_start + self.window))
            self.count += 1
        return found

    def end(self, end):
        """The region ends at ``end``: its remaining windows."""
        bounds = chunk_bounds(end - self.start, self.window, self.hop, self.min_tail)
        rest = [(self.start + s, self.start + e) for s, e in bounds[self.count :]]
        self.start = None
        return rest


def smooth(probabilities, mode, width):
    """Smooth window probabilities ``[n, classes]`` along the windows.

    Each row becomes the median (or mean) of the ``width`` rows centred on
    it (fewer at the ends), renormalised to sum to 1.

    Example
    -------
    >>> p = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.7, 0.3]])
    >>> smooth(p, "median", 3).round(2).tolist()
    [[0.5, 0.5], [0.8, 0.2], [0.7, 0.3], [0.75, 0.25]]
    """
    return np.stack(
        [_smooth_row(probabilities, i, mode, width) for i in range(len(probabilities))]
    )


def _smooth_row(rows, index, mode, width):
    if mode == "none" or width <= 1:
        return np.asarray(rows[index], dtype=np.float64)
    half = width // 2
    part = np.asarray(rows[max(0, index - half) : index + half + 1], dtype=np.float64)
    value = np.median(part, axis=0) if mode == "median" else part.mean(axis=0)
    total = value.sum()
    return value / total if total > 0 else value


@dataclass
class _Run:
    start: int
    end: int
    label: str
    weighted: np.ndarray = field(repr=False)

    @property
    def length(self):
        return self.end - self.start

    def extend(self, other):
        self.end = other.end
        self.weighted = self.weighted + other.weighted


class SegmentBuilder:
    """Spans with labels -> segments, a segment announced once it is final.

    :meth:`add` takes the next span ``(start, end, label, probabilities)``
    of a region and returns the segments that became final; :meth:`end`
    closes the region. A run of equal labels shorter than ``min_length``
    (samples) takes the label of the segment before it; the short runs at
    the start of a region join the first long one; a region with no long
    run is one segment labelled with its longest run. A segment is final
    as soon as the run after it has lasted ``min_length``.

    Segments are ``(start, end, label, mean probabilities)``.

    Example
    -------
    >>> builder = SegmentBuilder(min_length=3)
    >>> p = np.array([1.0])
    >>> spans = [(0, 4, "a"), (4, 5, "b"), (5, 9, "a"), (9, 13, "c")]
    >>> out = [s for a, b, lab in spans for s in builder.add(a, b, lab, p)]
    >>> [(s, e, lab) for s, e, lab, _ in out + builder.end()]
    [(0, 9, 'a'), (9, 13, 'c')]
    """

    def __init__(self, min_length):
        self.min_length = int(min_length)
        self._current = None  # the segment being built (settled label)
        self._tail = None  # a run after it, not yet min_length long
        self._prefix = []  # short runs at the start of the region

    def add(self, start, end, label, probabilities):
        """The next span of the region; returns the segments now final."""
        if end <= start:
            return []
        run = _Run(start, end, label, np.asarray(probabilities) * (end - start))
        out = []
        if self._tail is not None and label == self._tail.label:
            self._tail.extend(run)
        elif self._tail is None and self._current and label == self._current.label:
            self._current.extend(run)
        else:
            self._settle_short_tail()
            if self._current is not None and label == self._current.label:
                self._current.extend(run)
            else:
                self._tail = run
        if self._tail is not None and self._tail.length >= self.min_length:
            out += self._promote_tail()
        return out

    def _settle_short_tail(self):
        """The tail ended short: it joins the segment before it (or waits
        for the first long run)."""
        tail, self._tail = self._tail, None
        if tail is None:
            return
        if self._current is not None:
            self._current.extend(tail)
        else:
            self._prefix.append(tail)

    def _promote_tail(self):
        out = []
        tail, self._tail = self._tail, None
        if self._current is not None:
            out.append(self._finished(self._current))
        for run in reversed(self._prefix):
            tail.start = run.start
            tail.weighted = tail.weighted + run.weighted
        self._prefix = []
        self._current = tail
        return out

    def end(self):
        """Close the region; returns its last segments."""
        self._settle_short_tail()
        out = []
        if self._current is not None:
            out.append(self._finished(self._current))
        elif self._prefix:
            longest = max(self._prefix, key=lambda run: run.length)
            whole = _Run(
                self._prefix[0].start,
                self._prefix[-1].end,
                longest.label,
                sum(run.weighted for run in self._prefix),
            )
            out.append(self._finished(whole))
        self._current, self._tail, self._prefix = None, None, []
        return out

    @staticmethod
    def _finished(run):
        return (run.start, run.end, run.label, run.weighted / max(run.length, 1))


class RegionLabeler:
    """The windows of one region -> its segments, as the windows come in.

    Arguments
    ---------
    labels : list of str
        Class names, one per probability column.
    smoothing : str
        ``median``, ``mean`` or ``none`` (:data:`SMOOTHING_CHOICES`).
    smoothing_windows : int
        Windows in the smoothing (odd).
    min_length : int
        Shortest segment, in samples (:class:`SegmentBuilder`).
    uncertain_below : float or None
        A window whose smoothed top probability is below this is labelled
        :data:`UNCERTAIN`.

    Example
    -------
    >>> labeler = RegionLabeler(["neu", "ang"], "none", 1, min_length=0)
    >>> labeler.begin(0)
    >>> labeler.add((0, 4), [0.9, 0.1]) + labeler.add((4, 8), [0.2, 0.8])
    []
    >>> [(s, e, lab) for s, e, lab, _ in labeler.end(8)]
    [(0, 4, 'neu'), (4, 8, 'ang')]
    """

    def __init__(
        self,
        labels,
        smoothing="median",
        smoothing_windows=3,
        min_length=0,
        uncertain_below=None,
    ):
        if smoothing not in SMOOTHING_CHOICES:
            raise ValueError(
                f"unknown smoothing {smoothing!r}: use one of "
                f"{', '.join(SMOOTHING_CHOICES)}"
            )
        if int(smoothing_windows) < 1 or int(smoothing_windows) % 2 == 0:
            raise ValueError(
                f"the smoothing needs an odd number of windows, got {smoothing_windows}"
            )
        self.labels = list(labels)
        self.smoothing = smoothing
        self.width = 1 if smoothing == "none" else int(smoothing_windows)
        self.min_length = int(min_length)
        self.uncertain_below = uncertain_below

    def begin(self, start):
        """A region starts at sample ``start``."""
        self.start = int(start)
        self.bounds, self.rows = [], []
        self.done = 0  # windows passed to the builder
        self.builder = SegmentBuilder(self.min_length)

    def add(self, bounds, probabilities):
        """The next window ``(start, end)`` and its class probabilities;
        returns the segments now final."""
        self.bounds.append(tuple(bounds))
        self.rows.append(np.asarray(probabilities, dtype=np.float64))
        lookahead = max(self.width // 2, 1)
        out = []
        while self.done + lookahead < len(self.rows):
            out += self._pass(self.done, None)
        return out

    def end(self, end):
        """The region ends at sample ``end``; returns its last segments."""
        out = []
        while self.done < len(self.rows):
            out += self._pass(self.done, int(end))
        return out + self.builder.end()

    def _centre(self, index):
        start, stop = self.bounds[index]
        return (start + stop) // 2

    def _pass(self, index, end):
        first = self.start if index == 0 else self._owned_edge(index)
        last = end if index + 1 == len(self.rows) else self._owned_edge(index + 1)
        probabilities = _smooth_row(self.rows, index, self.smoothing, self.width)
        best = int(np.argmax(probabilities))
        label = self.labels[best]
        if (
            self.uncertain_below is not None
            and probabilities[best] < self.uncertain_below
        ):
            label = UNCERTAIN
        self.done += 1
        # keep only what the smoothing of later windows still needs
        return self.builder.add(first, last, label, probabilities)

    def _owned_edge(self, index):
        """The boundary between window ``index - 1`` and ``index``: midway
        between their centres."""
        return (self._centre(index - 1) + self._centre(index)) // 2
