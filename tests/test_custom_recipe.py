"""The generic recipe (recipes/Custom): a user's CSV corpus, end to end.

The corpus is what a user has (sser_lobes.synthetic.csv_corpus): files at 16,
22.05 and 44.1 kHz, some stereo, WAV and FLAC, relative paths, and one
speaker's utterances cut from a long recording (start / end segments).
"""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import custom_prepare
import pytest
import soundfile
import torch
from conftest import CUSTOM, FAST_TRAINING, run_recipe, run_script

from sser_lobes.dataio.corpus_csv import read_corpus
from sser_lobes.dataio.splits import stratified_group_folds

HPARAMS = CUSTOM / "hparams"


@pytest.fixture(scope="session")
def csv_corpus(tmp_path_factory):
    """6 speakers x 4 classes x 4 utterances; the last speaker in segments."""
    from sser_lobes.synthetic.csv_corpus import make_csv_corpus

    return make_csv_corpus(tmp_path_factory.mktemp("own_data"), speakers=6, per_class=4)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write(path, rows, fields=None):
    fields = fields or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _copy_corpus(csv_corpus, tmp_path):
    """A private copy (folder and CSV) that a test may break."""
    target = tmp_path / "corpus"
    shutil.copytree(csv_corpus.parent, target)
    return target / csv_corpus.name


def _argv(csv_file, model, out, *extra, hparams="train_wavlm_large.yaml", epochs=2):
    names = {arg.split("=", 1)[0] for arg in extra}
    fast = [a for a in FAST_TRAINING if a.split("=", 1)[0] not in names]
    return [
        HPARAMS / hparams,
        f"--csv_file={csv_file}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        f"--number_of_epochs={epochs}",
        *fast,
        *extra,
    ]


def _manifest(folder, split):
    return json.loads((folder / f"{split}.json").read_text())


# --------------------------------------------------------------------------
# Preparation: protocols
# --------------------------------------------------------------------------


def test_speaker_folds_cover_every_speaker_once_and_are_stratified(
    csv_corpus, tmp_path
):
    speakers_per_fold = []
    for fold in (1, 2, 3):
        out = tmp_path / f"f{fold}"
        custom_prepare.prepare_custom(csv_corpus, out, num_folds=3, test_fold=fold)
        splits = {s: _manifest(out, s) for s in ("train", "valid", "test")}
        speakers = {s: {e["speaker"] for e in m.values()} for s, m in splits.items()}
        # Speaker-independent: test, valid and train speakers are disjoint.
        assert not speakers["test"] & speakers["train"]
        assert not speakers["test"] & speakers["valid"]
        assert not speakers["valid"] & speakers["train"]
        info = json.loads((out / "split_info.json").read_text())
        assert info["speaker_independent"] is True
        assert info["valid_speaker_disjoint"] is True
        assert info["num_folds"] == 3 and info["test_fold"] == fold
        assert sorted(info["folds"][fold - 1]) == sorted(speakers["test"])
        # Stratified: every class in the test fold, equally (balanced corpus).
        counts = info["counts"]["test"]
        assert len({counts[c] for c in ("ang", "hap", "neu", "sad")}) == 1
        speakers_per_fold.append(speakers["test"])
    every = [s for fold in speakers_per_fold for s in fold]
    assert sorted(every) == [f"spk{i:02d}" for i in range(1, 7)]


def test_speaker_folds_are_stratified_when_speakers_lack_classes():
    from collections import Counter

    # Two speakers without "sad": they must not both land in one fold with
    # the rich speakers elsewhere; every fold gets some sad utterances.
    counts = {
        "a": Counter(ang=4, sad=0, neu=4),
        "b": Counter(ang=4, sad=0, neu=4),
        "c": Counter(ang=4, sad=4, neu=4),
        "d": Counter(ang=4, sad=4, neu=4),
    }
    folds = stratified_group_folds(counts, ["ang", "neu", "sad"], 2, seed=3)
    for fold in folds:
        assert sum(counts[s]["sad"] for s in fold) == 4, folds


def test_few_speakers_give_leave_one_speaker_out(csv_corpus, tmp_path):
    rows = [r for r in _rows(csv_corpus) if r["speaker"] in ("spk01", "spk02", "spk03")]
    small = _write(csv_corpus.parent / "three_speakers.csv", rows)
    out = tmp_path / "loso"
    custom_prepare.prepare_custom(small, out, num_folds=5, test_fold=3)
    info = json.loads((out / "split_info.json").read_text())
    assert info["num_folds"] == 3 and info["leave_one_speaker_out"] is True
    assert len(info["speakers"]["test"]) == 1
    with pytest.raises(Exception, match="test_fold 4 but .* 3 folds"):
        custom_prepare.prepare_custom(small, tmp_path / "x", num_folds=5, test_fold=4)


def test_one_training_speaker_gives_utterance_valid_labelled_not_disjoint(
    csv_corpus, tmp_path
):
    rows = [r for r in _rows(csv_corpus) if r["speaker"] in ("spk01", "spk02")]
    two = _write(csv_corpus.parent / "two_speakers.csv", rows)
    out = tmp_path / "two"
    custom_prepare.prepare_custom(two, out, num_folds=2, test_fold=1)
    info = json.loads((out / "split_info.json").read_text())
    assert info["valid_speaker_disjoint"] is False
    assert info["speaker_independent"] is True  # test vs train still disjoint
    assert info["speakers"]["valid"] == info["speakers"]["train"]


def test_given_split_and_valid_drawn_from_train(csv_corpus, tmp_path):
    rows = _rows(csv_corpus)
    for row in rows:
        row["split"] = "test" if row["speaker"] == "spk01" else "TRAIN"
    given = _write(csv_corpus.parent / "given.csv", rows)
    out = tmp_path / "given"
    custom_prepare.prepare_custom(given, out, split_mode="given")
    info = json.loads((out / "split_info.json").read_text())
    assert info["valid_drawn_from_train"] is True
    assert info["speakers"]["test"] == ["spk01"]
    assert "spk01" not in info["speakers"]["train"] + info["speakers"]["valid"]
    assert info["speaker_independent"] is True


def test_random_split_is_labelled_speaker_dependent(csv_corpus, tmp_path):
    out = tmp_path / "random"
    custom_prepare.prepare_custom(csv_corpus, out, split_mode="random", seed=5)
    info = json.loads((out / "split_info.json").read_text())
    assert info["speaker_independent"] is False
    assert "speaker-DEPENDENT" in info["split_description"]
    assert "warning" in info
    ids = [set(_manifest(out, s)) for s in ("train", "valid", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(_rows(csv_corpus))


# --------------------------------------------------------------------------
# Preparation: labels, bad rows, idempotence
# --------------------------------------------------------------------------


def test_label_map_and_emotions_select_merge_and_count_dropped(csv_corpus, tmp_path):
    out = tmp_path / "map"
    custom_prepare.prepare_custom(
        csv_corpus,
        out,
        num_folds=3,
        emotions="neu,hap,sad",
        label_map="ang:hap",
    )
    info = json.loads((out / "split_info.json").read_text())
    summary = json.loads((out / "prep_summary.json").read_text())
    assert info["emotions"] == ["neu", "hap", "sad"]
    assert info["label_map"] == {"ang": "hap"}
    assert summary["dropped_classes"] == {}
    train = _manifest(out, "train")
    merged = [e for e in train.values() if e["emotion_as_written"] == "ang"]
    assert merged and all(e["emo"] == "hap" for e in merged)

    out2 = tmp_path / "select"
    custom_prepare.prepare_custom(
        csv_corpus, out2, num_folds=3, emotions=["neu", "sad"]
    )
    summary = json.loads((out2 / "prep_summary.json").read_text())
    assert summary["dropped_classes"] == {"ang": 24, "hap": 24}
    assert summary["rows_kept"] == 48


def test_bad_rows_are_reported_with_file_and_line_and_the_rest_prepared(
    csv_corpus, tmp_path
):
    corpus = _copy_corpus(csv_corpus, tmp_path)
    rows = _rows(corpus)
    n_good = len(rows)
    (corpus.parent / "broken.wav").write_bytes(b"RIFF....not audio")
    soundfile.write(corpus.parent / "empty.wav", [], 16000)
    extra = [
        {**rows[0], "wav": "audio/nowhere.wav"},  # missing file
        {**rows[0], "wav": "broken.wav"},  # unreadable
        {**rows[0], "wav": "empty.wav"},  # empty
        {**rows[1], "id": "", "start": "0.1", "end": "99"},  # segment outside
        {**rows[2], "emotion": ""},  # no label
        {**rows[3], "speaker": ""},  # no speaker (speaker folds need it)
        {**rows[4], "gender": "x"},  # unknown gender
    ]
    rows = [{**r, "id": f"u{i}"} for i, r in enumerate(rows)]
    rows.append({**rows[5]})  # duplicate id
    bad = _write(corpus, rows + [{**r, "id": f"bad{i}"} for i, r in enumerate(extra)])
    out = tmp_path / "prep"
    custom_prepare.prepare_custom(bad, out, num_folds=3)
    summary = json.loads((out / "prep_summary.json").read_text())
    skipped = {reason: info["count"] for reason, info in summary["skipped"].items()}
    assert skipped == {
        "missing_audio": 1,
        "bad_audio": 2,
        "bad_segment": 1,
        "missing_value": 2,
        "bad_gender": 1,
        "duplicate_id": 1,
    }
    assert summary["rows_kept"] == n_good
    examples = [m for info in summary["skipped"].values() for m in info["examples"]]
    line_of_missing = n_good + 3  # header, the good rows, the duplicate
    assert any(
        m.startswith(f"{bad}, line {line_of_missing}: ") and "nowhere.wav" in m
        for m in examples
    ), examples
    assert any("ends after the end of the file" in m for m in examples)


def test_missing_column_and_unknown_class_are_one_clear_error(csv_corpus, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "speaker"} for r in _rows(csv_corpus)]
    no_speaker = _write(csv_corpus.parent / "no_speaker.csv", rows)
    with pytest.raises(Exception, match=r"no_speaker.csv: no speaker column") as info:
        custom_prepare.prepare_custom(no_speaker, tmp_path / "a")
    assert "--split_mode=random (speaker-DEPENDENT)" in str(info.value)
    # The recipe: the same one line, before anything is built.
    run = run_recipe(
        CUSTOM, _argv(no_speaker, "/nonexistent/model", tmp_path / "r"), expect_ok=False
    )
    assert "no speaker column" in run.error and "--split_mode=random" in run.error
    custom_prepare.prepare_custom(no_speaker, tmp_path / "c", split_mode="random")
    with pytest.raises(Exception, match="class fru of emotions has no row"):
        custom_prepare.prepare_custom(csv_corpus, tmp_path / "b", emotions="ang,fru")


def test_preparation_is_idempotent_and_rebuilds_when_the_csv_changes(
    csv_corpus, tmp_path
):
    corpus = _copy_corpus(csv_corpus, tmp_path)
    out = tmp_path / "prep"
    custom_prepare.prepare_custom(corpus, out, num_folds=3)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    custom_prepare.prepare_custom(corpus, out, num_folds=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    rows = _rows(corpus)
    _write(corpus, rows[:-4])  # the CSV changed: the manifests follow
    custom_prepare.prepare_custom(corpus, out, num_folds=3)
    total = sum(len(_manifest(out, s)) for s in ("train", "valid", "test"))
    assert total == len(rows) - 4
    # A folder the preparation did not write is never overwritten.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.json").write_text("{}")
    with pytest.raises(Exception, match="not written by custom_prepare"):
        custom_prepare.prepare_custom(corpus, foreign, num_folds=3)


def test_training_reads_any_file_as_inference_does(csv_corpus):
    """The recipe's audio item and the inference loader give the same waveform."""
    from sser_lobes.dataio.audio import load_audio_any
    from sser_lobes.dataio.pipelines import segment_audio_pipeline

    rows, _ = read_corpus(csv_corpus, require=("wav", "emotion", "speaker"))
    item = segment_audio_pipeline(16000, 400)
    rates = set()
    for row in rows:
        rates.add(soundfile.info(row.wav).samplerate)
        wav = item.func(row.wav, row.start, row.end)
        assert abs(wav.numel() / 16000 - row.duration) < 1e-3
        if row.start is None:
            assert torch.equal(wav, load_audio_any(row.wav, silence_threshold=None))
    assert rates == {16000, 22050, 44100}
    assert any(row.start is not None for row in rows)


# --------------------------------------------------------------------------
# Training, cross-corpus, fold loop, export and sser-predict
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def custom_run(csv_corpus, tiny_models, tmp_path_factory):
    """The fold of 3 whose test speakers include the one cut in segments."""
    work = tmp_path_factory.mktemp("custom")
    custom_prepare.prepare_custom(csv_corpus, work / "folds", num_folds=3)
    folds = json.loads((work / "folds" / "split_info.json").read_text())["folds"]
    fold = next(k for k, speakers in enumerate(folds, 1) if "spk06" in speakers)
    out = work / "run"
    argv = _argv(
        csv_corpus,
        tiny_models["wavlm"],
        out,
        "--num_folds=3",
        f"--test_fold={fold}",
        epochs=4,
    )
    return out, run_recipe(CUSTOM, argv), fold


def test_kfold_run_trains_speaker_independent_and_records_the_protocol(custom_run):
    out, run, fold = custom_run
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["fold"] == f"fold{fold}of3"
    assert metrics["speaker_independent"] is True
    assert metrics["labels"] == ["ang", "hap", "neu", "sad"]
    assert "3-fold by speaker" in metrics["split_description"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 32  # the whole test fold
    history = json.loads((out / "history.json").read_text())
    losses = [history[epoch]["train_loss"] for epoch in sorted(history, key=int)]
    assert losses[-1] < losses[0]  # it learns
    assert (out / "test_confusion_matrix.png").is_file()
    info = json.loads((out / "manifests" / "split_info.json").read_text())
    assert info["corpus"] == "corpus"


def test_another_fold_in_the_same_folder_is_refused(
    custom_run, csv_corpus, tiny_models
):
    out, _, fold = custom_run  # one fold of 3 trained there; now another one
    argv = _argv(
        csv_corpus,
        tiny_models["wavlm"],
        out,
        "--num_folds=3",
        f"--test_fold={fold % 3 + 1}",
    )
    run = run_recipe(CUSTOM, argv, expect_ok=False)
    assert run.error is not None and "trained on another split" in run.error


def test_user_mistakes_are_one_line_before_the_model_is_built(
    csv_corpus, tmp_path, tiny_models
):
    cases = {
        "--test_fold=9": "test_fold",
        "--split_mode=loso": "split_mode",
        "--emotions=[ang,fru]": "fru",
        "--label_map=ang=hap": "label_map",
        "--class_weighting=balanced": "class_weighting",
    }
    for option, word in cases.items():
        argv = _argv(csv_corpus, "/nonexistent/model", tmp_path / "x", option)
        run = run_recipe(CUSTOM, argv, expect_ok=False)
        assert run.error is not None and word in run.error, (option, run.error)
    run = run_recipe(
        CUSTOM,
        _argv(tmp_path / "none.csv", tiny_models["wavlm"], tmp_path / "y"),
        expect_ok=False,
    )
    assert "none.csv: corpus file not found" in run.error
    # A hyphen instead of an underscore: the option meant, named.
    argv = [HPARAMS / "train_wavlm_large.yaml", f"--csv-file={csv_corpus}"]
    run = run_recipe(CUSTOM, argv, expect_ok=False)
    assert "unknown option --csv-file: did you mean --csv_file?" in run.error


def test_cross_corpus_run_records_both_corpora_and_the_mapping(
    csv_corpus, tiny_models, tmp_path
):
    from sser_lobes.synthetic.csv_corpus import make_csv_corpus

    other = make_csv_corpus(
        tmp_path / "other",
        speakers=2,
        per_class=2,
        classes=("ang", "exc", "neu", "fea"),
        seed=3,
        csv_name="other.csv",
    )
    out = tmp_path / "cross"
    argv = _argv(
        csv_corpus,
        tiny_models["wavlm"],
        out,
        f"--test_csv={other}",
        "--test_label_map=exc:hap",
        epochs=1,
    )
    run_recipe(CUSTOM, argv)
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["fold"] == "cross_other"
    info = json.loads((out / "manifests" / "split_info.json").read_text())
    assert info["test_corpus"]["corpus"] == "other"
    assert info["test_corpus"]["label_map"] == {"exc": "hap"}
    summary = json.loads((out / "manifests" / "prep_summary.json").read_text())
    assert summary["test_csv"]["dropped_classes"] == {"fea": 4}
    assert sum(map(sum, metrics["confusion_matrix"])) == 12  # ang, exc->hap, neu
    test = json.loads((out / "manifests" / "test.json").read_text())
    assert {e["emo"] for e in test.values()} == {"ang", "hap", "neu"}


def test_fold_loop_runs_every_fold_and_aggregates(csv_corpus, tiny_models, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {"NUM_FOLDS": "3", "PYTHON": sys.executable}
    run_script(
        [
            CUSTOM / "run_folds.sh",
            os.path.relpath(HPARAMS / "train_wavlm_large.yaml", work),
            csv_corpus,
            f"--ssl_source={tiny_models['wavlm']}",
            "--number_of_epochs=1",
            *FAST_TRAINING,
        ],
        cwd=work,
        env=env,
    )
    summary = json.loads((work / "results/Custom/summary.json").read_text())
    (experiment,) = summary["experiments"]
    assert experiment["n_runs"] == 3
    assert sorted(f["fold"] for f in experiment["per_fold"]) == [
        "fold1of3",
        "fold2of3",
        "fold3of3",
    ]
    runs = work / "results/Custom/corpus/wavlm_h32_l2_partial/speaker_kfold/seed_1993"
    tested = []
    for fold in ("fold1of3", "fold2of3", "fold3of3"):
        info = json.loads((runs / fold / "manifests/split_info.json").read_text())
        tested += info["speakers"]["test"]
    assert sorted(tested) == [f"spk{i:02d}" for i in range(1, 7)]


def test_export_and_sser_predict_on_a_custom_run(custom_run, tmp_path):
    from sser_lobes.inference.export import main as export_main
    from sser_lobes.inference.recognizer import EmotionRecognizer

    out, _, _ = custom_run
    model = tmp_path / "model"
    assert export_main([str(out), str(model)]) in (0, None)
    recognizer = EmotionRecognizer.from_hparams(model)
    assert recognizer.labels == ["ang", "hap", "neu", "sad"]
    predictions = {
        r["id"]: r for r in csv.DictReader(open(out / "test_predictions.csv"))
    }
    test = json.loads((out / "manifests" / "test.json").read_text())
    for utt_id, entry in list(test.items())[:6]:
        if entry["start"] is not None:
            continue
        _, _, _, label = recognizer.classify_file(entry["wav"])
        assert label == predictions[utt_id]["prediction"]


def test_sser_predict_on_the_test_fold_csv_gives_the_runs_predictions(
    custom_run, csv_corpus, tmp_path
):
    """Training-time evaluation and sser-predict --csv: one code path."""
    from sser_lobes.inference.export import main as export_main
    from sser_lobes.inference.predict import main as predict_main

    out, _, _ = custom_run
    model = tmp_path / "model"
    export_main([str(out), str(model)])
    info = json.loads((out / "manifests" / "split_info.json").read_text())
    rows = [r for r in _rows(csv_corpus) if r["speaker"] in info["speakers"]["test"]]
    assert any(r["start"] for r in rows)  # segments of a long recording too
    fold_csv = _write(csv_corpus.parent / "test_fold.csv", rows)  # same ids
    predicted = tmp_path / "predicted.csv"
    status = predict_main(  # the run's predictions are the raw probabilities
        [
            "--model",
            str(model),
            "--csv",
            str(fold_csv),
            "--output",
            str(predicted),
            "--raw-probabilities",
        ]
    )
    assert status == 0
    by_id = {r["id"]: r for r in _rows(predicted)}
    run_predictions = _rows(out / "test_predictions.csv")
    assert len(by_id) == len(run_predictions) == 32
    for row in run_predictions:
        assert by_id[row["id"]]["label"] == row["prediction"], row["id"]
        assert float(by_id[row["id"]]["score"]) == pytest.approx(
            float(row["score"]), abs=1e-4
        )
    metrics = json.loads((tmp_path / "predicted_metrics.json").read_text())
    run_metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["WA"] == pytest.approx(run_metrics["WA"])
    assert metrics["UA"] == pytest.approx(run_metrics["UA"])


def test_class_weights_and_balanced_sampling_follow_the_training_counts(tmp_path):
    from sser_lobes.training.emotion_brain import training_weights

    manifest = tmp_path / "train.json"
    entries = {f"u{i}": {"emo": "neu"} for i in range(6)}
    entries.update({f"v{i}": {"emo": "ang"} for i in range(2)})
    manifest.write_text(json.dumps(entries))

    class Dataset:  # what training_weights reads of a DynamicItemDataset
        def output_keys_as(self, keys):
            import contextlib

            return contextlib.nullcontext()

        def __iter__(self):
            return iter(entries.values())

    hparams = {"emotions": ["ang", "neu"], "class_weighting": "inverse_frequency"}
    weights, sampling = training_weights(hparams, {"train": Dataset()}, manifest)
    assert weights == pytest.approx([8 / (2 * 2), 8 / (2 * 6)])
    assert sampling is None
    hparams = {"emotions": ["ang", "neu"], "class_balanced_sampling": True}
    weights, sampling = training_weights(hparams, {"train": Dataset()}, manifest)
    assert weights is None
    assert list(sampling) == pytest.approx([1 / 6] * 6 + [1 / 2] * 2)


def test_weighted_run_trains(csv_corpus, tiny_models, tmp_path):
    rows = [
        r for r in _rows(csv_corpus) if r["emotion"] != "sad" or r["text"][0] == "t"
    ]
    imbalanced = _write(
        tmp_path / "imbalanced.csv",
        [{**r, "wav": os.path.join(csv_corpus.parent, r["wav"])} for r in rows],
    )
    out = tmp_path / "weighted"
    argv = _argv(
        imbalanced,
        tiny_models["wavlm"],
        out,
        "--num_folds=3",
        "--class_weighting=inverse_frequency",
        "--class_balanced_sampling=True",
        epochs=1,
    )
    run_recipe(CUSTOM, argv)
    info = json.loads((out / "manifests" / "split_info.json").read_text())
    assert info["counts"]["train"]["sad"] < info["counts"]["train"]["ang"]
    assert (out / "test_metrics.json").is_file()


def test_gender_and_text_overlays_read_the_csv_columns(
    csv_corpus, tiny_models, tmp_path
):
    from sser_lobes.text.embedder import minilm_path

    out = tmp_path / "gender_text"
    argv = _argv(
        csv_corpus,
        tiny_models["wavlm"],
        out,
        "--num_folds=3",
        f"--text_encoder_source={minilm_path()}",
        hparams="train_wavlm_large_gender_text.yaml",
        epochs=1,
    )
    run_recipe(CUSTOM, argv)
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["experiment"] == "wavlm_h32_l2_partial_gender_text"
    assert "gender_accuracy" in metrics
    test = json.loads((out / "manifests" / "test.json").read_text())
    assert all(
        entry["text"] and entry["gender"] in ("F", "M") for entry in test.values()
    )


def test_frozen_run_with_the_feature_cache_reads_segments(
    csv_corpus, tiny_models, tmp_path
):
    out = tmp_path / "cached"
    argv = _argv(
        csv_corpus,
        tiny_models["wavlm"],
        out,
        "--num_folds=3",
        "--finetune=frozen",
        "--feature_cache=True",
        f"--feature_cache_folder={tmp_path / 'cache'}",
        epochs=1,
    )
    run_recipe(CUSTOM, argv)
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == len(_rows(csv_corpus))  # one per row, segments too
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == 32


# --------------------------------------------------------------------------
# The same audio or speaker never on both sides of a split (issue 19, item 2)
# --------------------------------------------------------------------------


def _audio_of(entry):
    """An entry's audio: the resolved file and the segment."""
    start = entry["start"] or 0.0
    return (
        os.path.realpath(entry["wav"]),
        round(start, 3),
        round(start + entry["duration"], 3),
    )


def test_the_same_audio_listed_twice_is_one_utterance(csv_corpus, tmp_path):
    corpus = _copy_corpus(csv_corpus, tmp_path)
    rows = _rows(corpus)
    whole = [r for r in rows if not r["start"]]
    extra = []
    for k, row in enumerate(whole[:12]):
        twin = dict(row, id=f"again_{k}")
        if k % 3 == 0:  # the absolute path
            twin["wav"] = str((corpus.parent / row["wav"]).resolve())
        elif k % 3 == 1:  # another spelling of the relative path
            twin["wav"] = row["wav"].replace("/", "//", 1)
        else:  # a copy of the file under another name
            copy = Path(row["wav"]).with_name("copy_" + Path(row["wav"]).name)
            shutil.copy(corpus.parent / row["wav"], corpus.parent / copy)
            twin["wav"] = str(copy)
        extra.append(twin)
    segment = next(r for r in rows if r["start"])
    extra.append(
        dict(segment, id="again_segment", start=f"{float(segment['start']):.4f}")
    )
    if "id" not in rows[0]:
        for row in rows:
            row["id"] = ""
    doubled = _write(corpus, rows + extra, fields=list(rows[0]))
    for mode in ("random", "speaker_kfold"):
        out = tmp_path / mode
        custom_prepare.prepare_custom(doubled, out, split_mode=mode, num_folds=3)
        audio = [
            _audio_of(entry)
            for split in ("train", "valid", "test")
            for entry in _manifest(out, split).values()
        ]
        assert len(audio) == len(set(audio)) == len(rows), mode
        summary = json.loads((out / "prep_summary.json").read_text())
        skipped = summary["skipped"]["duplicate_audio"]
        assert skipped["count"] == len(extra)
        assert "is the audio of line" in skipped["examples"][0]
        assert json.loads((out / "split_info.json").read_text())["file_disjoint"]


def test_speaker_ids_that_differ_by_case_are_one_speaker(csv_corpus, tmp_path):
    rows = [r for r in _rows(csv_corpus) if r["speaker"] in ("spk01", "spk02", "spk03")]
    for k, row in enumerate(rows):
        if row["speaker"] == "spk01" and k % 2:
            row["speaker"] = " SPK01 " if k % 4 == 1 else "Spk01"
    mixed = _write(csv_corpus.parent / "mixed_case.csv", rows)
    assert custom_prepare.count_folds(mixed, 0) == 3
    spk01 = [r for r in rows if r["speaker"].strip().lower() == "spk01"]
    for fold in (1, 2, 3):  # leave one speaker out
        out = tmp_path / f"f{fold}"
        custom_prepare.prepare_custom(mixed, out, num_folds=0, test_fold=fold)
        info = json.loads((out / "split_info.json").read_text())
        assert info["speaker_independent"] is True
        sides = {
            split: {e["speaker"] for e in _manifest(out, split).values()}
            for split in ("train", "valid", "test")
        }
        assert not sides["test"] & (sides["train"] | sides["valid"]), sides
        assert all(
            s in ("spk01", "spk02", "spk03") for s in set().union(*sides.values())
        )
    summary = json.loads((out / "prep_summary.json").read_text())
    assert summary["merged_speaker_spellings"] == {"spk01": ["SPK01", "Spk01"]}
    assert len(spk01) == 16


def test_cross_corpus_overlap_is_refused_reported_and_computed(csv_corpus, tmp_path):
    from sser_lobes.synthetic.csv_corpus import make_csv_corpus

    other = make_csv_corpus(tmp_path / "other", speakers=2, per_class=2, seed=3)
    # Different people: other speaker ids. Speaker-independent by the ids.
    others = _rows(other)
    for row in others:
        row["speaker"] = "guest_" + row["speaker"]
    other = _write(other, others)
    out = tmp_path / "clean"
    custom_prepare.prepare_custom(csv_corpus, out, test_csv=other)
    info = json.loads((out / "split_info.json").read_text())
    assert info["speaker_independent"] is True and info["file_disjoint"] is True

    # A test corpus without speakers: speaker independence is unknown.
    anonymous = _write(
        tmp_path / "other" / "anonymous.csv",
        [{k: v for k, v in r.items() if k != "speaker"} for r in others],
    )
    out = tmp_path / "anonymous"
    custom_prepare.prepare_custom(csv_corpus, out, test_csv=anonymous)
    info = json.loads((out / "split_info.json").read_text())
    assert info["speaker_independent"] is None and info["file_disjoint"] is True

    # Training files in the test corpus (one under another spelling) and a
    # training speaker id in another case: refused, one line.
    train_rows = [r for r in _rows(csv_corpus) if not r["start"]][:2]
    leaked = [
        dict(r, wav=str((csv_corpus.parent / r["wav"]).resolve()), speaker="SPK02")
        for r in train_rows
    ]
    mixed = _write(
        tmp_path / "other" / "leaky.csv",
        others + [{k: r.get(k, "") for k in others[0]} for r in leaked],
    )
    with pytest.raises(
        Exception, match="2 test utterance.s. are audio of the training"
    ):
        custom_prepare.prepare_custom(csv_corpus, tmp_path / "refused", test_csv=mixed)
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "allowed"
    custom_prepare.prepare_custom(csv_corpus, out, test_csv=mixed, allow_overlap=True)
    info = json.loads((out / "split_info.json").read_text())
    assert info["file_disjoint"] is False and len(info["test_files_in_training"]) == 2
    assert info["test_speakers_in_training"] == ["spk02"]
    assert info["speaker_independent"] is False
