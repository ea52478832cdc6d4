"""``sser-predict --csv``: an exported model evaluated on a corpus file.

The model is the session fixture ``exported`` (conftest; tiny wav2vec2,
IEMOCAP 4 classes neu / hap / sad / ang); the corpus is built here from its
test utterances: relative paths, a 44.1 kHz stereo file, a segment of a
longer 44.1 kHz stereo recording, a missing file, a segment past the end of
its file, a silent file, a class mapped with ``--label-map`` and one left
out.
"""

import csv
import hashlib
import json
import os

import numpy as np
import pytest
import scipy.signal
import soundfile

from sser_lobes.inference import predict

LABELS = ["neu", "hap", "sad", "ang"]
SEGMENT = (0.4, 2.9)  # seconds, inside long_44k.wav
KEY_COLUMNS = ["id", "wav", "start", "end", "emotion"]


def _to_44k_stereo(wav, gain=0.6):
    """16 kHz mono -> 44.1 kHz stereo (the right channel quieter)."""
    high = scipy.signal.resample_poly(wav, 441, 160).astype("float32")
    return np.clip(np.stack([high, gain * high], axis=1), -1, 1)


@pytest.fixture(scope="module")
def corpus(exported, tmp_path_factory):
    """The corpus folder, its CSV and what each row should be compared with."""
    run, _ = exported
    manifest = json.loads((run / "manifests" / "test.json").read_text())
    ids = sorted(manifest)
    root = tmp_path_factory.mktemp("csv_corpus")
    audio = root / "audio"
    audio.mkdir()
    rows = []  # (id, wav as written, emotion as written, start, end)
    reference = {}  # row id -> audio file that classify_file must agree with
    hap = [u for u in ids if manifest[u]["emo"] == "hap"]
    plain = [u for u in ids if u != hap[0]][:7]
    for i, utt in enumerate(plain):
        target = audio / f"utt{i}.wav"
        target.write_bytes(open(manifest[utt]["wav"], "rb").read())
        emotion = "calm" if i == 6 else manifest[utt]["emo"]
        rows.append((f"u{i}", f"audio/utt{i}.wav", emotion, "", ""))
        reference[f"u{i}"] = target
    # A class outside the model, mapped with --label-map exc:hap.
    target = audio / "excited.wav"
    target.write_bytes(open(manifest[hap[0]]["wav"], "rb").read())
    rows.append(("u_exc", "audio/excited.wav", "exc", "", ""))
    reference["u_exc"] = target
    # A 44.1 kHz stereo file.
    others = [u for u in ids if u not in plain and u != hap[0]]
    wav, _ = soundfile.read(manifest[others[0]]["wav"], dtype="float32")
    soundfile.write(audio / "stereo_44k.wav", _to_44k_stereo(wav), 44100, "PCM_16")
    rows.append(("stereo", "audio/stereo_44k.wav", manifest[others[0]]["emo"], "", ""))
    reference["stereo"] = audio / "stereo_44k.wav"
    # A segment of a longer 44.1 kHz stereo recording; its reference is a
    # file holding exactly the segment's frames.
    pieces = [
        soundfile.read(manifest[u]["wav"], dtype="float32")[0] for u in others[1:5]
    ]
    long_path = audio / "long_44k.wav"
    soundfile.write(long_path, _to_44k_stereo(np.concatenate(pieces)), 44100, "PCM_16")
    frames, rate = soundfile.read(long_path, dtype="int16")
    first, stop = (int(round(s * rate)) for s in SEGMENT)
    soundfile.write(root / "segment_ref.wav", frames[first:stop], rate, "PCM_16")
    rows.append(("seg", "audio/long_44k.wav", manifest[others[2]]["emo"], *SEGMENT))
    reference["seg"] = root / "segment_ref.wav"
    # Rows that cannot be predicted: a missing file, a segment past the end
    # of its file (both refused by the corpus check) and a silent file
    # (refused when read).
    soundfile.write(audio / "silent.wav", np.zeros(16000, dtype="float32"), 16000)
    rows.append(("missing", "audio/missing.wav", "neu", "", ""))
    rows.append(("past_end", "audio/utt0.wav", "sad", 0.5, 60.0))
    rows.append(("silent", "audio/silent.wav", "neu", "", ""))
    csv_path = root / "corpus.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "wav", "emotion", "start", "end"])
        writer.writerows(rows)
    lines = {row[0]: number for number, row in enumerate(rows, start=2)}
    return {"csv": csv_path, "root": root, "reference": reference, "lines": lines}


@pytest.fixture(scope="module")
def recognizer(exported):
    from sser_lobes.inference.recognizer import EmotionRecognizer

    return EmotionRecognizer.from_hparams(str(exported[1]))


def _run(argv, capsys):
    status = predict.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def _hand_metrics(pairs):
    """WA, UA, macro-F1 and the confusion matrix of (target, prediction) pairs."""
    matrix = [[0] * len(LABELS) for _ in LABELS]
    for target, predicted in pairs:
        matrix[LABELS.index(target)][LABELS.index(predicted)] += 1
    recalls, f1s = [], []
    for k in range(len(LABELS)):
        true = sum(matrix[k])
        said = sum(line[k] for line in matrix)
        hits = matrix[k][k]
        if true:
            recalls.append(hits / true)
        if true or said:
            precision = hits / said if said else 0.0
            recall = hits / true if true else 0.0
            total = precision + recall
            f1s.append(2 * precision * recall / total if total else 0.0)
    correct = sum(t == p for t, p in pairs)
    return {
        "WA": correct / len(pairs),
        "UA": sum(recalls) / len(recalls),
        "macro_F1": sum(f1s) / len(f1s),
        "confusion_matrix": matrix,
    }


def test_predictions_metrics_and_errors(exported, corpus, recognizer, capsys):
    """Each row gets classify_file's prediction of the same audio (batched,
    resampled, downmixed, segment cut); the metrics equal a hand computation
    over the rows of a model class; failed rows are one line each."""
    _, model = exported
    out = corpus["root"] / "run1" / "preds.csv"
    out.parent.mkdir()
    argv = ["--model", model, "--csv", corpus["csv"], "--label-map", "exc:hap"]
    status, _, err = _run([*argv, "--output", out, "--batch-size", "3"], capsys)
    assert status == 1

    with open(out, newline="") as handle:
        reader = csv.DictReader(handle)
        prob_columns = [f"prob_{c}" for c in recognizer.labels]
        assert reader.fieldnames == [
            *KEY_COLUMNS,
            *("label", "score", "gender"),
            *prob_columns,
            "error",
        ]
        rows = {row["id"]: row for row in reader}
    assert set(rows) == set(corpus["reference"]) | {"silent"}
    assert rows["u_exc"]["emotion"] == "hap" and rows["u6"]["emotion"] == "calm"
    assert (rows["seg"]["start"], rows["seg"]["end"]) == ("0.4", "2.9")
    assert rows["u0"]["start"] == rows["u0"]["end"] == ""
    assert rows["u0"]["wav"] == str(corpus["root"] / "audio" / "utt0.wav")
    assert "silent" in rows["silent"]["error"] and rows["silent"]["label"] == ""
    for row_id, path in corpus["reference"].items():
        probs, _, _, label = recognizer.classify_file(path)
        row = rows[row_id]
        assert row["label"] == label and row["error"] == "", row_id
        got = np.array([float(row[c]) for c in prob_columns])
        np.testing.assert_allclose(got, probs.numpy(), atol=1e-5, err_msg=row_id)

    metrics = json.loads((out.parent / "preds_metrics.json").read_text())
    scored = [r for r in rows.values() if r["error"] == "" and r["emotion"] in LABELS]
    assert len(scored) == 9
    expected = _hand_metrics([(r["emotion"], r["label"]) for r in scored])
    for key in ("WA", "UA", "macro_F1"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12), key
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    assert metrics["labels"] == LABELS
    assert metrics["class_counts"] == {
        c: sum(r["emotion"] == c for r in scored) for c in LABELS
    }
    assert metrics["predicted_counts"] == {
        c: sum(r["label"] == c for r in scored) for c in LABELS
    }
    counts = {k: metrics[k] for k in metrics if k.startswith("n_")}
    assert counts == {
        "n_rows": 13,
        "n_evaluated": 9,
        "n_dropped": 1,
        "n_unlabelled": 0,
        "n_failed": 3,
    }
    assert metrics["dropped_classes"] == {"calm": 1}
    assert metrics["label_map"] == {"exc": "hap"}
    assert metrics["model"] == str(model.resolve())
    assert metrics["corpus"] == str(corpus["csv"])
    assert (
        metrics["corpus_sha256"]
        == hashlib.sha256(corpus["csv"].read_bytes()).hexdigest()
    )
    png = out.parent / metrics["confusion_matrix_png"]
    assert png.name == "preds_confusion_matrix.png"
    assert png.read_bytes()[:4] == b"\x89PNG"

    errors = [line for line in err if line.startswith("error:")]
    lines = corpus["lines"]
    assert [e.split(": ", 2)[1] for e in errors] == [
        f"{corpus['csv']}, line {lines[k]}" for k in ("missing", "past_end", "silent")
    ]
    assert "missing.wav: file not found" in errors[0]
    assert "ends after the end of the file" in errors[1]
    assert "silent.wav" in errors[2] and "silent" in errors[2].split("silent.wav")[1]
    assert (
        "warning: calm 1 row: not a class of the model (ang, hap, neu, sad), left "
        "out of the metrics; use --label-map calm:<class> to map it"
    ) in err
    assert "10 of 13 rows processed, 3 failed" in err


def test_metrics_paths_and_stderr_summary(exported, corpus, capsys):
    """Without --output or --metrics: predictions as JSON lines on stdout,
    the metrics summary on stderr, no file; --metrics names the file (its
    PNG next to it) instead of the default next to --output."""
    _, model = exported
    argv = ["--model", model, "--csv", corpus["csv"], "--label-map", "exc:hap"]
    before = set(corpus["root"].rglob("*"))
    status, out, err = _run(argv, capsys)
    assert status == 1
    assert set(corpus["root"].rglob("*")) == before  # nothing written
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 11
    seg = next(r for r in results if r["id"] == "seg")
    assert list(seg)[:5] == KEY_COLUMNS and list(seg)[5] == "label"
    assert (seg["start"], seg["end"]) == SEGMENT
    scored = [r for r in results if "label" in r and r["emotion"] in LABELS]
    expected = _hand_metrics([(r["emotion"], r["label"]) for r in scored])
    summary = next(line for line in err if line.startswith("WA "))
    assert summary.startswith(
        f"WA {expected['WA']:.4f}, UA {expected['UA']:.4f}, "
        f"macro-F1 {expected['macro_F1']:.4f} on 9 of 13 rows"
    )
    assert any(line.startswith("true \\ predicted") for line in err)

    folder = corpus["root"] / "run2"
    metrics = folder / "scores" / "eval.json"
    argv += ["--output", folder / "preds.jsonl", "--metrics", metrics]
    status, _, _ = _run(argv, capsys)
    assert status == 1
    assert json.loads(metrics.read_text())["n_evaluated"] == 9
    assert (folder / "scores" / "eval_confusion_matrix.png").is_file()
    assert not (folder / "preds_metrics.json").exists()
    lines = (folder / "preds.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == results


def test_long_segment_is_chunked_as_a_long_file(exported, corpus):
    """A segment longer than the window is chunked and pooled as
    classify_file does for the same audio; in a batch with short rows."""
    from sser_lobes.dataio.corpus_csv import read_corpus
    from sser_lobes.evaluation.corpus_eval import corpus_utterances
    from sser_lobes.inference.recognizer import EmotionRecognizer

    rec = EmotionRecognizer.from_hparams(
        str(exported[1]), overrides={"window_seconds": 1.0, "chunk_hop_seconds": 0.5}
    )
    rows, _ = read_corpus(corpus["csv"], require=("wav",), num_workers=1)
    rows = [r for r in rows if r.id in ("seg", "stereo", "u1")]
    results = rec.predict_utterances(corpus_utterances(rec, rows), batch_size=3)
    for row, result in zip(rows, results):
        reference = corpus["reference"][row.id]
        probs, _, _, label, chunks = rec.classify_file(reference, return_timeline=True)
        assert result["label"] == label, row.id
        got = np.array([result["probabilities"][c] for c in rec.labels])
        np.testing.assert_allclose(got, probs.numpy(), atol=1e-5, err_msg=row.id)
        assert result.get("chunks", 1) == len(chunks)
    seg = results[[r.id for r in rows].index("seg")]
    assert seg["chunks"] >= 4  # 2.5 s in 1 s windows, 0.5 s hop


def test_text_column_is_the_transcript(exported, corpus, capsys, monkeypatch):
    """Each row's text (None when empty) reaches the model with its own
    audio; a corpus without labels writes no metrics and exits 0."""
    from sser_lobes.inference.recognizer import EmotionRecognizer

    audio = corpus["root"] / "audio"
    texts = {"utt0.wav": "I am so happy.", "utt1.wav": "", "utt2.wav": "Go away!"}
    csv_path = corpus["root"] / "texts.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["wav", "text"])
        writer.writerows((f"audio/{name}", text) for name, text in texts.items())
    seen = []
    real = EmotionRecognizer.predict_batch

    def recording(self, wavs, wav_lens=None, texts=None, calibrated=True):
        lengths = (wav_lens * wavs.shape[1]).round().long().tolist()
        seen.extend(zip(lengths, texts))
        return real(self, wavs, wav_lens, texts, calibrated)

    monkeypatch.setattr(EmotionRecognizer, "predict_batch", recording)
    out = corpus["root"] / "run3" / "texts.jsonl"
    out.parent.mkdir()
    argv = ["--model", exported[1], "--csv", csv_path, "--output", out]
    argv += ["--metrics", out.parent / "metrics.json", "--batch-size", "2"]
    status, _, err = _run(argv, capsys)
    assert status == 0 and "3 of 3 rows processed" in err
    assert f"warning: {csv_path} has no emotion labels: no metrics" in err[-2]
    expected = sorted(
        (soundfile.info(audio / name).frames, text or None)
        for name, text in texts.items()
    )
    assert sorted(seen) == expected
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in results] == ["audio/utt0", "audio/utt1", "audio/utt2"]
    assert all(list(r)[:3] == ["id", "wav", "label"] for r in results)
    assert os.listdir(out.parent) == ["texts.jsonl"]  # no metrics without labels


def test_many_failed_rows_are_listed_ten_then_counted(exported, corpus, capsys):
    csv_path = corpus["root"] / "mostly_missing.csv"
    lines = ["wav,emotion", "audio/utt0.wav,neu"]
    lines += [f"audio/gone{i}.wav,sad" for i in range(12)]
    csv_path.write_text("\n".join(lines) + "\n")
    status, _, err = _run(["--model", exported[1], "--csv", csv_path], capsys)
    assert status == 1
    errors = [line for line in err if line.startswith("error:")]
    assert errors == [
        f"error: {csv_path}, line {n}: {corpus['root'] / 'audio'}/gone{n - 3}.wav: "
        "file not found"
        for n in range(3, 13)
    ]
    assert err[err.index(errors[-1]) + 1] == "... and 2 more"
    assert "1 of 13 rows processed, 12 failed" in err


def test_usage_errors_and_nothing_to_run(exported, corpus, tmp_path, capsys):
    model = str(exported[1])
    cases = [
        (["--csv", corpus["csv"], "a.wav"], "not both"),
        ([], "give audio files or folders, or --csv FILE"),
        (["a.wav", "--label-map", "calm:neu"], "go with --csv FILE"),
        (["--csv", corpus["csv"], "--label-map", "calm=neu"], "'calm=neu'"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as info:
            predict.main(["--model", model, *map(str, argv)])
        assert info.value.code == 2
        assert message in capsys.readouterr().err, argv
    status, _, err = _run(["--model", model, "--csv", tmp_path / "none.csv"], capsys)
    assert status == 2 and err[-1].endswith("none.csv: corpus file not found")
    only_missing = tmp_path / "only_missing.csv"
    only_missing.write_text("wav,emotion\nnowhere.wav,neu\n")
    status, _, err = _run(["--model", model, "--csv", only_missing], capsys)
    assert status == 2 and "no usable row" in err[-1]
