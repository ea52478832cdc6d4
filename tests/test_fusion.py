"""Fusion weight search (sser_lobes.evaluation.fusion_search) and its command line."""

import csv
import json
import runpy
import sys

import numpy as np
import pytest
from conftest import RECIPES

from sser_lobes.evaluation.aggregate import aggregate_runs, collect_runs
from sser_lobes.evaluation.calibration import probabilities_as_logits, softmax
from sser_lobes.evaluation.fuse import main
from sser_lobes.evaluation.fusion_search import (
    fuse_probabilities,
    load_member_predictions,
    search_fusion_weights,
)
from sser_lobes.evaluation.metrics import ClassificationStats, classification_metrics

MSP_LABELS = ["A", "S", "H", "U", "F", "D", "C", "N"]
IEMOCAP_LABELS = ["neu", "hap", "sad", "ang"]


def _binary(p_class1):
    p = np.asarray(p_class1, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def _noisy_members(rng, targets, n_classes, n_members, strength=1.0):
    """Members of varying quality: softmax of noisy logits favouring the target."""
    members = []
    for _ in range(n_members):
        logits = rng.normal(size=(len(targets), n_classes))
        logits[np.arange(len(targets)), targets] += rng.uniform(0.0, 2.0) * strength
        logits[:, rng.integers(n_classes)] += rng.uniform(0.0, 1.0)  # class skew
        p = np.exp(logits)
        members.append(p / p.sum(axis=1, keepdims=True))
    return members


def _score(probs, targets, labels, metric="macro_F1"):
    return classification_metrics(targets, probs.argmax(axis=1), labels)[metric]


# --------------------------------------------------------------------------
# Search on constructed cases with a known optimum
# --------------------------------------------------------------------------

# Two classes, P(class 1) of members A and B on four utterance types; with
# weight w on A (1 - w on B) the fused P(class 1) is pA * w + pB * (1 - w), and
# class 1 is predicted iff it is > 0.5 (argmax takes class 0 on a tie):
#   type 1, target 0, pA = 0.2, pB = 1.0: 1 - 0.8 w < 0.5   <=> w > 0.625
#   type 2, target 1, pA = 0.8, pB = 0.0: 0.8 w > 0.5       <=> w > 0.625
#   type 3, target 0, pA = 0.55, pB = 0.0: 0.55 w < 0.5     <=> w < 0.909...
#   type 4, target 1, pA = 0.45, pB = 1.0: 1 - 0.55 w > 0.5 <=> w < 0.909...
# A alone is right on types 1-2 only, B alone on types 3-4 only (macro-F1 0.5
# each), and the uniform mixture fails types 1-2 (0.5 too); every w in
# (0.625, 10/11) is right everywhere (macro-F1 1.0).
_TYPES_A = [0.2, 0.8, 0.55, 0.45]
_TYPES_B = [1.0, 0.0, 0.0, 1.0]
_TYPES_T = [0, 1, 0, 1]
LOW, HIGH = 0.625, 0.5 / 0.55


def _complementary(copies=3):
    a = _binary(np.repeat(_TYPES_A, copies))
    b = _binary(np.repeat(_TYPES_B, copies))
    return a, b, np.repeat(_TYPES_T, copies)


@pytest.mark.parametrize("a_first", [True, False])
def test_complementary_members_reach_the_derived_optimum(a_first):
    # Starting from member B alone (B first; ties keep the first candidate),
    # single 1/4 steps stay on the 0.5 plateau (w = 1/4, 1/2): the line search
    # over multiples of the step must reach w = 3/4.
    a, b, targets = _complementary()
    members = [a, b] if a_first else [b, a]
    result = search_fusion_weights(members, targets, ["x", "y"])
    assert result["member_scores"] == [0.5, 0.5]
    assert result["start"] == "member 0"
    assert result["score"] == 1.0
    w_a, w_b = result["weights"] if a_first else result["weights"][::-1]
    assert LOW < w_a < HIGH and w_a + w_b == pytest.approx(1.0)
    fused = fuse_probabilities(members, result["weights"])
    assert _score(fused, targets, ["x", "y"]) == 1.0
    assert result["bias"] is None


def test_uninformative_third_member_keeps_the_ratio_in_the_region():
    # C says 50/50 everywhere: it only shifts nothing (fused - 0.5 is
    # w_A (pA - 0.5) + w_B (pB - 0.5)), so the optimum is the same region for
    # w_A / (w_A + w_B).
    a, b, targets = _complementary()
    c = np.full_like(a, 0.5)
    result = search_fusion_weights([c, a, b], targets, ["x", "y"])
    assert result["score"] == 1.0
    _, w_a, w_b = result["weights"]
    assert LOW < w_a / (w_a + w_b) < HIGH
    assert sum(result["weights"]) == pytest.approx(1.0)


def test_three_way_complementary_members_fuse_to_perfect():
    # Three classes; member m is confident and right on the utterances of
    # class m (0.9 on it), and on an utterance of class k != m it puts 0.45
    # on the third class (neither k nor m), 0.35 on k and 0.2 on m: alone,
    # each member is right on one third of the data. With equal weights an
    # utterance of class k gets (0.9 + 0.35 + 0.35) / 3 on k and
    # (0.05 + 0.2 + 0.45) / 3 on each other class: the uniform mixture is
    # right everywhere.
    n, labels = 4, ["a", "b", "c"]
    targets = np.repeat([0, 1, 2], n)
    members = []
    for m in range(3):
        p = np.zeros((len(targets), 3))
        for i, k in enumerate(targets):
            if k == m:
                p[i] = 0.05
                p[i, k] = 0.9
            else:
                p[i, k], p[i, m], p[i, 3 - m - k] = 0.35, 0.2, 0.45
        members.append(p)
    result = search_fusion_weights(members, targets, labels)
    assert [_score(p, targets, labels, "WA") for p in members] == [1 / 3] * 3
    assert result["score"] == 1.0
    assert max(result["member_scores"]) < 1.0


def test_a_perfect_member_gets_weight_one():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 4, 200)
    members = _noisy_members(rng, targets, 4, 3)
    perfect = np.full((200, 4), 0.1)
    perfect[np.arange(200), targets] = 0.7
    members.insert(1, perfect)
    result = search_fusion_weights(members, targets, IEMOCAP_LABELS, bias=True)
    assert result["weights"] == [0.0, 1.0, 0.0, 0.0]
    assert result["score"] == 1.0 and result["start"] == "member 1"
    assert result["bias"] == [0.0] * 4  # nothing to improve


@pytest.mark.parametrize("seed", range(6))
def test_never_below_the_best_member_and_consistent(seed):
    rng = np.random.default_rng(seed)
    n_members = [2, 3, 5][seed % 3]
    metric = ["macro_F1", "UA", "WA"][seed % 3]
    targets = rng.integers(0, 5, 300)
    labels = list("abcde")
    members = _noisy_members(rng, targets, 5, n_members, strength=0.7)
    for bias in (False, True):
        result = search_fusion_weights(
            members, targets, labels, metric=metric, bias=bias
        )
        expected = [_score(p, targets, labels, metric) for p in members]
        assert result["member_scores"] == expected
        assert result["score"] >= max(expected)
        w = np.asarray(result["weights"])
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
        fused = fuse_probabilities(members, result["weights"], result["bias"])
        assert _score(fused, targets, labels, metric) == result["score"]
        if bias:
            assert result["score"] >= result["weight_score"]
            assert max(abs(b) for b in result["bias"]) <= 4.0


def test_search_is_deterministic():
    rng = np.random.default_rng(11)
    targets = rng.integers(0, 8, 500)
    members = _noisy_members(rng, targets, 8, 4, strength=0.8)
    first = search_fusion_weights(members, targets, MSP_LABELS, bias=True)
    second = search_fusion_weights(
        [m.copy() for m in members], targets.copy(), MSP_LABELS, bias=True
    )
    assert first == second


def test_bias_fixes_an_under_predicted_class():
    # One member with good evidence for every class, but class 2's
    # probability is divided by 6 before renormalising: class 2 is rarely
    # predicted. A bias of about log(6) on class 2 undoes it exactly.
    rng = np.random.default_rng(5)
    targets = np.repeat([0, 1, 2], 200)
    logits = rng.normal(size=(600, 3))
    logits[np.arange(600), targets] += 1.5
    p = np.exp(logits)
    p[:, 2] /= 6.0
    p /= p.sum(axis=1, keepdims=True)
    labels = ["x", "y", "z"]
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    plain = search_fusion_weights([p], targets, labels)
    biased = search_fusion_weights([p], targets, labels, bias=True)
    assert plain["bias"] is None and biased["weights"] == [1.0]
    assert biased["score"] > plain["score"] + 0.05
    assert biased["score"] >= _score(calibrated, targets, labels) - 0.02
    b = biased["bias"]
    assert b[2] - max(b[0], b[1]) > 1.0  # class 2 pushed up


def test_fuse_probabilities_formula():
    rng = np.random.default_rng(0)
    a, b = (rng.dirichlet(np.ones(4), size=10) for _ in range(2))
    fused = fuse_probabilities([a, b], [3.0, 1.0])
    np.testing.assert_allclose(fused, 0.75 * a + 0.25 * b)
    bias = np.array([0.5, -1.0, 0.0, 2.0])
    biased = fuse_probabilities([a, b], [0.75, 0.25], bias)
    logits = np.log(0.75 * a + 0.25 * b) + bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(biased, expected)
    np.testing.assert_allclose(biased.sum(axis=1), 1.0)
    assert np.array_equal(
        fuse_probabilities([a, b], [1, 1], np.zeros(4)), 0.5 * a + 0.5 * b
    )


def test_fusion_input_errors():
    a = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="member 1"):
        fuse_probabilities([a, np.full((4, 2), 0.5)], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        fuse_probabilities([a, a], [1.5, -0.5])
    with pytest.raises(ValueError, match="one value per member"):
        fuse_probabilities([a, a], [1.0])
    with pytest.raises(ValueError, match="bias"):
        fuse_probabilities([a], [1.0], bias=[0.0])
    with pytest.raises(ValueError, match="unknown metric"):
        search_fusion_weights([a], [0, 1, 0], ["x", "y"], metric="F1")
    with pytest.raises(ValueError, match="labels"):
        search_fusion_weights([a], [0, 1, 0], ["x"])


# --------------------------------------------------------------------------
# Reading member files
# --------------------------------------------------------------------------


def _write_member(folder, split, ids, probs, targets, labels):
    stats = ClassificationStats(labels)
    stats.append(list(ids), probs, targets)
    stats.write_predictions(folder / f"{split}_predictions.csv")


def _write_test3(folder, ids, probs, labels):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test3_probabilities.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["FileName", *labels])
        for uid, row in zip(ids, probs):
            writer.writerow([f"{uid}.wav", *(round(float(x), 6) for x in row)])


def test_load_member_predictions_formats_and_errors(tmp_path):
    labels = ["neu", "ang"]
    _write_member(tmp_path, "test", ["b", "a"], [[0.2, 0.8], [0.6, 0.4]], None, labels)
    ids, got_labels, probs, targets = load_member_predictions(tmp_path, "test")
    assert (ids, got_labels, targets) == (["a", "b"], labels, None)
    np.testing.assert_allclose(probs, [[0.6, 0.4], [0.2, 0.8]])

    _write_test3(
        tmp_path,
        ["MSP-PODCAST_0002_0001", "MSP-PODCAST_0001_0001"],
        [[0.1, 0.9], [0.7, 0.3]],
        labels,
    )
    ids, _, probs, targets = load_member_predictions(tmp_path, "test3")
    assert ids == ["MSP-PODCAST_0001_0001", "MSP-PODCAST_0002_0001"]
    assert targets is None and probs[0].tolist() == [0.7, 0.3]

    with pytest.raises(FileNotFoundError, match="test2_predictions.csv"):
        load_member_predictions(tmp_path, "test2")
    bad = tmp_path / "valid_predictions.csv"
    bad.write_text(
        "id,target,prediction,score,prob_neu,prob_ang\nx,neu,neu,1,1,0\ny,,neu,1,1,0\n"
    )
    with pytest.raises(ValueError, match="valid_predictions.csv.*no target"):
        load_member_predictions(tmp_path, "valid")
    bad.write_text("id,label,p\nx,neu,1\n")
    with pytest.raises(ValueError, match="not a predictions file"):
        load_member_predictions(tmp_path, "valid")
    bad.write_text("id,target,prediction,score,prob_neu,prob_ang\nx,neu,neu,1,3,0\n")
    with pytest.raises(ValueError, match="summing to 1"):
        load_member_predictions(tmp_path, "valid")


# --------------------------------------------------------------------------
# Command line on fabricated run folders
# --------------------------------------------------------------------------


def _make_runs(root, names, splits, labels, n, seed, identity, test3=0):
    """Run folders with <split>_predictions.csv and <split>_metrics.json."""
    rng = np.random.default_rng(seed)
    folders = []
    split_targets = {s: rng.integers(0, len(labels), n) for s in splits}
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for split, targets in split_targets.items():
            (probs,) = _noisy_members(rng, targets, len(labels), 1)
            ids = [f"utt_{split}_{i:04d}" for i in range(n)]
            _write_member(folder, split, ids, probs, targets, labels)
            record = {
                "experiment": name,
                **identity,
                "seed": identity.get("seed", 1000 + k),
                "split": split,
                **_scores(probs, targets, labels),
            }
            (folder / f"{split}_metrics.json").write_text(json.dumps(record))
        if test3:
            ids = [f"MSP-PODCAST_9{i:03d}_0001" for i in range(test3)]
            probs = rng.dirichlet(np.ones(len(labels)), size=test3)
            _write_test3(folder, ids, probs, labels)
        folders.append(folder)
    return folders


def _scores(probs, targets, labels):
    m = classification_metrics(targets, probs.argmax(axis=1), labels)
    return {k: m[k] for k in ("WA", "UA", "macro_F1", "micro_F1")}


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_cli_iemocap_style_through_the_recipe_wrapper(tmp_path, monkeypatch, capsys):
    identity = {"protocol": "loso", "fold": "session3"}
    folders = _make_runs(
        tmp_path / "runs",
        ["wavlm", "hubert", "w2v2"],
        ["valid", "test"],
        IEMOCAP_LABELS,
        120,
        seed=0,
        identity=identity,
    )
    out = tmp_path / "fused" / "loso" / "session3"
    argv = ["fuse.py", *map(str, folders), "--out", str(out), "--bias"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(RECIPES / "IEMOCAP" / "fuse.py"), run_name="__main__")
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out

    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["search_split"] == "valid" and fusion["search_metric"] == "macro_F1"
    assert [m["folder"] for m in fusion["members"]] == list(map(str, folders))
    assert [m["experiment"] for m in fusion["members"]] == ["wavlm", "hubert", "w2v2"]
    assert len(fusion["bias"]) == 4 and fusion["search"]["bias"]
    assert sum(fusion["weights"]) == pytest.approx(1.0)
    assert set(fusion["scores"]) == {"valid", "test"}
    valid = fusion["scores"]["valid"]
    search = fusion["search"]
    assert (search["split"], search["metric"]) == ("valid", "macro_F1")
    assert valid["fused"]["macro_F1"] == search["score"]
    assert search["fused"] == valid["fused"] and search["members"] == valid["members"]
    assert search["score"] >= max(search["member_scores"])
    assert [s["macro_F1"] for s in valid["members"]] == search["member_scores"]
    assert sorted(out.iterdir()) == sorted(
        out / name
        for name in [
            "fusion.json",
            "fusion.md",
            "valid_predictions.csv",
            "valid_metrics.json",
            "test_predictions.csv",
            "test_metrics.json",
        ]
    )

    for split in ("valid", "test"):
        ids, labels, probs, targets = zip(
            *[load_member_predictions(f, split) for f in folders]
        )
        fused = fuse_probabilities(list(probs), fusion["weights"], fusion["bias"])
        # Written calibrated: a temperature fitted on the fused valid split.
        temperature = fusion["calibration"]["temperature"][0]
        assert fusion["calibration"]["fitted_on"] == "valid"
        fused = softmax(probabilities_as_logits(fused) / temperature)
        rows = _read_csv(out / f"{split}_predictions.csv")
        assert rows[0] == ["id", "target", "prediction", "score"] + [
            f"prob_{c}" for c in IEMOCAP_LABELS
        ]
        assert [r[0] for r in rows[1:]] == ids[0]
        assert [r[1] for r in rows[1:]] == [IEMOCAP_LABELS[t] for t in targets[0]]
        np.testing.assert_allclose(
            np.array([r[4:] for r in rows[1:]], dtype=float), fused, atol=1e-6
        )
        metrics = json.loads((out / f"{split}_metrics.json").read_text())
        assert metrics["experiment"] == "fused" and metrics["split"] == split
        assert (metrics["protocol"], metrics["fold"]) == ("loso", "session3")
        assert metrics["seed"] is None  # members' seeds differ
        assert metrics["fusion"]["fitted_on_this_split"] == (split == "valid")
        expected = _scores(fused, targets[0], IEMOCAP_LABELS)
        assert {k: metrics[k] for k in expected} == pytest.approx(expected)
        assert fusion["scores"][split]["fused"] == pytest.approx(expected)

    for folder in folders:
        assert str(folder) in printed
    assert "**fused**" in printed and "valid* macro-F1" in printed
    assert printed == (out / "fusion.md").read_text()
    # The fused folder is one more run for the aggregation.
    runs = collect_runs([tmp_path / "fused"])
    summary = aggregate_runs(runs)["experiments"][0]
    assert (summary["experiment"], summary["protocol"]) == ("fused", "loso")


def test_cli_msp_style_with_test3(tmp_path, capsys):
    identity = {"protocol": "msp", "fold": "official", "seed": 1993}
    folders = _make_runs(
        tmp_path / "runs",
        ["std", "attn"],
        ["development", "test1", "test2"],
        MSP_LABELS,
        200,
        seed=1,
        identity=identity,
        test3=30,
    )
    out = tmp_path / "fused"
    code = main([*map(str, folders), "--out", str(out), "--experiment", "ens"])
    assert code == 0
    assert "test3" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names == {
        "fusion.json",
        "fusion.md",
        "test3_predictions.csv",
        "test3_submission.csv",
        "test3_probabilities.csv",
        *(
            f"{s}_{kind}"
            for s in ("development", "test1", "test2")
            for kind in ("predictions.csv", "metrics.json")
        ),
    }
    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["bias"] is None and fusion["experiment"] == "ens"
    assert fusion["scores"]["test3"] == {
        "n": 30,
        "labelled": False,
        "fused": None,
        "members": [None, None],
    }
    metrics = json.loads((out / "test1_metrics.json").read_text())
    assert metrics["experiment"] == "ens" and metrics["seed"] == 1993
    assert metrics["fold"] == "official"

    probs = [load_member_predictions(f, "test3")[2] for f in folders]
    fused = fuse_probabilities(probs, fusion["weights"])
    temperature = fusion["calibration"]["temperature"][0]
    fused = softmax(probabilities_as_logits(fused) / temperature)
    submission = _read_csv(out / "test3_submission.csv")
    assert submission[0] == ["FileName", "EmoClass"]
    assert submission[1][0] == "MSP-PODCAST_9000_0001.wav"
    assert [r[1] for r in submission[1:]] == [MSP_LABELS[k] for k in fused.argmax(1)]
    table = _read_csv(out / "test3_probabilities.csv")
    assert table[0] == ["FileName", *MSP_LABELS]
    assert [r[0] for r in table[1:]] == [r[0] for r in submission[1:]]
    np.testing.assert_allclose(
        np.array([r[1:] for r in table[1:]], float), fused, atol=1e-6
    )
    rows = _read_csv(out / "test3_predictions.csv")
    assert all(r[1] == "" for r in rows[1:]) and len(rows) == 31


def test_cli_errors_name_the_folder(tmp_path, capsys):
    folders = _make_runs(
        tmp_path / "runs",
        ["a", "b"],
        ["development", "test1"],
        MSP_LABELS,
        50,
        seed=2,
        identity={},
    )
    # Drop one utterance of member b's test1.
    path = folders[1] / "test1_predictions.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    args = [*map(str, folders), "--out", str(tmp_path / "out")]
    assert main([*args, "--apply-splits", "test1"]) == 1
    err = capsys.readouterr().err
    assert f"member {folders[1]} differs" in err and "'test1'" in err
    assert "1 missing" in err
    # Missing split file.
    assert main([*args, "--apply-splits", "test2"]) == 1
    assert "test2_predictions.csv" in capsys.readouterr().err
    # Same folder twice.
    assert main([str(folders[0]), str(folders[0]), "--out", "x"]) == 1
    assert "more than once" in capsys.readouterr().err
    # Output into a member folder.
    assert main([*map(str, folders), "--out", str(folders[1])]) == 1
    assert "is a member run folder" in capsys.readouterr().err
    # Unlabelled search split.
    _write_test3(folders[0], ["u"], [[1.0] + [0.0] * 7], MSP_LABELS)
    _write_test3(folders[1], ["u"], [[1.0] + [0.0] * 7], MSP_LABELS)
    assert main([*args, "--search-split", "test3", "--apply-splits"]) == 1
    assert "unlabelled" in capsys.readouterr().err


def test_members_of_different_tasks_or_folds_are_refused(tmp_path, capsys):
    """Same utterance ids and classes, but another fold or label map: once
    copied as None into the fused record, now refused (issue 19, item 4)."""
    identity = {"protocol": "loso", "fold": "session3"}
    folders = _make_runs(
        tmp_path / "runs",
        ["a", "b"],
        ["valid", "test"],
        IEMOCAP_LABELS,
        40,
        seed=3,
        identity=identity,
    )
    args = [*map(str, folders), "--search-split", "valid", "--apply-splits", "test"]

    def rewrite(folder, **changes):
        for split in ("valid", "test"):
            path = folder / f"{split}_metrics.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    rewrite(folders[1], fold="session4")
    assert main([*args, "--out", str(tmp_path / "out1")]) == 1
    err = capsys.readouterr().err
    assert f"member {folders[1]} is not a run of the task and fold" in err
    assert "fold 'session3' vs 'session4'" in err
    rewrite(folders[1], fold="session3", task_identity={"label_map": {"exc": "hap"}})
    assert main([*args, "--out", str(tmp_path / "out2")]) == 1
    assert "label_map None vs {'exc': 'hap'}" in capsys.readouterr().err
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
