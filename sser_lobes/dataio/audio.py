"""Audio checks shared by data preparation and training.

Every problem is reported as an :class:`AudioError` whose message starts with
the file's path and then says what is wrong and what was expected, e.g.::

    /data/Ses01F_impro01_F000.wav: sample rate is 8000 Hz, expected 16000 Hz

The defaults match the self-supervised encoders used by the recipes: 16 kHz
mono audio of at least 400 samples (25 ms at 16 kHz, the receptive field of
the wav2vec 2.0 / HuBERT / WavLM convolutional feature encoder; shorter input
makes the encoder fail or produce no frame at all).

:func:`audio_info` and :func:`check_audio_info` read the file header only (fast:
data preparation checks thousands of files with them); :func:`read_audio`
reads the samples and runs the same checks on the data actually read.

Training data must already be 16 kHz mono, but the users of a trained model
give whatever they have: :func:`load_audio_any` (files) and
:func:`load_audio_array` (in-memory arrays) accept any sampling rate and any
number of channels, downmix to mono by averaging the channels, resample to
the model's rate, and reject audio a model cannot classify meaningfully
(empty, too short, non-finite or silent).
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass

import numpy as np
import soundfile
import torch

from sser_lobes.errors import AudioError

__all__ = [
    "AudioError",
    "AudioInfo",
    "audio_info",
    "check_audio_info",
    "downmix",
    "load_audio_any",
    "load_audio_array",
    "read_audio",
    "resample",
    "resampler_name",
]


@dataclass(frozen=True)
class AudioInfo:
    """Header information of an audio file.

    Arguments
    ---------
    num_frames : int
        Number of samples per channel.
    sample_rate : int
        Sampling rate in Hz.
    channels : int
        Number of channels.
    duration : float
        Duration in seconds (``num_frames / sample_rate``).

    Example
    -------
    >>> info = AudioInfo(num_frames=16000, sample_rate=16000, channels=1, duration=1.0)
    >>> info.duration
    1.0
    """

    num_frames: int
    sample_rate: int
    channels: int
    duration: float


def _soundfile_problem(exc):
    """Return libsndfile's own description of an error, without the path."""
    text = getattr(exc, "error_string", None) or str(exc)
    return text.strip()


def _check_exists(path):
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, expected an audio file")


def _read_samples(path, start=0, stop=None):
    """The samples ``[start, stop)`` (all by default) of an audio file, float32
    ``[frames, channels]``, and its rate; a missing, unreadable or corrupt
    file is an :class:`AudioError`."""
    _check_exists(path)
    try:
        data, found_rate = soundfile.read(
            path, start=start, stop=stop, dtype="float32", always_2d=True
        )
    except (soundfile.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioError(
            path,
            f"cannot read the audio, the file is corrupt, truncated or not audio "
            f"({_soundfile_problem(exc)})",
        ) from None
    return data, found_rate


def _check_finite(name, data, rate):
    """Raise an :class:`AudioError` naming ``name`` if a frame of ``data``
    ``[frames, channels]`` holds NaN or inf."""
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        first = int(np.argmin(finite))
        raise AudioError(
            name,
            f"{bad} non-finite sample(s) (NaN or inf), the first at sample {first} "
            f"({first / rate:.3f} s)",
        )


def audio_info(path):
    """Read the header of an audio file (the samples are not read).

    Arguments
    ---------
    path : str or os.PathLike
        Audio file in any format libsndfile reads (WAV, FLAC, ...).

    Returns
    -------
    AudioInfo
        Number of frames, sample rate, channels and duration in seconds.

    Raises
    ------
    AudioError
        If the file is missing, is not an audio file, or its header is
        corrupt or truncated.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = tmp.name + "/tone.wav"
    >>> soundfile.write(path, np.zeros(8000, dtype="int16"), 16000)
    >>> audio_info(path)
    AudioInfo(num_frames=8000, sample_rate=16000, channels=1, duration=0.5)
    >>> audio_info(tmp.name + "/missing.wav")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.AudioError: ...missing.wav: file not found
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        info = soundfile.info(path)
    except (soundfile.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioError(
            path,
            f"cannot read the audio header, the file is corrupt, truncated or "
            f"not audio ({_soundfile_problem(exc)})",
        ) from None
    num_frames = int(info.frames)
    sample_rate = int(info.samplerate)
    if sample_rate <= 0:
        raise AudioError(path, f"invalid sample rate {sample_rate} Hz in the header")
    return AudioInfo(
        num_frames=num_frames,
        sample_rate=sample_rate,
        channels=int(info.channels),
        duration=num_frames / sample_rate,
    )


def _check(path, num_frames, found_rate, channels, sample_rate, min_samples):
    """Raise :class:`AudioError` if the audio does not meet the requirements."""
    if num_frames == 0:
        raise AudioError(path, "empty audio file (0 samples)")
    if channels != 1:
        kind = "stereo (2 channels)" if channels == 2 else f"{channels} channels"
        raise AudioError(
            path, f"{kind}, expected mono (convert with e.g. `sox in.wav -c 1 out.wav`)"
        )
    if sample_rate is not None and found_rate != sample_rate:
        raise AudioError(
            path,
            f"sample rate is {found_rate} Hz, expected {sample_rate} Hz "
            f"(resample the audio first)",
        )
    if min_samples and num_frames < min_samples:
        raise AudioError(
            path,
            f"too short: {num_frames / found_rate:.3f} s ({num_frames} samples), "
            f"the minimum is {min_samples} samples "
            f"({min_samples / found_rate:.3f} s at {found_rate} Hz)",
        )


def check_audio_info(path, sample_rate=16000, min_samples=400):
    """Read an audio header and check it is usable (the samples are not read).

    Arguments
    ---------
    path : str or os.PathLike
        Audio file.
    sample_rate : int or None
        Required sampling rate in Hz (``None``: any rate).
    min_samples : int
        Minimum number of samples (default 400: 25 ms at 16 kHz, the
        receptive field of the wav2vec 2.0 feature encoder; 0 disables).

    Returns
    -------
    AudioInfo
        The header information.

    Raises
    ------
    AudioError
        Missing or unreadable file, empty audio, more than one channel, wrong
        sampling rate, or fewer than ``min_samples`` samples.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = tmp.name + "/narrow.wav"
    >>> soundfile.write(path, np.zeros(4000, dtype="int16"), 8000)
    >>> check_audio_info(path)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.AudioError: ...narrow.wav: sample rate is 8000 Hz...
    >>> check_audio_info(path, sample_rate=8000).duration
    0.5
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    info = audio_info(path)
    _check(
        path, info.num_frames, info.sample_rate, info.channels, sample_rate, min_samples
    )
    return info


def read_audio(path, sample_rate=16000, min_samples=400):
    """Read a mono audio file as a 1-D float32 tensor, with the same checks.

    Integer PCM files are scaled to [-1, 1); floating-point files are
    returned as stored. The checks of :func:`check_audio_info` are done on
    the data actually read (not on a second header read), and non-finite
    samples (NaN, inf) are rejected.

    Arguments
    ---------
    path : str or os.PathLike
        Audio file.
    sample_rate : int or None
        Required sampling rate in Hz (``None``: any rate).
    min_samples : int
        Minimum number of samples (0 disables the check).

    Returns
    -------
    torch.Tensor
        Waveform, shape ``[num_samples]``, dtype float32.

    Raises
    ------
    AudioError
        Missing, unreadable, empty, multi-channel, wrong-rate, too short or
        non-finite audio.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = tmp.name + "/tone.wav"
    >>> t = np.arange(16000) / 16000
    >>> soundfile.write(path, 0.5 * np.sin(2 * np.pi * 220 * t), 16000, "PCM_16")
    >>> wav = read_audio(path)
    >>> wav.shape, wav.dtype, bool(wav.abs().max() <= 1)
    (torch.Size([16000]), torch.float32, True)
    >>> soundfile.write(path, np.zeros(160), 16000, "PCM_16")  # 10 ms
    >>> read_audio(path)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.AudioError: ...tone.wav: too short: 0.010 s (160 samples), ...
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    data, found_rate = _read_samples(path)
    num_frames, channels = data.shape
    _check(path, num_frames, int(found_rate), channels, sample_rate, min_samples)
    _check_finite(path, data, found_rate)
    return torch.from_numpy(np.ascontiguousarray(data[:, 0]))


# ---------------------------------------------------------------------------
# Inference: any user file or array -> mono float32 at the model's rate
# ---------------------------------------------------------------------------

#: Peak amplitude under which user audio is silent (about -80 dBFS): the
#: recognizer refuses such a file, a timeline says it has no speech.
SILENT_PEAK = 1e-4

#: Largest channel count :func:`load_audio_array` infers from a 2-D shape.
MAX_INFERRED_CHANNELS = 32


def _torchaudio_resample():
    """Return ``torchaudio.functional.resample``, or ``None`` if unavailable."""
    try:
        from torchaudio.functional import resample as ta_resample
    except Exception:  # ImportError, or a broken binary install (OSError)
        return None
    return ta_resample


def _positive_int_rate(value, what):
    """Return ``value`` as a positive int, or raise ValueError naming ``what``."""
    try:
        if isinstance(value, float | np.floating):
            if not float(value).is_integer():
                raise TypeError
            value = int(value)
        rate = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{what} must be a whole number of Hz, got {value!r}"
        ) from None
    if rate <= 0:
        raise ValueError(f"{what} must be positive, got {rate} Hz")
    return rate


def resampler_name():
    """Which resampler :func:`resample` uses here, with its version.

    Two machines (or two installs) with another resampler give another
    waveform from the same file: the feature cache keys its entries on this.

    Example
    -------
    >>> resampler_name().split(" ")[0] in (
    ...     "torchaudio.functional.resample", "scipy.signal.resample_poly")
    True
    """
    if _torchaudio_resample() is not None:
        import torchaudio

        return (
            f"torchaudio.functional.resample {torchaudio.__version__} "
            "(sinc_interp_hann, lowpass_filter_width 6, rolloff 0.99)"
        )
    import scipy

    return f"scipy.signal.resample_poly {scipy.__version__} (kaiser 5.0)"


def resample(wav, orig_freq, new_freq):
    """Resample a 1-D waveform from ``orig_freq`` to ``new_freq`` Hz.

    Uses :func:`torchaudio.functional.resample` (band-limited windowed-sinc
    interpolation; it needs neither torchcodec nor ffmpeg). If torchaudio
    cannot be imported, falls back to :func:`scipy.signal.resample_poly`
    (polyphase filtering with a Kaiser window). Both return
    ``ceil(len(wav) * new_freq / orig_freq)`` samples.

    Arguments
    ---------
    wav : torch.Tensor
        Waveform, shape ``[num_samples]``, floating point.
    orig_freq : int
        Its sampling rate in Hz.
    new_freq : int
        The wanted sampling rate in Hz.

    Returns
    -------
    torch.Tensor
        Resampled waveform, shape ``[ceil(num_samples * new_freq / orig_freq)]``,
        same dtype as ``wav`` (``wav`` itself if the rates are equal).

    Example
    -------
    >>> wav = torch.zeros(8000)
    >>> resample(wav, 8000, 16000).shape
    torch.Size([16000])
    >>> resample(torch.zeros(44100), 44100, 16000).shape
    torch.Size([16000])
    """
    orig_freq = _positive_int_rate(orig_freq, "orig_freq")
    new_freq = _positive_int_rate(new_freq, "new_freq")
    if orig_freq == new_freq:
        return wav
    ta_resample = _torchaudio_resample()
    if ta_resample is not None:
        return ta_resample(wav, orig_freq, new_freq)
    from scipy.signal import resample_poly

    gcd = math.gcd(orig_freq, new_freq)
    out = resample_poly(wav.detach().cpu().numpy(), new_freq // gcd, orig_freq // gcd)
    return torch.from_numpy(np.ascontiguousarray(out)).to(wav.dtype)


def downmix(data):
    """Mono float32 samples of ``data`` (float ``[frames, channels]``).

    The channels are averaged (not summed): that keeps the level of
    correlated channels and cannot clip. Every reader of user audio (whole
    files, segments, arrays, streamed blocks) downmixes with this.

    Example
    -------
    >>> downmix(np.array([[0.5, 0.25], [1.0, 0.0]], dtype=np.float32))
    array([0.375, 0.5  ], dtype=float32)
    """
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0], dtype=np.float32)
    return data.mean(axis=1, dtype=np.float64).astype(np.float32)


def _check_options(sample_rate, min_samples, silence_threshold):
    sample_rate = _positive_int_rate(sample_rate, "sample_rate")
    min_samples = operator.index(min_samples or 0)
    if min_samples < 0:
        raise ValueError(f"min_samples must be >= 0, got {min_samples}")
    if silence_threshold is not None and not silence_threshold >= 0:
        raise ValueError(
            f"silence_threshold must be >= 0 or None, got {silence_threshold!r}"
        )
    return sample_rate, min_samples


def _prepare(name, data, found_rate, sample_rate, min_samples, silence_threshold, what):
    """Check, downmix and resample ``data`` (float32 ``[frames, channels]``).

    ``name`` is the file or array name used in the error messages, ``what``
    says what it is ("audio file" or "audio").
    """
    num_frames = data.shape[0]
    if data.size == 0:
        raise AudioError(name, f"empty {what} (0 samples)")
    _check_finite(name, data, found_rate)
    wav = resample(torch.from_numpy(downmix(data)), found_rate, sample_rate)
    num_samples = wav.numel()
    if min_samples and num_samples < min_samples:
        at = f" at {sample_rate} Hz" if found_rate != sample_rate else ""
        raise AudioError(
            name,
            f"too short: {1000 * num_frames / found_rate:.1f} ms "
            f"({num_frames} samples at {found_rate} Hz), the minimum is "
            f"{1000 * min_samples / sample_rate:.1f} ms "
            f"({min_samples} samples{at})",
        )
    if silence_threshold is not None:
        peak = float(wav.abs().max())
        if peak < silence_threshold:
            mixed = " after downmixing to mono" if data.shape[1] > 1 else ""
            raise AudioError(
                name,
                f"silent: peak amplitude {peak:.3g}{mixed}, "
                f"below {silence_threshold:g}",
            )
    return wav.to(torch.float32).contiguous()


def load_audio_any(
    path, sample_rate=16000, min_samples=400, silence_threshold=SILENT_PEAK
):
    """Load any user audio file for inference: mono, float32, at ``sample_rate``.

    Unlike :func:`read_audio` (training data, which must already be 16 kHz
    mono), this accepts whatever a user has:

    * any format libsndfile reads: WAV (PCM 8/16/24/32 bit, float, double),
      FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, ... (not AAC/M4A: convert those
      first, e.g. ``ffmpeg -i in.m4a out.flac``);
    * any sampling rate, resampled with :func:`resample`;
    * any number of channels, downmixed to mono by averaging the channels.

    Integer PCM is scaled to [-1, 1); floating-point files are returned as
    stored (a float file may hold values beyond [-1, 1]: they are kept).

    Arguments
    ---------
    path : str or os.PathLike
        Audio file.
    sample_rate : int
        Rate of the returned waveform in Hz (the model's rate).
    min_samples : int
        Minimum number of samples *after* resampling (default 400: 25 ms at
        16 kHz, the receptive field of the wav2vec 2.0 feature encoder;
        0 disables the check).
    silence_threshold : float or None
        Audio whose peak absolute amplitude (after downmixing and resampling)
        is below this is rejected as silent (default 1e-4, about -80 dBFS;
        ``None`` disables the check).

    Returns
    -------
    torch.Tensor
        Waveform, shape ``[num_samples]``, dtype float32, at ``sample_rate``.

    Raises
    ------
    AudioError
        Naming the file: missing, a directory, unreadable (corrupt, truncated,
        not audio), empty, non-finite samples (NaN/inf), too short after
        resampling (duration and minimum in ms), or silent.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = tmp.name + "/user.flac"
    >>> t = np.arange(44100) / 44100
    >>> tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    >>> soundfile.write(path, np.stack([tone, tone], axis=1), 44100)  # stereo
    >>> wav = load_audio_any(path)
    >>> wav.shape, wav.dtype
    (torch.Size([16000]), torch.float32)
    >>> soundfile.write(path, np.zeros(44100), 44100)
    >>> load_audio_any(path)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.AudioError: ...user.flac: silent: peak amplitude 0, below 0.0001
    >>> tmp.cleanup()
    """
    sample_rate, min_samples = _check_options(
        sample_rate, min_samples, silence_threshold
    )
    path = os.fspath(path)
    data, found_rate = _read_samples(path)
    found_rate = int(found_rate)
    if found_rate <= 0:
        raise AudioError(path, f"invalid sample rate {found_rate} Hz in the header")
    return _prepare(
        path,
        data,
        found_rate,
        sample_rate,
        min_samples,
        silence_threshold,
        "audio file",
    )


def load_audio_segment(
    path,
    start=None,
    end=None,
    sample_rate=16000,
    min_samples=400,
    silence_threshold=None,
):
    """Load a segment ``[start, end)`` (in seconds) of any audio file.

    Only the segment's frames are read. The file's own rate and channels are
    converted to mono at ``sample_rate`` with the same downmix and resampler
    as :func:`load_audio_any` (which inference uses), so a model sees the
    same waveform in training and at inference.

    Arguments
    ---------
    path : str or os.PathLike
        Audio file (any format and rate libsndfile reads).
    start, end : float or None
        Segment bounds in seconds (None: the start / the end of the file).
    sample_rate : int
        Rate of the returned waveform.
    min_samples : int
        Minimum number of samples after resampling.
    silence_threshold : float or None
        As :func:`load_audio_any` (default None: not checked).

    Returns
    -------
    torch.Tensor
        Waveform ``[num_samples]``, float32, at ``sample_rate``.

    Raises
    ------
    AudioError
        Naming the file: unreadable, a segment outside the file, empty, too
        short, non-finite.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> path = tempfile.mkdtemp() + "/talk.wav"
    >>> noise = np.random.default_rng(0).uniform(-0.5, 0.5, (44100, 2))
    >>> soundfile.write(path, noise, 44100)  # 1 s, stereo, 44.1 kHz
    >>> load_audio_segment(path, 0.25, 0.75).shape  # 0.5 s at 16 kHz
    torch.Size([8000])
    >>> load_audio_segment(path, 0.5, 2.0)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.AudioError: ...talk.wav: segment 0.500-2.000 s ends after...
    """
    sample_rate, min_samples = _check_options(
        sample_rate, min_samples, silence_threshold
    )
    path = os.fspath(path)
    if start is None and end is None:
        return load_audio_any(path, sample_rate, min_samples, silence_threshold)
    info = audio_info(path)
    rate = info.sample_rate
    first = 0 if start is None else int(round(float(start) * rate))
    stop = info.num_frames if end is None else int(round(float(end) * rate))
    span = f"segment {float(start or 0):.3f}-{stop / rate:.3f} s"
    if first < 0 or stop <= first:
        raise AudioError(path, f"{span}: invalid bounds (0 <= start < end needed)")
    if stop > info.num_frames:
        raise AudioError(
            path, f"{span} ends after the end of the file ({info.duration:.3f} s)"
        )
    data, _ = _read_samples(path, first, stop)
    return _prepare(
        f"{path} ({span})",
        data,
        rate,
        sample_rate,
        min_samples,
        silence_threshold,
        "audio segment",
    )


def _as_frames_by_channels(name, array, channels_first):
    """Return ``array`` as a float32 numpy array ``[frames, channels]``."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.is_floating_point():  # incl. bfloat16, which numpy lacks
            array = array.to(torch.float32)
        array = array.numpy()
    array = np.asarray(array)
    kind = array.dtype
    if kind == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif kind == np.int32:
        array = (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif np.issubdtype(kind, np.floating):
        # Always a copy: the returned waveform never shares the caller's memory.
        array = np.array(array, dtype=np.float32)
    else:
        raise AudioError(
            name,
            f"unsupported sample type {kind}, expected float (samples in [-1, 1]) "
            f"or int16/int32 PCM",
        )
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2:
        raise AudioError(
            name,
            f"{array.ndim}-D array of shape {tuple(array.shape)}, expected "
            f"[samples], [samples, channels] or [channels, samples]",
        )
    rows, cols = array.shape
    if channels_first is None:
        if rows == cols and rows > 1:
            raise AudioError(
                name,
                f"ambiguous shape {tuple(array.shape)}: cannot tell channels from "
                f"samples, pass channels_first=True or False",
            )
        channels_first = rows < cols
        if min(rows, cols) > MAX_INFERRED_CHANNELS:
            raise AudioError(
                name,
                f"shape {tuple(array.shape)} does not look like audio: expected "
                f"[samples, channels] or [channels, samples] with at most "
                f"{MAX_INFERRED_CHANNELS} channels (pass channels_first to "
                f"override; a batch of signals must be loaded one at a time)",
            )
    return array.T if channels_first else array


def load_audio_array(
    array,
    source_rate,
    sample_rate=16000,
    name="<array>",
    min_samples=400,
    silence_threshold=1e-4,
    channels_first=None,
):
    """Prepare in-memory audio for inference, like :func:`load_audio_any`.

    Accepted input (numpy array, torch tensor or nested lists):

    * shape ``[samples]`` (mono);
    * shape ``[samples, channels]`` (soundfile's layout) or
      ``[channels, samples]`` (torchaudio's layout). Unless ``channels_first``
      says which, the *smaller* dimension is taken as the channels; a square
      shape, or one whose smaller dimension exceeds 32, is rejected as
      ambiguous;
    * floating-point samples (nominally in [-1, 1], used as given), or int16 /
      int32 PCM (scaled to [-1, 1) like a PCM file).

    The channels are averaged to mono, the audio resampled from
    ``source_rate`` to ``sample_rate``, and the same checks as
    :func:`load_audio_any` applied, the messages naming ``name``.

    Arguments
    ---------
    array : numpy.ndarray or torch.Tensor or list
        The samples.
    source_rate : int
        Their sampling rate in Hz.
    sample_rate : int
        Rate of the returned waveform in Hz.
    name : str
        Name used in error messages (e.g. where the audio came from).
    min_samples : int
        Minimum number of samples after resampling (0 disables the check).
    silence_threshold : float or None
        Minimum peak absolute amplitude (``None`` disables the check).
    channels_first : bool or None
        For 2-D input: ``True`` for ``[channels, samples]``, ``False`` for
        ``[samples, channels]``, ``None`` to infer it from the shape.

    Returns
    -------
    torch.Tensor
        Waveform, shape ``[num_samples]``, dtype float32, at ``sample_rate``
        (a new tensor: the input is never modified).

    Raises
    ------
    AudioError
        Naming ``name``: invalid ``source_rate``, unsupported dtype or shape,
        empty, non-finite, too short after resampling, or silent.

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(8000) / 8000
    >>> stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2)  # [channels, samples]
    >>> load_audio_array(stereo, 8000).shape
    torch.Size([16000])
    >>> load_audio_array(np.zeros(80), 8000, name="mic")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.AudioError: mic: too short: 10.0 ms (80 samples at 8000 Hz), ...
    """
    sample_rate, min_samples = _check_options(
        sample_rate, min_samples, silence_threshold
    )
    name = os.fspath(name)
    try:
        source_rate = _positive_int_rate(source_rate, "source_rate")
    except ValueError as exc:
        raise AudioError(name, f"invalid sample rate: {exc}") from None
    data = _as_frames_by_channels(name, array, channels_first)
    return _prepare(
        name, data, source_rate, sample_rate, min_samples, silence_threshold, "audio"
    )
