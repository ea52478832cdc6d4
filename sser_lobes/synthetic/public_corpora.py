"""Synthetic Berlin EmoDB, RAVDESS and CREMA-D corpora in their official layouts.

Tests and smoke runs of ``recipes/Custom/prepare_corpus.py`` (and of the
Custom recipe on its output) need the three public corpora without the real
data. Each generator writes the distribution layout and file naming of the
release, with the release's exact file list and counts by default, its extra
files and its documented oddities, and very short audio (0.1-0.3 s by
default) so that even the 7,442 CREMA-D clips take only seconds to write:

Berlin EmoDB (``download.zip`` of emodb.bilderbar.info), :func:`make_emodb`::

    emodb/
        wav/03a01Fa.wav           535 files, 16 kHz mono PCM_16: speaker 03,
                                  text a01, emotion F (Freude), version a
        lablaut/03a01Faxx.lablaut  label files (with the release's stray
        labsilb/, silb/            14b09Ea.lablaut next to 14b09Eaxx.lablaut)
        erkennung.txt, erklaerung.txt   Latin-1 text (perception test, notes)

  The 535 file names are those of the release (:data:`EMODB_FILES`): anger
  127, boredom 81, disgust 46, fear 69, happiness 71, sadness 62, neutral 79;
  per speaker 03: 49, 08: 58, 09: 43, 10: 38, 11: 55, 12: 35, 13: 61,
  14: 69, 15: 56, 16: 71. ``extras=True`` adds a macOS ``wav/._03a01Fa.wav``
  and ``wav/.DS_Store`` (copies made on a Mac carry them).

RAVDESS speech, audio-only (``Audio_Speech_Actors_01-24.zip``),
:func:`make_ravdess`::

    RAVDESS/
        Actor_01/03-01-01-01-01-01-01.wav   24 actors x 60 = 1,440 files,
                                            48 kHz PCM_16

  Name fields: modality (03 audio-only), vocal channel (01 speech), emotion
  (01 neutral ... 08 surprised), intensity (01 normal, 02 strong; neutral has
  no strong), statement (01 "Kids ...", 02 "Dogs ..."), repetition, actor
  (odd male, even female). Oddities: ``song=True`` extracts the song archive
  (``Audio_Song_Actors_01-24.zip``: vocal channel 02, six emotions, no
  Actor_18, 1,012 files) into the same ``Actor_*`` folders, as unzipping both
  archives in one place does; ``video=True`` adds audio-video (01) and
  video-only (02) ``.mp4`` names; ``kaggle_copy=True`` adds the second copy
  of every actor folder under ``audio_speech_actors_01-24/`` that the Kaggle
  upload of the corpus has; ``stereo`` lists files written with two channels.

CREMA-D (the CheyneyComputerScience/CREMA-D git-lfs repository),
:func:`make_cremad`::

    CREMA-D/
        AudioWAV/1001_DFA_ANG_XX.wav   7,442 files of 91 actors (48 male, 43
                                       female), 16 kHz mono PCM_16
        VideoDemographics.csv          ActorID,Age,Sex,Race,Ethnicity
        SentenceFilenames.csv, README.md, processedResults/tabulatedVotes.csv

  Name fields: actor 1001-1091, sentence (12 codes), emotion (ANG, DIS, FEA,
  HAP, NEU, SAD), level (LO, MD, HI for sentence IEO, XX otherwise). The
  grid of 91 x 82 clips misses the 20 clips the release misses
  (:data:`CREMAD_MISSING`), which gives its counts: anger, disgust, fear,
  happy and sad 1,271 each, neutral 1,087. Oddities: ``1076_MTI_SAD_XX.wav``
  holds no audio (2.57 s of digital silence; the README: "no audio"), and
  with ``legacy_x_name=True`` clip ``1040_ITH_SAD_XX`` is named
  ``1040_ITH_SAD_X.wav``, as in the repository before October 2022 and in
  copies made from it (GitHub issue CheyneyComputerScience/CREMA-D#6).
  ``processedResults/tabulatedVotes.csv`` has the release's header and three
  blocks of rows, numbered 1xxxxx (voice only), 2xxxxx (face only) and
  3xxxxx (audio-visual), one row per clip in each; the voice votes follow a
  known plan (:func:`cremad_votes`: per emotion, 10 votes split 8-2, 6-4 or
  5-5 with a partner emotion in turn), the face and audio-visual ones are
  unanimous for the intended emotion.

Every generator takes a subset for fast training tests: ``speakers`` /
``actors`` (which speakers) and ``per_class`` (at most that many files per
speaker and emotion, the release's first ones in name order).

The audio is learnable by class: a voiced signal whose pitch, energy,
syllable rate and brightness depend on the emotion (:data:`EMOTION_CUES`),
with per-speaker (gender) and per-utterance variation; RAVDESS strong
intensity and CREMA-D high level are louder and higher. Everything is
deterministic for a given seed.

Command line::

    python -m sser_lobes.synthetic.public_corpora {emodb,ravdess,cremad}
        --out DIR [--speakers ID ...] [--per-class N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sser_lobes.dataio.corpus_facts import (
    CREMAD_EMOTIONS,
    CREMAD_SENTENCES,
    CREMAD_VOTE_COLUMNS,
    EMODB_EMOTIONS,
    EMODB_SPEAKERS,
    RAVDESS_EMOTIONS,
)
from sser_lobes.synthetic.common import (
    appledouble_bytes,
    check_new_root,
    finish_utterance,
    harmonic_source,
    syllable_envelope,
    write_text,
)

__all__ = [
    "CREMAD_MISSING",
    "CREMAD_SENTENCES",
    "EMODB_FILES",
    "EMOTION_CUES",
    "PlannedFile",
    "main",
    "cremad_votes",
    "make_cremad",
    "make_emodb",
    "make_ravdess",
    "plan_cremad",
    "plan_emodb",
    "plan_ravdess",
    "write_pcm16",
]

# --------------------------------------------------------------------------
# Release facts
# --------------------------------------------------------------------------

#: The 535 file names of the EmoDB release (``wav/<speaker><name>.wav``), per
#: speaker: text code, emotion letter, version letter.
EMODB_FILES = {
    "03": "a01Fa a01Nc a01Wa a02Fc a02Nc a02Ta a02Wb a02Wc a04Ad a04Fd a04Lc a04Nc "
    "a04Ta a04Wc a05Aa a05Fc a05Nd a05Tc a05Wa a05Wb a07Fa a07Fb a07La a07Nc a07Wc "
    "b01Fa b01Lb b01Nb b01Td b01Wa b01Wc b02Aa b02La b02Na b02Tb b02Wb b03Nb b03Tc "
    "b03Wc b09La b09Nc b09Tc b09Wa b10Ab b10Ec b10Na b10Nc b10Wb b10Wc",
    "08": "a01Ab a01Fd a01Lc a01Na a01Wa a01Wc a02Ab a02Ac a02Fe a02La a02Na a02Tb "
    "a02Wc a04Ff a04La a04Nc a04Tb a04Wc a05Fe a05Lc a05Nb a05Ta a05Wa a07Fd a07La "
    "a07Na a07Ta a07Tb a07Wc b01Aa b01Fd b01Fe b01Lb b01Na b01Wa b02Ff b02La b02Nb "
    "b02Tc b02Wd b03Fe b03Lc b03Nb b03Tc b03Wd b09Ab b09Fd b09Lc b09Nb b09Tb b09Wa "
    "b09Wc b10Aa b10Fd b10La b10Nc b10Tc b10Wa",
    "09": "a01Ea a01Fa a01Nb a01Wb a02Ea a02Eb a02La a02Wb a04Fd a04La a04Nb a04Wa "
    "a05Ed a05Lc a05Nb a05Tb a05Wb a05Wc a07Eb a07Na a07Ta a07Wb a07Wd b01Ea b01Na "
    "b01Wb b02Na b02Tb b02Wc b02Wd b03Ed b03Fa b03Fd b03Lb b03Nb b03Ta b03Wb b09Ea "
    "b09Nd b09Wa b10Aa b10Nd b10Wa",
    "10": "a01Ac a01Nb a01Wa a02Ab a02Fa a02Lb a02Na a02Wa a04Fd a04Nb a04Wa a04Wb "
    "a05Aa a05Ld a05Tb a05Wb a07Aa a07Ad a07La a07Ta a07Wb b01Aa b01Ea b01Fa b01Lb "
    "b02Aa b02La b02Na b02Wb b03La b03Tb b03Wb b09Ad b09Lb b09Wb b10Fc b10Lc b10Wa",
    "11": "a01Aa a01Ab a01Ld a01Nd a01Wc a02Ec a02Fb a02Ld a02Nc a02Tc a02Wc a04Ac "
    "a04Fd a04Nd a04Wc a05Ad a05Fb a05Fc a05Lc a05Na a05Td a05Wd a07Ac a07Ld a07Ta "
    "a07Wc b01Ab b01Eb b01Fc b01Lb b01Nc b01Wd b02Ab b02Fd b02Na b02Td b02Wb b03Fc "
    "b03Lc b03Nb b03Td b03Wa b03Wb b09Ad b09Fd b09Ld b09Na b09Td b09Wa b10Ad b10Ae "
    "b10Ld b10Nc b10Td b10Wa",
    "12": "a01Fb a01Lb a01Nb a01Wc a02Ac a02Ec a02Nb a02Wa a02Wc a04Wc a05Ab a05Lb "
    "a05Nd a05Ta a05Wb a07Ac a07La a07Wa b01Ta b01Wa b02Ad b02Ea b02Fb b02Na b02Wa "
    "b02Wb b02Wd b03La b03Ta b09Ac b09Td b09Wc b10Ac b10Ld b10Wa",
    "13": "a01Ac a01Ea a01Ec a01Fd a01Lb a01Nb a01Wb a02Ad a02Ec a02Fa a02Lc a02Nc "
    "a02Ta a02Wa a04Ac a04Fc a04Lb a04Ta a04Wc a05Aa a05Ea a05Lc a05Nb a05Tc a05Wa "
    "a05Wc a07Fd a07Lb a07Na a07Tc a07Wb b01Ab b01Ec b01Fc b01Ld b01Nc b01Wa b02Fb "
    "b02Lc b02Nb b02Wa b03Ac b03Ed b03Fd b03Lb b03Na b03Td b03Wc b09Ab b09Ec b09Fb "
    "b09Fc b09La b09Na b09Wa b10Ec b10Fa b10La b10Nc b10Wa b10Wc",
    "14": "a01Aa a01Ac a01Ea a01Na a01Wa a01Wc a02Ab a02Ea a02Fd a02La a02Nc a02Tb "
    "a02Wa a02Wc a04Aa a04Ed a04Lb a04Tb a04Tc a04Wb a04Wc a05Aa a05Ac a05Fa a05Fb "
    "a05Lb a05Na a05Ta a05Tc a05Wa a05Wb a07Aa a07Eb a07Fd a07Lc a07Ld a07Na a07Tc "
    "a07Wc b01Ac b01Eb b01Fa b01Fc b01Na b01Wc b02Aa b02Fb b02Na b02Tc b02Wb b02Wd "
    "b03Ad b03Ed b03Lb b03Ta b03Wb b09Ac b09Ea b09Fc b09Lb b09Td b09Wa b09Wc b10Ad "
    "b10Eb b10Lb b10Nb b10Tc b10Wc",
    "15": "a01Ea a01Fb a01La a01Nb a01Wa a02Ac a02Ea a02La a02Na a02Ta a02Wb a02Wd "
    "a04Ab a04Ac a04Fd a04Nc a04Wa a04Wb a05Eb a05Fb a05Lb a05Na a05Wa a07Ac a07Eb "
    "a07Fa a07Fb a07Ld a07Nc b01Ec b01Lb b01Na b01Wc b02Aa b02Lb b02Nd b02Tc b02Wa "
    "b02Wc b03Aa b03Lc b03Nb b03Tc b03Wa b03Wb b09Ac b09Fa b09La b09Nb b09Ta b09Wb "
    "b10Ac b10Lc b10Nb b10Nc b10Wa",
    "16": "a01Ec a01Fc a01Lb a01Nc a01Tb a01Wb a02Ea a02Ec a02Lb a02Nb a02Tc a02Wb "
    "a04Ab a04Ea a04Fa a04La a04Lc a04Nc a04Tc a04Wb a04Wc a05Ab a05Ea a05Fc a05La "
    "a05Tb a05Wb a05Wc a07Ea a07Fa a07Fb a07La a07Lb a07Nb a07Td a07Wa b01Aa b01Eb "
    "b01Fa b01La b01Lc b01Tb b01Wa b01Wb b02Aa b02Eb b02Fd b02Lb b02Wb b03Ad b03Ea "
    "b03Fa b03Fd b03La b03Nb b03Ta b03Wb b09Ab b09Eb b09Fb b09La b09Lb b09Wb b10Aa "
    "b10Eb b10Fb b10Lb b10Tb b10Td b10Wa b10Wb",
}

#: Emotion codes of the RAVDESS song archive (no disgust, no surprised).
RAVDESS_SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")

#: Actors without song files in the RAVDESS release.
RAVDESS_NO_SONG = ("18",)

#: CREMA-D emotion codes in the order of SentenceFilenames.csv (the order
#: the generator draws the clips in).
CREMAD_GRID_EMOTIONS = ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")

#: Sex of actors 1001-1091 (VideoDemographics.csv), one letter each.
_CREMAD_SEX = (
    "MFFFMFFFFFMFFMMMMFMFFMMFFMMFFFMMMMMMFMMMMMFMMFFMFMMFFFFF"
    "MFMFFMFMMMMMMMMFFFFFMFFMMFMFMMMMFMF"
)

#: The clips of the 91 x 82 grid that the release does not have (found by
#: comparing the grid with SentenceFilenames.csv: 7,462 - 20 = 7,442).
CREMAD_MISSING = frozenset(
    {"1002_TIE_NEU_XX", "1076_ITS_NEU_XX"}
    | {f"1008_WSI_{e}_XX" for e in CREMAD_GRID_EMOTIONS}
    | {f"1009_MTI_{e}_XX" for e in CREMAD_GRID_EMOTIONS}
    | {f"1019_ITH_{e}_XX" for e in CREMAD_GRID_EMOTIONS}
)

#: The clip with no audio (README: "1076_MTI_SAD_XX.mp3/wav - no audio").
CREMAD_SILENT = "1076_MTI_SAD_XX"

#: Length of that file in the release (82,260 bytes: 41,108 samples + header).
CREMAD_SILENT_SAMPLES = 41108

#: The clip named ``..._X.wav`` in the repository before October 2022.
CREMAD_LEGACY_X = "1040_ITH_SAD_XX"


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EmotionCue:
    """Acoustic recipe of an emotion.

    Arguments
    ---------
    f0 : float
        Mean pitch in Hz of a male speaker (female: +15 %).
    amplitude : float
        Peak amplitude (energy).
    am_rate : float
        Syllable (amplitude-modulation) rate in Hz.
    n_harmonics : int
        Number of harmonics (capped below 7 kHz).
    tilt : float
        Spectral tilt: harmonic ``k`` has amplitude ``k ** -tilt``.
    noise : float
        Envelope-following noise relative to the voiced part.

    Example
    -------
    >>> EMOTION_CUES["anger"].amplitude > EMOTION_CUES["sadness"].amplitude
    True
    """

    f0: float
    amplitude: float
    am_rate: float
    n_harmonics: int
    tilt: float
    noise: float


_ANGER = EmotionCue(200.0, 0.50, 5.0, 28, 0.6, 0.15)
_HAPPY = EmotionCue(260.0, 0.30, 6.0, 14, 1.0, 0.03)
_SAD = EmotionCue(100.0, 0.05, 1.5, 8, 2.2, 0.01)
_FEAR = EmotionCue(235.0, 0.15, 7.5, 10, 1.5, 0.18)
_DISGUST = EmotionCue(125.0, 0.20, 2.2, 24, 0.7, 0.10)

#: Cue of every emotion word the three corpora use. Orderings by design:
#: pitch surprised > happy > fear > anger > neutral > disgust > boredom >
#: calm > sad; energy anger > happy > surprised > disgust > fear > neutral >
#: boredom > calm > sad.
EMOTION_CUES = {
    "anger": _ANGER,
    "angry": _ANGER,
    "happiness": _HAPPY,
    "happy": _HAPPY,
    "sadness": _SAD,
    "sad": _SAD,
    "fear": _FEAR,
    "fearful": _FEAR,
    "disgust": _DISGUST,
    "neutral": EmotionCue(140.0, 0.12, 4.0, 12, 1.3, 0.02),
    "boredom": EmotionCue(115.0, 0.09, 2.0, 10, 1.8, 0.02),
    "calm": EmotionCue(110.0, 0.07, 3.0, 9, 1.9, 0.01),
    "surprised": EmotionCue(320.0, 0.25, 3.0, 12, 1.1, 0.03),
}


@dataclass(frozen=True)
class PlannedFile:
    """One audio file a generator writes.

    Arguments
    ---------
    relpath : str
        Path below the corpus folder, e.g. ``wav/03a01Fa.wav``.
    speaker : str
        Speaker id as in the file name (``"03"``, ``"12"``, ``"1001"``).
    gender : str
        ``"F"`` or ``"M"``.
    emotion : str
        Emotion word (a key of :data:`EMOTION_CUES`).
    strength : float
        Loudness and pitch factor (1.0; RAVDESS strong 1.3; CREMA-D LO 0.8,
        HI 1.3).
    kind : str
        ``"speech"`` (a corpus utterance), ``"song"`` (RAVDESS song) or
        ``"silent"`` (no audio, CREMA-D 1076_MTI_SAD_XX).

    Example
    -------
    >>> plan_emodb(speakers=["03"])[0]
    PlannedFile(relpath='wav/03a01Fa.wav', speaker='03', gender='M', emotion='happiness', strength=1.0, kind='speech')
    """  # noqa: E501

    relpath: str
    speaker: str
    gender: str
    emotion: str
    strength: float = 1.0
    kind: str = "speech"

    @property
    def stem(self):
        """File name without folder and extension."""
        return Path(self.relpath).stem


def _speaker_factors(rng, gender):
    """Pitch and loudness factors of one speaker."""
    f0, amp = rng.uniform(0.9, 1.1, size=2)
    return float(f0) * (1.15 if gender == "F" else 1.0), float(amp)


def _synthesize(cue, f0_factor, amp_factor, strength, duration, sample_rate, rng):
    """One utterance (float64 in [-1, 1]) following ``cue``."""
    num = max(1, int(round(duration * sample_rate)))
    t = np.arange(num) / sample_rate
    f0 = cue.f0 * f0_factor * (1 + 0.1 * (strength - 1)) * (1 + rng.normal(0, 0.03))
    contour = 1 + 0.04 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * contour) / sample_rate
    voiced = harmonic_source(
        phase, f0 * 1.05, cue.n_harmonics, cue.tilt, rng, fast=True
    )
    envelope = syllable_envelope(t, cue.am_rate * rng.uniform(0.9, 1.1), rng)
    signal = envelope * (voiced + cue.noise * rng.standard_normal(num))
    amplitude = min(
        0.9, cue.amplitude * amp_factor * strength * rng.uniform(0.85, 1.15)
    )
    return finish_utterance(signal, amplitude, rng, sample_rate)


def _check_durations(min_duration, max_duration):
    if not 0.03 <= min_duration <= max_duration:
        raise ValueError(
            f"durations must satisfy 0.03 <= min_duration <= max_duration, got "
            f"min_duration={min_duration!r}, max_duration={max_duration!r}"
        )


def _check_per_class(per_class):
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ValueError(
            f"per_class must be a positive integer or None, got {per_class!r}"
        )


def _select_speakers(speakers, known, width, what):
    """Normalise a speaker selection to the ids of ``known`` (all if None)."""
    if speakers is None:
        return list(known)
    chosen = []
    for speaker in speakers:
        try:
            sid = f"{int(speaker):0{width}d}"
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be numbers, got {speaker!r}") from None
        if sid not in known:
            raise ValueError(
                f"unknown {what[:-1]} {speaker!r}; known: {', '.join(known)}"
            )
        if sid not in chosen:
            chosen.append(sid)
    if not chosen:
        raise ValueError(f"{what} is empty")
    return [s for s in known if s in chosen]


def _limit_per_class(plan, per_class):
    """Keep the first ``per_class`` speech files per (speaker, emotion)."""
    if per_class is None:
        return plan
    seen = {}
    kept = []
    for item in plan:
        key = (item.speaker, item.emotion)
        if item.kind == "song" or seen.get(key, 0) < per_class:
            kept.append(item)
            if item.kind != "song":
                seen[key] = seen.get(key, 0) + 1
    return kept


def _new_root(out_dir, name):
    root = Path(out_dir) / name
    check_new_root(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_audio(root, plan, seed, corpus_index, sample_rate, durations, stereo=()):
    """Write the planned files; one random stream per file (seeded by index)."""
    min_duration, max_duration = durations
    speaker_rng = np.random.default_rng([int(seed), corpus_index, 0])
    factors = {}
    for item in plan:
        if item.speaker not in factors:
            factors[item.speaker] = _speaker_factors(speaker_rng, item.gender)
    stereo = set(stereo)
    made = set()
    for index, item in enumerate(plan):
        path = root / item.relpath
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        if item.kind == "silent":
            wav = np.zeros(CREMAD_SILENT_SAMPLES)
        else:
            rng = np.random.default_rng([int(seed), corpus_index, 1, index])
            duration = float(rng.uniform(min_duration, max_duration))
            f0_factor, amp_factor = factors[item.speaker]
            cue = EMOTION_CUES[item.emotion]
            wav = _synthesize(
                cue, f0_factor, amp_factor, item.strength, duration, sample_rate, rng
            )
        if item.stem in stereo:
            wav = np.stack([wav, 0.9 * wav], axis=1)
        write_pcm16(path, wav, sample_rate)


def write_pcm16(path, data, sample_rate):
    """Write a canonical 16-bit PCM WAV file (44-byte RIFF header).

    ``soundfile.write`` would do the same, but libsndfile syncs every file to
    disk when closing it (about 2.5 ms a file here): 7,442 files would then
    take 20 s instead of 2 s.

    Arguments
    ---------
    path : str or os.PathLike
        Destination file.
    data : numpy.ndarray
        Samples in [-1, 1], shape ``[frames]`` or ``[frames, channels]``.
    sample_rate : int
        Sampling rate in Hz.

    Example
    -------
    >>> import tempfile, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> write_pcm16(tmp.name + "/a.wav", np.zeros((480, 2)), 48000)
    >>> info = soundfile.info(tmp.name + "/a.wav")
    >>> info.samplerate, info.channels, info.frames, info.subtype
    (48000, 2, 480, 'PCM_16')
    >>> tmp.cleanup()
    """
    pcm = np.clip(np.round(np.asarray(data) * 32767.0), -32768, 32767).astype("<i2")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    body = pcm.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(body),
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * channels * 2,
        channels * 2,
        16,
        b"data",
        len(body),
    )
    Path(path).write_bytes(header + body)


def _appledouble(path, rng):
    path.write_bytes(appledouble_bytes(rng, 64))


# --------------------------------------------------------------------------
# EmoDB
# --------------------------------------------------------------------------


def plan_emodb(speakers=None, per_class=None):
    """The files :func:`make_emodb` writes (release names, subset applied).

    Arguments
    ---------
    speakers : list, optional
        Speaker ids (``"03"`` or ``3``); default all ten.
    per_class : int, optional
        At most this many files per speaker and emotion.

    Returns
    -------
    list of PlannedFile
        In name order.

    Example
    -------
    >>> len(plan_emodb()), len(plan_emodb(speakers=[3, 8], per_class=2))
    (535, 25)
    """
    _check_per_class(per_class)
    chosen = _select_speakers(speakers, tuple(EMODB_SPEAKERS), 2, "speakers")
    plan = []
    for speaker in chosen:
        for rest in EMODB_FILES[speaker].split():
            plan.append(
                PlannedFile(
                    f"wav/{speaker}{rest}.wav",
                    speaker,
                    EMODB_SPEAKERS[speaker],
                    EMODB_EMOTIONS[rest[3]],
                )
            )
    return _limit_per_class(plan, per_class)


def make_emodb(
    out_dir,
    speakers=None,
    per_class=None,
    seed=0,
    min_duration=0.1,
    max_duration=0.3,
    extras=True,
):
    """Write a synthetic Berlin EmoDB in the layout of its ``download.zip``.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder in which ``emodb`` is created.
    speakers : list, optional
        Subset of speakers (``"03"`` or ``3``); default all ten.
    per_class : int, optional
        At most this many files per speaker and emotion (default: all).
    seed : int
        Random seed; the corpus is identical for identical arguments.
    min_duration, max_duration : float
        Utterance durations are uniform in this range (seconds).
    extras : bool
        Also write the release's other files (``erkennung.txt``,
        ``erklaerung.txt``, ``lablaut/``, ``labsilb/``, ``silb/``) and the
        macOS ``wav/._03a01Fa.wav`` and ``wav/.DS_Store`` of a Mac copy.

    Returns
    -------
    pathlib.Path
        The ``emodb`` folder (the one holding ``wav/``).

    Raises
    ------
    FileExistsError
        If ``out_dir/emodb`` exists and is not an empty folder.
    ValueError
        On invalid arguments.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_emodb(tmp.name, speakers=["03"], per_class=1)
    >>> sorted(p.name for p in root.iterdir())
    ['erkennung.txt', 'erklaerung.txt', 'lablaut', 'labsilb', 'silb', 'wav']
    >>> sorted(p.name for p in (root / "wav").glob("03*.wav"))[:3]
    ['03a01Fa.wav', '03a01Nc.wav', '03a01Wa.wav']
    >>> tmp.cleanup()
    """
    _check_durations(min_duration, max_duration)
    plan = plan_emodb(speakers, per_class)
    root = _new_root(out_dir, "emodb")
    (root / "wav").mkdir()
    _write_audio(root, plan, seed, 1, 16000, (min_duration, max_duration))
    if extras:
        rng = np.random.default_rng([int(seed), 1, 2])
        lines = ["Satz\terkannt\tnatuerlich"]
        for item in plan:
            recognized = rng.uniform(80, 100)
            natural = rng.uniform(60, 100)
            # Latin-1, tab-separated, decimal comma (as the release file).
            lines.append(
                f"{item.stem}.wav\t{recognized:.1f}\t{natural:.1f}".replace(".", ",")
            )
            lines[-1] = lines[-1].replace(",wav", ".wav", 1)
        text = "\r\n".join(lines) + "\r\n"
        (root / "erkennung.txt").write_bytes(text.encode("latin-1"))
        explanation = (
            "Erklärung der Dateinamen: Positionen 1-2 Sprecher, 3-5 Textcode, "
            "6 Emotion (W Ärger, L Langeweile, E Ekel, A Angst, F Freude, "
            "T Trauer, N Neutral), 7 Version.\r\n"
        )
        (root / "erklaerung.txt").write_bytes(explanation.encode("latin-1"))
        for sub, suffix in (("lablaut", "xx.lablaut"), ("labsilb", "xx.labsilb")):
            (root / sub).mkdir()
            for item in plan:
                write_text(root / sub / f"{item.stem}{suffix}", "0.000 #\n")
        (root / "silb").mkdir()
        for item in plan:
            write_text(root / "silb" / f"{item.stem}.silb", "0.000 #\n")
        if (root / "lablaut" / "14b09Eaxx.lablaut").exists():
            # The release has this stray copy next to 14b09Eaxx.lablaut.
            write_text(root / "lablaut" / "14b09Ea.lablaut", "0.000 #\n")
        first = plan[0].stem
        _appledouble(root / "wav" / f"._{first}.wav", rng)
        (root / "wav" / ".DS_Store").write_bytes(
            b"\x00\x00\x00\x01Bud1" + rng.bytes(32)
        )
    return root


# --------------------------------------------------------------------------
# RAVDESS
# --------------------------------------------------------------------------


def _ravdess_name(modality, channel, emotion, intensity, statement, rep, actor):
    return f"{modality}-{channel}-{emotion}-{intensity}-{statement}-{rep}-{actor}"


def plan_ravdess(actors=None, per_class=None, song=True):
    """The audio files :func:`make_ravdess` writes (release names).

    Arguments
    ---------
    actors : list, optional
        Actor numbers (``12`` or ``"12"``); default all 24.
    per_class : int, optional
        At most this many speech files per actor and emotion.
    song : bool
        Include the song files (vocal channel 02; none for Actor_18).

    Returns
    -------
    list of PlannedFile
        Speech files first (actor, emotion, intensity, statement,
        repetition order), then song files.

    Example
    -------
    >>> plan = plan_ravdess()
    >>> sum(p.kind == "speech" for p in plan), sum(p.kind == "song" for p in plan)
    (1440, 1012)
    >>> plan[0].relpath
    'Actor_01/03-01-01-01-01-01-01.wav'
    """
    _check_per_class(per_class)
    known = tuple(f"{k:02d}" for k in range(1, 25))
    chosen = _select_speakers(actors, known, 2, "actors")
    speech, songs = [], []
    for actor in chosen:
        gender = "M" if int(actor) % 2 else "F"
        for channel, emotions, out, kind in (
            ("01", tuple(RAVDESS_EMOTIONS), speech, "speech"),
            ("02", RAVDESS_SONG_EMOTIONS, songs, "song"),
        ):
            if kind == "song" and (not song or actor in RAVDESS_NO_SONG):
                continue
            for emotion in emotions:
                for intensity in ("01",) if emotion == "01" else ("01", "02"):
                    for statement in ("01", "02"):
                        for rep in ("01", "02"):
                            name = _ravdess_name(
                                "03", channel, emotion, intensity, statement, rep, actor
                            )
                            out.append(
                                PlannedFile(
                                    f"Actor_{actor}/{name}.wav",
                                    actor,
                                    gender,
                                    RAVDESS_EMOTIONS[emotion],
                                    1.3 if intensity == "02" else 1.0,
                                    kind,
                                )
                            )
    return _limit_per_class(speech, per_class) + songs


def make_ravdess(
    out_dir,
    actors=None,
    per_class=None,
    seed=0,
    min_duration=0.1,
    max_duration=0.3,
    song=True,
    video=True,
    kaggle_copy=False,
    stereo=(),
    extras=True,
):
    """Write a synthetic RAVDESS (speech, audio-only) in its zip layout.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder in which ``RAVDESS`` is created.
    actors : list, optional
        Subset of actors (``12`` or ``"12"``); default all 24.
    per_class : int, optional
        At most this many speech files per actor and emotion.
    seed : int
        Random seed.
    min_duration, max_duration : float
        Durations are uniform in this range (seconds); audio is 48 kHz.
    song : bool
        Also extract the song archive into the same ``Actor_*`` folders.
    video : bool
        Also put audio-video (``01-...``) and video-only (``02-...``)
        ``.mp4`` files of the first actor there (placeholder bytes).
    kaggle_copy : bool
        Also write the second copy of every speech file under
        ``audio_speech_actors_01-24/Actor_*/`` (Kaggle upload layout).
    stereo : iterable of str
        File stems written with two channels (none by default).
    extras : bool
        Also write a macOS ``.DS_Store`` and a ``._`` file.

    Returns
    -------
    pathlib.Path
        The ``RAVDESS`` folder (holding ``Actor_01`` ... ``Actor_24``).

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_ravdess(tmp.name, actors=[1, 2], per_class=1, song=False)
    >>> sorted(p.name for p in root.iterdir())
    ['.DS_Store', 'Actor_01', 'Actor_02']
    >>> import soundfile
    >>> soundfile.info(str(root / "Actor_02/03-01-01-01-01-01-02.wav")).samplerate
    48000
    >>> tmp.cleanup()
    """
    _check_durations(min_duration, max_duration)
    plan = plan_ravdess(actors, per_class, song)
    root = _new_root(out_dir, "RAVDESS")
    _write_audio(root, plan, seed, 2, 48000, (min_duration, max_duration), stereo)
    rng = np.random.default_rng([int(seed), 2, 2])
    if kaggle_copy:
        copy = root / "audio_speech_actors_01-24"
        for item in plan:
            if item.kind == "speech":
                target = copy / item.relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes((root / item.relpath).read_bytes())
    if video:
        first = plan[0].speaker
        for modality in ("01", "02"):
            for emotion in ("01", "05"):
                name = _ravdess_name(modality, "01", emotion, "01", "01", "01", first)
                (root / f"Actor_{first}" / f"{name}.mp4").write_bytes(
                    b"\x00\x00\x00\x18ftypmp42" + rng.bytes(48)
                )
    if extras:
        (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + rng.bytes(32))
        first = plan[0]
        _appledouble(root / Path(first.relpath).parent / f"._{first.stem}.wav", rng)
    return root


# --------------------------------------------------------------------------
# CREMA-D
# --------------------------------------------------------------------------


def _cremad_grid(actor):
    """The 82 clip stems of one actor, in SentenceFilenames.csv order."""
    stems = []
    for sentence in CREMAD_SENTENCES:
        for emotion in CREMAD_GRID_EMOTIONS:
            if sentence == "IEO" and emotion != "NEU":
                levels = ("LO", "MD", "HI")
            else:
                levels = ("XX",)
            stems += [f"{actor}_{sentence}_{emotion}_{level}" for level in levels]
    return stems


def plan_cremad(actors=None, per_class=None, legacy_x_name=True):
    """The audio files :func:`make_cremad` writes (release names).

    Arguments
    ---------
    actors : list, optional
        Actor ids (``1001`` ... ``1091``); default all 91.
    per_class : int, optional
        At most this many files per actor and emotion.
    legacy_x_name : bool
        Name clip 1040_ITH_SAD_XX ``1040_ITH_SAD_X.wav``.

    Returns
    -------
    list of PlannedFile
        In SentenceFilenames.csv order.

    Example
    -------
    >>> plan = plan_cremad()
    >>> len(plan), sum(p.gender == "M" for p in plan) > 0
    (7442, True)
    >>> [p.relpath for p in plan if "1040_ITH_SAD" in p.relpath]
    ['AudioWAV/1040_ITH_SAD_X.wav']
    """
    _check_per_class(per_class)
    known = tuple(str(k) for k in range(1001, 1092))
    chosen = _select_speakers(actors, known, 4, "actors")
    level_strength = {"LO": 0.8, "MD": 1.0, "HI": 1.3, "XX": 1.0}
    plan = []
    for actor in chosen:
        gender = _CREMAD_SEX[int(actor) - 1001]
        for stem in _cremad_grid(actor):
            if stem in CREMAD_MISSING:
                continue
            _, _, emotion, level = stem.split("_")
            name = stem
            if legacy_x_name and stem == CREMAD_LEGACY_X:
                name = stem[:-1]
            plan.append(
                PlannedFile(
                    f"AudioWAV/{name}.wav",
                    actor,
                    gender,
                    CREMAD_EMOTIONS[emotion],
                    level_strength[level],
                    "silent" if stem == CREMAD_SILENT else "speech",
                )
            )
    return _limit_per_class(plan, per_class)


#: The emotion each CREMA-D emotion's minority votes go to.
CREMAD_PARTNERS = {
    "anger": "disgust",
    "disgust": "anger",
    "fear": "sad",
    "sad": "fear",
    "happy": "neutral",
    "neutral": "happy",
}


def cremad_votes(plan):
    """The planned voice-only votes of each clip (release name with ``XX``):
    ``{clip: {emotion: count}}``, 10 votes each.

    Per emotion, in plan order: 8 for the intended emotion and 2 for its
    partner (:data:`CREMAD_PARTNERS`), then 6-4, then 5-5, in turn.

    Example
    -------
    >>> plan = plan_cremad(actors=[1001], per_class=3)
    >>> votes = cremad_votes(plan)
    >>> [votes[p.stem] for p in plan if p.emotion == "anger"]
    [{'anger': 8, 'disgust': 2}, {'anger': 6, 'disgust': 4}, {'anger': 5, 'disgust': 5}]
    """  # noqa: E501
    seen = Counter()
    votes = {}
    for planned in plan:
        stem = planned.stem + ("X" if planned.stem.endswith("_X") else "")
        main = (8, 6, 5)[seen[planned.emotion] % 3]
        seen[planned.emotion] += 1
        votes[stem] = {
            planned.emotion: main,
            CREMAD_PARTNERS[planned.emotion]: 10 - main,
        }
    return votes


def _tabulated_votes(plan):
    """The text of ``processedResults/tabulatedVotes.csv``."""
    header = (
        '"","A","D","F","H","N","S","fileName","numResponses","agreement",'
        '"emoVote","meanEmoResp","meanAngerResp","meanDisgustResp","meanFearResp",'
        '"meanHappyResp","meanNeutralResp","meanSadResp","medianEmoResp",'
        '"meanEmoRespNorm","meanAngerRespNorm","meanDisgustRespNorm",'
        '"meanFearRespNorm","meanHappyRespNorm","meanNeutralRespNorm",'
        '"meanSadRespNorm","medianEmoRespNorm"'
    )
    voice = cremad_votes(plan)
    lines = [header]
    for block in (1, 2, 3):
        for number, (stem, counts) in enumerate(sorted(voice.items()), start=1):
            if block != 1:  # face and audio-visual: unanimous
                intended = next(iter(counts))
                counts = {intended: 10}
            cells = [counts.get(CREMAD_VOTE_COLUMNS[c], 0) for c in "ADFHNS"]
            top = max(cells)
            vote = ":".join(c for c, n in zip("ADFHNS", cells) if n == top)
            means = [50.0 if n else -1 for n in cells]
            lines.append(
                f'"{block}{number:05d}",{",".join(map(str, cells))},"{stem}",10,'
                f'{top / 10:g},"{vote}",50,{",".join(f"{m:g}" for m in means)},50,'
                f"50,{','.join(f'{m:g}' for m in means)},50"
            )
    return "\n".join(lines) + "\n"


def make_cremad(
    out_dir,
    actors=None,
    per_class=None,
    seed=0,
    min_duration=0.1,
    max_duration=0.3,
    legacy_x_name=True,
    extras=True,
):
    """Write a synthetic CREMA-D in the layout of its git-lfs repository.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder in which ``CREMA-D`` is created.
    actors : list, optional
        Subset of actors (``1001`` ... ``1091``); default all 91.
        ``VideoDemographics.csv`` always lists all 91.
    per_class : int, optional
        At most this many files per actor and emotion.
    seed : int
        Random seed.
    min_duration, max_duration : float
        Durations are uniform in this range (seconds); audio is 16 kHz. The
        silent clip keeps its release length (2.57 s).
    legacy_x_name : bool
        Name clip 1040_ITH_SAD_XX ``1040_ITH_SAD_X.wav`` (pre-2022 copies).
    extras : bool
        Also write ``README.md``, ``SentenceFilenames.csv``,
        ``processedResults/tabulatedVotes.csv`` and a macOS ``._`` file in
        ``AudioWAV/``.

    Returns
    -------
    pathlib.Path
        The ``CREMA-D`` folder (holding ``AudioWAV/``).

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_cremad(tmp.name, actors=[1001], per_class=1)
    >>> sorted(p.name for p in (root / "AudioWAV").iterdir())[:3]
    ['._1001_IEO_NEU_XX.wav', '1001_IEO_ANG_LO.wav', '1001_IEO_DIS_LO.wav']
    >>> (root / "VideoDemographics.csv").read_text().splitlines()[1]
    '1001,51,"Male","Caucasian","Not Hispanic"'
    >>> tmp.cleanup()
    """
    _check_durations(min_duration, max_duration)
    plan = plan_cremad(actors, per_class, legacy_x_name)
    root = _new_root(out_dir, "CREMA-D")
    (root / "AudioWAV").mkdir()
    _write_audio(root, plan, seed, 3, 16000, (min_duration, max_duration))
    rng = np.random.default_rng([int(seed), 3, 2])
    rows = ['"ActorID","Age","Sex","Race","Ethnicity"']
    races = ("Caucasian", "African American", "Asian", "Unknown")
    for index, sex in enumerate(_CREMAD_SEX):
        # Actor 1001's row as in the release; the others' age, race and
        # ethnicity are drawn (only ActorID and Sex matter here).
        if index == 0:
            age, race, ethnicity = 51, "Caucasian", "Not Hispanic"
        else:
            age = int(rng.integers(20, 75))
            race = races[int(rng.integers(len(races)))]
            ethnicity = "Hispanic" if rng.random() < 0.1 else "Not Hispanic"
        gender = "Male" if sex == "M" else "Female"
        rows.append(f'{1001 + index},{age},"{gender}","{race}","{ethnicity}"')
    write_text(root / "VideoDemographics.csv", "\n".join(rows) + "\n")
    if extras:
        write_text(
            root / "README.md",
            "## CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset)\n\n"
            "Synthetic stand-in written by sser_lobes.synthetic.public_corpora.\n",
        )
        names = ['"Stimulus_Number","Filename"']
        names += [f'{i},"{p.stem}"' for i, p in enumerate(plan, start=1)]
        write_text(root / "SentenceFilenames.csv", "\n".join(names) + "\n")
        (root / "processedResults").mkdir()
        write_text(
            root / "processedResults" / "tabulatedVotes.csv", _tabulated_votes(plan)
        )
        _appledouble(root / "AudioWAV" / f"._{plan[0].stem}.wav", rng)
    return root


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

_MAKERS = {"emodb": make_emodb, "ravdess": make_ravdess, "cremad": make_cremad}


def main(argv=None):
    """Command-line entry point; returns the exit status (0 ok, 1 error).

    Example
    -------
    >>> import tempfile, contextlib, io
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = io.StringIO()
    >>> with contextlib.redirect_stdout(out):
    ...     status = main(["emodb", "--out", tmp.name, "--speakers", "3"])
    >>> status, "49 audio files" in out.getvalue()
    (0, True)
    >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.synthetic.public_corpora",
        description="Write a synthetic EmoDB, RAVDESS or CREMA-D in its official "
        "layout (full release file list by default, very short learnable audio).",
    )
    parser.add_argument("corpus", choices=sorted(_MAKERS))
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--speakers", nargs="+", default=None, help="subset of speakers / actors"
    )
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    key = "speakers" if args.corpus == "emodb" else "actors"
    try:
        root = _MAKERS[args.corpus](
            args.out, **{key: args.speakers}, per_class=args.per_class, seed=args.seed
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    count = sum(1 for p in root.rglob("*.wav") if not p.name.startswith("._"))
    print(os.fspath(root))
    print(f"{count} audio files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
