"""Export a trained recipe run, reload it offline, and use it on user audio.

The trained and exported run is the session fixture ``exported`` (conftest;
test_safe_loading uses the same one).
"""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import IEMOCAP, iemocap_argv, recipe_process_state, run_recipe, run_script

from sser_lobes.errors import AudioError


@pytest.fixture(scope="module")
def recognizer(exported):
    from sser_lobes.inference.recognizer import EmotionRecognizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    return EmotionRecognizer.from_hparams(str(exported[1]))


def _test_files(run):
    """The run's labelled test utterances and its predictions for them."""
    manifest = json.loads((run / "manifests" / "test.json").read_text())
    manifest = {u: e for u, e in manifest.items() if e["emo"] is not None}
    with open(run / "test_predictions.csv", newline="") as handle:
        rows = {r["id"]: r for r in csv.DictReader(handle)}
    return manifest, rows


def test_export_folder(exported):
    _, out = exported
    names = {p.name for p in out.iterdir()}
    for name in (
        "sser_model.json",
        "model.safetensors",
        "hyperparams.yaml",
        "README.md",
        "test_metrics.json",
        "test_confusion_matrix.png",
    ):
        assert name in names
    # the description is the only copy of the labels and the SSL config
    assert "label_encoder.txt" not in names and "ssl_config.json" not in names
    card = (out / "README.md").read_text()
    assert "IEMOCAP leave-one-session-out" in card
    assert (
        "| test |" in card
        and "![test_confusion_matrix](test_confusion_matrix.png)" in card
    )
    assert "EmotionRecognizer.from_hparams" in card
    description = json.loads((out / "sser_model.json").read_text())
    assert description["labels"] == ["neu", "hap", "sad", "ang"]
    assert description["architecture"]["head"]["n_outputs"] == 4


def test_same_numbers_as_the_recipe_and_offline(exported, recognizer):
    """Reloaded offline (HF_HUB_OFFLINE=1, SSL source deleted), the interface
    reproduces the recipe's own test predictions (the raw probabilities, which
    its metrics are computed from), and calibrates them with the run's
    temperature by default."""
    run, _ = exported
    manifest, rows = _test_files(run)
    ids = sorted(manifest)
    paths = [manifest[u]["wav"] for u in ids]
    results = recognizer.predict_files(paths, batch_size=5, calibrated=False)
    for utt, result in zip(ids, results):
        assert result["label"] == rows[utt]["prediction"], utt
        for label, prob in result["probabilities"].items():
            assert prob == pytest.approx(float(rows[utt][f"prob_{label}"]), abs=2e-6)
    temperature = recognizer.calibration["temperature"][0]
    for raw, calibrated in zip(results, recognizer.predict_files(paths)):
        logits = torch.log(torch.tensor(list(raw["probabilities"].values())))
        expected = torch.softmax(logits / temperature, dim=-1)
        assert list(calibrated["probabilities"].values()) == pytest.approx(
            expected.tolist(), abs=1e-5
        )
        assert calibrated["label"] == raw["label"]


def test_same_prediction_alone_or_in_a_batch(exported, recognizer):
    run, _ = exported
    manifest, _ = _test_files(run)
    paths = [manifest[u]["wav"] for u in sorted(manifest)][:6]
    batched = recognizer.predict_files(paths, batch_size=6)
    for path, result in zip(paths, batched):
        probs, score, index, label = recognizer.classify_file(path)
        assert label == result["label"]
        assert torch.allclose(
            probs,
            torch.tensor([result["probabilities"][c] for c in recognizer.labels]),
            atol=1e-5,
        )
    wavs = [recognizer.load_audio(p) for p in paths]
    longest = max(len(w) for w in wavs)
    batch = torch.stack(
        [torch.nn.functional.pad(w, (0, longest - len(w))) for w in wavs]
    )
    lens = torch.tensor([len(w) / longest for w in wavs])
    probs, score, index, labels = recognizer.classify_batch(batch, lens)
    assert labels == [r["label"] for r in batched]
    assert torch.allclose(score, probs.max(-1).values)


def test_classify_batch_from_several_threads(exported, recognizer):
    """One recognizer shared by a thread pool of 4 (how web servers and batch
    jobs deploy it): every classify_batch call returns what it returns when
    the calls run one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    run, _ = exported
    manifest, _ = _test_files(run)
    wavs = [recognizer.load_audio(manifest[u]["wav"]) for u in sorted(manifest)]
    batches = []
    for size in (1, 2, 3, 4) * 3:
        start = (len(batches) * 5) % len(wavs)
        group = [wavs[(start + i) % len(wavs)] for i in range(size)]
        longest = max(len(w) for w in group)
        batch = torch.stack(
            [torch.nn.functional.pad(w, (0, longest - len(w))) for w in group]
        )
        batches.append((batch, torch.tensor([len(w) / longest for w in group])))
    sequential = [recognizer.classify_batch(*batch)[0] for batch in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            shared = pool.map(
                lambda batch: recognizer.classify_batch(*batch)[0], batches
            )
            for index, (alone, probs) in enumerate(zip(sequential, shared)):
                assert torch.allclose(probs, alone, atol=1e-5), f"batch {index}"


def test_any_rate_and_channels(exported, recognizer, tmp_path):
    run, _ = exported
    manifest, _ = _test_files(run)
    path = manifest[sorted(manifest)[0]]["wav"]
    wav, rate = soundfile.read(path, dtype="float32")
    import scipy.signal

    resampled = scipy.signal.resample_poly(wav, 441, 160).astype("float32")
    stereo = np.stack([resampled, resampled], axis=1)
    flac = tmp_path / "stereo_44k.flac"
    soundfile.write(flac, stereo, 44100)
    ogg = tmp_path / "mono.ogg"
    soundfile.write(ogg, wav, rate, format="OGG", subtype="VORBIS")
    reference = recognizer.classify_file(path)
    for other in (flac, ogg):
        probs, _, _, label = recognizer.classify_file(other)
        assert torch.allclose(probs, reference[0], atol=0.1), other


def _bad_files(folder):
    folder.mkdir(exist_ok=True)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    empty = folder / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype="float32"), 16000)
    short = folder / "short.wav"
    soundfile.write(short, 0.1 * np.ones(100, dtype="float32"), 16000)
    silent = folder / "silent.wav"
    soundfile.write(silent, np.zeros(16000, dtype="float32"), 16000)
    nan = folder / "nan.wav"
    data = 0.1 * np.ones(16000, dtype="float32")
    data[5] = np.nan
    soundfile.write(nan, data, 16000, subtype="FLOAT")
    return {
        corrupt: "",
        empty: "empty",
        short: "short",
        silent: "silent",
        nan: "non-finite",
        folder / "missing.wav": "not found",
    }


def test_bad_input_errors_name_the_file(recognizer, tmp_path):
    bad = _bad_files(tmp_path / "bad")
    for path, problem in bad.items():
        with pytest.raises(AudioError) as info:
            recognizer.classify_file(path)
        assert str(path) in str(info.value)
        assert problem in str(info.value).lower()


def test_batch_mode_goes_on_after_bad_files(exported, recognizer, tmp_path):
    run, _ = exported
    manifest, _ = _test_files(run)
    good = [manifest[u]["wav"] for u in sorted(manifest)][:2]
    bad = list(_bad_files(tmp_path / "bad"))
    results = recognizer.predict_files([good[0], *bad, good[1]])
    assert [("error" in r) for r in results] == [False, *[True] * len(bad), False]
    for path, result in zip(bad, results[1:-1]):
        assert str(path) in result["error"]


def test_long_audio_is_chunked_and_pooled(exported, tmp_path):
    from sser_lobes.inference.recognizer import EmotionRecognizer

    run, out = exported
    manifest, _ = _test_files(run)
    pieces = [
        soundfile.read(manifest[u]["wav"], dtype="float32")[0]
        for u in sorted(manifest)[:5]
    ]
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, np.concatenate(pieces), 16000)
    duration = sum(len(p) for p in pieces) / 16000
    rec = EmotionRecognizer.from_hparams(
        str(out), overrides={"window_seconds": 2.0, "chunk_hop_seconds": 1.0}
    )
    probs, score, index, label, chunks = rec.classify_file(
        long_file, return_timeline=True
    )
    assert len(chunks) >= int(duration // 1.0) - 1
    assert chunks[0]["start"] == 0.0 and chunks[-1]["end"] == pytest.approx(duration)
    lengths = torch.tensor([c["end"] - c["start"] for c in chunks])
    chunk_probs = torch.tensor(
        [[c["probabilities"][lab] for lab in rec.labels] for c in chunks]
    )
    expected = (chunk_probs * lengths[:, None]).sum(0) / lengths.sum()
    assert torch.allclose(probs, expected, atol=1e-5)
    assert label == rec.labels[int(probs.argmax())]


def test_cli_on_a_folder_with_a_corrupt_file(exported, tmp_path):
    run, out = exported
    manifest, _ = _test_files(run)
    folder = tmp_path / "audio"
    folder.mkdir()
    for utt in sorted(manifest)[:3]:
        shutil.copy(manifest[utt]["wav"], folder / f"{utt}.wav")
    (folder / "broken.wav").write_bytes(b"definitely not a wav file")
    (folder / "readme.txt").write_text("not audio, ignored")
    jsonl = tmp_path / "out.jsonl"
    proc = run_script(
        [
            Path(sys.executable).parent / "sser-predict",  # this environment's
            "--model",
            out,
            folder,
            "--output",
            jsonl,
            "--batch-size",
            "2",
        ],
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1"},
        expect_ok=False,
    )
    assert proc.returncode == 1
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 4
    errors = [r for r in lines if "error" in r]
    assert len(errors) == 1 and "broken.wav" in errors[0]["error"]
    assert all(
        set(r["probabilities"]) == {"neu", "hap", "sad", "ang"}
        for r in lines
        if "error" not in r
    )
    assert "broken.wav" in proc.stderr and "3 of 4 files processed" in proc.stderr
    # The CSV output, through the same main() in this process.
    from sser_lobes.inference import predict

    csv_out = tmp_path / "out.csv"
    argv = ["--model", out, folder / f"{sorted(manifest)[0]}.wav", "--output", csv_out]
    assert predict.main([str(a) for a in argv]) == 0
    header = csv_out.read_text().splitlines()[0]
    assert header == "file,label,score,gender,prob_neu,prob_hap,prob_sad,prob_ang,error"


def test_push_dry_run_and_output_folder_safety(exported, tmp_path, capsys):
    from sser_lobes.inference import export

    run, out = exported
    # The dry run in this process (export.main is what the command line runs).
    argv = [run, tmp_path / "again", "--push", "someone/sser-test", "--dry-run"]
    assert export.main([str(a) for a in argv]) == 0
    stdout = capsys.readouterr().out
    assert "would upload" in stdout
    assert "model.safetensors" in stdout and "hyperparams.yaml" in stdout
    assert "sser_export.json" not in stdout.split("would upload", 1)[1]
    # The command line: exit status 1 and the message, nothing written.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    proc = run_script(
        [sys.executable, "-m", "sser_lobes.export", run, mine],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert (
        proc.returncode == 1 and "was not written by sser_lobes.export" in proc.stderr
    )
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]


def test_gender_and_text_model(iemocap_small_corpus, tiny_models, tmp_path):
    """Gender predicted internally; text optional (given, or the learned
    empty-text embedding); the text encoder travels inside the export.
    (One epoch on the small corpus: the export must reproduce the run.)"""
    from sser_lobes.inference import export
    from sser_lobes.inference.recognizer import EmotionRecognizer
    from sser_lobes.text.tiny import tiny_text_encoder

    bert = tiny_text_encoder(tmp_path / "bert")
    run = tmp_path / "run"
    argv = iemocap_argv(
        iemocap_small_corpus,
        tiny_models["wavlm"],
        run,
        "--test_session=4",
        f"--text_encoder_source={bert}",
        "--fusion_hidden_size=16",
        hparams="train_wavlm_large_gender_text.yaml",
        epochs=1,
    )
    run_recipe(IEMOCAP, argv)
    out = tmp_path / "model"
    with recipe_process_state():
        # a local text encoder named by the run is read only when confirmed
        assert export.main([str(run), str(out)]) == 1
        assert export.main([str(run), str(out), f"--text-encoder-source={bert}"]) == 0
    assert (out / "text_encoder" / "tokenizer.json").is_file()
    shutil.rmtree(bert)
    rec = EmotionRecognizer.from_hparams(str(out))
    manifest, rows = _test_files(run)
    utt = sorted(manifest)[0]
    with_text = rec.predict_files(
        [manifest[utt]["wav"]], texts=[manifest[utt]["text"]], calibrated=False
    )[0]
    assert with_text["label"] == rows[utt]["prediction"]
    assert with_text["probabilities"]["neu"] == pytest.approx(
        float(rows[utt]["prob_neu"]), abs=2e-6
    )
    assert with_text["gender"] in ("F", "M")
    without = rec.predict_files([manifest[utt]["wav"]])[0]
    assert set(without["probabilities"]) == set(rec.labels)
