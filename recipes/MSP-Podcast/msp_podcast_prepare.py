"""Data preparation for MSP-Podcast v1.11 (Odyssey 2024 speech emotion challenge).

Reads the release folder (see "Corpus formats" in the project brief)::

    Audios/MSP-PODCAST_0001_0008.wav     (16 kHz mono; Audios/Audios/ nesting,
                                          or any one subfolder of Audios/ that
                                          holds the wavs, is tolerated)
    Labels/labels_consensus.csv          (or labels_consensus.json when there
                                          is no csv)
    Labels/labels_detailed.csv           (optional: every annotator's vote)
    Transcripts/MSP-PODCAST_0001_0008.txt
    Partitions.txt                       (lines "Train; MSP-PODCAST_0023_0048.wav")

and writes one SpeechBrain JSON manifest per requested split, ``train.json``,
``development.json``, ``test1.json``, ``test2.json`` and ``test3.json``, keyed
by utterance id (the file name without ``.wav``)::

    "MSP-PODCAST_0001_0008": {
        "wav": "/data/MSP-PODCAST-Publish-1.11/Audios/MSP-PODCAST_0001_0008.wav",
        "duration": 2.4, "emo": "N", "arousal": 2.2, "valence": 4.0,
        "dominance": 2.6, "gender": "Male", "speaker": "30",
        "text": "So we talked about the budget.", "split": "Test1",
        "votes": {"N": 4.0, "S": 1.0}, "secondary_votes": {"S": 2.0}
    }

plus ``prep_summary.json`` (counts per split and class, rows kept without a
class, rows skipped with their reasons and first examples, Partitions.txt
disagreements, missing transcripts) and ``prepare_options.json`` (the
options, used to skip work on a re-run).

Manifest entries
----------------
* ``duration`` comes from the audio header (samples are never read); ``speaker``
  is the SpkrID as a string (``"30"``) or ``"Unknown"``; ``gender`` is the
  Gender field as written (``Male``, ``Female``); ``text`` is the transcript,
  or null when ``Transcripts/<id>.txt`` is missing or empty; ``split`` is the
  file's ``Split_Set``.
* ``emo`` is the EmoClass letter when it is one of ``emotions`` (default the
  eight challenge classes A S H U F D C N), else **null**. Rows of class O
  (other) and X (no agreement) are therefore *kept* with ``"emo": null`` and
  their attributes: Task 1 (8-class, Macro-F1) must drop them, but Task 2
  (arousal / valence / dominance regression, CCC) can train and evaluate on
  them since they have attributes. The categorical recipe filters out entries
  whose ``emo`` is null; ``prep_summary.json`` and the log count them as
  dropped for Task 1.
* Test3 files (listed as Test3 in ``Partitions.txt`` with no row in the labels
  file: their labels, speakers and transcripts are hidden in the release) get
  entries with ``wav``, ``duration``, ``text`` (null unless a transcript file
  exists) and ``split`` ``"Test3"``; ``emo``, the attributes, ``gender`` and
  ``speaker`` are null (all manifests have the same keys). The training
  recipe writes prediction files for them.

* ``votes`` are the annotators' primary emotions in
  ``Labels/labels_detailed.csv`` (one row per file and annotator), counted by
  class letter, ``O`` for any other primary (``Other``, ``Other-Curious``,
  ...): O and X rows keep their distribution (the recipe trains on it with
  ``--targets=soft --use_no_agreement=W``); ``secondary_votes`` count the
  secondary emotions that name one of the eight classes (kept for analysis;
  training uses the primary votes). The file is read by column name: the
  v1.11 layout ``FileName,EmoDetail`` (``EmoDetail`` =
  ``WORKER00014; Neutral; Concerned,Frustrated; A:4.0; V:3.0; D:4.0;``) or
  the column layout of earlier releases (``FileName``, ``EmoClass_Major``,
  ``EmoClass_Second``, ...). A missing or unreadable file is one warning and
  every ``votes`` is null (hard labels); an unreadable row is left out, with
  one warning for all of them. Its SHA-256 is a preparation option: a
  changed file rebuilds the manifests.

Splits
------
A labelled file's split is its ``Split_Set``; Test3 (unlabelled) files come
from ``Partitions.txt``. When ``Partitions.txt`` disagrees with ``Split_Set``
for a file, the labels file is trusted and a warning gives the count and
examples. The official splits are speaker-independent (the test speakers are
not in Train; ``Unknown`` speakers aside): the summary lists any known speaker
found in Train and in another split.

Problems
--------
Bad rows never stop the preparation: a malformed label row (wrong number of
fields, empty file name, non-numeric attribute or one outside 1-7, unknown
Split_Set, empty SpkrID or Gender), an unknown class letter (not one of
A S H U F D C N O X), a file labelled twice, a labelled file whose audio is
missing or unusable (corrupt, not mono, wrong sampling rate, shorter than
``min_samples``: the checks of :func:`sser_lobes.dataio.audio.check_audio_info`) and
a malformed ``Partitions.txt`` line are skipped, logged with the file name and
the line (csv line number; entry number for the json labels; Partitions.txt
line) and counted in ``prep_summary.json``. A missing labels file, a missing
``Audios/`` folder (or one without wav files), an unreadable labels header or
a json labels file that is not a dict are hard errors saying what is expected.
Parse problems are counted over the whole labels file; audio is only checked
for the requested splits.

Speed: the labels file is parsed once with the ``csv`` module (150,000 rows in
well under a second); the slow part on the real corpus is reading the audio
headers, done by ``num_workers`` threads with a progress bar.

Command line::

    python msp_podcast_prepare.py --data_folder /data/MSP-PODCAST-Publish-1.11 \\
        --save_folder results/prep [--splits Train Development Test1] \\
        [--emotions A S H U F D C N] [--num_workers 4]

Authors: the sser contributors.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from sser_lobes.dataio.audio import check_audio_info
from sser_lobes.dataio.corpus_facts import MSP_PODCAST_DETAILED_NAMES
from sser_lobes.dataio.files import atomic_write_json, file_sha256
from sser_lobes.dataio.preparation import (
    read_state,
    reusable,
    run_preparation_cli,
    write_state,
)
from sser_lobes.dataio.row_report import RowReport, log_summary
from sser_lobes.dataio.votes import clean_votes
from sser_lobes.errors import AudioError, PreparationError

logger = logging.getLogger(__name__)

#: Every EmoClass letter of the labels file.
KNOWN_CLASSES = ("A", "S", "H", "U", "F", "D", "C", "N", "O", "X")

#: The eight challenge classes (Task 1), in the official baseline's order.
DEFAULT_EMOTIONS = ("A", "S", "H", "U", "F", "D", "C", "N")

#: Split names (Split_Set values and Partitions.txt names).
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")

#: Required columns of labels_consensus.csv (the release's exact header).
LABEL_COLUMNS = (
    "FileName",
    "EmoClass",
    "EmoAct",
    "EmoVal",
    "EmoDom",
    "SpkrID",
    "Gender",
    "Split_Set",
)

#: Number of Test3 files in the v1.11 release (class-balanced).
TEST3_FILES = 2347

SUMMARY_FILE = "prep_summary.json"
#: Mean and std of every Train audio sample, per task (see
#: :func:`train_waveform_statistics`).
WAVEFORM_STATS_FILE = "waveform_stats.json"

#: Reasons of skipped rows, as counted in prep_summary.json.
SKIP_REASONS = {
    "malformed_row": "malformed label row",
    "unknown_class": "unknown class letter",
    "duplicate_file": "file labelled twice",
    "missing_audio": "audio file missing",
    "bad_audio": "audio file unusable",
    "bad_partition_line": "malformed Partitions.txt line",
}

#: The annotators' votes (optional).
DETAILED_FILE = "labels_detailed.csv"

_WRITER = "msp_podcast_prepare"
_FORMAT_VERSION = 3  # 2: waveform_stats.json; 3: votes
_MAX_EXAMPLES = 20
_SPLIT_BY_LOWER = {s.lower(): s for s in SPLITS}
_SPLIT_SET = frozenset(SPLITS)
_KNOWN_SET = frozenset(KNOWN_CLASSES)
_GENDERS = {"male": "Male", "female": "Female", "unknown": "Unknown"}
_GENDER_NAMES = frozenset(_GENDERS.values())


class LabelRow(NamedTuple):
    """One valid row of the labels file (a named tuple: cheap for 150k rows).

    Arguments
    ---------
    file_name : str
        E.g. ``MSP-PODCAST_0001_0008.wav``.
    emo_class : str
        EmoClass letter (one of :data:`KNOWN_CLASSES`).
    arousal, valence, dominance : float
        EmoAct, EmoVal, EmoDom (1-7).
    speaker : str
        SpkrID as a string (``"30"``) or ``"Unknown"``.
    gender : str
        Gender field (``Male``, ``Female``, ...).
    split : str
        Split_Set (one of :data:`SPLITS`).
    source : str
        The labels file.
    line : int
        Line number in the csv file (entry number, from 1, in a json file).
    unit : str
        ``"line"`` (csv) or ``"entry"`` (json).

    Example
    -------
    >>> row = LabelRow("MSP-PODCAST_0001_0008.wav", "N", 2.2, 4.0, 2.6, "30",
    ...     "Male", "Test1", "labels_consensus.csv", 2)
    >>> row.utt_id, row.where
    ('MSP-PODCAST_0001_0008', 'labels_consensus.csv, line 2 (MSP-PODCAST_0001_0008.wav)')
    """  # noqa: E501

    file_name: str
    emo_class: str
    arousal: float
    valence: float
    dominance: float
    speaker: str
    gender: str
    split: str
    source: str
    line: int
    unit: str = "line"

    @property
    def utt_id(self):
        """File name without ``.wav``."""
        return _utt_id(self.file_name)

    @property
    def place(self):
        """``<labels file>, line <n>``: where the row is."""
        return f"{self.source}, {self.unit} {self.line}"

    @property
    def where(self):
        """``<labels file>, line <n> (<file name>)``: for messages."""
        return f"{self.place} ({self.file_name})"


@dataclass
class LabelTable:
    """Result of parsing a labels file.

    Arguments
    ---------
    path : str
        The labels file.
    unit : str
        ``"line"`` (csv) or ``"entry"`` (json): how rows are numbered.
    rows : dict
        File name -> :class:`LabelRow`, for the valid rows.
    problems : list of tuple
        ``(reason, message)`` for every skipped row (reason: a key of
        :data:`SKIP_REASONS`), in file order; the message starts with
        ``<labels file>, line <n> (<file name>): ``.
    names : set of str
        Every file name found in the file, valid row or not.
    n_rows : int
        Number of data rows read (blank lines aside).

    Example
    -------
    >>> table = LabelTable("labels.csv")
    >>> table.rows, table.problems, table.n_rows
    ({}, [], 0)
    """

    path: str
    unit: str = "line"
    rows: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    names: set = field(default_factory=set)
    n_rows: int = 0

    def skip(self, reason, number, file_name, problem):
        """Record a skipped row (``problem`` without the location)."""
        label = f" ({file_name})" if file_name else ""
        self.problems.append(
            (reason, f"{self.path}, {self.unit} {number}{label}: {problem}")
        )


class _RowError(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def _utt_id(file_name):
    return file_name[:-4] if file_name.lower().endswith(".wav") else file_name


def _wav_name(file_name):
    return file_name if file_name.lower().endswith(".wav") else f"{file_name}.wav"


def _attribute(value, column):
    try:
        if isinstance(value, bool):  # json true / false
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise _RowError(
            "malformed_row",
            f"{column} is {value!r}, expected a number between 1 and 7",
        ) from None
    if not 1.0 <= number <= 7.0:  # also rejects NaN
        raise _RowError(
            "malformed_row",
            f"{column} is {value!r}, outside the 1-7 range of the attributes",
        )
    return number


def _text_field(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _make_row(table, number, values):
    """Validate one row and add it to ``table`` (invalid rows: :meth:`LabelTable.skip`).

    ``values`` are the 8 columns' values in :data:`LABEL_COLUMNS` order, the
    text fields as stripped strings (the attributes may also be numbers).
    """
    file_name = values[0]
    if not file_name:
        table.skip("malformed_row", number, "", "empty FileName")
        return
    table.names.add(file_name)
    try:
        emo = values[1]
        if emo not in _KNOWN_SET:
            raise _RowError(
                "unknown_class",
                f"unknown EmoClass {emo!r}, expected one of {' '.join(KNOWN_CLASSES)}",
            )
        arousal = _attribute(values[2], "EmoAct")
        valence = _attribute(values[3], "EmoVal")
        dominance = _attribute(values[4], "EmoDom")
        speaker = values[5]
        if not speaker:
            raise _RowError("malformed_row", "empty SpkrID")
        if not speaker.isdigit() and speaker.lower() == "unknown":
            speaker = "Unknown"
        gender = values[6]
        if not gender:
            raise _RowError("malformed_row", "empty Gender")
        if gender not in _GENDER_NAMES:
            gender = _GENDERS.get(gender.lower(), gender)
        split = values[7]
        if split not in _SPLIT_SET:
            split = _SPLIT_BY_LOWER.get(split.lower())
            if split is None:
                raise _RowError(
                    "malformed_row",
                    f"unknown Split_Set {values[7]!r}, expected one of "
                    f"{', '.join(SPLITS)}",
                )
        first = table.rows.get(file_name)
        if first is not None:
            raise _RowError(
                "duplicate_file",
                f"{file_name} is labelled twice (first at {first.place}); this row "
                f"is skipped",
            )
    except _RowError as exc:
        table.skip(exc.reason, number, file_name, str(exc))
        return
    table.rows[file_name] = LabelRow(
        file_name,
        emo,
        arousal,
        valence,
        dominance,
        speaker,
        gender,
        split,
        table.path,
        number,
        table.unit,
    )


def read_labels_csv(path):
    """Parse ``Labels/labels_consensus.csv``.

    The header must hold the columns of :data:`LABEL_COLUMNS` (in any order;
    extra columns are ignored); every data row must have as many fields as
    the header. Invalid rows are skipped and reported (see
    :class:`LabelTable`), never raised.

    Arguments
    ---------
    path : str or os.PathLike
        The csv file.

    Returns
    -------
    LabelTable
        Valid rows, problems (naming the file, the line and the file name).

    Raises
    ------
    PreparationError
        If the file cannot be read, is empty or its header lacks columns.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "labels_consensus.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write(
    ...         "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\\n"
    ...         "MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1\\n"
    ...         "MSP-PODCAST_0001_0009.wav,Z,2.2,4.0,2.6,30,Male,Test1\\n"
    ...     )
    >>> table = read_labels_csv(path)
    >>> row = table.rows["MSP-PODCAST_0001_0008.wav"]
    >>> row.emo_class, row.arousal, row.speaker, row.split
    ('N', 2.2, '30', 'Test1')
    >>> reason, message = table.problems[0]
    >>> reason, message.split(", ", 1)[1]
    ('unknown_class', "line 3 (MSP-PODCAST_0001_0009.wav): unknown EmoClass 'Z', expected one of A S H U F D C N O X")
    >>> tmp.cleanup()
    """  # noqa: E501
    path = os.fspath(path)
    table = LabelTable(path)
    try:
        handle = open(path, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise PreparationError(f"{path}: cannot read the labels file ({exc})") from None
    expected = ",".join(LABEL_COLUMNS)
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise PreparationError(
                f"{path}, line 1: unreadable header ({exc}); expected {expected}"
            ) from None
        if not header:
            raise PreparationError(
                f"{path}: empty labels file; expected the header line {expected} "
                f"followed by one row per file"
            )
        header = [name.strip() for name in header]
        missing = [c for c in LABEL_COLUMNS if c not in header]
        if missing:
            raise PreparationError(
                f"{path}, line 1: header {','.join(header)!r} lacks the column(s) "
                f"{', '.join(missing)}; expected {expected}"
            )
        index = [header.index(c) for c in LABEL_COLUMNS]
        n_fields = len(header)
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                table.skip(
                    "malformed_row", reader.line_num, "", f"unreadable row ({exc})"
                )
                continue
            if not values:
                continue  # blank line
            table.n_rows += 1
            if len(values) != n_fields:
                name = values[index[0]].strip() if len(values) > index[0] else ""
                if name:
                    table.names.add(name)
                table.skip(
                    "malformed_row",
                    reader.line_num,
                    name,
                    f"{len(values)} field(s), expected {n_fields} ({','.join(header)})",
                )
                continue
            _make_row(table, reader.line_num, [values[i].strip() for i in index])
    return table


def read_labels_json(path):
    """Parse ``Labels/labels_consensus.json``.

    The file holds a dict keyed by FileName whose values are dicts with the
    other seven fields of :data:`LABEL_COLUMNS` (attributes as numbers or
    numeric strings, SpkrID as a number or a string such as ``"Unknown"``)::

        {"MSP-PODCAST_0001_0008.wav": {"EmoClass": "N", "EmoAct": 2.2,
            "EmoVal": 4.0, "EmoDom": 2.6, "SpkrID": 30, "Gender": "Male",
            "Split_Set": "Test1"}}

    Problems name the entry number (1-based, in file order) and the file name.

    Arguments
    ---------
    path : str or os.PathLike
        The json file.

    Returns
    -------
    LabelTable
        Valid rows and problems.

    Raises
    ------
    PreparationError
        If the file cannot be read or parsed, or is not a dict.

    Example
    -------
    >>> import tempfile, os, json
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "labels_consensus.json")
    >>> entry = {"EmoClass": "H", "EmoAct": 5, "EmoVal": 6.1, "EmoDom": 4.0,
    ...          "SpkrID": "Unknown", "Gender": "Female", "Split_Set": "Train"}
    >>> with open(path, "w") as f:
    ...     json.dump({"MSP-PODCAST_0002_0033.wav": entry}, f)
    >>> row = read_labels_json(path).rows["MSP-PODCAST_0002_0033.wav"]
    >>> row.emo_class, row.arousal, row.speaker, row.where.split(", ")[1]
    ('H', 5.0, 'Unknown', 'entry 1 (MSP-PODCAST_0002_0033.wav)')
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    table = LabelTable(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PreparationError(
            f"{path}: cannot read the labels file ({exc}); expected a JSON dict "
            f'keyed by file name, e.g. {{"MSP-PODCAST_0001_0008.wav": '
            f'{{"EmoClass": "N", ...}}}}'
        ) from None
    if not isinstance(data, dict):
        raise PreparationError(
            f"{path}: the labels are a JSON {type(data).__name__}; expected a dict "
            f'keyed by file name, e.g. {{"MSP-PODCAST_0001_0008.wav": '
            f'{{"EmoClass": "N", ...}}}}'
        )
    table.unit = "entry"
    fields = LABEL_COLUMNS[1:]
    for number, (name, entry) in enumerate(data.items(), start=1):
        table.n_rows += 1
        if not isinstance(entry, dict) or any(f not in entry for f in fields):
            if str(name).strip():
                table.names.add(str(name).strip())
            missing = [
                f for f in fields if not isinstance(entry, dict) or f not in entry
            ]
            table.skip(
                "malformed_row",
                number,
                name,
                f"lacks the field(s) {', '.join(missing)}",
            )
            continue
        values = [_text_field(name), *(entry[f] for f in fields)]
        for i in (1, 5, 6, 7):  # text fields; the attributes may be numbers
            values[i] = _text_field(values[i])
        _make_row(table, number, values)
    return table


def read_labels(path):
    """Parse a labels file, csv or json by its suffix.

    Arguments
    ---------
    path : str or os.PathLike
        ``labels_consensus.csv`` or ``labels_consensus.json``.

    Returns
    -------
    LabelTable
        See :func:`read_labels_csv` and :func:`read_labels_json`.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "labels_consensus.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("FileName,EmoClass\\n")
    >>> read_labels(path)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.PreparationError: ...line 1: header 'FileName,EmoClass' lacks the column(s) EmoAct, ...
    >>> tmp.cleanup()
    """  # noqa: E501
    if os.fspath(path).lower().endswith(".json"):
        return read_labels_json(path)
    return read_labels_csv(path)


def read_partitions(path):
    """Parse ``Partitions.txt`` (lines ``Train; MSP-PODCAST_0023_0048.wav``).

    Arguments
    ---------
    path : str or os.PathLike
        The file.

    Returns
    -------
    tuple
        ``(partitions, problems)``: file name -> ``(split, line number)``, and
        ``("bad_partition_line", message)`` for malformed lines (no ``;``,
        unknown split, empty or repeated file name), which are skipped.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "Partitions.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("Train; MSP-PODCAST_0023_0048.wav\\nTest9; x.wav\\n")
    >>> partitions, problems = read_partitions(path)
    >>> partitions
    {'MSP-PODCAST_0023_0048.wav': ('Train', 1)}
    >>> problems[0][1].split(", ", 1)[1]
    "line 2: unknown split 'Test9', expected one of Train, Development, ..."
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    partitions = {}
    problems = []
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise PreparationError(f"{path}: cannot read it ({exc})") from None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}, line {number}"
        split_text, sep, name = line.partition(";")
        split_text, name = split_text.strip(), name.strip()
        if not sep or not name:
            problems.append(
                (
                    "bad_partition_line",
                    f"{where}: malformed line {line!r}; expected "
                    f"'<Split>; <FileName>' such as 'Train; MSP-PODCAST_0023_0048.wav'",
                )
            )
            continue
        split = _SPLIT_BY_LOWER.get(split_text.lower())
        if split is None:
            problems.append(
                (
                    "bad_partition_line",
                    f"{where}: unknown split {split_text!r}, expected one of "
                    f"{', '.join(SPLITS)}",
                )
            )
            continue
        if name in partitions:
            problems.append(
                (
                    "bad_partition_line",
                    f"{where}: {name} is listed twice (first at line "
                    f"{partitions[name][1]}); this line is ignored",
                )
            )
            continue
        partitions[name] = (split, number)
    return partitions, problems


def find_msp_root(data_folder):
    """Return the release folder (holding ``Labels/``) for a user-given folder.

    ``data_folder`` may be the release folder itself or its parent when that
    holds exactly one subfolder with ``Labels/``.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The MSP-Podcast folder (or its parent).

    Returns
    -------
    pathlib.Path
        Absolute path of the release folder.

    Raises
    ------
    PreparationError
        If the folder does not exist or no ``Labels/`` folder is found.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> os.makedirs(os.path.join(tmp.name, "MSP-PODCAST-Publish-1.11", "Labels"))
    >>> find_msp_root(tmp.name).name
    'MSP-PODCAST-Publish-1.11'
    >>> tmp.cleanup()
    """
    folder = Path(os.path.abspath(os.fspath(data_folder)))
    if not folder.is_dir():
        raise PreparationError(
            f"{folder}: data_folder does not exist or is not a folder; expected the "
            f"MSP-Podcast release folder (holding Audios/, Labels/, Transcripts/ "
            f"and Partitions.txt)"
        )
    if (folder / "Labels").is_dir():
        return folder
    children = [c for c in sorted(folder.iterdir()) if (c / "Labels").is_dir()]
    if len(children) == 1 and not (folder / "Audios").is_dir():
        return children[0]
    raise PreparationError(
        f"{folder / 'Labels'}: folder not found; expected the MSP-Podcast release "
        f"folder holding Labels/labels_consensus.csv (or .json), Audios/, "
        f"Transcripts/ and Partitions.txt"
    )


def find_labels_file(root):
    """Return ``Labels/labels_consensus.csv``, or the ``.json`` if no csv.

    Arguments
    ---------
    root : pathlib.Path
        The release folder.

    Returns
    -------
    pathlib.Path
        The labels file.

    Raises
    ------
    PreparationError
        If neither file exists.

    Example
    -------
    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = pathlib.Path(tmp.name)
    >>> (root / "Labels").mkdir()
    >>> _ = (root / "Labels" / "labels_consensus.json").write_text("{}")
    >>> find_labels_file(root).name
    'labels_consensus.json'
    >>> tmp.cleanup()
    """
    labels = Path(root) / "Labels"
    for name in ("labels_consensus.csv", "labels_consensus.json"):
        if (labels / name).is_file():
            return labels / name
    raise PreparationError(
        f"{labels}: no labels_consensus.csv (nor labels_consensus.json) in it; "
        f"expected Labels/labels_consensus.csv with the header "
        f"{','.join(LABEL_COLUMNS)}"
    )


def _has_wav(folder):
    with os.scandir(folder) as entries:
        return any(e.name.lower().endswith(".wav") for e in entries)


def find_audio_folder(root):
    """Return the folder holding the wav files: ``Audios/`` or a subfolder.

    Some copies of the release unpack to ``Audios/Audios/``; any one
    subfolder of ``Audios/`` holding wav files is accepted (``Audios/Audios``
    first).

    Arguments
    ---------
    root : pathlib.Path
        The release folder.

    Returns
    -------
    pathlib.Path
        The folder holding the wav files.

    Raises
    ------
    PreparationError
        If ``Audios/`` is missing or no wav file is found in it or in its
        subfolders.

    Example
    -------
    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = pathlib.Path(tmp.name)
    >>> (root / "Audios" / "Audios").mkdir(parents=True)
    >>> _ = (root / "Audios" / "Audios" / "MSP-PODCAST_0001_0008.wav").write_bytes(b"")
    >>> find_audio_folder(root).relative_to(root).as_posix()
    'Audios/Audios'
    >>> tmp.cleanup()
    """
    audios = Path(root) / "Audios"
    if not audios.is_dir():
        raise PreparationError(
            f"{audios}: folder not found; expected the wav files as "
            f"Audios/MSP-PODCAST_0001_0008.wav (or Audios/Audios/...)"
        )
    if _has_wav(audios):
        return audios
    subfolders = sorted(
        (p for p in audios.iterdir() if p.is_dir()),
        key=lambda p: (p.name != "Audios", p.name),
    )
    for sub in subfolders:
        if _has_wav(sub):
            return sub
    raise PreparationError(
        f"{audios}: no .wav file in it nor in its subfolders; expected the wav "
        f"files as Audios/MSP-PODCAST_0001_0008.wav (or Audios/Audios/...)"
    )


def _listing(folder, suffix):
    """Names of the files with ``suffix`` in a folder (one directory read)."""
    if folder is None or not folder.is_dir():
        return set()
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.name.endswith(suffix)}


def _read_transcript(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = " ".join(handle.read().split())
    except OSError:
        return None
    return text or None


class VoteTable(NamedTuple):
    """What :func:`read_detailed_labels` read."""

    votes: dict  # file name -> {letter: count} of the primary emotions
    secondary: dict  # file name -> {letter: count} of the secondary emotions
    layout: str  # "EmoDetail" or "columns"
    rows: int
    problems: list


def primary_letter(name):
    """The class letter of a primary-emotion name (``O`` for any other).

    Example
    -------
    >>> [primary_letter(n) for n in ("Neutral", "angry", "Other-Curious", "N")]
    ['N', 'A', 'O', 'N']
    """
    name = name.strip()
    for known, letter in MSP_PODCAST_DETAILED_NAMES.items():
        if name.casefold() == known.casefold():
            return letter
    if name in DEFAULT_EMOTIONS:
        return name
    return "O"


_DETAIL_ATTRIBUTE = re.compile(r"^[AVD]:")


def _detail_fields(detail):
    """``(primary, secondary)`` of an EmoDetail value, or None."""
    parts = [p.strip() for p in detail.split(";")]
    while parts and not parts[-1]:
        parts.pop()
    if len(parts) < 2 or not parts[1] or _DETAIL_ATTRIBUTE.match(parts[1]):
        return None
    secondary = ""
    if len(parts) > 2 and not _DETAIL_ATTRIBUTE.match(parts[2]):
        secondary = parts[2]
    return parts[1], secondary


def read_detailed_labels(path):
    """Read ``Labels/labels_detailed.csv`` (one row per file and annotator).

    The columns are found by name: ``FileName`` and either ``EmoDetail``
    (v1.11: ``WORKER00014; Neutral; Concerned,Frustrated; A:4.0; V:3.0;
    D:4.0;``) or ``EmoClass_Major`` (with ``EmoClass_Second`` if present).

    Returns
    -------
    VoteTable

    Raises
    ------
    PreparationError
        The file cannot be read or its header has neither layout.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels_detailed.csv")
    >>> _ = open(path, "w").write(
    ...     'FileName,EmoDetail\\n'
    ...     'a.wav,"WORKER1; Neutral; Sad,Bored; A:2.0; V:3.0; D:3.0;"\\n'
    ...     'a.wav,WORKER2; Other-Curious; ; A:4.0; V:4.0; D:4.0;\\n'
    ...     'a.wav,garbage\\n')
    >>> table = read_detailed_labels(path)
    >>> table.votes, table.secondary, table.rows, len(table.problems)
    ({'a.wav': {'N': 1.0, 'O': 1.0}}, {'a.wav': {'S': 1.0}}, 3, 1)
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            if "FileName" in header and "EmoDetail" in header:
                layout = "EmoDetail"
            elif "FileName" in header and "EmoClass_Major" in header:
                layout = "columns"
            else:
                raise PreparationError(
                    f"{path}: header {','.join(header) or '(empty)'} has neither "
                    "FileName,EmoDetail (v1.11) nor FileName and EmoClass_Major"
                )
            votes, secondary, problems = {}, {}, []
            rows = 0
            for values in reader:
                rows += 1
                where = f"{path}, line {reader.line_num}"
                name = (values.get("FileName") or "").strip()
                if layout == "EmoDetail":
                    fields = _detail_fields(values.get("EmoDetail") or "")
                else:
                    major = (values.get("EmoClass_Major") or "").strip()
                    second = (values.get("EmoClass_Second") or "").strip()
                    fields = (major, second) if major else None
                if not name or fields is None:
                    problems.append(f"{where}: no file name or no primary emotion")
                    continue
                primary, tags = fields
                counts = votes.setdefault(name, {})
                letter = primary_letter(primary)
                counts[letter] = counts.get(letter, 0.0) + 1.0
                for tag in tags.split(","):
                    letter = primary_letter(tag) if tag.strip() else "O"
                    if letter != "O":
                        extra = secondary.setdefault(name, {})
                        extra[letter] = extra.get(letter, 0.0) + 1.0
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PreparationError(f"{path}: cannot read it ({error})") from None
    return VoteTable(votes, secondary, layout, rows, problems)


def _read_votes(root):
    """The vote table of the release, or None after one warning line."""
    path = Path(root) / "Labels" / DETAILED_FILE
    if not path.is_file():
        logger.warning(
            '%s: not found; no annotator votes: every "votes" is null and '
            "--targets=soft cannot train (hard labels are not affected)",
            path,
        )
        return None
    try:
        table = read_detailed_labels(path)
    except PreparationError as error:
        logger.warning(
            '%s; the annotator votes are left out (every "votes" is null, hard '
            "labels are not affected)",
            error,
        )
        return None
    if table.problems:
        logger.warning(
            "%d row(s) of %s cannot be read and are left out, e.g. %s",
            len(table.problems),
            path,
            table.problems[0],
        )
    return table


def validate_options(splits, emotions, sample_rate, min_samples, num_workers):
    """Check the arguments; return them as a JSON-comparable dict."""
    if isinstance(splits, str) or not all(isinstance(s, str) for s in splits):
        raise ValueError(
            f"splits must be a list of split names such as ['Train', 'Test1'], "
            f"got {splits!r}"
        )
    canonical = []
    for name in splits:
        split = _SPLIT_BY_LOWER.get(name.lower())
        if split is None:
            raise ValueError(
                f"unknown split {name!r} in splits; known splits are "
                f"{', '.join(SPLITS)}"
            )
        canonical.append(split)
    if not canonical or len(set(canonical)) != len(canonical):
        raise ValueError(f"splits must hold distinct split names, got {splits!r}")
    if isinstance(emotions, str) or not all(isinstance(e, str) for e in emotions):
        raise ValueError(
            f"emotions must be a list of class letters such as "
            f"['A', 'S', 'H', 'U', 'F', 'D', 'C', 'N'], got {emotions!r}"
        )
    emotions = list(emotions)
    unknown = [e for e in emotions if e not in KNOWN_CLASSES]
    if unknown:
        raise ValueError(
            f"unknown class letter(s) {unknown} in emotions; known letters are "
            f"{' '.join(KNOWN_CLASSES)}"
        )
    if len(set(emotions)) != len(emotions) or len(emotions) < 2:
        raise ValueError(
            f"emotions must hold at least two distinct letters, got {emotions!r}"
        )
    for name, value, low in (
        ("sample_rate", sample_rate, 1),
        ("min_samples", min_samples, 0),
        ("num_workers", num_workers, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return {
        "splits": canonical,
        "emotions": emotions,
        "sample_rate": sample_rate,
        "min_samples": min_samples,
    }


def _manifest_name(split):
    return f"{split.lower()}.json"


def _inspect_all(items, options, num_workers):
    """Check the audio headers and read the transcripts of ``items``.

    ``items`` are ``(wav path, transcript path or None)``; returns, in order,
    ``(AudioInfo or AudioError, text or None)``.
    """
    sample_rate, min_samples = options["sample_rate"], options["min_samples"]

    def inspect(item):
        wav, transcript = item
        try:
            info = check_audio_info(
                wav, sample_rate=sample_rate, min_samples=min_samples
            )
        except AudioError as exc:
            return exc, None
        return info, (_read_transcript(transcript) if transcript else None)

    progress = {
        "total": len(items),
        "desc": "Checking audio headers",
        "unit": "file",
        "disable": None,  # only on a terminal
        "mininterval": 1.0,
    }
    if num_workers <= 1 or len(items) < 2:
        return [inspect(item) for item in tqdm(items, **progress)]
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        return list(tqdm(pool.map(inspect, items), **progress))


def _collect(root, labels_path, options, num_workers):
    """Build the manifests and the summary (nothing is written here)."""
    audio_dir = find_audio_folder(root)
    table = read_labels(labels_path)
    report = RowReport(SKIP_REASONS, _MAX_EXAMPLES)
    report.extend(table.problems)

    partitions_path = root / "Partitions.txt"
    partitions = {}
    if partitions_path.is_file():
        partitions, partition_problems = read_partitions(partitions_path)
        report.extend(partition_problems)
    elif "Test3" in options["splits"]:
        raise PreparationError(
            f"{partitions_path}: file not found; it lists the Test3 files (lines "
            f"'Test3; MSP-PODCAST_....wav'). Leave Test3 out of splits to prepare "
            f"the other splits without it."
        )
    else:
        logger.warning(
            "%s: not found; splits come from the labels file only", partitions_path
        )

    # Partitions.txt against the labels file: the labels file is trusted.
    disagreements = []
    n_disagree = 0
    not_listed = 0
    for name, row in table.rows.items():
        listed = partitions.get(name)
        if listed is None:
            not_listed += 1
        elif listed[0] != row.split:
            n_disagree += 1
            if len(disagreements) < _MAX_EXAMPLES:
                disagreements.append(
                    f"{name}: Split_Set {row.split} at {row.place}"
                    f", but {listed[0]} at {partitions_path}, line {listed[1]}"
                )

    wanted = set(options["splits"])
    wavs = _listing(audio_dir, ".wav")
    transcripts_dir = root / "Transcripts"
    if not transcripts_dir.is_dir():
        logger.warning(
            '%s: folder not found; every transcript ("text") will be null',
            transcripts_dir,
        )
        transcripts_dir = None
    texts = _listing(transcripts_dir, ".txt")

    # (split, utt id, row or None, where) of every candidate entry.
    candidates = [
        (row.split, row.utt_id, row, row.where)
        for row in table.rows.values()
        if row.split in wanted
    ]
    if "Test3" in wanted:
        for name, (split, line) in partitions.items():
            if split == "Test3" and name not in table.names:
                where = f"{partitions_path}, line {line} ({name})"
                candidates.append(("Test3", _utt_id(name), None, where))
    candidates.sort(key=lambda c: c[1])

    items = []
    present = []
    for split, utt, row, where in candidates:
        wav_name = _wav_name(row.file_name if row else utt)
        if wav_name not in wavs:
            report.skip(
                "missing_audio",
                f"{where}: audio file {audio_dir / wav_name} not found; skipped",
            )
            continue
        transcript = f"{utt}.txt"
        items.append(
            (
                os.fspath(audio_dir / wav_name),
                os.fspath(transcripts_dir / transcript)
                if transcript in texts
                else None,
            )
        )
        present.append((split, utt, row, where))

    results = _inspect_all(items, options, num_workers)
    vote_table = _read_votes(root)
    emotions = set(options["emotions"])
    manifests = {split: {} for split in options["splits"]}
    raw_classes = {}  # utt id -> EmoClass letter (entries keep "emo" only)
    no_text = []
    for (split, utt, row, where), (wav, _), (info, text) in zip(
        present, items, results
    ):
        if isinstance(info, AudioError):
            report.skip("bad_audio", f"{where}: {info}; skipped")
            continue
        if row is None:
            entry = {
                "wav": wav,
                "duration": info.duration,
                "emo": None,
                "arousal": None,
                "valence": None,
                "dominance": None,
                "gender": None,
                "speaker": None,
                "text": text,
                "split": split,
                "votes": None,
                "secondary_votes": None,
            }
        else:
            entry = {
                "wav": wav,
                "duration": info.duration,
                "emo": row.emo_class if row.emo_class in emotions else None,
                "arousal": row.arousal,
                "valence": row.valence,
                "dominance": row.dominance,
                "gender": row.gender,
                "speaker": row.speaker,
                "text": text,
                "split": split,
                "votes": None,
                "secondary_votes": None,
            }
            if vote_table is not None:
                name = _wav_name(row.file_name)
                entry["votes"] = clean_votes(vote_table.votes.get(name))
                entry["secondary_votes"] = clean_votes(vote_table.secondary.get(name))
            raw_classes[utt] = row.emo_class
            if text is None:
                no_text.append(utt)
        manifests[split][utt] = entry

    summary = _summary(
        root,
        labels_path,
        audio_dir,
        partitions_path if partitions else None,
        options,
        table,
        manifests,
        raw_classes,
        report.summary(),
        {
            "disagreements": {"count": n_disagree, "examples": disagreements},
            "labelled_files_not_listed": not_listed if partitions else None,
        },
        no_text,
    )
    labelled = [
        e for m in manifests.values() for e in m.values() if e["split"] != "Test3"
    ]
    summary["votes"] = {
        "file": None
        if vote_table is None
        else os.fspath(Path(root) / "Labels" / DETAILED_FILE),
        "layout": None if vote_table is None else vote_table.layout,
        "rows": None if vote_table is None else vote_table.rows,
        "unreadable_rows": None
        if vote_table is None
        else {
            "count": len(vote_table.problems),
            "examples": vote_table.problems[:_MAX_EXAMPLES],
        },
        "labelled_with_votes": sum(bool(e["votes"]) for e in labelled),
        "labelled_without_votes": sum(not e["votes"] for e in labelled),
    }
    return manifests, summary


def _summary(
    root,
    labels_path,
    audio_dir,
    partitions_path,
    options,
    table,
    manifests,
    raw_classes,
    skipped,
    partition_info,
    no_text,
):
    emotions = options["emotions"]
    counts = {}
    dropped = Counter()
    for split, entries in manifests.items():
        classes = Counter()
        unlabelled = 0
        emo_null = Counter()
        for utt, entry in entries.items():
            letter = raw_classes.get(utt)
            if letter is None:
                unlabelled += 1
                continue
            classes[letter] += 1
            if entry["emo"] is None:
                emo_null[letter] += 1
        dropped.update(emo_null)
        counts[split] = {
            "total": len(entries),
            "classes": {c: classes[c] for c in KNOWN_CLASSES if classes[c]},
            "emo_null": sum(emo_null.values()),
            "unlabelled": unlabelled,
            "without_transcript": sum(e["text"] is None for e in entries.values()),
        }
    train_speakers = {
        e["speaker"]
        for e in manifests.get("Train", {}).values()
        if e["speaker"] not in (None, "Unknown")
    }
    overlap = {}
    for split, entries in manifests.items():
        if split == "Train":
            continue
        shared = sorted(
            {e["speaker"] for e in entries.values()} & train_speakers, key=str
        )
        if shared:
            overlap[split] = shared
    return {
        "data_folder": os.fspath(root),
        "labels_file": os.fspath(labels_path),
        "audio_folder": os.fspath(audio_dir),
        "partitions_file": os.fspath(partitions_path) if partitions_path else None,
        "splits": options["splits"],
        "emotions": emotions,
        "label_rows": {
            "read": table.n_rows,
            "valid": len(table.rows),
            "skipped": table.n_rows - len(table.rows),
        },
        "counts": counts,
        "dropped_for_categorical": {
            "note": "kept in the manifests with emo null (attributes usable for "
            "Task 2); the categorical recipe drops them",
            "total": sum(dropped.values()),
            "classes": {c: dropped[c] for c in KNOWN_CLASSES if dropped[c]},
        },
        "skipped": skipped,
        "partitions": partition_info,
        "missing_transcripts": {
            "count": len(no_text),
            "examples": no_text[:_MAX_EXAMPLES],
        },
        "speakers": {
            split: len({e["speaker"] for e in entries.values()} - {None, "Unknown"})
            for split, entries in manifests.items()
        },
        "speakers_shared_with_train": overlap,
    }


def _log_summary(summary, save_folder):
    log_summary(summary["skipped"], SUMMARY_FILE, logger)
    disagree = summary["partitions"]["disagreements"]
    if disagree["count"]:
        logger.warning(
            "Partitions.txt disagrees with Split_Set of the labels file for %d "
            "file(s); the labels file is trusted. E.g.:\n%s",
            disagree["count"],
            "\n".join(f"  - {m}" for m in disagree["examples"][:5]),
        )
    missing = summary["missing_transcripts"]
    if missing["count"]:
        logger.warning(
            '%d labelled file(s) have no transcript (their "text" is null), e.g. %s',
            missing["count"],
            ", ".join(missing["examples"][:5]),
        )
    not_listed = summary["partitions"]["labelled_files_not_listed"]
    if not_listed:
        logger.info(
            "%d labelled file(s) are not listed in Partitions.txt (their split is "
            "their Split_Set)",
            not_listed,
        )
    dropped = summary["dropped_for_categorical"]
    if dropped["total"]:
        logger.info(
            "%d labelled file(s) outside the classes %s (%s) kept with emo null for "
            "the attribute task; dropped for the categorical task",
            dropped["total"],
            " ".join(summary["emotions"]),
            ", ".join(f"{c} {n}" for c, n in dropped["classes"].items()),
        )
    for split, shared in summary["speakers_shared_with_train"].items():
        logger.warning(
            "%d speaker(s) of %s are also in Train (%s): that split is not "
            "speaker-independent",
            len(shared),
            split,
            ", ".join(shared[:10]),
        )
    counts = summary["counts"]
    if "Test3" in counts and counts["Test3"]["total"] != TEST3_FILES:
        logger.info(
            "Test3 has %d file(s); the v1.11 release has %s (a subset or a test "
            "fixture otherwise)",
            counts["Test3"]["total"],
            f"{TEST3_FILES:,}",
        )
    logger.info(
        "%s: wrote %s",
        save_folder,
        ", ".join(f"{split} {info['total']}" for split, info in counts.items()),
    )


def train_waveform_statistics(train, emotions, num_workers=4):
    """Mean and std of all samples of the Train audio, per task.

    The baseline computes them on the training utterances it loads: those
    with one of the 8 classes for Task 1, those with attributes for Task 2
    (O and X rows included), over whole files (before any crop).

    Arguments
    ---------
    train : dict
        The Train manifest (utterance id -> entry).
    emotions : sequence of str
        The classes of Task 1.
    num_workers : int
        Reading threads.

    Returns
    -------
    dict
        ``{"categorical": stats, "attributes": stats}`` (each
        :func:`sser_lobes.dataio.waveform_stats.combine_sums` output, or None when no
        utterance qualifies).
    """
    from sser_lobes.dataio.waveform_stats import waveform_statistics

    attributes = ("arousal", "valence", "dominance")
    groups = {
        "categorical": {e["wav"] for e in train.values() if e["emo"] in emotions},
        "attributes": {
            e["wav"]
            for e in train.values()
            if all(e.get(a) is not None for a in attributes)
        },
    }
    wanted = sorted(set().union(*groups.values()))
    found = waveform_statistics(
        wanted,
        {k: v for k, v in groups.items() if v},
        num_workers=num_workers,
    )
    return {name: found.get(name) for name in groups}


def prepare_msp_podcast(
    data_folder,
    save_folder,
    splits=SPLITS,
    emotions=DEFAULT_EMOTIONS,
    sample_rate=16000,
    min_samples=400,
    num_workers=4,
):
    """Prepare the MSP-Podcast manifests for speech emotion recognition.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The release folder (holding ``Labels/``, ``Audios/``, ``Transcripts/``
        and ``Partitions.txt``), or its parent.
    save_folder : str or os.PathLike
        Where the manifests (``train.json``, ``development.json``,
        ``test1.json``, ``test2.json``, ``test3.json``: those of ``splits``),
        ``prep_summary.json``, ``prepare_options.json`` and, when Train is
        prepared, ``waveform_stats.json`` (:func:`train_waveform_statistics`)
        are written (created if needed).
    splits : sequence of str
        Splits to prepare, among Train, Development, Test1, Test2, Test3
        (case-insensitive).
    emotions : sequence of str
        Class letters whose rows get ``"emo"``; rows of other classes (by
        default O and X) are kept with ``"emo": null`` for the attribute task.
    sample_rate : int
        Required sampling rate of the audio.
    min_samples : int
        Minimum number of samples of a usable file (0: no minimum).
    num_workers : int
        Threads reading the audio headers (0 or 1: no thread). Not an option
        of the output: changing it never triggers a rebuild.

    Returns
    -------
    dict
        Split name (as in :data:`SPLITS`) -> manifest path (string).

    Raises
    ------
    ValueError
        On invalid arguments.
    PreparationError
        On a corpus problem that prevents any preparation (no labels file,
        no ``Audios/`` folder or no wav in it, unreadable labels header, no
        ``Partitions.txt`` while Test3 is requested) or foreign files in
        ``save_folder``. Bad rows and bad audio files are skipped and
        reported instead (see the module docstring).

    Example
    -------
    >>> import tempfile, json, logging
    >>> from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus
    >>> logging.disable(logging.WARNING)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_msp_podcast_corpus(tmp.name, utterances_per_class=2)
    >>> paths = prepare_msp_podcast(root, tmp.name + "/prep")
    >>> sorted(paths)
    ['Development', 'Test1', 'Test2', 'Test3', 'Train']
    >>> train = json.load(open(paths["Train"]))
    >>> sorted({entry["emo"] or "null" for entry in train.values()})  # O, X: null
    ['A', 'C', 'D', 'F', 'H', 'N', 'S', 'U', 'null']
    >>> test3 = json.load(open(paths["Test3"]))
    >>> len(test3), {entry["emo"] for entry in test3.values()}
    (6, {None})
    >>> logging.disable(logging.NOTSET)
    >>> tmp.cleanup()
    """
    options = validate_options(splits, emotions, sample_rate, min_samples, num_workers)
    root = find_msp_root(data_folder)
    labels_path = find_labels_file(root)
    votes_path = root / "Labels" / DETAILED_FILE
    options = {
        "data_folder": os.fspath(root),
        "labels_file": os.fspath(labels_path),
        **options,
        "votes_sha256": file_sha256(votes_path) if votes_path.is_file() else None,
    }
    save_folder = Path(os.path.abspath(os.fspath(save_folder)))
    if save_folder.exists() and not save_folder.is_dir():
        raise PreparationError(f"{save_folder}: save_folder exists and is not a folder")
    paths = {split: save_folder / _manifest_name(split) for split in options["splits"]}
    outputs = [*paths.values(), save_folder / SUMMARY_FILE]
    if "Train" in paths:
        outputs.append(save_folder / WAVEFORM_STATS_FILE)
    result = {split: os.fspath(path) for split, path in paths.items()}

    state = read_state(save_folder, outputs, _WRITER)  # its outputs, below
    if reusable(save_folder, outputs, _WRITER, _FORMAT_VERSION, options, logger):
        return result

    manifests, summary = _collect(root, labels_path, options, num_workers)

    save_folder.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in outputs]
    # Manifests of splits no longer requested were written by us: remove them
    # so that the folder never holds a stale split.
    for name in (state or {}).get("outputs") or []:
        stale = save_folder / name
        if name not in names and name.endswith(".json") and stale.is_file():
            stale.unlink()
    write_state(
        save_folder, _WRITER, _FORMAT_VERSION, options, complete=False, outputs=names
    )
    for split, path in paths.items():
        atomic_write_json(path, manifests[split])
    atomic_write_json(save_folder / SUMMARY_FILE, summary)
    if "Train" in paths:
        stats = train_waveform_statistics(
            manifests["Train"], options["emotions"], num_workers
        )
        atomic_write_json(save_folder / WAVEFORM_STATS_FILE, stats)
    write_state(
        save_folder, _WRITER, _FORMAT_VERSION, options, complete=True, outputs=names
    )
    _log_summary(summary, save_folder)
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
    >>> "Labels: folder not found" in err.getvalue()
    True
    >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        description="Prepare MSP-Podcast v1.11 manifests (train/development/test1/"
        "test2/test3.json) for speech emotion recognition."
    )
    parser.add_argument(
        "--data_folder", required=True, help="the release folder (or its parent)"
    )
    parser.add_argument("--save_folder", required=True, help="output folder")
    parser.add_argument(
        "--splits", nargs="+", default=list(SPLITS), help="splits to prepare"
    )
    parser.add_argument(
        "--emotions",
        nargs="+",
        default=list(DEFAULT_EMOTIONS),
        help="class letters kept for the categorical task (others: emo null)",
    )
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--min_samples", type=int, default=400)
    parser.add_argument(
        "--num_workers", type=int, default=4, help="threads reading audio headers"
    )
    args = parser.parse_args(argv)
    return run_preparation_cli(
        prepare_msp_podcast,
        args.data_folder,
        args.save_folder,
        splits=args.splits,
        emotions=args.emotions,
        sample_rate=args.sample_rate,
        min_samples=args.min_samples,
        num_workers=args.num_workers,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    sys.exit(main())
