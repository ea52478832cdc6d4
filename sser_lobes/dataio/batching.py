"""Duration-bucketed batching: little padding, yet shuffled from epoch to epoch.

Waveform SER models pad every utterance of a batch to the longest one. The
SpeechBrain IEMOCAP recipe draws random batches of 4; on IEMOCAP's duration
profile (5,531 utterances, mean 4.5 s, sd 3.1 s, min 0.6 s, max 34 s, right
skewed) about 42 % of the computed samples are padding
(``python -m sser_lobes.evaluation.padding_report --iemocap-profile``).

:class:`DurationBucketBatchSampler` sorts the utterances by a *jittered*
duration, cuts the sorted list into consecutive batches and shuffles the order
of the batches. The jitter (a random factor ``exp(U(-jitter, jitter))`` drawn
anew each epoch) changes which utterances share a batch from one epoch to the
next; the default ``jitter=0.05`` keeps the padding at about 4 % of the
computed samples at batch size 8 on the IEMOCAP profile, and fewer than 1 % of
the batches of an epoch reappear unchanged in the next one.

Everything is a deterministic function of ``(seed, epoch)``, so all DDP ranks
build the same list of batches and a run resumed from a mid-epoch checkpoint
(SpeechBrain's ``SaveableDataLoader`` fast-forwards the sampler) sees the same
batches again.

Use in a SpeechBrain recipe::

    train_sampler = DurationBucketBatchSampler.from_dataset(train_data, 8)
    valid_sampler = DurationBucketBatchSampler.from_dataset(
        valid_data, 8, shuffle=False  # evaluation: sorted, fixed order
    )
    brain = EmoBrain(...)
    # Outside DDP, Brain.fit() only calls set_epoch() on ``brain.train_sampler``,
    # which it does not set for a ``batch_sampler``: set it yourself. Under DDP,
    # Brain wraps the batch sampler in DistributedSamplerWrapper, which passes
    # set_epoch() through.
    brain.train_sampler = train_sampler
    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        valid_data,
        train_loader_kwargs={"batch_sampler": train_sampler},
        valid_loader_kwargs={"batch_sampler": valid_sampler},
    )

Do not pass ``batch_size``, ``shuffle``, ``sampler`` or ``drop_last`` to the
loader together with ``batch_sampler`` (PyTorch refuses the combination).

Two options, off by default, serve training on MSP-Podcast-like corpora:

* ``max_duration=12.0``: when training crops long utterances (the Odyssey 2024
  baseline crops to 12 s), bucket by the cropped duration, so an utterance
  costs at most ``max_duration`` of padding and compute and all long ones
  share the same buckets.
* ``weights=...``: class-balanced (or any weighted) sampling. Each epoch draws
  ``len(durations)`` items with replacement with probability proportional to
  the weights, then buckets the draws by duration as usual.
  :func:`class_balanced_weights` gives every class the same total weight::

      train_sampler = DurationBucketBatchSampler.from_dataset(
          train_data, 8, max_duration=12.0, weights="emo"  # balance on "emo"
      )
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "DEFAULT_JITTER",
    "DurationBucketBatchSampler",
    "batches_padding_share",
    "class_balanced_weights",
    "iemocap_like_durations",
    "padding_share",
    "random_batches",
]

#: Default multiplicative jitter of the sort key. On the IEMOCAP profile at
#: batch size 8 it gives ~3.9 % padding (0.1 would give ~7.5 %, 0 gives 0.4 %
#: but the same batches every epoch).
DEFAULT_JITTER = 0.05


def _check_int(value, name, minimum):
    """Return ``value`` as an int, or raise if it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _as_durations(durations, name="durations"):
    """Return ``durations`` as a 1-D float64 array of finite values >= 0."""
    if isinstance(durations, torch.Tensor):
        durations = durations.detach().cpu().double().numpy()
    try:
        arr = np.asarray(durations, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a sequence of numbers: {err}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {arr[i]!r}: durations must be finite and >= 0 "
            f"({int(bad.sum())} bad value(s))"
        )
    return arr


def _check_max_duration(max_duration):
    """Return ``max_duration`` as a float > 0, or None."""
    if max_duration is None:
        return None
    if isinstance(max_duration, bool) or not isinstance(
        max_duration, (int, float, np.number)
    ):
        raise TypeError(f"max_duration must be a number or None, got {max_duration!r}")
    if not math.isfinite(max_duration) or max_duration <= 0:
        raise ValueError(f"max_duration must be finite and > 0, got {max_duration}")
    return float(max_duration)


def _as_weights(weights, n):
    """Return sampling weights as a float64 array of ``n`` finite values >= 0."""
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().double().numpy()
    try:
        arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"weights must be a sequence of numbers: {err}") from None
    if arr.ndim != 1 or arr.size != n:
        raise ValueError(
            f"weights must be 1-D with one value per item ({n}), got shape "
            f"{tuple(arr.shape)}"
        )
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"weights[{i}] = {arr[i]!r}: weights must be finite and >= 0")
    if arr.sum() <= 0:
        raise ValueError("weights are all 0: no item could ever be drawn")
    return arr


def class_balanced_weights(labels) -> np.ndarray:
    """Per-item sampling weights ``1 / count(label of the item)``.

    Every class then has the same total weight, so weighted sampling draws
    each class equally often on average, whatever the imbalance. Items whose
    label is ``None`` (unlabelled, or classes excluded from training) get
    weight 0 and are never drawn.

    Arguments
    ---------
    labels : iterable
        One hashable label per item (str, int, or one-element tensors, which
        are converted with ``.item()``), or None.

    Returns
    -------
    numpy.ndarray
        ``float64`` weights, one per item.

    Raises
    ------
    ValueError
        If there are no items or no item has a label.

    Example
    -------
    >>> class_balanced_weights(["neu", "neu", "neu", "ang", None])
    array([0.33333333, 0.33333333, 0.33333333, 1.        , 0.        ])
    """
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"labels must be a sequence of labels, got {labels!r}")
    values = []
    for i, label in enumerate(labels):
        if isinstance(label, torch.Tensor):
            if label.numel() != 1:
                raise TypeError(
                    f"labels[{i}] is a tensor of shape {tuple(label.shape)}, "
                    "expected one value"
                )
            label = label.item()
        if isinstance(label, np.generic):
            label = label.item()
        try:
            hash(label)
        except TypeError:
            raise TypeError(f"labels[{i}] = {label!r} is not hashable") from None
        values.append(label)
    if not values:
        raise ValueError("labels is empty")
    counts = {}
    for label in values:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    if not counts:
        raise ValueError("no item has a label (all are None): nothing to sample")
    return np.array(
        [0.0 if label is None else 1.0 / counts[label] for label in values],
        dtype=np.float64,
    )


class DurationBucketBatchSampler(torch.utils.data.Sampler):
    """Batches of ``batch_size`` utterances of similar duration, shuffled each epoch.

    For each epoch a numpy ``Generator`` is seeded from ``(seed, epoch)``; the
    utterance indices are sorted by ``duration * exp(uniform(-jitter, jitter))``
    (a new draw each epoch, so batch composition changes between epochs), cut
    into consecutive chunks of ``batch_size`` and the order of the chunks is
    shuffled. With ``shuffle=False`` the indices are sorted by plain ascending
    duration (stable sort, no jitter) and the batches come in that fixed order:
    **use shuffle=False for validation and test loaders.**

    With ``max_duration`` the durations are first capped at that value (what
    training that crops long utterances actually computes). With
    ``max_batch_seconds`` the batches are cut from the sorted order by
    padded audio instead of by count (as SpeechBrain's
    ``DynamicBatchSampler``): a batch takes the next utterances while
    ``len(batch) * longest <= max_batch_seconds`` (and at most
    ``batch_size`` of them), so memory per batch stays bounded, short
    utterances fill a batch and a long one gets a batch of its own. With ``weights``
    (training only) each epoch first draws ``len(durations)`` item indices
    with replacement, with probabilities proportional to ``weights``, from
    the same ``(seed, epoch)`` generator; those draws are then bucketed as
    above. An item may then appear several times in an epoch (even in the
    same batch) and items of weight 0 never appear.

    Pass it as ``batch_sampler=`` to ``torch.utils.data.DataLoader`` or
    ``speechbrain.dataio.dataloader.make_dataloader``. It works inside
    ``speechbrain.dataio.sampler.DistributedSamplerWrapper`` (what
    ``Brain`` uses under DDP), which needs at least 2 batches per rank (it
    uses ``itemgetter(*indices)``) and, with ``drop_last=False`` there, repeats
    a few batches when ``len(sampler)`` is not a multiple of the world size.

    Arguments
    ---------
    durations : sequence of float
        Duration (seconds, or any unit) of dataset item ``i`` at index ``i``.
    batch_size : int
        Utterances per batch.
    shuffle : bool
        Jitter the sort and shuffle the batch order every epoch (training).
        ``False``: ascending duration, fixed order (evaluation).
    seed : int
        Non-negative seed; the batches are a deterministic function of
        ``(seed, epoch)``.
    jitter : float
        Half-width of the uniform log-scale jitter of the sort key (``>= 0``).
        Ignored when ``shuffle=False``. See :data:`DEFAULT_JITTER`.
    drop_last : bool
        Drop ``len(durations) % batch_size`` utterances so every batch is full.
        When shuffling, the dropped utterances are drawn at random each epoch
        (so the longest utterances are not always the ones left out); with
        ``shuffle=False`` the longest ones are dropped. With ``weights`` the
        surplus draws (themselves random) are dropped.
    max_duration : float, optional
        Cap applied to the durations before bucketing (e.g. the 12 s training
        crop of the Odyssey 2024 baseline). It only changes the bucketing:
        the cropping itself is the data pipeline's job. ``None``: no cap.
    weights : sequence of float, optional
        Non-negative sampling weight of each item (e.g.
        :func:`class_balanced_weights`); requires ``shuffle=True``.
        ``None``: every item exactly once per epoch.
    max_batch_seconds : float, optional
        Budget of padded audio per batch (utterances x longest duration, in
        the unit of ``durations``, after the ``max_duration`` cap);
        ``batch_size`` is then the largest number of utterances per batch.
        ``None``: batches of ``batch_size``. Not with ``drop_last``.

    Example
    -------
    >>> sampler = DurationBucketBatchSampler([3.0, 1.0, 2.0, 8.0, 7.0], 2)
    >>> len(sampler)
    3
    >>> sampler.set_epoch(1)
    >>> sorted(i for batch in sampler for i in batch)
    [0, 1, 2, 3, 4]
    >>> list(DurationBucketBatchSampler([3.0, 1.0, 2.0, 8.0], 2, shuffle=False))
    [[1, 2], [0, 3]]
    >>> dynamic = DurationBucketBatchSampler(
    ...     [1.0, 1.0, 1.0, 2.0, 8.0], 16, shuffle=False, max_batch_seconds=6.0
    ... )
    >>> list(dynamic)  # 4 x 2 s would be 8 s of padded audio
    [[0, 1, 2], [3], [4]]
    """

    def __init__(
        self,
        durations,
        batch_size,
        shuffle=True,
        seed=1993,
        jitter=DEFAULT_JITTER,
        drop_last=False,
        max_duration=None,
        weights=None,
        max_batch_seconds=None,
    ):
        super().__init__()
        self.durations = _as_durations(durations)
        self.max_duration = _check_max_duration(max_duration)
        #: the durations the buckets are built from (capped at max_duration)
        self.capped_durations = (
            self.durations
            if self.max_duration is None
            else np.minimum(self.durations, self.max_duration)
        )
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.seed = _check_int(seed, "seed", 0)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"jitter must be a number, got {jitter!r}")
        if not math.isfinite(jitter) or jitter < 0:
            raise ValueError(f"jitter must be finite and >= 0, got {jitter}")
        self.jitter = float(jitter)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if weights is not None and not self.shuffle:
            raise ValueError(
                "weights (weighted sampling with replacement) are for training "
                "and need shuffle=True; evaluation loaders must see every item "
                "exactly once (shuffle=False, no weights)"
            )
        self.weights = (
            None if weights is None else _as_weights(weights, len(self.durations))
        )
        if self.drop_last and len(self.durations) < self.batch_size:
            raise ValueError(
                f"drop_last=True with {len(self.durations)} utterances and "
                f"batch_size={self.batch_size} would give no batch at all"
            )
        self.max_batch_seconds = _check_max_duration(max_batch_seconds)
        if self.max_batch_seconds is not None and self.drop_last:
            raise ValueError(
                "drop_last is for fixed batch sizes, not max_batch_seconds"
            )
        self.epoch = 0
        self._epoch_was_set = False
        self._iterations = 0
        self._warned = False

    @classmethod
    def from_dataset(
        cls, dataset, batch_size, duration_key="duration", weights=None, **kwargs
    ):
        """Build the sampler from a SpeechBrain ``DynamicItemDataset``.

        The durations are read from the dataset's static data (``dataset.data``
        for ``dataset.data_ids``, which also covers ``filtered_sorted`` views)
        or, when ``duration_key`` is a dynamic item, by computing only that key
        (``dataset.output_keys_as``); audio is never loaded for a static key.
        ``weights`` given as a key name is read the same way.

        Arguments
        ---------
        dataset : speechbrain.dataio.dataset.DynamicItemDataset
            The dataset the loader will index.
        batch_size : int
            Utterances per batch.
        duration_key : str
            Key holding the duration of each item.
        weights : str or sequence of float, optional
            A key name (e.g. ``"emo"``): class-balanced sampling on that
            key's values, ``class_balanced_weights(labels)`` (items whose value
            is None are never drawn); or per-item weights in dataset order.
        **kwargs
            Passed on to the constructor (``shuffle``, ``seed``, ``jitter``,
            ``drop_last``, ``max_duration``).

        Returns
        -------
        DurationBucketBatchSampler

        Example
        -------
        >>> from speechbrain.dataio.dataset import DynamicItemDataset
        >>> data = {"a": {"duration": 2.0}, "b": {"duration": 1.0}}
        >>> sampler = DurationBucketBatchSampler.from_dataset(
        ...     DynamicItemDataset(data), 2, shuffle=False
        ... )
        >>> sampler.durations.tolist(), list(sampler)
        ([2.0, 1.0], [[1, 0]])
        >>> data = {"a": {"duration": 2.0, "emo": "neu"},
        ...         "b": {"duration": 1.0, "emo": "neu"},
        ...         "c": {"duration": 9.0, "emo": "ang"}}
        >>> sampler = DurationBucketBatchSampler.from_dataset(
        ...     DynamicItemDataset(data), 2, weights="emo", max_duration=5.0
        ... )
        >>> sampler.weights.tolist(), sampler.capped_durations.tolist()
        ([0.5, 0.5, 1.0], [2.0, 1.0, 5.0])
        """
        durations = _dataset_durations(dataset, duration_key)
        if isinstance(weights, str):
            labels = [value for _, value in _dataset_values(dataset, weights, "labels")]
            weights = class_balanced_weights(labels)
        return cls(durations, batch_size, weights=weights, **kwargs)

    def set_epoch(self, epoch):
        """Select the epoch whose batches the next iteration yields.

        Arguments
        ---------
        epoch : int
            Non-negative epoch number (SpeechBrain counts from 1).

        Example
        -------
        >>> sampler = DurationBucketBatchSampler(list(range(1, 41)), 4)
        >>> sampler.set_epoch(1)
        >>> first = list(sampler)
        >>> sampler.set_epoch(2)
        >>> first == list(sampler)
        False
        """
        self.epoch = _check_int(epoch, "epoch", 0)
        self._epoch_was_set = True

    def epoch_batches(self, epoch=None):
        """Return the list of batches (lists of int indices) of an epoch.

        Arguments
        ---------
        epoch : int, optional
            Defaults to the current epoch (see :meth:`set_epoch`).

        Returns
        -------
        list of list of int

        Example
        -------
        >>> sampler = DurationBucketBatchSampler([4.0, 1.0, 3.0, 2.0], 2)
        >>> sampler.epoch_batches(3) == sampler.epoch_batches(3)
        True
        """
        epoch = self.epoch if epoch is None else _check_int(epoch, "epoch", 0)
        d = self.capped_durations
        n, bs = len(d), self.batch_size
        if not self.shuffle:
            order = np.argsort(d, kind="stable")
            if self.drop_last:
                order = order[: (n // bs) * bs]
            return self._cut(order)

        rng = np.random.default_rng([self.seed, epoch])
        if self.weights is not None:
            # n i.i.d. draws with replacement; drop_last drops the surplus ones.
            draws = rng.choice(
                n, size=n, replace=True, p=self.weights / self.weights.sum()
            )
            if self.drop_last:
                draws = draws[: (n // bs) * bs]
            noise = np.exp(rng.uniform(-self.jitter, self.jitter, size=len(draws)))
            order = draws[np.argsort(d[draws] * noise, kind="stable")]
            batches = self._cut(order)
            return [batches[j] for j in rng.permutation(len(batches))]

        noise = np.exp(rng.uniform(-self.jitter, self.jitter, size=n))
        order = np.argsort(d * noise, kind="stable")
        if self.drop_last and n % bs:
            dropped = rng.choice(n, size=n % bs, replace=False)
            order = order[~np.isin(order, dropped)]
        batches = self._cut(order)
        return [batches[j] for j in rng.permutation(len(batches))]

    def _cut(self, order):
        """Consecutive batches of the sorted ``order``: ``batch_size`` items,
        or as many as ``max_batch_seconds`` of padded audio allows."""
        bs = self.batch_size
        if self.max_batch_seconds is None:
            return [order[i : i + bs].tolist() for i in range(0, len(order), bs)]
        d = self.capped_durations
        batches, batch, longest = [], [], 0.0
        for index in order.tolist():
            widest = max(longest, float(d[index]))
            if batch and (
                len(batch) == bs or (len(batch) + 1) * widest > self.max_batch_seconds
            ):
                batches.append(batch)
                batch, widest = [], float(d[index])
            batch.append(index)
            longest = widest
        if batch:
            batches.append(batch)
        return batches

    def __iter__(self):
        """Yield the batches of the current epoch, as lists of int indices."""
        if (
            self.shuffle
            and not self._epoch_was_set
            and self._iterations
            and (not self._warned)
        ):
            self._warned = True
            warnings.warn(
                "DurationBucketBatchSampler iterated again without set_epoch(): "
                "every epoch gets the same batches. Outside DDP, SpeechBrain's "
                "Brain does not call set_epoch() on a batch_sampler unless you "
                "set `brain.train_sampler = sampler`.",
                stacklevel=2,
            )
        self._iterations += 1
        yield from self.epoch_batches()

    def __len__(self):
        """Return the number of batches per epoch."""
        if self.max_batch_seconds is not None:
            return len(self.epoch_batches())
        n = len(self.durations)
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)


def _dataset_values(dataset, key, what="durations"):
    """Read ``(id, value of key)`` per dataset index, computing only that key."""
    name = type(dataset).__name__
    data = getattr(dataset, "data", None)
    data_ids = getattr(dataset, "data_ids", None)
    values = None
    if isinstance(data, dict) and data_ids is not None:
        if len(data_ids) == 0:
            raise ValueError(f"{name} is empty: no {what} to read")
        first = data[data_ids[0]]
        if isinstance(first, dict) and key in first:
            values = []
            for uid in data_ids:
                entry = data[uid]
                if not isinstance(entry, dict) or key not in entry:
                    raise ValueError(f"{name} item {uid!r} has no {key!r} field")
                values.append((uid, entry[key]))
    if values is None:
        if not hasattr(dataset, "output_keys_as"):
            raise TypeError(
                f"cannot read {what} from {name}: expected a SpeechBrain "
                "DynamicItemDataset (with .data / .data_ids or output_keys_as); "
                f"pass the {what} to DurationBucketBatchSampler directly"
            )
        if len(dataset) == 0:
            raise ValueError(f"{name} is empty: no {what} to read")
        try:
            with dataset.output_keys_as([key]):
                values = []
                for i in range(len(dataset)):
                    uid = data_ids[i] if data_ids is not None else i
                    values.append((uid, dataset[i][key]))
        except (KeyError, ValueError) as err:
            raise ValueError(
                f"{name} has no static field or dynamic item {key!r} "
                f"({type(err).__name__}: {err})"
            ) from None
    return values


def _dataset_durations(dataset, duration_key):
    """Read one duration per dataset index without loading audio."""
    name = type(dataset).__name__
    values = _dataset_values(dataset, duration_key, "durations")
    out = np.empty(len(values), dtype=np.float64)
    for i, (uid, value) in enumerate(values):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(
                f"{name} item {uid!r}: {duration_key!r} = {value!r} is not a number"
            )
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{name} item {uid!r}: {duration_key!r} = {value!r} must be "
                "finite and >= 0"
            )
        out[i] = value
    return out


def padding_share(batches_durations: Iterable[Sequence[float]]) -> float:
    """Share of the computed samples that are padding.

    A batch ``b`` of ``n_b`` utterances padded to its longest one computes
    ``n_b * max_b`` samples, of which ``sum_b`` are real. The share is
    ``sum_b (n_b * max_b - sum_b) / sum_b (n_b * max_b)`` (0 if nothing is
    computed).

    Arguments
    ---------
    batches_durations : iterable of sequences of float
        The durations of the utterances of each batch.

    Returns
    -------
    float
        In ``[0, 1)``.

    Example
    -------
    >>> padding_share([[1.0, 2.0], [3.0, 4.0]])  # (1 + 1) / (4 + 8)
    0.16666666666666666
    """
    computed = real = 0.0
    for k, batch in enumerate(batches_durations):
        d = _as_durations(batch, name=f"batch {k}")
        computed += len(d) * float(d.max())
        real += float(d.sum())
    if computed == 0:
        return 0.0
    return (computed - real) / computed


def batches_padding_share(durations, batches) -> float:
    """Padding share (see :func:`padding_share`) of batches of indices.

    Arguments
    ---------
    durations : sequence of float
        Duration of item ``i`` at index ``i``.
    batches : iterable of sequences of int
        Each batch as a list of indices into ``durations``.

    Returns
    -------
    float

    Example
    -------
    >>> batches_padding_share([1.0, 2.0, 3.0, 4.0], [[0, 1], [2, 3]])
    0.16666666666666666
    """
    d = _as_durations(durations)
    picked = []
    for k, batch in enumerate(batches):
        idx = np.asarray(batch)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError(f"batch {k} must be a non-empty list of int indices")
        bad = idx[(idx < 0) | (idx >= len(d))]
        if bad.size:
            raise IndexError(
                f"batch {k} has index {int(bad[0])} outside [0, {len(d) - 1}]"
            )
        picked.append(d[idx])
    return padding_share(picked)


def random_batches(n, batch_size, seed) -> list[list[int]]:
    """Batches of SpeechBrain's default shuffled loader (``shuffle=True``).

    ``make_dataloader(..., shuffle=True)`` uses a ``ReproducibleRandomSampler``
    (``torch.randperm`` with a generator seeded ``seed + epoch``) and the
    DataLoader cuts the permutation into consecutive batches, the last one
    possibly shorter. ``random_batches(n, bs, seed + epoch)`` reproduces the
    batches of that epoch exactly.

    Arguments
    ---------
    n : int
        Dataset size.
    batch_size : int
        Utterances per batch.
    seed : int
        Generator seed (SpeechBrain: ``seed + epoch``).

    Returns
    -------
    list of list of int

    Example
    -------
    >>> batches = random_batches(10, 4, seed=0)
    >>> [len(b) for b in batches], sorted(sum(batches, []))
    ([4, 4, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    n = _check_int(n, "n", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    generator = torch.Generator()
    generator.manual_seed(seed)
    perm = torch.randperm(n, generator=generator).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


#: Published duration statistics of the 5,531 IEMOCAP utterances (4 classes).
IEMOCAP_STATS = {"n": 5531, "mean": 4.5, "sd": 3.1, "min": 0.6, "max": 34.0}


def iemocap_like_durations(n=5531, seed=0) -> np.ndarray:
    """A synthetic duration profile with IEMOCAP's published statistics.

    IEMOCAP (4 classes, 5,531 utterances): mean 4.5 s, sd 3.1 s, min 0.6 s,
    max 34 s, right skewed. Construction:

    1. draw ``0.6 + LogNormal(mu, sigma)`` with ``mu, sigma`` solved so that
       the unclipped mean and sd are 4.5 and 3.1 s (sigma = 0.70);
    2. clip to ``[0.6, 34]``;
    3. pin the smallest value to 0.6 s and the largest to 34 s;
    4. map the other values affinely (a map close to the identity) so that
       the mean and the population sd of the whole profile are exactly 4.5
       and 3.1 s; a value the map pushes past a bound is clipped there and
       the others are re-fitted.

    The four statistics are then matched to float precision (error < 1e-12
    for any ``n >= 100``; smaller ``n`` cannot reach sd 3.1 s with one 34 s
    utterance, so it is refused). The shape is an assumption, since only those
    four statistics are published: median ~3.6 s, 95th percentile ~10 s,
    skewness 2.4-2.9 depending on the seed.

    Arguments
    ---------
    n : int
        Number of utterances (>= 100).
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    numpy.ndarray
        ``n`` durations in seconds, in random order.

    Example
    -------
    >>> d = iemocap_like_durations()
    >>> stats = [d.mean(), d.std(), d.min(), d.max()]
    >>> len(d), [round(float(x), 6) for x in stats]
    (5531, [4.5, 3.1, 0.6, 34.0])
    """
    n = _check_int(n, "n", 100)
    seed = _check_int(seed, "seed", 0)
    mean, sd = IEMOCAP_STATS["mean"], IEMOCAP_STATS["sd"]
    lo, hi = IEMOCAP_STATS["min"], IEMOCAP_STATS["max"]
    rng = np.random.default_rng(seed)
    m = mean - lo
    sigma2 = math.log1p((sd / m) ** 2)
    mu = math.log(m) - sigma2 / 2
    d = np.clip(lo + rng.lognormal(mu, math.sqrt(sigma2), size=n), lo, hi)
    order = np.argsort(d, kind="stable")
    d[order[0]], d[order[-1]] = lo, hi
    free = np.ones(n, dtype=bool)
    free[[order[0], order[-1]]] = False
    for _ in range(n):
        # Affine map of the free values onto the sum and sum of squares that
        # make the whole profile's mean and population sd exact.
        x = d[free]
        k = len(x)
        target_mean = (n * mean - d[~free].sum()) / k
        target_ss = n * (sd**2 + mean**2) - (d[~free] ** 2).sum() - k * target_mean**2
        spread = float(((x - x.mean()) ** 2).sum())
        if k < 2 or target_ss <= 0 or spread <= 0:
            break
        y = target_mean + math.sqrt(target_ss / spread) * (x - x.mean())
        out = (y < lo) | (y > hi)
        d[free] = np.clip(y, lo, hi)
        if not out.any():
            return d
        # Values pushed past a bound stay there; re-fit the others.
        free[np.flatnonzero(free)[out]] = False
    raise ValueError(  # pragma: no cover - not reached for n >= 100
        f"cannot match IEMOCAP's statistics with n={n} (seed {seed})"
    )
