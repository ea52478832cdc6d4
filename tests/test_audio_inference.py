"""Tests for inference-time audio loading: any format, rate and channel count."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sser_lobes.dataio.audio as audio_module  # noqa: E402
from sser_lobes.dataio.audio import (  # noqa: E402
    load_audio_any,
    load_audio_array,
    read_audio,
    resample,
)
from sser_lobes.errors import AudioError  # noqa: E402

SR = 16000


def _tone(seconds, sr, freq=440.0, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav, sr=SR):
    """Frequency of the largest FFT bin (Hann-windowed)."""
    x = wav.numpy() if isinstance(wav, torch.Tensor) else wav
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[int(np.argmax(spectrum))]


def _rms(x):
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _assert_mono_16k(wav, num_samples):
    assert isinstance(wav, torch.Tensor)
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert wav.numel() == num_samples
    assert torch.isfinite(wav).all()


# --------------------------------------------------------------------------
# Formats, rates and channels
# --------------------------------------------------------------------------


def test_flac_44k_stereo_to_16k_mono(tmp_path):
    path = tmp_path / "user_stereo_44k.flac"
    tone = _tone(1.0, 44100)
    # Channels at different levels: the downmix is their average (0.6+0.2)/2.
    soundfile.write(path, np.stack([1.2 * tone, 0.4 * tone], axis=1), 44100)
    assert soundfile.info(path).channels == 2
    wav = load_audio_any(path)
    _assert_mono_16k(wav, SR)
    assert _peak_hz(wav) == pytest.approx(440, abs=1)
    # Amplitude 0.4 sine -> RMS 0.4 / sqrt(2), away from the resampler's edges.
    assert _rms(wav[800:-800]) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)
    # The waveform matches the ideal 440 Hz tone sampled at 16 kHz.
    expected = _tone(1.0, SR, amp=0.4)
    np.testing.assert_allclose(wav[800:-800], expected[800:-800], atol=5e-3)


def test_wav_8k_upsampled(tmp_path):
    path = tmp_path / "phone_8k.wav"
    soundfile.write(path, _tone(0.5, 8000), 8000, subtype="PCM_16")
    wav = load_audio_any(path)
    _assert_mono_16k(wav, 8000)
    assert _peak_hz(wav) == pytest.approx(440, abs=2)
    expected = _tone(0.5, SR)
    np.testing.assert_allclose(wav[400:-400], expected[400:-400], atol=5e-3)


def test_output_length_rounds_up(tmp_path):
    path = tmp_path / "odd_length.wav"
    soundfile.write(path, np.full(44101, 0.1, dtype=np.float32), 44100)
    # ceil(44101 * 16000 / 44100) = 16001
    assert load_audio_any(path).numel() == 16001


def test_ogg_vorbis(tmp_path):
    path = tmp_path / "voice_note.ogg"
    soundfile.write(path, _tone(1.0, 48000), 48000, format="OGG", subtype="VORBIS")
    assert soundfile.info(path).subtype == "VORBIS"
    wav = load_audio_any(path)
    _assert_mono_16k(wav, SR)
    assert _peak_hz(wav) == pytest.approx(440, abs=1)
    # Lossy, but the level survives.
    assert _rms(wav[800:-800]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize(
    "subtype, atol",
    [("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-7), ("FLOAT", 0), ("DOUBLE", 0)],
)
def test_wav_subtypes_at_16k_unchanged(tmp_path, subtype, atol):
    path = tmp_path / f"clip_{subtype}.wav"
    tone = _tone(0.5, SR)
    soundfile.write(path, tone, SR, subtype=subtype)
    assert soundfile.info(path).subtype == subtype
    wav = load_audio_any(path)
    _assert_mono_16k(wav, 8000)
    np.testing.assert_allclose(wav.numpy(), tone, atol=atol, rtol=0)


def test_float_wav_values_beyond_one_are_kept(tmp_path):
    path = tmp_path / "hot.wav"
    soundfile.write(path, 1.5 * _tone(0.5, SR, amp=1.0), SR, subtype="FLOAT")
    assert float(load_audio_any(path).abs().max()) == pytest.approx(1.5, rel=1e-3)


def test_same_as_read_audio_for_training_format(tmp_path):
    path = tmp_path / "train_like.wav"
    soundfile.write(path, _tone(0.5, SR), SR, subtype="PCM_16")
    assert torch.equal(load_audio_any(path), read_audio(path))


def test_many_channels_and_other_rate(tmp_path):
    path = tmp_path / "surround.wav"
    tone = _tone(0.5, 22050)
    soundfile.write(path, np.stack([tone] * 6, axis=1), 22050, subtype="PCM_16")
    wav = load_audio_any(path, sample_rate=8000)
    assert wav.numel() == 4000
    assert _peak_hz(wav, 8000) == pytest.approx(440, abs=2)


def test_path_types(tmp_path):
    path = tmp_path / "p.wav"
    soundfile.write(path, _tone(0.1, SR), SR)
    assert torch.equal(load_audio_any(path), load_audio_any(str(path)))


def test_scipy_fallback_when_torchaudio_missing(tmp_path, monkeypatch):
    path = tmp_path / "fallback.flac"
    soundfile.write(path, _tone(1.0, 44100), 44100)
    with_torchaudio = load_audio_any(path)
    monkeypatch.setattr(audio_module, "_torchaudio_resample", lambda: None)
    with_scipy = load_audio_any(path)
    _assert_mono_16k(with_scipy, SR)
    assert _peak_hz(with_scipy) == pytest.approx(440, abs=1)
    np.testing.assert_allclose(
        with_scipy[800:-800], with_torchaudio[800:-800], atol=5e-3
    )
    assert resample(torch.zeros(80), 8000, 16000).shape == (160,)


def test_resample_same_rate_is_identity():
    wav = torch.randn(100)
    assert resample(wav, 16000, 16000) is wav
    with pytest.raises(ValueError, match="orig_freq must be positive"):
        resample(wav, 0, 16000)
    with pytest.raises(ValueError, match="whole number"):
        resample(wav, 44100.5, 16000)


# --------------------------------------------------------------------------
# Errors: every one names the file
# --------------------------------------------------------------------------


def _bad_file(tmp_path, case):
    """Return (path, expected substrings) for a bad user file."""
    if case == "corrupt":
        path = tmp_path / "corrupt_user.flac"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path, ["cannot read the audio", "corrupt"]
    if case == "text":
        path = tmp_path / "notes.wav"
        path.write_text("this is not audio\n")
        return path, ["cannot read the audio"]
    if case == "truncated":
        full = tmp_path / "full.flac"
        soundfile.write(full, _tone(1.0, SR), SR)
        path = tmp_path / "truncated_user.flac"
        path.write_bytes(full.read_bytes()[:30])
        return path, ["cannot read the audio"]
    if case == "empty":
        path = tmp_path / "empty_user.wav"
        soundfile.write(path, np.zeros((0, 2), dtype=np.float32), 44100)
        return path, ["empty audio file (0 samples)"]
    if case == "too_short_8k":
        # 10 ms at 8 kHz: 80 samples -> 160 at 16 kHz < 400.
        path = tmp_path / "blip_8k.wav"
        soundfile.write(path, _tone(0.010, 8000), 8000, subtype="PCM_16")
        return path, [
            "too short: 10.0 ms (80 samples at 8000 Hz)",
            "the minimum is 25.0 ms (400 samples at 16000 Hz)",
        ]
    if case == "too_short_16k":
        path = tmp_path / "blip_16k.wav"
        soundfile.write(path, _tone(0.010, SR), SR, subtype="PCM_16")
        return path, ["too short: 10.0 ms (160 samples at 16000 Hz)", "25.0 ms"]
    if case == "nan":
        path = tmp_path / "nan_user.wav"
        data = _tone(0.5, 22050)
        data[300:305] = np.nan
        soundfile.write(path, data, 22050, subtype="FLOAT")
        return path, ["5 non-finite sample(s) (NaN or inf)", "sample 300"]
    if case == "inf_stereo":
        path = tmp_path / "inf_user.wav"
        data = np.stack([_tone(0.5, SR)] * 2, axis=1)
        data[1000, 1] = np.inf
        soundfile.write(path, data, SR, subtype="FLOAT")
        return path, ["1 non-finite sample(s)", "sample 1000 (0.062 s)"]
    if case == "silent":
        path = tmp_path / "all_zero.wav"
        soundfile.write(path, np.zeros(SR, dtype=np.int16), SR, subtype="PCM_16")
        return path, ["silent: peak amplitude 0, below 0.0001"]
    if case == "silent_44k":
        path = tmp_path / "hiss.flac"
        soundfile.write(path, _tone(0.5, 44100, amp=2e-5), 44100, subtype="PCM_24")
        return path, ["silent: peak amplitude 2e-05, below 0.0001"]
    if case == "cancelling_stereo":
        # Opposite-phase channels: silent once downmixed.
        path = tmp_path / "phase.wav"
        tone = _tone(0.5, SR)
        soundfile.write(path, np.stack([tone, -tone], axis=1), SR, subtype="FLOAT")
        return path, ["silent: peak amplitude 0 after downmixing to mono"]
    if case == "missing":
        return tmp_path / "missing_user.wav", ["file not found"]
    if case == "directory":
        path = tmp_path / "folder.flac"
        path.mkdir()
        return path, ["is a directory"]
    raise AssertionError(case)


BAD_CASES = [
    "corrupt",
    "text",
    "truncated",
    "empty",
    "too_short_8k",
    "too_short_16k",
    "nan",
    "inf_stereo",
    "silent",
    "silent_44k",
    "cancelling_stereo",
    "missing",
    "directory",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files_name_file_and_problem(tmp_path, case):
    path, expected = _bad_file(tmp_path, case)
    with pytest.raises(AudioError) as excinfo:
        load_audio_any(path)
    message = str(excinfo.value)
    assert message.startswith(os.fspath(path) + ": ")
    assert excinfo.value.path == os.fspath(path)
    for text in expected:
        assert text in message
    assert excinfo.value.__cause__ is None


def test_min_length_is_checked_after_resampling(tmp_path):
    # 30 ms at 8 kHz = 240 samples: fewer than 400 at the source rate, but
    # 480 >= 400 after upsampling to 16 kHz, so it is accepted.
    path = tmp_path / "short_8k.wav"
    soundfile.write(path, _tone(0.030, 8000), 8000, subtype="PCM_16")
    assert load_audio_any(path).numel() == 480
    # 20 ms at 48 kHz is 960 source samples but only 320 at 16 kHz.
    path48 = tmp_path / "short_48k.wav"
    soundfile.write(path48, _tone(0.020, 48000), 48000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"too short: 20\.0 ms \(960 samples at"):
        load_audio_any(path48)


def test_checks_can_be_disabled(tmp_path):
    silent, _ = _bad_file(tmp_path, "silent")
    assert load_audio_any(silent, silence_threshold=None).abs().max() == 0
    quiet = tmp_path / "quiet.wav"
    soundfile.write(quiet, _tone(0.5, SR, amp=1e-3), SR, subtype="FLOAT")
    assert load_audio_any(quiet).numel() == 8000
    with pytest.raises(AudioError, match="silent: peak amplitude 0.001, below 0.01"):
        load_audio_any(quiet, silence_threshold=0.01)
    short, _ = _bad_file(tmp_path, "too_short_8k")
    assert load_audio_any(short, min_samples=0).numel() == 160
    assert load_audio_any(short, min_samples=160).numel() == 160


def test_bad_options():
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        load_audio_any("x.wav", sample_rate=0)
    with pytest.raises(ValueError, match="min_samples"):
        load_audio_any("x.wav", min_samples=-1)
    with pytest.raises(ValueError, match="silence_threshold"):
        load_audio_any("x.wav", silence_threshold=-1)


# --------------------------------------------------------------------------
# In-memory arrays
# --------------------------------------------------------------------------


def test_array_1d_numpy_and_tensor():
    tone = _tone(0.5, 8000)
    from_numpy = load_audio_array(tone, 8000)
    from_tensor = load_audio_array(torch.from_numpy(tone), 8000)
    _assert_mono_16k(from_numpy, 8000)
    assert torch.equal(from_numpy, from_tensor)
    assert _peak_hz(from_numpy) == pytest.approx(440, abs=2)
    assert torch.equal(load_audio_array(tone.tolist(), 8000), from_numpy)


def test_array_layouts_give_the_same_mono():
    tone = _tone(0.5, 44100)
    channels_first = np.stack([1.2 * tone, 0.4 * tone])  # [2, samples]
    expected = load_audio_array(0.8 * tone, 44100)
    for layout in (channels_first, channels_first.T, torch.from_numpy(channels_first)):
        wav = load_audio_array(layout, 44100)
        _assert_mono_16k(wav, 8000)
        torch.testing.assert_close(wav, expected, atol=1e-5, rtol=0)
    # Single channel in either layout.
    torch.testing.assert_close(
        load_audio_array(tone[None, :], 44100), load_audio_array(tone[:, None], 44100)
    )


def test_array_explicit_channels_first():
    # 3 x 3 is ambiguous unless told; then 3 channels of 3 samples.
    square = np.ones((3, 3), dtype=np.float32)
    with pytest.raises(AudioError, match=r"ambiguous shape \(3, 3\)"):
        load_audio_array(square, SR, min_samples=0)
    square[0] = 4.0
    first = load_audio_array(square, SR, min_samples=0, channels_first=True)
    last = load_audio_array(square, SR, min_samples=0, channels_first=False)
    assert first.tolist() == [2.0, 2.0, 2.0]
    assert last.tolist() == [4.0, 1.0, 1.0]


def test_array_int_pcm_scaled():
    tone = _tone(0.5, SR)
    pcm16 = np.round(tone * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio_array(pcm16, SR).numpy(), tone, atol=1e-4)
    pcm32 = np.round(tone * 2147483647).astype(np.int32)
    np.testing.assert_allclose(load_audio_array(pcm32, SR).numpy(), tone, atol=1e-7)


def test_array_does_not_share_or_modify_input():
    tone = torch.from_numpy(_tone(0.5, SR))
    before = tone.clone()
    wav = load_audio_array(tone, SR)
    wav.zero_()
    assert torch.equal(tone, before)
    half = torch.from_numpy(_tone(0.5, SR)).to(torch.bfloat16)
    assert load_audio_array(half, SR).dtype == torch.float32


@pytest.mark.parametrize(
    "array, rate, expected",
    [
        (np.zeros(0, dtype=np.float32), SR, "empty audio (0 samples)"),
        (np.zeros((2, 0), dtype=np.float32), SR, "empty audio (0 samples)"),
        (np.zeros(80, dtype=np.float32) + 0.5, 8000, "too short: 10.0 ms"),
        (np.array([0.1, np.nan] * 500, dtype=np.float32), SR, "500 non-finite"),
        (np.zeros(SR, dtype=np.float32), SR, "silent: peak amplitude 0, below"),
        (np.zeros((2, 2, 500), dtype=np.float32), SR, "3-D array of shape (2, 2, 500)"),
        (np.zeros((500, 100), dtype=np.float32), SR, "does not look like audio"),
        (np.zeros(SR, dtype=np.int64), SR, "unsupported sample type int64"),
        (np.zeros(SR, dtype=np.float32), 0, "invalid sample rate"),
        (np.zeros(SR, dtype=np.float32), 22050.5, "whole number"),
    ],
)
def test_array_errors_name_the_source(array, rate, expected):
    with pytest.raises(AudioError) as excinfo:
        load_audio_array(array, rate, name="microphone#1")
    message = str(excinfo.value)
    assert message.startswith("microphone#1: ")
    assert expected in message
    assert excinfo.value.path == "microphone#1"


def test_array_default_name():
    with pytest.raises(AudioError, match="^<array>: empty audio"):
        load_audio_array([], SR)
