"""Tests of the synthetic MSP-Podcast-format corpus generator."""

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sser_lobes.synthetic.msp_podcast import (  # noqa: E402
    CLASS_CUES,
    CLASSES,
    LABEL_HEADER,
    ROOT_NAME,
    SPLITS,
    main,
    make_msp_podcast_corpus,
    plan_corpus,
)

NAME = r"MSP-PODCAST_\d{4}_\d{4}\.wav"
ROW_RE = re.compile(
    rf"^({NAME}),([ASHUFDCNOX]),([1-7]\.\d),([1-7]\.\d),([1-7]\.\d),"
    r"(\d+|Unknown),(Male|Female),(Train|Development|Test1|Test2)$"
)
PARTITION_RE = re.compile(rf"^(Train|Development|Test1|Test2|Test3); ({NAME})$")
LABELLED = ("Train", "Development", "Test1", "Test2")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_msp_podcast_corpus(tmp_path_factory.mktemp("msp"), seed=0)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """More utterances per class, with acoustic measurements of every file."""
    root = make_msp_podcast_corpus(
        tmp_path_factory.mktemp("msp_big"), utterances_per_class=6, seed=1
    )
    plan = plan_corpus(utterances_per_class=6, seed=1)
    return root, plan, _features(root, plan)


def _label_lines(root):
    return (root / "Labels" / "labels_consensus.csv").read_text().split("\n")


def test_layout_and_label_syntax(corpus):
    assert corpus.name == ROOT_NAME == "MSP-PODCAST-Publish-1.11"
    assert sorted(p.name for p in corpus.iterdir()) == [
        "Audios",
        "Labels",
        "Partitions.txt",
        "Transcripts",
    ]
    assert sorted(p.name for p in (corpus / "Labels").iterdir()) == [
        "labels_consensus.csv",
        "labels_detailed.csv",
    ]
    lines = _label_lines(corpus)
    assert lines[0] == LABEL_HEADER
    assert LABEL_HEADER == (
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
    )
    assert lines[-1] == "" and lines[-2] != ""  # ends with one newline
    rows = lines[1:-1]
    assert all(ROW_RE.match(row) for row in rows), [
        r for r in rows if not ROW_RE.match(r)
    ]
    names = [row.split(",", 1)[0] for row in rows]
    assert names == sorted(names) and len(set(names)) == len(names)
    plan = plan_corpus(seed=0)
    assert rows == sorted(u.label_row() for u in plan if u.labelled)


def test_brief_row_syntax():
    """The brief's example row is reproduced byte for byte."""
    from sser_lobes.synthetic.msp_podcast import PlannedUtterance

    utt = PlannedUtterance(
        "MSP-PODCAST_0001_0008.wav",
        "N",
        "Test1",
        "30",
        "Male",
        2.2,
        4.0,
        2.6,
        1.0,
        "x",
        True,
        140.0,
        0.1,
        4.0,
    )
    assert utt.label_row() == "MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1"


def test_partitions_audio_transcripts(corpus):
    plan = plan_corpus(seed=0)
    lines = (corpus / "Partitions.txt").read_text().split("\n")
    assert lines[-1] == ""
    listed = {}
    for line in lines[:-1]:
        match = PARTITION_RE.match(line)
        assert match, line
        listed[match.group(2)] = match.group(1)
    assert listed == {u.file_name: u.split for u in plan}
    wavs = sorted(p.name for p in (corpus / "Audios").iterdir())
    assert wavs == sorted(listed)
    for name in wavs:
        info = soundfile.info(corpus / "Audios" / name)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 - 1e-3 <= info.duration <= 2.0 + 1e-3
    # Transcripts: one line for most labelled files, none for Test3.
    transcripts = {p.stem: p for p in (corpus / "Transcripts").iterdir()}
    expected = {u.utt_id for u in plan if u.has_transcript}
    assert set(transcripts) == expected
    for u in plan:
        if u.has_transcript:
            text = transcripts[u.utt_id].read_text(encoding="utf-8")
            assert text == u.text + "\n" and "\n" not in u.text
    missing = [u for u in plan if u.labelled and not u.has_transcript]
    assert 1 <= len(missing) <= 0.1 * sum(u.labelled for u in plan)
    test3 = [u for u in plan if u.split == "Test3"]
    assert len(test3) == 6 and not any(u.has_transcript for u in test3)
    labelled_names = {line.split(",", 1)[0] for line in _label_lines(corpus)[1:-1]}
    assert not labelled_names & {u.file_name for u in test3}


def test_classes_splits_and_speakers():
    plan = plan_corpus(utterances_per_class=4, seed=0, test3_utterances=8)
    counts = defaultdict(Counter)
    for u in plan:
        counts[u.split][u.emo_class] += 1
    assert counts["Train"] == Counter({**dict.fromkeys(CLASSES, 4), "O": 2, "X": 2})
    for split in ("Development", "Test1", "Test2"):
        assert counts[split] == Counter({**dict.fromkeys(CLASSES, 2), "O": 1, "X": 1})
    assert counts["Test3"] == Counter(dict.fromkeys(CLASSES, 1))  # balanced
    assert set(SPLITS) == set(counts)

    speakers = defaultdict(set)
    podcasts = defaultdict(set)
    for u in plan:
        podcasts[u.split].add(u.file_name.split("_")[1])
        if u.speaker != "Unknown":
            assert u.speaker.isdigit()
            speakers[u.split].add(u.speaker)
        assert u.gender in ("Male", "Female")
    unknown = [u for u in plan if u.speaker == "Unknown"]
    assert {u.split for u in unknown} <= {"Train", "Development"}
    assert any(u.split == "Train" for u in unknown)
    assert {u.gender for u in unknown} <= {"Male", "Female"}
    # Speakers never straddle splits (Unknown aside); Test2 podcasts are unique.
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not speakers[a] & speakers[b], (a, b)
    others = set().union(*(podcasts[s] for s in SPLITS if s != "Test2"))
    assert not podcasts["Test2"] & others
    # Each speaker talks in several classes (speaker and class not confounded).
    per_speaker = defaultdict(set)
    for u in plan:
        if u.split == "Train" and u.speaker != "Unknown":
            per_speaker[u.speaker].add(u.emo_class)
    assert len(per_speaker) == 4 and all(len(c) >= 6 for c in per_speaker.values())
    # Genders of each split are mixed.
    for split in SPLITS:
        assert {u.gender for u in plan if u.split == split} == {"Male", "Female"}


def test_attributes_valid_and_follow_classes():
    plan = plan_corpus(utterances_per_class=12, seed=3)
    for u in plan:
        for value in (u.arousal, u.valence, u.dominance):
            assert 1.0 <= value <= 7.0 and round(value, 1) == value
    mean = {
        c: np.mean(
            [(u.arousal, u.valence, u.dominance) for u in plan if u.emo_class == c], 0
        )
        for c in CLASS_CUES
    }
    val = {c: m[1] for c, m in mean.items()}
    assert min(val["H"], val["U"]) > val["N"] > max(val[c] for c in "ASDC")
    aro = {c: m[0] for c, m in mean.items()}
    assert aro["A"] > aro["N"] > aro["S"] and aro["H"] > aro["C"]
    dom = {c: m[2] for c, m in mean.items()}
    assert dom["A"] > dom["N"] > dom["S"]


def test_nested_audio_and_json_labels(tmp_path):
    kwargs = {"utterances_per_class": 2, "min_duration": 0.3, "max_duration": 0.5}
    nested = make_msp_podcast_corpus(tmp_path / "n", nested_audio=True, **kwargs)
    assert not list((nested / "Audios").glob("*.wav"))
    assert len(list((nested / "Audios" / "Audios").glob("*.wav"))) == 54

    both = make_msp_podcast_corpus(tmp_path / "b", labels_format="both", **kwargs)
    data = json.loads((both / "Labels" / "labels_consensus.json").read_text())
    rows = _label_lines(both)[1:-1]
    assert list(data) == [row.split(",", 1)[0] for row in rows]
    for row in rows:
        name, emo, act, val, dom, spk, gender, split = row.split(",")
        entry = data[name]
        assert set(entry) == set(LABEL_HEADER.split(",")[1:])
        assert entry["EmoClass"] == emo and entry["EmoAct"] == float(act)
        assert (entry["EmoVal"], entry["EmoDom"]) == (float(val), float(dom))
        assert entry["SpkrID"] == (spk if spk == "Unknown" else int(spk))
        assert (entry["Gender"], entry["Split_Set"]) == (gender, split)

    only = make_msp_podcast_corpus(
        tmp_path / "j", labels_format="json", detailed_format=None, **kwargs
    )
    assert [p.name for p in (only / "Labels").iterdir()] == ["labels_consensus.json"]


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_deterministic(tmp_path):
    kwargs = {"utterances_per_class": 2, "min_duration": 0.3, "max_duration": 0.6}
    a = make_msp_podcast_corpus(tmp_path / "a", seed=3, **kwargs)
    b = make_msp_podcast_corpus(tmp_path / "b", seed=3, **kwargs)
    c = make_msp_podcast_corpus(tmp_path / "c", seed=4, **kwargs)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert plan_corpus(2, seed=3) == plan_corpus(2, seed=3)


def test_refuses_non_empty_folder(tmp_path):
    root = tmp_path / ROOT_NAME
    root.mkdir()  # empty: accepted
    make_msp_podcast_corpus(
        tmp_path, utterances_per_class=1, min_duration=0.3, max_duration=0.4
    )
    before = _digest(root)
    with pytest.raises(FileExistsError, match="not empty"):
        make_msp_podcast_corpus(tmp_path, utterances_per_class=1)
    assert _digest(root) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"utterances_per_class": 0},
        {"utterances_per_class": 1.5},
        {"min_duration": 2.0, "max_duration": 1.0},
        {"min_duration": 0.0},
        {"test3_utterances": -1},
        {"labels_format": "xlsx"},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_msp_podcast_corpus(tmp_path, **kwargs)
    assert not (tmp_path / ROOT_NAME).exists()


def test_default_corpus_has_96_files(tmp_path):
    """Its generation time is measured by bench/preparation_speed.py."""
    root = make_msp_podcast_corpus(tmp_path)  # 96 files of 1-2 s
    assert len(list((root / "Audios").iterdir())) == 96


def _pitch(x, sr=16000):
    """Autocorrelation pitch estimate (smallest lag within 10 % of the peak)."""
    x = x - x.mean()
    spectrum = np.fft.rfft(x, 2 * len(x))
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[: len(x)]
    lo, hi = sr // 500, sr // 60
    window = acf[lo:hi]
    return sr / (lo + int(np.argmax(window >= 0.9 * window.max())))


def _rate(x, sr=16000):
    """Syllable rate: peak of the spectrum of the 10 ms RMS envelope."""
    hop = sr // 100
    n = len(x) // hop
    envelope = np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(1))
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean(), 4096))
    freqs = np.fft.rfftfreq(4096, hop / sr)
    band = (freqs > 0.8) & (freqs < 12)
    return float(freqs[band][np.argmax(spectrum[band])])


def _centroid(x, sr=16000):
    power = np.abs(np.fft.rfft(x)) ** 2
    return float((power * np.fft.rfftfreq(len(x), 1 / sr)).sum() / power.sum())


def _features(root, plan):
    feats = []
    for u in plan:
        x, sr = soundfile.read(root / "Audios" / u.file_name)
        feats.append(
            (np.sqrt(np.mean(x**2)), _pitch(x, sr), _rate(x, sr), _centroid(x, sr))
        )
    return np.array(feats)


def test_class_cues_are_measurable(big):
    _, plan, feats = big
    codes = np.array([u.emo_class for u in plan])
    mean = {c: feats[codes == c].mean(0) for c in CLASS_CUES}
    rms, pitch, rate, centroid = ({c: m[i] for c, m in mean.items()} for i in range(4))
    assert rms["A"] > rms["H"] > rms["N"] > rms["S"]
    assert rms["H"] > rms["F"] and rms["D"] > rms["C"]
    assert pitch["U"] > pitch["H"] > pitch["A"] > pitch["N"] > pitch["S"]
    assert rate["F"] > rate["H"] > rate["N"] > rate["U"] > rate["S"]
    assert rate["N"] > rate["C"]
    assert centroid["A"] > centroid["H"] > centroid["N"] > centroid["S"]
    assert centroid["D"] > centroid["C"]
    # Designed values are roughly met (female speakers are 15 % higher).
    for c in ("S", "H", "F"):
        assert 0.8 * CLASS_CUES[c].am_rate < rate[c] < 1.2 * CLASS_CUES[c].am_rate
    assert 0.9 * CLASS_CUES["S"].f0 < pitch["S"] < 1.3 * CLASS_CUES["S"].f0

    # Learnable without the energy cue (the recipes normalise the waveform):
    # a nearest-centroid rule on log pitch, log rate and brightness, fitted on
    # Train, classifies the 8 classes of the other labelled splits.
    split = np.array([u.split for u in plan])
    target = np.isin(codes, CLASSES)
    z = np.column_stack([np.log(feats[:, 1]), np.log(feats[:, 2]), feats[:, 3]])
    train = target & (split == "Train")
    z = (z - z[train].mean(0)) / z[train].std(0)
    centres = np.array([z[train & (codes == c)].mean(0) for c in CLASSES])
    test = target & np.isin(split, ("Development", "Test1", "Test2"))
    distances = ((z[test, None, :] - centres[None]) ** 2).sum(-1)
    predicted = np.array(CLASSES)[distances.argmin(1)]
    assert (predicted == codes[test]).mean() >= 0.9


def test_attributes_correlate_with_cues(big):
    _, plan, feats = big
    arousal = np.array([u.arousal for u in plan])
    dominance = np.array([u.dominance for u in plan])
    log_rms, log_rate = np.log(feats[:, 0]), np.log(feats[:, 2])
    assert np.corrcoef(arousal, log_rms)[0, 1] > 0.6
    assert np.corrcoef(arousal, log_rate)[0, 1] > 0.6
    assert np.corrcoef(dominance, log_rms)[0, 1] > 0.7
    # The planned cues are those of the audio.
    planned_rate = np.array([u.am_rate for u in plan])
    assert np.corrcoef(np.log(planned_rate), log_rate)[0, 1] > 0.9


def test_female_speakers_higher():
    plan = plan_corpus(utterances_per_class=6, seed=1)
    f0 = defaultdict(list)
    for u in plan:
        if u.emo_class == "N":
            f0[u.gender].append(u.f0)
    assert np.mean(f0["Female"]) > np.mean(f0["Male"])


def test_command_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--utterances-per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / ROOT_NAME) in out
    assert "54 audio files (Train 18, Development 10" in out
    assert main(["--out", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_command_line_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sser_lobes.synthetic.msp_podcast",
            "--out",
            str(tmp_path),
            "--utterances-per-class",
            "1",
            "--seed",
            "5",
            "--min-duration",
            "0.3",
            "--max-duration",
            "0.4",
            "--test3",
            "3",
            "--nested-audio",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    root = tmp_path / ROOT_NAME
    wavs = list((root / "Audios" / "Audios").glob("*.wav"))
    plan = plan_corpus(
        1, seed=5, min_duration=0.3, max_duration=0.4, test3_utterances=3
    )
    assert sorted(p.name for p in wavs) == sorted(u.file_name for u in plan)
    assert sum(u.split == "Test3" for u in plan) == 3
