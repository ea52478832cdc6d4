"""A synthetic "own data" corpus: a folder of recordings and a CSV file.

What a user of the generic recipe (``recipes/Custom``) typically has: audio
files at several sample rates (16, 22.05 and 44.1 kHz), some stereo, WAV and
FLAC, in per-speaker folders, and a CSV file whose ``wav`` paths are relative
to it, with ``emotion``, ``speaker``, ``gender`` and ``text`` columns. One
speaker's utterances are cut from one long recording (``start`` / ``end``
segments). The classes are learnable from the audio: the class cues (pitch,
energy, syllable rate, brightness) of :mod:`sser_lobes.synthetic.iemocap`.
"""

import csv
import os
from pathlib import Path

import numpy as np
import soundfile

from sser_lobes.synthetic.common import (
    finish_utterance,
    harmonic_source,
    syllable_envelope,
)
from sser_lobes.synthetic.iemocap import CLASS_CUES

RATES = (16000, 22050, 44100)
TEXTS = (
    "the boat is in the harbour",
    "we will meet again tomorrow",
    "nobody told me about it",
)


def voice(emotion, duration, sample_rate, rng, f0_factor=1.0):
    """One utterance of class ``emotion`` (a key of ``CLASS_CUES``), float64.

    Example
    -------
    >>> wav = voice("ang", 0.5, 16000, np.random.default_rng(0))
    >>> wav.shape, bool(np.abs(wav).max() <= 1)
    ((8000,), True)
    """
    cue = CLASS_CUES[emotion]
    num = int(round(duration * sample_rate))
    t = np.arange(num) / sample_rate
    f0 = cue.f0 * f0_factor * (1 + rng.normal(0, 0.03))
    contour = 1 + 0.04 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * contour) / sample_rate
    voiced = harmonic_source(phase, f0 * 1.05, cue.n_harmonics, cue.tilt, rng)
    envelope = syllable_envelope(t, cue.am_rate * rng.uniform(0.9, 1.1), rng)
    signal = envelope * (voiced + cue.noise * rng.standard_normal(num))
    amplitude = cue.amplitude * rng.uniform(0.85, 1.15)
    return finish_utterance(signal, amplitude, rng, sample_rate)


def make_csv_corpus(
    out_dir,
    speakers=6,
    per_class=3,
    classes=("ang", "hap", "neu", "sad"),
    seed=0,
    min_duration=0.6,
    max_duration=1.4,
    csv_name="corpus.csv",
    speech_like=False,
):
    """Write a folder of recordings and its CSV; return the CSV path.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Created if needed; ``<out_dir>/audio/<speaker>/...`` and the CSV.
    speakers : int
        Number of speakers (alternating F / M), named ``spk01``, ``spk02``...
    per_class : int
        Utterances per speaker and class.
    classes : sequence of str
        Classes (keys of ``CLASS_CUES``: neu, hap, exc, sad, ang, fru, sur,
        fea, dis, oth, xxx).
    seed : int
        The corpus is identical for identical arguments.
    min_duration, max_duration : float
        Utterance durations (seconds), uniform.
    csv_name : str
        Name of the CSV file in ``out_dir``.
    speech_like : bool
        Source-filter voices with formants
        (:func:`sser_lobes.synthetic.formant_voice.formant_voice`), which a
        voice activity detector takes for speech, instead of the harmonic
        ones.

    Returns
    -------
    pathlib.Path
        The CSV file.

    Example
    -------
    >>> import tempfile, csv
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_csv_corpus(tmp.name, speakers=2, per_class=1)
    >>> rows = list(csv.DictReader(open(path)))
    >>> len(rows), sorted({r["speaker"] for r in rows})
    (8, ['spk01', 'spk02'])
    >>> tmp.cleanup()
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    make_voice = voice
    if speech_like:
        from sser_lobes.synthetic.formant_voice import formant_voice as make_voice
    rows = []
    for s in range(speakers):
        speaker = f"spk{s + 1:02d}"
        gender = "F" if s % 2 == 0 else "M"
        f0_factor = (1.15 if gender == "F" else 1.0) * rng.uniform(0.9, 1.1)
        rate = RATES[s % len(RATES)]
        channels = 2 if s % 3 == 2 else 1
        folder = out_dir / "audio" / speaker
        folder.mkdir(parents=True, exist_ok=True)
        items = [(c, i) for c in classes for i in range(per_class)]
        waves = [
            make_voice(c, rng.uniform(min_duration, max_duration), rate, rng, f0_factor)
            for c, _ in items
        ]
        if s == speakers - 1 and speakers > 1:
            # The last speaker: one long session recording, cut into segments.
            gap = np.zeros(int(0.2 * rate))
            session, start = [], 0.0
            for (cls, i), wave in zip(items, waves):
                session += [wave, gap]
                end = start + len(wave) / rate
                rows.append(
                    _row(
                        f"audio/{speaker}/session.wav",
                        cls,
                        speaker,
                        gender,
                        i,
                        f"{start:.4f}",
                        f"{end:.4f}",
                    )
                )
                start = end + len(gap) / rate
            soundfile.write(folder / "session.wav", np.concatenate(session), rate)
            continue
        for n, ((cls, i), wave) in enumerate(zip(items, waves)):
            suffix = "flac" if n % 4 == 3 else "wav"
            name = f"{speaker}_{cls}_{i}.{suffix}"
            data = np.stack([wave, 0.8 * wave], axis=1) if channels == 2 else wave
            soundfile.write(folder / name, data, rate)
            rows.append(_row(f"audio/{speaker}/{name}", cls, speaker, gender, i))
    path = out_dir / csv_name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Path(os.path.abspath(path))


def _row(wav, emotion, speaker, gender, index, start="", end=""):
    return {
        "wav": wav,
        "emotion": emotion,
        "speaker": speaker,
        "gender": gender,
        "text": TEXTS[index % len(TEXTS)],
        "start": start,
        "end": end,
    }
