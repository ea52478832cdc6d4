"""The frozen-encoder feature cache (``feature_cache: True``, issue 11 part 3).

A cached run gives the same results as an uncached one, trains the weighted
sum's layer weights, reads no audio once the cache is full, and refuses the
options that would make the encoder's input change; entries are invalidated
by any change of audio, encoder, layer, dtype or crop, and concurrent writers
never leave a half-written entry.
"""

import csv
import json
import multiprocessing
import os
import re

import numpy as np
import pytest
import soundfile
import torch
from conftest import (
    IEMOCAP,
    MSP,
    ROOT,
    iemocap_argv,
    recipe_process_state,
    run_recipe,
)

from sser_lobes import SSLEncoder
from sser_lobes.dataio.pipelines import (
    audio_pipeline,
    encoder_input_of,
    segment_audio_pipeline,
)
from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
from sser_lobes.training.feature_cache import (
    FeatureCache,
    encoder_fingerprint,
    entry_key,
    fill,
)

EPOCHS = 3
FROZEN_SUM = ["--finetune=frozen", "--output_layer=weighted_sum"]


def _rows(path, key="id"):
    with open(path, newline="", encoding="utf-8") as handle:
        return {row[key]: row for row in csv.DictReader(handle)}


def _entries(folder):
    return sorted(p for p in folder.rglob("*.npy"))


def _layer_weights(run):
    """The selected checkpoint's softmax layer weights."""
    (ckpt,) = (run / "save").glob("CKPT+*")
    state = torch.load(ckpt / "model.ckpt", weights_only=True)
    return state["encoder.layer_weights"]


@pytest.fixture(scope="module")
def iemocap_runs(iemocap_corpus, tiny_models, tmp_path_factory):
    """The same frozen weighted-sum fold without and with a float32 cache."""
    root = tmp_path_factory.mktemp("feature_cache_runs")
    cache = root / "cache"
    runs = {}
    for name, extra in (
        ("plain", []),
        ("cached", ["--feature_cache=True", f"--feature_cache_folder={cache}"]),
    ):
        out = root / name
        argv = iemocap_argv(
            iemocap_corpus,
            tiny_models["wavlm"],
            out,
            "--test_session=3",
            *FROZEN_SUM,
            *extra,
            epochs=EPOCHS,
        )
        runs[name] = (out, run_recipe(IEMOCAP, argv))
    return runs, cache


def test_cached_run_gives_the_uncached_run_results(iemocap_runs):
    runs, cache = iemocap_runs
    plain, cached = runs["plain"][0], runs["cached"][0]
    n_utterances = sum(  # the labelled ones: a hard-target run reads no other
        e["emo"] is not None
        for s in ("train", "valid", "test")
        for e in json.loads((cached / "manifests" / f"{s}.json").read_text()).values()
    )
    # 2 tiny layers: hidden states 0, 1, 2, one file per utterance and layer.
    assert len(_entries(cache)) == 3 * n_utterances
    for split in ("valid", "test"):
        a = json.loads((plain / f"{split}_metrics.json").read_text())
        b = json.loads((cached / f"{split}_metrics.json").read_text())
        for key in ("WA", "UA", "macro_F1", "confusion_matrix", "selected_epoch"):
            assert a[key] == b[key], (split, key)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        rows_a = _rows(plain / f"{split}_predictions.csv")
        rows_b = _rows(cached / f"{split}_predictions.csv")
        assert rows_a.keys() == rows_b.keys()
        for utt, row in rows_a.items():
            assert row["prediction"] == rows_b[utt]["prediction"]
            for label in ("neu", "hap", "sad", "ang"):
                column = f"prob_{label}"
                assert float(rows_b[utt][column]) == pytest.approx(
                    float(row[column]), abs=1e-5
                )
    history_a = json.loads((plain / "history.json").read_text())
    history_b = json.loads((cached / "history.json").read_text())
    for epoch, values in history_a.items():
        for key, value in values.items():
            assert history_b[epoch][key] == pytest.approx(value, rel=1e-5), key


def test_layer_weights_train_with_the_cache(iemocap_runs):
    runs, _ = iemocap_runs
    plain = _layer_weights(runs["plain"][0])
    cached = _layer_weights(runs["cached"][0])
    assert cached.shape == (3,)
    assert cached.abs().max() > 1e-3  # they start at zero
    assert torch.allclose(cached, plain, atol=1e-5)


def test_a_second_run_reads_the_cache_and_no_audio(
    iemocap_runs, iemocap_corpus, tiny_models, tmp_path, monkeypatch
):
    """Another run (another seed, same encoder and fold) on the filled cache:
    nothing is encoded and no waveform is read, in any split."""
    import sser_lobes.dataio.pipelines

    _, cache = iemocap_runs
    before = {p: p.stat().st_mtime_ns for p in _entries(cache)}
    reads = []
    real_read_audio = sser_lobes.dataio.pipelines.read_audio

    def counting_read_audio(*args, **kwargs):
        reads.append(args[0])
        return real_read_audio(*args, **kwargs)

    monkeypatch.setattr(sser_lobes.dataio.pipelines, "read_audio", counting_read_audio)
    argv = iemocap_argv(
        iemocap_corpus,
        tiny_models["wavlm"],
        tmp_path / "again",
        "--test_session=3",
        "--seed=7",
        *FROZEN_SUM,
        "--feature_cache=True",
        f"--feature_cache_folder={cache}",
        epochs=1,
    )
    run = run_recipe(IEMOCAP, argv)
    assert re.search(r"encoded 0 of the \d+ utterances", run.output)
    assert reads == []
    assert {p: p.stat().st_mtime_ns for p in _entries(cache)} == before


def test_msp_cached_run_with_a_first_crop_equals_the_uncached_run(
    msp_small_corpus, tiny_models, tmp_path
):
    """MSP-Podcast: filtered datasets, the unlabelled Test3 split, global
    waveform statistics and a first-window crop (part of the key)."""
    results = {}
    for name, extra in (
        ("plain", []),
        (
            "cached",
            ["--feature_cache=True", f"--feature_cache_folder={tmp_path / 'cache'}"],
        ),
    ):
        argv = [
            MSP / "hparams" / "train_wavlm_large.yaml",
            f"--data_folder={msp_small_corpus}",
            f"--ssl_source={tiny_models['wavlm']}",
            f"--output_folder={tmp_path / name}",
            "--number_of_epochs=2",
            "--num_workers=0",
            "--noprogressbar",
            "--lr=0.01",
            "--head_hidden_size=16",
            "--finetune=frozen",
            "--output_layer=1",
            "--train_crop_seconds=2.0",
            "--eval_crop_seconds=2.5",
            *extra,
        ]
        results[name] = run_recipe(MSP, argv).results
    assert results["cached"].keys() == results["plain"].keys()
    for split, metrics in results["plain"].items():
        for key, value in metrics.items():
            assert results["cached"][split][key] == pytest.approx(value, abs=1e-6)
    plain = _rows(tmp_path / "plain" / "test3_probabilities.csv", "FileName")
    cached = _rows(tmp_path / "cached" / "test3_probabilities.csv", "FileName")
    assert plain.keys() == cached.keys()
    for utt, row in plain.items():
        for key, value in row.items():
            if key != "FileName":
                assert float(cached[utt][key]) == pytest.approx(float(value), abs=1e-5)
    # Train (2.0 s) and evaluation (2.5 s) crops are two entries per layer.
    assert len(_entries(tmp_path / "cache")) > sum(
        len(json.loads(p.read_text()))
        for p in (tmp_path / "cached" / "manifests").glob("*.json")
        if p.name in ("train.json", "development.json", "test1.json")
    )


# --------------------------------------------------------------------------
# Refusals: one line, before anything is built or written
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipe, options, message",
    [
        (
            IEMOCAP,
            ["--finetune=partial"],
            "--feature_cache=True needs --finetune=frozen: with finetune=partial",
        ),
        (
            IEMOCAP,
            ["--finetune=entire"],
            "--feature_cache=True needs --finetune=frozen: with finetune=entire",
        ),
        (
            MSP,
            ["--finetune=frozen", "--train_crop=random"],
            "--feature_cache=True cannot be used with --train_crop=random",
        ),
        (
            IEMOCAP,
            ["--finetune=frozen", "--apply_spec_augment=True"],
            "cannot be used with --apply_spec_augment=True",
        ),
        (
            IEMOCAP,
            ["--finetune=frozen", "--feature_cache_dtype=float64"],
            "--feature_cache_dtype must be one of float32, float16",
        ),
    ],
)
def test_refused_combinations_are_one_line_before_anything_heavy(
    iemocap_small_corpus, msp_small_corpus, tmp_path, recipe, options, message
):
    """The SSL source does not exist: the refusal comes before it is looked up."""
    corpus = iemocap_small_corpus if recipe == IEMOCAP else msp_small_corpus
    out = tmp_path / "run"
    argv = [
        recipe / "hparams" / "train_wavlm_large.yaml",
        f"--data_folder={corpus}",
        "--ssl_source=/nonexistent/model",
        f"--output_folder={out}",
        "--feature_cache=True",
        f"--feature_cache_folder={tmp_path / 'cache'}",
        *options,
    ]
    run = run_recipe(recipe, argv, expect_ok=False)
    assert run.error is not None and message in run.error, run.error
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_weighted_sum_layers_needs_weighted_sum(iemocap_small_corpus, tmp_path):
    argv = [
        IEMOCAP / "hparams" / "train_wavlm_large.yaml",
        f"--data_folder={iemocap_small_corpus}",
        "--ssl_source=/nonexistent/model",
        f"--output_folder={tmp_path / 'run'}",
        "--weighted_sum_layers=8-16",
    ]
    run = run_recipe(IEMOCAP, argv, expect_ok=False)
    assert "--weighted_sum_layers is for --output_layer=weighted_sum" in run.error
    argv[-1] = "--weighted_sum_layers=[3, 3]"
    run = run_recipe(IEMOCAP, [*argv, "--output_layer=weighted_sum"], expect_ok=False)
    assert "--weighted_sum_layers must be distinct hidden-state indices" in run.error


# --------------------------------------------------------------------------
# The cache itself
# --------------------------------------------------------------------------


@pytest.fixture
def audio_files(tmp_path):
    """Three 16 kHz wav files of different lengths: {id: path}."""
    rng = np.random.default_rng(0)
    files = {}
    for name, seconds in (("a", 1.3), ("b", 0.7), ("c", 2.1)):
        path = tmp_path / "audio" / f"{name}.wav"
        path.parent.mkdir(exist_ok=True)
        signal = 0.1 * rng.standard_normal(int(seconds * 16000))
        soundfile.write(path, signal.astype("float32"), 16000, subtype="PCM_16")
        files[name] = path
    return files


def _dataset(files, crop_seconds=None):
    import speechbrain as sb

    data = {
        utt: {"wav": str(path), "duration": soundfile.info(path).duration}
        for utt, path in files.items()
    }
    return sb.dataio.dataset.DynamicItemDataset(
        data,
        dynamic_items=[
            audio_pipeline(16000, 400, crop_seconds=crop_seconds, crop="first")
        ],
        output_keys=["id", "sig"],
    )


def _filled(folder, encoder, files, dtype="float32", crop_seconds=None):
    """Index the files, fill what is missing; (cache, names, missing before)."""
    cache = FeatureCache(folder, encoder, dtype)
    cache.create()
    dataset = _dataset(files, crop_seconds)
    reading = encoder_input_of(dataset)
    names = cache.index([(utt, str(path), reading) for utt, path in files.items()])
    missing = cache.missing(names)
    fill(cache, encoder, dataset, names, missing, batch_size=2)
    assert cache.missing(names) == []
    return cache, names, missing


def _encoder(folder, **options):
    return SSLEncoder(folder, finetune="frozen", **options)


def test_cached_features_equal_the_encoder_output(tiny_models, audio_files, tmp_path):
    """Filled in padded batches, read back: the features of each file alone,
    in float32 to 1e-5 and in float16 to half precision."""
    encoder = _encoder(
        tiny_models["wav2vec2_base"], output_layer="weighted_sum", output_norm=True
    )
    with torch.no_grad():
        encoder.layer_weights.copy_(torch.tensor([0.3, -0.2, 0.5]))
    for dtype, tolerance in (("float32", 1e-5), ("float16", 2e-2)):
        cache, names, _ = _filled(tmp_path / "cache", encoder, audio_files, dtype)
        for utt, path in audio_files.items():
            wav = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
            with torch.no_grad():
                expected, _ = encoder(wav[None])
                hidden = torch.from_numpy(cache.load(names[utt]))[None]
                feats, lens = encoder.features_from_hidden(hidden, torch.ones(1))
            assert feats.shape == expected.shape
            assert (feats - expected).abs().max() < tolerance, (dtype, utt)


def test_any_change_invalidates_the_affected_entries(
    tiny_models, audio_files, tmp_path
):
    folder = tmp_path / "cache"
    summed = _encoder(tiny_models["wavlm"], output_layer="weighted_sum")
    _, names, missing = _filled(folder, summed, audio_files)
    assert sorted(missing) == ["a", "b", "c"]
    assert _filled(folder, summed, audio_files)[2] == []  # all reused

    # Touched (same content, new mtime): that file only.
    stat = audio_files["a"].stat()
    os.utime(audio_files["a"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _filled(folder, summed, audio_files)[2] == ["a"]
    # Rewritten with the same size and the same mtime: the content hash.
    path = audio_files["b"]
    stat = path.stat()
    data, rate = soundfile.read(path, dtype="int16")
    soundfile.write(path, -data, rate, subtype="PCM_16")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert _filled(folder, summed, audio_files)[2] == ["b"]

    # One layer of the weighted sum: shared with it; another output: not.
    assert (
        _filled(folder, _encoder(tiny_models["wavlm"], output_layer=1), audio_files)[2]
        == []
    )
    subset = _encoder(
        tiny_models["wavlm"], output_layer="weighted_sum", weighted_sum_layers="1-2"
    )
    assert _filled(folder, subset, audio_files)[2] == []
    last = _encoder(tiny_models["wavlm"], output_layer="last")
    assert sorted(_filled(folder, last, audio_files)[2]) == ["a", "b", "c"]
    # Another dtype, another crop, other weights, other normalisation.
    assert len(_filled(folder, summed, audio_files, dtype="float16")[2]) == 3
    assert len(_filled(folder, summed, audio_files, crop_seconds=1.0)[2]) == 3
    other = make_tiny_ssl(tmp_path / "other", arch="wavlm", seed=3)
    assert len(_filled(folder, _encoder(other), audio_files)[2]) == 3
    assert (
        len(_filled(folder, _encoder(other, normalize_waveform="off"), audio_files)[2])
        == 3
    )


def test_filling_leaves_the_random_state_as_it_was(tiny_models, audio_files, tmp_path):
    """A DataLoader draws a seed from torch's generator; filling the cache
    must not shift the dropout masks of the training that follows (the MSP
    comparison above trains a head with dropout)."""
    encoder = _encoder(tiny_models["wavlm"])
    torch.manual_seed(3)
    before = torch.get_rng_state()
    _filled(tmp_path / "cache", encoder, audio_files)
    assert torch.equal(torch.get_rng_state(), before)


def test_fingerprint_covers_weights_and_waveform_statistics(tiny_models):
    encoder = _encoder(tiny_models["wavlm"], normalize_waveform="global")
    encoder.set_waveform_stats(0.0, 0.1, 16000)
    first = encoder_fingerprint(encoder)
    encoder.set_waveform_stats(0.0, 0.2, 16000)
    second = encoder_fingerprint(encoder)
    with torch.no_grad():
        next(encoder.model.parameters()).add_(1e-3)
    assert len({first, second, encoder_fingerprint(encoder)}) == 3


def test_float16_overflow_is_refused(tiny_models, tmp_path):
    cache = FeatureCache(tmp_path, _encoder(tiny_models["wavlm"]), "float16")
    cache.create()
    with pytest.raises(ValueError, match="utterance u1 has values that float16"):
        cache.store("ab-cd", np.full((3, 1, 32), 1e6, dtype="float32"), "u1")
    assert _entries(tmp_path) == []


def test_weighted_sum_layers_sums_the_chosen_hidden_states(tiny_models):
    folder = tiny_models["wav2vec2_base"]
    subset = _encoder(folder, output_layer="weighted_sum", weighted_sum_layers=[0, 2])
    assert subset.selected_layers == [0, 2] and subset.layer_weights.shape == (2,)
    with torch.no_grad():
        subset.layer_weights.copy_(torch.tensor([0.7, -0.4]))
    wav = torch.randn(1, 12000)
    with torch.no_grad():
        feats, _ = subset(wav)
        reference = _encoder(folder, output_layer="weighted_sum")
        hidden, _ = reference.hidden_states(wav)
    weights = torch.softmax(torch.tensor([0.7, -0.4]), dim=0)
    expected = weights[0] * hidden[:, :, 0] + weights[1] * hidden[:, :, 2]
    assert torch.allclose(feats, expected, atol=1e-6)
    with pytest.raises(ValueError, match="hidden states are 0..2, got"):
        _encoder(folder, output_layer="weighted_sum", weighted_sum_layers=[1, 3])


# --------------------------------------------------------------------------
# Concurrent writers
# --------------------------------------------------------------------------


def _write_repeatedly(cache, names, value, rounds):
    for _ in range(rounds):
        for name in names:
            cache.store(name, np.full((4000, 1, 32), value, dtype="float32"))


def test_concurrent_writers_never_leave_a_partial_entry(tiny_models, tmp_path):
    """Three processes write the same entries over and over (each its own
    values) while this one reads them: every read is one writer's complete
    array."""
    cache = FeatureCache(tmp_path, _encoder(tiny_models["wavlm"]), "float32")
    cache.create()
    names = [f"{i:02x}{'0' * 22}-entry" for i in range(4)]
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_write_repeatedly, args=(cache, names, value, 40))
        for value in (1.0, 2.0, 3.0)
    ]
    for writer in writers:
        writer.start()
    reads = 0
    try:
        while any(w.is_alive() for w in writers):
            for name in names:
                if not cache.missing({"u": name}):
                    array = cache.load(name)
                    assert array.shape == (4000, 1, 32)
                    assert array.min() == array.max() and array.min() in (1, 2, 3)
                    reads += 1
    finally:
        for writer in writers:
            writer.join()
    assert all(w.exitcode == 0 for w in writers)
    assert reads > 0
    assert not list(tmp_path.rglob("*.tmp"))


# --------------------------------------------------------------------------
# DDP
# --------------------------------------------------------------------------


def test_ddp_processes_fill_their_own_shares(iemocap_corpus, tiny_models, tmp_path):
    """Two torchrun processes: each encodes part of the utterances, every
    entry is there, and the run trains and evaluates from the cache."""
    from test_ddp import _torchrun

    out = tmp_path / "ddp_cached"
    out.parent.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    proc = _torchrun(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        *FROZEN_SUM,
        "--feature_cache=True",
        f"--feature_cache_folder={cache}",
    )
    log = proc.stdout + proc.stderr
    found = re.search(r"encoded (\d+) \+ (\d+) of the (\d+) utterances", log)
    assert found, log[-3000:]
    first, second, total = map(int, found.groups())
    assert first > 0 and second > 0 and first + second == total
    assert len(_entries(cache)) == 3 * total
    metrics = json.loads((out / "test_metrics.json").read_text())
    test = json.loads((out / "manifests/test.json").read_text())
    assert metrics["n"] == sum(e["emo"] is not None for e in test.values())


def test_a_layer_subset_run_exports_and_loads(
    iemocap_small_corpus, tiny_models, tmp_path
):
    """weighted_sum_layers is part of the exported model: it loads with its
    2 layer weights and gives the run's own test predictions."""
    from sser_lobes.inference import export
    from sser_lobes.inference.recognizer import EmotionRecognizer

    run = tmp_path / "run"
    argv = iemocap_argv(
        iemocap_small_corpus,
        tiny_models["wavlm"],
        run,
        *FROZEN_SUM,
        "--weighted_sum_layers=1-2",
        "--feature_cache=True",
        f"--feature_cache_folder={tmp_path / 'cache'}",
        epochs=2,
    )
    run_recipe(IEMOCAP, argv)
    with recipe_process_state():
        assert export.main([str(run), str(tmp_path / "model")]) == 0
    recognizer = EmotionRecognizer.from_hparams(str(tmp_path / "model"))
    encoder = recognizer.mods.model.encoder
    assert encoder.selected_layers == [1, 2]
    assert torch.equal(encoder.layer_weights, _layer_weights(run))
    manifest = json.loads((run / "manifests" / "test.json").read_text())
    rows = _rows(run / "test_predictions.csv")
    for utt in rows:  # the run's predictions: raw probabilities
        probabilities = recognizer.classify_file(
            manifest[utt]["wav"], calibrated=False
        )[0]
        expected = [
            float(rows[utt][f"prob_{label}"]) for label in ("neu", "hap", "sad", "ang")
        ]
        assert probabilities.flatten().tolist() == pytest.approx(expected, abs=2e-5)


def test_benchmark_runs_and_both_arms_train_alike(capsys):
    """bench/feature_cache.py on a tiny model: the JSON record and the row."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_feature_cache", ROOT / "bench" / "feature_cache.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--utterances=6", "--epochs=2", "--threads=1"]) == 0
    text = capsys.readouterr().out
    record = json.loads(text[: text.index("\n}\n") + 2])
    assert record["utterances"] == 6 and len(record["epoch_seconds_with_cache"]) == 2
    assert record["train_loss_max_relative_difference"] < 1e-5
    assert record["cache_gb_per_audio_hour"] == pytest.approx(
        record["cache_gb_per_audio_hour_formula"], rel=0.05
    )
    assert text.rstrip().splitlines()[-1].startswith("| WavLM tiny")


def test_a_segment_is_its_own_entry(tiny_models, audio_files, tmp_path):
    """Segments of one file (start / end of the generic recipe's CSV) get their
    own entries, and a changed segment under the same id is recomputed."""
    cache = FeatureCache(tmp_path, _encoder(tiny_models["wavlm"]), "float32")
    path = str(audio_files["a"])
    reading = segment_audio_pipeline(16000, 400).encoder_input
    names = cache.index(
        [
            ("whole", path, reading),
            ("whole_none", path, reading, None),
            ("first", path, reading, (0.0, 0.5)),
            ("first_again", path, reading, (0.0, 0.5)),
            ("other", path, reading, (0.1, 0.5)),
        ]
    )
    entry = {utt: name.split("-")[1] for utt, name in names.items()}
    assert entry["whole"] == entry["whole_none"]
    assert entry["first"] == entry["first_again"]
    assert len({entry["whole"], entry["first"], entry["other"]}) == 3


# --------------------------------------------------------------------------
# The key covers every input of the encoder (issue 19, item 1)
# --------------------------------------------------------------------------


def test_the_entry_key_covers_every_input_that_changes_the_waveform():
    signature = (1000, 1, "aa")
    reading = segment_audio_pipeline(16000, 400).encoder_input
    base = entry_key("u1", signature, reading)
    assert base == entry_key("u1", signature, dict(reading))  # deterministic
    changed = {
        "utterance id": entry_key("u2", signature, reading),
        "file content": entry_key("u1", (1000, 1, "bb"), reading),
        "segment": entry_key("u1", signature, reading, (0.0, 0.5)),
        "other segment": entry_key("u1", signature, reading, (0.1, 0.5)),
        "sample rate": entry_key(
            "u1", signature, segment_audio_pipeline(8000, 400).encoder_input
        ),
        "resampler": entry_key(
            "u1", signature, {**reading, "resampler": "scipy.signal.resample_poly 1.0"}
        ),
        "channels": entry_key(
            "u1", signature, audio_pipeline(16000, 400).encoder_input
        ),
        "crop": entry_key(
            "u1",
            signature,
            audio_pipeline(16000, 400, crop_seconds=1.0, crop="first").encoder_input,
        ),
        "crop length": entry_key(
            "u1",
            signature,
            audio_pipeline(16000, 400, crop_seconds=2.0, crop="first").encoder_input,
        ),
    }
    keys = [base, *changed.values()]
    assert len(set(keys)) == len(keys), changed
    # Not cacheable: a random crop, an audio pipeline that does not say how
    # it reads.
    random_crop = audio_pipeline(16000, 400, crop_seconds=1.0, crop="random")
    with pytest.raises(Exception, match="random crop gives the encoder another input"):
        entry_key("u1", signature, random_crop.encoder_input)
    with pytest.raises(Exception, match="does not describe how it reads"):
        entry_key("u1", signature, None)


def test_the_fingerprint_covers_every_option_of_the_encoder(tiny_models):
    folder = tiny_models["wavlm"]
    fingerprints = {
        "checkpoint's": encoder_fingerprint(_encoder(folder)),
        "utterance": encoder_fingerprint(
            _encoder(folder, normalize_waveform="utterance")
        ),
        "layer_norm": encoder_fingerprint(
            _encoder(folder, normalize_waveform="layer_norm")
        ),
        "off": encoder_fingerprint(_encoder(folder, normalize_waveform="off")),
        "fewer layers": encoder_fingerprint(_encoder(folder, num_layers=1)),
        "config override": encoder_fingerprint(
            _encoder(folder, config_overrides={"layer_norm_eps": 1e-3})
        ),
    }
    for mean, std in ((0.0, 0.1), (0.0, 0.2), (0.01, 0.1)):
        encoder = _encoder(folder, normalize_waveform="global")
        encoder.set_waveform_stats(mean, std, 16000)
        fingerprints[f"global {mean} {std}"] = encoder_fingerprint(encoder)
    assert fingerprints["checkpoint's"] == fingerprints["layer_norm"]
    del fingerprints["checkpoint's"]
    assert len(set(fingerprints.values())) == len(fingerprints), fingerprints


def test_another_sample_rate_on_the_same_cache_is_computed_again(tiny_models, tmp_path):
    """A frozen run at 16 kHz, then --sample_rate=8000 on the same cache
    folder: the 8 kHz run encodes its own entries and gives the metrics of
    the same run without the cache."""
    from conftest import CUSTOM, FAST_TRAINING

    from sser_lobes.synthetic.csv_corpus import make_csv_corpus

    corpus = make_csv_corpus(tmp_path / "corpus", speakers=3, per_class=2)
    cache = tmp_path / "cache"

    def run(name, *extra):
        out = tmp_path / name
        argv = [
            CUSTOM / "hparams" / "train_wavlm_large.yaml",
            f"--csv_file={corpus}",
            f"--ssl_source={tiny_models['wavlm']}",
            f"--output_folder={out}",
            "--number_of_epochs=2",
            "--finetune=frozen",
            *FAST_TRAINING,
            *extra,
        ]
        run_recipe(CUSTOM, argv)
        return json.loads((out / "test_metrics.json").read_text())

    cached = ["--feature_cache=True", f"--feature_cache_folder={cache}"]
    run("at16k", *cached)
    entries = len(_entries(cache))
    assert entries == 24  # 3 speakers x 4 classes x 2
    at8k = run("at8k", "--sample_rate=8000", *cached)
    assert len(_entries(cache)) == 2 * entries  # nothing of 16 kHz reused
    uncached = run("at8k_uncached", "--sample_rate=8000")
    for key in ("WA", "UA", "macro_F1", "confusion_matrix"):
        assert at8k[key] == uncached[key], key
