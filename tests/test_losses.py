"""Tests of sser_lobes.nnet.losses against hand-computed values and references."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sser_lobes.nnet.losses import (
    CCCLoss,
    FocalLoss,
    WeightedCrossEntropy,
    class_weights,
    concordance_correlation,
    labels_counts_from_manifest,
    make_classification_loss,
)

LOG3 = math.log(3.0)


# ------------------------------------------------------------ class weights
def test_class_weights_by_hand():
    # N = 10 + 30 + 60 = 100, C = 3: w_c = 100 / (3 * count_c)
    #   = [100 / 30, 100 / 90, 100 / 180] = [3.333.., 1.111.., 0.555..]
    w = class_weights([10, 30, 60])
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([10 / 3, 10 / 9, 5 / 9]))
    # Each class contributes the same total weight N / C.
    torch.testing.assert_close(
        w * torch.tensor([10.0, 30.0, 60.0]), torch.full((3,), 100 / 3)
    )
    # A balanced set gets weights 1; dicts, tensors and numpy arrays are accepted.
    assert class_weights({"a": 5, "b": 5}).tolist() == [1.0, 1.0]
    torch.testing.assert_close(class_weights(torch.tensor([10, 30, 60])), w)
    torch.testing.assert_close(class_weights(np.array([10, 30, 60])), w)
    assert class_weights([10, 30, 60], scheme="uniform").tolist() == [1.0, 1.0, 1.0]


def test_class_weights_errors():
    with pytest.raises(ValueError, match="class index 1 has count 0"):
        class_weights([3, 0, 2])
    with pytest.raises(ValueError, match="class 'fear' \\(index 2\\) has count 0"):
        class_weights({"neu": 3, "ang": 1, "fear": 0})
    with pytest.raises(ValueError, match="class index 0: count -1"):
        class_weights([-1, 2])
    with pytest.raises(ValueError, match="empty"):
        class_weights([])
    with pytest.raises(TypeError, match="not a number"):
        class_weights(["3", 2])
    with pytest.raises(ValueError, match="unknown scheme"):
        class_weights([1, 2], scheme="sqrt")


def _write(tmp_path, data, name="train.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_labels_counts_from_manifest(tmp_path):
    data = {
        "u1": {"wav": "a.wav", "emo": "A"},
        "u2": {"wav": "b.wav", "emo": "N"},
        "u3": {"wav": "c.wav", "emo": "N"},
        "u4": {"wav": "d.wav", "emo": None},  # unlabelled: ignored
        "u5": {"wav": "e.wav", "emo": "N", "cls": "S"},
    }
    path = _write(tmp_path, data)
    assert labels_counts_from_manifest(path, ["A", "S", "N"]) == [1, 0, 3]
    assert labels_counts_from_manifest(str(path), ("N", "A", "S")) == [3, 1, 0]
    # ... and straight into class weights (N = 4, C = 2: 4 / (2 * count))
    counts = labels_counts_from_manifest(path, ["A", "N"])
    torch.testing.assert_close(class_weights(counts), torch.tensor([2.0, 2 / 3]))
    with pytest.raises(ValueError, match="index 1"):
        class_weights(labels_counts_from_manifest(path, ["A", "S", "N"]))


def test_labels_counts_from_manifest_errors(tmp_path):
    path = _write(tmp_path, {"u1": {"emo": "N"}, "u7": {"emo": "X"}})
    with pytest.raises(ValueError, match="'u7' has 'emo' = 'X'") as info:
        labels_counts_from_manifest(path, ["N", "A"])
    assert str(path) in str(info.value)
    missing_key = _write(tmp_path, {"u1": {"label": "N"}}, "b.json")
    with pytest.raises(ValueError, match="'u1' has no 'emo' field.*label"):
        labels_counts_from_manifest(missing_key, ["N"])
    with pytest.raises(FileNotFoundError, match="nope.json: manifest not found"):
        labels_counts_from_manifest(tmp_path / "nope.json", ["N"])
    with pytest.raises(ValueError, match="not valid JSON"):
        labels_counts_from_manifest(_write(tmp_path, "{oops", "c.json"), ["N"])
    with pytest.raises(ValueError, match="keyed by utterance id"):
        labels_counts_from_manifest(_write(tmp_path, [1], "d.json"), ["N"])
    with pytest.raises(ValueError, match="unique"):
        labels_counts_from_manifest(path, ["N", "N"])


# --------------------------------------------------------------- focal loss
def test_focal_loss_by_hand():
    # Both rows: logits [0, log 3] -> p = [1/4, 3/4].
    logits = torch.tensor([[0.0, LOG3], [0.0, LOG3]])
    targets = torch.tensor([0, 1])
    # Row 1, target 0 (hard): p_t = 1/4: (1 - 1/4)^2 * -log(1/4)
    #   = 0.5625 * 1.3862944 = 0.7797906
    # Row 2, target 1 (easy): p_t = 3/4: (1 - 3/4)^2 * -log(3/4)
    #   = 0.0625 * 0.2876821 = 0.0179801
    hard = 0.5625 * math.log(4)
    easy = 0.0625 * -math.log(0.75)
    per_example = FocalLoss(gamma=2.0, reduction="none")(logits, targets)
    torch.testing.assert_close(per_example, torch.tensor([hard, easy]))
    assert FocalLoss(2.0)(logits, targets).item() == pytest.approx((hard + easy) / 2)
    assert FocalLoss(2.0, reduction="sum")(logits, targets).item() == pytest.approx(
        hard + easy
    )
    # alpha = weight [2, 1]: weighted mean normalised by the targets' weights:
    #   (2 * 0.7797906 + 1 * 0.0179801) / (2 + 1) = 0.5258538
    weighted = FocalLoss(2.0, weight=[2.0, 1.0])(logits, targets)
    assert weighted.item() == pytest.approx((2 * hard + easy) / 3)
    # Label smoothing eps = 0.2, C = 2: q = 0.8 one_hot + 0.1.
    # Row 1: q = [0.9, 0.1]; class 1's term is (1 - 3/4)^2 * -log(3/4) = easy
    #   -> 0.9 * hard + 0.1 * easy
    # Row 2: q = [0.1, 0.9]; class 0's term is (1 - 1/4)^2 * -log(1/4) = hard
    #   -> 0.1 * hard + 0.9 * easy
    smoothed = FocalLoss(2.0, label_smoothing=0.2, reduction="none")(logits, targets)
    torch.testing.assert_close(
        smoothed, torch.tensor([0.9 * hard + 0.1 * easy, 0.1 * hard + 0.9 * easy])
    )


@pytest.mark.parametrize("weight", [None, [0.5, 2.0, 1.0, 3.0]])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_gamma0_equals_weighted_cross_entropy(weight, smoothing, reduction):
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(17, 4, generator=gen)
    targets = torch.randint(0, 4, (17,), generator=gen)
    kwargs = {"weight": weight, "label_smoothing": smoothing, "reduction": reduction}
    focal = FocalLoss(gamma=0.0, **kwargs)(logits, targets)
    wce = WeightedCrossEntropy(**kwargs)(logits, targets)
    torch.testing.assert_close(focal, wce, rtol=1e-6, atol=1e-7)
    # ... and both are torch's cross-entropy (exact in float64).
    ref = F.cross_entropy(
        logits.double(),
        targets,
        weight=None if weight is None else torch.tensor(weight, dtype=torch.float64),
        label_smoothing=smoothing,
        reduction=reduction,
    )
    torch.testing.assert_close(wce, ref.float())
    focal64 = FocalLoss(gamma=0.0, **kwargs)(logits.double(), targets)
    assert focal64.dtype == torch.float64
    torch.testing.assert_close(focal64, ref, rtol=1e-12, atol=1e-12)


def test_focal_down_weights_easy_examples():
    # Target 0 with p_t = 0.9 (easy) and p_t = 0.1 (hard).
    logits = torch.tensor([[math.log(9.0), 0.0], [0.0, math.log(9.0)]])
    targets = torch.tensor([0, 0])
    ce = WeightedCrossEntropy(reduction="none")(logits, targets)
    for gamma in (0.5, 1.0, 2.0, 5.0):
        fl = FocalLoss(gamma, reduction="none")(logits, targets)
        ratio = fl / ce  # (1 - p_t)^gamma
        torch.testing.assert_close(ratio, torch.tensor([0.1**gamma, 0.9**gamma]))
        assert ratio[0] < ratio[1]
        assert (fl <= ce + 1e-7).all()
    # Larger gamma -> the easy example's share of the loss shrinks.
    shares = []
    for gamma in (0.0, 1.0, 2.0, 4.0):
        fl = FocalLoss(gamma, reduction="none")(logits, targets)
        shares.append((fl[0] / fl.sum()).item())
    assert shares == sorted(shares, reverse=True)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_gradients_finite(gamma, smoothing):
    # Extreme logits: p rounds to exactly 1 or 0 in fp32.
    logits = torch.tensor(
        [[200.0, -200.0, 0.0], [0.0, 0.0, 0.0], [-300.0, 300.0, 1.0]],
        requires_grad=True,
    )
    targets = torch.tensor([0, 1, 0])
    loss = FocalLoss(gamma, weight=[1.0, 2.0, 3.0], label_smoothing=smoothing)(
        logits, targets
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_classification_losses_fp32_from_low_precision(dtype):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 3, generator=gen)
    targets = torch.randint(0, 3, (8, 1), generator=gen)  # SpeechBrain [B, 1]
    for loss_fn in (
        WeightedCrossEntropy(weight=class_weights([1, 2, 3]), label_smoothing=0.1),
        FocalLoss(2.0, weight=class_weights([1, 2, 3]), label_smoothing=0.1),
    ):
        low = loss_fn(logits.to(dtype), targets)
        assert low.dtype == torch.float32 and low.ndim == 0
        # same as the fp32 loss of the rounded logits
        torch.testing.assert_close(low, loss_fn(logits.to(dtype).float(), targets))


def test_classification_loss_errors():
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="2 class weights for 3 classes"):
        FocalLoss(weight=[1.0, 2.0])(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets must have shape"):
        WeightedCrossEntropy()(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="logits must have shape"):
        FocalLoss()(torch.zeros(2, 1, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        FocalLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        WeightedCrossEntropy(reduction="avg")
    with pytest.raises(ValueError, match="finite and >= 0"):
        WeightedCrossEntropy(weight=[1.0, -1.0])
    # the weight is a non-persistent buffer: checkpoints do not depend on it
    assert "weight" not in FocalLoss(weight=[1.0, 2.0]).state_dict()


def test_make_classification_loss():
    logits = torch.tensor([[0.0, LOG3], [1.0, -1.0]])
    targets = torch.tensor([0, 1])
    w = [2.0, 1.0]
    wce = make_classification_loss("weighted_ce", weight=w, label_smoothing=0.1)
    assert isinstance(wce, WeightedCrossEntropy)
    torch.testing.assert_close(
        wce(logits, targets),
        F.cross_entropy(logits, targets, weight=torch.tensor(w), label_smoothing=0.1),
    )
    focal = make_classification_loss("focal", weight=w, focal_gamma=3.0)
    assert isinstance(focal, FocalLoss) and focal.gamma == 3.0
    torch.testing.assert_close(
        focal(logits, targets), FocalLoss(3.0, weight=w)(logits, targets)
    )
    with pytest.raises(ValueError, match="unknown classification loss 'ce'"):
        make_classification_loss("ce")


# ---------------------------------------------------------------------- CCC
def _ccc_numpy(p, t):
    """Reference CCC of 1-D float64 arrays, population moments."""
    p, t = np.asarray(p, dtype=np.float64), np.asarray(t, dtype=np.float64)
    cov = np.mean((p - p.mean()) * (t - t.mean()))
    return 2 * cov / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)


def test_ccc_by_hand():
    # pred [1, 2, 3, 4], target [2, 4, 6, 8]:
    #   mean_p = 2.5, mean_t = 5
    #   var_p = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25, var_t = 4 * 1.25 = 5
    #   cov = 2 * var_p = 2.5, (mean_p - mean_t)^2 = 6.25
    #   CCC = 2 * 2.5 / (1.25 + 5 + 6.25) = 5 / 12.5 = 0.4
    # (Pearson's r is 1: the CCC penalises the scale and shift.)
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, 4.0, 6.0, 8.0])
    assert concordance_correlation(pred, target).item() == pytest.approx(0.4)
    assert concordance_correlation(target, pred).item() == pytest.approx(0.4)
    # Shift only: pred + 1 -> var 1.25 each, cov 1.25, shift 1:
    #   2.5 / (1.25 + 1.25 + 1) = 0.7142857
    assert concordance_correlation(pred + 1, pred).item() == pytest.approx(2.5 / 3.5)


def test_ccc_matches_numpy_reference():
    rng = np.random.default_rng(0)
    n, k = 200, 3
    target = rng.normal(3.5, 1.0, size=(n, k))
    pred = 0.6 * target + rng.normal(0.3, 0.8, size=(n, k))
    expected = [_ccc_numpy(pred[:, j], target[:, j]) for j in range(k)]
    got = concordance_correlation(torch.tensor(pred), torch.tensor(target))
    assert got.shape == (k,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    got32 = concordance_correlation(torch.tensor(pred).float(), torch.tensor(target))
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-5)
    # dim=1: samples along the second axis
    got_t = concordance_correlation(
        torch.tensor(pred.T).float(), torch.tensor(target.T).float(), dim=1
    )
    np.testing.assert_allclose(got_t.numpy(), expected, rtol=1e-5)


def test_ccc_perfect_agreement_and_loss():
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(32, 3, generator=gen)
    torch.testing.assert_close(concordance_correlation(target, target), torch.ones(3))
    assert CCCLoss()(target, target).item() == pytest.approx(0.0, abs=1e-6)
    centred = target - target.mean(dim=0)
    assert CCCLoss()(-centred, centred).item() == pytest.approx(2.0, abs=1e-6)
    pred = 0.5 * target + 0.3 * torch.randn(32, 3, generator=gen) + 0.2
    ccc = concordance_correlation(pred, target)
    loss = CCCLoss()(pred, target)
    torch.testing.assert_close(loss, 1 - ccc.mean())
    torch.testing.assert_close(loss, (1 - ccc).mean())
    # [B] inputs are one target
    torch.testing.assert_close(
        CCCLoss()(pred[:, 0], target[:, 0]), 1 - ccc[0], rtol=1e-6, atol=1e-6
    )


def test_ccc_loss_gradients_and_zero_variance():
    gen = torch.Generator().manual_seed(3)
    pred = torch.randn(16, 3, generator=gen, requires_grad=True)
    target = torch.randn(16, 3, generator=gen)
    CCCLoss()(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # Constant predictions on a constant batch with the same mean: 0/0 without
    # eps; CCCLoss's eps makes the CCC 0 (loss 1) with finite gradients.
    flat = torch.full((4, 2), 3.0, requires_grad=True)
    assert torch.isnan(concordance_correlation(flat, torch.full((4, 2), 3.0))).all()
    loss = CCCLoss()(flat, torch.full((4, 2), 3.0))
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert torch.isfinite(flat.grad).all()
    with pytest.raises(ValueError, match="shapes differ"):
        CCCLoss()(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least one sample"):
        concordance_correlation(torch.zeros(0), torch.zeros(0))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_ccc_fp32_from_low_precision(dtype):
    gen = torch.Generator().manual_seed(4)
    target = torch.randn(64, 3, generator=gen)
    pred = (target + 0.5 * torch.randn(64, 3, generator=gen)).to(dtype)
    ccc = concordance_correlation(pred, target.to(dtype))
    assert ccc.dtype == torch.float32
    loss = CCCLoss()(pred, target.to(dtype))
    assert loss.dtype == torch.float32
    expected = [
        _ccc_numpy(pred[:, j].float().numpy(), target.to(dtype)[:, j].float().numpy())
        for j in range(3)
    ]
    np.testing.assert_allclose(ccc.numpy(), expected, rtol=1e-5)
