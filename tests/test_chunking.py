"""Tests for sser_lobes.dataio.chunking: windows, pooling and timelines, by hand."""

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sser_lobes.dataio.chunking import (  # noqa: E402
    chunk_bounds,
    pool_chunk_scores,
    split_into_chunks,
    timeline,
)

SR = 16000


def test_bounds_10s_window_4s_hop_2s():
    # 10 s = 160000 samples, window 4 s = 64000, hop 2 s = 32000.
    # Starts 0, 2, 4 s end at 4, 6, 8 s (< 10 s); the next window at 6 s ends
    # exactly at 10 s, which is also the end-aligned window: 4 chunks.
    bounds = chunk_bounds(10 * SR, 4 * SR, 2 * SR)
    assert bounds == [
        (0, 64000),
        (32000, 96000),
        (64000, 128000),
        (96000, 160000),
    ]
    assert [start / SR for start, _ in bounds] == [0.0, 2.0, 4.0, 6.0]


def test_tail_aligned_to_the_end():
    # 11 s: starts 0, 2, 4, 6 s; a window at 8 s would run past 11 s, so the
    # last window is [7 s, 11 s) (full length, no 3 s tail chunk).
    bounds = chunk_bounds(11 * SR, 4 * SR, 2 * SR)
    assert [(s / SR, e / SR) for s, e in bounds] == [
        (0.0, 4.0),
        (2.0, 6.0),
        (4.0, 8.0),
        (6.0, 10.0),
        (7.0, 11.0),
    ]
    # Just one sample longer than a grid-aligned signal: the last window
    # shifts by one sample instead of adding a 1-sample chunk.
    assert chunk_bounds(10 * SR + 1, 4 * SR, 2 * SR)[-1] == (96001, 160001)


@pytest.mark.parametrize("num_samples", [1, 400, 4 * SR - 1, 4 * SR])
def test_short_signal_single_chunk(num_samples):
    assert chunk_bounds(num_samples, 4 * SR, 2 * SR) == [(0, num_samples)]


def test_no_overlap_hop_equals_window():
    assert chunk_bounds(12, 4, 4) == [(0, 4), (4, 8), (8, 12)]
    assert chunk_bounds(13, 4, 4) == [(0, 4), (4, 8), (8, 12), (9, 13)]


@pytest.mark.parametrize("num_samples", range(1, 60))
@pytest.mark.parametrize("window, hop", [(7, 3), (8, 8), (5, 1), (10, 4)])
def test_bounds_properties(num_samples, window, hop):
    bounds = chunk_bounds(num_samples, window, hop)
    assert bounds[0][0] == 0 and bounds[-1][1] == num_samples
    length = min(window, num_samples)
    assert all(end - start == length for start, end in bounds)
    starts = [start for start, _ in bounds]
    assert starts == sorted(set(starts))
    # Regular grid except the end-aligned last start; never a gap.
    assert starts[:-1] == [i * hop for i in range(len(starts) - 1)]
    assert all(b[0] <= a[1] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((0, 4, 2), ValueError, "num_samples must be positive"),
        ((10, 0, 2), ValueError, "window must be positive"),
        ((10, 4, 0), ValueError, "hop must be positive"),
        ((10, 4, -1), ValueError, "hop must be positive"),
        ((10, 4, 5), ValueError, r"hop \(5 samples\) must not exceed window"),
        ((10, 4.0, 2), TypeError, "window must be a whole number"),
    ],
)
def test_bounds_errors(args, error, match):
    with pytest.raises(error, match=match):
        chunk_bounds(*args)


def test_split_into_chunks_views():
    wav = torch.arange(11 * SR, dtype=torch.float32)
    chunks, bounds = split_into_chunks(wav, 4 * SR, 2 * SR)
    assert bounds == chunk_bounds(11 * SR, 4 * SR, 2 * SR)
    for chunk, (start, end) in zip(chunks, bounds):
        assert torch.equal(chunk, wav[start:end])
        assert chunk.untyped_storage().data_ptr() == wav.untyped_storage().data_ptr()
    chunks[0][0] = -1.0  # a view: writes through
    assert wav[0] == -1.0
    short, bounds = split_into_chunks(torch.ones(100), 4 * SR, 2 * SR)
    assert bounds == [(0, 100)] and len(short) == 1 and short[0].numel() == 100
    with pytest.raises(ValueError, match="1-D waveform"):
        split_into_chunks(torch.ones(1, 100), 50, 25)


def test_mean_pooling_weighted_by_hand():
    scores = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.0, 1.0, 0.0]])
    bounds = [(0, 100), (50, 250), (250, 300)]  # lengths 100, 200, 50
    # (100*[.6,.3,.1] + 200*[.2,.2,.6] + 50*[0,1,0]) / 350
    # = ([60, 30, 10] + [40, 40, 120] + [0, 50, 0]) / 350 = [100, 120, 130] / 350
    expected = torch.tensor([100.0, 120.0, 130.0]) / 350
    pooled = pool_chunk_scores(scores, bounds)
    torch.testing.assert_close(pooled, expected)
    assert float(pooled.sum()) == pytest.approx(1.0)
    # Equal lengths (as from chunk_bounds): the plain mean.
    equal = [(0, 10), (5, 15), (10, 20)]
    torch.testing.assert_close(pool_chunk_scores(scores, equal), scores.mean(dim=0))


def test_max_pooling_renormalised_by_hand():
    scores = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.0, 1.0, 0.0]])
    bounds = [(0, 100), (50, 250), (250, 300)]
    # Column maxima [0.6, 1.0, 0.6], sum 2.2.
    expected = torch.tensor([0.6, 1.0, 0.6]) / 2.2
    pooled = pool_chunk_scores(scores, bounds, mode="max")
    torch.testing.assert_close(pooled, expected)
    assert float(pooled.sum()) == pytest.approx(1.0)


def test_single_chunk_pooling_is_identity():
    scores = torch.tensor([[0.1, 0.7, 0.2]])
    for mode in ("mean", "max"):
        torch.testing.assert_close(pool_chunk_scores(scores, [(0, 7)], mode), scores[0])


def test_pooling_keeps_float64_and_accepts_lists():
    scores = torch.tensor([[0.25, 0.75], [0.75, 0.25]], dtype=torch.float64)
    assert pool_chunk_scores(scores, [(0, 1), (1, 2)]).dtype == torch.float64
    pooled = pool_chunk_scores([[0.25, 0.75], [0.75, 0.25]], [(0, 3), (3, 4)])
    torch.testing.assert_close(pooled, torch.tensor([0.375, 0.625]))


@pytest.mark.parametrize(
    "scores, bounds, mode, match",
    [
        ([[0.5, 0.5]], [(0, 1), (1, 2)], "mean", "1 rows of scores but 2 chunk"),
        ([0.5, 0.5], [(0, 1)], "mean", "shape"),
        (torch.zeros(0, 3), [], "mean", "at least one chunk"),
        ([[0.5, 0.5]], [(5, 5)], "mean", r"invalid chunk bounds \(5, 5\)"),
        ([[2.0, -1.0]], [(0, 1)], "mean", "apply softmax"),
        ([[float("nan"), 1.0]], [(0, 1)], "mean", "NaN or inf"),
        ([[0.0, 0.0]], [(0, 1)], "max", "all scores are zero"),
        ([[0.5, 0.5]], [(0, 1)], "median", "unknown pooling mode 'median'"),
    ],
)
def test_pooling_errors(scores, bounds, mode, match):
    with pytest.raises(ValueError, match=match):
        pool_chunk_scores(scores, bounds, mode=mode)


def test_timeline_fields():
    labels = ["neutral", "happy", "angry"]
    scores = torch.tensor([[0.5, 0.25, 0.25], [0.125, 0.125, 0.75]])
    bounds = chunk_bounds(6 * SR, 4 * SR, 2 * SR)  # [(0, 4 s), (2 s, 6 s)]
    rows = timeline(scores, bounds, SR, labels)
    assert rows == [
        {
            "start": 0.0,
            "end": 4.0,
            "label": "neutral",
            "score": 0.5,
            "probabilities": {"neutral": 0.5, "happy": 0.25, "angry": 0.25},
        },
        {
            "start": 2.0,
            "end": 6.0,
            "label": "angry",
            "score": 0.75,
            "probabilities": {"neutral": 0.125, "happy": 0.125, "angry": 0.75},
        },
    ]
    for row in rows:
        assert all(type(row[key]) is float for key in ("start", "end", "score"))
    json.dumps(rows)  # plain Python types


def test_timeline_fractional_seconds_and_errors():
    rows = timeline(torch.tensor([[1.0, 0.0]]), [(8000, 12000)], SR, ["a", "b"])
    assert (rows[0]["start"], rows[0]["end"]) == (0.5, 0.75)
    with pytest.raises(ValueError, match="2 labels for 3 score columns"):
        timeline(torch.ones(1, 3) / 3, [(0, 1)], SR, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        timeline(torch.ones(1, 2) / 2, [(0, 1)], SR, ["a", "a"])
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        timeline(torch.ones(1, 2) / 2, [(0, 1)], 0, ["a", "b"])


def test_end_to_end_with_a_fake_model():
    """Chunks of a signal that changes class halfway are scored and pooled."""
    wav = torch.cat([torch.zeros(5 * SR), torch.ones(5 * SR)])
    chunks, bounds = split_into_chunks(wav, 4 * SR, 2 * SR)

    def model(chunk):  # P(class 1) = fraction of ones in the chunk
        p = chunk.mean()
        return torch.stack([1 - p, p])

    scores = torch.stack([model(chunk) for chunk in chunks])
    rows = timeline(scores, bounds, SR, ["calm", "loud"])
    assert [row["label"] for row in rows] == ["calm", "calm", "loud", "loud"]
    torch.testing.assert_close(
        pool_chunk_scores(scores, bounds), torch.tensor([0.5, 0.5])
    )
