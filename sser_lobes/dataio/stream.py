"""Audio in blocks: long files and live streams at the model's rate, in
constant memory.

A recording of hours is never read whole. :class:`FileBlocks` reads a file
block by block with soundfile, :class:`PcmStream` reads raw PCM or a WAV
stream from a pipe (``arecord -f S16_LE -r 16000 | ...``); both downmix each
block to mono (:func:`sser_lobes.dataio.audio.downmix`) and resample it with
a :class:`StreamResampler`, which gives the samples that resampling the
whole signal at once gives (to float rounding), so the block size never
changes a result::

    for block in FileBlocks("meeting.flac", sample_rate=16000):
        ...  # 1-D float32 tensors at 16 kHz, ~10 s each

Only one block and the resampler's few hundred samples of context are held
at a time, whatever the file's length.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import soundfile
import torch

from sser_lobes.dataio.audio import downmix, resample
from sser_lobes.errors import AudioError

__all__ = [
    "FileBlocks",
    "PcmStream",
    "StreamResampler",
    "open_stream",
    "SAMPLE_FORMATS",
]

#: Raw sample formats of :class:`PcmStream`: name -> (numpy dtype, scale).
SAMPLE_FORMATS = {
    "s16le": ("<i2", 1 / 32768.0),
    "s32le": ("<i4", 1 / 2147483648.0),
    "f32le": ("<f4", 1.0),
    "u8": ("u1", None),
    "s24le": ("s24", 1 / 8388608.0),
}

#: Input samples of context kept on each side of a resampled block, in
#: units of the reduced input rate's period; far more than the kernel of
#: torchaudio's resampler (6 zero crossings) reaches.
_CONTEXT_SAMPLES = 256


class StreamResampler:
    """Resample a signal that arrives in pieces, as if it came whole.

    Each :meth:`push` returns the output samples whose filter support is
    complete; :meth:`flush` returns the rest at the end. The concatenation
    equals :func:`sser_lobes.dataio.audio.resample` of the whole signal
    (to float rounding: the same kernel runs on each piece with enough
    context on both sides), and the total length is
    ``ceil(n * new_freq / orig_freq)`` as for the whole signal.

    Arguments
    ---------
    orig_freq, new_freq : int
        Input and output rates in Hz.

    Example
    -------
    >>> signal = np.random.default_rng(0).standard_normal(44100).astype("float32")
    >>> stream = StreamResampler(44100, 16000)
    >>> pieces = [stream.push(signal[i : i + 5000]) for i in range(0, 44100, 5000)]
    >>> joined = torch.cat(pieces + [stream.flush()])
    >>> whole = resample(torch.from_numpy(signal), 44100, 16000)
    >>> joined.shape == whole.shape, bool((joined - whole).abs().max() < 1e-5)
    (True, True)
    """

    def __init__(self, orig_freq, new_freq):
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        gcd = math.gcd(self.orig_freq, self.new_freq)
        self._in_unit, self._out_unit = self.orig_freq // gcd, self.new_freq // gcd
        units = max(1, math.ceil(_CONTEXT_SAMPLES / self._in_unit))
        width = 7 * self.orig_freq / min(self.orig_freq, self.new_freq) + 2
        units = max(units, math.ceil(width / self._in_unit))
        self._context = units * self._in_unit
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # input index of _buffer[0]
        self._next = 0  # first input index (a unit multiple) not yet output
        self.held_samples = 0  # largest buffer held, for memory checks

    @property
    def passthrough(self):
        return self.orig_freq == self.new_freq

    def push(self, samples):
        """Add input samples (1-D float32); return the outputs now complete."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.passthrough:
            return torch.from_numpy(samples.copy())
        self._buffer = np.concatenate([self._buffer, samples])
        self.held_samples = max(self.held_samples, len(self._buffer))
        available = self._offset + len(self._buffer)
        stop = (available - self._context) // self._in_unit * self._in_unit
        if stop <= self._next:
            return torch.zeros(0)
        out = self._run(stop)
        self._next = stop
        keep = self._next - self._context - self._offset
        if keep > 0:
            self._buffer = self._buffer[keep:]
            self._offset += keep
        return out

    def flush(self):
        """The remaining outputs, at the end of the signal."""
        if self.passthrough:
            return torch.zeros(0)
        end = self._offset + len(self._buffer)
        if end <= self._next:
            return torch.zeros(0)
        out = self._run(end, last=True)
        self._next = end
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = end
        return out

    def _run(self, stop, last=False):
        left = min(self._context, self._next)
        first = self._next - left - self._offset
        end = len(self._buffer) if last else stop + self._context - self._offset
        piece = torch.from_numpy(np.ascontiguousarray(self._buffer[first:end]))
        out = resample(piece, self.orig_freq, self.new_freq)
        skip = left // self._in_unit * self._out_unit
        if last:
            count = math.ceil((stop - self._next) * self.new_freq / self.orig_freq)
        else:
            count = (stop - self._next) // self._in_unit * self._out_unit
        return out[skip : skip + count].contiguous()


class _Blocks:
    """Shared by the readers: downmix, check, resample, count."""

    def __init__(self, name, source_rate, sample_rate):
        self.name = str(name)
        self.source_rate = int(source_rate)
        self.sample_rate = int(sample_rate)
        self.resampler = StreamResampler(self.source_rate, self.sample_rate)
        self.frames_read = 0  # at the source rate
        self.truncated_bytes = 0  # a stream that stopped inside a frame

    def _convert(self, data):
        """Float ``[frames, channels]`` at the source rate -> output samples."""
        finite = np.isfinite(data).all(axis=1)
        if not finite.all():
            first = self.frames_read + int(np.argmin(finite))
            raise AudioError(
                self.name,
                f"non-finite sample(s) (NaN or inf), the first at sample {first} "
                f"({first / self.source_rate:.3f} s)",
            )
        self.frames_read += data.shape[0]
        return self.resampler.push(downmix(data))

    def _end(self):
        return self.resampler.flush()


class FileBlocks(_Blocks):
    """A file (or its part ``[start, end)`` s) read in blocks, mono, resampled.

    Iterating yields 1-D float32 tensors at ``sample_rate``; the blocks are
    about ``block_seconds`` long (the last ones may be shorter or empty).
    Only one block of the file is in memory at a time.

    Arguments
    ---------
    path : str or os.PathLike
        Any file libsndfile reads (WAV, FLAC, OGG, MP3, ...).
    sample_rate : int
        Rate of the yielded samples.
    block_seconds : float
        Seconds of the file read at a time.
    start, end : float or None
        Part of the file to read, in seconds (None: from the start / to the
        end).

    Raises
    ------
    AudioError
        Naming the file: missing, unreadable, non-finite samples.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/tone.flac"
    >>> tone = 0.5 * np.sin(np.arange(88200) / 10)
    >>> soundfile.write(path, np.stack([tone, tone], 1), 44100)  # 2 s stereo
    >>> blocks = FileBlocks(path, 16000, block_seconds=0.5)
    >>> pieces = list(blocks)
    >>> sum(len(p) for p in pieces), blocks.info.duration
    (32000, 2.0)
    """

    def __init__(self, path, sample_rate, block_seconds=10.0, start=None, end=None):
        from sser_lobes.dataio.audio import audio_info

        self.path = os.fspath(path)
        self.info = audio_info(self.path)
        super().__init__(self.path, self.info.sample_rate, sample_rate)
        rate = self.info.sample_rate
        self.first = 0 if start is None else max(0, int(round(start * rate)))
        self.stop = self.info.num_frames
        if end is not None:
            self.stop = min(self.stop, int(round(end * rate)))
        self.block_frames = max(1, int(round(block_seconds * rate)))

    @property
    def seconds(self):
        """Duration of the part read, in seconds."""
        return max(0, self.stop - self.first) / self.info.sample_rate

    def __iter__(self):
        try:
            with soundfile.SoundFile(self.path) as handle:
                handle.seek(self.first)
                position = self.first
                while position < self.stop:
                    count = min(self.block_frames, self.stop - position)
                    data = handle.read(count, dtype="float32", always_2d=True)
                    if data.shape[0] == 0:
                        break
                    position += data.shape[0]
                    yield self._convert(data)
        except (soundfile.SoundFileError, RuntimeError, OSError) as error:
            text = getattr(error, "error_string", None) or str(error)
            raise AudioError(
                self.path,
                f"cannot read the audio, the file is corrupt or truncated "
                f"({text.strip()})",
            ) from None
        yield self._end()


def _decode(raw, sample_format):
    """Bytes of whole frames -> float32 samples."""
    dtype, scale = SAMPLE_FORMATS[sample_format]
    if sample_format == "u8":
        return (np.frombuffer(raw, dtype="u1").astype(np.float32) - 128.0) / 128.0
    if sample_format == "s24le":
        bytes3 = np.frombuffer(raw, dtype="u1").reshape(-1, 3).astype(np.int32)
        value = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) * scale
    values = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    return values * scale if scale != 1.0 else values


def _width(sample_format):
    return {"s16le": 2, "s32le": 4, "f32le": 4, "u8": 1, "s24le": 3}[sample_format]


class PcmStream(_Blocks):
    """Raw interleaved PCM from a binary stream (a pipe, standard input).

    Blocks are yielded as soon as they arrive (at most ``block_seconds``
    each, as much as one read of the pipe gives), so a live source is
    processed while it records. A stream that stops inside a frame keeps
    the whole frames it had (``truncated_bytes`` counts the rest).

    Arguments
    ---------
    stream : binary file object
        E.g. ``sys.stdin.buffer``.
    source_rate : int
        Rate of the stream in Hz.
    sample_rate : int
        Rate of the yielded samples.
    channels : int
        Interleaved channels.
    sample_format : str
        One of :data:`SAMPLE_FORMATS` (``s16le``: arecord's ``-f S16_LE``).
    block_seconds : float
        Largest block read at a time.
    name : str
        Names the stream in errors.
    prefix : bytes
        Bytes already read from the stream (e.g. while looking for a header).

    Example
    -------
    >>> import io
    >>> pcm = (np.sin(np.arange(16001) / 5) * 8000).astype("<i2").tobytes()
    >>> blocks = PcmStream(io.BytesIO(pcm[:-1]), 16000, 16000)  # stops mid-frame
    >>> sum(len(b) for b in blocks), blocks.truncated_bytes
    (16000, 1)
    """

    def __init__(
        self,
        stream,
        source_rate,
        sample_rate,
        channels=1,
        sample_format="s16le",
        block_seconds=0.25,
        name="<stdin>",
        prefix=b"",
    ):
        if sample_format not in SAMPLE_FORMATS:
            raise ValueError(
                f"unknown sample format {sample_format!r}: use one of "
                f"{', '.join(SAMPLE_FORMATS)}"
            )
        if int(channels) < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        super().__init__(name, source_rate, sample_rate)
        self.stream = stream
        self.channels = int(channels)
        self.sample_format = sample_format
        self.frame_bytes = _width(sample_format) * self.channels
        self.block_bytes = self.frame_bytes * max(
            1, int(round(block_seconds * self.source_rate))
        )
        self._pending = bytes(prefix)
        self.byte_limit = None  # a WAV stream's declared data size

    def _read(self, size):
        read = getattr(self.stream, "read1", None) or self.stream.read
        return read(size)

    def __iter__(self):
        remaining = self.byte_limit
        while True:
            want = self.block_bytes - len(self._pending)
            if remaining is not None:
                want = min(want, remaining)
            chunk = self._read(want) if want > 0 else b""
            if remaining is not None:
                remaining -= len(chunk)
            done = not chunk
            raw = self._pending + chunk
            whole = len(raw) // self.frame_bytes * self.frame_bytes
            self._pending = raw[whole:]
            if whole:
                samples = _decode(raw[:whole], self.sample_format)
                yield self._convert(samples.reshape(-1, self.channels))
            if done or remaining == 0:
                break
        self.truncated_bytes = len(self._pending)
        yield self._end()


#: WAV format tags: PCM, IEEE float, WAVE_FORMAT_EXTENSIBLE.
_WAV_PCM, _WAV_FLOAT, _WAV_EXTENSIBLE = 1, 3, 0xFFFE


def _read_exact(stream, size, name):
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise AudioError(name, "the WAV stream ends inside its header")
        data += chunk
    return data


def _wav_stream(stream, sample_rate, name, block_seconds):
    """A :class:`PcmStream` over a WAV stream whose ``RIFF`` was read."""
    header = _read_exact(stream, 8, name)
    if header[4:8] != b"WAVE":
        raise AudioError(name, "a RIFF stream that is not WAVE audio")
    fmt = None
    while True:
        chunk_id, size = struct.unpack("<4sI", _read_exact(stream, 8, name))
        if chunk_id == b"fmt ":
            body = _read_exact(stream, size + (size & 1), name)
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _WAV_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            break
        else:
            _read_exact(stream, size + (size & 1), name)
    if fmt is None:
        raise AudioError(name, "the WAV stream has no fmt chunk before its data")
    tag, channels, rate, bits = fmt
    formats = {
        (_WAV_PCM, 8): "u8",
        (_WAV_PCM, 16): "s16le",
        (_WAV_PCM, 24): "s24le",
        (_WAV_PCM, 32): "s32le",
        (_WAV_FLOAT, 32): "f32le",
    }
    if (tag, bits) not in formats:
        raise AudioError(
            name,
            f"unsupported WAV sample format (format tag {tag}, {bits} bits): "
            "use 8/16/24/32-bit PCM or 32-bit float",
        )
    blocks = PcmStream(
        stream, rate, sample_rate, channels, formats[tag, bits], block_seconds, name
    )
    # Streaming writers declare 0 or the largest size they can: read to the
    # end then; a real size (from a file) is respected.
    if 0 < size < 0x7FFF0000:
        blocks.byte_limit = size
    return blocks


def open_stream(
    stream,
    sample_rate,
    source_rate=16000,
    channels=1,
    sample_format="s16le",
    block_seconds=0.25,
    name="<stdin>",
):
    """The blocks of a binary stream: a WAV stream (it starts with ``RIFF``;
    its header gives the rate, channels and format) or raw PCM as described
    by ``source_rate``, ``channels`` and ``sample_format``.

    Example
    -------
    >>> import io, wave
    >>> buffer = io.BytesIO()
    >>> with wave.open(buffer, "wb") as w:
    ...     w.setnchannels(2); w.setsampwidth(2); w.setframerate(8000)
    ...     w.writeframes(np.zeros(16000, "<i2").tobytes())
    >>> blocks = open_stream(io.BytesIO(buffer.getvalue()), 16000)
    >>> blocks.source_rate, blocks.channels, sum(len(b) for b in blocks)
    (8000, 2, 16000)
    """
    start = b""
    while len(start) < 4:
        chunk = stream.read(4 - len(start))
        if not chunk:
            break
        start += chunk
    if start == b"RIFF":
        return _wav_stream(stream, sample_rate, name, block_seconds)
    return PcmStream(
        stream,
        source_rate,
        sample_rate,
        channels,
        sample_format,
        block_seconds,
        name,
        prefix=start,
    )
