"""Shared fixtures: tiny SSL model folders, synthetic corpora, recipe runs.

Every model here is written by ``sser_lobes.encoders.tiny_ssl`` and loaded through the
same ``SSLEncoder`` code path that loads hub checkpoints: nothing is
downloaded.

Recipes run in this process (:func:`run_recipe`) unless a test is about the
command line itself (exit status, one ``error:`` line, torchrun): a new
interpreter costs about 5 s of imports (torch, speechbrain, transformers).
Trained runs that several test modules only read are session fixtures.
"""

import contextlib
import gc
import importlib.util
import io
import itertools
import logging
import multiprocessing
import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
IEMOCAP = RECIPES / "IEMOCAP"
MSP = RECIPES / "MSP-Podcast"
CUSTOM = RECIPES / "Custom"
IEMOCAP_HPARAMS = IEMOCAP / "hparams"
MSP_HPARAMS = MSP / "hparams"

# Tests never touch the network: a hub lookup would be a bug.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# One intra-op thread per process (subprocesses inherit the variable; set it
# to override). The models are tiny, so a second thread gains little on an
# idle machine, while on a shared 2-core machine OpenMP threads that wait for
# each other make training 15-20 times slower as soon as another process
# competes for the cores. Measured, 3 epochs of the IEMOCAP recipe: idle
# 3.9 s on 1 thread, 3.6 s on 2; next to another worker's test run 3.6 s on 1
# thread, 64 s on 2.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The recipes import their preparation module by its plain name, as they do
# when run as scripts. Their folders are on sys.path once, for the whole
# session (session fixtures cannot use monkeypatch); the names do not clash
# (iemocap_prepare, msp_podcast_prepare, custom_prepare, prepare_corpus), and
# the train.py files are loaded under unique module names by
# load_recipe_script().
for _folder in (IEMOCAP, MSP, CUSTOM):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folders of tiny random models: layer-norm and group-norm variants."""
    from sser_lobes.encoders.tiny_ssl import make_tiny_ssl

    root = tmp_path_factory.mktemp("tiny_ssl")
    specs = {
        "wavlm": ("wavlm", "layer"),
        "wav2vec2_large": ("wav2vec2", "layer"),
        "wav2vec2_base": ("wav2vec2", "group"),
        "hubert_base": ("hubert", "group"),
    }
    return {
        name: make_tiny_ssl(root / name, arch=arch, feat_extract_norm=norm)
        for name, (arch, norm) in specs.items()
    }


#: transformers config overrides that switch off every random part (dropout,
#: layerdrop, SpecAugment), so that sser and stock transformers compute the
#: same function in training mode.
NO_DROPOUT = {
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "layerdrop": 0.0,
    "mask_time_prob": 0.0,
    "mask_feature_prob": 0.0,
}

#: name -> (arch, first-conv norm) of the three-layer models: stable-layer-norm
#: (layer) and post-norm (group) models of each kind.
THREE_LAYER_KINDS = {
    "wavlm_stable": ("wavlm", "layer"),
    "wavlm_post_norm": ("wavlm", "group"),
    "hubert_post_norm": ("hubert", "group"),
    "wav2vec2_stable": ("wav2vec2", "layer"),
}


@pytest.fixture(scope="session")
def three_layer_models(tmp_path_factory):
    """Folders of tiny random three-layer models (top-k and LoRA tests)."""
    from sser_lobes.encoders.tiny_ssl import make_tiny_ssl

    root = tmp_path_factory.mktemp("three_layers")
    return {
        name: make_tiny_ssl(
            root / name, arch=arch, feat_extract_norm=norm, num_layers=3
        )
        for name, (arch, norm) in THREE_LAYER_KINDS.items()
    }


def run_script(args, cwd, timeout=600, env=None, expect_ok=True):
    """Run a command, fail with the tail of its output if it does not succeed."""
    import subprocess

    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if expect_ok and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{tail}")
    return proc


# --------------------------------------------------------------------------
# Recipe scripts in this process
# --------------------------------------------------------------------------

_module_numbers = itertools.count()


def load_recipe_script(recipe, script="train.py"):
    """A recipe script as a fresh module under a unique name.

    Both recipes call their script ``train.py``; a fresh module per run also
    keeps a test's patches of the module's names (e.g. ``EmotionBrain`` replaced
    by a subclass) out of the next run; patch a subclass, never the shared
    class itself.
    """
    path = Path(recipe) / script
    name = f"_sser_{path.parent.name}_{path.stem}_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecipeRun(NamedTuple):
    """What a recipe run in this process returned and printed."""

    results: object  # main()'s return value (None when it exited)
    error: object  # the exit message (``error: ...``) of a refused run, or None
    stdout: str
    stderr: str

    @property
    def output(self):
        return self.stdout + self.stderr


@contextlib.contextmanager
def recipe_process_state():
    """Capture stdout / stderr; undo the run's logging set-up afterwards.

    ``speechbrain.create_experiment_directory`` configures the root logger
    (a console handler on the current ``sys.stdout`` and a file handler on the
    run's ``log.txt``) and replaces ``sys.excepthook``, as it should in a
    process of its own; here the previous handlers come back after the run.
    """
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        sys.excepthook = hook


def _end_what_the_process_exit_would_end(children_before):
    """After a run that stopped in the middle: end its DataLoader workers.

    Its DataLoader iterator stays in reference cycles with the traceback, its
    worker processes alive. The command line's exit ends them (daemonic
    processes are terminated); here, left to the garbage collector, their
    shutdown blocked a later test for 10 s (5 s join timeout per worker).
    """
    for child in multiprocessing.active_children():
        if child.daemon and child not in children_before:
            child.terminate()
            child.join()
    gc.collect()


def run_recipe(recipe, argv, expect_ok=True, module=None):
    """Run a recipe's ``train.py`` in this process, as its command line does.

    ``run_recipe_main(lambda: train.main(argv))`` is what ``python train.py
    ARGV`` runs: a user's mistake exits with one ``error: ...`` line, which is
    returned as ``error`` (checked to be one line); any other exception
    propagates. ``module``: an already loaded (and patched) train module.
    """
    from sser_lobes.training.preflight import run_recipe_main

    train = module or load_recipe_script(recipe)
    argv = [str(a) for a in argv]
    results = error = None
    children = set(multiprocessing.active_children())
    try:
        with recipe_process_state() as (out, err):
            try:
                results = run_recipe_main(lambda: train.main(argv))
            except SystemExit as exit_info:
                error = str(exit_info.code)
    finally:
        if results is None:
            _end_what_the_process_exit_would_end(children)
    run = RecipeRun(results, error, out.getvalue(), err.getvalue())
    if error is not None:
        assert error.startswith("error: ") and "\n" not in error, error
    if expect_ok and error is not None:
        tail = "\n".join(run.output.splitlines()[-60:])
        pytest.fail(f"train.py {' '.join(argv)} exited: {error}\n{tail}")
    return run


def run_script_main(path, argv):
    """Run a script's ``if __name__ == "__main__"`` block in this process.

    For the thin recipe wrappers (fuse.py, ablation.py): the file itself runs,
    with ``sys.argv`` set as its command line would set it. Returns
    ``(exit status, stdout, stderr)``.
    """
    import runpy

    saved = sys.argv
    sys.argv = [str(path), *map(str, argv)]
    status = 0
    try:
        with recipe_process_state() as (out, err):
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exit_info:
                status = exit_info.code
    finally:
        sys.argv = saved
    return status, out.getvalue(), err.getvalue()


# Overrides that make the real recipe fast and able to learn in a few epochs
# on the synthetic corpus with a tiny model.
FAST_TRAINING = [
    "--num_workers=0",
    "--noprogressbar",
    "--batch_size=8",
    "--lr=0.01",
    "--lr_ssl=0.002",
]


def iemocap_argv(corpus, model, out, *extra, hparams="train_wavlm_large.yaml", epochs):
    """train.py arguments: the real hparams file, FAST_TRAINING unless overridden."""
    names = {arg.split("=", 1)[0] for arg in extra}
    fast = [arg for arg in FAST_TRAINING if arg.split("=", 1)[0] not in names]
    return [
        IEMOCAP_HPARAMS / hparams,
        f"--data_folder={corpus}",
        f"--ssl_source={model}",
        f"--output_folder={out}",
        f"--number_of_epochs={epochs}",
        *fast,
        *extra,
    ]


# --------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def iemocap_corpus(tmp_path_factory):
    """A synthetic IEMOCAP_full_release: 12 target utterances per speaker."""
    from sser_lobes.synthetic.iemocap import make_iemocap_corpus

    return make_iemocap_corpus(
        tmp_path_factory.mktemp("iemocap"), utterances_per_speaker=12, seed=0
    )


@pytest.fixture(scope="session")
def iemocap_small_corpus(tmp_path_factory):
    """A synthetic IEMOCAP_full_release with 4 target utterances per speaker
    (one per class): for tests that only need a recipe's code path to run."""
    from sser_lobes.synthetic.iemocap import make_iemocap_corpus

    return make_iemocap_corpus(
        tmp_path_factory.mktemp("iemocap_small"), utterances_per_speaker=4, seed=0
    )


@pytest.fixture(scope="session")
def msp_small_corpus(tmp_path_factory):
    """A synthetic MSP-Podcast v1.11 with 3 utterances per class and split:
    for tests that only need the recipe's code paths to run."""
    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    return make_msp_podcast_corpus(
        tmp_path_factory.mktemp("msp_small"), utterances_per_class=3, seed=1
    )


# --------------------------------------------------------------------------
# Trained IEMOCAP runs shared by several test modules (read-only: a test that
# changes one works on a copy)
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def iemocap_trained_run(iemocap_corpus, tiny_models, tmp_path_factory):
    """One LOSO fold (test session 2, seed 1993) trained for 8 epochs with
    partial fine-tuning of the tiny WavLM: ``(run folder, RecipeRun)``."""
    out = tmp_path_factory.mktemp("recipe") / "run"
    argv = iemocap_argv(
        iemocap_corpus, tiny_models["wavlm"], out, "--test_session=2", epochs=8
    )
    return out, run_recipe(IEMOCAP, argv)


@pytest.fixture(scope="session")
def iemocap_seed7_run(iemocap_corpus, tiny_models, tmp_path_factory):
    """The same fold as iemocap_trained_run with seed 7, 3 epochs (same
    validation and test utterances: the split has its own seed)."""
    out = tmp_path_factory.mktemp("recipe_seed7") / "run"
    argv = iemocap_argv(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=2",
        "--seed=7",
        epochs=3,
    )
    return out, run_recipe(IEMOCAP, argv)


@pytest.fixture(scope="session")
def exported(iemocap_corpus, tmp_path_factory):
    """A run (test session 4, 4 epochs) trained with a tiny wav2vec2 that is
    deleted after export: loading the export must not need it (weights
    included, no second download). ``(run folder, model folder)``."""
    from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    from sser_lobes.inference import export

    root = tmp_path_factory.mktemp("export")
    ssl = make_tiny_ssl(root / "tiny_ssl_gone_after_export", arch="wav2vec2")
    run = root / "run"
    run_recipe(
        IEMOCAP, iemocap_argv(iemocap_corpus, ssl, run, "--test_session=4", epochs=4)
    )
    out = root / "model"
    with recipe_process_state():
        assert export.main([str(run), str(out)]) == 0
    shutil.rmtree(ssl)
    return run, out


# --------------------------------------------------------------------------
# Encoder checks shared by test_ssl_encoder and test_ssl_fast_path
# --------------------------------------------------------------------------

#: Features of an utterance alone and padded in a batch agree to this.
ENCODER_ATOL = 1e-4


def alone_and_padded(encoder, seed=0):
    """Features of a short utterance alone, and padded in a batch of longer ones."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    short = 0.1 * torch.randn(1, 7000, generator=gen) + 0.02
    longer = 0.3 * torch.randn(2, 23000, generator=gen)
    batch = torch.zeros(3, 23000)
    batch[0, :7000] = short
    batch[1:] = longer
    lens = torch.tensor([7000 / 23000, 1.0, 1.0])
    with torch.no_grad():
        alone, alone_lens = encoder(short)
        padded, padded_lens = encoder(batch, lens)
    return alone, alone_lens, padded, padded_lens
