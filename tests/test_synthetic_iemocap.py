"""Tests of the synthetic IEMOCAP-format corpus generator."""

import hashlib
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sser_lobes.synthetic.iemocap import (  # noqa: E402
    CLASS_CUES,
    EMO_HEADER,
    corpus_labels,
    main,
    make_iemocap_corpus,
    plan_corpus,
)

LABEL_RE = re.compile(
    r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0([1-5])[FM]_\w+_([FM])\d{3})\t([a-z]{3})"
    r"\t\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$"
)
C_LINE_RE = re.compile(r"^C-(E\d|[FM]1):\t([A-Z][a-z]+; )*[A-Z][a-z]+;\t\([a-z]*\)$")
A_LINE_RE = re.compile(r"^A-(E\d|[FM]1):\tval [1-5]; act [1-5]; dom  [1-5];\t\(\)$")
TRANSCRIPT_RE = re.compile(r"^(\S+) \[(\d{3}\.\d{4})-(\d{3}\.\d{4})\]: (.+)$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_iemocap_corpus(tmp_path_factory.mktemp("synthetic"), seed=0)


def _wav_path(root, utt_id):
    dialog = utt_id.rsplit("_", 1)[0]
    return root / f"Session{utt_id[4]}" / "sentences" / "wav" / dialog / f"{utt_id}.wav"


def _emo_files(root):
    return sorted(root.glob("Session*/dialog/EmoEvaluation/Ses*.txt"))


def test_layout_and_quirks(corpus):
    assert corpus.name == "IEMOCAP_full_release"
    assert sorted(p.name for p in corpus.iterdir()) == [
        f"Session{k}" for k in range(1, 6)
    ]
    dialogs = {p.stem for p in _emo_files(corpus)}
    assert {"Ses01F_impro01", "Ses01M_script01_1", "Ses05F_impro05a"} <= dialogs
    assert len(dialogs) == 10
    for session in range(1, 6):
        emo = corpus / f"Session{session}" / "dialog" / "EmoEvaluation"
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            assert list((emo / sub).glob("*.txt")), sub
        assert list(emo.glob("._*.txt"))
        trans = corpus / f"Session{session}" / "dialog" / "transcriptions"
        assert list(trans.glob("._*.txt"))
        assert list((corpus / f"Session{session}" / "sentences" / "wav").glob("*/._*"))
    # The resource-fork junk is binary, not text.
    junk = next(corpus.glob("Session1/dialog/EmoEvaluation/._*.txt")).read_bytes()
    assert junk.startswith(b"\x00\x05\x16\x07")


def test_wav_format(corpus):
    labels = corpus_labels()
    wavs = sorted(corpus.glob("Session*/sentences/wav/*/Ses*.wav"))
    assert len(wavs) == len(labels) == 10 * (6 + 1)
    assert {_wav_path(corpus, u) for u, _, _ in labels} == set(wavs)
    for wav in wavs:
        info = soundfile.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.8 <= info.duration <= 2.0 + 1e-3


def test_emo_evaluation_format(corpus):
    seen = {}
    for path in _emo_files(corpus):
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == EMO_HEADER
        assert lines[1] == ""
        body = lines[2:]
        assert body[-1] == "" and body[-2] != ""  # ends with a newline
        blocks = "\n".join(body).strip("\n").split("\n\n")
        for block in blocks:
            block_lines = block.split("\n")
            match = LABEL_RE.match(block_lines[0])
            assert match, block_lines[0]
            start, end, utt, session, gender, code, *vad = match.groups()
            assert float(start) < float(end)
            assert utt.startswith(path.stem + "_")
            assert session == path.parent.parent.parent.name[-1]
            # The side letter of the dialog is not the speaker's gender.
            assert utt.rsplit("_", 1)[1][0] == gender
            # Three evaluators' votes and the speaker's self-evaluation, then
            # the attribute ratings.
            assert len(block_lines) == 8
            evaluators = [C_LINE_RE.match(line) for line in block_lines[1:5]]
            assert all(evaluators), block_lines[1:5]
            assert [m.group(1) for m in evaluators] == ["E1", "E2", "E3", f"{gender}1"]
            for line in block_lines[5:8]:
                assert A_LINE_RE.match(line), line
            seen[utt] = (
                code,
                gender,
                float(start),
                float(end),
                [float(v) for v in vad],
            )
    labels = corpus_labels()
    assert {u: (c, g) for u, c, g in labels} == {u: s[:2] for u, s in seen.items()}

    # The brief's example line is reproduced byte for byte (times aside).
    text = (corpus / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").read_text()
    assert "\tSes01F_impro01_F000\t" in text and "; dom  " in text

    # Attributes are consistent with the classes.
    by_code = defaultdict(list)
    for code, _, _, _, vad in seen.values():
        by_code["hap" if code == "exc" else code].append(vad)
    mean = {c: np.mean(v, axis=0) for c, v in by_code.items()}
    assert mean["hap"][0] > mean["neu"][0] > mean["sad"][0]
    assert mean["neu"][0] > mean["ang"][0]
    assert mean["ang"][1] > mean["neu"][1] > mean["sad"][1]
    assert mean["ang"][2] > mean["sad"][2]


def test_classes_and_speakers(corpus):
    labels = corpus_labels()
    codes = Counter(code for _, code, _ in labels)
    assert {"fru", "sur", "xxx", "exc", "hap", "neu", "sad", "ang"} <= set(codes)
    targets = {
        "neu": codes["neu"],
        "hap": codes["hap"] + codes["exc"],
        "sad": codes["sad"],
        "ang": codes["ang"],
    }
    assert targets == {"neu": 15, "hap": 15, "sad": 15, "ang": 15}
    per_speaker = Counter()
    dialogs_of = defaultdict(set)
    extra = Counter()
    for utt, code, gender in labels:
        speaker = utt[:5] + gender
        dialogs_of[speaker].add(utt.rsplit("_", 1)[0])
        if code in ("neu", "hap", "exc", "sad", "ang"):
            per_speaker[speaker] += 1
        else:
            extra[speaker] += 1
    assert len(per_speaker) == 10 and set(per_speaker.values()) == {6}
    assert set(extra.values()) == {1}
    assert all(len(d) == 2 for d in dialogs_of.values())
    # Each dialog holds turns of both speakers of its session.
    genders_in = defaultdict(set)
    for utt, _, gender in labels:
        genders_in[utt.rsplit("_", 1)[0]].add(gender)
    assert all(g == {"F", "M"} for g in genders_in.values())


def test_transcriptions(corpus):
    plan = {u.utt_id: u for u in plan_corpus(seed=0)}
    found = {}
    for path in sorted(corpus.glob("Session*/dialog/transcriptions/Ses*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert re.match(r"^[FM]: \[LAUGHTER\]$", lines[-1])
        assert any(re.match(r"^\S+_[FM]XX0 \[.*\]: \[BREATHING\]$", x) for x in lines)
        for line in lines[:-1]:
            match = TRANSCRIPT_RE.match(line)
            assert match, line
            utt, start, end, text = match.groups()
            if "XX" not in utt:
                found[utt] = (float(start), float(end), text)
    assert set(found) == set(plan)
    for utt, (start, end, text) in found.items():
        assert (start, end, text) == (plan[utt].start, plan[utt].end, plan[utt].text)
    line = (corpus / "Session1/dialog/transcriptions/Ses01F_impro01.txt").read_text()
    assert re.search(r"^Ses01F_impro01_F000 \[00\d\.\d{4}-0\d\d\.\d{4}\]: ", line, re.M)


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_deterministic(tmp_path):
    kwargs = {"utterances_per_speaker": 4, "min_duration": 0.3, "max_duration": 0.6}
    a = make_iemocap_corpus(tmp_path / "a", seed=3, **kwargs)
    b = make_iemocap_corpus(tmp_path / "b", seed=3, **kwargs)
    c = make_iemocap_corpus(tmp_path / "c", seed=4, **kwargs)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert corpus_labels(4, seed=3) == corpus_labels(4, seed=4)


def test_refuses_non_empty_folder(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    root.mkdir()  # empty: accepted
    make_iemocap_corpus(
        tmp_path, utterances_per_speaker=1, min_duration=0.3, max_duration=0.5
    )
    before = _digest(root)
    with pytest.raises(FileExistsError, match="not empty"):
        make_iemocap_corpus(tmp_path, utterances_per_speaker=1)
    assert _digest(root) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"utterances_per_speaker": 0},
        {"min_duration": 2.0, "max_duration": 1.0},
        {"min_duration": 0.0},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_iemocap_corpus(tmp_path, **kwargs)
    assert not (tmp_path / "IEMOCAP_full_release").exists()


def _pitch(x, sr=16000):
    """Autocorrelation pitch estimate (smallest lag within 10 % of the peak)."""
    x = x - x.mean()
    spectrum = np.fft.rfft(x, 2 * len(x))
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[: len(x)]
    lo, hi = sr // 400, sr // 60
    window = acf[lo:hi]
    return sr / (lo + int(np.argmax(window >= 0.9 * window.max())))


def _centroid(x, sr=16000):
    power = np.abs(np.fft.rfft(x)) ** 2
    return float((power * np.fft.rfftfreq(len(x), 1 / sr)).sum() / power.sum())


def test_class_cues_are_measurable(corpus):
    stats = defaultdict(list)
    for utt, code, _ in corpus_labels():
        x, sr = soundfile.read(_wav_path(corpus, utt))
        code = "hap" if code == "exc" else code
        stats[code].append((np.sqrt(np.mean(x**2)), _pitch(x, sr), _centroid(x, sr)))
    mean = {c: np.mean(v, axis=0) for c, v in stats.items()}
    rms, pitch, centroid = ({c: m[i] for c, m in mean.items()} for i in range(3))
    assert rms["ang"] > rms["hap"] > rms["neu"] > rms["sad"]
    assert pitch["hap"] > pitch["ang"] > pitch["neu"] > pitch["sad"]
    assert centroid["ang"] > centroid["hap"] > centroid["neu"] > centroid["sad"]
    # Designed values are roughly met (female speakers are 15 % higher).
    assert 0.9 * CLASS_CUES["hap"].f0 < pitch["hap"] < 1.3 * CLASS_CUES["hap"].f0
    assert 0.9 * CLASS_CUES["sad"].f0 < pitch["sad"] < 1.3 * CLASS_CUES["sad"].f0


def test_female_speakers_higher(corpus):
    pitch = defaultdict(list)
    for utt, code, gender in corpus_labels():
        if code == "neu":
            x, sr = soundfile.read(_wav_path(corpus, utt))
            pitch[gender].append(_pitch(x, sr))
    assert np.mean(pitch["F"]) > np.mean(pitch["M"])


def test_command_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--utterances-per-speaker", "2"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "IEMOCAP_full_release") in out
    assert "30 utterances" in out
    assert main(["--out", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
