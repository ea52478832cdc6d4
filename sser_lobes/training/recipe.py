"""Set-up helpers shared by the recipes' ``train.py`` scripts.

* :func:`setup_experiment`: command line -> DDP init -> hyperparameters
  (overlays resolved, options checked, split guarded) -> experiment folder,
  as every SpeechBrain recipe starts;
* :func:`conditioning_items`: the dynamic items of the optional gender
  conditioning and text fusion (text embeddings computed once and cached
  before training, :func:`prepare_text_embeddings`);
* :func:`use_cuda_precision`, :func:`format_results_table`,
  :func:`finish_distributed`.

The data pipelines themselves are in :mod:`sser_lobes.dataio.pipelines`.

Example
-------
>>> results = {"test": {"n": 4, "WA": 0.5, "UA": 0.25}}
>>> print(format_results_table(results, ["WA", "UA"]))
| split | n | WA | UA |
|---|---|---|---|
| test | 4 | 50.00 | 25.00 |
"""

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import speechbrain as sb
import torch

from sser_lobes.dataio.pipelines import text_pipeline
from sser_lobes.nnet.gender import gender_index
from sser_lobes.training.hparams import load_hparams

logger = logging.getLogger(__name__)


def setup_experiment(argv, script=None, check_options=None, prepare=None):
    """Parse the command line, check the options, prepare the data, start DDP,
    load hparams.

    The options are checked on a preview of the hyperparameters, before
    anything is built (:mod:`sser_lobes.training.preflight`): a mistake is
    reported as one :class:`~sser_lobes.errors.RecipeError` before the SSL
    encoder is downloaded or built, and before anything is written into the
    run folder. The data preparation runs next, on the preview's plain
    values and still before anything is built, into a staging copy of the
    manifest folder
    (:func:`~sser_lobes.training.split_guard.prepare_guarded`): a run that
    the split guard refuses, or whose data the recipe refuses, leaves the
    run folder as it was. Only then are the hyperparameters loaded (which
    builds the encoder) and ``hyperparams.yaml`` written.

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --overrides...]`` as given to ``train.py``.
    script : str or None
        The recipe script (``__file__`` of train.py), copied into the run
        folder as SpeechBrain does for the script that creates it.
    check_options : callable or None
        ``check_options(preview) -> (derived_overrides, split_options)``: the
        recipe's own checks on the plain values (data folder, protocol).
        ``derived_overrides`` (e.g. the fold name) are applied to the
        hyperparameters; ``split_options`` define the split for the
        :class:`~sser_lobes.training.split_guard.SplitGuard` (None: no guard),
        which also holds the training ``seed`` and the training targets
        (:func:`~sser_lobes.training.targets.target_options`).
    prepare : callable or None
        ``prepare(preview, folder) -> manifest paths``: the recipe's data
        preparation into ``folder`` (on the main process only), with its
        checks of the prepared data. None: no preparation.

    Returns
    -------
    hparams : dict
    run_opts : dict
    """
    from sser_lobes.errors import RecipeError
    from sser_lobes.training.preflight import (
        check_model_options,
        check_pretrained_sources,
        check_run_options,
        check_trainable_layers,
        parse_overrides,
        preview_hparams,
    )
    from sser_lobes.training.split_guard import SEED_OPTION, SplitGuard
    from sser_lobes.training.targets import target_options

    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = name_the_encoder(parse_overrides(overrides))
    check_run_options(run_opts)
    preview = preview_hparams(hparams_file, overrides)
    guard = None
    if check_options is not None:
        derived, split_options = check_options(preview)
        if derived:
            overrides = {**overrides, **derived}
            preview = preview_hparams(hparams_file, overrides)
        if split_options is not None:
            guard = SplitGuard(
                preview["save_folder"],
                {
                    **split_options,
                    SEED_OPTION: preview.get("seed"),
                    **target_options(preview),
                },
                preview["output_folder"],
            )
            guard.check_options()
    else:
        check_model_options(preview, (preview.get("selection_metric"),))
    check_pretrained_sources(preview)
    check_trainable_layers(preview)
    threads = use_threads(preview)

    sb.utils.distributed.ddp_init_group(run_opts)
    output = Path(preview["output_folder"])
    new_folders = [p for p in (output, *output.parents) if not p.exists()]
    records = []
    if prepare is not None:
        # SpeechBrain sets up the console and log.txt with the run folder,
        # which is written after the preparation: show its messages now, and
        # put them into log.txt below.
        with _preparation_log(records):
            sb.utils.distributed.run_on_main(
                _prepare_run_folder, args=[preview, prepare, guard]
            )
    try:
        hparams, merged_text = load_hparams(hparams_file, overrides)
    except (ValueError, OSError) as error:
        # The options were checked; what is left is a value a lobe refuses.
        # A run folder that this call created holds nothing of use.
        if new_folders and sb.utils.distributed.if_main_process():
            shutil.rmtree(new_folders[-1], ignore_errors=True)
        raise RecipeError(f"{hparams_file}: {error}") from error
    # Save the merged (overlay-resolved) hyperparameters with the experiment.
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(merged_text)
    try:
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=handle.name,
            overrides=overrides,
        )
    finally:
        os.unlink(handle.name)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            for record in records:
                handler.handle(record)
    if sb.utils.distributed.if_main_process():
        _keep_script_copy(hparams["output_folder"], script)
    logger.info("torch runs with %d CPU thread(s) (--num_threads)", threads)
    return hparams, run_opts


@contextlib.contextmanager
def _preparation_log(records):
    """INFO and above on the console (as SpeechBrain's console handler
    shows them), each record also kept in ``records``."""

    class Console(logging.StreamHandler):
        def emit(self, record):
            records.append(record)
            super().emit(record)

    root = logging.getLogger()
    handler = Console(sys.stdout)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(name)s - %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _prepare_run_folder(preview, prepare, guard):
    """The staged preparation, then the fingerprint (main process)."""
    from sser_lobes.training.split_guard import prepare_guarded

    manifests = prepare_guarded(
        preview["manifest_folder"],
        lambda folder: prepare(preview, Path(folder)),
        guard,
    )
    logger.info(
        "%s: the prepared manifests are in place (prepared in a staging copy)",
        preview["manifest_folder"],
    )
    if guard is not None:
        # Never resume checkpoints trained on another split (or corpus).
        guard.check_manifests(manifests, write=True)


def name_the_encoder(overrides):
    """``ssl_name`` from ``--ssl_source`` when the command line gives the
    source without a name (:func:`sser_lobes.encoders.hf_utils.model_name`):
    a run on another encoder never lands in the default encoder's run folder
    (``wavlm_large_partial``).

    Example
    -------
    >>> name_the_encoder({"ssl_source": "facebook/hubert-large-ll60k"})["ssl_name"]
    'hubert_large_ll60k'
    >>> name_the_encoder({"ssl_source": "x/y", "ssl_name": "mine"})["ssl_name"]
    'mine'
    """
    from sser_lobes.encoders.hf_utils import model_name

    if "ssl_source" in overrides and "ssl_name" not in overrides:
        overrides = {**overrides, "ssl_name": model_name(overrides["ssl_source"])}
    return overrides


def use_threads(hparams):
    """Run torch with ``num_threads`` CPU threads (null: torch's choice, at
    most the CPUs this process may use; :mod:`sser_lobes.encoders.threads`)."""
    from sser_lobes.encoders.threads import set_num_threads
    from sser_lobes.errors import RecipeError

    try:
        threads = set_num_threads(hparams.get("num_threads"), "--num_threads")
    except ValueError as error:
        raise RecipeError(str(error)) from None
    return threads


def _keep_script_copy(folder, script):
    """SpeechBrain copies the caller of create_experiment_directory (this
    module); keep a copy of the recipe script instead."""
    copied = Path(folder) / Path(__file__).name
    if copied.is_file() and copied.read_bytes() == Path(__file__).read_bytes():
        copied.unlink()
    if script is not None:
        shutil.copy(script, folder)


def task_identity(hparams, split_info, manifests):
    """What a run's scores are scores of: runs are averaged, compared and
    fused only when this is the same (:mod:`sser_lobes.evaluation.aggregate`).

    ``labels`` (the classes in their index order, or Task 2's attributes),
    ``label_map`` (classes merged or renamed: IEMOCAP's exc -> hap, the
    Custom recipe's ``--label_map``), ``test_label_map`` (of a cross-corpus
    test file), ``corpus`` (:func:`~sser_lobes.training.split_guard.corpus_digest`
    of the run's manifests: the same for every fold), ``protocol`` and
    ``num_folds``.

    Example
    -------
    >>> import tempfile, json, os
    >>> path = os.path.join(tempfile.mkdtemp(), "test.json")
    >>> _ = open(path, "w").write(json.dumps({"u1": {"emo": "ang"}}))
    >>> identity = task_identity({"emotions": ["neu", "ang"]},
    ...     {"protocol": "loso", "merge_exc_into_hap": False, "num_folds": 5}, [path])
    >>> identity["labels"], identity["num_folds"], len(identity["corpus"])
    (['neu', 'ang'], 5, 16)
    """
    from sser_lobes.training.split_guard import corpus_digest

    if hparams.get("task", "categorical") == "categorical":
        labels = list(hparams["emotions"])
    else:
        labels = list(hparams["attributes"])
    label_map = split_info.get("label_map") or {}
    if split_info.get("merge_exc_into_hap"):
        label_map = {"exc": "hap", **label_map}
    test_corpus = split_info.get("test_corpus") or {}
    return {
        "labels": labels,
        "label_map": dict(label_map),
        "test_label_map": test_corpus.get("label_map") or None,
        "corpus": corpus_digest(manifests)[:16],
        "protocol": split_info.get("protocol"),
        "num_folds": split_info.get("num_folds"),
    }


def gender_pipeline():
    """Dynamic item ``gender`` -> ``gender_index`` (0 F, 1 M, -1 unknown).

    Example
    -------
    >>> gender_pipeline().func("Female")
    tensor([0])
    """

    @sb.utils.data_pipeline.takes("gender")
    @sb.utils.data_pipeline.provides("gender_index")
    def pipeline(gender):
        return torch.tensor([gender_index(gender)])

    return pipeline


def prepare_text_embeddings(hparams, manifest_paths):
    """Transcribe (optional ASR) and embed every manifest's texts into the cache.

    Runs on the main process before training; the text encoder is loaded only
    if some text is not cached yet. Returns the embedding summary.
    """
    from sser_lobes.text.asr import transcribe_missing
    from sser_lobes.text.cache import embed_manifest_texts

    extra = {}
    if hparams["asr_source"]:
        extra = transcribe_missing(
            manifest_paths,
            hparams["asr_source"],
            # One transcript file per ASR model: changing asr_source re-transcribes.
            Path(hparams["text_cache_folder"])
            / f"asr_transcripts-{_short_hash(hparams['asr_source'])}.json",
            batch_size=hparams["asr_batch_size"],
            sample_rate=hparams["sample_rate"],
        )
    _, summary = embed_manifest_texts(
        manifest_paths,
        hparams["text_cache_folder"],
        hparams["text_encoder_source"],
        max_length=hparams["text_max_length"],
        normalize=hparams["text_normalize"],
        missing_text=hparams["missing_text"],
        batch_size=hparams["text_batch_size"],
        extra_texts=extra,
    )
    return summary


def _short_hash(text):
    return hashlib.sha1(str(text).encode("utf-8")).hexdigest()[:12]


def conditioning_items(hparams, manifest_paths):
    """Dynamic items and output keys for the model's gender / text inputs.

    Arguments
    ---------
    hparams : dict
        With ``model`` (an EmotionModel) and, for text fusion, the text keys
        of ``recipes/shared/hparams/text.yaml``.
    manifest_paths : list of str
        Every manifest the run reads (all of their texts are embedded).

    Returns
    -------
    items : list
        Dynamic items to add to every dataset.
    keys : list of str
        Their output keys.
    """
    items, keys = [], []
    model = hparams["model"]
    if getattr(model, "gender", None) is not None:
        items.append(gender_pipeline())
        keys.append("gender_index")
    if getattr(model, "text_fusion", None) is not None:
        from sser_lobes.text.cache import TextEmbeddingCache
        from sser_lobes.text.embedder import text_cache_key

        sb.utils.distributed.run_on_main(
            prepare_text_embeddings, args=[hparams, list(manifest_paths)]
        )
        key = text_cache_key(
            hparams["text_encoder_source"],
            hparams["text_max_length"],
            hparams["text_normalize"],
        )
        lookup = TextEmbeddingCache(hparams["text_cache_folder"], key).load()
        items.append(text_pipeline(lookup, model.text_fusion.text_size))
        keys += ["text_embedding", "has_text"]
    return items, keys


def use_cuda_precision(hparams, run_opts):
    """Mixed precision of a reference recipe on CUDA only.

    ``precision_on_cuda`` (e.g. ``fp16`` for the Odyssey 2024 Task 2
    baseline, which trains under ``torch.cuda.amp.autocast``) applies when
    the run is on a CUDA device and ``--precision`` was not given; CPU runs
    stay fp32.

    Arguments
    ---------
    hparams : dict
    run_opts : speechbrain.utils.run_opts.RunOptions or dict
        Changed in place.

    Example
    -------
    >>> opts = {"device": "cuda:0"}
    >>> use_cuda_precision({"precision_on_cuda": "fp16"}, opts); opts["precision"]
    'fp16'
    >>> opts = {"device": "cpu"}
    >>> use_cuda_precision({"precision_on_cuda": "fp16"}, opts); "precision" in opts
    False
    """
    precision = hparams.get("precision_on_cuda")
    overridden = getattr(run_opts, "overridden_args", None)
    given = "precision" in (overridden if overridden is not None else run_opts)
    if not precision or given:
        return
    device = run_opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if not str(device).startswith("cuda"):
        return
    if overridden is None:
        run_opts["precision"] = precision
    else:
        run_opts.precision = precision
        overridden.add("precision")


def format_results_table(results, metrics, percent=True):
    """Markdown table of ``metrics`` per evaluated split.

    Example
    -------
    >>> print(format_results_table({"test": {"n": 4, "WA": 0.5}}, ["WA"]))
    | split | n | WA |
    |---|---|---|
    | test | 4 | 50.00 |
    """
    lines = [
        "| split | n | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 2) + "|",
    ]
    for split, values in results.items():
        cells = " | ".join(
            f"{100 * values[m]:.2f}" if percent else f"{values[m]:.4f}" for m in metrics
        )
        lines.append(f"| {split} | {values['n']} | {cells} |")
    return "\n".join(lines)


def finish_distributed():
    """Close the DDP process group (an open one aborts ranks at exit)."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
