"""End-to-end tests of recipes/MSP-Podcast/train.py on a synthetic corpus.

Both tasks run the real recipe and hparams files with a tiny random WavLM
loaded from a local folder, on a corpus in the exact MSP-Podcast v1.11 format.
The recipe runs in this process (conftest.run_recipe); its command line is
tested in test_recipe_guards.py.
"""

import csv
import json

import pytest
from conftest import MSP, load_recipe_script, recipe_process_state, run_recipe

RECIPE = MSP
TASK1 = RECIPE / "hparams" / "train_wavlm_large.yaml"
TASK2 = RECIPE / "hparams" / "train_wavlm_large_attributes.yaml"

# Tiny-model settings: a small head, few epochs, a learning rate that lets a
# random 32-wide WavLM learn the synthetic cues in seconds.
FAST = [
    "--num_workers=0",
    "--noprogressbar",
    "--lr=0.01",
    "--lr_ssl=0.002",
    "--head_hidden_size=64",
    "--head_dropout=0.1",
    "--head_input_dropout=0.1",
    "--grad_accumulation_factor=2",
]


@pytest.fixture(scope="module")
def msp_corpus(tmp_path_factory):
    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    return make_msp_podcast_corpus(
        tmp_path_factory.mktemp("msp"), utterances_per_class=16, seed=0
    )


def _train(hparams, corpus, model, out, *extra, epochs=10, expect_ok=True):
    argv = [
        hparams,
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        f"--number_of_epochs={epochs}",
        *FAST,
        *extra,
    ]
    return run_recipe(RECIPE, argv, expect_ok=expect_ok)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _manifest(out, split):
    return json.loads((out / "manifests" / f"{split}.json").read_text())


@pytest.fixture(scope="module")
def task1_run(msp_corpus, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("task1") / "run"
    run = _train(TASK1, msp_corpus, tiny_models["wavlm"], out, "--pooling_type=mean")
    return out, run


def test_task1_learns_and_reports_on_whole_sets(task1_run):
    out, run = task1_run
    assert "| development |" in run.stdout and "| test2 |" in run.stdout
    for split in ("development", "test1", "test2"):
        metrics = json.loads((out / f"{split}_metrics.json").read_text())
        labelled = [u for u, e in _manifest(out, split).items() if e["emo"]]
        assert metrics["n"] == len(labelled)  # the whole set, O/X excluded
        assert metrics["labels"] == list("ASHUFDCN")
        assert metrics["selection_metric"] == "macro_F1"
        for key in ("macro_F1", "micro_F1", "UA", "WA", "confusion_matrix"):
            assert key in metrics
        assert (out / f"{split}_confusion_matrix.png").is_file()
        predictions = _rows(out / f"{split}_predictions.csv")
        assert {r[0] for r in predictions[1:]} == set(labelled)
    development = json.loads((out / "development_metrics.json").read_text())
    assert development["UA"] >= 0.25, development  # 8 classes: chance 12.5 %


def test_task1_test3_submission(task1_run):
    out, _ = task1_run
    test3 = _manifest(out, "test3")
    submission = _rows(out / "test3_submission.csv")
    assert submission[0] == ["FileName", "EmoClass"]
    assert sorted(r[0] for r in submission[1:]) == sorted(f"{u}.wav" for u in test3)
    assert {r[1] for r in submission[1:]} <= set("ASHUFDCN")
    probabilities = _rows(out / "test3_probabilities.csv")
    assert probabilities[0] == ["FileName", *"ASHUFDCN"]
    for row in probabilities[1:]:
        assert sum(float(p) for p in row[1:]) == pytest.approx(1.0, abs=1e-4)
    by_file = {r[0]: r for r in probabilities[1:]}
    for name, label in submission[1:]:
        probs = [float(p) for p in by_file[name][1:]]
        assert "ASHUFDCN"[probs.index(max(probs))] == label


def test_task1_uses_baseline_class_weights(task1_run):
    out, _ = task1_run
    hparams = (out / "hyperparams.yaml").read_text()
    assert "class_weighting: inverse_frequency" in hparams


def test_task2_attributes(msp_corpus, tiny_models, tmp_path):
    out = tmp_path / "task2"
    run = _train(TASK2, msp_corpus, tiny_models["wavlm"], out, "--pooling_type=mean")
    assert "CCC_mean" in run.stdout
    development = json.loads((out / "development_metrics.json").read_text())
    assert development["selection_metric"] == "CCC_mean"
    assert set(development["CCC"]) == {"arousal", "valence", "dominance"}
    # Arousal and dominance follow energy and rate in the synthetic corpus.
    assert development["CCC_mean"] >= 0.3, development
    # Task 2 uses O and X rows too (they have attributes).
    n_with_attributes = len(_manifest(out, "development"))
    assert development["n"] == n_with_attributes
    submission = _rows(out / "test3_submission.csv")
    assert submission[0] == ["FileName", "EmoAct", "EmoVal", "EmoDom"]
    values = [float(v) for row in submission[1:] for v in row[1:]]
    assert values and all(1.0 <= v <= 7.0 for v in values)


def test_task2_single_attribute(msp_small_corpus, tiny_models, tmp_path):
    # One epoch on the small corpus: only the outputs' shape is checked.
    out = tmp_path / "valence"
    _train(
        TASK2,
        msp_small_corpus,
        tiny_models["wavlm"],
        out,
        "--attributes=[valence]",
        epochs=1,
    )
    metrics = json.loads((out / "test1_metrics.json").read_text())
    assert list(metrics["CCC"]) == ["valence"]
    assert _rows(out / "test3_submission.csv")[0] == ["FileName", "EmoVal"]


def test_system_b_options_run(msp_small_corpus, tiny_models, tmp_path):
    """std pooling, focal loss, label smoothing and class-balanced sampling
    (one epoch on the small corpus: the code path runs)."""
    out = tmp_path / "systemb"
    run = _train(
        TASK1,
        msp_small_corpus,
        tiny_models["wavlm"],
        out,
        "--pooling_type=std",
        "--loss=focal",
        "--label_smoothing=0.1",
        "--class_balanced_sampling=True",
        epochs=1,
    )
    metrics = json.loads((out / "test1_metrics.json").read_text())
    assert metrics["experiment"] == "wavlm_h32_l2_categorical_std_focal"
    assert metrics["pooling"] == "std"
    assert "| test1 |" in run.stdout


def test_padding_benchmark(tmp_path):
    """benchmark_padding.py's main() in this process (its command line is run
    in test_recipe_guards.py)."""
    benchmark = load_recipe_script(RECIPE, "benchmark_padding.py")
    with recipe_process_state() as (stdout, _):
        benchmark.main(
            [
                f"--out={tmp_path / 'bench'}",
                "--utterances-per-class=4",
                "--batch-sizes",
                "8",
                f"--json={tmp_path / 'bench.json'}",
            ]
        )
    assert "MSP-Podcast challenge baseline: random batches" in stdout.getvalue()
    table = json.loads((tmp_path / "bench.json").read_text())
    (row,) = table["rows"]
    assert row["ours"] < row["peer"]
    durations = [
        e["duration"]
        for e in json.loads(
            (tmp_path / "bench/manifests/train.json").read_text()
        ).values()
    ]
    assert min(durations) >= 2.75 and max(durations) <= 11.0


def test_the_last_partial_accumulation_group_of_an_epoch_is_stepped(
    msp_corpus, tiny_models, tmp_path
):
    """Accumulation 4, as the baseline, on an epoch of 11 batches: 3 steps,
    the last on 3 batches (the baseline steps its last partial group;
    SpeechBrain's loop stepped twice and dropped the last 3 batches)."""
    train = load_recipe_script(RECIPE)
    steps = []

    class Counting(train.MSPBrain):
        def optimizers_step(self):
            steps.append(self.step)
            super().optimizers_step()

    train.MSPBrain = Counting
    out = tmp_path / "run"
    argv = [
        TASK1,
        f"--data_folder={msp_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={out}",
        "--number_of_epochs=1",
        "--num_workers=0",
        "--noprogressbar",
        "--head_hidden_size=16",
        "--batching=random",
        "--batch_size=12",
        "--grad_accumulation_factor=4",
    ]
    run_recipe(RECIPE, argv, module=train)
    labelled = [e for e in _manifest(out, "train").values() if e["emo"]]
    batches = -(-len(labelled) // 12)
    assert batches % 4  # the corpus makes a partial last group
    assert len(steps) == -(-batches // 4), (batches, steps)
