"""Tests of recipes/Custom/prepare_corpus.py on synthetic EmoDB, RAVDESS, CREMA-D.

Each full corpus is generated once for the module (sser_lobes.synthetic.
public_corpora: the release's file lists, extra files and oddities, 0.1-0.3 s
audio) and prepared once; the oddity tests use small subsets of their own.
The expected counts below are typed from the corpora's documentation, not
taken from the code under test.
"""

import contextlib
import csv
import doctest
import io
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = ROOT / "recipes" / "Custom"
if str(CUSTOM) not in sys.path:
    sys.path.append(str(CUSTOM))

import prepare_corpus as pc  # noqa: E402

from sser_lobes.errors import PreparationError  # noqa: E402
from sser_lobes.synthetic.public_corpora import (  # noqa: E402
    make_cremad,
    make_emodb,
    make_ravdess,
    plan_cremad,
    plan_emodb,
    plan_ravdess,
    write_pcm16,
)

EMODB_EMOTIONS = {
    "anger": 127,
    "boredom": 81,
    "disgust": 46,
    "fear": 69,
    "happiness": 71,
    "sadness": 62,
    "neutral": 79,
}
EMODB_SPEAKERS = {
    "03": 49,
    "08": 58,
    "09": 43,
    "10": 38,
    "11": 55,
    "12": 35,
    "13": 61,
    "14": 69,
    "15": 56,
    "16": 71,
}
RAVDESS_EMOTIONS = dict.fromkeys(
    ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"), 192
) | {"neutral": 96}
CREMAD_EMOTIONS = dict.fromkeys(("anger", "disgust", "fear", "happy", "sad"), 1271) | {
    "neutral": 1087
}

GENERATION_SECONDS = {}


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The three full synthetic corpora, each prepared once."""
    base = tmp_path_factory.mktemp("public_corpora")
    out = base / "prepared"
    result = {}
    for name, make in (
        ("emodb", make_emodb),
        ("ravdess", make_ravdess),
        ("cremad", make_cremad),
    ):
        start = time.perf_counter()
        root = make(base / "corpora")
        GENERATION_SECONDS[name] = time.perf_counter() - start
        output = out / f"{name}.csv"
        summary = pc.prepare_corpus(name, root, output)
        columns, rows = _read_csv(output)
        result[name] = {
            "root": root,
            "output": output,
            "summary": summary,
            "columns": columns,
            "rows": {row["id"]: row for row in rows},
            "order": [row["id"] for row in rows],
        }
    print(
        "generation seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in GENERATION_SECONDS.items())
    )
    return result


# --------------------------------------------------------------------------
# Full releases
# --------------------------------------------------------------------------


def _check_rows(prepared, expected_columns):
    assert prepared["columns"] == expected_columns
    order = prepared["order"]
    assert order == sorted(order) and len(set(order)) == len(order)
    for row in prepared["rows"].values():
        wav = Path(row["wav"])
        assert wav.is_absolute() and wav.is_file() and wav.stem == row["id"]
        assert row["gender"] in ("F", "M") and row["text"]


def test_emodb_full_release(full):
    prepared = full["emodb"]
    summary = prepared["summary"]
    _check_rows(
        prepared,
        ["id", "wav", "emotion", "speaker", "gender", "text", "duration"]
        + ["text_id", "version"],
    )
    assert summary["total"] == len(prepared["rows"]) == 535
    assert summary["counts"]["emotion"] == EMODB_EMOTIONS
    assert summary["counts"]["speaker"] == EMODB_SPEAKERS
    assert summary["counts"]["gender"] == {"F": 302, "M": 233}
    assert summary["full_release"] is True and summary["release_differences"] == []
    rows = prepared["rows"].values()
    assert Counter(r["emotion"] for r in rows) == EMODB_EMOTIONS
    assert Counter(r["speaker"] for r in rows) == EMODB_SPEAKERS
    assert len({r["text"] for r in rows}) == 10


def test_ravdess_full_release(full):
    prepared = full["ravdess"]
    summary = prepared["summary"]
    _check_rows(
        prepared,
        ["id", "wav", "emotion", "speaker", "gender", "text", "duration"]
        + ["intensity", "statement", "repetition"],
    )
    assert summary["total"] == len(prepared["rows"]) == 1440
    assert summary["counts"]["emotion"] == RAVDESS_EMOTIONS
    assert summary["counts"]["speaker"] == {f"{k:02d}": 60 for k in range(1, 25)}
    assert summary["counts"]["gender"] == {"F": 720, "M": 720}
    assert summary["full_release"] is True
    rows = prepared["rows"].values()
    assert {r["text"] for r in rows} == {
        "Kids are talking by the door",
        "Dogs are sitting by the door",
    }
    assert Counter(r["intensity"] for r in rows) == {"normal": 768, "strong": 672}
    assert all(r["id"].startswith("03-01-") for r in rows)  # audio-only speech


def test_cremad_full_release(full):
    prepared = full["cremad"]
    summary = prepared["summary"]
    _check_rows(
        prepared,
        ["id", "wav", "emotion", "speaker", "gender", "text", "duration"]
        + ["sentence", "level", "votes"],
    )
    # Every written clip has its voice-only votes (tabulatedVotes.csv).
    assert summary["votes"]["clips_without_votes"] == 0
    assert summary["votes"]["clips_with_votes"] == 7442
    # All 7,442 clips of the release are found ...
    found = summary["found"]
    assert found["total"] == 7442
    assert found["emotion"] == CREMAD_EMOTIONS
    assert found["gender"] == {"F": 3512, "M": 3930}
    assert len(found["speaker"]) == 91
    assert summary["full_release"] is True
    # ... and all but the one without audio (1076_MTI_SAD_XX) are written.
    assert summary["total"] == len(prepared["rows"]) == 7441
    assert summary["counts"]["emotion"] == CREMAD_EMOTIONS | {"sad": 1270}
    assert summary["counts"]["gender"] == {"F": 3511, "M": 3930}
    assert summary["counts"]["speaker"]["1076"] == 80
    assert summary["counts"]["speaker"]["1001"] == 82
    rows = prepared["rows"].values()
    actors_by_gender = {
        g: {r["speaker"] for r in rows if r["gender"] == g} for g in "FM"
    }
    assert (len(actors_by_gender["M"]), len(actors_by_gender["F"])) == (48, 43)
    assert len({r["sentence"] for r in rows}) == len({r["text"] for r in rows}) == 12


def test_extra_files_and_oddities_are_skipped_and_counted(full):
    emodb = full["emodb"]["summary"]["skipped"]
    assert {k: v["count"] for k, v in emodb.items()} == {"macos_metadata": 2}
    # lablaut/, labsilb/, silb/, erkennung.txt ...: only wav/ is read.
    assert (full["emodb"]["root"] / "lablaut" / "14b09Ea.lablaut").is_file()
    text = json.dumps(full["emodb"]["summary"])
    assert "lablaut" not in text and "erkennung" not in text

    ravdess = full["ravdess"]["summary"]
    assert {k: v["count"] for k, v in ravdess["skipped"].items()} == {
        "macos_metadata": 2,
        "song": 1012,
        "video": 4,
    }
    assert ravdess["skipped_total"] == 1018
    assert any(
        e.endswith("01-01-01-01-01-01-01.mp4: audio-video modality (01); skipped")
        for e in ravdess["skipped"]["video"]["examples"]
    )

    cremad = full["cremad"]["summary"]["skipped"]
    assert {k: v["count"] for k, v in cremad.items()} == {
        "macos_metadata": 1,
        "silent": 1,
    }
    (message,) = cremad["silent"]["examples"]
    assert "AudioWAV/1076_MTI_SAD_XX.wav: silent" in message
    # The legacy name 1040_ITH_SAD_X.wav is a row, its level kept as written.
    row = full["cremad"]["rows"]["1040_ITH_SAD_X"]
    assert (row["emotion"], row["level"], row["sentence"]) == ("sad", "X", "ITH")


def test_known_rows(full):
    emodb = full["emodb"]["rows"]
    row = emodb["03a01Fa"]
    assert (row["emotion"], row["speaker"], row["gender"]) == ("happiness", "03", "M")
    assert row["text"] == "Der Lappen liegt auf dem Eisschrank."
    assert (row["text_id"], row["version"]) == ("a01", "a")
    row = emodb["16b10Wb"]
    assert (row["emotion"], row["speaker"], row["gender"]) == ("anger", "16", "F")
    assert (row["text_id"], row["version"]) == ("b10", "b")
    assert row["text"] == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    assert emodb["08a02Fe"]["version"] == "e" and emodb["13a01Ec"]["emotion"] == (
        "disgust"
    )

    ravdess = full["ravdess"]["rows"]
    row = ravdess["03-01-06-01-02-01-12"]
    assert (row["emotion"], row["speaker"], row["gender"]) == ("fearful", "12", "F")
    assert row["text"] == "Dogs are sitting by the door"
    assert (row["intensity"], row["statement"], row["repetition"]) == (
        "normal",
        "02",
        "01",
    )
    assert Path(row["wav"]).parent.name == "Actor_12"
    row = ravdess["03-01-05-02-01-02-01"]
    assert (row["emotion"], row["gender"], row["intensity"]) == ("angry", "M", "strong")
    assert "03-01-01-02-01-01-01" not in ravdess  # neutral has no strong intensity

    cremad = full["cremad"]["rows"]
    row = cremad["1001_DFA_ANG_XX"]
    assert (row["emotion"], row["speaker"], row["gender"]) == ("anger", "1001", "M")
    assert (row["text"], row["sentence"], row["level"]) == (
        "Don't forget a jacket",
        "DFA",
        "XX",
    )
    row = cremad["1091_IEO_HAP_HI"]
    assert (row["gender"], row["level"], row["text"]) == (
        "F",
        "HI",
        "It's eleven o'clock",
    )
    assert "1002_TIE_NEU_XX" not in cremad and "1076_MTI_SAD_XX" not in cremad

    for corpus, stem in (
        ("emodb", "03a01Fa"),
        ("ravdess", "03-01-06-01-02-01-12"),
        ("cremad", "1001_DFA_ANG_XX"),
    ):
        row = full[corpus]["rows"][stem]
        info = soundfile.info(row["wav"])
        assert float(row["duration"]) == pytest.approx(info.duration, abs=1e-4)


def test_summary_file(full):
    prepared = full["emodb"]
    on_disk = json.loads(pc.summary_path(prepared["output"]).read_text("utf-8"))
    assert on_disk == prepared["summary"]
    assert on_disk["corpus"] == "emodb"
    assert on_disk["data_folder"] == str(prepared["root"])
    assert on_disk["audio_folder"] == str(prepared["root"] / "wav")
    assert on_disk["release"]["total"] == 535 and on_disk["skipped_total"] == 2


def test_rerun_writes_identical_bytes(full):
    for name, prepared in full.items():
        output = prepared["output"]
        summary = pc.summary_path(output)
        before = output.read_bytes(), summary.read_bytes()
        # The script wrote both files: a re-run may replace them without
        # --overwrite, and writes the same bytes.
        pc.prepare_corpus(name, prepared["root"], output)
        assert (output.read_bytes(), summary.read_bytes()) == before, name


def test_the_custom_recipe_reads_the_outputs(full, tmp_path):
    from sser_lobes.dataio.corpus_csv import read_corpus

    for name, prepared in full.items():
        rows, report = read_corpus(
            prepared["output"], require=("wav", "emotion", "speaker")
        )
        assert report.total == 0, (name, report.summary())
        assert len(rows) == prepared["summary"]["total"]
        first = rows[0]
        written = prepared["rows"][first.id]
        assert (first.wav, first.emotion, first.speaker, first.gender) == (
            written["wav"],
            written["emotion"],
            written["speaker"],
            written["gender"],
        )
        assert set(pc.EXTRA_COLUMNS[name]) - {"votes"} <= set(first.extra)
        assert bool(first.votes) == (name == "cremad")  # read as votes

    # EmoDB with 10 folds over its 10 speakers: leave-one-speaker-out.
    import custom_prepare

    custom_prepare.prepare_custom(
        full["emodb"]["output"], tmp_path / "prep", num_folds=10, test_fold=1
    )
    info = json.loads((tmp_path / "prep" / "split_info.json").read_text())
    assert sorted(s for fold in info["folds"] for s in fold) == sorted(EMODB_SPEAKERS)
    (test_speaker,) = info["speakers"]["test"]
    assert info["speaker_independent"] is True
    assert info["counts"]["test"]["total"] == EMODB_SPEAKERS[test_speaker]
    assert info["emotions"] == sorted(EMODB_EMOTIONS)


# --------------------------------------------------------------------------
# Output safety
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_emodb(tmp_path_factory):
    return make_emodb(tmp_path_factory.mktemp("small"), speakers=[3, 8], per_class=2)


def test_refuses_to_overwrite_a_foreign_file(small_emodb, tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    with pytest.raises(PreparationError, match="not written by prepare_corpus") as err:
        pc.prepare_emodb(small_emodb, mine)
    assert str(mine) in str(err.value) and "--overwrite" in str(err.value)
    assert mine.read_text() == "my,own\n1,2\n"
    assert not pc.summary_path(mine).exists()

    # A foreign file where the summary goes is protected too, even with
    # overwrite (which only concerns the requested output).
    other = tmp_path / "other.csv"
    pc.summary_path(other).write_text("{}")
    for overwrite in (False, True):
        with pytest.raises(PreparationError, match="other_summary.json: exists"):
            pc.prepare_emodb(small_emodb, other, overwrite=overwrite)
    assert not other.exists() and pc.summary_path(other).read_text() == "{}"

    summary = pc.prepare_emodb(small_emodb, mine, overwrite=True)
    assert summary["total"] == 25 and mine.read_text().startswith("id,wav,")


def test_refuses_to_overwrite_an_edited_output(small_emodb, tmp_path):
    output = tmp_path / "emodb.csv"
    pc.prepare_emodb(small_emodb, output)
    pc.prepare_emodb(small_emodb, output)  # unchanged: replaced silently
    with open(output, "a", encoding="utf-8") as handle:
        handle.write("my,extra,row\n")
    with pytest.raises(PreparationError, match="was changed since"):
        pc.prepare_emodb(small_emodb, output)
    assert output.read_text().endswith("my,extra,row\n")


def test_relative_data_folder_gives_absolute_paths(small_emodb, tmp_path, monkeypatch):
    monkeypatch.chdir(small_emodb.parent)
    pc.prepare_emodb("emodb", "out/emodb.csv")
    _, rows = _read_csv(small_emodb.parent / "out" / "emodb.csv")
    assert rows and all(Path(r["wav"]).is_absolute() for r in rows)
    assert all(Path(r["wav"]).is_file() for r in rows)


# --------------------------------------------------------------------------
# Oddities on small corpora
# --------------------------------------------------------------------------


def _skipped(summary):
    return {k: v["count"] for k, v in summary["skipped"].items()}


def _example(summary, reason, needle):
    return any(needle in e for e in summary["skipped"][reason]["examples"])


def test_emodb_names_outside_the_scheme(tmp_path):
    root = make_emodb(tmp_path, speakers=["03"], per_class=1, extras=False)
    wav = root / "wav"
    good = next(wav.glob("03a01Fa.wav")).read_bytes()
    for name in ("17a01Fa.wav", "03a03Fa.wav", "03a01Xa.wav"):
        (wav / name).write_bytes(good)
    (wav / "notes.wav").write_bytes(good)
    (wav / "readme.txt").write_text("x")
    (wav / "sub").mkdir()
    summary = pc.prepare_emodb(root, tmp_path / "out.csv")
    assert summary["total"] == 7
    assert _skipped(summary) == {
        "not_audio": 2,
        "bad_name": 1,
        "unknown_code": 2,
        "unknown_speaker": 1,
    }
    assert _example(summary, "unknown_speaker", "17a01Fa.wav: speaker 17")
    assert _example(summary, "unknown_code", "03a03Fa.wav: text code a03")
    assert _example(summary, "unknown_code", "03a01Xa.wav: emotion letter X")
    assert _example(summary, "bad_name", "notes.wav: name not of the form")


def test_ravdess_kaggle_copy_misplaced_and_stereo(tmp_path):
    stereo = "03-01-03-01-01-01-02"
    root = make_ravdess(
        tmp_path,
        actors=[1, 2],
        per_class=1,
        song=False,
        video=False,
        kaggle_copy=True,
        stereo=[stereo],
    )
    misplaced = root / "Actor_02" / "03-01-02-01-01-01-01.wav"
    shutil.copy(root / "Actor_01" / "03-01-01-01-01-01-01.wav", misplaced)
    summary = pc.prepare_ravdess(root, tmp_path / "ravdess.csv")
    assert summary["total"] == 16
    assert _skipped(summary) == {"macos_metadata": 2, "misplaced": 1, "duplicate": 16}
    assert _example(summary, "misplaced", "actor 01 in the file name but in folder")
    assert _example(summary, "duplicate", "audio_speech_actors_01-24/Actor_01/")
    _, rows = _read_csv(tmp_path / "ravdess.csv")
    by_id = {r["id"]: r for r in rows}
    # The first copy (Actor_*/ at the top) is kept, not the Kaggle duplicate.
    assert all("audio_speech_actors" not in r["wav"] for r in rows)
    assert soundfile.info(by_id[stereo]["wav"]).channels == 2  # accepted as is


def test_cremad_broken_files(tmp_path):
    root = make_cremad(tmp_path, actors=[1001, 1040], per_class=1)
    wav = root / "AudioWAV"
    (wav / "1001_DFA_ANG_XX.wav").write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:c6f94b2592487c7556bd86df7df6e8f4420d1b9c11414aeec9d8e5e640b51495\n"
        "size 72862\n"
    )
    (wav / "1001_DFA_DIS_XX.wav").write_bytes(b"")
    write_pcm16(wav / "1001_DFA_FEA_XX.wav", np.zeros(0), 16000)  # header only
    write_pcm16(wav / "1001_DFA_HAP_XX.wav", np.full(100, 0.1), 16000)  # 6 ms
    (wav / "1001_DFA_NEU_XX.wav").write_bytes(b"RIFF\x00\x00garbage" * 4)
    write_pcm16(wav / "1001_DFA_SAD_XX.wav", np.full((4410, 2), 0.2), 44100)  # ok
    write_pcm16(wav / "1001_XYZ_ANG_XX.wav", np.full(1600, 0.1), 16000)
    write_pcm16(wav / "1099_DFA_ANG_XX.wav", np.full(1600, 0.1), 16000)
    (wav / "README.txt").write_text("x")
    summary = pc.prepare_cremad(root, tmp_path / "cremad.csv")
    assert _skipped(summary) == {
        "macos_metadata": 1,
        "not_audio": 1,
        "unknown_code": 1,
        "unknown_speaker": 1,
        "lfs_pointer": 1,
        "unreadable": 1,
        "empty": 3,
    }
    assert _example(summary, "lfs_pointer", "1001_DFA_ANG_XX.wav: git-lfs pointer")
    assert _example(summary, "lfs_pointer", "git lfs pull")
    assert _example(summary, "empty", "1001_DFA_DIS_XX.wav: empty file (0 bytes)")
    assert _example(summary, "empty", "1001_DFA_FEA_XX.wav: no audio samples")
    assert _example(summary, "empty", "1001_DFA_HAP_XX.wav: too short")
    assert _example(summary, "unreadable", "1001_DFA_NEU_XX.wav: cannot read")
    assert _example(summary, "unknown_code", "unknown sentence code XYZ")
    assert _example(summary, "unknown_speaker", "actor 1099 is not in")
    _, rows = _read_csv(tmp_path / "cremad.csv")
    by_id = {r["id"]: r for r in rows}
    assert float(by_id["1001_DFA_SAD_XX"]["duration"]) == pytest.approx(0.1)
    # 6 clips per actor, plus 1001_DFA_SAD_XX (the other added clips broken).
    assert summary["total"] == 13 and summary["found"]["total"] == 18
    assert summary["full_release"] is False
    assert "total 18 (release 7442)" in summary["release_differences"]


def test_cremad_gender_problems_and_old_and_new_name(tmp_path):
    root = make_cremad(tmp_path, actors=[1040, 1041])
    demographics = root / "VideoDemographics.csv"
    lines = demographics.read_text().splitlines()
    assert lines[41].startswith("1041,")
    lines[41] = lines[41].replace('"Male"', '"Unknown"')
    demographics.write_text("\n".join(lines) + "\n")
    wav = root / "AudioWAV"
    old = wav / "1040_ITH_SAD_X.wav"
    assert old.is_file()
    shutil.copy(old, wav / "1040_ITH_SAD_XX.wav")  # the renamed copy as well
    summary = pc.prepare_cremad(root, tmp_path / "cremad.csv")
    assert summary["counts"]["speaker"] == {"1040": 82}
    assert _skipped(summary)["unknown_speaker"] == 82
    assert _example(summary, "unknown_speaker", "line 42: Sex 'Unknown'")
    assert _example(summary, "duplicate", "1040_ITH_SAD_X.wav: same recording as")
    _, rows = _read_csv(tmp_path / "cremad.csv")
    assert "1040_ITH_SAD_XX" in {r["id"] for r in rows}  # the current name wins

    demographics.write_text('"ActorID","Age"\n1040,42\n')
    with pytest.raises(PreparationError, match="has no ActorID and Sex columns"):
        pc.prepare_cremad(root, tmp_path / "again.csv", overwrite=True)


def test_no_usable_audio_is_an_error(tmp_path):
    root = make_cremad(tmp_path, actors=[1001], per_class=1, extras=False)
    for path in (root / "AudioWAV").glob("*.wav"):
        path.write_text("version https://git-lfs.github.com/spec/v1\nsize 1\n")
    with pytest.raises(PreparationError, match="no usable utterance") as err:
        pc.prepare_cremad(root, tmp_path / "cremad.csv")
    assert "lfs_pointer 6" in str(err.value)
    assert not (tmp_path / "cremad.csv").exists()


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = pc.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def test_cli_missing_folder_is_one_error_line(tmp_path):
    missing = tmp_path / "nowhere"
    proc = subprocess.run(
        [
            sys.executable,
            str(CUSTOM / "prepare_corpus.py"),
            "ravdess",
            "--data_folder",
            str(missing),
            "--output",
            str(tmp_path / "x.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(missing) in lines[0] and "Actor_01" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    "corpus, make_layout, needle",
    [
        ("emodb", lambda d: None, "wav: folder not found"),
        ("ravdess", lambda d: (d / "Actor_1").mkdir(), "no Actor_01 ... Actor_24"),
        ("cremad", lambda d: None, "AudioWAV: folder not found"),
        (
            "cremad",
            lambda d: (d / "AudioWAV").mkdir(),
            "VideoDemographics.csv: file not found",
        ),
    ],
)
def test_cli_layout_errors(tmp_path, corpus, make_layout, needle):
    data = tmp_path / "data"
    data.mkdir()
    make_layout(data)
    status, out, err = _main(
        [corpus, "--data_folder", data, "--output", tmp_path / "x.csv"]
    )
    assert status == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert needle in err and str(data) in err


def test_cli_usage_error_is_one_line(tmp_path):
    status, _, err = _main(["iemocap", "--data_folder", tmp_path, "--output", "x"])
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: argument corpus: invalid choice: 'iemocap'")


def test_cli_prints_counts(small_emodb, tmp_path):
    status, out, err = _main(
        ["emodb", "--data_folder", small_emodb, "--output", tmp_path / "e.csv"]
    )
    assert status == 0 and err == ""
    assert "Berlin EmoDB: 25 utterances written to" in out
    assert "emotions: anger 4, boredom 4, disgust 1, fear 4" in out
    assert "speakers: 2 (F 12, M 13)" in out
    assert "full release: no (25 clips found, the release has 535)" in out
    status, _, err = _main(
        ["emodb", "--data_folder", small_emodb, "--output", tmp_path / "e.csv"]
    )
    assert status == 0  # its own output: replaced without --overwrite


# --------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------


def test_generated_layouts(full):
    emodb = full["emodb"]["root"]
    assert sorted(p.name for p in emodb.iterdir()) == [
        "erkennung.txt",
        "erklaerung.txt",
        "lablaut",
        "labsilb",
        "silb",
        "wav",
    ]
    info = soundfile.info(str(emodb / "wav" / "03a01Fa.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")

    ravdess = full["ravdess"]["root"]
    actors = sorted(p.name for p in ravdess.iterdir() if p.is_dir())
    assert actors == [f"Actor_{k:02d}" for k in range(1, 25)]
    assert not list((ravdess / "Actor_18").glob("03-02-*"))  # no song for 18
    assert len(list((ravdess / "Actor_17").glob("03-02-*.wav"))) == 44
    assert soundfile.info(
        str(ravdess / "Actor_05/03-01-01-01-01-01-05.wav")
    ).samplerate == (48000)

    cremad = full["cremad"]["root"]
    assert (cremad / "AudioWAV" / "1040_ITH_SAD_X.wav").is_file()
    assert not (cremad / "AudioWAV" / "1040_ITH_SAD_XX.wav").exists()
    silent, rate = soundfile.read(str(cremad / "AudioWAV" / "1076_MTI_SAD_XX.wav"))
    assert (len(silent), rate, float(np.abs(silent).max())) == (41108, 16000, 0.0)
    header = (cremad / "VideoDemographics.csv").read_text().splitlines()[0]
    assert header == '"ActorID","Age","Sex","Race","Ethnicity"'
    durations = [float(r["duration"]) for r in full["cremad"]["rows"].values()]
    assert 0.1 <= min(durations) and max(durations) <= 0.3


def test_plans_and_subsets(tmp_path):
    assert len(plan_emodb()) == 535
    speech = [p for p in plan_ravdess() if p.kind == "speech"]
    assert len(speech) == 1440
    assert len(plan_cremad()) == 7442
    subset = plan_cremad(actors=[1001, "1002"], per_class=2)
    assert len(subset) == 24 and {p.speaker for p in subset} == {"1001", "1002"}
    with pytest.raises(ValueError, match="unknown actor"):
        plan_cremad(actors=[1200])
    (tmp_path / "emodb").mkdir()
    (tmp_path / "emodb" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        make_emodb(tmp_path, speakers=[3])
    assert sorted(p.name for p in (tmp_path / "emodb").iterdir()) == ["mine.txt"]


def test_generators_are_deterministic_and_learnable(tmp_path, full):
    a = make_emodb(tmp_path / "a", speakers=[3], per_class=1)
    b = make_emodb(tmp_path / "b", speakers=[3], per_class=1)
    c = make_emodb(tmp_path / "c", speakers=[3], per_class=1, seed=1)
    name = "wav/03a01Fa.wav"
    assert (a / name).read_bytes() == (b / name).read_bytes() != (c / name).read_bytes()

    # Energy follows the emotion: anger > happiness > neutral > sadness on
    # every speaker's average (the recipe's tests train on these cues).
    rms = {}
    for row in full["emodb"]["rows"].values():
        audio, _ = soundfile.read(row["wav"])
        key = (row["speaker"], row["emotion"])
        rms.setdefault(key, []).append(float(np.sqrt(np.mean(audio**2))))
    for speaker in EMODB_SPEAKERS:
        mean = {e: np.mean(v) for (s, e), v in rms.items() if s == speaker}
        assert mean["anger"] > mean["happiness"] > mean["neutral"] > mean["sadness"]


def test_doctests():
    result = doctest.testmod(pc, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 40
