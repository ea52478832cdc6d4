"""Tests of duration-bucketed batching and the padding report."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import (
    DistributedSamplerWrapper,
    ReproducibleRandomSampler,
)

from sser_lobes.dataio.batching import (
    DEFAULT_JITTER,
    DurationBucketBatchSampler,
    batches_padding_share,
    class_balanced_weights,
    iemocap_like_durations,
    padding_share,
    random_batches,
)
from sser_lobes.errors import ManifestError
from sser_lobes.evaluation.padding_report import (
    format_report,
    load_manifest_durations,
    main,
    padding_report,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def iemocap():
    return iemocap_like_durations()


def _durations(n=103, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 12.0, size=n)


def _as_sets(batches):
    return {frozenset(b) for b in batches}


# --------------------------------------------------------------- the sampler
@pytest.mark.parametrize("n,bs", [(103, 8), (96, 8), (5, 8), (1, 1), (17, 4)])
def test_every_index_once_per_epoch(n, bs):
    sampler = DurationBucketBatchSampler(_durations(n), bs)
    for epoch in (0, 1, 2, 7):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(isinstance(i, int) for i in flat)
        assert len(batches) == len(sampler) == -(-n // bs)
        sizes = sorted(len(b) for b in batches)
        assert sizes[1:] == [bs] * (len(batches) - 1)  # one batch may be short
        assert sizes[0] == (n % bs or bs)


def test_drop_last_full_batches_and_random_drops():
    d = _durations(103)
    sampler = DurationBucketBatchSampler(d, 8, drop_last=True)
    assert len(sampler) == 12
    dropped = []
    for epoch in (1, 2, 3):
        batches = sampler.epoch_batches(epoch)
        assert len(batches) == 12 and all(len(b) == 8 for b in batches)
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == 96
        dropped.append(frozenset(range(103)) - set(flat))
    assert len(set(dropped)) > 1  # not always the same (e.g. longest) ones
    fixed = DurationBucketBatchSampler(d, 8, shuffle=False, drop_last=True)
    left_out = set(range(103)) - {i for b in fixed for i in b}
    assert left_out == set(np.argsort(d)[-7:].tolist())  # the longest 7
    with pytest.raises(ValueError, match="no batch"):
        DurationBucketBatchSampler([1.0, 2.0], 4, drop_last=True)


def test_epochs_differ_same_epoch_and_seed_identical():
    d = _durations(200)
    a = DurationBucketBatchSampler(d, 8, seed=7)
    b = DurationBucketBatchSampler(d, 8, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) == list(a)
    e4 = a.epoch_batches(4)
    assert e4 != a.epoch_batches(3)  # order differs
    assert _as_sets(e4) != _as_sets(a.epoch_batches(3))  # composition differs
    assert a.epoch_batches(3) != DurationBucketBatchSampler(d, 8, seed=8).epoch_batches(
        3
    )


def test_batches_are_duration_buckets():
    d = _durations(400)
    rank = np.empty(len(d), dtype=int)
    rank[np.argsort(d)] = np.arange(len(d))
    # Without jitter each batch is a run of consecutive durations ...
    for batch in DurationBucketBatchSampler(d, 8, jitter=0.0).epoch_batches(1):
        assert sorted(rank[batch]) == list(
            range(min(rank[batch]), max(rank[batch]) + 1)
        )
    # ... with it, batches stay close in duration: far less padding than random.
    ours = DurationBucketBatchSampler(d, 8, jitter=DEFAULT_JITTER).epoch_batches(1)
    assert batches_padding_share(d, ours) < 0.25 * batches_padding_share(
        d, random_batches(len(d), 8, 0)
    )


def test_shuffle_false_sorted_ascending_and_fixed():
    d = _durations(50)
    sampler = DurationBucketBatchSampler(d, 8, shuffle=False)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert flat == np.argsort(d, kind="stable").tolist()
    assert np.all(np.diff(d[flat]) >= 0)
    sampler.set_epoch(5)
    assert list(sampler) == batches


def test_no_jitter_same_composition_different_order():
    d = _durations(200)
    sampler = DurationBucketBatchSampler(d, 8, jitter=0.0)
    e1, e2 = sampler.epoch_batches(1), sampler.epoch_batches(2)
    assert _as_sets(e1) == _as_sets(e2) and e1 != e2


def test_warns_when_reiterated_without_set_epoch():
    sampler = DurationBucketBatchSampler(_durations(40), 4)
    list(sampler)
    with pytest.warns(UserWarning, match="set_epoch"):
        list(sampler)
    evaluation = DurationBucketBatchSampler(_durations(40), 4, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(evaluation)
        list(evaluation)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"durations": []}, ValueError, "empty"),
        ({"durations": [1.0, float("nan")]}, ValueError, r"durations\[1\]"),
        ({"durations": [1.0, -2.0]}, ValueError, r"durations\[1\]"),
        ({"durations": [[1.0, 2.0]]}, ValueError, "1-D"),
        ({"durations": ["a"]}, TypeError, "numbers"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"durations": [1.0, 2.0, 3.0], "batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        DurationBucketBatchSampler(**args)


# ------------------------------------------------------------ padding share
def test_padding_share_hand_computed():
    # Batch [1, 2]: padded to 2 -> computes 2 * 2 = 4 samples, 3 real, 1 padding.
    # Batch [3, 4]: padded to 4 -> computes 2 * 4 = 8 samples, 7 real, 1 padding.
    # Share = (1 + 1) / (4 + 8) = 2 / 12 = 1 / 6.
    assert padding_share([[1, 2], [3, 4]]) == pytest.approx(1 / 6)
    assert batches_padding_share([1, 2, 3, 4], [[0, 1], [2, 3]]) == pytest.approx(1 / 6)
    # Pairing short with long: [1, 4] -> 8 computed, 3 padding; [2, 3] -> 6
    # computed, 1 padding. Share = 4 / 14 = 2 / 7.
    assert batches_padding_share([1, 2, 3, 4], [[0, 3], [1, 2]]) == pytest.approx(2 / 7)
    # Uneven batches: [5] -> 5 computed, 0 padding; [1, 1, 4] -> 12 computed,
    # 6 real, 6 padding. Share = 6 / 17.
    assert padding_share([[5], [1, 1, 4]]) == pytest.approx(6 / 17)
    assert padding_share([[0.0, 0.0]]) == 0.0
    with pytest.raises(IndexError, match="batch 1 has index 9"):
        batches_padding_share([1, 2, 3], [[0], [9]])
    with pytest.raises(ValueError, match="batch 0"):
        padding_share([[]])


def test_random_batches_match_speechbrain_sampler():
    n, bs, seed, epoch = 37, 4, 1993, 2
    sampler = ReproducibleRandomSampler(list(range(n)), seed=seed)
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(list(range(n)), batch_size=bs, sampler=sampler)
    expected = [b.tolist() for b in loader]
    assert random_batches(n, bs, seed + epoch) == expected


def test_iemocap_profile_moments():
    for seed in range(10):
        d = iemocap_like_durations(seed=seed)
        assert len(d) == 5531
        assert d.mean() == pytest.approx(4.5, abs=1e-9)
        assert d.std() == pytest.approx(3.1, abs=1e-9)
        assert d.min() == pytest.approx(0.6) and d.max() == pytest.approx(34.0)
        assert np.median(d) < d.mean()  # right skewed
    with pytest.raises(ValueError, match="n must be >= 100"):
        iemocap_like_durations(n=20)


def test_iemocap_profile_random_4_vs_bucketed_8(iemocap):
    d = iemocap
    random_share = np.mean(
        [batches_padding_share(d, random_batches(len(d), 4, 1993 + e)) for e in (1, 2)]
    )
    sampler = DurationBucketBatchSampler(d, 8)  # default jitter
    assert sampler.jitter == DEFAULT_JITTER
    ours = [batches_padding_share(d, sampler.epoch_batches(e)) for e in (1, 2, 3)]
    assert random_share >= 0.3
    assert max(ours) <= 0.05
    # ... and the batches still change between epochs.
    e1, e2 = _as_sets(sampler.epoch_batches(1)), _as_sets(sampler.epoch_batches(2))
    assert len(e1 & e2) / len(e1) < 0.1


def test_padding_report_function(iemocap):
    r = padding_report(iemocap, batch_size=8, baseline_batch_size=4, epochs=2, seed=1)
    assert r["n_utterances"] == 5531
    assert r["baseline_name"] == "SpeechBrain IEMOCAP recipe: random batches of 4"
    assert r["bucketed_padding_share"] <= 0.05 <= 0.3 <= r["baseline_padding_share"]
    assert r["padding_ratio"] == pytest.approx(
        r["baseline_padding_share"] / r["bucketed_padding_share"]
    )
    assert len(r["bucketed_padding_share_per_epoch"]) == 2
    assert r["bucketed_computed_hours"] < r["baseline_computed_hours"]
    assert r["total_hours"] * 3600 == pytest.approx(iemocap.sum())
    json.dumps(r)  # JSON-serialisable


# ------------------------------------------------- loaders, DDP, datasets
def test_distributed_sampler_wrapper_two_ranks():
    d = _durations(80)
    bs = 4  # 20 batches: 10 per rank, so DistributedSampler pads nothing
    per_epoch = []
    for epoch in (1, 2):
        ranks = []
        for rank in (0, 1):
            sampler = DurationBucketBatchSampler(d, bs, seed=3)
            wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank)
            wrapper.set_epoch(epoch)
            assert sampler.epoch == epoch  # passed through
            assert len(wrapper) == 10
            batches = [list(b) for b in wrapper]
            assert len(batches) == 10 and all(len(b) == bs for b in batches)
            ranks.append(batches)
        sets0, sets1 = _as_sets(ranks[0]), _as_sets(ranks[1])
        flat0 = {i for b in ranks[0] for i in b}
        flat1 = {i for b in ranks[1] for i in b}
        assert not flat0 & flat1
        assert flat0 | flat1 == set(range(80))
        per_epoch.append(sets0 | sets1)
    assert per_epoch[0] != per_epoch[1]


def test_from_dataset_and_make_dataloader():
    data = {
        f"utt{i}": {"wav": f"/nonexistent/utt{i}.wav", "duration": float(dur)}
        for i, dur in enumerate([3.0, 1.0, 2.0, 8.0, 7.5, 0.5])
    }

    def fail_audio(wav):  # must never be called: durations come from the data
        raise AssertionError(f"audio loaded: {wav}")

    dataset = DynamicItemDataset(
        data,
        dynamic_items=[{"func": fail_audio, "takes": ["wav"], "provides": "sig"}],
        output_keys=["id", "sig"],
    )
    sampler = DurationBucketBatchSampler.from_dataset(dataset, 2, shuffle=False)
    assert sampler.durations.tolist() == [3.0, 1.0, 2.0, 8.0, 7.5, 0.5]
    assert list(sampler) == [[5, 1], [2, 0], [4, 3]]

    # A filtered view: indices refer to the view, not to the full data.
    view = dataset.filtered_sorted(key_max_value={"duration": 5.0})
    sub = DurationBucketBatchSampler.from_dataset(view, 2, shuffle=False)
    assert sub.durations.tolist() == [3.0, 1.0, 2.0, 0.5]

    # A dynamic duration item is computed on its own, still without audio.
    dyn = DynamicItemDataset(
        {k: {"wav": v["wav"], "n": v["duration"] * 100} for k, v in data.items()},
        dynamic_items=[
            {"func": fail_audio, "takes": ["wav"], "provides": "sig"},
            {"func": lambda n: n / 100, "takes": ["n"], "provides": "duration"},
        ],
        output_keys=["id", "sig"],
    )
    assert DurationBucketBatchSampler.from_dataset(dyn, 2).durations.tolist() == [
        3.0,
        1.0,
        2.0,
        8.0,
        7.5,
        0.5,
    ]
    with pytest.raises(ValueError, match="'length'"):
        DurationBucketBatchSampler.from_dataset(dataset, 2, duration_key="length")

    # As batch_sampler of SpeechBrain's make_dataloader (PaddedBatch collation).
    dataset.set_output_keys(["id", "duration"])
    loader = make_dataloader(dataset, batch_sampler=sampler)
    ids = [batch.id for batch in loader]
    assert ids == [["utt5", "utt1"], ["utt2", "utt0"], ["utt4", "utt3"]]


def test_from_dataset_missing_duration_names_item():
    dataset = DynamicItemDataset({"a": {"duration": 1.0}, "b": {"length": 2.0}})
    with pytest.raises(ValueError, match="'b' has no 'duration'"):
        DurationBucketBatchSampler.from_dataset(dataset, 2)
    bad = DynamicItemDataset({"a": {"duration": 1.0}, "b": {"duration": "x"}})
    with pytest.raises(ValueError, match="'b'.*not a number"):
        DurationBucketBatchSampler.from_dataset(bad, 2)


# ---------------------------------------------------------------------- CLI
def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sser_lobes.evaluation.padding_report", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_cli_on_manifest(tmp_path):
    rng = np.random.default_rng(0)
    manifest = {
        f"utt{i}": {"wav": f"{{data_root}}/utt{i}.wav", "duration": float(x)}
        for i, x in enumerate(rng.uniform(0.6, 15.0, size=120))
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(manifest))
    out = tmp_path / "report.json"
    proc = _run_cli(str(path), "--epochs", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "SpeechBrain IEMOCAP recipe: random batches of 4" in proc.stdout
    assert str(path) in proc.stdout and "120" in proc.stdout
    report = json.loads(out.read_text())["reports"][0]
    assert report["source"] == str(path) and report["n_utterances"] == 120
    assert report["bucketed_padding_share"] < report["baseline_padding_share"]


def test_cli_error_on_manifest_without_durations(tmp_path, capsys):
    # main() in this process (the command line runs in test_cli_on_manifest)
    path = tmp_path / "no_durations.json"
    path.write_text(json.dumps({"utt1": {"wav": "a.wav", "length": 2.0}}))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'utt1'" in err
    assert "'duration'" in err and "--duration-key length" in err


def test_main_in_process(tmp_path, capsys):
    path = tmp_path / "no_durations.json"
    path.write_text(json.dumps({"utt1": {"wav": "a.wav", "length": 2.0}}))
    assert main([str(path), "--duration-key", "length"]) == 0
    assert "random batches of 4" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "missing.json: manifest not found" in capsys.readouterr().err
    assert main([str(path), "--baseline-batch-size", "0", "--duration-key", "length"])
    assert "baseline_batch_size must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # nothing to report
        main([])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "content,match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "keyed by utterance id"),
        ("{}", "no utterances"),
        ('{"u": 3}', "'u' is a int"),
        ('{"u": {"duration": "3.0"}}', "'u' field 'duration' = '3.0'"),
        ('{"u": {"duration": -1}}', "'u' field 'duration' = -1"),
    ],
)
def test_load_manifest_errors(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=match) as info:
        load_manifest_durations(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------- max_duration
def _with_long_tail(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(1.0, 8.0, 300), rng.uniform(12.5, 30.0, 60)])


def test_max_duration_caps_bucketing():
    d = _with_long_tail()
    capped = np.minimum(d, 12.0)
    plain = DurationBucketBatchSampler(d, 8, seed=5)
    crop = DurationBucketBatchSampler(d, 8, seed=5, max_duration=12.0)
    assert crop.max_duration == 12.0 and plain.max_duration is None
    assert crop.durations.tolist() == d.tolist()  # the input is kept as given
    assert crop.capped_durations.tolist() == capped.tolist()
    assert plain.capped_durations is plain.durations
    # Still every index once per epoch; the buckets differ from uncapped ones.
    for epoch in (1, 2):
        batches = crop.epoch_batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(d)))
        assert _as_sets(batches) != _as_sets(plain.epoch_batches(epoch))
    # Evaluation order: ascending capped duration, ties (all cropped ones) kept
    # in index order.
    fixed = [
        i for b in DurationBucketBatchSampler(d, 8, False, max_duration=12) for i in b
    ]
    assert fixed == np.argsort(capped, kind="stable").tolist()
    assert fixed[-60:] == list(range(300, 360))
    # The cropped utterances all cost 12 s: their batches have no padding, and
    # they are mixed freely from epoch to epoch (their jittered keys tie).
    long_only = [b for b in crop.epoch_batches(1) if all(d[i] >= 12.0 for i in b)]
    assert len(long_only) >= 6
    assert batches_padding_share(capped, long_only) == 0.0
    long_2 = [b for b in crop.epoch_batches(2) if all(d[i] >= 12.0 for i in b)]
    assert len(_as_sets(long_only) & _as_sets(long_2)) <= 1
    # Padding share: what a cropping loader computes vs. the uncapped run.
    share_crop = batches_padding_share(capped, crop.epoch_batches(1))
    share_plain = batches_padding_share(d, plain.epoch_batches(1))
    assert share_crop < share_plain
    random = random_batches(len(d), 4, 1)
    assert batches_padding_share(capped, random) < batches_padding_share(d, random)
    # jitter 0: the uncapped sort separates 12.5 s from 30 s; capped, they tie.
    plain0 = DurationBucketBatchSampler(d, 8, jitter=0.0).epoch_batches(1)
    assert batches_padding_share(d, plain0) > 0


@pytest.mark.parametrize(
    "value,error",
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("inf"), ValueError),
        ("12", TypeError),
        (True, TypeError),
    ],
)
def test_max_duration_bad_values(value, error):
    with pytest.raises(error, match="max_duration"):
        DurationBucketBatchSampler([1.0, 2.0], 1, max_duration=value)


def test_from_dataset_max_duration():
    data = {f"u{i}": {"duration": x} for i, x in enumerate([3.0, 20.0, 15.0, 1.0])}
    sampler = DurationBucketBatchSampler.from_dataset(
        DynamicItemDataset(data), 2, shuffle=False, max_duration=12.0
    )
    assert sampler.capped_durations.tolist() == [3.0, 12.0, 12.0, 1.0]
    assert list(sampler) == [[3, 0], [1, 2]]


# --------------------------------------------------------- weighted sampling
def _imbalanced(n=200, minority=0.1, seed=0):
    """90/10 labels with durations that differ by class."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.uniform(size=n) < minority, "b", "a")
    labels[:3] = ["b", "b", "a"]
    d = np.where(labels == "a", rng.uniform(1, 6, n), rng.uniform(3, 12, n))
    return d, labels.tolist()


def test_class_balanced_weights():
    w = class_balanced_weights(["a", "a", "b", None, "a", "c"])
    # counts a = 3, b = 1, c = 1 -> 1/3, 1, 1; None -> 0
    np.testing.assert_allclose(w, [1 / 3, 1 / 3, 1.0, 0.0, 1 / 3, 1.0])
    assert w.dtype == np.float64
    # every class has total weight 1
    assert w[[0, 1, 4]].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(
        class_balanced_weights(
            [torch.tensor([1]), torch.tensor([0]), torch.tensor([1])]
        ),
        [0.5, 1.0, 0.5],
    )
    np.testing.assert_allclose(
        class_balanced_weights(np.array([2, 2, 7])), [0.5, 0.5, 1]
    )
    with pytest.raises(ValueError, match="all are None"):
        class_balanced_weights([None, None])
    with pytest.raises(ValueError, match="empty"):
        class_balanced_weights([])
    with pytest.raises(TypeError, match="not hashable"):
        class_balanced_weights([["a"], "b"])
    with pytest.raises(TypeError, match="sequence of labels"):
        class_balanced_weights("abc")


def test_weighted_draws_balance_classes():
    d, labels = _imbalanced()
    labels = np.array(labels)
    assert (labels == "b").mean() < 0.15  # about 90 / 10
    sampler = DurationBucketBatchSampler(d, 8, weights=class_balanced_weights(labels))
    counts = {"a": 0, "b": 0}
    for epoch in range(1, 31):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 25
        flat = [i for b in batches for i in b]
        assert len(flat) == len(d)  # n draws per epoch, with repeats
        assert all(isinstance(i, int) for i in flat)
        for i in flat:
            counts[labels[i]] += 1
    share_b = counts["b"] / (counts["a"] + counts["b"])
    # 6,000 draws: sd of the share ~0.0065; 0.5 +- 0.03 is > 4 sd
    assert share_b == pytest.approx(0.5, abs=0.03)
    # The draws are still bucketed by duration: far less padding than random.
    batches = sampler.epoch_batches(3)
    drawn = np.random.default_rng(0).permutation([i for b in batches for i in b])
    random = [drawn[k : k + 8] for k in range(0, len(drawn), 8)]
    assert batches_padding_share(d, batches) < 0.5 * batches_padding_share(d, random)


def test_weighted_draws_deterministic_per_seed_and_epoch():
    d, labels = _imbalanced()
    w = class_balanced_weights(labels)
    a = DurationBucketBatchSampler(d, 8, seed=11, weights=w)
    b = DurationBucketBatchSampler(d, 8, seed=11, weights=list(w))
    assert a.epoch_batches(4) == b.epoch_batches(4) == a.epoch_batches(4)
    a.set_epoch(4)
    assert list(a) == b.epoch_batches(4)
    assert a.epoch_batches(5) != a.epoch_batches(4)
    assert DurationBucketBatchSampler(d, 8, seed=12, weights=w).epoch_batches(
        4
    ) != a.epoch_batches(4)
    # Uniform weights: sampling with replacement, so repeats (and misses)
    uniform = DurationBucketBatchSampler(d, 8, seed=11, weights=np.ones(len(d)))
    flat = [i for batch in uniform.epoch_batches(1) for i in batch]
    assert len(flat) == len(d) and len(set(flat)) < len(d)


def test_zero_weight_items_never_drawn():
    d, labels = _imbalanced()
    labels = [None if i % 3 == 0 else lab for i, lab in enumerate(labels)]
    w = class_balanced_weights(labels)
    sampler = DurationBucketBatchSampler(d, 8, weights=w, drop_last=True)
    unlabelled = {i for i, lab in enumerate(labels) if lab is None}
    seen = set()
    for epoch in range(20):
        batches = sampler.epoch_batches(epoch)
        assert all(len(b) == 8 for b in batches) and len(batches) == len(d) // 8
        seen.update(i for b in batches for i in b)
    assert not seen & unlabelled
    assert seen  # and the labelled ones are drawn
    # an explicit zero weight on the first and last items
    w2 = np.ones(len(d))
    w2[[0, -1]] = 0.0
    s2 = DurationBucketBatchSampler(d, 8, weights=w2)
    drawn = {i for e in range(20) for b in s2.epoch_batches(e) for i in b}
    assert 0 not in drawn and len(d) - 1 not in drawn


def test_weights_errors():
    d = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="shuffle=True"):
        DurationBucketBatchSampler(d, 2, shuffle=False, weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one value per item"):
        DurationBucketBatchSampler(d, 2, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        DurationBucketBatchSampler(d, 2, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="all 0"):
        DurationBucketBatchSampler(d, 2, weights=[0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="numbers"):
        DurationBucketBatchSampler(d, 2, weights=["a", "b", "c"])


def test_from_dataset_weights():
    data = {
        "u0": {"duration": 1.0, "emo": "neu"},
        "u1": {"duration": 2.0, "emo": "neu"},
        "u2": {"duration": 3.0, "emo": "neu"},
        "u3": {"duration": 4.0, "emo": "ang"},
        "u4": {"duration": 5.0, "emo": None},
    }
    dataset = DynamicItemDataset(data)
    sampler = DurationBucketBatchSampler.from_dataset(dataset, 2, weights="emo")
    np.testing.assert_allclose(sampler.weights, [1 / 3, 1 / 3, 1 / 3, 1.0, 0.0])
    assert 4 not in {i for e in range(10) for b in sampler.epoch_batches(e) for i in b}
    # explicit per-item weights, in dataset order
    explicit = DurationBucketBatchSampler.from_dataset(
        dataset, 2, weights=[1.0, 0.0, 0.0, 0.0, 1.0]
    )
    assert {i for b in explicit.epoch_batches(1) for i in b} <= {0, 4}
    # a dynamic label item (e.g. the encoded label, a 1-element tensor)
    dyn = DynamicItemDataset(
        data,
        dynamic_items=[
            {
                "func": lambda emo: torch.tensor([0 if emo == "neu" else 1]),
                "takes": ["emo"],
                "provides": "emo_encoded",
            }
        ],
    )
    dyn_sampler = DurationBucketBatchSampler.from_dataset(dyn, 2, weights="emo_encoded")
    np.testing.assert_allclose(dyn_sampler.weights, [1 / 3, 1 / 3, 1 / 3, 0.5, 0.5])
    with pytest.raises(ValueError, match="'label'"):
        DurationBucketBatchSampler.from_dataset(dataset, 2, weights="label")
    with pytest.raises(ValueError, match="shuffle=True"):
        DurationBucketBatchSampler.from_dataset(
            dataset, 2, weights="emo", shuffle=False
        )


def test_weighted_sampler_in_distributed_wrapper():
    d, labels = _imbalanced(n=160)
    w = class_balanced_weights(labels)
    ranks = []
    for rank in (0, 1):
        sampler = DurationBucketBatchSampler(d, 4, seed=3, weights=w)
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank)
        wrapper.set_epoch(2)
        ranks.append([list(b) for b in wrapper])
    # the two ranks split the same 40 batches of one epoch
    together = sorted(map(tuple, ranks[0] + ranks[1]))
    expected = sorted(
        map(tuple, DurationBucketBatchSampler(d, 4, seed=3, weights=w).epoch_batches(2))
    )
    assert together == expected


# --------------------------------------------------- padding report + crop
def test_padding_report_max_duration(iemocap):
    d = iemocap
    plain = padding_report(d, batch_size=8, baseline_batch_size=4, epochs=2, seed=1)
    crop = padding_report(
        d, batch_size=8, baseline_batch_size=4, epochs=2, seed=1, max_duration=12.0
    )
    assert plain["max_duration_s"] is None and plain["n_cropped"] == 0
    assert plain["cropped_total_hours"] == pytest.approx(plain["total_hours"])
    assert crop["max_duration_s"] == 12.0
    assert crop["n_cropped"] == int((d > 12.0).sum()) > 0
    assert crop["cropped_total_hours"] * 3600 == pytest.approx(np.minimum(d, 12).sum())
    # input statistics are those of the uncropped durations
    assert crop["duration_max_s"] == pytest.approx(34.0)
    assert crop["total_hours"] == pytest.approx(plain["total_hours"])
    # the baseline is cropped too: same random batches, less padding
    capped = np.minimum(d, 12.0)
    expected = np.mean(
        [
            batches_padding_share(capped, random_batches(len(d), 4, 1 + e))
            for e in (1, 2)
        ]
    )
    assert crop["baseline_padding_share"] == pytest.approx(expected)
    assert crop["baseline_padding_share"] < plain["baseline_padding_share"]
    assert crop["baseline_computed_hours"] < plain["baseline_computed_hours"]
    assert crop["bucketed_computed_hours"] < plain["bucketed_computed_hours"]
    sampler = DurationBucketBatchSampler(d, 8, seed=1, max_duration=12.0)
    assert crop["bucketed_padding_share_per_epoch"] == [
        batches_padding_share(capped, sampler.epoch_batches(e)) for e in (1, 2)
    ]
    text = format_report("profile", crop)
    assert "crop, both batchings" in text and "max 12:" in text
    assert "crop" not in format_report("profile", plain)
    json.dumps(crop)
    with pytest.raises(ValueError, match="max_duration"):
        padding_report(d, max_duration=0.0)


def test_cli_max_duration(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "--iemocap-profile",
                "--epochs",
                "1",
                "--max-duration",
                "12",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert "max 12:" in capsys.readouterr().out
    report = json.loads(out.read_text())["reports"][0]
    assert report["max_duration_s"] == 12.0 and report["n_cropped"] > 0
    assert main(["--iemocap-profile", "--max-duration", "-1"]) == 2
    assert "max_duration must be finite and > 0" in capsys.readouterr().err


def test_max_batch_seconds_bounds_padded_audio():
    """Dynamic batches: every batch holds at most max_batch_seconds of padded
    audio (a longer utterance gets a batch of its own), each utterance comes
    once per epoch, short utterances fill big batches, and the batches change
    between epochs."""
    durations = np.random.default_rng(3).uniform(0.5, 12.0, size=200)
    durations[7] = 30.0  # longer than the budget
    sampler = DurationBucketBatchSampler(
        durations, batch_size=64, seed=1, max_batch_seconds=20.0
    )
    epochs = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(200))
        for batch in batches:
            padded = len(batch) * max(durations[i] for i in batch)
            assert padded <= 20.0 or batch == [7]
            assert len(batch) <= 64
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    sizes = {len(b): max(durations[i] for i in b) for b in epochs[0]}
    assert max(sizes) >= 10  # many short utterances in one batch
    with pytest.raises(ValueError, match="drop_last"):
        DurationBucketBatchSampler(durations, 4, drop_last=True, max_batch_seconds=9)
