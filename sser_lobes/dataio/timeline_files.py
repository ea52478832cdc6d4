"""Emotion timeline files: write and read segments in four text formats.

=============  ==============================================================
format         one line per segment
=============  ==============================================================
``jsonl``      ``{"start", "end", "label", "probabilities", "vad_confidence",
               ["speaker"]}`` (silence too, with ``probabilities: null``)
``csv``        ``start,end,label,vad_confidence,speaker,prob_<class>...``
               after a header line
``rttm``       ``SPEAKER <file> 1 <start> <duration> <speaker|NA> <NA>
               <label> <confidence> <NA>``: speech segments only, the
               emotion in the name field (what diarization scorers read)
``audacity``   ``start<TAB>end<TAB>label``: an Audacity label track
               (File > Import > Labels)
=============  ==============================================================

:func:`read_segments` reads any of them back (by the file's suffix:
``.jsonl``/``.json``, ``.csv``, ``.rttm``, ``.txt``/``.labels``), and
:func:`read_rttm_turns` reads the speaker turns of a diarizer's RTTM file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "Span",
    "format_header",
    "format_segment",
    "read_rttm_turns",
    "read_segments",
    "write_segments",
]

#: Output formats (``--timeline-format``) and their file suffixes.
SUFFIXES = {"jsonl": ".jsonl", "csv": ".csv", "rttm": ".rttm", "audacity": ".txt"}
FORMATS = tuple(SUFFIXES)

_NA = "<NA>"


class Span(NamedTuple):
    """A labelled span read from a file (seconds)."""

    start: float
    end: float
    label: str
    speaker: str | None = None


def format_header(fmt, labels):
    """The header line of a format (CSV), or None.

    Example
    -------
    >>> format_header("csv", ["neu", "ang"])
    'start,end,label,vad_confidence,speaker,prob_neu,prob_ang'
    >>> format_header("jsonl", ["neu"]) is None
    True
    """
    if fmt != "csv":
        return None
    columns = ["start", "end", "label", "vad_confidence", "speaker"]
    return ",".join(columns + [f"prob_{label}" for label in labels])


def format_segment(segment, fmt, labels, file_id="audio"):
    """One line (no newline) for ``segment``, or None if the format leaves
    it out (silence in RTTM).

    Arguments
    ---------
    segment : sser_lobes.dataio.segments.Segment
    fmt : str
        One of :data:`FORMATS`.
    labels : list of str
        The model's classes (CSV columns).
    file_id : str
        The recording's name (RTTM's file field).

    Example
    -------
    >>> from sser_lobes.dataio.segments import Segment
    >>> seg = Segment(1.0, 2.5, "ang", {"neu": 0.2, "ang": 0.8}, 0.97)
    >>> format_segment(seg, "rttm", ["neu", "ang"], "call")
    'SPEAKER call 1 1.000 1.500 <NA> <NA> ang 0.800 <NA>'
    >>> format_segment(seg, "audacity", ["neu", "ang"])
    '1.000000\\t2.500000\\tang'
    >>> format_segment(seg, "csv", ["neu", "ang"])
    '1.000,2.500,ang,0.970,,0.2000,0.8000'
    """
    if fmt == "jsonl":
        return json.dumps(segment.as_dict())
    if fmt == "audacity":
        return f"{segment.start:.6f}\t{segment.end:.6f}\t{segment.label}"
    probabilities = segment.probabilities or {}
    if fmt == "rttm":
        if not segment.is_speech:
            return None
        confidence = probabilities.get(segment.label)
        return " ".join(
            [
                "SPEAKER",
                str(file_id).replace(" ", "_"),
                "1",
                f"{segment.start:.3f}",
                f"{segment.duration:.3f}",
                segment.speaker or _NA,
                _NA,
                segment.label,
                _NA if confidence is None else f"{confidence:.3f}",
                _NA,
            ]
        )
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(
            [
                f"{segment.start:.3f}",
                f"{segment.end:.3f}",
                segment.label,
                f"{segment.vad:.3f}",
                segment.speaker or "",
                *(
                    "" if label not in probabilities else f"{probabilities[label]:.4f}"
                    for label in labels
                ),
            ]
        )
        return out.getvalue()
    raise ValueError(
        f"unknown timeline format {fmt!r}: use one of {', '.join(FORMATS)}"
    )


def write_segments(segments, path, fmt, labels, file_id="audio"):
    """Write segments to ``path`` in ``fmt`` (header included).

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.dataio.segments import Segment
    >>> path = Path(tempfile.mkdtemp()) / "t.csv"
    >>> write_segments([Segment(0.0, 1.0, "neu", {"neu": 1.0})], path, "csv", ["neu"])
    >>> [(s.start, s.end, s.label) for s in read_segments(path)]
    [(0.0, 1.0, 'neu')]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        header = format_header(fmt, labels)
        if header is not None:
            handle.write(header + "\n")
        for segment in segments:
            line = format_segment(segment, fmt, labels, file_id)
            if line is not None:
                handle.write(line + "\n")


def _number(value, path, line, what):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}, line {line}: {what} {value!r} is not a number"
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"{path}, line {line}: {what} {value!r} is not finite")
    return number


def _span(path, line, start, end, label, speaker=None):
    start = _number(start, path, line, "start")
    end = _number(end, path, line, "end")
    if end < start or start < 0:
        raise ValueError(f"{path}, line {line}: the segment {start}-{end} s is invalid")
    label = str(label or "").strip()
    if not label:
        raise ValueError(f"{path}, line {line}: no label")
    return Span(start, end, label, speaker or None)


def _read_jsonl(path, text):
    spans = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}, line {number}: not a JSON object") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        label = row.get("label", row.get("emotion"))
        spans.append(
            _span(
                path,
                number,
                row.get("start"),
                row.get("end"),
                label,
                row.get("speaker"),
            )
        )
    return spans


def _read_csv(path, text):
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or [])
    label_column = "label" if "label" in fields else "emotion"
    missing = {"start", "end", label_column} - fields
    if missing:
        raise ValueError(
            f"{path}: the CSV needs the columns start, end and label (or emotion); "
            f"missing {', '.join(sorted(missing))}"
        )
    return [
        _span(
            path,
            number,
            row["start"],
            row["end"],
            row[label_column],
            row.get("speaker"),
        )
        for number, row in enumerate(reader, 2)
    ]


def _read_rttm(path, text):
    spans = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")) or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"{path}, line {number}: an RTTM line has 10 fields")
        start = _number(fields[3], path, number, "start")
        duration = _number(fields[4], path, number, "duration")
        speaker = None if fields[5] == _NA else fields[5]
        spans.append(_span(path, number, start, start + duration, fields[7], speaker))
    return spans


def _read_audacity(path, text):
    spans = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("\\"):  # "\" lines: frequencies
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(
                f"{path}, line {number}: an Audacity label line is "
                "start<TAB>end<TAB>label"
            )
        spans.append(_span(path, number, fields[0], fields[1], fields[2]))
    return spans


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_jsonl,
    ".csv": _read_csv,
    ".rttm": _read_rttm,
    ".txt": _read_audacity,
    ".labels": _read_audacity,
}


def read_segments(path):
    """Labelled spans of a timeline file, in file order.

    The format is the suffix's: ``.jsonl``/``.json`` (``label`` or
    ``emotion``), ``.csv`` (columns ``start``, ``end``, ``label`` or
    ``emotion``), ``.rttm`` (the name field), ``.txt``/``.labels``
    (Audacity). A problem raises ValueError naming the file and line.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(
            f"{path}: unknown timeline file type {path.suffix!r}: use .jsonl, .csv, "
            ".rttm or .txt (Audacity labels)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the file ({error})") from None
    return reader(path, text)


def read_rttm_turns(path, file_id=None):
    """Speaker turns ``[(start, end, speaker), ...]`` of an RTTM file, sorted
    by start; only the lines of ``file_id`` if the file names several
    recordings.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "turns.rttm"
    >>> _ = path.write_text("SPEAKER call 1 0.5 2.0 <NA> <NA> A <NA> <NA>\\n"
    ...                     "SPEAKER call 1 3.0 1.0 <NA> <NA> B <NA> <NA>\\n")
    >>> read_rttm_turns(path, "call")
    [(0.5, 2.5, 'A'), (3.0, 4.0, 'B')]
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the speaker turns ({error})") from None
    turns, files = [], set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"{path}, line {number}: an RTTM line has 10 fields")
        files.add(fields[1])
        start = _number(fields[3], path, number, "start")
        duration = _number(fields[4], path, number, "duration")
        if duration <= 0:
            continue
        turns.append((fields[1], start, start + duration, fields[7]))
    if file_id is not None and len(files) > 1:
        turns = [turn for turn in turns if turn[0] == file_id]
    if not turns:
        raise ValueError(
            f"{path}: no speaker turns"
            + (f" for {file_id}" if file_id is not None and len(files) > 1 else "")
        )
    return sorted((start, end, speaker) for _, start, end, speaker in turns)
