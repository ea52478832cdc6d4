"""Audio received as bytes (an HTTP upload): its duration, then its samples.

The same conversion as a file on disk (:func:`sser_lobes.dataio.audio.
load_audio_any`: any format libsndfile reads, downmixed, resampled, the same
checks), with errors naming the upload. :func:`audio_bytes_seconds` reads
the header only, so that a service can refuse audio that is too long before
decoding it.

Example
-------
>>> import io, numpy as np, soundfile
>>> buffer = io.BytesIO()
>>> soundfile.write(buffer, 0.1 * np.ones(8000), 8000, format="WAV")
>>> data = buffer.getvalue()
>>> audio_bytes_seconds(data, "upload.wav")
1.0
>>> load_audio_bytes(data, "upload.wav").shape
torch.Size([16000])
>>> load_audio_bytes(b"not audio", "upload.bin")
Traceback (most recent call last):
...
sser_lobes.errors.AudioError: upload.bin: cannot read the audio: ...
"""

import io

import soundfile

from sser_lobes.dataio.audio import load_audio_array
from sser_lobes.errors import AudioError


def _problem(error):
    text = getattr(error, "error_string", None) or str(error)
    return " ".join(text.split()) or type(error).__name__


def audio_bytes_seconds(data, name):
    """Duration in seconds from the header of audio held in ``data``.

    Raises
    ------
    AudioError
        Naming ``name``: empty, or not audio libsndfile can read.
    """
    if not data:
        raise AudioError(name, "empty upload")
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError) as error:
        raise AudioError(
            name,
            "cannot read the audio: corrupt, truncated or not a format libsndfile "
            f"reads (WAV, FLAC, OGG, MP3, ...) ({_problem(error)})",
        ) from None
    if info.samplerate <= 0:
        raise AudioError(name, f"invalid sample rate {info.samplerate} Hz")
    return info.frames / info.samplerate


def load_audio_bytes(
    data, name, sample_rate=16000, min_samples=400, silence_threshold=1e-4
):
    """Mono float32 samples at ``sample_rate`` of audio held in ``data``.

    Arguments
    ---------
    data : bytes
        The encoded audio (any format libsndfile reads).
    name : str
        Names the audio in errors (e.g. the upload's file name).
    sample_rate, min_samples, silence_threshold :
        As :func:`sser_lobes.dataio.audio.load_audio_any`.

    Returns
    -------
    torch.Tensor
        ``[samples]``.

    Raises
    ------
    AudioError
        Naming ``name``: unreadable, empty, non-finite, too short or silent.
    """
    audio_bytes_seconds(data, name)
    try:
        samples, rate = soundfile.read(
            io.BytesIO(data), dtype="float32", always_2d=True
        )
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError) as error:
        raise AudioError(
            name, f"cannot read the audio: corrupt or truncated ({_problem(error)})"
        ) from None
    return load_audio_array(
        samples,
        rate,
        sample_rate=sample_rate,
        name=name,
        min_samples=min_samples,
        silence_threshold=silence_threshold,
        channels_first=False,
    )
