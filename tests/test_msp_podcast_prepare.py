"""Tests of recipes/MSP-Podcast/msp_podcast_prepare.py on the synthetic corpus."""

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "MSP-Podcast"
for _path in (REPO, RECIPE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import msp_podcast_prepare as prep  # noqa: E402

from sser_lobes.errors import PreparationError  # noqa: E402
from sser_lobes.synthetic.msp_podcast import (  # noqa: E402
    LABEL_HEADER,
    make_label_table,
    make_msp_podcast_corpus,
    plan_corpus,
)

FIELDS = {
    "wav",
    "duration",
    "emo",
    "arousal",
    "valence",
    "dominance",
    "gender",
    "speaker",
    "text",
    "split",
    "votes",
    "secondary_votes",
}
MANIFESTS = {
    "Train": "train.json",
    "Development": "development.json",
    "Test1": "test1.json",
    "Test2": "test2.json",
    "Test3": "test3.json",
}
PLAN = plan_corpus(seed=0)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The generated corpus; never modified (copy it with ``corpus``)."""
    return make_msp_podcast_corpus(tmp_path_factory.mktemp("pristine"), seed=0)


@pytest.fixture
def corpus(pristine, tmp_path):
    """A private copy of the corpus that a test may modify."""
    root = tmp_path / "data" / pristine.name
    shutil.copytree(pristine, root)
    return root


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


def _load(paths):
    return {split: json.loads(Path(p).read_text()) for split, p in paths.items()}


def _merged(data):
    return {utt: entry for manifest in data.values() for utt, entry in manifest.items()}


def _summary(save):
    return json.loads((Path(save) / "prep_summary.json").read_text())


def _labels_csv(root):
    return root / "Labels" / "labels_consensus.csv"


def _line_of(root, file_name):
    """(1-based line number, line) of a file's row in the labels csv."""
    lines = _labels_csv(root).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if line.startswith(file_name + ","):
            return number, line
    raise AssertionError(file_name)


def _replace_line(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _pick(split="Train", emo=None, transcript=None):
    for u in PLAN:
        if u.split == split and (emo is None or u.emo_class == emo):
            if transcript is None or u.has_transcript == transcript:
                return u
    raise AssertionError((split, emo))


# ----------------------------------------------------------------- content


def test_manifests_content(pristine, tmp_path):
    paths = prep.prepare_msp_podcast(pristine, tmp_path / "prep", num_workers=2)
    assert set(paths) == set(MANIFESTS)
    for split, path in paths.items():
        assert Path(path) == tmp_path / "prep" / MANIFESTS[split]
    data = _load(paths)
    merged = _merged(data)
    assert sum(len(m) for m in data.values()) == len(merged)  # disjoint
    plan = {u.utt_id: u for u in PLAN}
    assert set(merged) == set(plan)
    for split, manifest in data.items():
        assert list(manifest) == sorted(manifest)
        for utt, entry in manifest.items():
            u = plan[utt]
            assert set(entry) == FIELDS
            assert entry["split"] == u.split == split
            assert os.path.isabs(entry["wav"]) and os.path.isfile(entry["wav"])
            assert Path(entry["wav"]).name == u.file_name
            info = soundfile.info(entry["wav"])
            assert entry["duration"] == pytest.approx(info.duration)
            if split == "Test3":
                for key in ("emo", "arousal", "valence", "dominance"):
                    assert entry[key] is None
                assert entry["speaker"] is None and entry["gender"] is None
                assert entry["text"] is None  # hidden in the release
                continue
            expected_emo = None if u.emo_class in ("O", "X") else u.emo_class
            assert entry["emo"] == expected_emo
            assert (entry["arousal"], entry["valence"], entry["dominance"]) == (
                u.arousal,
                u.valence,
                u.dominance,
            )
            assert (entry["speaker"], entry["gender"]) == (u.speaker, u.gender)
            assert isinstance(entry["speaker"], str)
            assert entry["text"] == (u.text if u.has_transcript else None)
    assert {p.name for p in (tmp_path / "prep").iterdir()} == {
        *MANIFESTS.values(),
        "prep_summary.json",
        "prepare_options.json",
        "waveform_stats.json",
    }


def test_read_brief_snippet(tmp_path):
    path = tmp_path / "labels_consensus.csv"
    path.write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1\n"
        "MSP-PODCAST_0002_0033.wav,X,4.8,4.2,5.4,Unknown,Female,Train\n"
    )
    table = prep.read_labels_csv(path)
    assert not table.problems and table.n_rows == 2
    first = table.rows["MSP-PODCAST_0001_0008.wav"]
    assert (first.emo_class, first.arousal, first.valence, first.dominance) == (
        "N",
        2.2,
        4.0,
        2.6,
    )
    assert (first.speaker, first.gender, first.split) == ("30", "Male", "Test1")
    assert first.where == f"{path}, line 2 (MSP-PODCAST_0001_0008.wav)"
    assert table.rows["MSP-PODCAST_0002_0033.wav"].speaker == "Unknown"

    # Column order and extra columns do not matter; a BOM is tolerated.
    path.write_text(
        "\ufeffSplit_Set,FileName,Extra,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender\n"
        "Test1,MSP-PODCAST_0001_0008.wav,zz,N,2.2,4.0,2.6,30,Male\n",
        encoding="utf-8",
    )
    row = prep.read_labels_csv(path).rows["MSP-PODCAST_0001_0008.wav"]
    assert (row.emo_class, row.split, row.speaker) == ("N", "Test1", "30")


def test_ox_kept_with_null_emo_and_counted(pristine, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=prep.logger.name):
        data = _load(prep.prepare_msp_podcast(pristine, tmp_path / "prep"))
    merged = _merged(data)
    ox = {u.utt_id: u for u in PLAN if u.emo_class in ("O", "X")}
    assert ox and all(merged[utt]["emo"] is None for utt in ox)
    assert all(merged[utt]["arousal"] is not None for utt in ox)  # for Task 2
    summary = _summary(tmp_path / "prep")
    counts = Counter(u.emo_class for u in ox.values())
    assert summary["dropped_for_categorical"]["classes"] == dict(counts)
    assert summary["dropped_for_categorical"]["total"] == len(ox)
    train = summary["counts"]["Train"]
    assert train["classes"]["O"] == 2 and train["classes"]["X"] == 2
    assert train["emo_null"] == 4 and train["total"] == 36
    assert summary["counts"]["Test3"] == {
        "total": 6,
        "classes": {},
        "emo_null": 0,
        "unlabelled": 6,
        "without_transcript": 6,
    }
    assert summary["skipped"] == {}
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "O 5, X 5" in messages and "dropped for the categorical task" in messages


def test_emotions_subset(pristine, tmp_path):
    four = ("A", "H", "N", "S")
    merged = _merged(
        _load(prep.prepare_msp_podcast(pristine, tmp_path / "p", emotions=four))
    )
    for u in PLAN:
        if u.labelled:
            assert merged[u.utt_id]["emo"] == (
                u.emo_class if u.emo_class in four else None
            )
    summary = _summary(tmp_path / "p")
    assert set(summary["dropped_for_categorical"]["classes"]) == set("UFDCOX")


def test_missing_transcripts_counted(pristine, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prep.prepare_msp_podcast(pristine, tmp_path / "prep")
    missing = [u.utt_id for u in PLAN if u.labelled and not u.has_transcript]
    summary = _summary(tmp_path / "prep")
    assert summary["missing_transcripts"]["count"] == len(missing) >= 1
    assert sorted(summary["missing_transcripts"]["examples"]) == sorted(missing)
    warning = [
        r.getMessage() for r in caplog.records if "no transcript" in r.getMessage()
    ]
    assert warning and f"{len(missing)} labelled file(s)" in warning[0]


def test_json_labels_equivalent(tmp_path):
    csv_root = make_msp_podcast_corpus(tmp_path / "c", seed=2, utterances_per_class=2)
    json_root = make_msp_podcast_corpus(
        tmp_path / "j", seed=2, utterances_per_class=2, labels_format="json"
    )
    a = _merged(_load(prep.prepare_msp_podcast(csv_root, tmp_path / "pc")))
    b = _merged(_load(prep.prepare_msp_podcast(json_root, tmp_path / "pj")))
    for entries in (a, b):
        for entry in entries.values():
            entry["wav"] = Path(entry["wav"]).name
    assert a == b
    assert _summary(tmp_path / "pj")["labels_file"].endswith("labels_consensus.json")

    # With both files, the csv is read.
    both = make_msp_podcast_corpus(
        tmp_path / "b", seed=2, utterances_per_class=2, labels_format="both"
    )
    prep.prepare_msp_podcast(both, tmp_path / "pb", splits=["Train"])
    assert _summary(tmp_path / "pb")["labels_file"].endswith("labels_consensus.csv")


def test_json_bad_entries_named(tmp_path):
    path = tmp_path / "labels_consensus.json"
    good = {
        "EmoClass": "H",
        "EmoAct": 5.0,
        "EmoVal": 6.0,
        "EmoDom": 4.0,
        "SpkrID": 12,
        "Gender": "Female",
        "Split_Set": "Train",
    }
    path.write_text(
        json.dumps(
            {
                "MSP-PODCAST_0001_0001.wav": good,
                "MSP-PODCAST_0001_0002.wav": {**good, "EmoClass": "Q"},
                "MSP-PODCAST_0001_0003.wav": {**good, "EmoAct": "high"},
                "MSP-PODCAST_0001_0004.wav": {"EmoClass": "H"},
            }
        )
    )
    table = prep.read_labels_json(path)
    assert list(table.rows) == ["MSP-PODCAST_0001_0001.wav"]
    assert table.rows["MSP-PODCAST_0001_0001.wav"].speaker == "12"
    reasons = [reason for reason, _ in table.problems]
    assert reasons == ["unknown_class", "malformed_row", "malformed_row"]
    messages = [m for _, m in table.problems]
    assert messages[0].startswith(f"{path}, entry 2 (MSP-PODCAST_0001_0002.wav)")
    assert "EmoAct is 'high'" in messages[1] and "entry 3" in messages[1]
    assert "entry 4" in messages[2] and "lacks the field(s) EmoAct" in messages[2]
    path.write_text("[1, 2]")
    with pytest.raises(PreparationError, match="expected a dict"):
        prep.read_labels_json(path)


def test_nested_audio(tmp_path):
    root = make_msp_podcast_corpus(tmp_path, seed=0, nested_audio=True)
    paths = prep.prepare_msp_podcast(root, tmp_path / "prep")
    merged = _merged(_load(paths))
    assert len(merged) == len(PLAN)
    assert all(
        Path(e["wav"]).parent == root / "Audios" / "Audios" for e in merged.values()
    )
    assert _summary(tmp_path / "prep")["audio_folder"] == str(
        root / "Audios" / "Audios"
    )


def test_parent_folder_accepted(pristine, tmp_path):
    a = _load(prep.prepare_msp_podcast(pristine, tmp_path / "a"))
    b = _load(prep.prepare_msp_podcast(pristine.parent, tmp_path / "b"))
    assert a == b


def test_num_workers_do_not_change_output(pristine, tmp_path):
    a = _load(prep.prepare_msp_podcast(pristine, tmp_path / "a", num_workers=0))
    b = _load(prep.prepare_msp_podcast(pristine, tmp_path / "b", num_workers=4))
    assert a == b


# ---------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
    ("mangle", "reason", "expected"),
    [
        (lambda f: f.__setitem__(1, "Z"), "unknown_class", "unknown EmoClass 'Z'"),
        (lambda f: f.__setitem__(1, "n"), "unknown_class", "unknown EmoClass 'n'"),
        (lambda f: f.append("extra"), "malformed_row", "9 field(s), expected 8"),
        (lambda f: f.pop(), "malformed_row", "7 field(s), expected 8"),
        (lambda f: f.__setitem__(2, "high"), "malformed_row", "EmoAct is 'high'"),
        (lambda f: f.__setitem__(3, ""), "malformed_row", "EmoVal is ''"),
        (lambda f: f.__setitem__(4, "7.5"), "malformed_row", "outside the 1-7 range"),
        (lambda f: f.__setitem__(2, "0.0"), "malformed_row", "outside the 1-7 range"),
        (lambda f: f.__setitem__(4, "nan"), "malformed_row", "EmoDom is 'nan'"),
        (lambda f: f.__setitem__(7, "Valid"), "malformed_row", "Split_Set 'Valid'"),
        (lambda f: f.__setitem__(5, ""), "malformed_row", "empty SpkrID"),
    ],
)
def test_bad_row_skipped_and_named(corpus, tmp_path, caplog, mangle, reason, expected):
    victim = _pick("Train", emo="H")
    number, line = _line_of(corpus, victim.file_name)
    fields = line.split(",")
    mangle(fields)
    _replace_line(_labels_csv(corpus), line, ",".join(fields))
    with caplog.at_level(logging.WARNING):
        data = _load(prep.prepare_msp_podcast(corpus, tmp_path / "prep"))
    merged = _merged(data)
    assert victim.utt_id not in merged
    assert set(merged) == {u.utt_id for u in PLAN} - {victim.utt_id}  # rest prepared
    skipped = _summary(tmp_path / "prep")["skipped"]
    assert list(skipped) == [reason] and skipped[reason]["count"] == 1
    message = skipped[reason]["examples"][0]
    where = f"{_labels_csv(corpus)}, line {number} ({victim.file_name})"
    assert message.startswith(where), message
    assert expected in message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert where in logged and expected in logged


def test_empty_file_name_and_duplicate(corpus, tmp_path):
    a, b = _pick("Train", emo="A"), _pick("Test1", emo="S")
    number_a, line_a = _line_of(corpus, a.file_name)
    _replace_line(_labels_csv(corpus), line_a, "," + line_a.split(",", 1)[1])
    _, line_b = _line_of(corpus, b.file_name)
    path = _labels_csv(corpus)
    path.write_text(path.read_text() + line_b.replace(",Test1", ",Train") + "\n")
    n_lines = len(path.read_text().splitlines())
    data = _merged(_load(prep.prepare_msp_podcast(corpus, tmp_path / "prep")))
    assert a.utt_id not in data
    assert data[b.utt_id]["split"] == "Test1"  # the first row wins
    skipped = _summary(tmp_path / "prep")["skipped"]
    assert skipped["malformed_row"]["examples"] == [
        f"{path}, line {number_a}: empty FileName"
    ]
    duplicate = skipped["duplicate_file"]["examples"][0]
    assert duplicate.startswith(f"{path}, line {n_lines} ({b.file_name})")
    assert "labelled twice" in duplicate


def test_missing_audio_named(corpus, tmp_path):
    victim = _pick("Development", emo="F")
    (corpus / "Audios" / victim.file_name).unlink()
    number, _ = _line_of(corpus, victim.file_name)
    data = _merged(_load(prep.prepare_msp_podcast(corpus, tmp_path / "prep")))
    assert victim.utt_id not in data and len(data) == len(PLAN) - 1
    skipped = _summary(tmp_path / "prep")["skipped"]
    assert skipped["missing_audio"]["count"] == 1
    message = skipped["missing_audio"]["examples"][0]
    assert message.startswith(
        f"{_labels_csv(corpus)}, line {number} ({victim.file_name})"
    )
    assert "not found" in message


def test_missing_test3_audio_named_by_partitions_line(corpus, tmp_path):
    victim = _pick("Test3")
    (corpus / "Audios" / victim.file_name).unlink()
    lines = (corpus / "Partitions.txt").read_text().splitlines()
    number = lines.index(f"Test3; {victim.file_name}") + 1
    data = _merged(_load(prep.prepare_msp_podcast(corpus, tmp_path / "prep")))
    assert victim.utt_id not in data
    message = _summary(tmp_path / "prep")["skipped"]["missing_audio"]["examples"][0]
    assert message.startswith(f"{corpus / 'Partitions.txt'}, line {number}")


def test_bad_audio_skipped(corpus, tmp_path):
    victims = [_pick(split) for split in ("Train", "Development", "Test1", "Test2")]
    wavs = [corpus / "Audios" / u.file_name for u in victims]
    tone = 0.1 * np.sin(np.arange(16000) / 10)
    soundfile.write(wavs[0], np.stack([tone, tone], 1), 16000, subtype="PCM_16")
    soundfile.write(wavs[1], tone[:8000], 8000, subtype="PCM_16")
    soundfile.write(wavs[2], tone[:100], 16000, subtype="PCM_16")
    wavs[3].write_bytes(b"RIFF\x00\x00garbage")
    data = _merged(_load(prep.prepare_msp_podcast(corpus, tmp_path / "prep")))
    assert not {u.utt_id for u in victims} & set(data)
    assert len(data) == len(PLAN) - 4
    bad = _summary(tmp_path / "prep")["skipped"]["bad_audio"]
    assert bad["count"] == 4
    by_name = {
        u.file_name: m for u in victims for m in bad["examples"] if u.file_name in m
    }
    assert "expected mono" in by_name[victims[0].file_name]
    assert "8000 Hz, expected 16000 Hz" in by_name[victims[1].file_name]
    assert "too short" in by_name[victims[2].file_name]
    assert "corrupt" in by_name[victims[3].file_name]
    number, _ = _line_of(corpus, victims[0].file_name)
    assert by_name[victims[0].file_name].startswith(
        f"{_labels_csv(corpus)}, line {number}"
    )


# ------------------------------------------------------------- hard errors


def test_missing_labels_is_an_error(corpus, tmp_path):
    _labels_csv(corpus).unlink()
    with pytest.raises(PreparationError) as excinfo:
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    message = str(excinfo.value)
    assert str(corpus / "Labels") in message
    assert "labels_consensus.csv" in message and LABEL_HEADER in message
    shutil.rmtree(corpus / "Labels")
    with pytest.raises(PreparationError, match="Labels: folder not found"):
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    with pytest.raises(PreparationError, match="does not exist"):
        prep.prepare_msp_podcast(tmp_path / "nowhere", tmp_path / "prep")
    assert not (tmp_path / "prep").exists()


def test_missing_audios_is_an_error(corpus, tmp_path):
    for wav in (corpus / "Audios").glob("*.wav"):
        wav.unlink()
    with pytest.raises(PreparationError, match="no .wav file in it"):
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    shutil.rmtree(corpus / "Audios")
    with pytest.raises(PreparationError) as excinfo:
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    assert f"{corpus / 'Audios'}: folder not found" in str(excinfo.value)
    assert not (tmp_path / "prep").exists()


@pytest.mark.parametrize(
    "header",
    ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender", "", "a;b;c"],
)
def test_bad_header_is_an_error(corpus, tmp_path, header):
    path = _labels_csv(corpus)
    lines = path.read_text().split("\n")
    path.write_text("\n".join([header, *lines[1:]]) if header else "")
    with pytest.raises(PreparationError) as excinfo:
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    message = str(excinfo.value)
    assert str(path) in message and LABEL_HEADER in message
    assert "line 1" in message or "empty labels file" in message


def test_test3_needs_partitions(corpus, tmp_path, caplog):
    (corpus / "Partitions.txt").unlink()
    with pytest.raises(PreparationError, match="Partitions.txt: file not found"):
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    with caplog.at_level(logging.WARNING):
        paths = prep.prepare_msp_podcast(
            corpus, tmp_path / "prep", splits=("Train", "Test1")
        )
    assert set(paths) == {"Train", "Test1"}
    assert any("Partitions.txt: not found" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- splits


def test_partitions_disagreement_trusts_labels(corpus, tmp_path, caplog):
    moved = [_pick("Train", emo="N"), _pick("Test2", emo="C")]
    path = corpus / "Partitions.txt"
    _replace_line(path, f"Train; {moved[0].file_name}", f"Test1; {moved[0].file_name}")
    _replace_line(path, f"Test2; {moved[1].file_name}", f"Train; {moved[1].file_name}")
    path.write_text(path.read_text() + "Nonsense line\nTest7; x.wav\n")
    with caplog.at_level(logging.WARNING):
        data = _load(prep.prepare_msp_podcast(corpus, tmp_path / "prep"))
    assert moved[0].utt_id in data["Train"] and moved[1].utt_id in data["Test2"]
    summary = _summary(tmp_path / "prep")
    disagreements = summary["partitions"]["disagreements"]
    assert disagreements["count"] == 2
    example = next(e for e in disagreements["examples"] if moved[0].file_name in e)
    assert "Split_Set Train" in example and "but Test1" in example
    warning = [r.getMessage() for r in caplog.records if "disagrees" in r.getMessage()]
    assert (
        warning and "for 2 file(s)" in warning[0] and moved[0].file_name in warning[0]
    )
    bad_lines = summary["skipped"]["bad_partition_line"]
    assert bad_lines["count"] == 2
    assert any("unknown split 'Test7'" in m for m in bad_lines["examples"])


def test_speakers_disjoint_except_unknown(pristine, tmp_path):
    data = _load(prep.prepare_msp_podcast(pristine, tmp_path / "prep"))
    speakers = {
        split: {e["speaker"] for e in m.values()} - {None, "Unknown"}
        for split, m in data.items()
    }
    assert "Unknown" in {e["speaker"] for e in data["Train"].values()}
    for split in ("Development", "Test1", "Test2"):
        assert speakers[split] and not speakers[split] & speakers["Train"]
    summary = _summary(tmp_path / "prep")
    assert summary["speakers_shared_with_train"] == {}
    assert summary["speakers"]["Train"] == 4


def test_speaker_overlap_reported(corpus, tmp_path, caplog):
    train_speaker = next(
        u.speaker for u in PLAN if u.split == "Train" and u.speaker.isdigit()
    )
    victim = _pick("Test1")
    _, line = _line_of(corpus, victim.file_name)
    fields = line.split(",")
    fields[5] = train_speaker
    _replace_line(_labels_csv(corpus), line, ",".join(fields))
    with caplog.at_level(logging.WARNING):
        prep.prepare_msp_podcast(corpus, tmp_path / "prep")
    summary = _summary(tmp_path / "prep")
    assert summary["speakers_shared_with_train"] == {"Test1": [train_speaker]}
    assert any("not speaker-independent" in r.getMessage() for r in caplog.records)


def test_subset_of_splits(pristine, tmp_path):
    paths = prep.prepare_msp_podcast(
        pristine, tmp_path / "prep", splits=["test3", "Train"]
    )
    assert list(paths) == ["Test3", "Train"]
    assert {p.name for p in (tmp_path / "prep").iterdir()} == {
        "test3.json",
        "train.json",
        "prep_summary.json",
        "prepare_options.json",
        "waveform_stats.json",
    }


# ------------------------------------------------------------------ scale


def test_150k_rows_are_parsed_and_reported_with_bounded_reports(tmp_path):
    """The release's scale (timings: bench/preparation_speed.py)."""
    root = tmp_path / "big"
    make_label_table(root, rows=150_000)  # one malformed row, one audio file
    table = prep.read_labels(_labels_csv(root))
    assert len(table.rows) == 149_999 and table.n_rows == 150_000
    assert table.problems[0][1].startswith(f"{_labels_csv(root)}, line 780")

    # The whole preparation (every other file is missing) reports the
    # missing audio with bounded examples.
    splits = ("Train", "Development", "Test1", "Test2")
    paths = prep.prepare_msp_podcast(
        root, tmp_path / "prep", splits=splits, num_workers=2
    )
    assert len(json.loads(Path(paths["Train"]).read_text())) == 1
    skipped = _summary(tmp_path / "prep")["skipped"]
    assert skipped["missing_audio"]["count"] == 149_998
    assert len(skipped["missing_audio"]["examples"]) == 20


# ------------------------------------------------------- safety, idempotency


def test_idempotent_and_rebuild(pristine, tmp_path, caplog):
    save = tmp_path / "prep"
    paths = prep.prepare_msp_podcast(pristine, save)
    files = sorted(save.iterdir())
    old = 1_000_000_000_000_000_000
    for path in files:
        os.utime(path, ns=(old, old))
    with caplog.at_level(logging.INFO, logger=prep.logger.name):
        assert prep.prepare_msp_podcast(pristine, save, num_workers=1) == paths
    assert all(p.stat().st_mtime_ns == old for p in files)
    assert any("skipping" in r.getMessage() for r in caplog.records)

    # Changed options rebuild; manifests of splits no longer asked are removed.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=prep.logger.name):
        prep.prepare_msp_podcast(
            pristine, save, splits=("Train", "Test1"), emotions=("A", "H")
        )
    assert any(
        "changed options: emotions, splits" in r.getMessage() for r in caplog.records
    )
    assert {p.name for p in save.iterdir()} == {
        "train.json",
        "test1.json",
        "prep_summary.json",
        "prepare_options.json",
        "waveform_stats.json",
    }
    state = json.loads((save / "prepare_options.json").read_text())
    assert state["complete"] is True and state["written_by"] == "msp_podcast_prepare"
    assert state["options"]["emotions"] == ["A", "H"]
    train = json.loads((save / "train.json").read_text())
    assert {e["emo"] for e in train.values()} == {"A", "H", None}
    assert not [p for p in save.iterdir() if p.name.endswith(".tmp")]


def test_incomplete_previous_run_rebuilds(pristine, tmp_path):
    save = tmp_path / "prep"
    prep.prepare_msp_podcast(pristine, save)
    state_path = save / "prepare_options.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "complete": False}))
    (save / "train.json").write_text("{}")
    prep.prepare_msp_podcast(pristine, save)
    assert len(json.loads((save / "train.json").read_text())) == 36


def test_failed_rebuild_keeps_previous(corpus, tmp_path):
    save = tmp_path / "prep"
    prep.prepare_msp_podcast(corpus, save)
    before = {p.name: p.read_bytes() for p in save.iterdir()}
    _labels_csv(corpus).unlink()
    with pytest.raises(PreparationError):
        prep.prepare_msp_podcast(corpus, save, emotions=("A", "S"))
    assert {p.name: p.read_bytes() for p in save.iterdir()} == before


@pytest.mark.parametrize("name", ["train.json", "test3.json", "prep_summary.json"])
def test_refuses_foreign_manifests(pristine, tmp_path, name):
    save = tmp_path / "prep"
    save.mkdir()
    (save / name).write_text('{"mine": 1}')
    with pytest.raises(PreparationError) as excinfo:
        prep.prepare_msp_podcast(pristine, save)
    assert name in str(excinfo.value) and "refusing" in str(excinfo.value)
    assert (save / name).read_text() == '{"mine": 1}'
    assert sorted(p.name for p in save.iterdir()) == [name]


def test_refuses_other_preparations_folder(pristine, tmp_path):
    """A folder prepared by iemocap_prepare (or anything else) is not touched."""
    save = tmp_path / "prep"
    save.mkdir()
    options = save / "prepare_options.json"
    options.write_text(json.dumps({"written_by": "iemocap_prepare", "complete": True}))
    with pytest.raises(PreparationError, match="not written by msp_podcast_prepare"):
        prep.prepare_msp_podcast(pristine, save)
    options.write_text("not json")
    with pytest.raises(PreparationError, match="cannot be read"):
        prep.prepare_msp_podcast(pristine, save)
    assert options.read_text() == "not json"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"splits": "Train"}, "splits must be a list"),
        ({"splits": ("Train", "Valid")}, "unknown split 'Valid'"),
        ({"splits": ("Train", "train")}, "distinct"),
        ({"splits": ()}, "distinct"),
        ({"emotions": "ASH"}, "emotions must be a list"),
        ({"emotions": ("A", "Q")}, "unknown class letter"),
        ({"emotions": ("A",)}, "at least two distinct"),
        ({"sample_rate": 0}, "sample_rate must be an integer >= 1"),
        ({"min_samples": -1}, "min_samples must be an integer >= 0"),
        ({"num_workers": 1.5}, "num_workers must be an integer >= 0"),
    ],
)
def test_argument_validation(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prep.prepare_msp_podcast(tmp_path / "nowhere", tmp_path / "prep", **kwargs)


# ------------------------------------------------------------ command line


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    return subprocess.run(
        [sys.executable, str(RECIPE / "msp_podcast_prepare.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_command_line(pristine, tmp_path, capsys):
    save = tmp_path / "prep"
    done = _run(
        "--data_folder",
        pristine,
        "--save_folder",
        save,
        "--splits",
        "Train",
        "Test3",
        "--emotions",
        "A",
        "S",
        "H",
        "N",
        "--num_workers",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert f"Train: {save / 'train.json'}" in done.stdout
    assert f"Test3: {save / 'test3.json'}" in done.stdout
    assert "INFO" in done.stderr and "wrote Train 36, Test3 6" in done.stderr
    options = json.loads((save / "prepare_options.json").read_text())["options"]
    assert options["splits"] == ["Train", "Test3"]
    assert options["emotions"] == ["A", "S", "H", "N"]

    # The refusal through the same main() in this process.
    bad = prep.main(
        ["--data_folder", str(tmp_path / "nowhere"), "--save_folder", str(save)]
    )
    assert bad == 1  # an error line, not an exception (no traceback)
    err = capsys.readouterr().err
    assert "error:" in err and "nowhere" in err
