"""Fine-tuning on a budget in the recipes (issue 23): ``--finetune=top
--trainable_layers=k`` with the frozen part cached, and ``--finetune=lora``.

Each mode learns the synthetic corpus (the check of
test_iemocap_recipe.test_run_learns_clearly_above_chance); a top-k run from
the cache gives the run from audio; checkpoints hold the trainable tensors
only and resume; the export merges the adapters (or keeps them apart, as data
the loader checks) and predicts what the run predicted; the MSP-Podcast and
Custom recipes take the same options; wrong options are one line before
anything is built.
"""

import csv
import json
import math
import shutil

import pytest
import torch
from conftest import (
    CUSTOM,
    FAST_TRAINING,
    IEMOCAP,
    MSP,
    iemocap_argv,
    load_recipe_script,
    recipe_process_state,
    run_recipe,
)
from safetensors.torch import load_file

from sser_lobes.inference import export
from sser_lobes.nnet.description import FROZEN_ENCODER_FILE

EPOCHS = 8
#: name -> options (the tiny models have 2 transformer layers)
MODES = {
    "top1_cache": ["--finetune=top", "--trainable_layers=1", "--feature_cache=True"],
    "top1_audio": ["--finetune=top", "--trainable_layers=1"],
    "lora": ["--finetune=lora", "--lora_rank=4", "--lora_alpha=8"],
    "lora_top1_cache": [
        "--finetune=lora",
        "--trainable_layers=1",
        "--lora_rank=4",
        "--lora_alpha=8",
        "--lora_targets=attention,feed_forward",
        "--feature_cache=True",
    ],
}


@pytest.fixture(scope="module")
def budget_runs(iemocap_corpus, tiny_models, tmp_path_factory):
    """One LOSO fold (test session 2) per mode, 8 epochs, as the learning
    test's partial run; the cached modes share one cache folder."""
    root = tmp_path_factory.mktemp("budget")
    runs = {}
    for name, options in MODES.items():
        out = root / name
        argv = iemocap_argv(
            iemocap_corpus,
            tiny_models["wavlm"],
            out,
            "--test_session=2",
            f"--feature_cache_folder={root / 'cache'}",
            *options,
            epochs=EPOCHS,
        )
        runs[name] = (out, run_recipe(IEMOCAP, argv))
    return runs, root / "cache"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def _labelled(manifest):
    """Utterances of a manifest with a hard label: those a hard-target run
    uses (the no-agreement ones keep only their votes)."""
    entries = json.loads(manifest.read_text()).values()
    return sum(entry.get("emo") is not None for entry in entries)


def _checkpoint(out):
    (ckpt,) = sorted((out / "save").glob("CKPT+*"))[-1:]
    return torch.load(ckpt / "model.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", list(MODES))
def test_each_mode_learns_clearly_above_chance(budget_runs, name):
    out, _ = budget_runs[0][name]
    metrics = json.loads((out / "test_metrics.json").read_text())
    # 4 balanced classes: chance is 25 %.
    assert metrics["UA"] >= 0.5, (name, metrics["UA"])
    assert metrics["WA"] >= 0.5, (name, metrics["WA"])
    assert metrics["finetune"] == MODES[name][0].split("=")[1]


def test_top_k_from_the_cache_gives_the_run_from_audio(budget_runs):
    """Dropout on: the frozen part runs in eval mode and draws nothing, so the
    cached run's random draws, losses and predictions are those of the run
    from audio."""
    runs, cache = budget_runs
    audio, cached = runs["top1_audio"][0], runs["top1_cache"][0]
    history_a = json.loads((audio / "history.json").read_text())
    history_b = json.loads((cached / "history.json").read_text())
    assert history_a.keys() == history_b.keys() == {str(e + 1) for e in range(EPOCHS)}
    for epoch, values in history_a.items():
        for key, value in values.items():
            assert history_b[epoch][key] == pytest.approx(value, rel=1e-4), key
    rows_a, rows_b = (
        _rows(audio / "test_predictions.csv"),
        _rows(cached / "test_predictions.csv"),
    )
    assert rows_a.keys() == rows_b.keys()
    for utt, row in rows_a.items():
        assert row["prediction"] == rows_b[utt]["prediction"]
        for key in row:
            if key.startswith("prob_"):
                assert float(rows_b[utt][key]) == pytest.approx(
                    float(row[key]), abs=1e-4
                )
    # One stored hidden state per utterance (the input of layer 1), shared
    # by the top-1 and LoRA-top-1 runs (same frozen part).
    n_utterances = sum(
        _labelled(cached / "manifests" / f"{s}.json")
        for s in ("train", "valid", "test")
    )
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == n_utterances
    assert {p.parent.parent.name for p in entries} == {"layer_1"}
    assert "0 of" in runs["lora_top1_cache"][1].output  # all found in the cache


@pytest.mark.parametrize("name", ["top1_cache", "lora", "lora_top1_cache"])
def test_checkpoints_hold_the_trainable_tensors_only(budget_runs, tiny_models, name):
    out, _ = budget_runs[0][name]
    state = _checkpoint(out)
    frozen = load_file(out / "save" / FROZEN_ENCODER_FILE)
    assert not set(state) & set(frozen)
    base = load_file(tiny_models["wavlm"] / "model.safetensors")
    for key, value in base.items():  # the frozen weights are the source's
        if "encoder.model." + key in frozen:
            assert torch.equal(frozen["encoder.model." + key], value), key
    encoder_keys = [k for k in state if k.startswith("encoder.")]
    if name.startswith("lora"):
        assert encoder_keys and all("lora_" in k for k in encoder_keys)
    else:
        # the top layer, and the final layer norm of this stable-layer-norm model
        top = (".layers.1.", "encoder.model.encoder.layer_norm.")
        assert all(any(part in k for part in top) for k in encoder_keys)
    kept = sum(v.numel() for v in state.values())
    assert kept < sum(v.numel() for v in frozen.values()) / 2


def test_a_changed_option_in_the_same_folder_is_refused(
    budget_runs, iemocap_corpus, tiny_models, tmp_path
):
    """The run folder's checkpoints are LoRA r=4, alpha 8: alpha 16 (same
    shapes) would resume them silently; it is refused in one line."""
    source = budget_runs[0]["lora"][0]
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    argv = iemocap_argv(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=2",
        "--finetune=lora",
        "--lora_rank=4",
        "--lora_alpha=16",
        epochs=EPOCHS + 1,
    )
    run = run_recipe(IEMOCAP, argv, expect_ok=False)
    assert run.error is not None and "other fine-tuning options" in run.error
    assert "alpha" in run.error


def _test_probabilities(out):
    rows = _rows(out / "test_predictions.csv")
    manifest = json.loads((out / "manifests" / "test.json").read_text())
    ids = sorted(rows)[:6]
    files = [manifest[i]["wav"] for i in ids]
    labels = [k for k in rows[ids[0]] if k.startswith("prob_")]
    expected = torch.tensor([[float(rows[i][k]) for k in labels] for i in ids])
    return files, expected, [k[len("prob_") :] for k in labels]


def _folder_probabilities(folder, files, labels, **options):
    from sser_lobes import EmotionRecognizer

    recognizer = EmotionRecognizer.from_hparams(str(folder), **options)
    wavs = [recognizer.load_audio(f) for f in files]
    out = []
    for wav in wavs:
        # the run's test_predictions.csv holds the raw softmax; the folder's
        # default is the calibrated one
        probs = recognizer.predict_batch(wav[None], calibrated=False)
        probs = probs["probabilities"][0]
        order = [recognizer.labels.index(label) for label in labels]
        out.append(probs[order])
    return torch.stack(out)


def test_export_merges_the_adapters_or_keeps_them_apart(budget_runs, tmp_path):
    """Merged (default): the plain encoder's description and weights.
    --keep-adapters: the description says so, the loader builds peft's layers
    from its numbers; fp32 of both predicts what the run predicted, int8
    merges first, ONNX Runtime agrees with PyTorch."""
    out, _ = budget_runs[0]["lora_top1_cache"]
    files, expected, labels = _test_probabilities(out)
    merged, kept = tmp_path / "merged", tmp_path / "kept"
    with recipe_process_state():
        assert export.main([str(out), str(merged)]) == 0
        assert export.main([str(out), str(kept), "--keep-adapters", "--onnx"]) == 0
    merged_description = json.loads((merged / "sser_model.json").read_text())
    kept_description = json.loads((kept / "sser_model.json").read_text())
    assert "adapters" not in merged_description["architecture"]["encoder"]
    adapters = kept_description["architecture"]["encoder"]["adapters"]
    assert adapters == {
        "kind": "lora",
        "rank": 4,
        "alpha": 8.0,
        "targets": ["attention", "feed_forward"],
        "layers": [1],
    }
    assert kept_description["training"]["trainable_layers"] == 1
    assert (
        "lora (adapters on the top 1 transformer layer)"
        in (kept / "README.md").read_text()
    )
    merged_keys = set(load_file(merged / "model.safetensors"))
    kept_keys = set(load_file(kept / "model.safetensors"))
    assert not any("lora_" in k or "base_layer" in k for k in merged_keys)
    assert any("lora_A" in k for k in kept_keys)
    for folder in (merged, kept):
        probs = _folder_probabilities(folder, files, labels)
        assert torch.allclose(probs, expected, atol=1e-4), folder.name
    int8 = _folder_probabilities(kept, files, labels, quantize="int8")
    assert (int8 - expected).abs().max() < 0.1
    assert (kept / "model.onnx").is_file()


def test_export_of_a_top_k_run_joins_the_frozen_encoder(budget_runs, tmp_path):
    out, _ = budget_runs[0]["top1_cache"]
    files, expected, labels = _test_probabilities(out)
    folder = tmp_path / "model"
    with recipe_process_state():
        assert export.main([str(out), str(folder)]) == 0
    probs = _folder_probabilities(folder, files, labels)
    assert torch.allclose(probs, expected, atol=1e-4)
    # A checkpoint of another run's frozen encoder is refused, in one line.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    frozen = load_file(broken / "save" / FROZEN_ENCODER_FILE)
    frozen["encoder.head.extra"] = torch.zeros(1)
    ckpt = sorted((broken / "save").glob("CKPT+*"))[-1] / "model.ckpt"
    state = torch.load(ckpt, weights_only=True)
    key = next(iter(state))
    frozen[key] = state[key]
    from safetensors.torch import save_file

    save_file(frozen, str(broken / "save" / FROZEN_ENCODER_FILE))
    with recipe_process_state() as (_, err):
        assert export.main([str(broken), str(tmp_path / "no")]) == 1
    assert "frozen encoder weights belong to different runs" in err.getvalue()


def test_resume_of_a_lora_top_k_cached_run(iemocap_small_corpus, tiny_models, tmp_path):
    """Killed in the middle of epoch 2 and restarted: the predictions of a run
    that was never interrupted (trainable-only checkpoints, the optimiser of
    the adapters, the cache read again)."""
    options = [*MODES["lora_top1_cache"], f"--feature_cache_folder={tmp_path / 'c'}"]
    options += ["--test_session=1", "--batch_size=4"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    corpus, model = iemocap_small_corpus, tiny_models["wavlm"]
    run_recipe(IEMOCAP, iemocap_argv(corpus, model, straight, *options, epochs=3))
    argv = iemocap_argv(corpus, model, interrupted, *options, epochs=3)
    train = load_recipe_script(IEMOCAP)
    steps = {}

    class CrashingBrain(train.EmotionBrain):
        def fit_batch(self, batch):
            epoch = self.hparams.epoch_counter.current
            steps[epoch] = steps.get(epoch, 0) + 1
            if epoch == 2 and steps[2] == max(1, steps[1] // 2):
                raise RuntimeError("simulated crash")
            return super().fit_batch(batch)

    train.EmotionBrain = CrashingBrain
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(IEMOCAP, argv, module=train)
    resumed = run_recipe(IEMOCAP, argv)
    assert "Loading a checkpoint" in resumed.output
    a = _rows(straight / "test_predictions.csv")
    b = _rows(interrupted / "test_predictions.csv")
    assert a.keys() == b.keys()
    for utt in a:
        for key in a[utt]:
            if key.startswith("prob_"):
                assert math.isclose(
                    float(a[utt][key]), float(b[utt][key]), abs_tol=1e-5
                ), (utt, key)


def test_msp_and_custom_recipes_take_the_options(
    msp_small_corpus, tiny_models, tmp_path
):
    from sser_lobes.synthetic.csv_corpus import make_csv_corpus

    msp = [
        MSP / "hparams" / "train_wavlm_large.yaml",
        f"--data_folder={msp_small_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={tmp_path / 'msp'}",
        "--number_of_epochs=1",
        "--num_workers=0",
        "--noprogressbar",
        "--head_hidden_size=16",
        "--finetune=top",
        "--trainable_layers=1",
        "--feature_cache=True",
        f"--feature_cache_folder={tmp_path / 'cache'}",
        "--train_crop_seconds=2.0",
    ]
    run = run_recipe(MSP, msp)
    assert "development" in run.results
    metrics = json.loads((tmp_path / "msp" / "test1_metrics.json").read_text())
    assert metrics["finetune"] == "top" and metrics["trainable_layers"] == 1
    csv_file = make_csv_corpus(tmp_path / "own", speakers=4, per_class=2)
    custom = [
        CUSTOM / "hparams" / "train_wavlm_large.yaml",
        f"--csv_file={csv_file}",
        f"--ssl_source={tiny_models['hubert_base']}",
        f"--output_folder={tmp_path / 'custom'}",
        "--number_of_epochs=1",
        *FAST_TRAINING,
        "--finetune=lora",
        "--lora_targets=feed_forward",
    ]
    run_recipe(CUSTOM, custom)
    description = json.loads(
        (tmp_path / "custom" / "save" / "sser_model.json").read_text()
    )
    adapters = description["architecture"]["encoder"]["adapters"]
    assert adapters["targets"] == ["feed_forward"] and adapters["layers"] == [0, 1]
    assert description["training"]["finetune"] == "lora"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--finetune=top"], "--finetune=top needs --trainable_layers=k"),
        (["--finetune=partial", "--trainable_layers=2"], "--trainable_layers is for"),
        (["--finetune=top", "--trainable_layers=0"], "--trainable_layers must be"),
        (["--finetune=lora", "--lora_targets=attn"], "--lora_targets: 'attn' is not"),
        (["--finetune=lora", "--lora_rank=0"], "--lora_rank must be an integer"),
        (
            ["--finetune=lora", "--feature_cache=True"],
            "--feature_cache=True needs --finetune=frozen: with finetune=lora",
        ),
        (
            ["--finetune=top", "--trainable_layers=1", "--apply_spec_augment=True"],
            "cannot be used with --trainable_layers",
        ),
    ],
)
def test_wrong_options_are_one_line_before_anything_heavy(
    iemocap_small_corpus, tmp_path, options, message
):
    out = tmp_path / "run"
    argv = [
        IEMOCAP / "hparams" / "train_wavlm_large.yaml",
        f"--data_folder={iemocap_small_corpus}",
        "--ssl_source=/nonexistent/model",
        f"--output_folder={out}",
        *options,
    ]
    run = run_recipe(IEMOCAP, argv, expect_ok=False)
    assert run.error is not None and message in run.error, run.error
    assert not out.exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--trainable_layers=3"], "has 2 transformer layers"),
        (["--trainable_layers=1", "--output_layer=0"], "is below the 1 trained"),
        (
            ["--trainable_layers=1", "--output_layer=weighted_sum"],
            "set --weighted_sum_layers=1-2",
        ),
    ],
)
def test_layer_counts_are_checked_against_the_model(
    iemocap_small_corpus, tiny_models, tmp_path, options, message
):
    """Checked on the model's config (a small file) before the preparation."""
    out = tmp_path / "run"
    argv = [
        IEMOCAP / "hparams" / "train_wavlm_large.yaml",
        f"--data_folder={iemocap_small_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={out}",
        "--finetune=top",
        *options,
    ]
    run = run_recipe(IEMOCAP, argv, expect_ok=False)
    assert run.error is not None and message in run.error, run.error
    assert not out.exists()


def test_ddp_lora_on_the_top_layer_from_the_cache_with_checkpointing(
    iemocap_corpus, tiny_models, tmp_path
):
    """Two torchrun processes (gloo): the cache is filled in shares, the
    adapters of the top layer train with gradient checkpointing, the main
    process writes trainable-only checkpoints, and the run evaluates."""
    from test_ddp import _torchrun

    out = tmp_path / "ddp_lora"
    proc = _torchrun(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        *MODES["lora_top1_cache"],
        f"--feature_cache_folder={tmp_path / 'cache'}",
        "--gradient_checkpointing=True",
    )
    log = proc.stdout + proc.stderr
    assert "DDP process 0" in log
    assert "encoded" in log and " + " in log  # both processes filled a share
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n"] == _labelled(out / "manifests/test.json")
    state = _checkpoint(out)
    assert all("lora_" in k for k in state if k.startswith("encoder."))
    assert (out / "save" / FROZEN_ENCODER_FILE).is_file()


def test_benchmark_runs_on_a_tiny_model(tmp_path, capsys):
    """bench/finetune_budget.py end to end on a tiny model: every system, the
    targets, and what the trained parameters imply (LoRA's optimiser state
    below partial's, the cached top layer keeping less for backward), and
    half-precision storage errors that are small but not zero."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "bench_finetune_budget", ROOT / "bench" / "finetune_budget.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(
        [
            "--tiny",
            "--trainable-layers=1",
            "--rank=4",
            "--utterances=8",
            "--rounds=1",
            "--threads=1",
            f"--json={tmp_path / 'report.json'}",
        ]
    )
    rows = report["systems"]
    assert list(rows) == [
        "partial",
        "top-1 from audio",
        "top-1 from the cache",
        "LoRA r=4, all layers",
        "LoRA r=4, top 1 from the cache",
    ]
    assert all(row["audio_seconds_per_second"] > 0 for row in rows.values())
    partial = rows["partial"]
    lora = rows["LoRA r=4, all layers"]
    assert lora["optimizer_state_bytes"] < partial["optimizer_state_bytes"]
    assert lora["trained_parameters"] < partial["trained_parameters"]
    cached = rows["top-1 from the cache"]
    assert cached["kept_for_backward_bytes"] < partial["kept_for_backward_bytes"]
    assert len(report["targets"]) == 2
    for errors in report["storage_error"].values():
        assert 0 < errors["stored_state"] < 1e-2
        assert errors["gradients"] < 5e-2
    assert json.loads((tmp_path / "report.json").read_text())["systems"].keys()
    assert "| top-1 from the cache |" in capsys.readouterr().out
