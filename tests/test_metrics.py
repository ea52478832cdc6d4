"""Tests of sser_lobes.evaluation.metrics against hand-computed values."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch

from sser_lobes.evaluation.metrics import (
    ClassificationStats,
    classification_metrics,
    confusion_matrix,
)
from sser_lobes.evaluation.regression_metrics import RegressionStats, ccc

LABELS3 = ["neu", "hap", "sad"]
# Confusion matrix (rows true, columns predicted):
#   true neu: [3, 1, 0]   support 4
#   true hap: [1, 2, 0]   support 3
#   true sad: [0, 1, 2]   support 3
TARGETS3 = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS3 = [0, 0, 0, 1, 0, 1, 1, 1, 2, 2]
CM3 = [[3, 1, 0], [1, 2, 0], [0, 1, 2]]


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_confusion_matrix_3class():
    cm = confusion_matrix(TARGETS3, PREDS3, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == CM3
    # torch tensors and [N, 1] targets are accepted
    cm_t = confusion_matrix(torch.tensor(TARGETS3)[:, None], torch.tensor(PREDS3), 3)
    assert cm_t.tolist() == CM3


def test_confusion_matrix_bad_input():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, -1], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix([0.5, 1.0], [0, 1], 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(["a", "b"], [0, 1], 3)
    with pytest.raises(ValueError, match="1-D"):
        confusion_matrix([[0, 1], [1, 0]], [0, 1], 3)
    with pytest.raises(ValueError, match="n_classes"):
        confusion_matrix([0], [0], 0)
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]


def test_metrics_3class_hand_computed():
    m = classification_metrics(TARGETS3, PREDS3, LABELS3)
    assert m["n"] == 10
    assert m["labels"] == LABELS3
    assert m["confusion_matrix"] == CM3
    # WA = (3 + 2 + 2) / 10
    assert m["WA"] == approx(0.7)
    # recall: neu 3/4, hap 2/3, sad 2/3 -> UA = (27/36 + 24/36 + 24/36) / 3 = 25/36
    assert m["UA"] == approx(25 / 36)
    # predicted counts (column sums): neu 4, hap 4, sad 2
    # precision: neu 3/4, hap 2/4, sad 2/2
    pc = m["per_class"]
    assert pc["neu"]["precision"] == approx(0.75)
    assert pc["hap"]["precision"] == approx(0.5)
    assert pc["sad"]["precision"] == approx(1.0)
    assert pc["neu"]["recall"] == approx(0.75)
    assert pc["hap"]["recall"] == approx(2 / 3)
    assert pc["sad"]["recall"] == approx(2 / 3)
    # F1 = 2PR/(P+R): neu 0.75; hap (2/3)/(7/6) = 4/7; sad (4/3)/(5/3) = 0.8
    assert pc["neu"]["F1"] == approx(0.75)
    assert pc["hap"]["F1"] == approx(4 / 7)
    assert pc["sad"]["F1"] == approx(0.8)
    assert [pc[k]["support"] for k in LABELS3] == [4, 3, 3]
    # macro-F1 = (0.75 + 4/7 + 0.8) / 3 = (297/140) / 3 = 99/140
    assert m["macro_F1"] == approx(99 / 140)
    # micro-F1 = 2TP / (2TP + FP + FN) = 14 / (14 + 3 + 3) = WA
    assert m["micro_F1"] == approx(0.7)
    # plain Python types, JSON-serialisable
    assert all(type(m[k]) is float for k in ("WA", "UA", "macro_F1", "micro_F1"))
    assert type(pc["neu"]["support"]) is int
    json.dumps(m)


def test_imbalanced_wa_differs_from_ua_and_never_predicted_class():
    # 8 x neu, 2 x ang, everything predicted neu.
    targets = [0] * 8 + [1] * 2
    preds = [0] * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero division must not warn
        m = classification_metrics(targets, preds, ["neu", "ang"])
    # WA = 8/10; recall neu 8/8 = 1, ang 0/2 = 0 -> UA = 0.5
    assert m["WA"] == approx(0.8)
    assert m["UA"] == approx(0.5)
    # ang never predicted: precision 0/0 -> 0, F1 0
    assert m["per_class"]["ang"] == {
        "precision": 0.0,
        "recall": 0.0,
        "F1": 0.0,
        "support": 2,
    }
    # neu: P = 8/10, R = 1 -> F1 = 1.6 / 1.8 = 8/9; macro-F1 = (8/9 + 0) / 2
    assert m["per_class"]["neu"]["F1"] == approx(8 / 9)
    assert m["macro_F1"] == approx(4 / 9)
    assert m["micro_F1"] == approx(0.8)


def test_class_predicted_but_absent_from_targets():
    # targets [0,0,1,1], predictions [0,2,1,1]
    # CM rows: [1,0,1], [0,2,0], [0,0,0]
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c"])
    assert m["WA"] == approx(3 / 4)
    # UA over classes present in targets (a, b): (1/2 + 2/2) / 2
    assert m["UA"] == approx(0.75)
    # F1: a P=1/1 R=1/2 -> 2/3; b -> 1; c P=0/1 R=0/0 -> 0 (counted: predicted)
    assert m["per_class"]["c"]["F1"] == 0.0
    assert m["per_class"]["c"]["support"] == 0
    assert m["macro_F1"] == approx((2 / 3 + 1 + 0) / 3)


def test_class_absent_everywhere_is_excluded_from_averages():
    m3 = classification_metrics(TARGETS3, PREDS3, LABELS3)
    m4 = classification_metrics(TARGETS3, PREDS3, LABELS3 + ["ang"])
    for key in ("WA", "UA", "macro_F1", "micro_F1"):
        assert m4[key] == approx(m3[key])
    assert m4["per_class"]["ang"] == {
        "precision": 0.0,
        "recall": 0.0,
        "F1": 0.0,
        "support": 0,
    }


def test_perfect_and_all_wrong():
    m = classification_metrics([0, 1, 2], [0, 1, 2], LABELS3)
    assert (m["WA"], m["UA"], m["macro_F1"], m["micro_F1"]) == (1.0, 1.0, 1.0, 1.0)
    m = classification_metrics([0, 1], [1, 0], ["a", "b"])
    assert (m["WA"], m["UA"], m["macro_F1"], m["micro_F1"]) == (0.0, 0.0, 0.0, 0.0)


def test_metrics_errors():
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [], LABELS3)
    with pytest.raises(ValueError, match="unique"):
        classification_metrics([0], [0], ["a", "a"])
    with pytest.raises(TypeError, match="labels"):
        classification_metrics([0], [0], "abc")
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 0], LABELS3)


def _one_hot_probs(preds, n_classes, peak=0.8):
    """Probabilities whose argmax is ``preds``."""
    probs = np.full((len(preds), n_classes), (1 - peak) / (n_classes - 1))
    probs[np.arange(len(preds)), preds] = peak
    return probs


def test_stats_accumulation_equals_one_batch():
    rng = np.random.default_rng(0)
    n, c = 37, 4
    logits = rng.normal(size=(n, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = rng.integers(0, c, size=n)
    ids = [f"utt{i:03d}" for i in range(n)]
    labels = ["neu", "hap", "sad", "ang"]

    whole = ClassificationStats(labels)
    whole.append(ids, torch.tensor(probs), torch.tensor(targets))
    batched = ClassificationStats(labels)
    for start in range(0, n, 5):  # uneven last batch, mixed input types
        sl = slice(start, start + 5)
        p = torch.tensor(probs[sl], dtype=torch.float32)
        t = torch.tensor(targets[sl])[:, None]  # [B, 1] like SpeechBrain encoders
        if start % 10:
            p, t = p.numpy(), t.numpy()
        batched.append(ids[sl], p, t)
    assert len(whole) == len(batched) == n
    a, b = whole.summarize(), batched.summarize()
    assert a["confusion_matrix"] == b["confusion_matrix"]
    for key in ("WA", "UA", "macro_F1", "micro_F1"):
        assert a[key] == approx(b[key])
    expected = classification_metrics(targets, probs.argmax(1), labels)
    assert a == expected
    # Metrics over the whole set differ from the mean of per-batch metrics in
    # general: this is why metrics are never averaged over batches.


def test_stats_low_precision_and_device_agnostic_inputs():
    stats = ClassificationStats(["a", "b"])
    stats.append(["x"], torch.tensor([[0.25, 0.75]], dtype=torch.bfloat16), None)
    stats.append(["y"], torch.tensor([[0.9, 0.1]], dtype=torch.float16), [0])
    rows = stats.predictions()
    assert [r["prediction"] for r in rows] == ["b", "a"]
    assert rows[0]["score"] == 0.75


def test_stats_order_predictions_and_csv(tmp_path):
    stats = ClassificationStats(["neu", "hap", "sad"])
    stats.append(
        ["b_utt", "c_utt"],
        torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]),
        torch.tensor([2, 1]),
    )
    stats.append(["a_utt"], np.array([[0.2, 0.6, 0.2]]), np.array([1]))
    assert len(stats) == 3
    rows = stats.predictions()
    assert [r["id"] for r in rows] == ["a_utt", "b_utt", "c_utt"]
    assert rows[0] == {
        "id": "a_utt",
        "target": "hap",
        "prediction": "hap",
        "score": 0.6,
        "prob_neu": 0.2,
        "prob_hap": 0.6,
        "prob_sad": 0.2,
    }
    assert rows[2]["prediction"] == "neu" and rows[2]["target"] == "hap"
    json.dumps(rows)

    out = stats.write_predictions(tmp_path / "sub" / "pred.csv")
    assert out.exists()
    text = out.read_text()
    assert text == (
        "id,target,prediction,score,prob_neu,prob_hap,prob_sad\n"
        "a_utt,hap,hap,0.600000,0.200000,0.600000,0.200000\n"
        "b_utt,sad,sad,0.700000,0.100000,0.200000,0.700000\n"
        "c_utt,hap,neu,0.500000,0.500000,0.250000,0.250000\n"
    )
    with open(out, newline="") as f:
        parsed = list(csv.DictReader(f))
    assert [r["id"] for r in parsed] == ["a_utt", "b_utt", "c_utt"]

    # metrics: a correct, b correct, c wrong (hap -> neu)
    m = stats.summarize()
    assert m["WA"] == approx(2 / 3)
    assert m["confusion_matrix"] == [[0, 0, 0], [1, 1, 0], [0, 0, 1]]
    # UA over hap (1/2) and sad (1/1) = 0.75
    assert m["UA"] == approx(0.75)


def test_stats_argmax_ties_pick_first_class():
    stats = ClassificationStats(["a", "b", "c"])
    stats.append(["x"], [[0.25, 0.375, 0.375]], [2])
    assert stats.predictions()[0]["prediction"] == "b"


def test_stats_duplicate_ids_raise():
    stats = ClassificationStats(["a", "b"])
    stats.append(["x", "y"], _one_hot_probs([0, 1], 2), [0, 1])
    with pytest.raises(ValueError, match="more than once.*'y'"):
        stats.append(["y", "z"], _one_hot_probs([0, 1], 2), [0, 1])
    # nothing from the rejected batch was kept
    assert len(stats) == 2
    with pytest.raises(ValueError, match="more than once.*'w'"):
        ClassificationStats(["a", "b"]).append(["w", "w"], _one_hot_probs([0, 1], 2))


def test_stats_empty_raises(tmp_path):
    stats = ClassificationStats(["a", "b"])
    assert len(stats) == 0
    with pytest.raises(ValueError, match="empty"):
        stats.summarize()
    assert stats.predictions() == []
    out = stats.write_predictions(tmp_path / "empty.csv")
    assert out.read_text() == "id,target,prediction,score,prob_a,prob_b\n"


def test_stats_unlabelled(tmp_path):
    stats = ClassificationStats(["a", "b"])
    stats.append(["t1", "t2"], torch.tensor([[0.3, 0.7], [0.6, 0.4]]))  # hidden test
    out = stats.write_predictions(tmp_path / "test_pred.csv")
    lines = out.read_text().splitlines()
    assert lines[1] == "t1,,b,0.700000,0.300000,0.700000"
    assert lines[2] == "t2,,a,0.600000,0.600000,0.400000"
    assert stats.predictions()[0]["target"] is None
    with pytest.raises(ValueError, match="2 of 2 utterances have no target"):
        stats.summarize()
    # mixing labelled and unlabelled batches: still an error, naming an id
    stats.append(["t0"], torch.tensor([[0.3, 0.7]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="2 of 3.*'t1'"):
        stats.summarize()


def test_stats_bad_input():
    stats = ClassificationStats(["a", "b"])
    with pytest.raises(TypeError, match="list of utterance ids"):
        stats.append("x", [[0.5, 0.5]])
    with pytest.raises(TypeError, match="must be str"):
        stats.append([1], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        stats.append(["x"], [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="1 ids but 2 rows"):
        stats.append(["x"], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="1 ids but 2 targets"):
        stats.append(["x"], [[0.5, 0.5]], [0, 1])
    with pytest.raises(ValueError, match="outside"):
        stats.append(["x"], [[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="NaN"):
        stats.append(["x"], [[float("nan"), 0.5]])
    # log-probabilities and logits are rejected with a hint
    with pytest.raises(ValueError, match=r"\.exp\(\)"):
        stats.append(["x"], torch.tensor([[0.3, 0.7]]).log())
    with pytest.raises(ValueError, match="softmax"):
        stats.append(["x"], [[2.0, -1.0]])
    assert len(stats) == 0
    with pytest.raises(ValueError, match="unique"):
        ClassificationStats(["a", "a"])
    with pytest.raises(ValueError, match="at least one"):
        ClassificationStats([])


# ------------------------------------------------------------- regression
AVD = ["arousal", "valence", "dominance"]


def _ccc_reference(p, t):
    """Textbook CCC: 2 r s_p s_t / (s_p^2 + s_t^2 + (m_p - m_t)^2), ddof 0."""
    p, t = np.asarray(p, dtype=float), np.asarray(t, dtype=float)
    r = np.corrcoef(p, t)[0, 1]
    return 2 * r * p.std() * t.std() / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)


def test_ccc_hand_computed():
    # pred [1, 2, 3, 4], target [2, 4, 6, 8]: means 2.5 and 5,
    # var_p = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25, var_t = 5, cov = 2.5,
    # CCC = 2 * 2.5 / (1.25 + 5 + (2.5 - 5)^2) = 5 / 12.5 = 0.4
    assert ccc([1, 2, 3, 4], [2, 4, 6, 8]) == approx(0.4)
    assert ccc(torch.tensor([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8])) == approx(0.4)
    # pred [1, 2, 3], target [3, 2, 1]: var 2/3 each, cov -2/3, same mean:
    # CCC = -4/3 / (4/3) = -1
    assert ccc([1, 2, 3], [3, 2, 1]) == approx(-1.0)
    assert ccc([1.5, 2.5, 0.5], [1.5, 2.5, 0.5]) == approx(1.0)
    # [N, 1] and low precision inputs are fine
    assert ccc(
        torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.bfloat16), [2, 4, 6, 8]
    ) == approx(0.4)
    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    p = 0.7 * t + rng.normal(0.2, 0.5, size=50)
    assert ccc(p, t) == pytest.approx(_ccc_reference(p, t), rel=1e-12)


def test_ccc_edge_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "mean of empty slice" etc.
        with pytest.raises(ValueError, match="at least one value"):
            ccc([], [])
        assert np.isnan(ccc([2.0, 2.0], [2.0, 2.0]))  # 0/0: undefined
        assert ccc([1.0, 1.0], [2.0, 2.0]) == 0.0  # constant, shifted
    with pytest.raises(ValueError, match="differ in length"):
        ccc([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        ccc([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        ccc([[1, 2], [3, 4]], [[1, 2], [3, 4]])


def test_regression_stats_accumulation_equals_one_batch():
    rng = np.random.default_rng(1)
    n = 41
    targets = rng.uniform(1, 7, size=(n, 3))
    preds = 0.5 * targets + rng.normal(2, 0.7, size=(n, 3))
    ids = [f"utt{i:03d}" for i in range(n)]
    whole = RegressionStats(AVD)
    whole.append(ids, torch.tensor(preds), torch.tensor(targets))
    batched = RegressionStats(AVD)
    order = rng.permutation(n)  # any order, uneven batches, mixed types
    for start in range(0, n, 6):
        idx = order[start : start + 6]
        p = torch.tensor(preds[idx], dtype=torch.float32)
        t = targets[idx]
        if start % 12:
            p = p.numpy()
        batched.append([ids[i] for i in idx], p, t)
    a, b = whole.summarize(), batched.summarize()
    assert a["n"] == b["n"] == n and a["names"] == AVD
    for name, j in zip(AVD, range(3)):
        expected = _ccc_reference(preds[:, j], targets[:, j])
        assert a["CCC"][name] == pytest.approx(expected, rel=1e-12)
        assert b["CCC"][name] == pytest.approx(expected, rel=1e-6)  # fp32 preds
        mse = np.mean((preds[:, j] - targets[:, j]) ** 2)
        assert a["MSE"][name] == pytest.approx(mse, rel=1e-12)
    assert a["CCC_mean"] == pytest.approx(np.mean(list(a["CCC"].values())))
    json.dumps(a)
    # The whole-set CCC is not the mean of per-batch CCCs.
    per_batch = np.mean(
        [ccc(preds[s : s + 6, 0], targets[s : s + 6, 0]) for s in range(0, 36, 6)]
    )
    assert abs(per_batch - a["CCC"]["arousal"]) > 1e-3


def test_regression_stats_csv_and_predictions(tmp_path):
    stats = RegressionStats(["arousal", "valence"])
    stats.append(
        ["b_utt", "c_utt"],
        torch.tensor([[3.5, 4.0], [2.0, 1.25]], dtype=torch.float16),
        torch.tensor([[4.0, 4.0], [2.2, 1.0]]),
    )
    stats.append(["a_utt"], np.array([[5.125, 6.0]]), np.array([[5.0, 6.5]]))
    rows = stats.predictions()
    assert [r["id"] for r in rows] == ["a_utt", "b_utt", "c_utt"]
    assert rows[0] == {
        "id": "a_utt",
        "target_arousal": 5.0,
        "target_valence": 6.5,
        "pred_arousal": 5.125,
        "pred_valence": 6.0,
    }
    out = stats.write_predictions(tmp_path / "sub" / "avd.csv")
    assert out.read_text() == (
        "id,target_arousal,target_valence,pred_arousal,pred_valence\n"
        "a_utt,5.000000,6.500000,5.125000,6.000000\n"
        "b_utt,4.000000,4.000000,3.500000,4.000000\n"
        "c_utt,2.200000,1.000000,2.000000,1.250000\n"
    )
    with open(out, newline="") as f:
        assert [r["id"] for r in csv.DictReader(f)] == ["a_utt", "b_utt", "c_utt"]
    m = stats.summarize()
    assert m["n"] == 3 and set(m["CCC"]) == {"arousal", "valence"}


def test_regression_stats_unlabelled_rows(tmp_path):
    stats = RegressionStats(AVD)
    stats.append(["t2", "t1"], torch.tensor([[3.0, 4.0, 5.0], [1.0, 2.0, 3.0]]))
    out = stats.write_predictions(tmp_path / "test3.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == (
        "id,target_arousal,target_valence,target_dominance,"
        "pred_arousal,pred_valence,pred_dominance"
    )
    assert lines[1] == "t1,,,,1.000000,2.000000,3.000000"
    assert lines[2] == "t2,,,,3.000000,4.000000,5.000000"
    assert stats.predictions()[0]["target_valence"] is None
    with pytest.raises(ValueError, match="2 of 2 utterances have no targets"):
        stats.summarize()
    stats.append(["t0"], [[1.0, 1.0, 1.0]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="2 of 3.*'t1'"):
        stats.summarize()


def test_regression_stats_errors(tmp_path):
    stats = RegressionStats(AVD)
    with pytest.raises(ValueError, match="empty"):
        stats.summarize()
    assert stats.predictions() == []
    assert stats.write_predictions(tmp_path / "e.csv").read_text().count("\n") == 1
    stats.append(["x", "y"], np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="more than once.*'y'"):
        stats.append(["y", "z"], np.ones((2, 3)))
    assert len(stats) == 2  # the rejected batch left nothing behind
    with pytest.raises(ValueError, match=r"shape \[batch, 3\]"):
        stats.append(["z"], np.ones((1, 2)))
    with pytest.raises(ValueError, match="1 ids but 2 rows of predictions"):
        stats.append(["z"], np.ones((2, 3)))
    with pytest.raises(ValueError, match="targets contain NaN"):
        stats.append(["z"], np.ones((1, 3)), [[1.0, float("nan"), 2.0]])
    with pytest.raises(TypeError, match="list of utterance ids"):
        stats.append("z", np.ones((1, 3)))
    with pytest.raises(ValueError, match="unique"):
        RegressionStats(["a", "a"])
    with pytest.raises(TypeError, match="names"):
        RegressionStats("arousal")
    single = RegressionStats(["arousal"])
    single.append(["a", "b"], torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert single.summarize()["CCC"] == {"arousal": 1.0}
