"""Classify audio longer than a model's window: split, score chunks, pool.

A recording longer than the window a model was trained on (or than fits in
memory) is cut into overlapping windows with :func:`chunk_bounds` /
:func:`split_into_chunks`; the model scores each chunk, and the chunk
probabilities are pooled into one prediction with :func:`pool_chunk_scores`
or listed over time with :func:`timeline`::

    chunks, bounds = split_into_chunks(wav, window=4 * 16000, hop=2 * 16000)
    scores = torch.stack([model(chunk).softmax(-1) for chunk in chunks])
    probabilities = pool_chunk_scores(scores, bounds)
    segments = timeline(scores, bounds, 16000, labels)

Windows and hops are in samples; bounds are ``(start, end)`` sample indices,
``end`` excluded.
"""

from __future__ import annotations

import json
import math
import operator

import torch

__all__ = ["chunk_bounds", "pool_chunk_scores", "split_into_chunks", "timeline"]


def _positive_int(value, what):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{what} must be a whole number of samples, got {value!r}"
        ) from None
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")
    return value


def chunk_bounds(num_samples, window, hop, min_tail=None):
    """Overlapping windows ``[start, end)`` covering a whole signal.

    The windows start at 0, ``hop``, ``2 * hop``, ... as long as they end
    before the signal does; the last window is then aligned to the end of the
    signal (it starts at ``num_samples - window``), so every chunk is a full
    ``window`` long and there is no short tail chunk (the last two chunks
    may overlap by more than ``window - hop``). A signal no longer than
    ``window`` is a single chunk ``(0, num_samples)``.

    With ``min_tail``, the last window is instead the rest of the signal from
    the next hop on, when that rest is at least ``min_tail`` samples long:
    no audio is computed twice beyond the hop's overlap (the emotion
    timeline's windows, :mod:`sser_lobes.dataio.segments`).

    Arguments
    ---------
    num_samples : int
        Length of the signal in samples (> 0).
    window : int
        Chunk length in samples (> 0).
    hop : int
        Step between chunk starts in samples, ``0 < hop <= window``
        (``hop == window``: no overlap except for the end-aligned last chunk).
    min_tail : int or None
        Shortest last window that is not aligned to the end (None: always
        aligned).

    Returns
    -------
    list of tuple of int
        ``[(start, end), ...]`` in increasing order, covering
        ``[0, num_samples)``.

    Raises
    ------
    ValueError
        If a length is not positive or ``hop > window`` (gaps).
    TypeError
        If a length is not an integer.

    Example
    -------
    >>> chunk_bounds(10, window=4, hop=2)
    [(0, 4), (2, 6), (4, 8), (6, 10)]
    >>> chunk_bounds(11, window=4, hop=2)  # last chunk aligned to the end
    [(0, 4), (2, 6), (4, 8), (6, 10), (7, 11)]
    >>> chunk_bounds(3, window=4, hop=2)
    [(0, 3)]
    >>> chunk_bounds(11, window=4, hop=4, min_tail=2)  # the rest is 3 long
    [(0, 4), (4, 8), (8, 11)]
    >>> chunk_bounds(9, window=4, hop=4, min_tail=2)  # the rest is 1 long
    [(0, 4), (4, 8), (5, 9)]
    """
    num_samples = _positive_int(num_samples, "num_samples")
    window = _positive_int(window, "window")
    hop = _positive_int(hop, "hop")
    if hop > window:
        raise ValueError(
            f"hop ({hop} samples) must not exceed window ({window} samples): "
            f"the chunks would leave gaps"
        )
    if num_samples <= window:
        return [(0, num_samples)]
    bounds = []
    start = 0
    while start + window < num_samples:
        bounds.append((start, start + window))
        start += hop
    if min_tail is not None and num_samples - start >= min_tail:
        bounds.append((start, num_samples))
    else:
        bounds.append((num_samples - window, num_samples))
    return bounds


def split_into_chunks(wav, window, hop):
    """Split a 1-D waveform into overlapping chunks (views, no copy).

    Arguments
    ---------
    wav : torch.Tensor
        Waveform, shape ``[num_samples]``.
    window : int
        Chunk length in samples.
    hop : int
        Step between chunk starts in samples (see :func:`chunk_bounds`).

    Returns
    -------
    chunks : list of torch.Tensor
        ``wav[start:end]`` for each chunk: views sharing ``wav``'s memory.
    bounds : list of tuple of int
        The ``(start, end)`` sample indices of each chunk.

    Example
    -------
    >>> wav = torch.arange(10.0)
    >>> chunks, bounds = split_into_chunks(wav, window=4, hop=3)
    >>> bounds
    [(0, 4), (3, 7), (6, 10)]
    >>> chunks[2]
    tensor([6., 7., 8., 9.])
    """
    if not isinstance(wav, torch.Tensor):
        wav = torch.as_tensor(wav)
    if wav.ndim != 1:
        raise ValueError(
            f"expected a 1-D waveform [num_samples], got shape {tuple(wav.shape)}"
        )
    bounds = chunk_bounds(wav.shape[0], window, hop)
    return [wav[start:end] for start, end in bounds], bounds


def _check_scores(scores, bounds):
    """Return ``scores`` as a float tensor ``[n_chunks, C]`` and the lengths."""
    scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        scores = scores.to(torch.float32)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"scores must have shape [n_chunks, n_classes] with at least one "
            f"chunk and one class, got {tuple(scores.shape)}"
        )
    bounds = [tuple(int(x) for x in b) for b in bounds]
    if len(bounds) != scores.shape[0]:
        raise ValueError(
            f"{scores.shape[0]} rows of scores but {len(bounds)} chunk bounds"
        )
    for start, end in bounds:
        if end <= start or start < 0:
            raise ValueError(f"invalid chunk bounds ({start}, {end})")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    if (scores < 0).any():
        raise ValueError(
            "scores must be probabilities (non-negative), got negative values: "
            "apply softmax to the logits first"
        )
    return scores, bounds


def pool_chunk_scores(scores, bounds, mode="mean"):
    """Pool per-chunk class probabilities into one prediction.

    ``"mean"``: the average of the chunks' probabilities weighted by each
    chunk's number of samples (``end - start``), so a short chunk counts
    less than a full one. Chunks from :func:`chunk_bounds` all have the same
    length unless the signal is a single short chunk, so this is then the
    plain mean over chunks. Weights are per chunk: audio covered by several
    overlapping chunks counts once per chunk. The weighted mean of
    probability vectors sums to 1.

    ``"max"``: the largest probability of each class over the chunks (the
    emotion most strongly expressed anywhere), renormalised to sum to 1.

    Arguments
    ---------
    scores : torch.Tensor
        Per-chunk class probabilities (e.g. softmax outputs), shape
        ``[n_chunks, n_classes]``, non-negative.
    bounds : list of tuple of int
        ``(start, end)`` of each chunk, as from :func:`chunk_bounds`.
    mode : str
        ``"mean"`` (default) or ``"max"``.

    Returns
    -------
    torch.Tensor
        Pooled probabilities, shape ``[n_classes]`` (summing to 1 when the
        rows of ``scores`` do, and always for ``"max"``).

    Raises
    ------
    ValueError
        Wrong shapes, mismatched bounds, negative or non-finite scores,
        all-zero scores with ``"max"``, or an unknown ``mode``.

    Example
    -------
    >>> scores = torch.tensor([[0.8, 0.2], [0.2, 0.8]])
    >>> pool_chunk_scores(scores, [(0, 300), (200, 300)])  # weights 3:1
    tensor([0.6500, 0.3500])
    >>> pool_chunk_scores(scores, [(0, 300), (200, 300)], mode="max")
    tensor([0.5000, 0.5000])
    """
    if mode not in ("mean", "max"):
        raise ValueError(f"unknown pooling mode {mode!r}, expected 'mean' or 'max'")
    scores, bounds = _check_scores(scores, bounds)
    if mode == "mean":
        lengths = torch.tensor(
            [end - start for start, end in bounds],
            dtype=scores.dtype,
            device=scores.device,
        )
        return (lengths[:, None] * scores).sum(dim=0) / lengths.sum()
    pooled = scores.max(dim=0).values
    total = pooled.sum()
    if total <= 0:
        raise ValueError("all scores are zero: cannot renormalise the max pooling")
    return pooled / total


def timeline(scores, bounds, sample_rate, labels):
    """Per-chunk predictions with times in seconds, e.g. for display or JSON.

    Arguments
    ---------
    scores : torch.Tensor
        Per-chunk class probabilities, shape ``[n_chunks, n_classes]``.
    bounds : list of tuple of int
        ``(start, end)`` sample indices of each chunk.
    sample_rate : int
        Sampling rate of the waveform the bounds index, in Hz.
    labels : sequence of str
        Class names, one per column of ``scores`` (distinct).

    Returns
    -------
    list of dict
        One dict per chunk, in order: ``start`` and ``end`` (seconds, float;
        chunks overlap when ``hop < window``), ``label`` (the most probable
        class), ``score`` (its probability) and ``probabilities``
        (``{label: probability}`` for every class). Plain Python types,
        ready for :func:`json.dump`.

    Example
    -------
    >>> scores = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    >>> rows = timeline(scores, [(0, 32000), (16000, 48000)], 16000, ["neu", "ang"])
    >>> [(row["start"], row["end"], row["label"], row["score"]) for row in rows]
    [(0.0, 2.0, 'neu', 0.75), (1.0, 3.0, 'ang', 0.75)]
    >>> rows[1]["probabilities"]
    {'neu': 0.25, 'ang': 0.75}
    """
    scores, bounds = _check_scores(scores, bounds)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    labels = [str(label) for label in labels]
    if len(labels) != scores.shape[1]:
        raise ValueError(f"{len(labels)} labels for {scores.shape[1]} score columns")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    rows = []
    for (start, end), row in zip(bounds, scores.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        rows.append(
            {
                "start": start / sample_rate,
                "end": end / sample_rate,
                "label": labels[best],
                "score": row[best],
                "probabilities": dict(zip(labels, row)),
            }
        )
    return rows


def inference_window_seconds(manifest_paths, crop_seconds=None, minimum=10.0):
    """The longest audio a trained model should classify whole: the training
    crop or the longest utterance of its manifests, rounded up, at least
    ``minimum`` seconds. Inference chunks only longer audio, so chunking
    never changes a prediction the recipe evaluated whole.

    Arguments
    ---------
    manifest_paths : iterable of path
        The run's JSON manifests (entries with a ``duration``); unreadable
        files are skipped.
    crop_seconds : float or None
        The training crop (``train_crop_seconds``).
    minimum : float
        The smallest window.

    Example
    -------
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "test.json"
    >>> _ = path.write_text(json.dumps({"u": {"duration": 13.2}}))
    >>> inference_window_seconds([path]), inference_window_seconds([], 4.0)
    (14.0, 10.0)
    """
    longest = float(crop_seconds or 0.0)
    for manifest in manifest_paths:
        try:
            with open(manifest, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for entry in data.values():
                if isinstance(entry, dict) and isinstance(
                    entry.get("duration"), (int, float)
                ):
                    longest = max(longest, float(entry["duration"]))
    return float(max(minimum, math.ceil(longest)))
