"""Tests for sser_lobes.dataio.audio: every bad file gives an AudioError naming it."""

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sser_lobes.dataio.audio import AudioInfo, audio_info, check_audio_info, read_audio  # noqa: E402
from sser_lobes.errors import AudioError  # noqa: E402

SR = 16000


def _tone(n, sr=SR, amp=0.5):
    t = np.arange(n) / sr
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture
def good_wav(tmp_path):
    path = tmp_path / "good_utt.wav"
    soundfile.write(path, _tone(SR // 2), SR, subtype="PCM_16")
    return path


def _bad_files(tmp_path):
    """Return {case: (path, expected substring of the problem)}."""
    cases = {}

    corrupt = tmp_path / "corrupt_utt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2048))
    cases["corrupt"] = (corrupt, "cannot read")

    full = tmp_path / "full.wav"
    soundfile.write(full, _tone(SR), SR, subtype="PCM_16")
    truncated = tmp_path / "truncated_header.wav"
    truncated.write_bytes(full.read_bytes()[:20])
    cases["truncated"] = (truncated, "cannot read")

    zero_bytes = tmp_path / "zero_bytes.wav"
    zero_bytes.write_bytes(b"")
    cases["zero_bytes"] = (zero_bytes, "cannot read")

    empty = tmp_path / "empty_utt.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.int16), SR, subtype="PCM_16")
    cases["empty"] = (empty, "empty")

    stereo = tmp_path / "stereo_utt.wav"
    soundfile.write(stereo, np.stack([_tone(SR)] * 2, axis=1), SR, subtype="PCM_16")
    cases["stereo"] = (stereo, "stereo (2 channels), expected mono")

    three = tmp_path / "three_channels.wav"
    soundfile.write(three, np.stack([_tone(SR)] * 3, axis=1), SR, subtype="PCM_16")
    cases["three"] = (three, "3 channels, expected mono")

    narrow = tmp_path / "narrowband_8k.wav"
    soundfile.write(narrow, _tone(8000, sr=8000), 8000, subtype="PCM_16")
    cases["8k"] = (narrow, "sample rate is 8000 Hz, expected 16000 Hz")

    short = tmp_path / "short_10ms.wav"
    soundfile.write(short, _tone(160), SR, subtype="PCM_16")
    cases["10ms"] = (short, "too short: 0.010 s (160 samples)")

    missing = tmp_path / "missing_utt.wav"
    cases["missing"] = (missing, "file not found")

    folder = tmp_path / "folder.wav"
    folder.mkdir()
    cases["directory"] = (folder, "is a directory")
    return cases


def test_audio_info_good(good_wav):
    info = audio_info(good_wav)
    assert info == AudioInfo(num_frames=8000, sample_rate=SR, channels=1, duration=0.5)
    assert check_audio_info(str(good_wav)) == info


def test_read_audio_good(good_wav):
    wav = read_audio(good_wav)
    assert wav.dtype == torch.float32 and wav.ndim == 1 and wav.numel() == 8000
    assert float(wav.abs().max()) <= 1.0
    np.testing.assert_allclose(wav.numpy(), _tone(8000), atol=1e-4)


@pytest.mark.parametrize(
    "case",
    [
        "corrupt",
        "truncated",
        "zero_bytes",
        "empty",
        "stereo",
        "three",
        "8k",
        "10ms",
        "missing",
        "directory",
    ],
)
@pytest.mark.parametrize("func", [check_audio_info, read_audio])
def test_bad_files_name_file_and_problem(tmp_path, case, func):
    path, expected = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError) as excinfo:
        func(path)
    message = str(excinfo.value)
    assert path.name in message
    assert expected in message
    assert excinfo.value.path == os.fspath(path)
    # Never a chained traceback from deep inside libsndfile.
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize("case", ["corrupt", "truncated", "missing"])
def test_audio_info_unreadable(tmp_path, case):
    path, expected = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError, match=expected) as excinfo:
        audio_info(path)
    assert path.name in str(excinfo.value)


def test_audio_info_does_not_judge(tmp_path):
    """audio_info only reports the header; the checks are check_audio_info's."""
    files = _bad_files(tmp_path)
    assert audio_info(files["stereo"][0]).channels == 2
    assert audio_info(files["8k"][0]).sample_rate == 8000
    assert audio_info(files["empty"][0]).num_frames == 0


def test_short_message_gives_minimum(tmp_path):
    path = _bad_files(tmp_path)["10ms"][0]
    with pytest.raises(AudioError, match=r"minimum is 400 samples \(0\.025 s"):
        check_audio_info(path)
    assert check_audio_info(path, min_samples=100).num_frames == 160
    assert read_audio(path, min_samples=0).numel() == 160


def test_sample_rate_none_accepts_any_rate(tmp_path):
    path = _bad_files(tmp_path)["8k"][0]
    assert check_audio_info(path, sample_rate=None).sample_rate == 8000
    assert read_audio(path, sample_rate=8000).numel() == 8000


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad_value):
    path = tmp_path / "nan_utt.wav"
    data = _tone(SR)
    data[100:110] = bad_value
    soundfile.write(path, data, SR, subtype="FLOAT")
    # The header is fine: only reading the data finds the problem.
    assert check_audio_info(path).num_frames == SR
    with pytest.raises(AudioError) as excinfo:
        read_audio(path)
    message = str(excinfo.value)
    assert "nan_utt.wav" in message
    assert "10 non-finite sample(s)" in message and "sample 100" in message


def test_read_checks_use_data_read(tmp_path):
    """A header claiming more frames than stored: read_audio uses what it read."""
    path = tmp_path / "cut_data.wav"
    soundfile.write(path, _tone(SR), SR, subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[: 44 + 2 * 300])  # keep 300 samples of data
    with pytest.raises(AudioError, match="too short") as excinfo:
        read_audio(path)
    assert "cut_data.wav" in str(excinfo.value)


def test_audio_error_pickles():
    err = pickle.loads(pickle.dumps(AudioError("a.wav", "empty")))
    assert str(err) == "a.wav: empty" and err.path == "a.wav"


def test_audio_error_rebuilt_from_a_dataloader_worker_message():
    """torch's DataLoader re-raises a worker's exception as type(exc)(message);
    the rebuilt error keeps the file and the problem."""
    from sser_lobes.errors import AudioError

    message = (
        "Caught AudioError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "sser_lobes.errors.AudioError: /data/a.wav: empty file (0 samples)\n"
    )
    error = AudioError(message)
    assert str(error) == "/data/a.wav: empty file (0 samples)"
    assert error.path == "/data/a.wav" and error.problem == "empty file (0 samples)"
