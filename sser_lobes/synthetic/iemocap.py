"""Generator of a small synthetic corpus in the exact IEMOCAP on-disk format.

The corpus is meant for tests and smoke runs of the IEMOCAP recipe without the
real data. It reproduces the layout and file syntax of ``IEMOCAP_full_release``
(see "Corpus formats" in the project brief), including its quirks:

* ``Session{1..5}/sentences/wav/<dialog>/<utt>.wav`` (16 kHz mono PCM_16),
  ``Session*/dialog/EmoEvaluation/<dialog>.txt`` and
  ``Session*/dialog/transcriptions/<dialog>.txt``;
* dialog ids such as ``Ses01F_impro01``, ``Ses01M_script01_1`` and
  ``Ses05F_impro05a``; each dialog holds turns of both speakers of the
  session, the last group of the utterance id (``_F000``, ``_M001``) giving the
  speaker's gender (the letter of ``Ses01F`` is the recording side only);
* EmoEvaluation blocks with the ``% [START_TIME - END_TIME] ...`` header, the
  tab-separated label line and the ``C-``/``A-`` evaluator lines (note the
  double space in ``dom  2``): three evaluators ``C-E1``, ``C-E2``, ``C-E3``
  whose categorical votes follow a known plan (:func:`planned_votes`: for
  each class, one utterance in three is unanimous, one has a 2-1 majority
  and one a tie between the class and its partner class) and the speaker's
  self-evaluation ``C-F1`` / ``C-M1`` (always the partner class, so that a
  reader that counted it would be caught);
* macOS ``._*`` resource-fork files next to the real files, including
  ``._*.wav`` junk in the wav folders;
* ``Categorical/``, ``Attribute/`` and ``Self-evaluation/`` subfolders of
  EmoEvaluation holding decoy ``.txt`` files of a different syntax;
* labels outside the four target classes (``fru``, ``sur``, ``xxx``, ...) and
  ``exc`` (merged into ``hap`` by the recipes, so its audio is hap-like);
* transcription lines ``<utt> [006.2901-008.2357]: text`` plus lines without
  an evaluation entry (``..._MXX0 [...]: [BREATHING]``, ``M: [LAUGHTER]``).

The audio is learnable: each utterance is a voiced synthetic signal whose pitch,
energy, syllable rate and spectral brightness depend clearly on the class (see
:data:`CLASS_CUES`), with per-speaker and per-utterance variation and a little
background noise. Everything is deterministic for a given seed.

Command line::

    python -m sser_lobes.synthetic.iemocap --out DIR [--utterances-per-speaker N]
        [--seed S] [--min-duration SEC] [--max-duration SEC]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile

from sser_lobes.synthetic.common import (
    appledouble_bytes,
    check_new_root,
    finish_utterance,
    harmonic_source,
    syllable_envelope,
    write_text,
)

__all__ = [
    "CLASS_CUES",
    "ClassCue",
    "DIALOGS",
    "SynthUtterance",
    "corpus_labels",
    "main",
    "make_iemocap_corpus",
    "plan_corpus",
    "planned_votes",
    "vote_distributions",
]

#: Header line of every EmoEvaluation file.
EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"

#: Two dialogs per session, in the real naming styles.
DIALOGS = {
    1: ("Ses01F_impro01", "Ses01M_script01_1"),
    2: ("Ses02M_impro02", "Ses02F_script02_2"),
    3: ("Ses03F_impro03", "Ses03M_script03_1"),
    4: ("Ses04M_impro04", "Ses04F_script01_2"),
    5: ("Ses05F_impro05a", "Ses05M_script02_1"),
}

#: Target classes in the order their slots rotate for each speaker. The
#: ``hap`` slots alternate between the codes ``hap`` and ``exc``.
TARGET_SLOTS = ("neu", "hap", "sad", "ang")

#: Non-target codes given to the one extra utterance of each speaker, in turn.
EXTRA_CODES = ("fru", "sur", "xxx", "fea", "dis", "oth")

#: The class each code's minority votes go to (low-arousal neu / sad,
#: high-arousal hap / ang).
PARTNERS = {
    "neu": "sad",
    "sad": "neu",
    "hap": "ang",
    "exc": "ang",
    "ang": "hap",
    "fru": "ang",
    "sur": "hap",
    "fea": "sad",
    "dis": "ang",
}


@dataclass(frozen=True)
class ClassCue:
    """Acoustic recipe of a class and the attribute ratings it gets.

    Arguments
    ---------
    f0 : float
        Mean fundamental frequency in Hz for a male speaker (female: +15 %).
    amplitude : float
        Peak amplitude of the utterance.
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
    valence, arousal, dominance : float
        Mean annotator ratings on the 1-5 scale.

    Example
    -------
    >>> cue = CLASS_CUES["ang"]
    >>> cue.amplitude > CLASS_CUES["neu"].amplitude > CLASS_CUES["sad"].amplitude
    True
    """

    f0: float
    amplitude: float
    am_rate: float
    n_harmonics: int
    tilt: float
    noise: float
    valence: float
    arousal: float
    dominance: float


#: Class cue table. Ordered as designed: pitch hap > ang > neu > sad, energy
#: ang > hap > neu > sad, syllable rate hap > ang > neu > sad, brightness
#: ang > hap > neu > sad. ``exc`` is hap-like (merged into ``hap`` later).
CLASS_CUES = {
    "neu": ClassCue(140.0, 0.10, 3.0, 12, 1.3, 0.02, 3.0, 2.0, 2.5),
    "hap": ClassCue(260.0, 0.30, 6.0, 14, 1.0, 0.03, 4.2, 3.2, 3.0),
    "exc": ClassCue(265.0, 0.32, 6.2, 14, 1.0, 0.04, 3.8, 3.8, 3.2),
    "sad": ClassCue(100.0, 0.05, 1.5, 8, 2.2, 0.01, 1.8, 1.8, 2.0),
    "ang": ClassCue(200.0, 0.50, 5.0, 28, 0.6, 0.15, 1.6, 4.2, 4.0),
    "fru": ClassCue(170.0, 0.25, 4.0, 18, 0.9, 0.08, 2.0, 3.2, 3.2),
    "sur": ClassCue(290.0, 0.25, 4.5, 12, 1.1, 0.03, 3.4, 3.8, 2.6),
    "fea": ClassCue(230.0, 0.15, 7.0, 10, 1.4, 0.06, 1.8, 3.6, 1.8),
    "dis": ClassCue(150.0, 0.20, 2.5, 16, 0.9, 0.06, 1.6, 3.0, 3.4),
    "oth": ClassCue(160.0, 0.15, 3.5, 12, 1.2, 0.03, 3.0, 3.0, 3.0),
    "xxx": ClassCue(180.0, 0.20, 4.0, 14, 1.0, 0.05, 2.6, 3.0, 3.0),
}

#: Category names used in the ``C-`` evaluator lines.
CATEGORY_NAMES = {
    "neu": "Neutral",
    "hap": "Happiness",
    "exc": "Excited",
    "sad": "Sadness",
    "ang": "Anger",
    "fru": "Frustration",
    "sur": "Surprise",
    "fea": "Fear",
    "dis": "Disgust",
    "oth": "Other",
}

_SENTENCES = {
    "neu": ("Excuse me.", "Do you have your forms?", "I'll be right back.", "Okay."),
    "hap": ("That's wonderful!", "I can't believe it, we did it!", "Yes, great."),
    "exc": ("Oh my God, really?", "This is amazing!", "Let's go right now!"),
    "sad": ("I miss him so much.", "It doesn't matter anymore.", "I'm sorry."),
    "ang": ("Don't you dare!", "This is ridiculous.", "Get out of my way!"),
    "fru": ("Why does this keep happening?", "I already told you that."),
    "sur": ("What? Since when?", "You're kidding me."),
    "fea": ("Did you hear that?", "Please don't go."),
    "dis": ("That's disgusting.", "Ugh, no."),
    "oth": ("Well, I guess so.", "Hmm."),
    "xxx": ("I don't know what to say.", "Fine, whatever you want."),
}

_COMMENTS = ("()", "()", "()", "(curious)", "(sarcastic)", "(tired)")


@dataclass(frozen=True)
class SynthUtterance:
    """One utterance of the synthetic corpus.

    Arguments
    ---------
    utt_id : str
        Utterance id, e.g. ``Ses01F_impro01_F000``.
    dialog : str
        Dialog id, e.g. ``Ses01F_impro01``.
    session : int
        Session number 1-5.
    gender : str
        ``"F"`` or ``"M"`` (the speaker is ``Ses0K`` + gender).
    code : str
        Emotion code written in the EmoEvaluation label line.
    start, end : float
        Turn times in the dialog, in seconds (4 decimals).
    text : str
        Transcript.

    Example
    -------
    >>> utt = plan_corpus(utterances_per_speaker=4)[0]
    >>> utt.utt_id, utt.speaker
    ('Ses01F_impro01_F000', 'Ses01F')
    """

    utt_id: str
    dialog: str
    session: int
    gender: str
    code: str
    start: float
    end: float
    text: str
    votes: tuple = ()

    @property
    def speaker(self):
        """Speaker id, e.g. ``Ses01F``."""
        return f"Ses0{self.session}{self.gender}"

    @property
    def duration(self):
        """Duration in seconds."""
        return self.end - self.start


def _check_args(utterances_per_speaker, min_duration, max_duration, sample_rate):
    if int(utterances_per_speaker) != utterances_per_speaker or (
        utterances_per_speaker < 1
    ):
        raise ValueError(
            f"utterances_per_speaker must be a positive integer, "
            f"got {utterances_per_speaker!r}"
        )
    if not 0.05 <= min_duration <= max_duration:
        raise ValueError(
            f"durations must satisfy 0.05 <= min_duration <= max_duration, got "
            f"min_duration={min_duration!r}, max_duration={max_duration!r}"
        )
    if int(sample_rate) != sample_rate or sample_rate < 4000:
        raise ValueError(f"sample_rate must be an integer >= 4000, got {sample_rate!r}")


def plan_corpus(utterances_per_speaker=6, seed=0, min_duration=0.8, max_duration=2.0):
    """Return the utterances :func:`make_iemocap_corpus` writes, without writing.

    Each speaker gets ``utterances_per_speaker`` utterances of the four target
    classes (balanced: the class slots rotate, starting at a different class
    for each speaker; the ``hap`` slots alternate between the codes ``hap``
    and ``exc``) plus one utterance of a non-target code (``fru``, ``sur``,
    ``xxx``, ``fea``, ``dis``, ``oth`` in turn), spread over the two dialogs of
    the session.

    Arguments
    ---------
    utterances_per_speaker : int
        Target-class utterances per speaker (10 speakers).
    seed : int
        Random seed (durations, timing, transcripts).
    min_duration, max_duration : float
        Durations are uniform in this range (seconds).

    Returns
    -------
    list of SynthUtterance
        Sorted by session, dialog and start time.

    Example
    -------
    >>> plan = plan_corpus(utterances_per_speaker=4, seed=0)
    >>> len(plan)  # 10 speakers x (4 + 1 extra)
    50
    >>> sorted({u.code for u in plan if u.code in ("neu", "sad", "ang")})
    ['ang', 'neu', 'sad']
    """
    _check_args(utterances_per_speaker, min_duration, max_duration, 16000)
    rng = np.random.default_rng([int(seed), 1])
    plan = []
    hap_slot = 0
    for session in range(1, 6):
        dialogs = DIALOGS[session]
        per_dialog = {dialog: {"F": [], "M": []} for dialog in dialogs}
        for gender in ("F", "M"):
            speaker_index = 2 * (session - 1) + (gender == "M")
            codes = []
            # Global round robin over the target classes: totals differ by at
            # most one, and each speaker's classes are as balanced as possible.
            offset = speaker_index * utterances_per_speaker
            for i in range(utterances_per_speaker):
                slot = TARGET_SLOTS[(offset + i) % len(TARGET_SLOTS)]
                if slot == "hap":
                    slot = "exc" if hap_slot % 2 else "hap"
                    hap_slot += 1
                codes.append(slot)
            codes.append(EXTRA_CODES[speaker_index % len(EXTRA_CODES)])
            for i, code in enumerate(codes):
                dialog = dialogs[(i + speaker_index) % 2]
                per_dialog[dialog][gender].append(code)
        for dialog in dialogs:
            females, males = per_dialog[dialog]["F"], per_dialog[dialog]["M"]
            # Alternate turns of the two speakers, starting with the side
            # that recorded the dialog.
            first = dialog[5]
            order = []
            for k in range(max(len(females), len(males))):
                for gender in (first, "M" if first == "F" else "F"):
                    codes = females if gender == "F" else males
                    if k < len(codes):
                        order.append((gender, codes[k]))
            counters = {"F": 0, "M": 0}
            time = round(float(rng.uniform(1.0, 6.0)), 4)
            for gender, code in order:
                duration = float(rng.uniform(min_duration, max_duration))
                start = time
                end = round(start + duration, 4)
                sentences = _SENTENCES[code]
                text = sentences[int(rng.integers(len(sentences)))]
                utt_id = f"{dialog}_{gender}{counters[gender]:03d}"
                counters[gender] += 1
                plan.append(
                    SynthUtterance(
                        utt_id, dialog, session, gender, code, start, end, text
                    )
                )
                time = round(end + float(rng.uniform(0.2, 1.5)), 4)
    seen = Counter()
    voted = []
    for utt in plan:
        voted.append(replace(utt, votes=planned_votes(utt.code, seen[utt.code])))
        seen[utt.code] += 1
    return voted


def planned_votes(code, index):
    """The three evaluators' categorical votes of the ``index``-th utterance
    (from 0, in plan order) labelled ``code``.

    For a class: index 0, 3, ... unanimous; 1, 4, ... two votes for the class
    and one for its partner (:data:`PARTNERS`); 2, 5, ... a tie: one vote
    for each and one evaluator naming both. ``xxx`` (no majority): neu, sad
    and fru, one each; ``oth``: two Other and one Neutral.

    Returns
    -------
    tuple of (str, tuple of str)
        ``(evaluator, category names)``, evaluators ``E1``, ``E2``, ``E3``.

    Example
    -------
    >>> planned_votes("ang", 2)
    (('E1', ('Anger',)), ('E2', ('Happiness',)), ('E3', ('Anger', 'Happiness')))
    """
    if code == "xxx":
        names = (("Neutral",), ("Sadness",), ("Frustration",))
    elif code == "oth":
        names = (("Other",), ("Other",), ("Neutral",))
    else:
        main_name = CATEGORY_NAMES[code]
        partner = CATEGORY_NAMES[PARTNERS[code]]
        names = (
            ((main_name,), (main_name,), (main_name,)),
            ((main_name,), (main_name,), (partner,)),
            ((main_name,), (partner,), (main_name, partner)),
        )[index % 3]
    return tuple(zip(("E1", "E2", "E3"), names))


#: Category names of the ``C-`` lines -> label codes.
_CODE_OF_NAME = {name: code for code, name in CATEGORY_NAMES.items()}


def vote_distributions(plan, emotions=("neu", "hap", "sad", "ang"), merge_exc=True):
    """What a preparation must read from the corpus: each utterance's vote
    distribution over ``emotions`` (None when no vote is in them).

    An evaluator naming k categories counts 1/k for each; ``exc`` votes count
    as ``hap`` with ``merge_exc``; the self-evaluations are not votes.

    Example
    -------
    >>> plan = plan_corpus(utterances_per_speaker=4)
    >>> dists = vote_distributions(plan)
    >>> tie = next(u for u in plan if u.code == "ang" and len(u.votes[2][1]) == 2)
    >>> dists[tie.utt_id]  # neu, hap, sad, ang: Anger / Happiness / both
    [0.0, 0.5, 0.0, 0.5]
    """
    result = {}
    for utt in plan:
        counts = Counter()
        for _, names in utt.votes:
            for name in names:
                code = _CODE_OF_NAME[name]
                if merge_exc and code == "exc":
                    code = "hap"
                counts[code] += 1.0 / len(names)
        total = sum(counts[e] for e in emotions)
        result[utt.utt_id] = (
            [counts[e] / total for e in emotions] if total > 0 else None
        )
    return result


def corpus_labels(utterances_per_speaker=6, seed=0):
    """Return ``(utterance id, class code, gender)`` for every labelled utterance.

    These are exactly the utterances :func:`make_iemocap_corpus` writes with the
    same arguments (each has a wav file, a label line and a transcript). The
    codes are the raw ones of the label lines (``exc`` not merged).

    Arguments
    ---------
    utterances_per_speaker : int
        As for :func:`make_iemocap_corpus`.
    seed : int
        As for :func:`make_iemocap_corpus` (the labels do not depend on it).

    Returns
    -------
    list of tuple
        ``(utt_id, code, gender)`` tuples.

    Example
    -------
    >>> labels = corpus_labels(utterances_per_speaker=4)
    >>> labels[0]
    ('Ses01F_impro01_F000', 'neu', 'F')
    >>> sum(code == "exc" for _, code, _ in labels) > 0
    True
    """
    plan = plan_corpus(utterances_per_speaker=utterances_per_speaker, seed=seed)
    return [(u.utt_id, u.code, u.gender) for u in plan]


def _speaker_factors(seed):
    """Per-speaker random pitch and loudness factors (+-10 %)."""
    rng = np.random.default_rng([int(seed), 2])
    factors = {}
    for session in range(1, 6):
        for gender in ("F", "M"):
            f0_factor, amp_factor = rng.uniform(0.9, 1.1, size=2)
            factors[f"Ses0{session}{gender}"] = (float(f0_factor), float(amp_factor))
    return factors


def _synthesize(utt, index, seed, speaker_factor, sample_rate):
    """Return the waveform (float64 in [-1, 1]) of one utterance."""
    rng = np.random.default_rng([int(seed), 3, index])
    cue = CLASS_CUES[utt.code]
    num = int(round(utt.duration * sample_rate))
    t = np.arange(num) / sample_rate
    f0_speaker, amp_speaker = speaker_factor
    gender_factor = 1.15 if utt.gender == "F" else 1.0
    f0 = cue.f0 * gender_factor * f0_speaker * (1 + rng.normal(0, 0.03))
    # Intonation: slow oscillation plus a small declination over the turn.
    contour = 1 + 0.04 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 2 * np.pi))
    contour -= 0.05 * t / max(utt.duration, 1e-3)
    phase = 2 * np.pi * np.cumsum(f0 * contour) / sample_rate
    voiced = harmonic_source(phase, f0 * 1.05, cue.n_harmonics, cue.tilt, rng)
    # Syllables: raised-cosine amplitude modulation at the class rate.
    rate = cue.am_rate * rng.uniform(0.9, 1.1)
    envelope = syllable_envelope(t, rate, rng)
    signal = envelope * (voiced + cue.noise * rng.standard_normal(num))
    amplitude = cue.amplitude * amp_speaker * rng.uniform(0.85, 1.15)
    return finish_utterance(signal, amplitude, rng, sample_rate)


def _ratings(cue, rng):
    """Integer 1-5 ratings (val, act, dom) of one annotator."""
    means = (cue.valence, cue.arousal, cue.dominance)
    return [int(np.clip(round(m + rng.normal(0, 0.5)), 1, 5)) for m in means]


def _emo_block(utt, rng):
    cue = CLASS_CUES[utt.code]
    evaluators = ("E2", "E3", f"{utt.gender}1")
    ratings = [_ratings(cue, rng) for _ in evaluators]
    vad = np.mean(ratings[:2], axis=0)
    lines = [
        f"[{utt.start:.4f} - {utt.end:.4f}]\t{utt.utt_id}\t{utt.code}\t"
        f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"
    ]
    # The speaker's self-evaluation: the partner class, never a vote.
    own = CATEGORY_NAMES.get(PARTNERS.get(utt.code, "neu"), "Neutral")
    categorical = [*utt.votes, (f"{utt.gender}1", (own,))]
    for evaluator, names in categorical:
        comment = _COMMENTS[int(rng.integers(len(_COMMENTS)))]
        cats = " ".join(f"{name};" for name in names)
        lines.append(f"C-{evaluator}:\t{cats}\t{comment}")
    for evaluator, (val, act, dom) in zip(evaluators, ratings):
        lines.append(f"A-{evaluator}:\tval {val}; act {act}; dom  {dom};\t()")
    return "\n".join(lines) + "\n"


def make_iemocap_corpus(
    out_dir,
    utterances_per_speaker=6,
    seed=0,
    min_duration=0.8,
    max_duration=2.0,
    sample_rate=16000,
):
    """Write a small synthetic corpus in the IEMOCAP_full_release format.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder in which ``IEMOCAP_full_release`` is created (created if needed).
    utterances_per_speaker : int
        Target-class (neu, hap/exc, sad, ang) utterances per speaker,
        balanced; each speaker also gets one utterance of a non-target code.
    seed : int
        Random seed; the corpus is identical for identical arguments.
    min_duration, max_duration : float
        Utterance durations are uniform in this range (seconds).
    sample_rate : int
        Sampling rate of the wav files (IEMOCAP: 16000).

    Returns
    -------
    pathlib.Path
        The ``IEMOCAP_full_release`` folder.

    Raises
    ------
    FileExistsError
        If ``out_dir/IEMOCAP_full_release`` exists and is not empty (nothing
        is ever overwritten).
    ValueError
        On invalid arguments.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_iemocap_corpus(tmp.name, utterances_per_speaker=4)
    >>> root.name
    'IEMOCAP_full_release'
    >>> sorted(p.name for p in root.iterdir())
    ['Session1', 'Session2', 'Session3', 'Session4', 'Session5']
    >>> len(list(root.glob("Session*/sentences/wav/*/Ses*.wav")))
    50
    >>> tmp.cleanup()
    """
    _check_args(utterances_per_speaker, min_duration, max_duration, sample_rate)
    root = Path(out_dir) / "IEMOCAP_full_release"
    check_new_root(root, "--out folder")
    plan = plan_corpus(utterances_per_speaker, seed, min_duration, max_duration)
    speaker_factors = _speaker_factors(seed)
    rng = np.random.default_rng([int(seed), 4])

    index_of = {utt.utt_id: i for i, utt in enumerate(plan)}
    by_dialog = {}
    for utt in plan:
        by_dialog.setdefault(utt.dialog, []).append(utt)

    for session in range(1, 6):
        session_dir = root / f"Session{session}"
        emo_dir = session_dir / "dialog" / "EmoEvaluation"
        trans_dir = session_dir / "dialog" / "transcriptions"
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            (emo_dir / sub).mkdir(parents=True, exist_ok=True)
        trans_dir.mkdir(parents=True, exist_ok=True)
        for dialog in DIALOGS[session]:
            utts = by_dialog[dialog]
            wav_dir = session_dir / "sentences" / "wav" / dialog
            wav_dir.mkdir(parents=True, exist_ok=True)

            blocks = [_emo_block(utt, rng) for utt in utts]
            write_text(
                emo_dir / f"{dialog}.txt", EMO_HEADER + "\n\n" + "\n".join(blocks)
            )
            (emo_dir / f"._{dialog}.txt").write_bytes(appledouble_bytes(rng))

            # Decoys of a different syntax that a parser must not read.
            write_text(
                emo_dir / "Categorical" / f"{dialog}_e2_cat.txt",
                "".join(
                    f"{u.utt_id} :{CATEGORY_NAMES.get(u.code, 'Other')}; ()\n"
                    for u in utts
                ),
            )
            write_text(
                emo_dir / "Attribute" / f"{dialog}_e3_atr.txt",
                "".join(f"{u.utt_id} :act 2; val 3; dom  2; ()\n" for u in utts),
            )
            write_text(
                emo_dir / "Self-evaluation" / f"{dialog}.txt",
                "".join(
                    f"[{u.start:.4f} - {u.end:.4f}] {u.utt_id} :Neutral state; "
                    f"(val 3, act 2, dom 2)\n"
                    for u in utts
                ),
            )
            junk = emo_dir / "Categorical" / f"._{dialog}_e2_cat.txt"
            junk.write_bytes(appledouble_bytes(rng))

            lines = [
                f"{u.utt_id} [{u.start:08.4f}-{u.end:08.4f}]: {u.text}" for u in utts
            ]
            # Lines without an evaluation entry: a non-speech turn in the gap
            # after the first turn, and a speaker-only line at the end.
            gap_start = utts[0].end
            gap_end = utts[1].start if len(utts) > 1 else gap_start + 1.0
            other = "M" if dialog[5] == "F" else "F"
            lines.insert(
                1,
                f"{dialog}_{other}XX0 [{gap_start:08.4f}-{gap_end:08.4f}]: [BREATHING]",
            )
            lines.append(f"{other}: [LAUGHTER]")
            write_text(trans_dir / f"{dialog}.txt", "\n".join(lines) + "\n")
            (trans_dir / f"._{dialog}.txt").write_bytes(appledouble_bytes(rng))

            for utt in utts:
                wav = _synthesize(
                    utt,
                    index_of[utt.utt_id],
                    seed,
                    speaker_factors[utt.speaker],
                    sample_rate,
                )
                soundfile.write(
                    wav_dir / f"{utt.utt_id}.wav", wav, sample_rate, subtype="PCM_16"
                )
            (wav_dir / f"._{utts[0].utt_id}.wav").write_bytes(appledouble_bytes(rng))
    return root


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
    ...     status = main(["--out", tmp.name, "--utterances-per-speaker", "4"])
    >>> status
    0
    >>> "50 utterances" in out.getvalue()
    True
    >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.synthetic.iemocap",
        description="Write a small synthetic corpus in the IEMOCAP_full_release "
        "format (learnable classes) under --out.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--utterances-per-speaker",
        type=int,
        default=6,
        help="target-class utterances per speaker (default 6)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--min-duration", type=float, default=0.8, help="seconds")
    parser.add_argument("--max-duration", type=float, default=2.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        root = make_iemocap_corpus(
            args.out,
            utterances_per_speaker=args.utterances_per_speaker,
            seed=args.seed,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    labels = corpus_labels(args.utterances_per_speaker, args.seed)
    counts = Counter(code for _, code, _ in labels)
    summary = ", ".join(f"{code} {counts[code]}" for code in sorted(counts))
    print(os.fspath(root))
    print(f"{len(labels)} utterances, 10 speakers, 5 sessions ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
