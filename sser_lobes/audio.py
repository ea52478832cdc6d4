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
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile
import torch

__all__ = [
    "AudioError",
    "AudioInfo",
    "audio_info",
    "check_audio_info",
    "read_audio",
]


class AudioError(ValueError):
    """A problem with an audio file; the message names the file and the problem.

    Arguments
    ---------
    path : str or os.PathLike
        The file concerned.
    problem : str
        What is wrong with it (and, where useful, what was expected).

    Example
    -------
    >>> err = AudioError("clip.wav", "file not found")
    >>> str(err)
    'clip.wav: file not found'
    >>> err.path, err.problem
    ('clip.wav', 'file not found')
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, path, problem=None):
        if problem is None:
            # Rebuilt from a message alone: what torch's DataLoader does when a
            # worker raised it ("Caught AudioError in DataLoader worker ...").
            # The original "<path>: <problem>" line is the message's last line.
            message = str(path)
            lines = [line for line in message.splitlines() if line.strip()]
            last = lines[-1] if lines else message
            last = last.split("AudioError: ", 1)[-1]
            self.path, _, self.problem = last.partition(": ")
            super().__init__(last)
            return
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Keep the exception picklable (e.g. raised inside a DataLoader worker).
        return (type(self), (self.path, self.problem))


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
    sser_lobes.audio.AudioError: ...missing.wav: file not found
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
    sser_lobes.audio.AudioError: ...narrow.wav: sample rate is 8000 Hz...
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
    sser_lobes.audio.AudioError: ...tone.wav: too short: 0.010 s (160 samples), ...
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        data, found_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioError(
            path,
            f"cannot read the audio, the file is corrupt, truncated or not audio "
            f"({_soundfile_problem(exc)})",
        ) from None
    num_frames, channels = data.shape
    _check(path, num_frames, int(found_rate), channels, sample_rate, min_samples)
    samples = np.ascontiguousarray(data[:, 0])
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(np.size(finite) - np.count_nonzero(finite))
        first = int(np.argmin(finite))
        raise AudioError(
            path,
            f"{bad} non-finite sample(s) (NaN or inf), the first at sample {first} "
            f"({first / found_rate:.3f} s)",
        )
    return torch.from_numpy(samples)
