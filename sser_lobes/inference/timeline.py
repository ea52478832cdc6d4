"""Emotion over time: a recording or a live stream -> timestamped segments.

    rec = EmotionRecognizer.from_hparams("my_model", quantize="int8")
    timeline = rec.timeline("meeting.flac")          # a file, any length
    for segment in timeline.segments:
        print(segment.start, segment.end, segment.label)

    live = rec.stream(source_rate=44100)             # push samples, get segments
    for block in microphone_blocks():
        for segment in live.push(block):
            print(segment)
    live.finish()

The flow (``docs/architecture.md``, third table): audio in blocks
(:mod:`sser_lobes.dataio.stream`, resampled per block) -> voice activity
detection and speech regions (:mod:`sser_lobes.dataio.vad`) -> windows of
each region (no longer than the model's window) -> the recognizer's
:meth:`~sser_lobes.inference.recognizer.EmotionRecognizer.predict_batch`
on length-sorted batches -> smoothing, labels, minimum durations
(:mod:`sser_lobes.dataio.segments`) -> segments, with silence between
regions. A file is streamed through the same :class:`TimelineStream` as
live audio, so a stream gives the file's segments; only the audio the next
windows need is held (a few seconds), so memory does not grow with the
recording's length.

Latency of a live stream: a segment is printed once it is final, i.e. once
the audio after it shows that it ended: the window after it (``window``),
the smoothing's look-ahead (``smoothing_windows // 2`` hops), the next
segment's ``min_segment``, and for the end of speech the VAD's
``min_silence``, plus the model's compute time for a window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from sser_lobes.dataio.audio import SILENT_PEAK
from sser_lobes.dataio.segments import (
    SILENCE,
    SMOOTHING_CHOICES,
    RegionLabeler,
    RegionWindows,
    Segment,
)
from sser_lobes.dataio.stream import FileBlocks, StreamResampler
from sser_lobes.dataio.vad import FRAME_SECONDS, VAD_CHOICES, SpeechRegions, make_vad

__all__ = ["Timeline", "TimelineOptions", "TimelineStream", "file_timeline", "summary"]

#: Default timeline window (seconds) when the model's is longer.
DEFAULT_WINDOW = 3.0


@dataclass(frozen=True)
class TimelineOptions:
    """Settings of a timeline; each field is a ``sser-predict`` option.

    Arguments
    ---------
    vad : str
        ``silero`` (the model inside the silero-vad package), ``energy``
        (frame level against ``energy_threshold_db``) or ``none`` (all
        speech).
    vad_threshold : float
        Speech probability at which a frame is speech (``--vad-threshold``).
    energy_threshold_db : float
        The energy VAD's level, dBFS (``--energy-threshold``).
    min_speech, min_silence, speech_pad : float
        Seconds: shortest speech region kept, silence that ends a region,
        padding added to both sides (at most half of ``min_silence``).
    window, hop : float or None
        Seconds: the classification windows of a speech region (default
        ``min(3 s, the model's window)``; a window longer than the model's
        is refused) and their step (default: the window, no overlap).
    min_window : float
        Seconds: the last window of a region is the rest of the region if
        that lasts this long, else a full window aligned to the region's
        end (which computes part of the audio twice).
    smoothing : str
        ``median``, ``mean`` or ``none`` over ``smoothing_windows``
        neighbouring windows (odd).
    min_segment : float
        Shortest segment, seconds: a shorter run of one label joins the
        segment before it.
    uncertain_below : float or None
        Label ``uncertain`` where the top smoothed probability is below it.
    silence : bool
        List the time between speech regions as ``silence`` segments.
    batch_size : int
        Windows per forward pass.

    Example
    -------
    >>> TimelineOptions(hop=1.5).resolved(model_window=10.0)[:2]
    (3.0, 1.5)
    >>> TimelineOptions(window=12.0).resolved(model_window=10.0)
    Traceback (most recent call last):
    ...
    ValueError: --window 12.0 s is longer than the model's window (10.0 s)
    """

    vad: str = "silero"
    vad_threshold: float = 0.5
    energy_threshold_db: float = -40.0
    min_speech: float = 0.25
    min_silence: float = 0.3
    speech_pad: float = 0.1
    window: float | None = None
    hop: float | None = None
    min_window: float = 1.0
    smoothing: str = "median"
    smoothing_windows: int = 3
    min_segment: float = 1.0
    uncertain_below: float | None = None
    silence: bool = True
    batch_size: int = 8

    def resolved(self, model_window):
        """``(window, hop, options)`` in seconds after the checks; a problem
        is a ValueError naming the ``sser-predict`` option."""
        if self.vad not in VAD_CHOICES:
            raise ValueError(f"--vad {self.vad!r}: use one of {', '.join(VAD_CHOICES)}")
        if self.smoothing not in SMOOTHING_CHOICES:
            raise ValueError(
                f"--smoothing {self.smoothing!r}: use one of "
                f"{', '.join(SMOOTHING_CHOICES)}"
            )
        window = self.window or min(DEFAULT_WINDOW, float(model_window))
        if not window > 0:
            raise ValueError(f"--window must be positive, got {self.window}")
        if window > float(model_window) + 1e-9:
            raise ValueError(
                f"--window {window} s is longer than the model's window "
                f"({float(model_window)} s)"
            )
        hop = self.hop or window
        if not 0 < hop <= window:
            raise ValueError(f"--hop must be in (0, --window = {window} s], got {hop}")
        if not 0 < self.min_window <= window:
            raise ValueError(
                f"--min-window must be in (0, --window = {window} s], got "
                f"{self.min_window}"
            )
        if self.smoothing_windows < 1 or self.smoothing_windows % 2 == 0:
            raise ValueError(
                f"--smoothing-windows must be odd and positive, got "
                f"{self.smoothing_windows}"
            )
        if not self.min_segment >= 0:
            raise ValueError(f"--min-segment must be >= 0, got {self.min_segment}")
        if self.uncertain_below is not None and not 0 < self.uncertain_below <= 1:
            raise ValueError(
                f"--uncertain-below must be in (0, 1], got {self.uncertain_below}"
            )
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {self.batch_size}")
        return window, hop, self


@dataclass
class _Region:
    """A speech region on its way through the model and the labeler."""

    start: int
    labeler: RegionLabeler
    end: int | None = None
    pending: int = 0  # windows submitted, not yet classified
    closed: bool = False
    ready: list = None  # segments decided, not yet released

    def __post_init__(self):
        self.ready = []


class TimelineStream:
    """Push audio, get the emotion segments decided so far.

    Arguments
    ---------
    recognizer : sser_lobes.inference.recognizer.EmotionRecognizer
        A categorical model; its ``predict_batch`` classifies the windows.
    options : TimelineOptions or None
        The settings (default :class:`TimelineOptions`).
    eager : bool
        Classify windows as soon as they are known (live audio: lowest
        latency). Otherwise windows are gathered into length-sorted batches
        of ``batch_size`` (files: fastest).
    source_rate : int or None
        Rate of the pushed samples; resampled to the model's rate per block
        (None: already at the model's rate).
    offset : float
        Seconds added to every time (a part of a file).
    speaker : str or None
        Given to every segment (a speaker's turn).

    Attributes
    ----------
    segments : list of Segment
        Every segment released so far, in time order.
    peak_buffered_samples : int
        The most audio held at once, in samples (a check that memory does
        not grow with the stream's length).
    """

    def __init__(
        self,
        recognizer,
        options=None,
        eager=False,
        source_rate=None,
        offset=0.0,
        speaker=None,
    ):
        if recognizer.hparams.task != "categorical":
            raise ValueError(
                "a timeline needs a categorical model; this is an attribute model"
            )
        self.recognizer = recognizer
        self.options = options or TimelineOptions()
        self.sample_rate = int(recognizer.sample_rate)
        model_window = float(recognizer.hparams.window_seconds)
        window, hop, _ = self.options.resolved(model_window)
        self.window_seconds, self.hop_seconds = window, hop
        self.eager = eager
        self.offset = float(offset)
        self.speaker = speaker
        self.labels = list(recognizer.labels)
        opts = self.options
        self.vad = make_vad(opts.vad, self.sample_rate, opts.energy_threshold_db)
        self.regions = SpeechRegions(
            self.vad.frame_samples,
            self.sample_rate,
            threshold=opts.vad_threshold,
            min_speech=opts.min_speech,
            min_silence=opts.min_silence,
            pad=opts.speech_pad,
        )
        self.windows = RegionWindows(
            int(round(window * self.sample_rate)),
            int(round(hop * self.sample_rate)),
            min_tail=int(round(opts.min_window * self.sample_rate)),
        )
        self.min_samples = int(getattr(recognizer, "min_samples", 400) or 0)
        self.resampler = None
        if source_rate is not None and int(source_rate) != self.sample_rate:
            self.resampler = StreamResampler(int(source_rate), self.sample_rate)
        self.total = 0  # samples received (model rate)
        self.peak = 0.0
        self._audio = torch.zeros(0)
        self._audio_start = 0
        self.peak_buffered_samples = 0
        self._region = None  # the open region
        self._silence_from = 0  # end of the last region
        self._order = deque()  # Segments and _Regions, in time order
        self._queue = []  # (region, bounds, audio) waiting for the model
        self.segments = []
        self.window_probabilities = []  # (start s, end s, probabilities)
        self.notes = []
        self.finished = False

    # ------------------------------------------------------------------ input
    def push(self, samples):
        """Add samples (1-D array or tensor); return the segments released."""
        if self.finished:
            raise RuntimeError("this stream is finished")
        samples = torch.as_tensor(np.asarray(samples, dtype=np.float32)).reshape(-1)
        if self.resampler is not None:
            samples = self.resampler.push(samples.numpy())
        return self._push(samples)

    def _push(self, samples):
        if len(samples):
            self.peak = max(self.peak, float(samples.abs().max()))
            self._audio = torch.cat([self._audio, samples])
            self.total += len(samples)
            self.peak_buffered_samples = max(
                self.peak_buffered_samples, len(self._audio)
            )
            self._events(self.regions.push(self.vad.push(samples.numpy())))
        self._schedule()
        self._trim()
        self._classify(force=self.eager)
        return self._release()

    def finish(self):
        """End of the audio: decide and return the last segments."""
        if self.finished:
            return []
        out = []
        if self.resampler is not None:
            out += self._push(self.resampler.flush())
        self._events(self.regions.push(self.vad.flush()))
        self._events(self.regions.finish(self.total))
        self._classify(force=True)
        if self.total > self._silence_from and self.options.silence:
            self._order.append(self._silence(self._silence_from, self.total))
        self.finished = True
        out += self._release()
        self._notes()
        return out

    # ---------------------------------------------------------------- regions
    def _events(self, events):
        for kind, sample in events:
            if kind == "start":
                if sample > self._silence_from and self.options.silence:
                    self._order.append(self._silence(self._silence_from, sample))
                labeler = RegionLabeler(
                    self.labels,
                    self.options.smoothing,
                    self.options.smoothing_windows,
                    min_length=int(round(self.options.min_segment * self.sample_rate)),
                    uncertain_below=self.options.uncertain_below,
                )
                labeler.begin(sample)
                self._region = _Region(sample, labeler)
                self._order.append(self._region)
                self.windows.begin(sample)
            else:
                # every window left (windows.end): the state of the detector
                # may already be past this region, in the same block
                region, self._region = self._region, None
                region.end = sample
                self._submit(region, self.windows.end(sample))
                self._silence_from = sample
                self._close_ready()

    def _schedule(self):
        """Windows of the open region that it certainly outlasts."""
        if self._region is None or not self.regions.open:
            return
        through = min(self.regions.speech_through, self.total)
        self._submit(self._region, self.windows.ready(through))

    def _submit(self, region, bounds):
        for start, end in bounds:
            if end - start < self.min_samples:
                self.notes.append(
                    f"speech at {self._seconds(start):.2f}-{self._seconds(end):.2f} s "
                    f"is shorter than the model's minimum ({self.min_samples} "
                    "samples): not classified"
                )
                continue
            first = start - self._audio_start
            audio = self._audio[first : first + (end - start)].clone()
            self._queue.append((region, (start, end), audio))
            region.pending += 1

    def _trim(self):
        """Drop the audio no window can need any more."""
        if self._region is not None and self.regions.open:
            # the next regular window, or the last one, aligned to the
            # region's end, which is not before speech_through
            through = min(self.regions.speech_through, self.total)
            last = max(self._region.start, through - self.windows.window)
            keep = min(self.windows.next_start, last)
        else:
            keep = self.regions.earliest_start  # where a region may start
        keep = min(keep, self.total)
        drop = keep - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start = keep

    # ------------------------------------------------------------------ model
    def _classify(self, force=False):
        pool = self.options.batch_size * (1 if self.eager else 4)
        while self._queue and (force or len(self._queue) >= pool):
            items, self._queue = self._queue[:pool], self._queue[pool:]
            probabilities = self._predict([audio for _, _, audio in items])
            for (region, bounds, _), row in zip(items, probabilities):
                region.pending -= 1
                self.window_probabilities.append(
                    (self._seconds(bounds[0]), self._seconds(bounds[1]), row)
                )
                region.ready += self._segments(region.labeler.add(bounds, row))
            self._close_ready()

    def _predict(self, waveforms):
        """Class probabilities of each waveform, in order: length-sorted
        batches through the recognizer's ``predict_batch``."""
        order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
        rows = [None] * len(waveforms)
        size = self.options.batch_size
        for first in range(0, len(order), size):
            group = order[first : first + size]
            batch = torch.nn.utils.rnn.pad_sequence(
                [waveforms[i] for i in group], batch_first=True
            )
            lengths = torch.tensor(
                [len(waveforms[i]) for i in group], dtype=torch.float
            )
            out = self.recognizer.predict_batch(batch, lengths / batch.shape[1])
            for i, row in zip(group, out["probabilities"].cpu().numpy()):
                rows[i] = row.astype(np.float64)
        return rows

    def _close_ready(self):
        for item in self._order:
            if (
                isinstance(item, _Region)
                and item.end is not None
                and not item.closed
                and item.pending == 0
            ):
                item.ready += self._segments(item.labeler.end(item.end))
                item.closed = True

    # ----------------------------------------------------------------- output
    def _release(self):
        out = []
        while self._order:
            item = self._order[0]
            if isinstance(item, Segment):
                out.append(self._order.popleft())
                continue
            out += item.ready
            item.ready = []
            if not item.closed:
                break
            self._order.popleft()
        self.segments += out
        return out

    def _segments(self, decided):
        return [
            Segment(
                self._seconds(start),
                self._seconds(end),
                label,
                dict(zip(self.labels, (float(p) for p in probabilities))),
                self.regions.mean_probability(start, end),
                self.speaker,
            )
            for start, end, label, probabilities in decided
        ]

    def _silence(self, start, end):
        return Segment(
            self._seconds(start),
            self._seconds(end),
            SILENCE,
            None,
            self.regions.mean_probability(start, end),
            self.speaker,
        )

    def _seconds(self, sample):
        return self.offset + sample / self.sample_rate

    def _notes(self):
        where = "" if self.speaker is None else f" in the turn of {self.speaker}"
        if self.total == 0:
            self.notes.append(f"empty audio{where} (0 samples): empty timeline")
        elif self.regions.regions == 0:
            if self.peak < SILENT_PEAK:
                self.notes.append(
                    f"silent{where} (peak amplitude {self.peak:.3g}): no speech"
                )
            else:
                self.notes.append(
                    f"no speech found{where} by the {self.vad.name} VAD "
                    f"(--vad-threshold {self.options.vad_threshold}"
                    + (
                        f", --energy-threshold {self.options.energy_threshold_db} dBFS"
                        if self.vad.name == "energy"
                        else ""
                    )
                    + ")"
                )

    @property
    def seconds(self):
        """Seconds of audio received."""
        return self.total / self.sample_rate


@dataclass
class Timeline:
    """The emotion timeline of one recording.

    Attributes
    ----------
    name : str
        The file (or stream) it belongs to.
    duration : float
        Seconds.
    segments : list of Segment
        In time order (by turn start first, with speaker turns).
    notes : list of str
        What the user should know (no speech found, silent, ...).
    labels : list of str
        The model's classes.
    levels : numpy.ndarray
        RMS level (dBFS) of each VAD frame, for the plot.
    frame_seconds : float
        Seconds per level.
    windows : list of (float, float, numpy.ndarray)
        Every classified window: start, end, probabilities (before
        smoothing).
    options : TimelineOptions
    """

    name: str
    duration: float
    segments: list
    notes: list
    labels: list
    levels: np.ndarray
    frame_seconds: float
    windows: list
    options: TimelineOptions

    def summary(self):
        """See :func:`summary`."""
        return summary(self)


def summary(timeline):
    """Share of time per label, speech time, number of emotion changes.

    Changes count consecutive speech segments (silence skipped) of
    different labels, per speaker when turns were given.

    Example
    -------
    >>> segs = [Segment(0, 2, "neu"), Segment(2, 3, SILENCE), Segment(3, 4, "ang")]
    >>> t = Timeline("a.wav", 4.0, segs, [], ["neu", "ang"], np.zeros(0), 0.032,
    ...              [], TimelineOptions())
    >>> summary(t)["share"], summary(t)["changes"]
    ({'neu': 0.5, 'silence': 0.25, 'ang': 0.25}, 1)
    """
    share, changes, last = {}, 0, {}
    speech = 0.0
    for segment in timeline.segments:
        share[segment.label] = share.get(segment.label, 0.0) + segment.duration
        if segment.is_speech:
            speech += segment.duration
            previous = last.get(segment.speaker)
            if previous is not None and previous != segment.label:
                changes += 1
            last[segment.speaker] = segment.label
    total = timeline.duration or 1.0
    return {
        "file": timeline.name,
        "duration": round(timeline.duration, 3),
        "speech_seconds": round(speech, 3),
        "segments": sum(s.is_speech for s in timeline.segments),
        "changes": changes,
        "share": {label: round(t / total, 4) for label, t in share.items()},
        "notes": list(timeline.notes),
        "options": asdict(timeline.options),
    }


def file_timeline(recognizer, path, options=None, turns=None, block_seconds=10.0):
    """The timeline of a file of any length, read in blocks.

    Arguments
    ---------
    recognizer : EmotionRecognizer
    path : str or os.PathLike
    options : TimelineOptions or None
    turns : list of (float, float, str) or None
        Speaker turns ``(start, end, speaker)`` in seconds: the timeline is
        made per turn, each segment carrying its speaker.
    block_seconds : float
        Seconds of the file read at a time.

    Raises
    ------
    sser_lobes.errors.AudioError
        Naming the file: missing, unreadable, non-finite samples.
    """
    options = options or TimelineOptions()
    blocks = FileBlocks(path, recognizer.sample_rate, block_seconds)
    parts = [(None, None, None)] if not turns else turns
    segments, notes, windows, levels = [], [], [], []
    for start, end, speaker in parts:
        if start is not None:
            if start >= blocks.info.duration:
                notes.append(
                    f"the turn of {speaker} at {start:.2f} s starts after the end "
                    f"of the file ({blocks.info.duration:.2f} s)"
                )
                continue
            part = FileBlocks(path, recognizer.sample_rate, block_seconds, start, end)
        else:
            part = blocks
        stream = TimelineStream(
            recognizer, options, offset=start or 0.0, speaker=speaker
        )
        for block in part:
            stream.push(block)
        stream.finish()
        segments += stream.segments
        notes += stream.notes
        windows += stream.window_probabilities
        if start is None:
            levels = np.asarray(stream.vad.levels, dtype=np.float32)
        if part.truncated_bytes:
            notes.append(
                f"the file ended inside a frame ({part.truncated_bytes} bytes)"
            )
    if turns:
        segments.sort(key=lambda s: (s.start, s.speaker or ""))
        levels = _file_levels(path, recognizer.sample_rate, block_seconds)
    return Timeline(
        name=str(path),
        duration=blocks.info.duration,
        segments=segments,
        notes=notes,
        labels=list(recognizer.labels),
        levels=levels,
        frame_seconds=FRAME_SECONDS,
        windows=windows,
        options=options,
    )


def _file_levels(path, sample_rate, block_seconds):
    """Frame levels of a whole file (for the plot of a per-turn timeline)."""
    from sser_lobes.dataio.vad import NoVAD

    vad = NoVAD(sample_rate)
    for block in FileBlocks(path, sample_rate, block_seconds):
        vad.push(block.numpy())
    vad.flush()
    return np.asarray(vad.levels, dtype=np.float32)


def with_options(options, **changes):
    """``options`` with some fields changed (None values ignored).

    Example
    -------
    >>> with_options(TimelineOptions(), vad="energy", hop=None).vad
    'energy'
    """
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(options or TimelineOptions(), **changes)
