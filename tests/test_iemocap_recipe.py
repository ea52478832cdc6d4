"""End-to-end tests of recipes/IEMOCAP/train.py on the synthetic corpus.

Every run uses the real recipe and hyperparameter files with a tiny random
SSL model loaded from a local folder through the same path as hub models.
The recipe runs in this process (conftest.run_recipe: what ``python train.py``
runs, without a new interpreter's imports); its command line is tested in
test_recipe_guards.py.
"""

import csv
import json
import math
import shutil

import pytest
import torch
from conftest import IEMOCAP, iemocap_argv, load_recipe_script, run_recipe
from safetensors.torch import load_file

RECIPE = IEMOCAP


def _train(corpus, model, out, *extra, epochs=4, hparams=None, expect_ok=True):
    hparams = hparams or "train_wavlm_large.yaml"
    argv = iemocap_argv(corpus, model, out, *extra, hparams=hparams, epochs=epochs)
    return run_recipe(RECIPE, argv, expect_ok=expect_ok)


def _prepare_manifests(corpus, folder, test_session=5):
    """Run the preparation alone, as its command line does (for runs with
    --skip_prep; the command line itself is tested in test_iemocap_prepare)."""
    import iemocap_prepare

    argv = [
        f"--data_folder={corpus}",
        f"--save_folder={folder}",
        f"--test_session={test_session}",
    ]
    assert iemocap_prepare.main(argv) == 0


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def trained_run(iemocap_trained_run):
    """One LOSO fold (test session 2) trained for 8 epochs, partial fine-tuning
    (a session fixture, shared with test_system_b's fusion)."""
    return iemocap_trained_run


def test_run_learns_clearly_above_chance(trained_run):
    out, run = trained_run
    metrics = json.loads((out / "test_metrics.json").read_text())
    # 4 balanced classes: chance is 25 %.
    assert metrics["UA"] >= 0.5, metrics
    assert metrics["WA"] >= 0.5, metrics
    assert "| test |" in run.stdout  # the results table is printed
    history = json.loads((out / "history.json").read_text())
    assert list(history) == [str(e) for e in range(1, 9)]
    assert history["8"]["train_loss"] < history["1"]["train_loss"]


def test_run_outputs(trained_run, iemocap_corpus):
    out, _ = trained_run
    for name in (
        "test_metrics.json",
        "valid_metrics.json",
        "test_predictions.csv",
        "valid_predictions.csv",
        "test_confusion_matrix.png",
        "valid_confusion_matrix.png",
        "learning_curves.png",
        "history.json",
        "hyperparams.yaml",
        "save/label_encoder.txt",
        "manifests/split_info.json",
    ):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["protocol"] == "IEMOCAP leave-one-session-out (speaker-independent)"
    assert metrics["fold"] == "session2" and metrics["seed"] == 1993
    assert metrics["selection_metric"] == "UA"
    assert 1 <= metrics["selected_epoch"] <= 8
    assert metrics["labels"] == ["neu", "hap", "sad", "ang"]


def test_metrics_cover_the_whole_test_set(trained_run):
    """Metrics are computed on every test utterance, not on the last batch."""
    out, _ = trained_run
    manifest = json.loads((out / "manifests" / "test.json").read_text())
    assert all(manifest[u]["session"] == 2 for u in manifest)
    # Every labelled utterance (the ones kept for their votes have no label).
    manifest = {u: e for u, e in manifest.items() if e["emo"] is not None}
    rows = _read_csv(out / "test_predictions.csv")
    assert set(rows) == set(manifest)
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n"] == len(manifest)
    correct = sum(r["target"] == r["prediction"] for r in rows.values())
    assert metrics["WA"] == pytest.approx(correct / len(rows))
    recalls = []
    for label in metrics["labels"]:
        of_class = [r for r in rows.values() if r["target"] == label]
        recalls.append(sum(r["prediction"] == label for r in of_class) / len(of_class))
    assert metrics["UA"] == pytest.approx(sum(recalls) / len(recalls))


def test_prediction_alone_equals_prediction_in_batch(trained_run, tmp_path):
    """Re-evaluate the finished run with batches of 1: same probabilities."""
    out, _ = trained_run
    batched = _read_csv(out / "test_predictions.csv")
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    corpus_folder = json.loads((copy / "manifests" / "split_info.json").read_text())[
        "data_folder"
    ]
    model = json.loads((copy / "test_metrics.json").read_text())["ssl_source"]
    again = _train(
        corpus_folder,
        model,
        copy,
        "--test_session=2",
        "--eval_batch_size=1",
        epochs=8,
    )
    assert "Loading a checkpoint" in again.output  # re-evaluated, not retrained
    alone = _read_csv(copy / "test_predictions.csv")
    assert set(alone) == set(batched)
    for utt, row in alone.items():
        assert row["prediction"] == batched[utt]["prediction"], utt
        for key in row:
            if key.startswith("prob_"):
                assert float(row[key]) == pytest.approx(
                    float(batched[utt][key]), abs=1e-4
                )


def _latest_model_weights(out):
    ckpts = sorted((out / "save").glob("CKPT+*"))
    return torch.load(ckpts[-1] / "model.ckpt", map_location="cpu", weights_only=True)


def test_partial_finetuning_trains_transformer_not_cnn(trained_run, tiny_models):
    out, _ = trained_run
    trained = _latest_model_weights(out)
    initial = load_file(tiny_models["wavlm"] / "model.safetensors")
    prefix = "encoder.model."
    cnn = [k for k in initial if k.startswith("feature_extractor.")]
    layers = [k for k in initial if k.startswith("encoder.layers.")]
    assert cnn and layers
    for key in cnn:
        assert torch.equal(trained[prefix + key], initial[key]), key
    assert any(not torch.equal(trained[prefix + k], initial[k]) for k in layers)


def test_frozen_mode_trains_only_the_head(iemocap_small_corpus, tiny_models, tmp_path):
    # One epoch on the small corpus: the weights are compared, not the scores.
    out = tmp_path / "frozen"
    _train(
        iemocap_small_corpus,
        tiny_models["wav2vec2_base"],
        out,
        "--finetune=frozen",
        "--test_session=1",
        hparams="train_wav2vec2_base.yaml",
        epochs=1,
    )
    trained = _latest_model_weights(out)
    initial = load_file(tiny_models["wav2vec2_base"] / "model.safetensors")
    for key, value in initial.items():
        assert torch.equal(trained["encoder.model." + key], value), key
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["finetune"] == "frozen"
    # the overlay file applied; named from the tiny encoder given by --ssl_source
    assert metrics["experiment"] == "wav2vec2_h32_l2_frozen"
    log = (out / "train_log.txt").read_text()
    assert "lr_ssl" not in log  # no encoder optimiser in frozen mode


def test_resume_after_interruption_gives_the_same_result(
    iemocap_corpus, tiny_models, iemocap_seed7_run, tmp_path
):
    """Kill a run in the middle of epoch 2, restart it: same final predictions
    as a run that was never interrupted (RNG state, sampler epoch, optimiser,
    schedulers and counter all come back from the checkpoint). The run that
    was never interrupted is the session fixture iemocap_seed7_run (test
    session 2, seed 7, 3 epochs)."""
    straight, _ = iemocap_seed7_run
    common = ["--test_session=2", "--seed=7"]
    interrupted = tmp_path / "interrupted"
    argv = iemocap_argv(
        iemocap_corpus, tiny_models["wavlm"], interrupted, *common, epochs=3
    )

    # The recipe's main() with a training step that raises in the middle of
    # epoch 2 (the exception ends the run as it ends the command line).
    # EmotionBrain is shared (sser_lobes.training.emotion_brain): a subclass, set in
    # this fresh module only, keeps the crash out of every other run.
    train = load_recipe_script(RECIPE)
    steps = {}

    class CrashingBrain(train.EmotionBrain):
        def fit_batch(self, batch):
            epoch = self.hparams.epoch_counter.current
            steps[epoch] = steps.get(epoch, 0) + 1
            if epoch == 2 and steps[2] == steps[1] // 2:
                raise RuntimeError("simulated crash")
            return super().fit_batch(batch)

    train.EmotionBrain = CrashingBrain
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(RECIPE, argv, module=train)
    assert steps[1] >= 4  # the crash came after epoch 2's first batches
    assert not (interrupted / "test_metrics.json").exists()
    resumed = _train(
        iemocap_corpus, tiny_models["wavlm"], interrupted, *common, epochs=3
    )
    assert "Loading a checkpoint" in resumed.output

    a = _read_csv(straight / "test_predictions.csv")
    b = _read_csv(interrupted / "test_predictions.csv")
    assert set(a) == set(b)
    for utt in a:
        for key in a[utt]:
            if key.startswith("prob_"):
                assert math.isclose(
                    float(a[utt][key]), float(b[utt][key]), abs_tol=1e-5
                ), (utt, key)
    ha = json.loads((straight / "history.json").read_text())
    hb = json.loads((interrupted / "history.json").read_text())
    assert ha.keys() == hb.keys() == {"1", "2", "3"}
    for epoch in ha:
        assert ha[epoch]["train_loss"] == pytest.approx(
            hb[epoch]["train_loss"], abs=1e-5
        )


def test_bf16_precision_runs_on_cpu(iemocap_small_corpus, tiny_models, tmp_path):
    """SpeechBrain's --precision path (autocast); the loss stays fp32 (one
    epoch on the small corpus: the code path runs)."""
    out = tmp_path / "bf16"
    _train(
        iemocap_small_corpus,
        tiny_models["wavlm"],
        out,
        "--precision=bf16",
        "--test_session=4",
        epochs=1,
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert math.isfinite(metrics["loss"])
    assert 0.0 <= metrics["UA"] <= 1.0


def test_unknown_label_in_manifest_is_a_clear_error(
    iemocap_corpus, tiny_models, tmp_path
):
    out = tmp_path / "badlabel"
    _prepare_manifests(iemocap_corpus, out / "manifests")
    manifest = out / "manifests" / "valid.json"
    data = json.loads(manifest.read_text())
    first = sorted(data)[0]
    data[first]["emo"] = "fru"
    manifest.write_text(json.dumps(data))
    run = _train(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=5",
        "--skip_prep=True",
        epochs=1,
        expect_ok=False,
    )
    assert run.error is not None  # the command line exits with it (status 1)
    assert str(manifest) in run.error and first in run.error
    assert "'fru'" in run.error


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_audio_during_training_names_the_file(
    iemocap_corpus, tiny_models, tmp_path, workers
):
    """A wav that went bad after preparation: a one-line error naming it,
    also when the DataLoader reads it in a worker process (the one line is
    what the command line prints, with exit status 1)."""
    out = tmp_path / "badaudio"
    manifests = out / "manifests"
    _prepare_manifests(iemocap_corpus, manifests)
    train = json.loads((manifests / "train.json").read_text())
    victim = tmp_path / "corrupt.wav"
    victim.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    first = sorted(train)[0]
    train[first]["wav"] = str(victim)
    (manifests / "train.json").write_text(json.dumps(train))
    run = _train(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=5",
        "--skip_prep=True",
        f"--num_workers={workers}",
        epochs=1,
        expect_ok=False,
    )
    assert run.error.startswith(f"error: {victim}: ")  # one line (run_recipe)


def test_manifests_with_one_or_no_utterance(
    iemocap_small_corpus, tiny_models, tmp_path
):
    """Thin data: valid and test sets of one utterance run to the end; an
    empty training manifest is one line that names it (not an IndexError
    inside SpeechBrain's dataset)."""
    out = tmp_path / "thin"
    manifests = out / "manifests"
    _prepare_manifests(iemocap_small_corpus, manifests)
    for split in ("valid", "test"):
        path = manifests / f"{split}.json"
        data = json.loads(path.read_text())
        path.write_text(json.dumps({k: data[k] for k in sorted(data)[:1]}))
    run = _train(
        iemocap_small_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=5",
        "--skip_prep=True",
        epochs=1,
    )
    assert run.results["test"]["n"] == 1 and run.results["valid"]["n"] == 1
    assert json.loads((out / "test_metrics.json").read_text())["n"] == 1

    empty = tmp_path / "empty"
    _prepare_manifests(iemocap_small_corpus, empty / "manifests")
    (empty / "manifests" / "train.json").write_text("{}")
    run = _train(
        iemocap_small_corpus,
        tiny_models["wavlm"],
        empty,
        "--test_session=5",
        "--skip_prep=True",
        epochs=1,
        expect_ok=False,
    )
    assert "the train split is empty" in run.error
    assert str(empty / "manifests" / "train.json") in run.error


def test_memory_options_run_through_the_recipe(
    iemocap_small_corpus, tiny_models, tmp_path
):
    """gradient_checkpointing and max_batch_seconds (dynamic batches) from
    the command line: the run trains and evaluates; the options reach the
    encoder and the sampler."""
    run = _train(
        iemocap_small_corpus,
        tiny_models["wavlm"],
        tmp_path / "memory",
        "--gradient_checkpointing=True",
        "--max_batch_seconds=4.0",
        "--batch_size=16",
        epochs=1,
    )
    assert run.results["test"]["n"] > 0
    saved = (tmp_path / "memory" / "hyperparams.yaml").read_text()
    assert "max_batch_seconds: 4.0" in saved and "gradient_checkpointing: true" in saved
