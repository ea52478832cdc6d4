"""Data preparation for IEMOCAP speech emotion recognition (4 classes).

Reads ``IEMOCAP_full_release`` (see "Corpus formats" in the project brief) and
writes SpeechBrain JSON manifests ``train.json``, ``valid.json`` and
``test.json``, keyed by utterance id::

    "Ses01F_impro01_F000": {
        "wav": "/data/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav",
        "duration": 1.9456, "emo": "neu", "gender": "F", "speaker": "Ses01F",
        "session": 1, "text": "Excuse me.", "votes": {"neu": 2.0, "fru": 1.0}
    }

plus ``split_info.json`` (the protocol, counts and speakers of each split) and
``prepare_options.json`` (the options, used to skip work on a re-run).

Split modes
-----------
``loso``   leave-one-session-out (speaker-independent, the usual protocol,
           5 folds): test = session ``test_session`` (both speakers), valid =
           a seeded random ``valid_ratio`` of the other sessions' utterances.
``lospk``  leave-one-speaker-out (speaker-independent, 10 folds as in Wang et
           al.'s leave-two-speakers-out): test = ``test_speaker``, valid = the
           other speaker of that session, train = the other four sessions.
``random`` seeded random 80/10/10 over all utterances: speaker-DEPENDENT (the
           same speakers are in train and test). It reproduces the 79.58 % WA
           setting of Wang et al. (arXiv 2111.02735, SpeechBrain issue #1415);
           its numbers are not comparable to speaker-independent ones.

Labels: the four classes neu, hap (with exc merged into it), sad, ang; the full
release has 5,531 such utterances (neu 1708, hap+exc 1636, sad 1084, ang 1103).
Another total (a subset or a test fixture) gives a warning, never an exit.

Votes (``"votes"``, :mod:`sser_lobes.dataio.votes`): the categorical lines of
the external evaluators after each label line (``C-E2:<TAB>Neutral;<TAB>()``,
``C-E4:<TAB>Frustration; Anger;<TAB>(...)``), each evaluator counting 1,
split evenly over the categories it names; the speakers' self-evaluations
(``C-F1``, ``C-M1``) are not votes. Category names map to the label codes by
their first letters (Neutral -> neu, Excited -> exc, ...; anything else ->
oth), exc counts as hap when merged. Votes for classes outside ``emotions``
are kept (the training takes the distribution over its classes). An
evaluator line that cannot be read is left out, with one warning for all of
them; an utterance without a readable vote has ``"votes": null`` and trains
on its label. The utterances labelled ``xxx`` (no majority) or ``oth`` whose
votes name one of ``emotions`` are kept with ``"emo": null`` (the recipes
train on them only with ``--targets=soft --use_no_agreement=W``): in the
test split when their speaker is tested, in valid when their speaker is the
validation speaker (lospk), in train otherwise.

Command line::

    python iemocap_prepare.py --data_folder /data/IEMOCAP_full_release \\
        --save_folder results/prep --split_mode loso --test_session 5

Authors: the sser contributors.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sser_lobes.dataio.audio import check_audio_info
from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.dataio.preparation import (
    absent_classes,
    reusable,
    run_preparation_cli,
    write_state,
)
from sser_lobes.dataio.row_report import problem_list
from sser_lobes.dataio.splits import stratified_share
from sser_lobes.dataio.votes import clean_votes, vote_distribution
from sser_lobes.errors import AudioError, PreparationError

logger = logging.getLogger(__name__)

#: Every emotion code of the IEMOCAP EmoEvaluation label lines.
KNOWN_CODES = (
    "neu",
    "hap",
    "exc",
    "sad",
    "ang",
    "fru",
    "sur",
    "fea",
    "dis",
    "oth",
    "xxx",
)

#: The usual 4-class setting.
DEFAULT_EMOTIONS = ("neu", "hap", "sad", "ang")

#: Class counts of the full release in the 4-class setting (exc merged).
FULL_RELEASE_COUNTS = {"neu": 1708, "hap": 1636, "sad": 1084, "ang": 1103}
FULL_RELEASE_TOTAL = 5531

#: Codes of the utterances without a majority class (kept with their votes).
NO_AGREEMENT_CODES = ("xxx", "oth")

SPLIT_MODES = ("loso", "lospk", "random")
SPLITS = ("train", "valid", "test")
SPLIT_INFO_FILE = "split_info.json"
_WRITER = "iemocap_prepare"
_FORMAT_VERSION = 3  # 2: num_folds in split_info.json; 3: votes, no-agreement
_VOTE_RE = re.compile(r"^C-([A-Za-z]+)(\d*):\s*(.*)$")
#: What the votes are, as split_info.json says.
VOTE_SOURCE = (
    "C-E* lines of EmoEvaluation (external evaluators, 1 vote each split over "
    "the categories named; the speakers' self-evaluations C-F*/C-M* not counted)"
)
_MAX_LISTED_PROBLEMS = 20

_NUMBER = r"(\d+(?:\.\d*)?)"
_LABEL_RE = re.compile(
    rf"^\[\s*{_NUMBER}\s*-\s*{_NUMBER}\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$"
)
_UTT_RE = re.compile(r"^Ses0([1-5])[FM]_\S+_([FM])\d+$")
_TRANSCRIPT_RE = re.compile(rf"^(\S+)\s+\[{_NUMBER}-{_NUMBER}\]:\s?(.*)$")
_SPEAKER_RE = re.compile(r"^Ses0([1-5])([FM])$")


#: Fold-independent protocol names (run folders of one protocol aggregate
#: together; results of different protocols must never be averaged).
PROTOCOL_NAMES = {
    "loso": "IEMOCAP leave-one-session-out (speaker-independent)",
    "lospk": "IEMOCAP leave-one-speaker-out (speaker-independent)",
    "random": "IEMOCAP random 80/10/10 (speaker-DEPENDENT)",
}


@dataclass(frozen=True)
class EmoLabel:
    """One label line of an EmoEvaluation file.

    Arguments
    ---------
    utt_id : str
        Utterance id, e.g. ``Ses01F_impro01_F000``.
    code : str
        Emotion code as written (``neu``, ``exc``, ``xxx``, ...).
    start, end : float
        Turn times in seconds.
    valence, arousal, dominance : float
        Mean attribute ratings.
    line : int
        1-based line number in the file.

    Example
    -------
    >>> EmoLabel("Ses01F_impro01_F000", "neu", 6.29, 8.24, 2.5, 2.5, 2.5, 3).gender
    'F'
    """

    utt_id: str
    code: str
    start: float
    end: float
    valence: float
    arousal: float
    dominance: float
    line: int

    @property
    def gender(self):
        """Speaker gender from the last group of the id (``_F000`` -> ``F``)."""
        return self.utt_id.rsplit("_", 1)[1][0]

    @property
    def session(self):
        """Session number 1-5."""
        return int(self.utt_id[4])

    @property
    def speaker(self):
        """Speaker id: session + gender, e.g. ``Ses01F``."""
        return f"Ses0{self.session}{self.gender}"


def _read_lines(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read().splitlines()


def parse_emo_evaluation(path):
    """Parse an IEMOCAP EmoEvaluation file (``Session*/dialog/EmoEvaluation/*.txt``).

    Only label lines (those starting with ``[``) are read::

        [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

    the ``%`` header, blank lines and the evaluators' ``C-``/``A-`` lines are
    ignored.

    Arguments
    ---------
    path : str or os.PathLike
        The file.

    Returns
    -------
    list of EmoLabel
        In file order.

    Raises
    ------
    PreparationError
        Naming the file and line number, for a label line that does not
        parse, an utterance id not of the form ``Ses0K?_..._F000``, or an
        unknown emotion code.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "Ses01F_impro01.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write(
    ...         "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\\n\\n"
    ...         "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t"
    ...         "[2.5000, 2.5000, 2.5000]\\n"
    ...         "C-E2:\\tNeutral;\\t()\\n"
    ...         "A-E3:\\tval 3; act 2; dom  2;\\t()\\n"
    ...     )
    >>> [(x.utt_id, x.code, x.end, x.line) for x in parse_emo_evaluation(path)]
    [('Ses01F_impro01_F000', 'neu', 8.2357, 3)]
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    labels = []
    for number, raw in enumerate(_read_lines(path), start=1):
        line = raw.strip()
        if not line.startswith("["):
            continue
        where = f"{path}, line {number}"
        match = _LABEL_RE.match(line)
        if match is None:
            raise PreparationError(
                f"{where}: malformed label line {line!r}; expected "
                f"'[START - END]<TAB>UTTERANCE_ID<TAB>CODE<TAB>[V, A, D]'"
            )
        start, end, utt_id, code, vad_text = match.groups()
        vad = [part.strip() for part in vad_text.split(",")]
        try:
            valence, arousal, dominance = (float(value) for value in vad)
        except ValueError:
            raise PreparationError(
                f"{where}: malformed [V, A, D] field [{vad_text}] in label line "
                f"{line!r}; expected three numbers"
            ) from None
        if _UTT_RE.match(utt_id) is None:
            raise PreparationError(
                f"{where}: malformed utterance id {utt_id!r}; expected an id like "
                f"'Ses01F_impro01_F000' (session 1-5, last group F or M + digits)"
            )
        if code not in KNOWN_CODES:
            raise PreparationError(
                f"{where}: unknown emotion code {code!r} for {utt_id}; known codes "
                f"are {', '.join(KNOWN_CODES)}"
            )
        labels.append(
            EmoLabel(
                utt_id,
                code,
                float(start),
                float(end),
                valence,
                arousal,
                dominance,
                number,
            )
        )
    return labels


def category_code(name):
    """The label code of a category name of a ``C-`` line.

    Example
    -------
    >>> [category_code(n) for n in ("Neutral", "Excited", "Anger", "Other:curious")]
    ['neu', 'exc', 'ang', 'oth']
    """
    lowered = name.strip().casefold()
    for code in KNOWN_CODES:
        if code != "xxx" and lowered.startswith(code):
            return code
    return "oth"


def parse_evaluator_votes(path):
    """The external evaluators' categorical votes of an EmoEvaluation file.

    Returns
    -------
    votes : dict
        Utterance id -> ``{code: count}``: each ``C-E*`` line after the
        utterance's label line counts 1, split evenly over its categories.
    problems : list of str
        ``<file>, line <n>: ...`` for each ``C-`` line that cannot be read
        (left out).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "Ses01F_impro01.txt")
    >>> _ = open(path, "w").write(
    ...     "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5, 2.5, 2.5]\\n"
    ...     "C-E2:\\tNeutral;\\t()\\nC-E3:\\tNeutral; Anger;\\t(curious)\\n"
    ...     "C-F1:\\tSadness;\\t()\\nC-E4:\\t\\t()\\n")
    >>> votes, problems = parse_evaluator_votes(path)
    >>> votes
    {'Ses01F_impro01_F000': {'neu': 1.5, 'ang': 0.5}}
    >>> problems[0].endswith("line 5: evaluator line names no category")
    True
    """
    path = os.fspath(path)
    votes = {}
    problems = []
    current = None
    for number, raw in enumerate(_read_lines(path), start=1):
        line = raw.strip()
        if line.startswith("["):
            match = _LABEL_RE.match(line)
            current = match.group(3) if match else None
            continue
        if not line.startswith("C-"):
            continue
        where = f"{path}, line {number}"
        match = _VOTE_RE.match(line)
        if match is None or current is None:
            problems.append(f"{where}: evaluator line without a label line before it")
            continue
        evaluator, _, rest = match.groups()
        if evaluator != "E":
            continue  # the speaker's self-evaluation
        rest = re.sub(r"\(.*\)\s*$", "", rest)
        names = [n.strip() for n in rest.split(";") if n.strip()]
        if not names:
            problems.append(f"{where}: evaluator line names no category")
            continue
        counts = votes.setdefault(current, {})
        for name in names:
            code = category_code(name)
            counts[code] = counts.get(code, 0.0) + 1.0 / len(names)
    return votes, problems


def labels_digest(root):
    """SHA-256 of every EmoEvaluation file (names and content): the labels
    and votes the manifests are made of, so that a changed file rebuilds.

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> len(labels_digest(root))
    64
    """
    digest = hashlib.sha256()
    for session in range(1, 6):
        folder = Path(root) / f"Session{session}" / "dialog" / "EmoEvaluation"
        for path in _txt_files(folder):
            digest.update(f"{session}/{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def parse_transcription(path):
    """Parse an IEMOCAP transcription file (``Session*/dialog/transcriptions/*.txt``).

    Lines ``<utt> [start-end]: text`` are read; every other line (e.g.
    ``M: [LAUGHTER]``) is ignored. Lines of turns without an evaluation entry
    (e.g. ``..._MXX0``) are returned too: they are simply never looked up.

    Arguments
    ---------
    path : str or os.PathLike
        The file.

    Returns
    -------
    dict
        Utterance id -> transcript text.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "Ses01F_impro01.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write(
    ...         "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\\n"
    ...         "M: [LAUGHTER]\\n"
    ...     )
    >>> parse_transcription(path)
    {'Ses01F_impro01_F000': 'Excuse me.'}
    >>> tmp.cleanup()
    """
    texts = {}
    for raw in _read_lines(path):
        match = _TRANSCRIPT_RE.match(raw.strip())
        if match is not None:
            utt_id, _, _, text = match.groups()
            texts[utt_id] = text.strip()
    return texts


def _txt_files(folder):
    """Top-level ``*.txt`` files of a folder, without macOS ``._*`` files."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix == ".txt" and not p.name.startswith("._") and p.is_file()
    )


def find_iemocap_root(data_folder):
    """Return the ``IEMOCAP_full_release`` folder for a user-given data folder.

    ``data_folder`` may be the release folder itself or its parent.

    Arguments
    ---------
    data_folder : str or os.PathLike
        Folder holding ``Session1`` ... ``Session5`` (or holding
        ``IEMOCAP_full_release`` which holds them).

    Returns
    -------
    pathlib.Path
        Absolute path of the folder holding the sessions.

    Raises
    ------
    PreparationError
        If the folder does not exist or session folders are missing.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> for k in range(1, 6):
    ...     os.makedirs(os.path.join(tmp.name, "IEMOCAP_full_release", f"Session{k}"))
    >>> find_iemocap_root(tmp.name).name
    'IEMOCAP_full_release'
    >>> tmp.cleanup()
    """
    folder = Path(os.path.abspath(os.fspath(data_folder)))
    if not folder.is_dir():
        raise PreparationError(
            f"{folder}: data_folder does not exist or is not a folder; expected the "
            f"IEMOCAP_full_release folder (holding Session1 ... Session5)"
        )
    sessions = [f"Session{k}" for k in range(1, 6)]
    candidates = [folder, folder / "IEMOCAP_full_release"]
    for candidate in candidates:
        if all((candidate / s).is_dir() for s in sessions):
            return candidate
    root = next(
        (c for c in candidates if any((c / s).is_dir() for s in sessions)), folder
    )
    missing = [s for s in sessions if not (root / s).is_dir()]
    raise PreparationError(
        f"{root}: missing folder(s) {', '.join(missing)}; expected the "
        f"IEMOCAP_full_release folder holding Session1 ... Session5, each with "
        f"dialog/EmoEvaluation/, dialog/transcriptions/ and sentences/wav/"
    )


def validate_options(
    split_mode,
    test_session,
    test_speaker,
    valid_ratio,
    seed,
    merge_exc_into_hap,
    emotions,
    sample_rate,
):
    """Check the arguments; return them as a JSON-comparable dict."""
    if split_mode not in SPLIT_MODES:
        raise ValueError(
            f"split_mode must be one of {', '.join(SPLIT_MODES)}, got {split_mode!r}"
        )
    if (
        isinstance(test_session, bool)
        or not isinstance(test_session, int)
        or not 1 <= test_session <= 5
    ):
        raise ValueError(f"test_session must be an integer 1-5, got {test_session!r}")
    if split_mode == "lospk":
        if test_speaker is None:
            raise ValueError(
                "split_mode='lospk' needs test_speaker, e.g. 'Ses01F' (session 1-5 "
                "followed by F or M)"
            )
        if not isinstance(test_speaker, str) or not _SPEAKER_RE.match(test_speaker):
            raise ValueError(
                f"test_speaker must look like 'Ses01F' (Ses0 + session 1-5 + F or "
                f"M), got {test_speaker!r}"
            )
    elif test_speaker is not None:
        raise ValueError(
            f"test_speaker={test_speaker!r} is only used with split_mode='lospk' "
            f"(split_mode is {split_mode!r})"
        )
    if (
        isinstance(valid_ratio, bool)
        or not isinstance(valid_ratio, (int, float))
        or not 0 < valid_ratio < 1
    ):
        raise ValueError(f"valid_ratio must be a number in (0, 1), got {valid_ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not isinstance(merge_exc_into_hap, bool):
        raise ValueError(
            f"merge_exc_into_hap must be True or False, got {merge_exc_into_hap!r}"
        )
    if isinstance(emotions, str) or not all(isinstance(e, str) for e in emotions):
        raise ValueError(
            f"emotions must be a list of emotion codes such as "
            f"['neu', 'hap', 'sad', 'ang'], got {emotions!r}"
        )
    emotions = list(emotions)
    unknown = [e for e in emotions if e not in KNOWN_CODES]
    if unknown:
        raise ValueError(
            f"unknown emotion code(s) {unknown} in emotions; known codes are "
            f"{', '.join(KNOWN_CODES)}"
        )
    if len(set(emotions)) != len(emotions) or len(emotions) < 2:
        raise ValueError(
            f"emotions must hold at least two distinct codes, got {emotions!r}"
        )
    if merge_exc_into_hap and "exc" in emotions:
        raise ValueError(
            "emotions contains 'exc' but merge_exc_into_hap=True merges exc into "
            "hap; pass merge_exc_into_hap=False to keep exc as its own class"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise ValueError(f"sample_rate must be an integer, got {sample_rate!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    if split_mode == "lospk" and test_session != int(test_speaker[4]):
        logger.info(
            "split_mode='lospk': the test session is %s's (%s); test_session=%s is "
            "ignored",
            test_speaker,
            test_speaker[4],
            test_session,
        )
        test_session = int(test_speaker[4])
    return {
        "split_mode": split_mode,
        "test_session": test_session,
        "test_speaker": test_speaker,
        "valid_ratio": float(valid_ratio),
        "seed": seed,
        "merge_exc_into_hap": merge_exc_into_hap,
        "emotions": emotions,
        "sample_rate": sample_rate,
    }


def _collect(root, options):
    """Parse labels, votes and transcripts and check the audio of the kept
    utterances: ``(records, no_agreement, vote_problems)``, the labelled
    utterances and the ``xxx`` / ``oth`` ones kept for their votes."""
    emotions = set(options["emotions"])
    merge = options["merge_exc_into_hap"]
    vote_map = {"exc": "hap"} if merge else None
    records = {}
    no_agreement = {}
    vote_problems = []
    where = {}
    missing_text = []
    problems = []
    raw_codes = Counter()
    for session in range(1, 6):
        session_dir = root / f"Session{session}"
        emo_dir = session_dir / "dialog" / "EmoEvaluation"
        if not emo_dir.is_dir():
            raise PreparationError(
                f"{emo_dir}: folder not found; expected the EmoEvaluation files "
                f"Session{session}/dialog/EmoEvaluation/<dialog>.txt"
            )
        texts = {}
        for path in _txt_files(session_dir / "dialog" / "transcriptions"):
            texts.update(parse_transcription(path))
        for path in _txt_files(emo_dir):
            dialog = path.stem
            votes, unreadable = parse_evaluator_votes(path)
            vote_problems += unreadable
            for label in parse_emo_evaluation(path):
                here = f"{path}, line {label.line}"
                if label.utt_id in where:
                    raise PreparationError(
                        f"{here}: utterance {label.utt_id} is labelled twice (first "
                        f"at {where[label.utt_id]})"
                    )
                where[label.utt_id] = here
                if label.session != session:
                    raise PreparationError(
                        f"{here}: utterance {label.utt_id} belongs to session "
                        f"{label.session} but is listed in Session{session}"
                    )
                raw_codes[label.code] += 1
                code = "hap" if merge and label.code == "exc" else label.code
                utt_votes = clean_votes(votes.get(label.utt_id), vote_map)
                target = records
                if code not in emotions:
                    if code not in NO_AGREEMENT_CODES or not vote_distribution(
                        utt_votes, options["emotions"]
                    ):
                        continue
                    target, code = no_agreement, None
                wav = session_dir / "sentences" / "wav" / dialog / f"{label.utt_id}.wav"
                try:
                    info = check_audio_info(
                        wav, sample_rate=options["sample_rate"], min_samples=400
                    )
                except AudioError as exc:
                    problems.append(str(exc))
                    continue
                text = texts.get(label.utt_id)
                if text is None:
                    missing_text.append(label.utt_id)
                target[label.utt_id] = {
                    "wav": os.fspath(wav),
                    "duration": info.duration,
                    "emo": code,
                    "gender": label.gender,
                    "speaker": label.speaker,
                    "session": session,
                    "text": text,
                    "votes": utt_votes,
                }
    if problems:
        raise PreparationError(
            f"{len(problems)} audio file(s) under {root} are missing or unusable "
            f"(expected {options['sample_rate']} Hz mono, at least 400 samples):\n"
            f"{problem_list(problems, _MAX_LISTED_PROBLEMS)}"
        )
    if missing_text:
        logger.warning(
            "%d of %d utterances have no line in Session*/dialog/transcriptions "
            '(their "text" is null), e.g. %s',
            len(missing_text),
            len(records),
            ", ".join(missing_text[:5]),
        )
    logger.info(
        "Found %d labelled utterances (%s); kept %d, and %d without a majority "
        "class (xxx, oth) for their votes",
        sum(raw_codes.values()),
        ", ".join(f"{c} {raw_codes[c]}" for c in KNOWN_CODES if raw_codes[c]),
        len(records),
        len(no_agreement),
    )
    if vote_problems:
        logger.warning(
            "%d evaluator line(s) of the EmoEvaluation files cannot be read and "
            "are left out (the utterances keep their label), e.g. %s",
            len(vote_problems),
            vote_problems[0],
        )
    if records and not any(r["votes"] for r in records.values()):
        logger.warning(
            "%s: no evaluator vote (C-E* lines) found in the EmoEvaluation files: "
            "the manifests have no votes, and --targets=soft cannot train",
            root,
        )
    return records, no_agreement, vote_problems


def _check_counts(records, options):
    """Warn (never exit) when the corpus is not the full release."""
    if (
        sorted(options["emotions"]) != sorted(DEFAULT_EMOTIONS)
        or not options["merge_exc_into_hap"]
    ):
        logger.info("Non-default classes: the full-release count check is skipped")
        return None
    counts = Counter(r["emo"] for r in records.values())
    found = {c: counts[c] for c in DEFAULT_EMOTIONS}
    full = found == FULL_RELEASE_COUNTS
    if not full:
        logger.warning(
            "Found %d utterances in the 4 classes (%s) but the full IEMOCAP release "
            "has %s (neu 1708, hap+exc 1636, sad 1084, ang 1103). Continuing: this "
            "looks like a subset or a test fixture, so results are not comparable "
            "to published numbers.",
            len(records),
            ", ".join(f"{c} {n}" for c, n in found.items()),
            f"{FULL_RELEASE_TOTAL:,}",
        )
    return full


def _split(records, options):
    """Return ({split: sorted ids}, protocol description)."""
    ids = sorted(records)
    rng = random.Random(options["seed"])
    mode = options["split_mode"]
    if mode == "loso":
        session = options["test_session"]
        test = [u for u in ids if records[u]["session"] == session]
        rest = [u for u in ids if records[u]["session"] != session]
        # Stratified by class, so that a small valid set still has every class
        # and the selection metric (UA by default) sees all of them.
        classes = {u: records[u]["emo"] for u in rest}
        valid, train = stratified_share(
            rest, classes, options["valid_ratio"], rng, options["emotions"]
        )
        protocol = (
            f"leave-one-session-out: test = session {session} (speakers "
            f"Ses0{session}F, Ses0{session}M); valid = random "
            f"{options['valid_ratio'] * 100:g} % of the other sessions' utterances, "
            f"stratified by class (seed {options['seed']}); speaker-independent"
        )
    elif mode == "lospk":
        speaker = options["test_speaker"]
        session = options["test_session"]
        other = f"Ses0{session}{'M' if speaker[-1] == 'F' else 'F'}"
        test = [u for u in ids if records[u]["speaker"] == speaker]
        valid = [u for u in ids if records[u]["speaker"] == other]
        train = [u for u in ids if records[u]["session"] != session]
        protocol = (
            f"leave-one-speaker-out: test = speaker {speaker}, valid = {other} (the "
            f"other speaker of session {session}), train = the other sessions; "
            f"speaker-independent"
        )
    else:
        shuffled = list(ids)
        rng.shuffle(shuffled)
        n = len(shuffled)
        n_test = max(1, round(0.1 * n)) if n >= 3 else 0
        n_valid = max(1, round(options["valid_ratio"] * n)) if n >= 3 else 0
        test = shuffled[:n_test]
        valid = shuffled[n_test : n_test + n_valid]
        train = shuffled[n_test + n_valid :]
        protocol = (
            f"random split over all utterances (test 10 %, valid "
            f"{options['valid_ratio'] * 100:g} %, seed {options['seed']}): "
            f"speaker-DEPENDENT, the same speakers are in train, valid and test"
        )
    splits = {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}
    for name, members in splits.items():
        if not members:
            raise PreparationError(
                f"the {name} split is empty ({protocol}); the corpus under "
                f"the data folder has {len(ids)} utterances in the classes "
                f"{', '.join(options['emotions'])}"
            )
    return splits, protocol


def _place_no_agreement(no_agreement, options):
    """The split of each utterance without a majority class: the side of its
    speaker (never train for a tested or validation speaker)."""
    mode = options["split_mode"]
    placed = {split: [] for split in SPLITS}
    for utt, entry in sorted(no_agreement.items()):
        if mode == "loso" and entry["session"] == options["test_session"]:
            split = "test"
        elif mode == "lospk" and entry["speaker"] == options["test_speaker"]:
            split = "test"
        elif mode == "lospk" and entry["session"] == options["test_session"]:
            split = "valid"
        else:
            split = "train"
        placed[split].append(utt)
    return placed


def prepare_iemocap(
    data_folder,
    save_folder,
    split_mode="loso",
    test_session=5,
    test_speaker=None,
    valid_ratio=0.1,
    seed=1993,
    merge_exc_into_hap=True,
    emotions=DEFAULT_EMOTIONS,
    sample_rate=16000,
):
    """Prepare the IEMOCAP manifests for speech emotion recognition.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The ``IEMOCAP_full_release`` folder (or its parent).
    save_folder : str or os.PathLike
        Where ``train.json``, ``valid.json``, ``test.json``,
        ``split_info.json`` and ``prepare_options.json`` are written (created
        if needed).
    split_mode : str
        ``"loso"`` (leave one session out), ``"lospk"`` (leave one speaker
        out) or ``"random"`` (speaker-dependent 80/10/10).
    test_session : int
        Test session 1-5 for ``loso`` (ignored by ``lospk``, which uses the
        test speaker's session, and by ``random``).
    test_speaker : str or None
        Test speaker for ``lospk``, e.g. ``"Ses01F"`` (required there, refused
        in the other modes).
    valid_ratio : float
        Fraction of utterances for validation in ``loso`` (of the training
        sessions) and ``random`` (of all); unused by ``lospk``.
    seed : int
        Seed of the random splits.
    merge_exc_into_hap : bool
        Label ``exc`` utterances ``hap`` (the usual 4-class setting); if
        False, ``exc`` is dropped unless listed in ``emotions``.
    emotions : sequence of str
        Emotion codes to keep.
    sample_rate : int
        Required sampling rate of the audio.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}`` (strings).

    Raises
    ------
    ValueError
        On invalid arguments.
    PreparationError
        On a corpus problem (missing folders, malformed label lines, unknown
        codes, missing or unusable audio: all audio problems are listed in one
        error) or foreign files in ``save_folder``.

    Example
    -------
    >>> import tempfile, json, logging
    >>> from sser_lobes.synthetic.iemocap import make_iemocap_corpus
    >>> logging.disable(logging.WARNING)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_iemocap_corpus(tmp.name, utterances_per_speaker=4)
    >>> paths = prepare_iemocap(root, tmp.name + "/prep", test_session=1)
    >>> test = json.load(open(paths["test"]))
    >>> sorted({entry["speaker"] for entry in test.values()})
    ['Ses01F', 'Ses01M']
    >>> logging.disable(logging.NOTSET)
    >>> tmp.cleanup()
    """
    options = validate_options(
        split_mode,
        test_session,
        test_speaker,
        valid_ratio,
        seed,
        merge_exc_into_hap,
        emotions,
        sample_rate,
    )
    root = find_iemocap_root(data_folder)
    options = {
        "data_folder": os.fspath(root),
        **options,
        "labels_sha256": labels_digest(root),
    }
    save_folder = Path(os.path.abspath(os.fspath(save_folder)))
    if save_folder.exists() and not save_folder.is_dir():
        raise PreparationError(f"{save_folder}: save_folder exists and is not a folder")
    paths = {split: save_folder / f"{split}.json" for split in SPLITS}
    outputs = [*paths.values(), save_folder / SPLIT_INFO_FILE]
    result = {split: os.fspath(path) for split, path in paths.items()}

    if options["split_mode"] == "random":
        logger.warning(
            "split_mode='random' is speaker-DEPENDENT: the same speakers are in "
            "train, valid and test. It reproduces the 79.58 % WA setting of Wang "
            "et al. (arXiv 2111.02735, SpeechBrain issue #1415); do not compare it "
            "with speaker-independent (loso/lospk) results."
        )

    if reusable(save_folder, outputs, _WRITER, _FORMAT_VERSION, options, logger):
        return result

    records, no_agreement, vote_problems = _collect(root, options)
    full_release = _check_counts(records, options)
    splits, protocol = _split(records, options)
    absent = absent_classes(records, splits, options["emotions"], protocol)
    placed = _place_no_agreement(no_agreement, options)
    everything = {**records, **no_agreement}

    save_folder.mkdir(parents=True, exist_ok=True)
    write_state(save_folder, _WRITER, _FORMAT_VERSION, options, complete=False)
    for split, ids in splits.items():
        members = sorted([*ids, *placed[split]])
        atomic_write_json(paths[split], {u: everything[u] for u in members})

    mode = options["split_mode"]
    info = {
        "split_mode": mode,
        "protocol": PROTOCOL_NAMES[mode],
        "split_description": protocol,
        "speaker_independent": mode != "random",
        "num_folds": {"loso": 5, "lospk": 10}.get(mode),
        "test_session": options["test_session"] if mode != "random" else None,
        "test_speaker": options["test_speaker"],
        "seed": options["seed"],
        "valid_ratio": options["valid_ratio"] if mode != "lospk" else None,
        "emotions": options["emotions"],
        "merge_exc_into_hap": options["merge_exc_into_hap"],
        "data_folder": options["data_folder"],
        "full_release": full_release,
        "counts": {
            split: {
                "total": len(ids),
                **{
                    emo: sum(records[u]["emo"] == emo for u in ids)
                    for emo in options["emotions"]
                },
            }
            for split, ids in splits.items()
        },
        "speakers": {
            split: sorted({records[u]["speaker"] for u in ids})
            for split, ids in splits.items()
        },
        "no_agreement": {split: len(ids) for split, ids in placed.items()},
        "votes": {
            "source": VOTE_SOURCE,
            "labelled_with_votes": sum(bool(r["votes"]) for r in records.values()),
            "labelled_without_votes": sum(not r["votes"] for r in records.values()),
            "unreadable_evaluator_lines": len(vote_problems),
        },
    }
    if absent:
        info["absent_classes"] = absent
    if mode == "random":
        info["warning"] = (
            "speaker-DEPENDENT split: test speakers are also in train; numbers "
            "(e.g. 79.58 % WA of Wang et al.) are not comparable with "
            "speaker-independent protocols"
        )
    atomic_write_json(save_folder / SPLIT_INFO_FILE, info)
    write_state(save_folder, _WRITER, _FORMAT_VERSION, options, complete=True)
    logger.info(
        "%s: wrote %s (%s)",
        save_folder,
        ", ".join(f"{s} {len(ids)}" for s, ids in splits.items()),
        protocol,
    )
    return result


def main(argv=None):
    """Command-line entry point; returns the exit status (0 ok, 1 error).

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.

    Example
    -------
    >>> import tempfile, contextlib, io
    >>> tmp = tempfile.TemporaryDirectory()
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     status = main(["--data_folder", tmp.name, "--save_folder", tmp.name])
    >>> status
    1
    >>> "missing folder(s) Session1" in err.getvalue()
    True
    >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        description="Prepare IEMOCAP manifests (train/valid/test.json) for "
        "4-class speech emotion recognition."
    )
    parser.add_argument(
        "--data_folder", required=True, help="IEMOCAP_full_release (or its parent)"
    )
    parser.add_argument("--save_folder", required=True, help="output folder")
    parser.add_argument("--split_mode", choices=SPLIT_MODES, default="loso")
    parser.add_argument(
        "--test_session",
        type=int,
        default=None,
        help="held-out session 1-5 (loso; default 5); with lospk it must be the "
        "test speaker's session if given",
    )
    parser.add_argument("--test_speaker", default=None, help="e.g. Ses01F (lospk)")
    parser.add_argument("--seed", type=int, default=1993)
    parser.add_argument("--valid_ratio", type=float, default=0.1)
    parser.add_argument(
        "--no_merge_exc",
        action="store_true",
        help="do not merge exc into hap (exc is then dropped unless in --emotions)",
    )
    parser.add_argument(
        "--emotions", nargs="+", default=list(DEFAULT_EMOTIONS), help="codes to keep"
    )
    parser.add_argument("--sample_rate", type=int, default=16000)
    args = parser.parse_args(argv)
    if (
        args.split_mode == "lospk"
        and args.test_session is not None
        and args.test_speaker is not None
        and args.test_speaker[4:5] != str(args.test_session)
    ):
        parser.error(
            f"--test_session {args.test_session} does not match --test_speaker "
            f"{args.test_speaker} (lospk tests on that speaker's session)"
        )
    test_session = 5 if args.test_session is None else args.test_session
    return run_preparation_cli(
        prepare_iemocap,
        args.data_folder,
        args.save_folder,
        split_mode=args.split_mode,
        test_session=test_session,
        test_speaker=args.test_speaker,
        valid_ratio=args.valid_ratio,
        seed=args.seed,
        merge_exc_into_hap=not args.no_merge_exc,
        emotions=args.emotions,
        sample_rate=args.sample_rate,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    sys.exit(main())
