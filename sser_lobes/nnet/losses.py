"""Losses for speech emotion recognition: weighted CE, focal loss and CCC.

* :func:`class_weights`: the inverse-frequency class weights of the Odyssey
  2024 MSP-Podcast challenge baseline, ``w_c = N / (C * count_c)`` (a
  balanced set gets weights 1); :func:`labels_counts_from_manifest` counts
  the classes of a SpeechBrain JSON manifest.
* :class:`WeightedCrossEntropy`: ``torch.nn.functional.cross_entropy`` with
  class weights and label smoothing, always computed in fp32.
* :class:`FocalLoss`: Lin et al. (2017), ``FL = -alpha_t (1 - p_t)^gamma log
  p_t``, with the class weights as ``alpha`` (the Sheffield winner of the
  Odyssey 2024 challenge used focal loss with class-prior weights). With
  ``gamma=0`` it is :class:`WeightedCrossEntropy`.
  :func:`make_classification_loss` picks one of the two by name (for YAML).
* :class:`SoftTargetCrossEntropy`: cross-entropy against a distribution over
  the classes (the annotators' votes), with class weights, label smoothing
  and per-utterance weights; on one-hot targets it is
  :class:`WeightedCrossEntropy`. Minimising it minimises the KL divergence
  from the votes to the model (the two differ by the votes' entropy).
* :func:`concordance_correlation` and :class:`CCCLoss`: Lin's concordance
  correlation coefficient, the metric of the arousal / valence / dominance
  task, and ``1 - CCC`` as a training loss.

Every loss upcasts its inputs to (at least) fp32, so it can be called on
bf16 / fp16 activations from autocast and still returns an fp32 scalar; keep
it outside autocast anyway (SpeechBrain #1803). Classification targets may be
``[batch]`` or SpeechBrain's ``[batch, 1]`` encoded labels.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CCCLoss",
    "FocalLoss",
    "SoftTargetCrossEntropy",
    "WeightedCrossEntropy",
    "class_weights",
    "concordance_correlation",
    "labels_counts_from_manifest",
    "make_classification_loss",
]

WEIGHT_SCHEMES = ("inverse_frequency", "uniform")
REDUCTIONS = ("mean", "sum", "none")


def class_weights(counts, scheme="inverse_frequency"):
    """Per-class loss weights from per-class counts.

    ``"inverse_frequency"`` is the weighting of the MSP-Podcast / Odyssey 2024
    challenge baseline: ``w_c = N / (C * count_c)`` with ``N`` the total count
    and ``C`` the number of classes, so that every class contributes the same
    total weight ``N / C`` and a balanced set gets all weights 1.
    ``"uniform"`` returns ones (no weighting, for configuration switches).

    Arguments
    ---------
    counts : sequence of numbers or dict
        Count of each class, in class-index order; a dict ``{label: count}``
        is taken in its iteration order (errors then name the label).
    scheme : str
        ``"inverse_frequency"`` or ``"uniform"``.

    Returns
    -------
    torch.Tensor
        ``float32`` weights, shape ``[C]``.

    Raises
    ------
    ValueError
        If there are no classes, or a count is not finite and positive (a
        class with count 0 would get an infinite weight: remove it from the
        label set or fix the data).

    Example
    -------
    >>> class_weights([10, 30, 60])  # N = 100, C = 3: 100 / (3 * count)
    tensor([3.3333, 1.1111, 0.5556])
    >>> class_weights({"neu": 2, "ang": 0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: class 'ang' (index 1) has count 0: ...
    """
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {WEIGHT_SCHEMES}")
    if isinstance(counts, Mapping):
        names = [repr(k) for k in counts]
        values = list(counts.values())
    else:
        if isinstance(counts, torch.Tensor):
            counts = counts.detach().cpu().tolist()
        if isinstance(counts, (str, bytes)):
            raise TypeError(f"counts must be a sequence of numbers, got {counts!r}")
        values = list(counts)  # lists, tuples, numpy arrays, generators
        names = None
    if not values:
        raise ValueError("counts is empty: need at least one class")
    checked = []
    for i, value in enumerate(values):
        what = f"class {names[i]} (index {i})" if names else f"class index {i}"
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{what}: count {value!r} is not a number")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{what}: count {value!r} must be finite and >= 0")
        if value == 0:
            raise ValueError(
                f"{what} has count 0: its weight N / (C * count) would be "
                "infinite; drop the class from the label set or check the data"
            )
        checked.append(value)
    counts_t = torch.tensor(checked, dtype=torch.float64)
    if scheme == "uniform":
        return torch.ones(len(checked), dtype=torch.float32)
    weights = counts_t.sum() / (len(checked) * counts_t)
    return weights.to(torch.float32)


def labels_counts_from_manifest(manifest_path, labels, key="emo"):
    """Count the classes of a SpeechBrain JSON manifest.

    Arguments
    ---------
    manifest_path : str or os.PathLike
        JSON object keyed by utterance id, e.g.
        ``{"utt1": {"wav": ..., "emo": "neu"}, ...}``.
    labels : sequence of str
        Class names in index order; the counts come in that order.
    key : str
        Field holding the label. Entries whose field is ``null`` (e.g. an
        unlabelled test set, or classes the preparation kept as unlabelled)
        are ignored.

    Returns
    -------
    list of int
        One count per label (0 for a label never seen; pass the result to
        :func:`class_weights`, which refuses zero counts).

    Raises
    ------
    FileNotFoundError
        If the manifest does not exist.
    ValueError
        Naming the file (and the utterance id) if the file is not a JSON
        object of objects, an entry lacks ``key``, or a label is not in
        ``labels``.

    Example
    -------
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.json")
    >>> with open(path, "w") as f:
    ...     json.dump({"u1": {"emo": "ang"}, "u2": {"emo": "neu"},
    ...                "u3": {"emo": "ang"}, "u4": {"emo": None}}, f)
    >>> labels_counts_from_manifest(path, ["neu", "ang", "sad"])
    [1, 2, 0]
    """
    path = Path(manifest_path)
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of class names, got {labels!r}")
    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    index = {label: i for i, label in enumerate(labels)}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: manifest not found") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object keyed by utterance id, "
            f"got a {type(data).__name__}"
        )
    counts = [0] * len(labels)
    for uid, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {uid!r} is not an object")
        if key not in entry:
            raise ValueError(
                f"{path}: entry {uid!r} has no {key!r} field "
                f"(its keys: {', '.join(map(str, entry)) or 'none'})"
            )
        label = entry[key]
        if label is None:
            continue
        if not isinstance(label, str) or label not in index:
            raise ValueError(
                f"{path}: entry {uid!r} has {key!r} = {label!r}, which is not "
                f"one of the labels {labels}"
            )
        counts[index[label]] += 1
    return counts


def _as_weight(weight):
    """Validate optional class weights; return a float32 1-D tensor or None."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight).detach()
    if not weight.is_floating_point():
        weight = weight.double()
    weight = weight.to(torch.float32)
    if weight.ndim != 1 or weight.numel() == 0:
        raise ValueError(f"weight must be 1-D with one value per class, got {weight}")
    if not torch.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(f"weight must be finite and >= 0, got {weight.tolist()}")
    return weight


def _check_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(
        label_smoothing, (int, float)
    ):
        raise TypeError(f"label_smoothing must be a number, got {label_smoothing!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    return float(label_smoothing)


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _prepare(logits, targets, weight):
    """fp32 logits ``[B, C]``, int64 targets ``[B]``, weight on their device."""
    if logits.ndim != 2:
        raise ValueError(
            f"logits must have shape [batch, classes], got {tuple(logits.shape)}"
        )
    if targets.ndim == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape [{logits.shape[0]}] (or [batch, 1]) for "
            f"logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if weight is not None:
        if weight.numel() != logits.shape[1]:
            raise ValueError(
                f"{weight.numel()} class weights for {logits.shape[1]} classes"
            )
        weight = weight.to(logits.device)
    logits = logits.float() if logits.dtype != torch.float64 else logits
    if weight is not None:
        weight = weight.to(logits.dtype)
    return logits, targets.long(), weight


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with optional class weights and label smoothing, in fp32.

    Exactly ``torch.nn.functional.cross_entropy(logits.float(), targets,
    weight, label_smoothing=...)``: with ``reduction="mean"`` the sum of the
    per-example losses is divided by the sum of the weights of the examples'
    true classes. Use :func:`class_weights` for the challenge baseline's
    ``N / (C * count_c)`` weights.

    Arguments
    ---------
    weight : sequence of float or torch.Tensor, optional
        One non-negative weight per class (moved to the logits' device at
        each call; it is not part of the ``state_dict``).
    label_smoothing : float
        In ``[0, 1]``; the target becomes ``(1 - eps) one_hot + eps / C``.
    reduction : str
        ``"mean"`` (weighted mean, see above), ``"sum"`` or ``"none"``.

    Example
    -------
    >>> import math
    >>> loss = WeightedCrossEntropy(weight=[2.0, 1.0])
    >>> logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])
    >>> # (2 * -log(1/4) + 1 * -log(3/4)) / (2 + 1)
    >>> round(loss(logits, torch.tensor([0, 1])).item(), 4)
    1.0201
    """

    def __init__(self, weight=None, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.register_buffer("weight", _as_weight(weight), persistent=False)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits, targets):
        """Loss of ``logits [B, C]`` against class indices ``[B]`` / ``[B, 1]``."""
        logits, targets, weight = _prepare(logits, targets, self.weight)
        return F.cross_entropy(
            logits,
            targets,
            weight=weight,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017) with class weights and label smoothing.

    For one example with class probabilities ``p = softmax(logits)`` and
    true class ``y``, without smoothing::

        FL = -alpha_y * (1 - p_y)^gamma * log(p_y)

    ``gamma > 0`` down-weights well-classified examples (``p_y`` close to 1)
    so that training focuses on the hard ones; ``alpha = weight`` (all ones if
    ``None``).

    **Label smoothing** turns the target into ``q = (1 - eps) one_hot(y) + eps
    / C`` and the focal term is applied to every class's cross-entropy term::

        FL = sum_c q_c * alpha_c * (1 - p_c)^gamma * (-log p_c)

    **Reduction** ``"mean"`` divides the sum of the per-example losses by the
    sum of ``alpha_y`` over the batch's true classes, as
    ``torch.nn.functional.cross_entropy`` does with ``weight``. So with
    ``gamma=0`` the loss equals :class:`WeightedCrossEntropy` (same weight,
    smoothing and reduction) for every batch. If every target in a batch has
    weight 0 the mean is 0/0 = NaN, as in PyTorch.

    Computation is in fp32 (float64 stays float64) from ``log_softmax``;
    ``1 - p`` is ``-expm1(log p)`` (accurate for easy examples) and is floored
    at the smallest normal float so that the gradient stays finite for
    ``0 < gamma < 1`` when ``p`` rounds to 1.

    Arguments
    ---------
    gamma : float
        Focusing parameter ``>= 0`` (2 in Lin et al.).
    weight : sequence of float or torch.Tensor, optional
        Per-class ``alpha`` (e.g. :func:`class_weights`).
    label_smoothing : float
        In ``[0, 1]``.
    reduction : str
        ``"mean"``, ``"sum"`` or ``"none"`` (per-example losses ``[B]``).

    Example
    -------
    >>> import math
    >>> logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])
    >>> targets = torch.tensor([0, 1])  # p_y = 1/4 (hard), 3/4 (easy)
    >>> # (3/4)^2 * -log(1/4) = 0.779790 and (1/4)^2 * -log(3/4) = 0.017980
    >>> FocalLoss(gamma=2.0, reduction="none")(logits, targets)
    tensor([0.7798, 0.0180])
    >>> # weighted mean: (2 * 0.779790 + 1 * 0.017980) / (2 + 1)
    >>> round(FocalLoss(2.0, weight=[2.0, 1.0])(logits, targets).item(), 4)
    0.5259
    """

    def __init__(self, gamma=2.0, weight=None, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
            raise TypeError(f"gamma must be a number, got {gamma!r}")
        if not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma must be finite and >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("weight", _as_weight(weight), persistent=False)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits, targets):
        """Loss of ``logits [B, C]`` against class indices ``[B]`` / ``[B, 1]``."""
        logits, targets, weight = _prepare(logits, targets, self.weight)
        n_classes = logits.shape[1]
        log_p = F.log_softmax(logits, dim=1)
        # -log p_c, times alpha_c, times the focusing factor (1 - p_c)^gamma
        terms = -log_p
        if weight is not None:
            terms = terms * weight
        if self.gamma != 0:
            tiny = torch.finfo(log_p.dtype).tiny
            one_minus_p = (-torch.expm1(log_p)).clamp(min=tiny)
            terms = terms * one_minus_p.pow(self.gamma)
        eps = self.label_smoothing
        loss = terms.gather(1, targets[:, None])[:, 0]
        if eps > 0:
            loss = (1 - eps) * loss + (eps / n_classes) * terms.sum(dim=1)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        if weight is None:
            return loss.mean()
        return loss.sum() / weight[targets].sum()


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against target distributions, in fp32.

    For one utterance with target distribution ``q`` (e.g. its annotators'
    votes), smoothed ``q~ = (1 - eps) q + eps / C``, class weights ``w`` and
    utterance weight ``s``::

        loss_i = s_i * sum_c w_c q~_ic (-log p_ic)

    ``reduction="mean"`` divides the sum by ``sum_i s_i sum_c w_c q_ic`` (the
    weight of each utterance's distribution, unsmoothed). On one-hot targets
    with ``s = 1`` this is exactly ``torch.nn.functional.cross_entropy``
    with ``weight`` and ``label_smoothing`` (:class:`WeightedCrossEntropy`).
    The gradient is that of ``KL(q~ || p)``.

    Arguments
    ---------
    weight : sequence of float or torch.Tensor, optional
        Per-class weights (e.g. :func:`class_weights`).
    label_smoothing : float
        ``eps`` in ``[0, 1]``.
    reduction : str
        ``"mean"``, ``"sum"`` or ``"none"``.

    Example
    -------
    >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    >>> targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    >>> loss = SoftTargetCrossEntropy()(logits, targets)
    >>> round(loss.item(), 4)  # (log 2 + -log sigmoid(2)) / 2
    0.41
    >>> hard = torch.nn.functional.cross_entropy(logits[1:], torch.tensor([0]))
    >>> bool(torch.isclose(SoftTargetCrossEntropy()(logits[1:], targets[1:]), hard))
    True
    """

    def __init__(self, weight=None, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.register_buffer("weight", _as_weight(weight), persistent=False)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits, targets, sample_weight=None):
        """Loss of ``logits [B, C]`` against distributions ``targets [B, C]``.

        ``sample_weight`` ``[B]`` weights each utterance (default 1).
        """
        if logits.ndim != 2 or targets.shape != logits.shape:
            raise ValueError(
                f"logits and targets must both be [batch, classes], got "
                f"{tuple(logits.shape)} and {tuple(targets.shape)}"
            )
        logits = logits.float() if logits.dtype != torch.float64 else logits
        targets = targets.to(device=logits.device, dtype=logits.dtype)
        n_classes = logits.shape[1]
        weight = self.weight
        if weight is not None:
            if weight.numel() != n_classes:
                raise ValueError(
                    f"{weight.numel()} class weights for {n_classes} classes"
                )
            weight = weight.to(device=logits.device, dtype=logits.dtype)
        else:
            weight = torch.ones(n_classes, device=logits.device, dtype=logits.dtype)
        if sample_weight is None:
            sample_weight = torch.ones(logits.shape[0], device=logits.device)
        sample_weight = sample_weight.reshape(-1).to(
            device=logits.device, dtype=logits.dtype
        )
        eps = self.label_smoothing
        smoothed = (1 - eps) * targets + eps / n_classes
        log_p = F.log_softmax(logits, dim=1)
        loss = sample_weight * -(smoothed * weight * log_p).sum(dim=1)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / (sample_weight * (targets * weight).sum(dim=1)).sum()


CLASSIFICATION_LOSSES = ("weighted_ce", "focal")


def make_classification_loss(
    name="weighted_ce", weight=None, label_smoothing=0.0, focal_gamma=2.0
):
    """Build a classification loss by name, e.g. from a hyperparameter file.

    Arguments
    ---------
    name : str
        ``"weighted_ce"`` (:class:`WeightedCrossEntropy`) or ``"focal"``
        (:class:`FocalLoss`).
    weight : sequence of float or torch.Tensor, optional
        Class weights (e.g. :func:`class_weights`); None for no weighting.
    label_smoothing : float
        In ``[0, 1]``.
    focal_gamma : float
        ``gamma`` of the focal loss (ignored for ``"weighted_ce"``).

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> make_classification_loss("focal", weight=[1.0, 2.0], focal_gamma=1.0).gamma
    1.0
    >>> type(make_classification_loss("weighted_ce")).__name__
    'WeightedCrossEntropy'
    """
    if name == "weighted_ce":
        return WeightedCrossEntropy(weight=weight, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(
            gamma=focal_gamma, weight=weight, label_smoothing=label_smoothing
        )
    raise ValueError(
        f"unknown classification loss {name!r}; expected one of {CLASSIFICATION_LOSSES}"
    )


def _float_pair(pred, target):
    """Both tensors in a common float dtype of at least fp32."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("pred and target must be torch tensors")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs "
            f"{tuple(target.shape)}"
        )
    dtype = torch.float64 if torch.float64 in (pred.dtype, target.dtype) else None
    dtype = dtype or torch.float32
    return pred.to(dtype), target.to(dtype)


def concordance_correlation(pred, target, dim=0, eps=0.0):
    """Lin's concordance correlation coefficient along ``dim``.

    ``CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2)`` with
    population (biased, ``1/N``) moments, the definition of the MSP-Podcast
    challenge. It is 1 for perfect agreement, and unlike Pearson's correlation
    it penalises a shift or a scale difference. For ``[N, K]`` inputs and
    ``dim=0`` it returns the ``K`` per-column values.

    Arguments
    ---------
    pred, target : torch.Tensor
        Same shape; computed in fp32 (float64 inputs stay float64).
    dim : int
        Dimension holding the samples.
    eps : float
        Added to the denominator. With ``eps=0`` a pair of constant, equal
        inputs gives 0/0 = NaN; :class:`CCCLoss` uses a small ``eps``.

    Returns
    -------
    torch.Tensor
        The input shape without ``dim``.

    Example
    -------
    >>> pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    >>> concordance_correlation(pred, 2 * pred)  # 2 * 2.5 / (1.25 + 5 + 6.25)
    tensor(0.4000)
    """
    pred, target = _float_pair(pred, target)
    if pred.ndim == 0 or pred.shape[dim] == 0:
        raise ValueError("concordance_correlation needs at least one sample")
    mean_p = pred.mean(dim=dim, keepdim=True)
    mean_t = target.mean(dim=dim, keepdim=True)
    dp, dt = pred - mean_p, target - mean_t
    cov = (dp * dt).mean(dim=dim)
    var_p = (dp * dp).mean(dim=dim)
    var_t = (dt * dt).mean(dim=dim)
    shift = (mean_p - mean_t).squeeze(dim) ** 2
    return 2 * cov / (var_p + var_t + shift + eps)


class CCCLoss(nn.Module):
    """``mean_k (1 - CCC_k)`` (or the sum) over ``K`` continuous targets.

    The CCC is computed over the batch for each column (e.g. arousal,
    valence, dominance) and the loss averaged (``reduction="mean"``) or
    summed (``"sum"``, the Odyssey 2024 baseline's ``torch.sum(1 - ccc)``)
    over the columns, in fp32. It is a batch statistic: use batches of
    reasonable size (the challenge baseline computes it on each step's
    batch of 8: batch size 32 with 4 accumulation steps); a batch of one
    utterance has no variance and gives no gradient.

    ``eps`` is added to the CCC denominator: when a batch has zero variance in
    both prediction and target and equal means (e.g. a constant model on a
    batch of identical labels), the CCC is 0 instead of 0/0 and the loss and
    its gradients stay finite. Otherwise its effect is negligible.

    Arguments
    ---------
    eps : float
        Denominator guard, ``>= 0``.
    reduction : str
        ``"mean"`` or ``"sum"`` over the targets.

    Example
    -------
    >>> pred = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0]])
    >>> target = torch.cat([2 * pred[:, :1], pred[:, 1:]], dim=1)
    >>> CCCLoss()(pred, target)  # (1 - 0.4 + 1 - 1) / 2
    tensor(0.3000)
    >>> CCCLoss(reduction="sum")(pred, target)
    tensor(0.6000)
    """

    def __init__(self, eps=1e-8, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise TypeError(f"eps must be a number, got {eps!r}")
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be finite and >= 0, got {eps}")
        self.eps = float(eps)

    def forward(self, pred, target):
        """Loss of ``pred [B, K]`` against ``target [B, K]`` (``[B]`` is K=1)."""
        if pred.ndim == 1:
            pred = pred[:, None]
        if target.ndim == 1:
            target = target[:, None]
        if pred.ndim != 2:
            raise ValueError(
                f"pred must have shape [batch, K], got {tuple(pred.shape)}"
            )
        ccc = concordance_correlation(pred, target, dim=0, eps=self.eps)
        loss = 1 - ccc
        return loss.sum() if self.reduction == "sum" else loss.mean()
