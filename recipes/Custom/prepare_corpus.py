"""One-command preparation of public emotional speech corpora for the Custom recipe.

Reads a corpus in its official distribution layout and writes the generic CSV
of ``recipes/Custom/`` (UTF-8, header row, one row per utterance, sorted by
``id``)::

    id,wav,emotion,speaker,gender,text,duration,<corpus columns>
    03a01Fa,/data/emodb/wav/03a01Fa.wav,happiness,03,M,Der Lappen ...,1.8980,a01,a

``wav`` is the absolute path of the audio file (any sampling rate and number
of channels: the recipe converts to 16 kHz mono), ``id`` its file name
without extension, ``emotion`` the lower-case word the corpus documents,
``speaker`` the corpus' speaker id as written in the file names, ``gender``
``F`` or ``M``, ``text`` the spoken sentence and ``duration`` the length in
seconds read from the audio header (so the recipe can batch by length without
opening the files).

Corpora
-------
``emodb``   Berlin EmoDB (``download.zip`` of emodb.bilderbar.info): only
            ``wav/03a01Fa.wav`` is read (speaker 03, text a01, emotion letter,
            version letter); 535 utterances of 10 speakers, 7 emotions, 10
            German sentences. Extra columns ``text_id``, ``version``.
``ravdess`` RAVDESS speech, audio-only (``Audio_Speech_Actors_01-24.zip``):
            ``Actor_12/03-01-06-01-02-01-12.wav``; 1,440 utterances of 24
            actors (odd male, even female), 8 emotions, 2 statements. Extra
            columns ``intensity`` (normal/strong), ``statement``,
            ``repetition``. Song (vocal channel 02) and video-modality files
            in the same tree are skipped and counted; so is the second copy
            of every file of the Kaggle upload (``audio_speech_actors_01-24/``).
``cremad``  CREMA-D (git-lfs clone of CheyneyComputerScience/CREMA-D):
            ``AudioWAV/1001_DFA_ANG_XX.wav`` with the gender of each actor from
            ``VideoDemographics.csv``; 7,442 clips of 91 actors (48 male, 43
            female), 6 emotions, 12 sentences. Extra columns ``sentence``
            (code) and ``level`` (LO, MD, HI, XX, or X as in the pre-2022
            name ``1040_ITH_SAD_X.wav``). ``1076_MTI_SAD_XX.wav`` has no audio
            (README) and is skipped as silent; git-lfs pointer files (a clone
            or zip download without git-lfs) are skipped and named. Column
            ``votes``: the crowd's votes on the audio alone, from
            ``processedResults/tabulatedVotes.csv`` (its voice-only rows,
            numbered 1xxxxx; columns A D F H N S by name), e.g.
            ``anger:1,neutral:10``; empty for a clip without a row. A missing
            or unreadable votes file is one warning and the column is empty
            (the Custom recipe then trains on the labels).

Nothing in a corpus is fatal but a missing folder or metadata file: every file
that is not a usable utterance (readmes, macOS ``._*`` files, other formats,
names outside the naming scheme, unknown codes, unreadable, empty, too short
or silent audio, duplicates) is skipped and counted with its path and reason
(:class:`sser_lobes.dataio.row_report.RowReport`).

Next to the CSV, ``<output stem>_summary.json`` records the corpus, the data
folder, the counts per emotion, speaker and gender, the skipped files and
whether the clips found match the full release (``full_release``; another
count, e.g. a subset, only gives a warning). A re-run with the same inputs
writes the same bytes. An existing ``--output`` is replaced only if this
script wrote it (its summary holds the CSV's SHA-256) or ``--overwrite`` is
given; a summary file this script did not write is never replaced. Both
files are written atomically.

Command line::

    python recipes/Custom/prepare_corpus.py {emodb,ravdess,cremad} \\
        --data_folder /data/emodb --output emodb.csv [--overwrite]

Authors: the sser contributors.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from sser_lobes.dataio.audio import audio_info
from sser_lobes.dataio.corpus_facts import (
    CREMAD_EMOTIONS,
    CREMAD_LEVELS,
    CREMAD_SENTENCES,
    CREMAD_VOICE_BLOCK,
    CREMAD_VOTE_COLUMNS,
    EMODB_EMOTIONS,
    EMODB_SPEAKERS,
    EMODB_TEXTS,
    FULL_RELEASE,
    RAVDESS_EMOTIONS,
    RAVDESS_INTENSITIES,
    RAVDESS_STATEMENTS,
)
from sser_lobes.dataio.files import atomic_write, file_sha256
from sser_lobes.dataio.row_report import RowReport
from sser_lobes.dataio.votes import clean_votes
from sser_lobes.errors import AudioError, PreparationError

logger = logging.getLogger(__name__)

CORPORA = ("emodb", "ravdess", "cremad")
CORPUS_NAMES = {
    "emodb": "Berlin EmoDB",
    "ravdess": "RAVDESS (speech, audio-only)",
    "cremad": "CREMA-D",
}

#: Columns every output starts with, then ``duration`` and the corpus' own.
BASE_COLUMNS = ("id", "wav", "emotion", "speaker", "gender", "text", "duration")
EXTRA_COLUMNS = {
    "emodb": ("text_id", "version"),
    "ravdess": ("intensity", "statement", "repetition"),
    "cremad": ("sentence", "level", "votes"),
}

#: Shortest usable audio: 400 samples at 16 kHz, the receptive field of the
#: wav2vec 2.0 / HuBERT / WavLM feature encoder.
MIN_DURATION = 400 / 16000
#: Audio whose peak amplitude is below this (about -80 dBFS) is silent.
SILENCE_PEAK = 1e-4

SKIP_REASONS = {
    "macos_metadata": "macOS metadata file (._* AppleDouble or .DS_Store), not audio",
    "not_audio": "not a .wav file of the corpus (readme, metadata, other format, "
    "folder)",
    "bad_name": "file name outside the corpus naming scheme",
    "unknown_code": "file name holds a code the corpus does not define",
    "unknown_speaker": "speaker without a gender in the corpus documentation",
    "song": "RAVDESS song file (vocal channel 02), not speech",
    "video": "RAVDESS audio-video (01) or video-only (02) modality file",
    "misplaced": "file in the folder of another actor",
    "duplicate": "same recording already found (same name elsewhere in the tree, "
    "or an old and a new name of one clip)",
    "lfs_pointer": "git-lfs pointer text instead of audio (run `git lfs pull`)",
    "unreadable": "audio cannot be read (corrupt, truncated or not audio)",
    "empty": f"audio empty or shorter than {MIN_DURATION:g} s",
    "silent": f"silent audio (peak below {SILENCE_PEAK:g})",
}

_WRITER = "prepare_corpus"
_FORMAT_VERSION = 2  # 2: CREMA-D votes
_MACOS_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")

_EMODB_RE = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])\.wav$")
_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(\w+)$")
_ACTOR_DIR_RE = re.compile(r"^Actor_(\d\d)$")
_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})\.wav$")


@dataclass
class Clip:
    """One utterance found in a corpus (before its audio is checked).

    Arguments
    ---------
    id : str
        File name without extension.
    path : pathlib.Path
        Absolute path of the audio file.
    emotion, speaker, gender, text : str
        The CSV values.
    extra : dict
        The corpus' own columns.
    key : str, optional
        Identity of the recording for duplicate detection (default ``id``);
        CREMA-D's ``1040_ITH_SAD_X`` has the key ``1040_ITH_SAD_XX``.

    Example
    -------
    >>> clip = Clip("03a01Fa", Path("/x/03a01Fa.wav"), "happiness", "03", "M", "...")
    >>> clip.id, clip.extra
    ('03a01Fa', {})
    """

    id: str
    path: Path
    emotion: str
    speaker: str
    gender: str
    text: str
    extra: dict = field(default_factory=dict)
    key: str = ""

    def __post_init__(self):
        self.key = self.key or self.id


# --------------------------------------------------------------------------
# Shared steps
# --------------------------------------------------------------------------


def _data_folder(data_folder, layout):
    folder = Path(os.path.abspath(os.fspath(data_folder)))
    if not folder.is_dir():
        raise PreparationError(
            f"{folder}: data_folder does not exist or is not a folder; expected "
            f"{layout}"
        )
    return folder


def _is_macos_metadata(name):
    return name.startswith("._") or name in _MACOS_NAMES


def _is_lfs_pointer(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(40).startswith(b"version https://git-lfs")
    except OSError:
        return False


def check_audio(path):
    """Check that an audio file holds usable audio; return its duration.

    The header gives the duration; the samples are then read once to reject
    silence (CREMA-D's ``1076_MTI_SAD_XX.wav`` has no audio).

    Arguments
    ---------
    path : str or os.PathLike
        The audio file.

    Returns
    -------
    tuple
        ``(duration in seconds, None)`` if usable, else ``(None, (reason,
        message))`` with a reason of :data:`SKIP_REASONS` and a message naming
        the file and the problem.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> soundfile.write(tmp.name + "/quiet.wav", np.zeros(8000), 16000)
    >>> check_audio(tmp.name + "/quiet.wav")[1][0]
    'silent'
    >>> soundfile.write(tmp.name + "/ok.wav", np.full(8000, 0.1), 16000)
    >>> check_audio(tmp.name + "/ok.wav")
    (0.5, None)
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        return None, ("empty", f"{path}: empty file (0 bytes)")
    try:
        info = audio_info(path)
    except AudioError as exc:
        if _is_lfs_pointer(path):
            return None, (
                "lfs_pointer",
                f"{path}: git-lfs pointer ({size} bytes of text), not audio; the "
                f"corpus was cloned or downloaded without git-lfs: run `git lfs "
                f"pull` in its repository",
            )
        return None, ("unreadable", str(exc))
    if info.num_frames == 0:
        return None, ("empty", f"{path}: no audio samples (header only)")
    if info.duration < MIN_DURATION:
        return None, (
            "empty",
            f"{path}: too short, {info.duration:.4f} s ({info.num_frames} samples "
            f"at {info.sample_rate} Hz); the minimum is {MIN_DURATION:g} s",
        )
    try:
        samples, _ = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError) as exc:
        return None, ("unreadable", f"{path}: cannot read the samples ({exc})")
    finite = np.isfinite(samples)
    if not finite.all():
        return None, ("unreadable", f"{path}: non-finite samples (NaN or inf)")
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        return None, (
            "silent",
            f"{path}: silent, peak amplitude {peak:.3g} over {info.duration:.2f} s",
        )
    return info.duration, None


def _counts(clips, corpus):
    """Counts per emotion (documented order), speaker and gender."""
    order = {
        "emodb": list(EMODB_EMOTIONS.values()),
        "ravdess": list(RAVDESS_EMOTIONS.values()),
        "cremad": list(CREMAD_EMOTIONS.values()),
    }[corpus]
    emotions = Counter(c.emotion for c in clips)
    speakers = Counter(c.speaker for c in clips)
    genders = Counter(c.gender for c in clips)
    return {
        "total": len(clips),
        "emotion": {e: emotions[e] for e in order if emotions[e]},
        "speaker": {s: speakers[s] for s in sorted(speakers)},
        "gender": {g: genders[g] for g in ("F", "M") if genders[g]},
    }


def _release_differences(found, release):
    """Human-readable differences between found and documented counts."""
    diffs = []
    if found["total"] != release["total"]:
        diffs.append(f"total {found['total']} (release {release['total']})")
    for key in ("emotion", "speaker", "gender"):
        for name in sorted(set(found[key]) | set(release[key])):
            have, want = found[key].get(name, 0), release[key].get(name, 0)
            if have != want:
                diffs.append(f"{key} {name}: {have} (release {want})")
    return diffs


def summary_path(output):
    """The summary file written next to ``output``: ``<stem>_summary.json``.

    Example
    -------
    >>> summary_path("/data/emodb.csv").name
    'emodb_summary.json'
    """
    output = Path(output)
    return output.with_name(f"{output.stem}_summary.json")


def _read_own_summary(path):
    """The summary at ``path`` if this script wrote it, else None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("writer") != _WRITER:
        return None
    return data


def _check_output(output, summary, overwrite):
    """Refuse to replace files this script did not write.

    ``overwrite`` allows replacing ``output`` only: a summary file next to it
    that this script did not write is never replaced.
    """
    for path in (output, summary):
        if path.is_dir():
            raise PreparationError(f"{path}: is a folder; expected a file path")
    own = _read_own_summary(summary) if summary.exists() else None
    if summary.exists() and own is None:
        raise PreparationError(
            f"{summary}: exists and was not written by prepare_corpus.py; refusing "
            f"to overwrite it (--overwrite only replaces --output). Move it away or "
            f"choose another --output"
        )
    if overwrite:
        return
    if output.exists():
        if own is None:
            raise PreparationError(
                f"{output}: exists and was not written by prepare_corpus.py (no "
                f"summary {summary.name} of it next to it); refusing to overwrite "
                f"it. Choose another --output or pass --overwrite"
            )
        if own.get("csv_sha256") != file_sha256(output):
            raise PreparationError(
                f"{output}: was changed since prepare_corpus.py wrote it (its "
                f"SHA-256 differs from the one in {summary.name}); refusing to "
                f"overwrite it. Choose another --output or pass --overwrite"
            )


def _csv_bytes(rows, columns):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _outputs(output, overwrite):
    """The absolute output and summary paths, checked by :func:`_check_output`."""
    output = Path(os.path.abspath(os.fspath(output)))
    summary_file = summary_path(output)
    _check_output(output, summary_file, overwrite)
    return output, summary_file


def _finish(corpus, folder, audio_folder, clips, report, outputs, notes=None):
    """Check the audio, then write the CSV and its summary (with ``notes``);
    return the summary."""
    output, summary_file = outputs

    # Duplicates (the second copy of the Kaggle RAVDESS upload; a CREMA-D
    # clip under both its old and new name): the file named as the key, then
    # the first path in sorted order, is kept.
    unique = {}
    for clip in sorted(clips, key=lambda c: (c.key, c.id != c.key, str(c.path))):
        first = unique.get(clip.key)
        if first is not None:
            report.skip(
                "duplicate",
                f"{clip.path}: same recording as {first.path} (kept); skipped",
            )
            continue
        unique[clip.key] = clip
    unique = {clip.id: clip for clip in unique.values()}
    found_clips = [unique[k] for k in sorted(unique)]
    found = _counts(found_clips, corpus)
    release = FULL_RELEASE[corpus]
    differences = _release_differences(found, release)

    columns = BASE_COLUMNS + EXTRA_COLUMNS[corpus]
    rows, kept = [], []
    for clip in found_clips:
        duration, problem = check_audio(clip.path)
        if problem is not None:
            report.skip(*problem)
            continue
        kept.append(clip)
        extras = [clip.extra[c] for c in EXTRA_COLUMNS[corpus]]
        rows.append(
            [
                clip.id,
                os.fspath(clip.path),
                clip.emotion,
                clip.speaker,
                clip.gender,
                clip.text,
                f"{duration:.4f}",
                *extras,
            ]
        )
    skipped = report.summary()
    if not rows:
        reasons = ", ".join(f"{k} {v['count']}" for k, v in skipped.items())
        raise PreparationError(
            f"{audio_folder}: no usable utterance found ({found['total']} files "
            f"named as {CORPUS_NAMES[corpus]} clips"
            + (f"; skipped: {reasons}" if reasons else "")
            + ")"
        )
    counts = _counts(kept, corpus)
    data = _csv_bytes(rows, columns)
    summary = {
        "writer": _WRITER,
        "format_version": _FORMAT_VERSION,
        "corpus": corpus,
        "corpus_name": CORPUS_NAMES[corpus],
        "data_folder": os.fspath(folder),
        "audio_folder": os.fspath(audio_folder),
        "output": os.fspath(output),
        "csv_sha256": hashlib.sha256(data).hexdigest(),
        "columns": list(columns),
        "total": counts["total"],
        "counts": {k: counts[k] for k in ("emotion", "speaker", "gender")},
        "total_duration_s": round(sum(float(r[6]) for r in rows), 4),
        "found": found,
        "release": release,
        "full_release": not differences,
        "release_differences": differences,
        "skipped_total": report.total,
        "skipped": skipped,
        **(notes or {}),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda handle: handle.write(data))
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    atomic_write(summary_file, lambda handle: handle.write(text.encode("utf-8")))

    report.log(os.fspath(summary_file), logger)
    if differences:
        logger.warning(
            "%s: the clips found differ from the full %s release (%s%s). "
            "Continuing: a subset is fine, but results are not comparable to "
            "published full-corpus numbers.",
            audio_folder,
            CORPUS_NAMES[corpus],
            "; ".join(differences[:8]),
            f"; ... {len(differences) - 8} more" if len(differences) > 8 else "",
        )
    logger.info(
        "%s: wrote %d utterances (%d skipped) to %s",
        CORPUS_NAMES[corpus],
        len(rows),
        report.total,
        output,
    )
    return summary


# --------------------------------------------------------------------------
# The corpora
# --------------------------------------------------------------------------

_EMODB_LAYOUT = (
    "the Berlin EmoDB folder (the extracted download.zip) holding "
    "wav/03a01Fa.wav ... (next to erkennung.txt, lablaut/, silb/, ...)"
)


def prepare_emodb(data_folder, output, overwrite=False):
    """Prepare Berlin EmoDB: read ``wav/`` and write the CSV and its summary.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The folder holding ``wav/`` (the extracted ``download.zip``).
    output : str or os.PathLike
        The CSV to write (``<stem>_summary.json`` is written next to it).
    overwrite : bool
        Replace ``output`` even if this script did not write it.

    Returns
    -------
    dict
        The summary (also written as JSON).

    Raises
    ------
    PreparationError
        If the folder or ``wav/`` is missing, no usable utterance is found, or
        ``output`` is a file this script did not write.

    Example
    -------
    >>> import tempfile, logging
    >>> from sser_lobes.synthetic.public_corpora import make_emodb
    >>> logging.disable(logging.WARNING)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_emodb(tmp.name, speakers=["03"], per_class=1)
    >>> summary = prepare_emodb(root, tmp.name + "/emodb.csv")
    >>> summary["total"], summary["counts"]["gender"], summary["full_release"]
    (7, {'M': 7}, False)
    >>> sorted(summary["skipped"])
    ['macos_metadata']
    >>> print(open(tmp.name + "/emodb.csv").readline().strip())
    id,wav,emotion,speaker,gender,text,duration,text_id,version
    >>> logging.disable(logging.NOTSET)
    >>> tmp.cleanup()
    """
    folder = _data_folder(data_folder, _EMODB_LAYOUT)
    wav_dir = folder / "wav"
    if not wav_dir.is_dir():
        raise PreparationError(
            f"{wav_dir}: folder not found; expected {_EMODB_LAYOUT}. Only wav/ is read"
        )
    outputs = _outputs(output, overwrite)
    report = RowReport(SKIP_REASONS)
    clips = []
    for entry in sorted(os.scandir(wav_dir), key=lambda e: e.name):
        path = Path(entry.path)
        name = entry.name
        if path in outputs:
            continue
        if _is_macos_metadata(name):
            report.skip("macos_metadata", f"{path}: macOS metadata file; skipped")
        elif entry.is_dir():
            report.skip("not_audio", f"{path}: a folder inside wav/; skipped")
        elif not name.endswith(".wav"):
            report.skip("not_audio", f"{path}: not a .wav file; skipped")
        elif (match := _EMODB_RE.match(name)) is None:
            report.skip(
                "bad_name",
                f"{path}: name not of the form <speaker 2 digits><text a01-b10>"
                f"<emotion letter><version letter>.wav (e.g. 03a01Fa.wav); skipped",
            )
        else:
            speaker, text_id, letter, version = match.groups()
            if speaker not in EMODB_SPEAKERS:
                report.skip(
                    "unknown_speaker",
                    f"{path}: speaker {speaker} is not one of the ten EmoDB "
                    f"speakers ({', '.join(EMODB_SPEAKERS)}); skipped",
                )
            elif text_id not in EMODB_TEXTS:
                report.skip(
                    "unknown_code",
                    f"{path}: text code {text_id} is not one of "
                    f"{', '.join(EMODB_TEXTS)}; skipped",
                )
            elif letter not in EMODB_EMOTIONS:
                report.skip(
                    "unknown_code",
                    f"{path}: emotion letter {letter} is not one of "
                    f"{', '.join(EMODB_EMOTIONS)}; skipped",
                )
            else:
                clips.append(
                    Clip(
                        path.stem,
                        path,
                        EMODB_EMOTIONS[letter],
                        speaker,
                        EMODB_SPEAKERS[speaker],
                        EMODB_TEXTS[text_id],
                        {"text_id": text_id, "version": version},
                    )
                )
    return _finish("emodb", folder, wav_dir, clips, report, outputs)


_RAVDESS_LAYOUT = (
    "the extracted Audio_Speech_Actors_01-24.zip: Actor_01/03-01-01-01-01-01-01.wav "
    "... Actor_24/ (directly in the data folder or one folder below)"
)


def _ravdess_file(path, report):
    """Parse one file of the RAVDESS tree into a Clip (or count it skipped)."""
    name = path.name
    if _is_macos_metadata(name):
        report.skip("macos_metadata", f"{path}: macOS metadata file; skipped")
        return None
    match = _RAVDESS_RE.match(name)
    if match is None:
        if name.endswith(".wav"):
            report.skip(
                "bad_name",
                f"{path}: name not of the form modality-channel-emotion-intensity-"
                f"statement-repetition-actor.wav (e.g. 03-01-06-01-02-01-12.wav); "
                f"skipped",
            )
        else:
            report.skip("not_audio", f"{path}: not a RAVDESS audio file; skipped")
        return None
    modality, channel, emotion, intensity, statement, rep, actor, ext = match.groups()
    if modality in ("01", "02") or ext != "wav":
        kind = {"01": "audio-video", "02": "video-only"}.get(modality)
        if kind is None or ext not in ("wav", "mp4"):
            report.skip("not_audio", f"{path}: not a RAVDESS audio file; skipped")
        else:
            report.skip("video", f"{path}: {kind} modality ({modality}); skipped")
        return None
    if modality != "03":
        report.skip(
            "unknown_code", f"{path}: modality {modality} (03 is audio-only); skipped"
        )
        return None
    if channel == "02":
        report.skip("song", f"{path}: song (vocal channel 02), not speech; skipped")
        return None
    problems = []
    if channel != "01":
        problems.append(f"vocal channel {channel} (01 speech, 02 song)")
    if emotion not in RAVDESS_EMOTIONS:
        problems.append(f"emotion {emotion} (01-08)")
    if intensity not in RAVDESS_INTENSITIES:
        problems.append(f"intensity {intensity} (01 normal, 02 strong)")
    elif emotion == "01" and intensity == "02":
        problems.append("strong intensity for neutral (neutral has normal only)")
    if statement not in RAVDESS_STATEMENTS:
        problems.append(f"statement {statement} (01, 02)")
    if rep not in ("01", "02"):
        problems.append(f"repetition {rep} (01, 02)")
    if problems:
        report.skip("unknown_code", f"{path}: {'; '.join(problems)}; skipped")
        return None
    if not 1 <= int(actor) <= 24:
        report.skip("unknown_speaker", f"{path}: actor {actor} (01-24); skipped")
        return None
    folder = _ACTOR_DIR_RE.match(path.parent.name)
    if folder is not None and folder.group(1) != actor:
        report.skip(
            "misplaced",
            f"{path}: actor {actor} in the file name but in folder "
            f"{path.parent.name}; skipped",
        )
        return None
    return Clip(
        path.stem,
        path,
        RAVDESS_EMOTIONS[emotion],
        actor,
        "M" if int(actor) % 2 else "F",
        RAVDESS_STATEMENTS[statement],
        {
            "intensity": RAVDESS_INTENSITIES[intensity],
            "statement": statement,
            "repetition": rep,
        },
    )


def prepare_ravdess(data_folder, output, overwrite=False):
    """Prepare RAVDESS speech (audio-only): read the ``Actor_*`` tree.

    Every file under ``data_folder`` is looked at: speech files of the
    audio-only modality become rows; song files, video-modality files,
    duplicates and anything else are skipped and counted.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The folder holding ``Actor_01`` ... ``Actor_24`` (or a folder one
        level above them).
    output : str or os.PathLike
        The CSV to write.
    overwrite : bool
        Replace ``output`` even if this script did not write it.

    Returns
    -------
    dict
        The summary.

    Example
    -------
    >>> import tempfile, logging
    >>> from sser_lobes.synthetic.public_corpora import make_ravdess
    >>> logging.disable(logging.WARNING)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_ravdess(tmp.name, actors=[1, 2], per_class=1)
    >>> summary = prepare_ravdess(root, tmp.name + "/ravdess.csv")
    >>> summary["total"], summary["counts"]["gender"]
    (16, {'F': 8, 'M': 8})
    >>> {k: v["count"] for k, v in summary["skipped"].items()}
    {'macos_metadata': 2, 'song': 88, 'video': 4}
    >>> logging.disable(logging.NOTSET)
    >>> tmp.cleanup()
    """
    folder = _data_folder(data_folder, _RAVDESS_LAYOUT)
    actor_dirs = [p for p in folder.glob("Actor_*") if p.is_dir()]
    actor_dirs += [p for p in folder.glob("*/Actor_*") if p.is_dir()]
    if not any(_ACTOR_DIR_RE.match(p.name) for p in actor_dirs):
        raise PreparationError(
            f"{folder}: no Actor_01 ... Actor_24 folder found in it or one level "
            f"below; expected {_RAVDESS_LAYOUT}"
        )
    outputs = _outputs(output, overwrite)
    report = RowReport(SKIP_REASONS)
    clips = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path in outputs:  # the CSV and summary of an earlier run
                continue
            clip = _ravdess_file(path, report)
            if clip is not None:
                clips.append(clip)
    return _finish("ravdess", folder, folder, clips, report, outputs)


_CREMAD_LAYOUT = (
    "the CREMA-D repository folder (git lfs clone "
    "https://github.com/CheyneyComputerScience/CREMA-D) holding "
    "AudioWAV/1001_DFA_ANG_XX.wav ... and VideoDemographics.csv"
)


def read_cremad_demographics(path):
    """Read ``VideoDemographics.csv``: actor id -> ``F``/``M`` (or a problem).

    Arguments
    ---------
    path : str or os.PathLike
        The file (columns ``ActorID,Age,Sex,Race,Ethnicity``).

    Returns
    -------
    dict
        Actor id (``"1001"``) -> ``"F"`` or ``"M"``, or a message naming the
        line for a row whose Sex is neither ``Male`` nor ``Female``.

    Raises
    ------
    PreparationError
        If the file cannot be read or has no ``ActorID`` / ``Sex`` column.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = tmp.name + "/VideoDemographics.csv"
    >>> _ = open(path, "w").write(
    ...     '"ActorID","Age","Sex","Race","Ethnicity"\\n'
    ...     '1001,51,"Male","Caucasian","Not Hispanic"\\n'
    ...     '1002,21,"Female","Caucasian","Not Hispanic"\\n'
    ... )
    >>> read_cremad_demographics(path)
    {'1001': 'M', '1002': 'F'}
    >>> tmp.cleanup()
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            if "ActorID" not in header or "Sex" not in header:
                raise PreparationError(
                    f"{path}: header {','.join(header) or '(empty)'} has no "
                    f"ActorID and Sex columns; expected "
                    f"ActorID,Age,Sex,Race,Ethnicity"
                )
            genders = {}
            for line, row in enumerate(reader, start=2):
                actor = (row.get("ActorID") or "").strip()
                sex = (row.get("Sex") or "").strip()
                if actor in genders:
                    continue
                genders[actor] = {"Male": "M", "Female": "F"}.get(
                    sex, f"{path}, line {line}: Sex {sex!r} is neither Male nor Female"
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PreparationError(f"{path}: cannot read it ({exc})") from None
    return genders


def read_cremad_votes(path):
    """The voice-only votes of ``processedResults/tabulatedVotes.csv``.

    Read by column name: the first, unnamed column numbers the rows (1xxxxx
    voice only, 2xxxxx face only, 3xxxxx audio-visual), ``fileName`` names
    the clip, ``A D F H N S`` count the responses.

    Returns
    -------
    votes : dict
        Clip (``1001_DFA_ANG_XX``) -> ``{class: count}``.
    problems : list of str
        Rows that cannot be read (left out).

    Raises
    ------
    PreparationError
        The file cannot be read or its header lacks the columns.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/tabulatedVotes.csv"
    >>> _ = open(path, "w").write(
    ...     '"","A","D","F","H","N","S","fileName","numResponses"\\n'
    ...     '"100001",0,0,0,1,10,0,"1001_IEO_NEU_XX",11\\n'
    ...     '"200001",0,0,0,9,1,0,"1001_IEO_NEU_XX",10\\n')
    >>> read_cremad_votes(path)
    ({'1001_IEO_NEU_XX': {'happy': 1.0, 'neutral': 10.0}}, [])
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            needed = ["fileName", *CREMAD_VOTE_COLUMNS]
            missing = [c for c in needed if c not in header]
            if missing or not header or header[0]:
                raise PreparationError(
                    f"{path}: header {','.join(header) or '(empty)'} lacks "
                    f"{', '.join(missing) or 'the unnamed row-number column'}; "
                    'expected "","A","D","F","H","N","S","fileName",...'
                )
            index = {name: header.index(name) for name in needed}
            votes, problems = {}, []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                where = f"{path}, line {reader.line_num}"
                try:
                    block = int(values[0]) // 100000
                    name = values[index["fileName"]].strip()
                    counts = {
                        CREMAD_VOTE_COLUMNS[c]: float(values[index[c]])
                        for c in CREMAD_VOTE_COLUMNS
                    }
                    cleaned = clean_votes(counts)
                except (ValueError, IndexError) as error:
                    problems.append(f"{where}: {error}")
                    continue
                if block != CREMAD_VOICE_BLOCK:
                    continue
                if not name or name in votes:
                    problems.append(f"{where}: clip {name!r} empty or given twice")
                    continue
                if cleaned:
                    votes[name] = cleaned
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PreparationError(f"{path}: cannot read it ({error})") from None
    return votes, problems


def _cremad_votes(folder):
    """``(votes, notes)``: the votes of the release (empty after one warning
    when the file is missing or unreadable) and the summary's ``votes``."""
    path = folder / "processedResults" / "tabulatedVotes.csv"
    notes = {"file": os.fspath(path), "sha256": None, "unreadable_rows": 0}
    if not path.is_file():
        logger.warning(
            "%s: not found; the votes column stays empty (the Custom recipe trains "
            "on the labels; --targets=soft needs votes)",
            path,
        )
        return {}, {"votes": {**notes, "file": None}}
    try:
        votes, problems = read_cremad_votes(path)
    except PreparationError as error:
        logger.warning("%s; the votes column stays empty", error)
        return {}, {"votes": notes}
    if problems:
        logger.warning(
            "%d row(s) of %s cannot be read and are left out, e.g. %s",
            len(problems),
            path,
            problems[0],
        )
    notes.update(
        sha256=file_sha256(path),
        unreadable_rows=len(problems),
        examples=problems[:20],
    )
    return votes, {"votes": notes}


def prepare_cremad(data_folder, output, overwrite=False):
    """Prepare CREMA-D: read ``AudioWAV/`` and ``VideoDemographics.csv``.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The CREMA-D repository folder (holding ``AudioWAV/`` and
        ``VideoDemographics.csv``).
    output : str or os.PathLike
        The CSV to write.
    overwrite : bool
        Replace ``output`` even if this script did not write it.

    Returns
    -------
    dict
        The summary.

    Example
    -------
    >>> import tempfile, logging
    >>> from sser_lobes.synthetic.public_corpora import make_cremad
    >>> logging.disable(logging.WARNING)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_cremad(tmp.name, actors=[1001, 1002], per_class=1)
    >>> summary = prepare_cremad(root, tmp.name + "/cremad.csv")
    >>> summary["total"], summary["counts"]["gender"]
    (12, {'F': 6, 'M': 6})
    >>> logging.disable(logging.NOTSET)
    >>> tmp.cleanup()
    """
    folder = _data_folder(data_folder, _CREMAD_LAYOUT)
    wav_dir = folder / "AudioWAV"
    if not wav_dir.is_dir():
        raise PreparationError(
            f"{wav_dir}: folder not found; expected {_CREMAD_LAYOUT}"
        )
    demographics = folder / "VideoDemographics.csv"
    if not demographics.is_file():
        raise PreparationError(
            f"{demographics}: file not found; it gives each actor's sex (columns "
            f"ActorID,Age,Sex,Race,Ethnicity). Expected {_CREMAD_LAYOUT}"
        )
    genders = read_cremad_demographics(demographics)
    outputs = _outputs(output, overwrite)
    votes, notes = _cremad_votes(folder)
    report = RowReport(SKIP_REASONS)
    clips = []
    for entry in sorted(os.scandir(wav_dir), key=lambda e: e.name):
        path = Path(entry.path)
        name = entry.name
        if path in outputs:
            continue
        if _is_macos_metadata(name):
            report.skip("macos_metadata", f"{path}: macOS metadata file; skipped")
            continue
        if entry.is_dir() or not name.endswith(".wav"):
            report.skip("not_audio", f"{path}: not a .wav file; skipped")
            continue
        match = _CREMAD_RE.match(name)
        if match is None:
            report.skip(
                "bad_name",
                f"{path}: name not of the form <actor>_<sentence>_<emotion>_<level>"
                f".wav (e.g. 1001_DFA_ANG_XX.wav); skipped",
            )
            continue
        actor, sentence, emotion, level = match.groups()
        problems = []
        if sentence not in CREMAD_SENTENCES:
            problems.append(f"sentence code {sentence}")
        if emotion not in CREMAD_EMOTIONS:
            problems.append(f"emotion code {emotion}")
        if level not in CREMAD_LEVELS:
            problems.append(f"level {level}")
        if problems:
            report.skip(
                "unknown_code",
                f"{path}: unknown {', '.join(problems)} (see the CREMA-D README); "
                f"skipped",
            )
            continue
        gender = genders.get(actor)
        if gender not in ("F", "M"):
            why = gender or f"actor {actor} is not in {demographics.name}"
            report.skip("unknown_speaker", f"{path}: {why}; skipped")
            continue
        key = f"{actor}_{sentence}_{emotion}_{'XX' if level == 'X' else level}"
        clip_votes = votes.get(key) or votes.get(path.stem) or {}
        clips.append(
            Clip(
                path.stem,
                path,
                CREMAD_EMOTIONS[emotion],
                actor,
                gender,
                CREMAD_SENTENCES[sentence],
                {
                    "sentence": sentence,
                    "level": level,
                    "votes": ",".join(f"{k}:{v:g}" for k, v in clip_votes.items()),
                },
                key=key,
            )
        )
    notes["votes"]["clips_with_votes"] = sum(bool(c.extra["votes"]) for c in clips)
    notes["votes"]["clips_without_votes"] = sum(not c.extra["votes"] for c in clips)
    return _finish("cremad", folder, wav_dir, clips, report, outputs, notes)


_PREPARERS = {
    "emodb": prepare_emodb,
    "ravdess": prepare_ravdess,
    "cremad": prepare_cremad,
}


def prepare_corpus(name, data_folder, output, overwrite=False):
    """Prepare the corpus ``name`` (``emodb``, ``ravdess`` or ``cremad``).

    Arguments
    ---------
    name : str
        Which corpus.
    data_folder, output, overwrite
        As for :func:`prepare_emodb`.

    Returns
    -------
    dict
        The summary.

    Example
    -------
    >>> prepare_corpus("iemocap", "/data", "x.csv")
    Traceback (most recent call last):
    ...
    ValueError: unknown corpus 'iemocap'; choose one of emodb, ravdess, cremad
    """
    if name not in _PREPARERS:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return _PREPARERS[name](data_folder, output, overwrite=overwrite)


def format_summary(summary):
    """The counts summary the command line prints.

    Example
    -------
    >>> s = {"corpus_name": "X", "total": 3, "output": "x.csv",
    ...      "counts": {"emotion": {"sad": 2, "happy": 1}, "speaker": {"1": 3},
    ...                 "gender": {"F": 3}},
    ...      "skipped_total": 0, "skipped": {}, "full_release": False,
    ...      "release": {"total": 10}, "found": {"total": 3}}
    >>> print(format_summary(s))
    X: 3 utterances written to x.csv
      emotions: sad 2, happy 1
      speakers: 1 (F 3)
      skipped: 0 files
      full release: no (3 clips found, the release has 10)
    """
    counts = summary["counts"]
    lines = [
        f"{summary['corpus_name']}: {summary['total']} utterances written to "
        f"{summary['output']}",
        "  emotions: " + ", ".join(f"{k} {v}" for k, v in counts["emotion"].items()),
        f"  speakers: {len(counts['speaker'])} ("
        + ", ".join(f"{k} {v}" for k, v in counts["gender"].items())
        + ")",
    ]
    skipped = summary["skipped"]
    detail = ", ".join(f"{k} {v['count']}" for k, v in skipped.items())
    lines.append(
        f"  skipped: {summary['skipped_total']} files"
        + (f" ({detail}; see {summary_path(summary['output']).name})" if detail else "")
    )
    found, release = summary["found"]["total"], summary["release"]["total"]
    lines.append(
        "  full release: "
        + (
            f"yes ({found} clips)"
            if summary["full_release"]
            else f"no ({found} clips found, the release has {release})"
        )
    )
    return "\n".join(lines)


class _UsageError(Exception):
    """A command-line usage error (printed as one ``error:`` line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see --help)")


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
    ...     status = main(["emodb", "--data_folder", tmp.name, "--output", "x.csv"])
    >>> status, err.getvalue().count("\\n"), err.getvalue().startswith("error: ")
    (1, 1, True)
    >>> "wav: folder not found" in err.getvalue()
    True
    >>> tmp.cleanup()
    """
    parser = _Parser(
        description="Prepare a public emotional speech corpus (EmoDB, RAVDESS, "
        "CREMA-D) as the generic CSV of the Custom recipe."
    )
    parser.add_argument("corpus", choices=CORPORA)
    parser.add_argument(
        "--data_folder", required=True, help="the corpus in its official layout"
    )
    parser.add_argument("--output", required=True, help="CSV file to write")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output even if this script did not write it (a foreign "
        "<stem>_summary.json next to it is still never replaced)",
    )
    try:
        args = parser.parse_args(argv)
        summary = prepare_corpus(
            args.corpus, args.data_folder, args.output, overwrite=args.overwrite
        )
    except (_UsageError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    sys.exit(main())
