"""System B in the recipes: gender conditioning, text fusion (with the real
offline all-MiniLM-L6-v2 and a tiny random BERT), missing transcripts, ASR
for unlabelled data, and prediction fusion of several runs.

The recipes run in this process (conftest.run_recipe); code-path tests train
for one epoch on small corpora, the fusion reuses two session runs."""

import csv
import json

import pytest
import torch
from conftest import (
    IEMOCAP,
    MSP,
    iemocap_argv,
    run_recipe,
    run_script_main,
)

MSP_FAST = [
    "--num_workers=0",
    "--noprogressbar",
    "--lr=0.01",
    "--lr_ssl=0.002",
    "--head_hidden_size=32",
    "--head_dropout=0.1",
    "--grad_accumulation_factor=1",
    "--fusion_hidden_size=16",
]


def _iemocap(hparams, corpus, model, out, *extra, epochs=1, expect_ok=True):
    # One epoch (on the small corpus for IEMOCAP): these tests check what a
    # variant computes and writes, not how well it learns (test_iemocap_recipe
    # has the learning test).
    argv = iemocap_argv(corpus, model, out, *extra, hparams=hparams, epochs=epochs)
    return run_recipe(IEMOCAP, argv, expect_ok=expect_ok)


def _msp(hparams, corpus, model, out, *extra, epochs=1, expect_ok=True):
    argv = [
        MSP / "hparams" / hparams,
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        f"--number_of_epochs={epochs}",
        *MSP_FAST,
        *extra,
    ]
    return run_recipe(MSP, argv, expect_ok=expect_ok)


@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    from sser_lobes.text.embedder import minilm_path
    from sser_lobes.text.tiny import tiny_asr_model, tiny_text_encoder

    root = tmp_path_factory.mktemp("text_models")
    return {
        "minilm": minilm_path(),
        "tiny_bert": tiny_text_encoder(root / "tiny_bert"),
        "tiny_asr": tiny_asr_model(root / "tiny_asr"),
    }


@pytest.fixture
def msp_corpus(msp_small_corpus):
    """3 utterances per class and split (a session fixture)."""
    return msp_small_corpus


def test_iemocap_gender_variant_reports_gender_accuracy(
    iemocap_small_corpus, tiny_models, tmp_path
):
    out = tmp_path / "gender"
    run = _iemocap(
        "train_wavlm_large_gender.yaml", iemocap_small_corpus, tiny_models["wavlm"], out
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["experiment"] == "wavlm_h32_l2_partial_gender"
    assert 0.0 <= metrics["gender_accuracy"] <= 1.0
    assert "gender_accuracy" in run.stdout
    assert "gender_loss_weight: 0.1" in (out / "hyperparams.yaml").read_text()


def test_iemocap_text_variant_with_real_minilm_and_cache(
    iemocap_small_corpus, tiny_models, text_models, tmp_path
):
    """Transcripts embedded once by the real (offline) MiniLM; a rerun of the
    finished run finds every embedding in the cache and loads no encoder."""
    out = tmp_path / "text"
    extra = [
        f"--text_encoder_source={text_models['minilm']}",
        "--fusion_hidden_size=16",
    ]
    first = _iemocap(
        "train_wavlm_large_text.yaml",
        iemocap_small_corpus,
        tiny_models["wavlm"],
        out,
        *extra,
    )
    log = first.output
    n_utts = sum(
        len(json.loads((out / "manifests" / f"{s}.json").read_text()))
        for s in ("train", "valid", "test")
    )
    assert f"{n_utts} embedded, 0 cached, 0 without text" in log
    # the fusion's text size is read from the MiniLM config (384)
    ckpt = sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)[
        "text_fusion.empty_text"
    ].shape == (384,)
    again = _iemocap(
        "train_wavlm_large_text.yaml",
        iemocap_small_corpus,
        tiny_models["wavlm"],
        out,
        *extra,
    )
    assert f"0 embedded, {n_utts} cached" in again.output
    a = (out / "test_predictions.csv").read_text()
    assert a  # re-evaluation from the cache gives the predictions again
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["experiment"] == "wavlm_h32_l2_partial_text"


def test_msp_missing_transcripts_error_or_audio_only(
    msp_corpus, tiny_models, text_models, tmp_path
):
    common = [f"--text_encoder_source={text_models['tiny_bert']}"]
    # A user's data problem: one line (error: ...) that names the manifest.
    message = _msp(
        "train_wavlm_large_text.yaml",
        msp_corpus,
        tiny_models["wavlm"],
        tmp_path / "strict",
        *common,
        "--missing_text=error",
        expect_ok=False,
    ).error
    assert message.startswith("error: ")
    assert "missing_text" in message and "MSP-PODCAST_" in message
    assert ".json" in message  # names the manifest

    out = tmp_path / "audio_only"
    run = _msp(
        "train_wavlm_large_gender_text.yaml",
        msp_corpus,
        tiny_models["wavlm"],
        out,
        *common,
    )
    test3 = json.loads((out / "manifests" / "test3.json").read_text())
    # every utterance without a transcript (all of test3, a few others) is
    # counted as without text
    without = sum(
        not entry.get("text")
        for split in ("train", "development", "test1", "test2", "test3")
        for entry in json.loads(
            (out / "manifests" / f"{split}.json").read_text()
        ).values()
    )
    assert without >= len(test3) > 0
    assert f" {without} without text" in run.output
    assert (out / "test3_submission.csv").is_file()
    metrics = json.loads((out / "test1_metrics.json").read_text())
    assert metrics["experiment"].endswith("_gender_text")
    assert "gender_accuracy" in metrics


def test_msp_asr_fills_test3_transcripts(
    msp_corpus, tiny_models, text_models, tmp_path
):
    out = tmp_path / "asr"
    manifest_bytes = None
    run = _msp(
        "train_wavlm_large_text.yaml",
        msp_corpus,
        tiny_models["wavlm"],
        out,
        f"--text_encoder_source={text_models['tiny_bert']}",
        f"--asr_source={text_models['tiny_asr']}",
        "--missing_text=error",  # nothing is missing once ASR has run
    )
    assert "0 without text" in run.output
    transcripts = list((out / "text_cache").glob("asr_transcripts-*.json"))
    assert len(transcripts) == 1
    asr = json.loads(transcripts[0].read_text())
    test3 = json.loads((out / "manifests" / "test3.json").read_text())
    assert set(test3) <= set(asr)
    manifest_bytes = (out / "manifests" / "test3.json").read_bytes()
    assert b'"text": null' in manifest_bytes  # the manifest itself is untouched


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_prediction_fusion_of_two_runs(
    iemocap_trained_run, iemocap_seed7_run, tmp_path
):
    """fuse.py and ablation.py (the recipe's scripts, run in this process) on
    two trained runs of the same fold with seeds 1993 and 7 (session fixtures:
    same validation and test utterances)."""
    runs = [iemocap_trained_run[0], iemocap_seed7_run[0]]
    fused = tmp_path / "fused"
    status, stdout, stderr = run_script_main(
        IEMOCAP / "fuse.py", [*runs, "--out", fused]
    )
    assert status == 0, stderr
    summary = json.loads((fused / "fusion.json").read_text())
    weights = summary["weights"]
    assert len(weights) == 2 and abs(sum(weights) - 1) < 1e-9
    assert min(weights) >= 0
    # each member rescored from its predictions file; the fusion never loses
    members = summary["search"]["members"]
    assert len(members) == 2
    assert summary["search"]["fused"]["macro_F1"] >= max(m["macro_F1"] for m in members)
    rows = _read(fused / "test_predictions.csv")
    assert {r["id"] for r in rows} == {
        r["id"] for r in _read(runs[0] / "test_predictions.csv")
    }
    assert (fused / "test_metrics.json").is_file()
    assert "fused" in stdout
    # the ablation table reads real run folders (one row per variant)
    status, table, stderr = run_script_main(
        IEMOCAP / "ablation.py",
        [f"base={runs[0]}", f"seed7={runs[1]}", f"fused={fused}"],
    )
    assert status == 0, stderr
    lines = [line for line in table.splitlines() if line.startswith("|")]
    lines = [line for line in lines if not line.startswith("|---")]
    assert [line.split("|")[1].strip() for line in lines[1:4]] == [
        "base",
        "seed7",
        "fused",
    ]
