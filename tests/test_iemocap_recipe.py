"""End-to-end tests of recipes/IEMOCAP/train.py on the synthetic corpus.

Every run uses the real recipe and hyperparameter files with a tiny random
SSL model loaded from a local folder through the same path as hub models.
"""

import csv
import json
import math
import shutil
import sys

import pytest
import torch
from conftest import FAST_TRAINING, RECIPES, run_script
from safetensors.torch import load_file

RECIPE = RECIPES / "IEMOCAP"
TRAIN = RECIPE / "train.py"
HPARAMS = RECIPE / "hparams" / "train_wavlm_large.yaml"


def _train(corpus, model, out, *extra, hparams=HPARAMS, epochs=4, **kwargs):
    names = {arg.split("=", 1)[0] for arg in extra}
    fast = [arg for arg in FAST_TRAINING if arg.split("=", 1)[0] not in names]
    args = [
        sys.executable,
        TRAIN,
        hparams,
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        f"--number_of_epochs={epochs}",
        *fast,
        *extra,
    ]
    return run_script(args, cwd=out.parent, **kwargs)


# Runs the recipe's main() with a training step that raises in epoch 2
# (120 training utterances / batch 8 = 15 steps per epoch; step 20 is in epoch 2).
CRASH_IN_EPOCH_2 = """
import sys
sys.path.insert(0, sys.argv[1])
import train
original = train.EmotionBrain.fit_batch
calls = []
def fit_batch(self, batch):
    calls.append(1)
    if len(calls) == 20:
        raise RuntimeError("simulated crash")
    return original(self, batch)
train.EmotionBrain.fit_batch = fit_batch
train.main(sys.argv[2:])
"""


def _prepare_manifests(corpus, folder, test_session=5):
    """Run the preparation command line alone (for runs with --skip_prep)."""
    run_script(
        [
            sys.executable,
            RECIPE / "iemocap_prepare.py",
            f"--data_folder={corpus}",
            f"--save_folder={folder}",
            f"--test_session={test_session}",
        ],
        cwd=folder.parent.parent,
    )


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def trained_run(iemocap_corpus, tiny_models, tmp_path_factory):
    """One LOSO fold (test session 2) trained for 8 epochs, partial fine-tuning."""
    out = tmp_path_factory.mktemp("recipe") / "run"
    proc = _train(
        iemocap_corpus, tiny_models["wavlm"], out, "--test_session=2", epochs=8
    )
    return out, proc


def test_run_learns_clearly_above_chance(trained_run):
    out, proc = trained_run
    metrics = json.loads((out / "test_metrics.json").read_text())
    # 4 balanced classes: chance is 25 %.
    assert metrics["UA"] >= 0.5, metrics
    assert metrics["WA"] >= 0.5, metrics
    assert "| test |" in proc.stdout  # the results table is printed
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
    rows = _read_csv(out / "test_predictions.csv")
    assert set(rows) == set(manifest)
    assert all(manifest[u]["session"] == 2 for u in manifest)
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
    _train(
        corpus_folder,
        model,
        copy,
        "--test_session=2",
        "--eval_batch_size=1",
        epochs=8,
    )
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


def test_frozen_mode_trains_only_the_head(iemocap_corpus, tiny_models, tmp_path):
    out = tmp_path / "frozen"
    _train(
        iemocap_corpus,
        tiny_models["wav2vec2_base"],
        out,
        "--finetune=frozen",
        "--test_session=1",
        hparams=RECIPE / "hparams" / "train_wav2vec2_base.yaml",
        epochs=1,
    )
    trained = _latest_model_weights(out)
    initial = load_file(tiny_models["wav2vec2_base"] / "model.safetensors")
    for key, value in initial.items():
        assert torch.equal(trained["encoder.model." + key], value), key
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["finetune"] == "frozen"
    assert metrics["experiment"] == "wav2vec2_base_frozen"  # overlay file applied
    log = (out / "train_log.txt").read_text()
    assert "lr_ssl" not in log  # no encoder optimiser in frozen mode


def test_resume_after_interruption_gives_the_same_result(
    iemocap_corpus, tiny_models, tmp_path
):
    """Kill a run in the middle of epoch 2, restart it: same final predictions
    as a run that was never interrupted (RNG state, sampler epoch, optimiser,
    schedulers and counter all come back from the checkpoint)."""
    common = ["--test_session=3"]
    straight = tmp_path / "straight"
    _train(iemocap_corpus, tiny_models["wavlm"], straight, *common, epochs=3)

    interrupted = tmp_path / "interrupted"
    args = [
        f"--data_folder={iemocap_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={interrupted}",
        "--number_of_epochs=3",
        *FAST_TRAINING,
        *common,
    ]
    crash = run_script(
        [sys.executable, "-c", CRASH_IN_EPOCH_2, RECIPE, HPARAMS, *args],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert crash.returncode != 0
    assert "simulated crash" in crash.stderr + crash.stdout
    assert not (interrupted / "test_metrics.json").exists()
    resumed = _train(
        iemocap_corpus, tiny_models["wavlm"], interrupted, *common, epochs=3
    )
    assert "Loading a checkpoint" in resumed.stdout + resumed.stderr

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
    assert ha.keys() == hb.keys()
    for epoch in ha:
        assert ha[epoch]["train_loss"] == pytest.approx(
            hb[epoch]["train_loss"], abs=1e-5
        )


def test_bf16_precision_runs_on_cpu(iemocap_corpus, tiny_models, tmp_path):
    """SpeechBrain's --precision path (autocast); the loss stays fp32."""
    out = tmp_path / "bf16"
    _train(
        iemocap_corpus,
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
    proc = _train(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=5",
        "--skip_prep=True",
        epochs=1,
        expect_ok=False,
    )
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert str(manifest) in message and first in message and "'fru'" in message


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_audio_during_training_names_the_file(
    iemocap_corpus, tiny_models, tmp_path, workers
):
    """A wav that went bad after preparation: a one-line error naming it,
    also when the DataLoader reads it in a worker process."""
    out = tmp_path / "badaudio"
    manifests = out / "manifests"
    _prepare_manifests(iemocap_corpus, manifests)
    train = json.loads((manifests / "train.json").read_text())
    victim = tmp_path / "corrupt.wav"
    victim.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    first = sorted(train)[0]
    train[first]["wav"] = str(victim)
    (manifests / "train.json").write_text(json.dumps(train))
    proc = _train(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=5",
        "--skip_prep=True",
        f"--num_workers={workers}",
        epochs=1,
        expect_ok=False,
    )
    assert proc.returncode == 1
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: {victim}: ")
