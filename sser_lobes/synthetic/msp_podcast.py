"""Generator of a small synthetic corpus in the MSP-Podcast v1.11 on-disk format.

The corpus is meant for tests and smoke runs of the MSP-Podcast recipes
(Odyssey 2024 challenge, Task 1: 8 classes, Task 2: arousal / valence /
dominance) without the real data. It reproduces the layout and file syntax of
the release (see "Corpus formats" in the project brief)::

    MSP-PODCAST-Publish-1.11/            <- the root this module creates
        Audios/MSP-PODCAST_0001_0008.wav (16 kHz mono PCM_16; with
                                          nested_audio=True under Audios/Audios/,
                                          as some copies of the release unpack)
        Labels/labels_consensus.csv      (or .json, see labels_format)
        Labels/labels_detailed.csv       (one row per file and annotator)
        Transcripts/MSP-PODCAST_0001_0008.txt
        Partitions.txt

The root folder is named after the real release folder
(``MSP-PODCAST-Publish-1.11``) and is never written into when it exists and is
not empty.

``Labels/labels_consensus.csv`` has the exact header and row syntax::

    FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1

with rows sorted by file name. ``labels_format="json"`` writes
``Labels/labels_consensus.json`` instead, a dict keyed by FileName whose values
hold the other seven fields (attributes as numbers, SpkrID as an integer or the
string ``"Unknown"``)::

    {"MSP-PODCAST_0001_0008.wav": {"EmoClass": "N", "EmoAct": 2.2,
        "EmoVal": 4.0, "EmoDom": 2.6, "SpkrID": 30, "Gender": "Male",
        "Split_Set": "Test1"}, ...}

``labels_format="both"`` writes both files.

``Partitions.txt`` lists every audio file, one ``<Split>; <FileName>`` line
each (``Train; MSP-PODCAST_0023_0048.wav``), Test3 included.

``Labels/labels_detailed.csv`` has one row per labelled file and annotator
(five each), in the v1.11 layout: the header ``FileName,EmoDetail`` and rows
``MSP-PODCAST_0001_0008.wav,"WORKER00014; Neutral; Concerned,Frustrated;
A:4.0; V:3.0; D:4.0;"`` (annotator, primary emotion, secondary emotions or
nothing, the annotator's attributes). ``detailed_format="columns"`` writes
the column layout of earlier releases instead
(``FileName,Workers,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom``).
The primary votes follow a known plan (:func:`planned_votes`, with the
expected distributions in :func:`vote_distributions`): for each class, one
file in three unanimous, one with 3 votes for the class and 2 for its
partner class, one with 3, 1 and an ``Other-...`` vote; O rows mostly
``Other-...``; X rows split 2-2-1.

Content, as in the real corpus:

* the eight challenge classes A (angry), S (sad), H (happy), U (surprise),
  F (fear), D (disgust), C (contempt), N (neutral): ``utterances_per_class``
  of each in Train and ``max(1, utterances_per_class // 2)`` of each in
  Development, Test1 and Test2; plus rows with O (other) and X (no agreement),
  which the categorical task drops;
* Test3 (``test3_utterances`` files, class-balanced like the real 2,347-file
  Test3) appears in ``Partitions.txt`` and ``Audios/`` only: no label row and
  no transcript (hidden, as in the release);
* file names ``MSP-PODCAST_<podcast 4 digits>_<segment 4 digits>.wav``;
  integer speaker ids (SpkrID), and some ``Unknown`` speakers (in Train and
  Development; each such row has a gender, Male or Female);
* speakers are disjoint between the splits (except ``Unknown``): the test
  speakers are never in Train; every speaker has a podcast of its own, so
  Test2 podcasts are not in any other split either;
* a few labelled rows whose transcript file is missing.

The audio is learnable: each class has a distinct combination of pitch (f0)
and pitch glide, energy, syllable (amplitude-modulation) rate and brightness
(harmonic richness, spectral tilt, noise), see :data:`CLASS_CUES`, with
per-speaker and per-utterance variation and a little background noise. The
attributes EmoAct / EmoVal / EmoDom (1-7, one decimal) follow the cues each
utterance actually got (see :func:`attribute_targets`): arousal grows with
energy and syllable rate, dominance with energy and pitch, valence depends on
the class (H, U high; A, S, D, C low; N mid), each plus a little noise.
Everything is deterministic for a given seed.

Command line::

    python -m sser_lobes.synthetic.msp_podcast --out DIR
        [--utterances-per-class N] [--seed S] [--min-duration SEC]
        [--max-duration SEC] [--test3 N] [--nested-audio]
        [--labels-format csv|json|both]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile

from sser_lobes.synthetic.common import (
    check_new_root,
    finish_utterance,
    harmonic_source,
    syllable_envelope,
    write_text,
)

__all__ = [
    "CLASSES",
    "CLASS_CUES",
    "ClassCue",
    "LABEL_HEADER",
    "PlannedUtterance",
    "ROOT_NAME",
    "SPLITS",
    "attribute_targets",
    "main",
    "make_label_table",
    "make_msp_podcast_corpus",
    "plan_corpus",
    "planned_votes",
    "vote_distributions",
]

#: Name of the corpus root folder (that of the real release).
ROOT_NAME = "MSP-PODCAST-Publish-1.11"

#: Exact header line of ``Labels/labels_consensus.csv``.
LABEL_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"

#: The eight challenge classes, in the order of the official baseline.
CLASSES = ("A", "S", "H", "U", "F", "D", "C", "N")

#: Classes of rows that the categorical task drops (other, no agreement).
DROPPED_CLASSES = ("O", "X")

#: Split names (``Split_Set`` values; Test3 appears only in Partitions.txt).
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")

#: Exact headers of ``Labels/labels_detailed.csv`` (v1.11; earlier releases).
DETAILED_HEADER = "FileName,EmoDetail"
DETAILED_COLUMNS_HEADER = (
    "FileName,Workers,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom"
)

#: Primary-emotion names of labels_detailed.csv.
PRIMARY_NAMES = {
    "A": "Angry",
    "S": "Sad",
    "H": "Happy",
    "U": "Surprise",
    "F": "Fear",
    "D": "Disgust",
    "C": "Contempt",
    "N": "Neutral",
}
#: The class each class's minority votes go to.
PARTNERS = {
    "A": "D",
    "D": "A",
    "S": "N",
    "N": "S",
    "H": "U",
    "U": "H",
    "F": "S",
    "C": "A",
}

#: Speakers of each split, as genders (each gets a distinct integer SpkrID).
SPLIT_SPEAKERS = {
    "Train": ("Male", "Female", "Male", "Female"),
    "Development": ("Female", "Male"),
    "Test1": ("Male", "Female"),
    "Test2": ("Female", "Male"),
    "Test3": ("Male", "Female"),
}

#: Ranges used to normalise the cues in :func:`attribute_targets`.
_AMPLITUDE_RANGE = (0.04, 0.55)
_RATE_RANGE = (1.4, 8.8)
_F0_RANGE = (90.0, 360.0)

#: Female speakers' pitch relative to male speakers'.
_FEMALE_F0 = 1.15


@dataclass(frozen=True)
class ClassCue:
    """Acoustic recipe of a class and its mean valence.

    Arguments
    ---------
    name : str
        Class name.
    f0 : float
        Mean fundamental frequency in Hz for a male speaker (female: +15 %).
    glide : float
        Relative pitch change over the utterance (+0.3: rises by 30 %).
    amplitude : float
        Peak amplitude of the utterance (energy).
    am_rate : float
        Amplitude-modulation ("syllable") rate in Hz.
    n_harmonics : int
        Number of harmonics (capped below 7 kHz).
    tilt : float
        Spectral tilt: harmonic ``k`` has amplitude ``k ** -tilt`` (larger is
        duller, smaller is brighter).
    noise : float
        Level of the envelope-following noise relative to the voiced part
        (breathiness / harshness).
    valence : float
        Mean valence rating (1-7) of the class.

    Example
    -------
    >>> cue = CLASS_CUES["A"]
    >>> cue.name, cue.amplitude > CLASS_CUES["N"].amplitude > CLASS_CUES["S"].amplitude
    ('angry', True)
    """

    name: str
    f0: float
    glide: float
    amplitude: float
    am_rate: float
    n_harmonics: int
    tilt: float
    noise: float
    valence: float


#: Class cue table. Each class has its own combination of cues:
#:
#: ===== ========== ====== ===== ====== =========== ======= ==========
#: class name        f0 Hz glide energy  rate (Hz)  bright  valence
#: ===== ========== ====== ===== ====== =========== ======= ==========
#: A     angry        200   0     0.50   5.0         +++     2.0 (low)
#: S     sad          100   -0.10 0.05   1.5         -       2.2 (low)
#: H     happy        260   +0.05 0.30   6.5         +       5.8 (high)
#: U     surprise     330   +0.30 0.22   2.5         +       5.0 (high)
#: F     fear         240   0     0.15   8.0         breathy 2.8
#: D     disgust      120   -0.05 0.20   2.0         ++ harsh 2.1 (low)
#: C     contempt     165   -0.15 0.10   2.0         -       2.6 (low)
#: N     neutral      140   -0.05 0.12   4.0         0       4.0 (mid)
#: O     other        180   0     0.15   3.0         0       3.6
#: X     no agreement 170   0     0.18   4.5         0       3.8
#: ===== ========== ====== ===== ====== =========== ======= ==========
#:
#: Orderings by design: pitch U > H > F > A > C > N > D > S; energy
#: A > H > U > D > F > N > C > S; rate F > H > A > N > U > C = D > S.
CLASS_CUES = {
    "A": ClassCue("angry", 200.0, 0.0, 0.50, 5.0, 28, 0.6, 0.15, 2.0),
    "S": ClassCue("sad", 100.0, -0.10, 0.05, 1.5, 8, 2.2, 0.01, 2.2),
    "H": ClassCue("happy", 260.0, 0.05, 0.30, 6.5, 14, 1.0, 0.03, 5.8),
    "U": ClassCue("surprise", 330.0, 0.30, 0.22, 2.5, 12, 1.1, 0.03, 5.0),
    "F": ClassCue("fear", 240.0, 0.0, 0.15, 8.0, 10, 1.6, 0.20, 2.8),
    "D": ClassCue("disgust", 120.0, -0.05, 0.20, 2.0, 24, 0.7, 0.12, 2.1),
    "C": ClassCue("contempt", 165.0, -0.15, 0.10, 2.0, 8, 1.9, 0.02, 2.6),
    "N": ClassCue("neutral", 140.0, -0.05, 0.12, 4.0, 12, 1.3, 0.02, 4.0),
    "O": ClassCue("other", 180.0, 0.0, 0.15, 3.0, 14, 1.2, 0.04, 3.6),
    "X": ClassCue("no agreement", 170.0, 0.0, 0.18, 4.5, 14, 1.1, 0.05, 3.8),
}

_SENTENCES = {
    "A": ("This is absolutely ridiculous.", "Don't you dare say that again!"),
    "S": ("I really miss those days.", "It just doesn't matter anymore."),
    "H": ("That's wonderful news!", "We had such a great time."),
    "U": ("Wait, what? Since when?", "No way, are you serious?"),
    "F": ("I'm scared of what comes next.", "Did you hear that noise?"),
    "D": ("That's honestly disgusting.", "Ugh, I can't even look at it."),
    "C": ("Oh sure, like he would know.", "Whatever, that's their problem."),
    "N": ("The show starts at nine.", "So we talked about the budget."),
    "O": ("Well, I guess it depends.", "Hmm, that's one way to see it."),
    "X": ("I don't know what to tell you.", "Okay, let's move on then."),
}


@dataclass(frozen=True)
class PlannedUtterance:
    """One audio file of the synthetic corpus, with its (hidden or not) labels.

    Arguments
    ---------
    file_name : str
        E.g. ``MSP-PODCAST_0001_0008.wav``.
    emo_class : str
        Class letter (for Test3, the hidden truth; never written).
    split : str
        Train, Development, Test1, Test2 or Test3.
    speaker : str
        Integer SpkrID as a string (``"30"``) or ``"Unknown"``.
    gender : str
        ``"Male"`` or ``"Female"``.
    arousal, valence, dominance : float
        EmoAct, EmoVal, EmoDom (1-7, one decimal).
    duration : float
        Duration in seconds (the wav has ``round(duration * sample_rate)``
        samples).
    text : str
        Transcript (written only if ``has_transcript``).
    has_transcript : bool
        Whether ``Transcripts/<id>.txt`` is written (never for Test3).
    f0, amplitude, am_rate : float
        The cues this utterance actually got: mean pitch (Hz, after the
        speaker, gender and utterance variation), peak amplitude and
        syllable rate (Hz).

    Example
    -------
    >>> utt = plan_corpus(utterances_per_class=2)[0]
    >>> utt.utt_id.startswith("MSP-PODCAST_"), utt.labelled
    (True, True)
    """

    file_name: str
    emo_class: str
    split: str
    speaker: str
    gender: str
    arousal: float
    valence: float
    dominance: float
    duration: float
    text: str
    has_transcript: bool
    f0: float
    amplitude: float
    am_rate: float
    votes: tuple = ()

    @property
    def utt_id(self):
        """File name without ``.wav``."""
        return self.file_name[: -len(".wav")]

    @property
    def labelled(self):
        """Whether the file has a row in the labels file (all but Test3)."""
        return self.split != "Test3"

    def label_row(self):
        """The row of ``labels_consensus.csv`` (without newline).

        Example
        -------
        >>> utt = PlannedUtterance("MSP-PODCAST_0001_0008.wav", "N", "Test1",
        ...     "30", "Male", 2.2, 4.0, 2.6, 1.5, "Hi.", True, 140.0, 0.1, 4.0)
        >>> utt.label_row()
        'MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1'
        """
        return (
            f"{self.file_name},{self.emo_class},{self.arousal:.1f},"
            f"{self.valence:.1f},{self.dominance:.1f},{self.speaker},"
            f"{self.gender},{self.split}"
        )


def _norm_log(value, low, high):
    """Position of ``value`` in ``[low, high]`` on a log scale, clipped to [0, 1]."""
    x = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return min(1.0, max(0.0, x))


def attribute_targets(amplitude, am_rate, class_f0):
    """Noise-free arousal and dominance (1-7) implied by an utterance's cues.

    ``arousal = 1 + 6 * (0.5 * e + 0.5 * r)`` and
    ``dominance = 1 + 6 * (0.65 * e + 0.35 * p)``, where ``e``, ``r`` and
    ``p`` are the energy (peak amplitude), syllable rate and pitch placed on
    a 0-1 log scale (amplitude 0.04-0.55, rate 1.4-8.8 Hz, pitch 90-360 Hz).
    The pitch used is the class pitch with the utterance's own variation,
    without the speaker's and gender's offsets (dominance does not depend on
    who speaks). The corpus adds Gaussian noise (standard deviation 0.25) and
    rounds to one decimal.

    Arguments
    ---------
    amplitude : float
        Peak amplitude of the utterance.
    am_rate : float
        Syllable rate in Hz.
    class_f0 : float
        Pitch in Hz without the speaker and gender offsets.

    Returns
    -------
    tuple of float
        ``(arousal, dominance)``.

    Example
    -------
    >>> loud_fast = attribute_targets(0.5, 6.0, 200.0)
    >>> soft_slow = attribute_targets(0.05, 1.5, 100.0)
    >>> loud_fast[0] > 5 > 2 > soft_slow[0], loud_fast[1] > soft_slow[1]
    (True, True)
    """
    e = _norm_log(amplitude, *_AMPLITUDE_RANGE)
    r = _norm_log(am_rate, *_RATE_RANGE)
    p = _norm_log(class_f0, *_F0_RANGE)
    return 1.0 + 6.0 * (0.5 * e + 0.5 * r), 1.0 + 6.0 * (0.65 * e + 0.35 * p)


def _rating(value, rng, sd=0.25):
    """Add rating noise, clip to 1-7 and round to one decimal."""
    return round(float(np.clip(value + rng.normal(0.0, sd), 1.0, 7.0)), 1)


def _check_args(
    utterances_per_class, min_duration, max_duration, sample_rate, test3_utterances
):
    if isinstance(utterances_per_class, bool) or int(utterances_per_class) != (
        utterances_per_class
    ):
        raise ValueError(
            f"utterances_per_class must be a positive integer, "
            f"got {utterances_per_class!r}"
        )
    if utterances_per_class < 1:
        raise ValueError(
            f"utterances_per_class must be a positive integer, "
            f"got {utterances_per_class!r}"
        )
    if (
        isinstance(test3_utterances, bool)
        or int(test3_utterances) != test3_utterances
        or test3_utterances < 0
    ):
        raise ValueError(
            f"test3_utterances must be an integer >= 0, got {test3_utterances!r}"
        )
    if not 0.05 <= min_duration <= max_duration:
        raise ValueError(
            f"durations must satisfy 0.05 <= min_duration <= max_duration, got "
            f"min_duration={min_duration!r}, max_duration={max_duration!r}"
        )
    if int(sample_rate) != sample_rate or sample_rate < 4000:
        raise ValueError(f"sample_rate must be an integer >= 4000, got {sample_rate!r}")


def _split_classes(split, utterances_per_class, test3_utterances):
    """Class letters of a split's rows, in the order speakers are assigned."""
    if split == "Test3":
        return [CLASSES[i % len(CLASSES)] for i in range(test3_utterances)]
    if split == "Train":
        n, extra = utterances_per_class, max(1, utterances_per_class // 2)
    else:
        n, extra = max(1, utterances_per_class // 2), 1
    return [c for _ in range(n) for c in CLASSES] + ["O"] * extra + ["X"] * extra


def plan_corpus(
    utterances_per_class=4,
    seed=0,
    min_duration=1.0,
    max_duration=2.0,
    test3_utterances=6,
):
    """Return the files :func:`make_msp_podcast_corpus` writes, without writing.

    Arguments
    ---------
    utterances_per_class : int
        Utterances of each of the 8 classes in Train; Development, Test1 and
        Test2 get ``max(1, utterances_per_class // 2)`` of each. Train also
        gets ``max(1, utterances_per_class // 2)`` O rows and as many X rows,
        the other labelled splits one of each.
    seed : int
        Random seed (speaker ids, file names, durations, cues, attributes,
        transcripts, which rows are Unknown or lack a transcript).
    min_duration, max_duration : float
        Durations are uniform in this range (seconds).
    test3_utterances : int
        Number of Test3 files (classes in turn; 0 for none).

    Returns
    -------
    list of PlannedUtterance
        Sorted by split (Train, Development, Test1, Test2, Test3), then file
        name.

    Example
    -------
    >>> plan = plan_corpus(utterances_per_class=4, test3_utterances=6)
    >>> from collections import Counter
    >>> counts = Counter(u.split for u in plan)
    >>> [counts[s] for s in SPLITS]  # Train: 8 x 4 + 2 O + 2 X
    [36, 18, 18, 18, 6]
    >>> sorted({u.emo_class for u in plan if u.split == "Train"})
    ['A', 'C', 'D', 'F', 'H', 'N', 'O', 'S', 'U', 'X']
    >>> any(u.speaker == "Unknown" for u in plan)
    True
    """
    _check_args(
        utterances_per_class, min_duration, max_duration, 16000, test3_utterances
    )
    rng = np.random.default_rng([int(seed), 11])
    n_speakers = sum(len(g) for g in SPLIT_SPEAKERS.values())
    speaker_ids = rng.choice(np.arange(1, 3000), size=n_speakers, replace=False)
    podcast_ids = np.sort(
        rng.choice(np.arange(1, 9000), size=n_speakers, replace=False)
    )
    segment = {int(p): int(rng.integers(1, 20)) for p in podcast_ids}

    plan = []
    k = 0
    for split in SPLITS:
        genders = SPLIT_SPEAKERS[split]
        speakers = []
        for gender in genders:
            f0_f, amp_f, rate_f = rng.uniform([0.9, 0.85, 0.92], [1.1, 1.15, 1.08])
            speakers.append(
                (
                    str(int(speaker_ids[k])),
                    gender,
                    int(podcast_ids[k]),
                    (float(f0_f), float(amp_f), float(rate_f)),
                )
            )
            k += 1
        classes = _split_classes(split, utterances_per_class, test3_utterances)
        unknown = set()
        if split in ("Train", "Development") and classes:
            n_unknown = max(1, round(len(classes) / 9))
            unknown = {int(i) for i in rng.choice(len(classes), n_unknown, False)}
        for i, code in enumerate(classes):
            # Rotate the speakers over the class cycle so that every speaker
            # gets many classes (speaker and class are not confounded).
            spk, gender, podcast, factors = speakers[
                (i + i // len(CLASSES)) % len(speakers)
            ]
            if i in unknown:
                spk = "Unknown"
                gender = ("Male", "Female")[int(rng.integers(2))]
                factors = tuple(
                    float(x) for x in rng.uniform([0.9, 0.85, 0.92], [1.1, 1.15, 1.08])
                )
            segment[podcast] += int(rng.integers(1, 8))
            file_name = f"MSP-PODCAST_{podcast:04d}_{segment[podcast]:04d}.wav"
            cue = CLASS_CUES[code]
            f0_f, amp_f, rate_f = factors
            class_f0 = cue.f0 * float(rng.uniform(0.97, 1.03))
            gender_f = _FEMALE_F0 if gender == "Female" else 1.0
            f0 = class_f0 * f0_f * gender_f
            amplitude = cue.amplitude * amp_f * float(rng.uniform(0.9, 1.1))
            am_rate = cue.am_rate * rate_f * float(rng.uniform(0.95, 1.05))
            arousal, dominance = attribute_targets(amplitude, am_rate, class_f0)
            sentences = _SENTENCES[code]
            plan.append(
                PlannedUtterance(
                    file_name=file_name,
                    emo_class=code,
                    split=split,
                    speaker=spk,
                    gender=gender,
                    arousal=_rating(arousal, rng),
                    valence=_rating(cue.valence, rng, sd=0.3),
                    dominance=_rating(dominance, rng),
                    duration=float(rng.uniform(min_duration, max_duration)),
                    text=sentences[int(rng.integers(len(sentences)))],
                    has_transcript=split != "Test3",
                    f0=f0,
                    amplitude=amplitude,
                    am_rate=am_rate,
                )
            )
    # A few labelled rows lose their transcript file.
    labelled = [i for i, u in enumerate(plan) if u.labelled]
    n_missing = max(1, round(0.05 * len(labelled)))
    for i in rng.choice(labelled, size=n_missing, replace=False):
        plan[int(i)] = replace(plan[int(i)], has_transcript=False)
    order = {s: i for i, s in enumerate(SPLITS)}
    plan = sorted(plan, key=lambda u: (order[u.split], u.file_name))
    seen = Counter()
    voted = []
    for utt in plan:
        votes = (
            ()
            if not utt.labelled
            else planned_votes(utt.emo_class, seen[utt.emo_class])
        )
        seen[utt.emo_class] += utt.labelled
        voted.append(replace(utt, votes=votes))
    return voted


def planned_votes(emo_class, index):
    """The five annotators' primary votes of the ``index``-th labelled file
    (from 0, in plan order) of class ``emo_class``: primary emotion names.

    A class: index 0, 3, ... five votes for it; 1, 4, ... three and two for
    its partner (:data:`PARTNERS`); 2, 5, ... three, one for the partner and
    one ``Other-Curious``. O: three ``Other-...``, one Neutral, one Sad. X: two
    Angry, two Sad, one Neutral.

    Example
    -------
    >>> planned_votes("A", 1)
    ('Angry', 'Angry', 'Angry', 'Disgust', 'Disgust')
    """
    if emo_class == "O":
        return ("Other-Curious", "Other-Concerned", "Other", "Neutral", "Sad")
    if emo_class == "X":
        return ("Angry", "Angry", "Sad", "Sad", "Neutral")
    name = PRIMARY_NAMES[emo_class]
    partner = PRIMARY_NAMES[PARTNERS[emo_class]]
    return (
        (name,) * 5,
        (name,) * 3 + (partner,) * 2,
        (name,) * 3 + (partner, "Other-Curious"),
    )[index % 3]


def vote_distributions(plan, classes=CLASSES):
    """What a preparation must read: each labelled file's primary-vote
    distribution over ``classes`` (other votes left out; None when no vote
    is in them), keyed by utterance id.

    Example
    -------
    >>> plan = plan_corpus(utterances_per_class=3)
    >>> dists = vote_distributions(plan, ["A", "D", "N"])
    >>> third = [u for u in plan if u.emo_class == "A"][2]
    >>> dists[third.utt_id]
    [0.75, 0.25, 0.0]
    """
    letters = {name: letter for letter, name in PRIMARY_NAMES.items()}
    result = {}
    for utt in plan:
        if not utt.labelled:
            continue
        counts = Counter(letters.get(name, "O") for name in utt.votes)
        total = sum(counts[c] for c in classes)
        result[utt.utt_id] = [counts[c] / total for c in classes] if total else None
    return result


def _detailed_rows(utt, seed, index, columns=False):
    """The labels_detailed.csv rows of one file (without the header)."""
    rng = np.random.default_rng([int(seed), 17, index])
    secondary = ("", "Concerned", "Frustrated,Annoyed", "Amused", "Confused")
    rows = []
    workers = rng.choice(np.arange(1, 3000), size=len(utt.votes), replace=False)
    for worker, primary in zip(workers, utt.votes):
        act, val, dom = (
            float(np.clip(round(x + rng.normal(0, 0.7)), 1, 7))
            for x in (utt.arousal, utt.valence, utt.dominance)
        )
        tags = secondary[int(rng.integers(len(secondary)))]
        worker = f"WORKER{int(worker):05d}"
        if columns:
            rows.append([utt.file_name, worker, primary, tags, act, val, dom])
        else:
            detail = (
                f"{worker}; {primary}; {tags}; A:{act:.1f}; V:{val:.1f}; D:{dom:.1f};"
            )
            rows.append([utt.file_name, detail])
    return rows


def _synthesize(utt, index, seed, sample_rate):
    """Return the waveform (float64 in [-1, 1]) of one planned utterance."""
    rng = np.random.default_rng([int(seed), 13, index])
    cue = CLASS_CUES[utt.emo_class]
    num = max(1, int(round(utt.duration * sample_rate)))
    t = np.arange(num) / sample_rate
    # Intonation: the class glide, a slow oscillation and a little jitter.
    contour = 1 + cue.glide * (t / max(utt.duration, 1e-3) - 0.5)
    contour += 0.03 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(utt.f0 * contour) / sample_rate
    voiced = harmonic_source(phase, utt.f0 * 1.2, cue.n_harmonics, cue.tilt, rng)
    # Syllables: raised-cosine amplitude modulation at the utterance's rate.
    envelope = syllable_envelope(t, utt.am_rate, rng)
    signal = envelope * (voiced + cue.noise * rng.standard_normal(num))
    return finish_utterance(signal, utt.amplitude, rng, sample_rate)


def _json_labels(plan):
    labels = {}
    for u in plan:
        if u.labelled:
            labels[u.file_name] = {
                "EmoClass": u.emo_class,
                "EmoAct": u.arousal,
                "EmoVal": u.valence,
                "EmoDom": u.dominance,
                "SpkrID": u.speaker if u.speaker == "Unknown" else int(u.speaker),
                "Gender": u.gender,
                "Split_Set": u.split,
            }
    return dict(sorted(labels.items()))


def make_msp_podcast_corpus(
    out_dir,
    utterances_per_class=4,
    seed=0,
    min_duration=1.0,
    max_duration=2.0,
    sample_rate=16000,
    test3_utterances=6,
    nested_audio=False,
    labels_format="csv",
    detailed_format="emodetail",
):
    """Write a small synthetic corpus in the MSP-Podcast v1.11 format.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder in which ``MSP-PODCAST-Publish-1.11`` is created (created if
        needed).
    utterances_per_class : int
        Utterances of each of the 8 classes in Train (see
        :func:`plan_corpus` for the other splits).
    seed : int
        Random seed; the corpus is identical for identical arguments.
    min_duration, max_duration : float
        Utterance durations are uniform in this range (seconds).
    sample_rate : int
        Sampling rate of the wav files (MSP-Podcast: 16000).
    test3_utterances : int
        Number of Test3 files (no labels, no transcripts).
    nested_audio : bool
        Put the wav files under ``Audios/Audios/`` (as some copies of the
        release unpack) instead of ``Audios/``.
    labels_format : str
        ``"csv"`` (``Labels/labels_consensus.csv``), ``"json"``
        (``Labels/labels_consensus.json``, see the module docstring) or
        ``"both"``.
    detailed_format : str or None
        ``"emodetail"``: ``Labels/labels_detailed.csv`` in the v1.11 layout
        (``FileName,EmoDetail``); ``"columns"``: the layout of earlier
        releases; None: no detailed labels file.

    Returns
    -------
    pathlib.Path
        The ``MSP-PODCAST-Publish-1.11`` folder.

    Raises
    ------
    FileExistsError
        If ``out_dir/MSP-PODCAST-Publish-1.11`` exists and is not an empty
        folder (nothing is ever overwritten).
    ValueError
        On invalid arguments.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_msp_podcast_corpus(tmp.name, utterances_per_class=2)
    >>> root.name
    'MSP-PODCAST-Publish-1.11'
    >>> sorted(p.name for p in root.iterdir())
    ['Audios', 'Labels', 'Partitions.txt', 'Transcripts']
    >>> (root / "Labels" / "labels_consensus.csv").read_text().splitlines()[0]
    'FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set'
    >>> len(list((root / "Audios").glob("MSP-PODCAST_*.wav")))  # 18 + 3 x 10 + 6
    54
    >>> tmp.cleanup()
    """
    _check_args(
        utterances_per_class, min_duration, max_duration, sample_rate, test3_utterances
    )
    if labels_format not in ("csv", "json", "both"):
        raise ValueError(
            f"labels_format must be 'csv', 'json' or 'both', got {labels_format!r}"
        )
    root = Path(out_dir) / ROOT_NAME
    check_new_root(root, "--out folder")
    plan = plan_corpus(
        utterances_per_class, seed, min_duration, max_duration, test3_utterances
    )
    audio_dir = root / "Audios"
    if nested_audio:
        audio_dir = audio_dir / "Audios"
    for sub in (audio_dir, root / "Labels", root / "Transcripts"):
        sub.mkdir(parents=True, exist_ok=True)

    for index, utt in enumerate(plan):
        wav = _synthesize(utt, index, seed, sample_rate)
        soundfile.write(audio_dir / utt.file_name, wav, sample_rate, subtype="PCM_16")
        if utt.has_transcript:
            write_text(root / "Transcripts" / f"{utt.utt_id}.txt", utt.text + "\n")

    labelled = sorted((u for u in plan if u.labelled), key=lambda u: u.file_name)
    if labels_format in ("csv", "both"):
        rows = [LABEL_HEADER, *(u.label_row() for u in labelled)]
        write_text(root / "Labels" / "labels_consensus.csv", "\n".join(rows) + "\n")
    if labels_format in ("json", "both"):
        write_text(
            root / "Labels" / "labels_consensus.json",
            json.dumps(_json_labels(plan), indent=2) + "\n",
        )
    write_text(
        root / "Partitions.txt",
        "".join(f"{u.split}; {u.file_name}\n" for u in plan),
    )
    if detailed_format is not None:
        if detailed_format not in ("emodetail", "columns"):
            raise ValueError(
                "detailed_format must be 'emodetail', 'columns' or None, got "
                f"{detailed_format!r}"
            )
        columns = detailed_format == "columns"
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = DETAILED_COLUMNS_HEADER if columns else DETAILED_HEADER
        writer.writerow(header.split(","))
        for index, utt in enumerate(plan):
            if utt.labelled:
                writer.writerows(_detailed_rows(utt, seed, index, columns))
        write_text(root / "Labels" / "labels_detailed.csv", buffer.getvalue())
    return root


def make_label_table(root, rows=150_000):
    """A release-sized ``Labels/labels_consensus.csv`` with one wav file.

    ``rows`` label rows (the v1.11 release has about 150k) over the classes
    A S H U F D C N O X, attributes, speakers (every 13th ``Unknown``),
    genders and the Train / Development / Test1 / Test2 splits; row 780 (the
    file's line 780) is malformed. Only the first row's audio exists
    (``Audios/MSP-PODCAST_0000_0000.wav``, 0.5 s), so a preparation checks
    every row and reports the others as missing audio: the preparation's
    label parsing and reporting at the release's scale, without its audio.

    Returns
    -------
    pathlib.Path
        The labels file.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = make_label_table(pathlib.Path(tempfile.mkdtemp()), rows=3)
    >>> path.read_text().splitlines()[1]
    'MSP-PODCAST_0000_0000.wav,A,1.0,2.0,3.0,Unknown,Male,Train'
    """
    root = Path(root)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Audios").mkdir(exist_ok=True)
    classes = "ASHUFDCNOX"
    splits = ("Train", "Development", "Test1", "Test2")
    lines = [
        f"MSP-PODCAST_{i // 1000:04d}_{i % 1000:04d}.wav,{classes[i % 10]},"
        f"{1 + i % 60 / 10:.1f},{2 + i % 50 / 10:.1f},{3 + i % 40 / 10:.1f},"
        f"{'Unknown' if i % 13 == 0 else i % 1500},{('Male', 'Female')[i % 2]},"
        f"{splits[i % 4]}"
        for i in range(rows)
    ]
    if rows > 778:
        lines[778] = lines[778].replace(",Male,", ",Male,extra,")  # malformed
    path = root / "Labels" / "labels_consensus.csv"
    path.write_text("\n".join([LABEL_HEADER, *lines]) + "\n")
    soundfile.write(
        root / "Audios" / "MSP-PODCAST_0000_0000.wav", np.zeros(8000), 16000, "PCM_16"
    )
    return path


def main(argv=None):
    """Command-line entry point; returns the exit status.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on error.

    Example
    -------
    >>> import tempfile, contextlib, io
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = io.StringIO()
    >>> with contextlib.redirect_stdout(out):
    ...     status = main(["--out", tmp.name, "--utterances-per-class", "2"])
    >>> status
    0
    >>> "54 audio files" in out.getvalue()
    True
    >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.synthetic.msp_podcast",
        description="Write a small synthetic corpus in the MSP-Podcast v1.11 "
        f"format (learnable classes) as --out/{ROOT_NAME}.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--utterances-per-class",
        type=int,
        default=4,
        help="utterances of each class in Train (default 4)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--min-duration", type=float, default=1.0, help="seconds")
    parser.add_argument("--max-duration", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--test3", type=int, default=6, help="number of Test3 files (default 6)"
    )
    parser.add_argument(
        "--nested-audio",
        action="store_true",
        help="put the wav files under Audios/Audios/",
    )
    parser.add_argument(
        "--labels-format", choices=("csv", "json", "both"), default="csv"
    )
    args = parser.parse_args(argv)
    try:
        root = make_msp_podcast_corpus(
            args.out,
            utterances_per_class=args.utterances_per_class,
            seed=args.seed,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
            test3_utterances=args.test3,
            nested_audio=args.nested_audio,
            labels_format=args.labels_format,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    plan = plan_corpus(
        args.utterances_per_class,
        args.seed,
        args.min_duration,
        args.max_duration,
        args.test3,
    )
    splits = Counter(u.split for u in plan)
    print(os.fspath(root))
    print(
        f"{len(plan)} audio files ("
        + ", ".join(f"{s} {splits[s]}" for s in SPLITS)
        + f"), {sum(u.labelled for u in plan)} label rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
