"""Voice activity detection for long recordings and live audio, streaming.

Two frame-level detectors give a speech probability per 32 ms frame
(512 samples at 16 kHz, silero's frame):

* :class:`SileroVAD`: the Silero VAD model that the ``silero-vad`` pip
  package ships inside itself (its batched "sequence" ONNX export, run with
  onnxruntime; nothing is downloaded, no ``torch.jit`` file is loaded). The
  LSTM state and the 64-sample context are carried from one block to the
  next, so the probabilities do not depend on how the audio is cut.
* :class:`EnergyVAD`: the frame's RMS level against a dBFS threshold, for
  when silero-vad is not installed or for clean recordings; no model.

:class:`SpeechRegions` turns the frame probabilities into speech regions
as they arrive: a region starts at a frame at or above ``threshold``, ends
after ``min_silence`` seconds below ``threshold - 0.15`` (hysteresis, as in
silero's own ``get_speech_timestamps``), is kept if it lasts ``min_speech``
seconds, and is padded by ``pad`` seconds on both sides. Feeding the whole
file at once or a live stream block by block gives the same regions::

    vad = make_vad("silero", 16000)
    regions = SpeechRegions(vad.frame_samples, 16000)
    for block in blocks:
        for event in regions.push(vad.push(block)):
            ...  # ("start", sample) / ("end", sample)
"""

from __future__ import annotations

import math
from array import array

import numpy as np

__all__ = [
    "EnergyVAD",
    "NoVAD",
    "SileroVAD",
    "SpeechRegions",
    "VAD_CHOICES",
    "make_vad",
]

#: Detectors by name (``--vad``).
VAD_CHOICES = ("silero", "energy", "none")

#: Seconds per VAD frame (silero's 512 samples at 16 kHz).
FRAME_SECONDS = 0.032


class _FrameVAD:
    """Cuts pushed samples into whole frames; subclasses score frames."""

    name = "?"

    def __init__(self, sample_rate):
        self.sample_rate = int(sample_rate)
        self.frame_samples = int(round(FRAME_SECONDS * self.sample_rate))
        self._rest = np.zeros(0, dtype=np.float32)
        #: RMS level (dBFS) of every frame scored, for plots: 4 bytes a frame
        self.levels = array("f")

    def push(self, samples):
        """Speech probabilities of the whole frames completed by ``samples``
        (1-D float array or tensor): a float32 array, one value per frame."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        count = len(data) // self.frame_samples
        self._rest = data[count * self.frame_samples :].copy()
        if not count:
            return np.zeros(0, dtype=np.float32)
        frames = data[: count * self.frame_samples].reshape(count, -1)
        return self._scored(frames)

    def flush(self):
        """The probability of the last, partial frame (zero-padded), if any."""
        if not len(self._rest):
            return np.zeros(0, dtype=np.float32)
        frame = np.zeros((1, self.frame_samples), dtype=np.float32)
        frame[0, : len(self._rest)] = self._rest
        self._rest = np.zeros(0, dtype=np.float32)
        return self._scored(frame)

    def _scored(self, frames):
        self.levels.extend(frame_levels(frames).tolist())
        return self._score(frames)

    def _score(self, frames):
        raise NotImplementedError


def frame_levels(frames):
    """RMS level in dBFS of each row of ``frames`` (-200 for digital silence).

    Example
    -------
    >>> frame_levels(np.array([[0.1, -0.1], [0.0, 0.0]])).round(1).tolist()
    [-20.0, -200.0]
    """
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


class EnergyVAD(_FrameVAD):
    """Speech where a frame's RMS level exceeds ``threshold_db`` dBFS.

    The probability is a logistic function of the level, 0.5 at the
    threshold and 0.95 at 9 dB above it, so that :class:`SpeechRegions`
    treats both detectors alike.

    Example
    -------
    >>> vad = EnergyVAD(16000, threshold_db=-40)
    >>> loud = 0.1 * np.ones(512)  # -20 dBFS
    >>> quiet = 0.001 * np.ones(512)  # -60 dBFS
    >>> [round(float(p), 3) for p in vad.push(np.concatenate([loud, quiet]))]
    [0.999, 0.001]
    """

    name = "energy"

    def __init__(self, sample_rate, threshold_db=-40.0):
        super().__init__(sample_rate)
        self.threshold_db = float(threshold_db)

    def _score(self, frames):
        level = frame_levels(frames)
        return (1 / (1 + np.exp(-(level - self.threshold_db) / 3.0))).astype(np.float32)


class NoVAD(_FrameVAD):
    """Every frame is speech (``--vad none``): the whole recording is one
    region.

    Example
    -------
    >>> NoVAD(16000).push(np.zeros(1024)).tolist()
    [1.0, 1.0]
    """

    name = "none"

    def _score(self, frames):
        return np.ones(len(frames), dtype=np.float32)


#: silero's sequence model: the frame at 16 kHz and the samples of context.
_SILERO_RATE, _SILERO_FRAME, _SILERO_CONTEXT = 16000, 512, 64
_SILERO_FILE = "silero_vad_16k_sequence.onnx"


def silero_model_file():
    """The path of the ONNX model inside the installed ``silero-vad``
    package; an ImportError says how to install it or what to use instead.

    The package is located, not imported: importing ``silero_vad`` sets
    torch's global thread count to 1 (``silero_vad/model.py``), which would
    slow the emotion model down.

    Example
    -------
    >>> silero_model_file().endswith("silero_vad_16k_sequence.onnx")
    True
    """
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("silero_vad")
    if spec is None or not spec.origin:
        raise ImportError(
            "the silero VAD needs the silero-vad package (pip install "
            "silero-vad onnxruntime); or use the energy VAD (--vad energy)"
        )
    path = Path(spec.origin).parent / "data" / _SILERO_FILE
    if not path.is_file():
        raise ImportError(
            f"the installed silero-vad package has no {_SILERO_FILE} (a version "
            "before 6.2?): pip install 'silero-vad>=6.2', or use --vad energy"
        )
    return str(path)


class SileroVAD(_FrameVAD):
    """Silero VAD (the model inside the ``silero-vad`` package), streaming.

    Runs the package's batched ONNX export with onnxruntime on one thread:
    one call per pushed block, the LSTM state and the context carried
    over, so the probabilities are those of the whole signal at once. The
    input must be 16 kHz (the model's rate; the timeline resamples to the
    emotion model's rate, which is 16 kHz for every SSL encoder).

    Example
    -------
    >>> vad = SileroVAD(16000)
    >>> probs = vad.push(np.zeros(16000, dtype="float32"))
    >>> len(probs), bool(probs.max() < 0.5)
    (31, True)
    """

    name = "silero"

    def __init__(self, sample_rate=16000):
        if int(sample_rate) != _SILERO_RATE:
            raise ValueError(
                f"the silero VAD runs at {_SILERO_RATE} Hz, the audio is at "
                f"{sample_rate} Hz: use --vad energy"
            )
        super().__init__(sample_rate)
        path = silero_model_file()
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(
                "the silero VAD needs onnxruntime (pip install onnxruntime); or "
                "use the energy VAD (--vad energy)"
            ) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._hidden = np.zeros((1, 1, 128), dtype=np.float32)
        self._cell = np.zeros((1, 1, 128), dtype=np.float32)
        self._previous = np.zeros(_SILERO_CONTEXT, dtype=np.float32)

    def _score(self, frames):
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        contexts = np.empty((len(frames), _SILERO_CONTEXT), dtype=np.float32)
        contexts[0] = self._previous
        contexts[1:] = frames[:-1, -_SILERO_CONTEXT:]
        self._previous = frames[-1, -_SILERO_CONTEXT:].copy()
        probabilities, self._hidden, self._cell = self.session.run(
            ["speech_probs", "hn", "cn"],
            {
                "input": np.concatenate([contexts, frames], axis=1),
                "h": self._hidden,
                "c": self._cell,
            },
        )
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)


def make_vad(kind, sample_rate, energy_threshold_db=-40.0):
    """The detector named ``kind`` (one of :data:`VAD_CHOICES`).

    Example
    -------
    >>> make_vad("energy", 16000).name, make_vad("none", 16000).frame_samples
    ('energy', 512)
    """
    if kind == "silero":
        return SileroVAD(sample_rate)
    if kind == "energy":
        return EnergyVAD(sample_rate, energy_threshold_db)
    if kind == "none":
        return NoVAD(sample_rate)
    raise ValueError(f"unknown VAD {kind!r}: use one of {', '.join(VAD_CHOICES)}")


class SpeechRegions:
    """Speech regions from frame probabilities, decided as frames arrive.

    :meth:`push` takes the next frames' probabilities and returns events:
    ``("start", sample)`` once a region is certain (it has lasted
    ``min_speech``), ``("end", sample)`` once it is over (``min_silence``
    below the lower threshold). Regions are padded by ``pad`` on both sides;
    ``pad`` may be at most half of ``min_silence``, so padded regions never
    overlap and an end is final when it is announced. :meth:`finish` ends
    the last region at the end of the audio.

    While a region is open, :attr:`speech_through` is the sample up to
    which it is certain to last (its end will not be earlier).

    The probabilities of every frame are kept as running sums
    (:meth:`mean_probability`), 8 bytes per 32 ms frame (1.8 MB for 2 h).

    Arguments
    ---------
    frame_samples : int
        Samples per frame.
    sample_rate : int
        Their rate.
    threshold : float
        A frame at or above it is speech.
    min_speech : float
        Shorter regions (before padding) are dropped, in seconds.
    min_silence : float
        Silence that ends a region, in seconds.
    pad : float
        Added to both sides of a region, in seconds.
    negative_threshold : float or None
        A region ends on frames below it (default ``threshold - 0.15``).

    Example
    -------
    >>> regions = SpeechRegions(512, 16000, min_speech=0.05, min_silence=0.1,
    ...                         pad=0.0)
    >>> probs = [0.0] * 5 + [0.9] * 10 + [0.0] * 10
    >>> regions.push(np.array(probs)) + regions.finish(25 * 512)
    [('start', 2560), ('end', 7680)]
    """

    def __init__(
        self,
        frame_samples,
        sample_rate,
        threshold=0.5,
        min_speech=0.25,
        min_silence=0.1,
        pad=0.03,
        negative_threshold=None,
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"the VAD threshold must be in (0, 1], got {threshold}")
        for value, what in (
            (min_speech, "the minimum speech duration"),
            (min_silence, "the minimum silence duration"),
            (pad, "the speech padding"),
        ):
            if not value >= 0:
                raise ValueError(f"{what} must be >= 0 seconds, got {value}")
        if pad > min_silence / 2:
            raise ValueError(
                f"the speech padding ({pad} s) must be at most half the minimum "
                f"silence ({min_silence} s), or padded regions would overlap"
            )
        self.frame_samples = int(frame_samples)
        self.sample_rate = int(sample_rate)
        self.threshold = float(threshold)
        if negative_threshold is None:
            negative_threshold = max(threshold - 0.15, 0.01)
        self.negative_threshold = float(negative_threshold)
        frame_seconds = self.frame_samples / self.sample_rate
        self.min_speech_frames = max(1, math.ceil(min_speech / frame_seconds - 1e-9))
        self.min_silence_frames = max(1, math.ceil(min_silence / frame_seconds - 1e-9))
        self.pad_samples = int(round(pad * self.sample_rate))
        self.frames = 0
        self._sums = array("d", [0.0])
        self._start = None  # first speech frame of the open region
        self._silence_from = None  # first frame of the current low run
        self._confirmed = False
        self._last_end = 0  # end (samples) of the last region
        self.regions = 0

    # ----------------------------------------------------------- probabilities
    def mean_probability(self, start, end):
        """Mean speech probability of the frames overlapping ``[start, end)``
        (samples; 0.0 for an empty span or before any frame).

        Example
        -------
        >>> regions = SpeechRegions(512, 16000)
        >>> _ = regions.push(np.array([1.0, 0.0, 0.5]))
        >>> regions.mean_probability(0, 1024), regions.mean_probability(512, 1536)
        (0.5, 0.25)
        """
        first = max(0, int(start) // self.frame_samples)
        last = min(self.frames, -(-int(end) // self.frame_samples))
        if last <= first:
            return 0.0
        return (self._sums[last] - self._sums[first]) / (last - first)

    # ----------------------------------------------------------------- regions
    @property
    def open(self):
        """Whether a region is open and certain (its start announced)."""
        return self._start is not None and self._confirmed

    @property
    def region_start(self):
        """First sample of the open region (padded), or None."""
        if self._start is None:
            return None
        return max(self._last_end, self._start * self.frame_samples - self.pad_samples)

    @property
    def speech_through(self):
        """Sample up to which the open region certainly lasts (None if no
        region is open)."""
        if not self.open:
            return None
        last = self._silence_from if self._silence_from is not None else self.frames
        return last * self.frame_samples + self.pad_samples

    @property
    def earliest_start(self):
        """No region can start before this sample any more: the audio before
        it is not needed for regions to come."""
        if self._start is not None:
            return self.region_start
        return max(self._last_end, self.frames * self.frame_samples - self.pad_samples)

    def push(self, probabilities):
        """Add the next frames' probabilities; return the events decided."""
        events = []
        for p in np.asarray(probabilities, dtype=np.float64).reshape(-1).tolist():
            self._sums.append(self._sums[-1] + p)
            index = self.frames
            self.frames += 1
            if p >= self.threshold:
                self._silence_from = None
                if self._start is None:
                    self._start = index
            elif self._start is not None and p < self.negative_threshold:
                if self._silence_from is None:
                    self._silence_from = index
                if index + 1 - self._silence_from >= self.min_silence_frames:
                    events += self._close(self._silence_from)
                    continue
            if (
                self._start is not None
                and not self._confirmed
                and self._speech_frames() >= self.min_speech_frames
            ):
                self._confirmed = True
                events.append(("start", self.region_start))
        return events

    def _speech_frames(self):
        last = self._silence_from if self._silence_from is not None else self.frames
        return last - self._start

    def _close(self, end_frame, total=None):
        events = []
        if self._start is not None:
            if self._confirmed or end_frame - self._start >= self.min_speech_frames:
                if not self._confirmed:
                    events.append(("start", self.region_start))
                end = end_frame * self.frame_samples + self.pad_samples
                if total is not None:
                    end = min(end, total)
                events.append(("end", end))
                self._last_end = end
                self.regions += 1
        self._start = None
        self._silence_from = None
        self._confirmed = False
        return events

    def finish(self, total_samples):
        """End the open region (if any) at the end of the audio
        (``total_samples`` long); return the events."""
        if self._start is None:
            return []
        end_frame = self._silence_from if self._silence_from is not None else None
        if end_frame is None:
            # speech to the end: the region ends with the audio
            events = self._close(self.frames, total=total_samples)
            if events and events[-1][0] == "end":
                events[-1] = ("end", int(total_samples))
                self._last_end = int(total_samples)
            return events
        return self._close(end_frame, total=total_samples)
