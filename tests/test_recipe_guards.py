"""A user's mistake gets one line before anything heavy; runs never mix splits;
thin or partial data gets a message, not a traceback (issue 9, sections 2-4).
"""

import json
import shutil
import sys

import pytest
import torch
from conftest import (
    FAST_TRAINING,
    IEMOCAP,
    MSP,
    load_recipe_script,
    run_recipe,
    run_script,
)

from sser_lobes.training.preflight import run_recipe_main

IEMOCAP_HPARAMS = IEMOCAP / "hparams" / "train_wavlm_large.yaml"
MSP_HPARAMS = MSP / "hparams" / "train_wavlm_large.yaml"


def _run_main(recipe, argv):
    """Run a recipe's main() in this process, as its command line does.

    Returns the recipe's results, or the ``error: ...`` message it exits with
    (checked to be one line by conftest.run_recipe).
    """
    run = run_recipe(recipe, argv, expect_ok=False)
    return run.results if run.error is None else run.error


def _one_line_error(proc):
    """The command failed with exactly one ``error: ...`` line, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    return errors[0]


def _train_args(hparams, *extra):
    return [sys.executable, hparams.parent.parent / "train.py", hparams, *extra]


# --------------------------------------------------------------------------
# 4. A mistake gets one line before the encoder is built (subprocess calls)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hparams, expected",
    [(IEMOCAP_HPARAMS, "IEMOCAP_full_release"), (MSP_HPARAMS, "MSP-Podcast")],
)
def test_missing_data_folder_is_one_line_before_the_hub(tmp_path, hparams, expected):
    """The default ssl_source is microsoft/wavlm-large: the data folder is
    checked before the encoder would be looked up (offline in the tests)."""
    proc = run_script(
        _train_args(
            hparams, "--data_folder=/nonexistent", f"--output_folder={tmp_path}/r"
        ),
        cwd=tmp_path,
        expect_ok=False,
    )
    line = _one_line_error(proc)
    assert "/nonexistent" in line and expected in line
    assert not (tmp_path / "r").exists()


# In-process (the same code path as the command line, without the start-up
# cost of a new interpreter for each case).
def test_unreachable_hub_model_is_one_line(iemocap_corpus, tmp_path):
    train = load_recipe_script(IEMOCAP)
    argv = [
        str(IEMOCAP_HPARAMS),
        f"--data_folder={iemocap_corpus}",
        f"--output_folder={tmp_path / 'run'}",
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_recipe_main(lambda: train.main(argv))
    text = str(exit_info.value.code)
    assert "'microsoft/wavlm-large'" in text and "--ssl_source=" in text
    assert "\n" not in text


BAD_OPTIONS = [
    ("--finetune=bogus", "--finetune must be one of frozen, partial, entire"),
    ("--pooling_type=foo", "--pooling_type must be one of"),
    ("--bogus_key=1", "unknown option --bogus_key"),
    ("--numbr_of_epochs=3", "--numbr_of_epochs: did you mean --number_of_epochs?"),
    ("--test-session=3", "unknown option --test-session: did you mean --test_session?"),
    ("--batching=sorted", "--batching must be one of bucketed, random"),
    ("--selection_metric=F1", "--selection_metric must be one of"),
    ("--number_of_epochs=0", "--number_of_epochs must be an integer >= 1"),
    ("--lr=-0.1", "--lr must be a number > 0.0"),
    ("--split_mode=lospk", "split_mode='lospk' needs test_speaker"),
    ("--test_session=9", "test_session must be an integer 1-5, got 9"),
    ("--test_speaker=Ses09X", "test_speaker"),
    ("--ssl_source=/nonexistent/model", "--ssl_source=/nonexistent/model: no such"),
    ("--output_layer=99", "output_layer must be in 0..2, got 99"),
    pytest.param(
        "--device=cuda:0",
        "--device=cuda:0: CUDA is not available here",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA here"),
    ),
    ("--precision=fp16", "--precision=fp16 needs a CUDA device"),
]


@pytest.mark.parametrize("option, message", BAD_OPTIONS)
def test_bad_options_are_one_line_errors_and_write_nothing(
    iemocap_corpus, tiny_models, tmp_path, option, message
):
    train = load_recipe_script(IEMOCAP)
    out = tmp_path / "run"
    base = [
        f"--data_folder={iemocap_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={out}",
    ]
    key = option.split("=")[0]
    argv = [str(IEMOCAP_HPARAMS), *(a for a in base if not a.startswith(key)), option]
    with pytest.raises(SystemExit) as exit_info:
        run_recipe_main(lambda: train.main(argv))
    text = str(exit_info.value.code)
    assert text.startswith("error: ") and message in text, text
    assert "\n" not in text
    assert not out.exists()


def test_msp_bad_task_and_splits(tmp_path, msp_small_corpus, tiny_models):
    train = load_recipe_script(MSP)
    base = [
        str(MSP_HPARAMS),
        f"--data_folder={msp_small_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={tmp_path / 'run'}",
    ]
    for option, message in (
        ("--task=emotion", "--task must be one of categorical, attributes"),
        ("--eval_splits=[test1]", "--valid_split=development must be one of"),
        ("--eval_splits=[development,test9]", "unknown or misplaced split"),
        ("--selection_metric=UA_x", "--selection_metric must be one of"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_recipe_main(lambda option=option: train.main([*base, option]))
        assert message in str(exit_info.value.code), exit_info.value.code
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------
# 2. + 3. Runs never mix splits; folds with a class missing
# --------------------------------------------------------------------------


def _relabel(corpus, session, old, new):
    """Change the labels ``old`` of one session's EmoEvaluation files."""
    folder = corpus / f"Session{session}" / "dialog" / "EmoEvaluation"
    for path in folder.glob("*.txt"):
        if path.name.startswith("._"):  # the corpus' macOS resource files
            continue
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(
            "".join(
                line.replace(f"\t{old}\t", f"\t{new}\t")
                if line.startswith("[")
                else line
                for line in lines
            )
        )


@pytest.fixture
def no_sad_in_test(iemocap_corpus, tiny_models, tmp_path):
    """One epoch of a fold whose test session has no 'sad' utterance."""
    corpus = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(iemocap_corpus, corpus)
    _relabel(corpus, 5, "sad", "fru")  # fru is not one of the 4 classes
    out = tmp_path / "run"
    run = run_recipe(IEMOCAP, _iemocap_argv(corpus, tiny_models, out))
    assert isinstance(run.results, dict), run.results
    return corpus, out, run.output


def _iemocap_argv(corpus, tiny_models, out, *extra):
    return [
        IEMOCAP_HPARAMS,
        f"--data_folder={corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={out}",
        "--number_of_epochs=1",
        *FAST_TRAINING,
        *extra,
    ]


def test_a_fold_without_a_class_warns_finishes_and_is_never_resumed_on_another_split(
    no_sad_in_test, iemocap_corpus, tiny_models
):
    corpus, out, output = no_sad_in_test
    # 3. A test split without a class: a warning, the run finishes, and the
    # metrics file says which classes UA averages over.
    assert "no utterance of class(es) sad" in output
    info = json.loads((out / "manifests" / "split_info.json").read_text())
    assert info["absent_classes"] == {"test": ["sad"]}
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["per_class"]["sad"]["support"] == 0
    assert metrics["absent_classes"] == ["sad"]
    assert metrics["UA_classes"] == ["neu", "hap", "ang"]

    # 2. Other options, same run folder: refused before anything is written.
    saved = (out / "hyperparams.yaml").read_text()
    checkpoints = sorted(p.name for p in (out / "save").glob("CKPT+*"))
    assert checkpoints
    argv = _iemocap_argv(corpus, tiny_models, out, "--valid_ratio=0.2")
    line = _run_main(IEMOCAP, argv)
    assert "another split" in line and "valid_ratio 0.1 -> 0.2" in line
    assert (out / "hyperparams.yaml").read_text() == saved
    assert sorted(p.name for p in (out / "save").glob("CKPT+*")) == checkpoints

    # Same options, other corpus content (the test session has its 'sad'
    # utterances again): the manifests differ, the checkpoint is not used,
    # and the run folder is left as it was: its manifests, split_info.json,
    # prepare_options.json and hyperparams.yaml still match its checkpoints
    # and metrics (issue 19, item 5).
    def files():
        names = ["hyperparams.yaml", "test_metrics.json"]
        names += [f"manifests/{p.name}" for p in (out / "manifests").iterdir()]
        return {name: (out / name).read_bytes() for name in sorted(names)}

    before = files()
    assert {"manifests/split_info.json", "manifests/prepare_options.json"} <= set(
        before
    )
    argv = _iemocap_argv(iemocap_corpus, tiny_models, out)
    assert "test.json changed" in _run_main(IEMOCAP, argv)
    assert files() == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []

    # Another training seed into the same folder: refused, nothing changed
    # (the default layout has a folder per seed).
    argv = _iemocap_argv(corpus, tiny_models, out, "--seed=7")
    line = _run_main(IEMOCAP, argv)
    assert "trained with --seed=1993" in line and "--seed=7" in line, line
    assert files() == before


def test_a_class_missing_from_training_is_one_line(
    iemocap_corpus, tmp_path, tiny_models
):
    corpus = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(iemocap_corpus, corpus)
    for session in (1, 2, 3, 4):
        _relabel(corpus, session, "ang", "fru")
    argv = _iemocap_argv(corpus, tiny_models, tmp_path / "run")
    line = _run_main(IEMOCAP, argv)
    assert "class(es) ang have no training utterance" in line


@pytest.mark.parametrize(
    "mode, extra, folder",
    [
        (
            "lospk",
            ["--split_mode=lospk", "--test_speaker=Ses02M"],
            "lospk/seed_1993/Ses02M",
        ),
        (
            "random",
            ["--split_mode=random", "--split_seed=7"],
            "random/seed_1993/random_seed7",
        ),
        ("loso", ["--test_session=3"], "loso/seed_1993/session3"),
    ],
)
def test_default_fold_names_follow_the_protocol(iemocap_corpus, mode, extra, folder):
    from sser_lobes.training.preflight import preview_hparams

    train = load_recipe_script(IEMOCAP)
    overrides = {"data_folder": str(iemocap_corpus)}
    for arg in extra:
        key, value = arg[2:].split("=")
        overrides[key] = int(value) if value.isdigit() else value
    preview = preview_hparams(IEMOCAP_HPARAMS, overrides)
    derived, split = train.check_options(preview)
    preview = preview_hparams(IEMOCAP_HPARAMS, {**overrides, **derived})
    assert preview["output_folder"].endswith(folder)
    assert split["split_mode"] == mode


def test_the_run_folder_is_named_after_the_encoder_given(
    iemocap_small_corpus, tiny_models, tmp_path, monkeypatch
):
    """--ssl_source=<a local folder> without --ssl_name: the run folder and
    the experiment are named from the folder's config, not wavlm_large."""
    monkeypatch.chdir(tmp_path)
    argv = [
        IEMOCAP_HPARAMS,
        f"--data_folder={iemocap_small_corpus}",
        f"--ssl_source={tiny_models['hubert_base']}",
        "--number_of_epochs=1",
        *FAST_TRAINING,
    ]
    run_recipe(IEMOCAP, argv)
    run = tmp_path / "results/IEMOCAP/hubert_h32_l2_partial/loso/seed_1993/session5"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["experiment"] == "hubert_h32_l2_partial"
    assert not (tmp_path / "results/IEMOCAP/wavlm_large_partial").exists()


# --------------------------------------------------------------------------
# 3. MSP-Podcast: empty splits
# --------------------------------------------------------------------------


def _drop_split(corpus, split):
    """Remove a split from Partitions.txt and the labels file (a subset)."""
    partitions = corpus / "Partitions.txt"
    partitions.write_text(
        "".join(
            line
            for line in partitions.read_text().splitlines(keepends=True)
            if not line.startswith(f"{split};")
        )
    )
    labels = corpus / "Labels" / "labels_consensus.csv"
    labels.write_text(
        "".join(
            line
            for line in labels.read_text().splitlines(keepends=True)
            if not line.rstrip().endswith(f",{split}")
        )
    )


def _msp_argv(corpus, model, out, *extra):
    return [
        MSP_HPARAMS,
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        "--number_of_epochs=1",
        "--num_workers=0",
        "--noprogressbar",
        "--head_hidden_size=16",
        *extra,
    ]


def test_msp_empty_test2_is_skipped_and_a_new_test2_refuses_resume(
    tmp_path, tiny_models
):
    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    full = make_msp_podcast_corpus(tmp_path / "full", utterances_per_class=2)
    subset = tmp_path / "subset" / full.name
    shutil.copytree(full, subset)
    _drop_split(subset, "Test2")
    out = tmp_path / "run"
    model = tiny_models["wavlm"]
    run = run_recipe(MSP, _msp_argv(subset, model, out))
    assert sorted(run.results) == ["development", "test1"], run.results
    assert "warning: skipping the test2 split" in run.stderr
    assert (out / "test1_metrics.json").is_file()
    assert not (out / "test2_metrics.json").exists()
    assert (out / "test3_submission.csv").is_file()
    # The full release has Test2: the run folder's model was prepared on
    # other manifests, so it is not resumed.
    line = _run_main(MSP, _msp_argv(full, model, out))
    assert "test2.json changed" in line


def test_msp_a_class_absent_from_train_is_one_line_before_the_encoder(
    tmp_path, tiny_models
):
    """A release without Contempt and Fear in Train (issue 19, item 6)."""
    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    corpus = make_msp_podcast_corpus(tmp_path / "corpus", utterances_per_class=2)
    labels = corpus / "Labels" / "labels_consensus.csv"
    lines = labels.read_text().splitlines(keepends=True)
    labels.write_text(
        "".join(
            line.replace(",C,", ",O,").replace(",F,", ",X,")
            if line.rstrip().endswith(",Train")
            else line
            for line in lines
        )
    )
    out = tmp_path / "run"
    line = _run_main(MSP, _msp_argv(corpus, tiny_models["wavlm"], out))
    assert line == (
        f"error: the Train split of {corpus} has no utterance of class(es) "
        "F (fear), C (contempt), so the 8-class task cannot learn them; train on "
        "the classes it has with --emotions=[A,S,H,U,D,N]"
    )
    assert not (out / "hyperparams.yaml").exists()  # written after the build
    # The suggested classes train.
    run = run_recipe(
        MSP, _msp_argv(corpus, tiny_models["wavlm"], out, "--emotions=[A,S,H,U,D,N]")
    )
    assert json.loads((out / "test1_metrics.json").read_text())["labels"] == list(
        "ASHUDN"
    )
    assert run.error is None


@pytest.mark.parametrize(
    "split, role", [("Train", "train"), ("Development", "development")]
)
def test_msp_empty_train_or_development_is_one_line(tmp_path, tiny_models, split, role):
    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    corpus = make_msp_podcast_corpus(tmp_path / "c", utterances_per_class=1)
    _drop_split(corpus, split)
    argv = _msp_argv(corpus, tiny_models["wavlm"], tmp_path / "run")
    assert f"the {role} split is empty" in _run_main(MSP, argv)


# --------------------------------------------------------------------------
# 3. The tools on missing or partial runs
# --------------------------------------------------------------------------


def _fake_run(folder, fold, wa=None):
    """A recipe run folder; with ``wa``, a finished one (test metrics)."""
    run = folder / "wavlm_large_partial" / "loso" / "seed_1993" / fold
    run.mkdir(parents=True)
    (run / "hyperparams.yaml").write_text(f"output_folder: {run}\n")
    if wa is not None:
        metrics = {
            "experiment": "wavlm_large_partial",
            "protocol": "IEMOCAP leave-one-session-out (speaker-independent)",
            "fold": fold,
            "seed": 1993,
            "WA": wa,
            "UA": wa,
            "macro_F1": wa,
        }
        (run / "test_metrics.json").write_text(json.dumps(metrics))
    return run


def test_aggregate_and_ablation_name_unfinished_runs(tmp_path, capsys):
    from sser_lobes.evaluation import ablation, aggregate

    _fake_run(tmp_path / "a", "session1", 0.6)
    crashed = _fake_run(tmp_path / "a", "session2")
    assert (
        aggregate.main([str(tmp_path / "a"), "--json", str(tmp_path / "s.json")]) == 0
    )
    output = capsys.readouterr()
    assert f"warning: {crashed}: no test_metrics.json" in output.err
    assert "## Incomplete runs" in output.out and str(crashed) in output.out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["incomplete_runs"] == [str(crashed)]
    assert summary["experiments"][0]["n_runs"] == 1

    _fake_run(tmp_path / "b", "session1", 0.7)
    assert ablation.main([f"base={tmp_path / 'b'}", f"new={tmp_path / 'a'}"]) == 0
    output = capsys.readouterr()
    assert f"variant 'new': {crashed} has no test_metrics.json" in output.err
    assert "Left out of the means" in output.out


def test_export_of_a_run_without_checkpoint_is_one_line(tmp_path, capsys):
    from sser_lobes.inference import export

    never = _fake_run(tmp_path, "session1")  # crashed in epoch 1: no save/
    assert export.main([str(never), str(tmp_path / "out1")]) == 1
    assert "the run never finished an epoch" in capsys.readouterr().err
    # A hyperparams.yaml copied from another run does not export that run.
    copied = tmp_path / "copied"
    copied.mkdir()
    (copied / "hyperparams.yaml").write_text(
        f"output_folder: {never}\nsave_folder: {never}/save\n"
    )
    (never / "save").mkdir()
    assert export.main([str(copied), str(tmp_path / "out2")]) == 1
    assert "no checkpoint folder (save/)" in capsys.readouterr().err
    assert export.main([str(copied), str(tmp_path / "out2"), "--trust-run"]) == 1
    assert "belongs to another run" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "model.safetensors").exists()


def test_predict_on_a_folder_that_is_not_a_model_is_one_line(
    tmp_path, tiny_models, capsys
):
    from sser_lobes.inference import predict

    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    for model, message in (
        (tmp_path / "missing", "no such model folder"),
        (tiny_models["wavlm"], "it is not an exported sser model"),
    ):
        assert predict.main(["--model", str(model), str(wav)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_demo_and_padding_benchmark_refuse_bad_options(tmp_path, capsys):
    demo = load_recipe_script(IEMOCAP, "run_demo.py")
    with pytest.raises(SystemExit):
        demo.main(["--epochs", "0", "--out", str(tmp_path / "demo")])
    assert "--epochs and --utterances-per-speaker must be at least 1" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "demo").exists()
    # The padding benchmark's command line: one error line, no traceback.
    proc = run_script(
        [
            sys.executable,
            MSP / "benchmark_padding.py",
            "--out",
            tmp_path / "bench",
            "--utterances-per-class",
            "0",
        ],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert "utterances_per_class must be a positive integer" in _one_line_error(proc)
