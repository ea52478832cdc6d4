"""Tests of recipes/IEMOCAP/iemocap_prepare.py on the synthetic corpus."""

import collections
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sser_lobes.dataio.splits import share_size

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "IEMOCAP"
for _path in (REPO, RECIPE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import iemocap_prepare as prep  # noqa: E402

from sser_lobes.synthetic.iemocap import corpus_labels, make_iemocap_corpus  # noqa: E402

TARGETS = ("neu", "hap", "exc", "sad", "ang")

BRIEF_SNIPPET = (
    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n"
    "\n"
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral;\t()\n"
    "C-F1:\tNeutral; Anger;\t(curious)\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\n"
    "\n"
    "[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5000, 4.0000, 3.0000]\n"
    "C-E2:\tExcited;\t()\n"
    "A-E3:\tval 4; act 4; dom  3;\t()\n"
    "\n"
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The generated corpus; never modified (copy it with ``corpus``)."""
    return make_iemocap_corpus(tmp_path_factory.mktemp("pristine"), seed=0)


@pytest.fixture
def corpus(pristine, tmp_path):
    """A private copy of the corpus that a test may modify."""
    root = tmp_path / "data" / "IEMOCAP_full_release"
    shutil.copytree(pristine, root)
    return root


def _load(paths, labelled=True):
    """The manifests; by default their labelled entries only (the xxx / oth
    utterances kept for their votes are tested in test_votes.py)."""
    data = {split: json.loads(Path(p).read_text()) for split, p in paths.items()}
    if labelled:
        data = {
            split: {u: e for u, e in entries.items() if e["emo"] is not None}
            for split, entries in data.items()
        }
    return data


def _speakers(manifest):
    return {entry["speaker"] for entry in manifest.values()}


def _expected(merge=True):
    out = {}
    for utt, code, gender in corpus_labels():
        if code == "exc":
            if not merge:
                continue
            code = "hap"
        if code in ("neu", "hap", "sad", "ang"):
            out[utt] = (code, gender)
    return out


def _replace_in(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# ----------------------------------------------------------------- parsing


def test_parse_brief_snippet(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text(BRIEF_SNIPPET, encoding="utf-8")
    labels = prep.parse_emo_evaluation(path)
    assert [(x.utt_id, x.code, x.line) for x in labels] == [
        ("Ses01F_impro01_F000", "neu", 3),
        ("Ses01F_impro01_M000", "exc", 8),
    ]
    first, second = labels
    assert (first.start, first.end) == (6.2901, 8.2357)
    assert (first.valence, first.arousal, first.dominance) == (2.5, 2.5, 2.5)
    # The side letter of Ses01F is not the speaker: _M000 is a male speaker.
    assert (second.gender, second.speaker, second.session) == ("M", "Ses01M", 1)
    assert (first.gender, first.speaker) == ("F", "Ses01F")


def test_parse_transcription_quirks(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        "Ses01F_impro01_MXX0 [010.0000-011.0000]: [BREATHING]\n"
        "M: [LAUGHTER]\n"
        "\n"
        "Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?\n",
        encoding="utf-8",
    )
    texts = prep.parse_transcription(path)
    assert texts["Ses01F_impro01_F000"] == "Excuse me."
    assert texts["Ses01F_impro01_M000"] == "Do you have your forms?"
    assert "M" not in texts and len(texts) == 3  # the XX0 line is never looked up


def test_manifests_content(corpus, tmp_path):
    paths = prep.prepare_iemocap(corpus, tmp_path / "prep")
    assert set(paths) == {"train", "valid", "test"}
    data = _load(paths)
    merged = {utt: e for m in data.values() for utt, e in m.items()}
    assert sum(len(m) for m in data.values()) == len(merged)  # disjoint
    expected = _expected()
    assert set(merged) == set(expected)
    plan_text = {}
    for path in corpus.glob("Session*/dialog/transcriptions/Ses*.txt"):
        plan_text.update(prep.parse_transcription(path))
    for utt, entry in merged.items():
        assert set(entry) == {
            "wav",
            "duration",
            "emo",
            "gender",
            "speaker",
            "session",
            "text",
            "votes",
        }
        assert os.path.isabs(entry["wav"]) and os.path.isfile(entry["wav"])
        assert Path(entry["wav"]).name == f"{utt}.wav"
        assert entry["duration"] == pytest.approx(soundfile.info(entry["wav"]).duration)
        assert (entry["emo"], entry["gender"]) == expected[utt]
        assert entry["speaker"] == utt[:5] + entry["gender"]
        assert entry["session"] == int(utt[4]) and isinstance(entry["session"], int)
        assert entry["text"] == plan_text[utt]
    # Everything written: manifests, protocol and options.
    folder = tmp_path / "prep"
    assert {p.name for p in folder.iterdir()} == {
        "train.json",
        "valid.json",
        "test.json",
        "split_info.json",
        "prepare_options.json",
    }


def test_quirk_files_are_skipped(corpus, tmp_path):
    """``._*`` files and the decoy subfolders are never parsed."""
    emo = corpus / "Session1" / "dialog" / "EmoEvaluation"
    bad_line = "[1.0 - 2.0]\tSes01F_impro01_F900\tjoy\t[1, 2, 3]\n"
    (emo / "._Ses01F_impro01.txt").write_text(bad_line + "garbage [\n")
    (emo / "Self-evaluation" / "Ses01F_extra.txt").write_text(bad_line)
    (emo / "Categorical" / "Ses01F_impro01_e9_cat.txt").write_text(bad_line)
    (emo / "Attribute" / "Ses01F_impro01_e9_atr.txt").write_text(bad_line)
    trans = corpus / "Session1" / "dialog" / "transcriptions"
    (trans / "._Ses01F_impro01.txt").write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: WRONG TEXT\n"
    )
    data = _load(prep.prepare_iemocap(corpus, tmp_path / "prep"))
    merged = {utt: e for m in data.values() for utt, e in m.items()}
    assert set(merged) == set(_expected())
    assert all(e["text"] != "WRONG TEXT" for e in merged.values())


def test_exc_merge_on_off(corpus, tmp_path):
    exc = {u for u, code, _ in corpus_labels() if code == "exc"}
    assert exc
    on = _load(prep.prepare_iemocap(corpus, tmp_path / "on"))
    merged = {u: e for m in on.values() for u, e in m.items()}
    assert all(merged[u]["emo"] == "hap" for u in exc)

    off = _load(
        prep.prepare_iemocap(corpus, tmp_path / "off", merge_exc_into_hap=False)
    )
    merged = {u: e for m in off.values() for u, e in m.items()}
    assert not exc & set(merged)
    assert set(merged) == set(_expected(merge=False))

    five = _load(
        prep.prepare_iemocap(
            corpus,
            tmp_path / "five",
            merge_exc_into_hap=False,
            emotions=("neu", "hap", "exc", "sad", "ang"),
        )
    )
    merged = {u: e for m in five.values() for u, e in m.items()}
    assert {u for u, e in merged.items() if e["emo"] == "exc"} == exc


def _first_label_line(path):
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("["):
            return number, line
    raise AssertionError(path)


def test_unknown_code_names_file_and_line(corpus, tmp_path):
    path = corpus / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_impro02.txt"
    number, line = _first_label_line(path)
    code = line.split("\t")[2]
    _replace_in(path, f"\t{code}\t", "\tjoy\t")
    with pytest.raises(prep.PreparationError) as excinfo:
        prep.prepare_iemocap(corpus, tmp_path / "prep")
    message = str(excinfo.value)
    assert f"{path}, line {number}" in message
    assert "unknown emotion code 'joy'" in message
    assert not (tmp_path / "prep").exists()  # nothing written


@pytest.mark.parametrize(
    "mangle",
    [
        lambda line: line.rsplit("\t", 1)[0],  # no [V, A, D]
        lambda line: line.replace(" - ", " to "),  # bad times
        lambda line: line.replace("[", "[x", 1).replace(", ", ",, ", 1),
        lambda line: line.replace("]\t", "]\t[2.5, 3]\t", 1).rsplit("\t", 1)[0],
    ],
)
def test_malformed_label_line(corpus, tmp_path, mangle):
    path = corpus / "Session3" / "dialog" / "EmoEvaluation" / "Ses03M_script03_1.txt"
    number, line = _first_label_line(path)
    _replace_in(path, line, mangle(line))
    with pytest.raises(prep.PreparationError) as excinfo:
        prep.prepare_iemocap(corpus, tmp_path / "prep")
    assert f"{path}, line {number}" in str(excinfo.value)
    assert "malformed" in str(excinfo.value)


def test_malformed_vad_and_id(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text("\n[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[2.5, x, 2.5]\n")
    with pytest.raises(prep.PreparationError, match=r"line 2: malformed \[V, A, D\]"):
        prep.parse_emo_evaluation(path)
    path.write_text("[1.0 - 2.0]\tSes01F_impro01_Q000\tneu\t[2.5, 2.5, 2.5]\n")
    with pytest.raises(prep.PreparationError, match="line 1: malformed utterance id"):
        prep.parse_emo_evaluation(path)


def test_missing_session_folder(corpus, tmp_path):
    shutil.move(corpus / "Session3", tmp_path / "moved")
    with pytest.raises(prep.PreparationError) as excinfo:
        prep.prepare_iemocap(corpus, tmp_path / "prep")
    message = str(excinfo.value)
    assert "Session3" in message and "Session1 ... Session5" in message
    assert "Session2," not in message
    # The parent folder is accepted as data_folder too.
    with pytest.raises(prep.PreparationError, match="missing folder"):
        prep.prepare_iemocap(corpus.parent, tmp_path / "prep")
    with pytest.raises(prep.PreparationError, match="does not exist"):
        prep.prepare_iemocap(tmp_path / "nowhere", tmp_path / "prep")


def test_parent_folder_accepted(corpus, tmp_path):
    a = _load(prep.prepare_iemocap(corpus, tmp_path / "a"))
    b = _load(prep.prepare_iemocap(corpus.parent, tmp_path / "b"))
    assert a == b


def test_missing_wav_named(corpus, tmp_path):
    utt = next(u for u, code, _ in corpus_labels() if code == "sad")
    wav = next(corpus.glob(f"Session*/sentences/wav/*/{utt}.wav"))
    wav.unlink()
    with pytest.raises(prep.PreparationError) as excinfo:
        prep.prepare_iemocap(corpus, tmp_path / "prep")
    message = str(excinfo.value)
    assert f"{wav}: file not found" in message
    assert message.startswith("1 audio file(s)")


def test_non_target_wav_not_checked(corpus, tmp_path):
    utt = next(u for u, code, _ in corpus_labels() if code == "fru")
    next(corpus.glob(f"Session*/sentences/wav/*/{utt}.wav")).unlink()
    prep.prepare_iemocap(corpus, tmp_path / "prep")


def test_bad_audio_all_listed(corpus, tmp_path):
    targets = [u for u, code, _ in corpus_labels() if code in TARGETS]
    wavs = {u: next(corpus.glob(f"Session*/sentences/wav/*/{u}.wav")) for u in targets}
    stereo, narrow, *removed = targets[:27]
    tone = 0.1 * np.sin(np.arange(16000) / 10)
    soundfile.write(wavs[stereo], np.stack([tone, tone], 1), 16000, subtype="PCM_16")
    soundfile.write(wavs[narrow], tone[:8000], 8000, subtype="PCM_16")
    for utt in removed:
        wavs[utt].unlink()
    with pytest.raises(prep.PreparationError) as excinfo:
        prep.prepare_iemocap(corpus, tmp_path / "prep")
    message = str(excinfo.value)
    assert message.startswith("27 audio file(s)")
    assert "... and 7 more" in message
    assert message.count("\n  - ") == 20
    problems = message.split("\n")
    stereo_line = next(x for x in problems if wavs[stereo].name in x)
    assert "stereo" in stereo_line and "expected mono" in stereo_line
    narrow_line = next(x for x in problems if wavs[narrow].name in x)
    assert "8000 Hz, expected 16000 Hz" in narrow_line


def test_missing_transcript_null_and_warning(corpus, tmp_path, caplog):
    utt = "Ses01F_impro01_F000"
    path = corpus / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(x for x in lines if not x.startswith(utt + " ")) + "\n")
    with caplog.at_level(logging.WARNING):
        data = _load(prep.prepare_iemocap(corpus, tmp_path / "prep"))
    merged = {u: e for m in data.values() for u, e in m.items()}
    assert merged[utt]["text"] is None
    assert sum(e["text"] is None for e in merged.values()) == 1
    warning = [r.getMessage() for r in caplog.records if "transcript" in r.getMessage()]
    assert warning and "1 of 60 utterances" in warning[0] and utt in warning[0]


def test_count_warning_not_exit(corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        paths = prep.prepare_iemocap(corpus, tmp_path / "prep")
    assert all(Path(p).exists() for p in paths.values())
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("5,531" in m and "Found 60 utterances" in m for m in messages)
    info = json.loads((tmp_path / "prep" / "split_info.json").read_text())
    assert info["full_release"] is False


# ------------------------------------------------------------------ splits


@pytest.mark.parametrize("session", [1, 5])
def test_loso(pristine, tmp_path, session):
    paths = prep.prepare_iemocap(pristine, tmp_path / "prep", test_session=session)
    data = _load(paths)
    test_speakers = {f"Ses0{session}F", f"Ses0{session}M"}
    assert _speakers(data["test"]) == test_speakers
    assert not test_speakers & (_speakers(data["train"]) | _speakers(data["valid"]))
    in_session = {u for u in _expected() if int(u[4]) == session}
    assert set(data["test"]) == in_session
    # valid: 10 % of the other sessions, stratified: every class is present
    rest = [u for u in _expected() if int(u[4]) != session]
    per_class = collections.Counter(
        data["train"].get(u, data["valid"].get(u, {})).get("emo") for u in rest
    )
    assert len(data["valid"]) == sum(share_size(n, 0.1) for n in per_class.values())
    assert {e["emo"] for e in data["valid"].values()} == {"neu", "hap", "sad", "ang"}
    info = json.loads((tmp_path / "prep" / "split_info.json").read_text())
    assert info["split_mode"] == "loso" and info["speaker_independent"] is True
    assert info["protocol"] == "IEMOCAP leave-one-session-out (speaker-independent)"
    assert "stratified by class" in info["split_description"]
    assert info["test_session"] == session
    assert info["counts"]["test"]["total"] == len(in_session)
    assert sum(info["counts"]["test"][c] for c in ("neu", "hap", "sad", "ang")) == len(
        in_session
    )
    assert info["data_folder"] == str(pristine)


def test_lospk(pristine, tmp_path):
    data = _load(
        prep.prepare_iemocap(
            pristine, tmp_path / "prep", split_mode="lospk", test_speaker="Ses03M"
        )
    )
    assert _speakers(data["test"]) == {"Ses03M"}
    assert _speakers(data["valid"]) == {"Ses03F"}
    assert not {"Ses03F", "Ses03M"} & _speakers(data["train"])
    assert len(_speakers(data["train"])) == 8
    expected = _expected()
    assert set(data["test"]) == {
        u for u, (_, g) in expected.items() if u[4] == "3" and g == "M"
    }
    assert set(data["valid"]) == {
        u for u, (_, g) in expected.items() if u[4] == "3" and g == "F"
    }
    info = json.loads((tmp_path / "prep" / "split_info.json").read_text())
    assert info["speaker_independent"] is True
    assert (info["test_speaker"], info["test_session"]) == ("Ses03M", 3)


def test_random_split(pristine, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        data = _load(
            prep.prepare_iemocap(pristine, tmp_path / "prep", split_mode="random")
        )
    assert [len(data[s]) for s in ("train", "valid", "test")] == [48, 6, 6]
    info = json.loads((tmp_path / "prep" / "split_info.json").read_text())
    assert info["speaker_independent"] is False
    assert "speaker-DEPENDENT" in info["protocol"] and "warning" in info
    assert "speaker-DEPENDENT" in info["split_description"]
    assert any("speaker-DEPENDENT" in r.getMessage() for r in caplog.records)


def test_seeds_reproducible(pristine, tmp_path):
    for mode in ("loso", "random"):
        a = _load(
            prep.prepare_iemocap(pristine, tmp_path / f"{mode}a", split_mode=mode)
        )
        b = _load(
            prep.prepare_iemocap(pristine, tmp_path / f"{mode}b", split_mode=mode)
        )
        c = _load(
            prep.prepare_iemocap(
                pristine, tmp_path / f"{mode}c", split_mode=mode, seed=7
            )
        )
        assert a == b
        assert set(a["valid"]) != set(c["valid"])


# ------------------------------------------------------- safety, idempotency


def test_idempotent_and_rebuild(pristine, tmp_path, caplog):
    save = tmp_path / "prep"
    paths = prep.prepare_iemocap(pristine, save)
    files = sorted(save.iterdir())
    old = 1_000_000_000_000_000_000
    for path in files:
        os.utime(path, ns=(old, old))
    with caplog.at_level(logging.INFO, logger=prep.logger.name):
        assert prep.prepare_iemocap(pristine, save) == paths
    assert all(p.stat().st_mtime_ns == old for p in files)
    assert any("skipping" in r.getMessage() for r in caplog.records)

    before = json.loads(Path(paths["valid"]).read_text())
    prep.prepare_iemocap(pristine, save, seed=5)
    assert all(p.stat().st_mtime_ns != old for p in files)
    assert json.loads(Path(paths["valid"]).read_text()) != before
    options = json.loads((save / "prepare_options.json").read_text())
    assert options["complete"] is True and options["options"]["seed"] == 5
    assert not [p for p in save.iterdir() if p.name.endswith(".tmp")]


def test_failed_rebuild_keeps_previous(corpus, tmp_path):
    save = tmp_path / "prep"
    paths = prep.prepare_iemocap(corpus, save)
    before = {p.name: p.read_bytes() for p in save.iterdir()}
    next(corpus.glob("Session1/sentences/wav/*/Ses*.wav")).unlink()
    with pytest.raises(prep.PreparationError):
        prep.prepare_iemocap(corpus, save, seed=5)
    assert {p.name: p.read_bytes() for p in save.iterdir()} == before
    assert Path(paths["train"]).exists()


@pytest.mark.parametrize("name", ["train.json", "split_info.json"])
def test_refuses_foreign_manifests(pristine, tmp_path, name):
    save = tmp_path / "prep"
    save.mkdir()
    (save / name).write_text('{"mine": 1}')
    with pytest.raises(prep.PreparationError) as excinfo:
        prep.prepare_iemocap(pristine, save)
    assert name in str(excinfo.value) and "refusing" in str(excinfo.value)
    assert (save / name).read_text() == '{"mine": 1}'
    assert sorted(p.name for p in save.iterdir()) == [name]


def test_refuses_foreign_options_file(pristine, tmp_path):
    save = tmp_path / "prep"
    save.mkdir()
    (save / "prepare_options.json").write_text("{}")
    with pytest.raises(prep.PreparationError, match="not written by iemocap_prepare"):
        prep.prepare_iemocap(pristine, save)
    (save / "prepare_options.json").write_text("not json")
    with pytest.raises(prep.PreparationError, match="cannot be read"):
        prep.prepare_iemocap(pristine, save)
    assert (save / "prepare_options.json").read_text() == "not json"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split_mode": "kfold"}, "split_mode must be one of"),
        ({"test_session": 0}, "test_session must be an integer 1-5"),
        ({"test_session": 6}, "test_session must be an integer 1-5"),
        ({"test_session": "5"}, "test_session must be an integer 1-5"),
        ({"split_mode": "lospk"}, "needs test_speaker"),
        ({"split_mode": "lospk", "test_speaker": "ses1F"}, "look like 'Ses01F'"),
        ({"split_mode": "lospk", "test_speaker": "Ses06F"}, "look like 'Ses01F'"),
        ({"test_speaker": "Ses01F"}, "only used with split_mode='lospk'"),
        ({"valid_ratio": 0.0}, r"valid_ratio must be a number in \(0, 1\)"),
        ({"valid_ratio": 1.0}, r"valid_ratio must be a number in \(0, 1\)"),
        ({"emotions": "neu,hap"}, "emotions must be a list"),
        ({"emotions": ("neu", "joy")}, "unknown emotion code"),
        ({"emotions": ("neu", "neu")}, "distinct"),
        ({"emotions": ("neu", "hap", "exc")}, "merge_exc_into_hap=True"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_argument_validation(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prep.prepare_iemocap(tmp_path / "nowhere", tmp_path / "prep", **kwargs)


# ------------------------------------------------------------ command line


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, str(RECIPE / "iemocap_prepare.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_command_line(pristine, tmp_path, capsys):
    """The command line once as a subprocess (a success: printed paths, the
    log on stderr); its refusals through the same main() in this process."""
    save = tmp_path / "prep"
    done = _run(
        "--data_folder",
        pristine,
        "--save_folder",
        save,
        "--split_mode",
        "lospk",
        "--test_session",
        "1",
        "--test_speaker",
        "Ses01F",
        "--seed",
        "3",
        "--valid_ratio",
        "0.2",
        "--no_merge_exc",
    )
    assert done.returncode == 0, done.stderr
    assert f"test: {save / 'test.json'}" in done.stdout
    # Non-default classes (exc not merged): no full-release count to compare.
    assert "count check is skipped" in done.stderr
    options = json.loads((save / "prepare_options.json").read_text())["options"]
    assert options["merge_exc_into_hap"] is False and options["seed"] == 3
    assert options["test_speaker"] == "Ses01F"
    test = json.loads((save / "test.json").read_text())
    assert _speakers(test) == {"Ses01F"}

    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        prep.main(
            [
                "--data_folder",
                str(pristine),
                "--save_folder",
                str(tmp_path / "other"),
                "--split_mode",
                "lospk",
                "--test_session",
                "2",
                "--test_speaker",
                "Ses01F",
            ]
        )
    assert exit_info.value.code == 2 and "does not match" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()

    bad = prep.main(
        ["--data_folder", str(tmp_path / "nowhere"), "--save_folder", str(save)]
    )
    assert bad == 1  # an error line, not an exception (no traceback)
    err = capsys.readouterr().err
    assert "error:" in err and "nowhere" in err
