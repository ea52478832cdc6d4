"""Speaker folds (``speaker_kfold``) keep every class where the speakers allow.

The corpus of issue 19: 29 speakers, 400 utterances, 4 classes, speakers that
each carry one or two emotions, and angry spoken by 4 speakers only (48, 28,
22 and 2 utterances). With 4 folds an assignment with angry in every test
fold exists; the preparation must find one and record each fold's classes.
"""

import json
from collections import Counter

import custom_prepare
import numpy as np
import pytest
import soundfile

CLASSES = ["ang", "hap", "neu", "sad"]

#: speaker -> "class=count ..." (400 utterances)
FEW_EMOTIONS_PER_SPEAKER = {
    "spk00": "ang=48 neu=8",
    "spk01": "ang=28 neu=8",
    "spk02": "ang=22 neu=2",
    "spk03": "ang=2 neu=6",
    "spk04": "neu=6 sad=6",
    "spk05": "hap=5 neu=6",
    "spk06": "neu=11",
    "spk07": "hap=11",
    "spk08": "hap=5 sad=6",
    "spk09": "hap=6 sad=5",
    "spk10": "hap=5 neu=6",
    "spk11": "neu=6 sad=5",
    "spk12": "sad=11",
    "spk13": "neu=6 sad=5",
    "spk14": "sad=11",
    "spk15": "hap=11",
    "spk16": "hap=5 sad=6",
    "spk17": "hap=5 neu=6",
    "spk18": "hap=5 sad=6",
    "spk19": "sad=11",
    "spk20": "hap=11",
    "spk21": "sad=11",
    "spk22": "hap=6 sad=5",
    "spk23": "neu=5 sad=6",
    "spk24": "neu=11",
    "spk25": "hap=5 sad=6",
    "spk26": "hap=5 sad=6",
    "spk27": "hap=5 neu=6",
    "spk28": "hap=5 neu=6",
}


def _counts():
    return {
        speaker: Counter(
            {k: int(v) for k, v in (item.split("=") for item in spec.split())}
        )
        for speaker, spec in FEW_EMOTIONS_PER_SPEAKER.items()
    }


@pytest.fixture(scope="module")
def few_emotions_csv(tmp_path_factory):
    """The corpus as a CSV of 400 short distinct files."""
    root = tmp_path_factory.mktemp("few_emotions")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    lines = ["wav,emotion,speaker"]
    for speaker, counts in _counts().items():
        for emotion, n in sorted(counts.items()):
            for k in range(n):
                name = f"audio/{speaker}_{emotion}_{k:02d}.wav"
                soundfile.write(root / name, 0.1 * rng.standard_normal(800), 16000)
                lines.append(f"{name},{emotion},{speaker}")
    (root / "corpus.csv").write_text("\n".join(lines) + "\n")
    return root / "corpus.csv"


def test_every_test_fold_holds_every_class_the_speakers_allow(
    few_emotions_csv, tmp_path
):
    infos = []
    for fold in (1, 2, 3, 4):
        out = tmp_path / f"fold{fold}"
        custom_prepare.prepare_custom(
            few_emotions_csv, out, num_folds=4, test_fold=fold
        )
        infos.append(json.loads((out / "split_info.json").read_text()))
    for fold, info in enumerate(infos, start=1):
        counts = info["counts"]["test"]
        assert all(counts[c] > 0 for c in CLASSES), (fold, counts)
        assert "test" not in info.get("absent_classes", {})
    test_speakers = sorted(s for info in infos for s in info["speakers"]["test"])
    assert test_speakers == sorted(FEW_EMOTIONS_PER_SPEAKER)
    # Every fold's class counts are recorded, the test fold's among them.
    for fold, info in enumerate(infos, start=1):
        assert info["fold_counts"][fold - 1] == info["counts"]["test"]
        assert [f["total"] for f in info["fold_counts"]] == [
            sum(_counts()[s].total() for s in speakers) for speakers in info["folds"]
        ]


@pytest.mark.parametrize("seed", [0, 1, 7, 1993])
def test_stratified_group_folds_on_the_few_emotions_corpus(seed):
    from sser_lobes.dataio.splits import stratified_group_folds

    counts = _counts()
    folds = stratified_group_folds(counts, CLASSES, 4, seed)
    assert sorted(s for fold in folds for s in fold) == sorted(counts)
    for fold in folds:
        assert all(sum(counts[s][c] for s in fold) > 0 for c in CLASSES), folds
    assert folds == stratified_group_folds(counts, CLASSES, 4, seed)  # deterministic


def test_a_class_with_fewer_speakers_than_folds_is_in_as_many_folds_as_it_can():
    from sser_lobes.dataio.splits import stratified_group_folds

    counts = {f"n{i}": Counter(neu=10) for i in range(6)}
    counts["a1"] = Counter(ang=5, neu=1)
    counts["a2"] = Counter(ang=5, neu=1)
    folds = stratified_group_folds(counts, ["ang", "neu"], 3, seed=0)
    with_ang = [fold for fold in folds if any(counts[s]["ang"] for s in fold)]
    assert len(with_ang) == 2  # two speakers: two folds, never one
    assert all(fold for fold in folds)
