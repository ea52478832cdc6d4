"""A labelled speech corpus described by one CSV (or JSON lines) file.

The input of the generic recipe (``recipes/Custom``) and of ``sser-predict
--csv``. One row per utterance:

* required columns: ``wav`` (audio path, absolute or relative to the CSV
  file's folder) and ``emotion``; ``speaker`` for speaker-independent splits;
* optional: ``id`` (default: the wav path relative to the CSV folder, without
  extension, plus the segment bounds), ``gender`` (F / M / female / male),
  ``text``, ``split`` (train / valid / test), ``start`` and ``end`` (seconds,
  a segment of a longer recording), ``duration`` (ignored: the header is
  read); the annotators' votes, either one ``votes`` column
  (``"neu:3,ang:1"``) or one ``votes_<class>`` column per class (counts;
  empty is 0), class names before the label map, which merges them as it
  merges the labels; any other column is kept in the manifests.

Votes (:mod:`sser_lobes.dataio.votes`): a row with unreadable votes keeps its
label and gets no votes (``report.notes["bad_votes"]`` lists them, and one
warning says how many); a row with votes and an empty ``emotion`` is kept
with ``emotion`` None (a "no agreement" utterance, which trains on its votes
only with ``--targets=soft --use_no_agreement=W``). Without vote columns the
manifest entries have no ``votes`` field.

Every row is checked; a bad row is skipped and reported with the file and
line (:class:`~sser_lobes.dataio.row_report.RowReport`), the rest is kept. Any
sample rate and channel count is accepted (the recipe converts to 16 kHz
mono as the inference interface does).

The same audio is one utterance. Two rows of the same file and segment
(whatever their ids, and however the path is written: absolute or relative,
``audio//x.wav``, ``..``, a symbolic or hard link, or another file with the
same bytes; :func:`file_identities`, :func:`audio_key`) are one utterance:
the first row is kept, the others are reported as ``duplicate_audio``, so a
file can never be on both sides of a split. Speaker ids are stripped of
surrounding whitespace, and ids that are equal when case-folded (``spk01``,
``SPK01``) are one speaker: they are merged under the first spelling in the
file, with a warning, and the preparation's summary lists the spellings
(``report.notes["merged_speaker_spellings"]``).

Authors
 * sser authors 2026
"""

import csv
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sser_lobes.dataio.audio import audio_info
from sser_lobes.dataio.row_report import RowReport
from sser_lobes.dataio.votes import VOTES_FIELD, clean_votes, parse_votes_text
from sser_lobes.errors import AudioError, CorpusError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("wav", "emotion")
KNOWN_COLUMNS = (
    "id",
    "wav",
    "emotion",
    "speaker",
    "gender",
    "text",
    "split",
    "start",
    "end",
    "duration",
)
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "dev": "valid",
    "val": "valid",
    "test": "test",
    "testing": "test",
    "eval": "test",
}
GENDER_NAMES = {"f": "F", "female": "F", "w": "F", "m": "M", "male": "M"}
#: Prefix of the per-class vote columns (``votes_neu``, ``votes_ang``, ...).
VOTE_COLUMN_PREFIX = "votes_"

#: Reasons a row is skipped, as counted in the preparation summary.
SKIP_REASONS = {
    "malformed_row": "malformed row",
    "missing_value": "required value empty",
    "duplicate_id": "id used twice",
    "duplicate_audio": "the same audio (file and segment) as an earlier row",
    "missing_audio": "audio file missing",
    "bad_audio": "audio file unusable",
    "bad_segment": "segment outside its file",
    "too_short": "audio shorter than the encoder's receptive field",
    "bad_split": "unknown split value",
    "bad_gender": "unknown gender value",
}


@dataclass
class CorpusRow:
    """One kept row of a corpus file.

    Arguments
    ---------
    id : str
        Utterance id (unique in the file).
    wav : str
        Absolute audio path.
    line : int
        Line (CSV) or entry (JSON lines) number in the file, from 1.
    emotion : str or None
        The class after the label map (None when the file has no labels).
    raw_emotion : str or None
        The class as written in the file.
    speaker, gender, text, split : str or None
        As written (gender normalised to F / M, split to train/valid/test).
    start, end : float or None
        Segment bounds in seconds.
    duration : float
        Segment (or file) duration in seconds, from the audio header.
    extra : dict
        The file's other columns.
    """

    id: str
    wav: str
    line: int
    emotion: str = None
    raw_emotion: str = None
    speaker: str = None
    gender: str = None
    text: str = None
    split: str = None
    start: float = None
    end: float = None
    duration: float = None
    extra: dict = field(default_factory=dict)
    votes: dict = None
    has_vote_columns: bool = False

    def manifest_entry(self):
        """The row as a manifest entry (``emo`` is the class after mapping;
        ``votes`` when the file has vote columns)."""
        votes = {VOTES_FIELD: self.votes} if self.has_vote_columns else {}
        return {
            "wav": self.wav,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "emo": self.emotion,
            "emotion_as_written": self.raw_emotion,
            "speaker": self.speaker,
            "gender": self.gender,
            "text": self.text,
            "split": self.split,
            "line": self.line,
            **self.extra,
            **votes,
        }


def parse_label_map(value, option="label_map"):
    """``"exc:hap,calm:neu"`` (or a mapping) -> ``{"exc": "hap", "calm": "neu"}``.

    Example
    -------
    >>> parse_label_map("exc:hap, calm:neu")
    {'exc': 'hap', 'calm': 'neu'}
    >>> parse_label_map(None)
    {}
    >>> parse_label_map("exc=hap")
    Traceback (most recent call last):
    ...
    ValueError: label_map: 'exc=hap' is not source:target (e.g. "exc:hap,calm:neu")
    """
    if value in (None, "", {}):
        return {}
    if isinstance(value, dict):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = []
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            source, sep, target = item.partition(":")
            if not sep or not source.strip() or not target.strip() or ":" in target:
                raise ValueError(
                    f'{option}: {item!r} is not source:target (e.g. "exc:hap,calm:neu")'
                )
            pairs.append((source.strip(), target.strip()))
    mapping = {}
    for source, target in pairs:
        if source in mapping and mapping[source] != target:
            raise ValueError(
                f"{option}: {source!r} is mapped to both {mapping[source]!r} and "
                f"{target!r}"
            )
        mapping[source] = target
    return mapping


def parse_class_list(value, option="emotions"):
    """``"neu,hap"`` / ``["neu", "hap"]`` / None -> a list of classes or None.

    Example
    -------
    >>> parse_class_list("neu, hap,sad")
    ['neu', 'hap', 'sad']
    >>> parse_class_list(None) is None
    True
    >>> parse_class_list(["neu", "neu"])
    Traceback (most recent call last):
    ...
    ValueError: emotions: class 'neu' is listed twice
    """
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    classes = [str(item).strip() for item in items if str(item).strip()]
    seen = set()
    for name in classes:
        if name in seen:
            raise ValueError(f"{option}: class {name!r} is listed twice")
        seen.add(name)
    return classes or None


def read_table(path):
    """Header and rows of a CSV / TSV / JSON-lines file.

    Returns
    -------
    columns : list of str
    rows : list of (int, dict or None, str or None)
        ``(line number, values, problem)``: ``values`` is None and
        ``problem`` says why when a row cannot be parsed.

    Raises
    ------
    CorpusError
        The file is missing, empty, has no header or lacks ``wav`` /
        ``emotion``... (the required columns are checked by the caller).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/c.csv"
    >>> _ = open(path, "w").write("wav,emotion\\na.wav,ang\\nb.wav,neu,extra\\n")
    >>> columns, rows = read_table(path)
    >>> columns, rows[0]
    (['wav', 'emotion'], (2, {'wav': 'a.wav', 'emotion': 'ang'}, None))
    >>> rows[1][2]
    '3 values for 2 columns'
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path)
    delimiter = "\t" if suffix == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise CorpusError(f"{path}: empty file, expected a header line")
        columns = [cell.strip() for cell in header]
        _check_columns(path, columns)
        rows = []
        for values in reader:
            line = reader.line_num
            if not any(value.strip() for value in values):
                continue  # blank line
            if len(values) != len(columns):
                rows.append(
                    (line, None, f"{len(values)} values for {len(columns)} columns")
                )
                continue
            rows.append((line, {c: v.strip() for c, v in zip(columns, values)}, None))
    return columns, rows


def _read_jsonl(path):
    columns = []
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as exc:
                rows.append((line, None, f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(entry, dict):
                rows.append((line, None, "not a JSON object"))
                continue
            values = {
                str(k): "" if v is None else str(v).strip() for k, v in entry.items()
            }
            for name in values:
                if name not in columns:
                    columns.append(name)
            rows.append((line, values, None))
    if not rows:
        raise CorpusError(f"{path}: empty file, expected one JSON object per line")
    return columns, rows


def _check_columns(path, columns):
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise CorpusError(f"{path}: column(s) {', '.join(duplicated)} appear twice")


def require_columns(path, columns, required):
    """A :class:`CorpusError` naming the missing columns and the found ones."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise CorpusError(
            f"{path}: missing column(s) {', '.join(missing)} (found: "
            f"{', '.join(columns) or 'none'}); required: {', '.join(required)}"
        )


def _float_or_none(value, name):
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number of seconds") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} {value!r} is not a number of seconds")
    return number


def _default_id(wav_value, start, end):
    stem = os.path.splitext(wav_value.replace("\\", "/"))[0].lstrip("./")
    if start is None and end is None:
        return stem
    return f"{stem}_{start or 0:.3f}-{'end' if end is None else f'{end:.3f}'}"


def file_identities(paths, workers=4):
    """``{path: identity}``, equal for paths that hold the same audio file.

    The identity is the file itself (device and inode, so that symbolic and
    hard links and any spelling of the path agree), or, for files whose size
    another file shares, the SHA-1 of the content: a copy of a file is the
    same audio. Only files with a common size are read.

    Arguments
    ---------
    paths : iterable of str
        Existing audio files.
    workers : int
        Threads that hash the candidates.

    Example
    -------
    >>> import tempfile, os, shutil
    >>> folder = tempfile.mkdtemp()
    >>> for name, data in (("a.wav", b"RIFFa"), ("b.wav", b"RIFFb")):
    ...     _ = open(os.path.join(folder, name), "wb").write(data)
    >>> _ = shutil.copy(os.path.join(folder, "a.wav"), os.path.join(folder, "c.wav"))
    >>> ids = file_identities([os.path.join(folder, n) for n in ("a.wav", "b.wav",
    ...     "c.wav")] + [folder + "//a.wav"])
    >>> len(set(ids.values()))  # a, b; c is a copy of a; //a.wav is a
    2
    """
    import hashlib

    paths = sorted(set(map(os.fspath, paths)))
    stats = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        stats[path] = (info.st_dev, info.st_ino, info.st_size)
    by_size = {}
    for path, (dev, ino, size) in stats.items():
        by_size.setdefault(size, {}).setdefault((dev, ino), path)
    to_hash = [
        path for files in by_size.values() if len(files) > 1 for path in files.values()
    ]

    def sha1(path):
        digest = hashlib.sha1()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return path, digest.hexdigest()

    with ThreadPoolExecutor(max(1, workers)) as pool:
        hashes = dict(pool.map(sha1, to_hash))
    by_inode = {stats[path][:2]: hashes[path] for path in hashes}
    return {
        path: ("sha1", by_inode[(dev, ino)])
        if (dev, ino) in by_inode
        else ("file", dev, ino)
        for path, (dev, ino, _) in stats.items()
    }


def audio_key(row, identities):
    """The audio a kept row stands for: its file's identity and segment.

    ``(identity, start, end)`` with the bounds in seconds rounded to 0.1 ms
    (``start`` 0 and ``end`` the file's end when the row gives none), so that
    a segment written ``0``-``3.5`` and the whole 3.5 s file agree.
    """
    start = row.start or 0.0
    return (identities[row.wav], round(start, 4), round(start + row.duration, 4))


def merge_speaker_spellings(rows):
    """Give the rows whose speaker ids are equal case-folded one spelling.

    The first spelling in the file is kept. Returns ``{kept: [other
    spellings]}`` for the ids that were merged.

    Example
    -------
    >>> rows = [CorpusRow("a", "a.wav", 2, speaker="spk01"),
    ...         CorpusRow("b", "b.wav", 3, speaker="SPK01")]
    >>> merge_speaker_spellings(rows), [r.speaker for r in rows]
    ({'spk01': ['SPK01']}, ['spk01', 'spk01'])
    """
    first = {}
    merged = {}
    for row in rows:
        if row.speaker is None:
            continue
        kept = first.setdefault(row.speaker.casefold(), row.speaker)
        if row.speaker != kept:
            others = merged.setdefault(kept, [])
            if row.speaker not in others:
                others.append(row.speaker)
            row.speaker = kept
    return merged


class _Row(Exception):
    def __init__(self, reason, problem):
        super().__init__(problem)
        self.reason = reason


def has_vote_columns(columns):
    """Whether a corpus file's columns carry annotator votes.

    Example
    -------
    >>> has_vote_columns(["wav", "emotion", "votes_neu"]), has_vote_columns(["wav"])
    (True, False)
    """
    return VOTES_FIELD in columns or any(
        c.startswith(VOTE_COLUMN_PREFIX) for c in columns
    )


def row_votes(values, label_map=None):
    """The votes of a row's ``votes`` or ``votes_<class>`` columns (None
    without any); a ``ValueError`` names the problem.

    Example
    -------
    >>> row_votes({"votes_neu": "3", "votes_exc": "1", "votes_ang": ""},
    ...           {"exc": "hap"})
    {'hap': 1.0, 'neu': 3.0}
    >>> row_votes({"votes": "neu:2,ang:x"})
    Traceback (most recent call last):
    ...
    ValueError: votes item 'ang:x': 'x' is not a number
    """
    if values.get(VOTES_FIELD):
        return parse_votes_text(values[VOTES_FIELD], label_map)
    counts = {}
    for column, value in values.items():
        if column.startswith(VOTE_COLUMN_PREFIX) and value.strip():
            try:
                counts[column[len(VOTE_COLUMN_PREFIX) :]] = float(value)
            except ValueError:
                raise ValueError(f"{column} {value!r} is not a number") from None
    return clean_votes(counts, label_map)


def _parse_row(path, line, values, label_map, require, vote_problems):
    """A :class:`CorpusRow` (duration not yet known) or a ``_Row`` problem."""
    votes = None
    try:
        votes = row_votes(values, label_map)
    except ValueError as exc:
        vote_problems.append(f"{path}, line {line}: {exc}; the row keeps its label")
    for column in require:
        if column == "emotion" and votes:
            continue  # a row without a majority label, kept for its votes
        if not values.get(column, ""):
            raise _Row("missing_value", f"empty {column!r}")
    wav_value = values["wav"]
    wav = Path(wav_value).expanduser()
    if not wav.is_absolute():
        wav = path.parent / wav
    try:
        start = _float_or_none(values.get("start"), "start")
        end = _float_or_none(values.get("end"), "end")
    except ValueError as exc:
        raise _Row("bad_segment", str(exc)) from None
    if (start is not None and start < 0) or (end is not None and end <= (start or 0.0)):
        raise _Row(
            "bad_segment", f"segment start {start} end {end}: 0 <= start < end needed"
        )
    split = values.get("split") or None
    if split is not None:
        if split.lower() not in SPLIT_NAMES:
            raise _Row(
                "bad_split",
                f"split {split!r} is not one of {', '.join(SPLIT_NAMES)}",
            )
        split = SPLIT_NAMES[split.lower()]
    gender = values.get("gender") or None
    if gender is not None:
        if gender.lower() not in GENDER_NAMES:
            raise _Row(
                "bad_gender",
                f"gender {gender!r} is not F, M, female or male (leave it empty "
                "when unknown)",
            )
        gender = GENDER_NAMES[gender.lower()]
    raw = values.get("emotion") or None
    emotion = label_map.get(raw, raw) if raw is not None else None
    return CorpusRow(
        id=values.get("id") or _default_id(wav_value, start, end),
        wav=os.path.abspath(wav),
        line=line,
        emotion=emotion,
        raw_emotion=raw,
        speaker=values.get("speaker") or None,
        gender=gender,
        text=values.get("text") or None,
        split=split,
        start=start,
        end=end,
        extra={
            k: v
            for k, v in values.items()
            if k not in KNOWN_COLUMNS
            and k != VOTES_FIELD
            and not k.startswith(VOTE_COLUMN_PREFIX)
        },
        votes=votes,
        has_vote_columns=has_vote_columns(values),
    )


def _header_of(wav):
    try:
        return audio_info(wav)
    except AudioError as exc:
        return exc


def read_corpus(
    path,
    label_map=None,
    require=("wav", "emotion"),
    min_seconds=0.025,
    num_workers=4,
    progressbar=False,
    duplicates="skip",
):
    """Read and check a corpus file: its rows, their audio headers and segments.

    Arguments
    ---------
    path : str or os.PathLike
        CSV (``.csv``; ``.tsv`` tab-separated) or JSON lines (``.jsonl``).
    label_map : dict, optional
        Class as written -> class used (merges and renames).
    require : sequence of str
        Columns that must exist and be non-empty in every row (``wav`` always;
        ``emotion`` for training; ``speaker`` for speaker-independent splits).
    min_seconds : float
        Shortest usable segment (default 25 ms: one frame of the SSL encoder's
        feature extractor).
    num_workers : int
        Threads reading the audio headers.
    progressbar : bool
        Show a tqdm bar while reading the headers.
    duplicates : str
        ``"skip"``: a row of the same audio (file and segment) as an earlier
        row is skipped and reported (``duplicate_audio``), as a preparation
        needs; ``"keep"``: every row is kept (``sser-predict --csv`` predicts
        the rows as listed).

    Returns
    -------
    rows : list of CorpusRow
        Kept rows, in file order.
    report : RowReport
        Skipped rows by reason, each message ``<file>, line <n>: <problem>``;
        ``report.notes["merged_speaker_spellings"]`` lists the speaker ids
        merged by case (see the module docstring).

    Raises
    ------
    CorpusError
        The file cannot be used at all, or no row is left.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> folder = tempfile.mkdtemp()
    >>> soundfile.write(folder + "/a.wav", np.zeros((44100, 2)), 44100)
    >>> _ = open(folder + "/c.csv", "w").write(
    ...     "wav,emotion,speaker,start,end\\n"
    ...     "a.wav,exc,s1,,\\n"
    ...     "a.wav,neu,s1,0.5,0.9\\n"
    ...     "b.wav,neu,s2,,\\n"
    ...     "a.wav,ang,s1,0.5,3\\n")
    >>> rows, report = read_corpus(folder + "/c.csv", label_map={"exc": "hap"})
    >>> [(r.id, r.emotion, round(r.duration, 2)) for r in rows]
    [('a', 'hap', 1.0), ('a_0.500-0.900', 'neu', 0.4)]
    >>> sorted(report.counts.items())
    [('bad_segment', 1), ('missing_audio', 1)]
    """
    if duplicates not in ("skip", "keep"):
        raise ValueError(f"duplicates must be 'skip' or 'keep', got {duplicates!r}")
    path = Path(os.path.abspath(os.fspath(path)))
    label_map = dict(label_map or {})
    require = tuple(dict.fromkeys(("wav", *require)))
    columns, table = read_table(path)
    require_columns(path, columns, require)
    report = RowReport(SKIP_REASONS)
    parsed = []
    first_line = {}
    vote_problems = []
    for line, values, problem in table:
        where = f"{path}, line {line}"
        if values is None:
            report.skip("malformed_row", f"{where}: {problem}")
            continue
        try:
            row = _parse_row(path, line, values, label_map, require, vote_problems)
        except _Row as problem:
            report.skip(problem.reason, f"{where}: {problem}")
            continue
        if row.id in first_line:
            report.skip(
                "duplicate_id",
                f"{where}: id {row.id!r} already used at line {first_line[row.id]}",
            )
            continue
        first_line[row.id] = line
        parsed.append(row)

    headers = _read_headers(
        sorted({row.wav for row in parsed}), num_workers, progressbar
    )
    rows = []
    for row in parsed:
        where = f"{path}, line {row.line}"
        header = headers[row.wav]
        if isinstance(header, AudioError):
            reason = "missing_audio" if "not found" in str(header) else "bad_audio"
            report.skip(reason, f"{where}: {header}")
            continue
        if header.num_frames == 0:
            report.skip("bad_audio", f"{where}: {row.wav}: empty audio (0 samples)")
            continue
        start = row.start or 0.0
        end = header.duration if row.end is None else row.end
        if end > header.duration + 1.0 / header.sample_rate:
            report.skip(
                "bad_segment",
                f"{where}: {row.wav}: segment {start:.3f}-{end:.3f} s ends after "
                f"the end of the file ({header.duration:.3f} s)",
            )
            continue
        if end - start < min_seconds:
            report.skip(
                "too_short",
                f"{where}: {row.wav}: {1000 * (end - start):.1f} ms of audio, the "
                f"minimum is {1000 * min_seconds:.1f} ms",
            )
            continue
        row.duration = round(end - start, 6)
        rows.append(row)
    if duplicates == "skip":
        rows = _skip_duplicate_audio(path, rows, report, num_workers)
    report.notes = {
        "merged_speaker_spellings": merge_speaker_spellings(rows),
        "bad_votes": vote_problems,
    }
    if vote_problems:
        logger.warning(
            "%s: %d row(s) have unreadable votes and train on their label only, "
            "e.g. %s",
            path,
            len(vote_problems),
            vote_problems[0],
        )
    if report.notes["merged_speaker_spellings"]:
        logger.warning(
            "%s: speaker ids that differ only by case are one speaker: %s",
            path,
            "; ".join(
                f"{kept} (also written {', '.join(others)})"
                for kept, others in report.notes["merged_speaker_spellings"].items()
            ),
        )
    if not rows:
        counts = ", ".join(f"{n} {r}" for r, n in report.counts.items())
        raise CorpusError(
            f"{path}: no usable row ({len(table)} read; skipped: {counts or 'none'})"
        )
    return rows, report


def _skip_duplicate_audio(path, rows, report, num_workers):
    """The rows whose audio no earlier row has; the others reported."""
    identities = file_identities({row.wav for row in rows}, num_workers)
    first = {}
    kept = []
    for row in rows:
        key = audio_key(row, identities)
        if key in first:
            other = first[key]
            labels = (
                f" (labelled {row.raw_emotion!r} there {other.raw_emotion!r})"
                if row.raw_emotion != other.raw_emotion
                else ""
            )
            report.skip(
                "duplicate_audio",
                f"{path}, line {row.line}: {row.wav} "
                f"{key[1]:.3f}-{key[2]:.3f} s is the audio of line {other.line} "
                f"(id {other.id!r}){labels}; kept once",
            )
            continue
        first[key] = row
        kept.append(row)
    return kept


def _read_headers(paths, num_workers, progressbar):
    from tqdm import tqdm

    progress = {
        "total": len(paths),
        "desc": "Checking audio headers",
        "unit": "file",
        "disable": not progressbar,
        "mininterval": 1.0,
    }
    if num_workers <= 1 or len(paths) < 2:
        return dict(zip(paths, list(tqdm(map(_header_of, paths), **progress))))
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        headers = list(tqdm(pool.map(_header_of, paths), **progress))
    return dict(zip(paths, headers))
