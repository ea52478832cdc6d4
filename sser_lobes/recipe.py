"""Set-up helpers shared by the recipes' ``train.py`` scripts.

* :func:`setup_experiment`: command line -> DDP init -> hyperparameters
  (overlays resolved) -> experiment folder, as every SpeechBrain recipe starts.
* :func:`make_loader_kwargs`: duration-bucketed (or random) training batches,
  sorted evaluation batches.
* :func:`check_manifest_labels`: fail early, naming the manifest and
  utterance, on a label the model does not know.
* :func:`audio_pipeline`, :func:`label_pipeline`,
  :func:`categorical_label_encoder`: the dynamic items of the datasets;
  :func:`conditioning_items`: those of the optional gender conditioning and
  text fusion (text embeddings computed once and cached before training).
* :func:`format_results_table`, :func:`finish_distributed`.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch

from sser_lobes.audio import load_audio_segment, read_audio
from sser_lobes.batching import DurationBucketBatchSampler
from sser_lobes.gender import gender_index
from sser_lobes.hparams import load_hparams


class ManifestError(ValueError):
    """A manifest entry the recipe cannot use; the message names file and entry."""


def setup_experiment(argv, script=None, check_options=None):
    """Parse the command line, check the options, start DDP, load hparams.

    The options are checked on a preview of the hyperparameters, before
    anything is built (:mod:`sser_lobes.preflight`): a mistake is reported as
    one :class:`~sser_lobes.preflight.RecipeError` before the SSL encoder is
    downloaded or built, and before anything is written into the run folder.

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
        :class:`~sser_lobes.split_guard.SplitGuard` (None: no guard).

    Returns
    -------
    hparams : dict
    run_opts : dict
    guard : sser_lobes.split_guard.SplitGuard or None
        Call ``guard.check_manifests(...)`` after the data preparation.
    """
    from sser_lobes.preflight import (
        RecipeError,
        check_model_options,
        check_pretrained_sources,
        check_run_options,
        parse_overrides,
        preview_hparams,
    )
    from sser_lobes.split_guard import SplitGuard

    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = parse_overrides(overrides)
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
                preview["save_folder"], split_options, preview["output_folder"]
            )
            guard.check_options()
    else:
        check_model_options(preview, (preview.get("selection_metric"),))
    check_pretrained_sources(preview)

    sb.utils.distributed.ddp_init_group(run_opts)
    try:
        hparams, merged_text = load_hparams(hparams_file, overrides)
    except (ValueError, OSError) as error:
        # The options were checked; what is left is a value a lobe refuses.
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
    if sb.utils.distributed.if_main_process():
        _keep_script_copy(hparams["output_folder"], script)
    return hparams, run_opts, guard


def _keep_script_copy(folder, script):
    """SpeechBrain copies the caller of create_experiment_directory (this
    module); keep a copy of the recipe script instead."""
    copied = Path(folder) / Path(__file__).name
    if copied.is_file() and copied.read_bytes() == Path(__file__).read_bytes():
        copied.unlink()
    if script is not None:
        shutil.copy(script, folder)


def read_manifest(path):
    """The entries of a JSON manifest; a clear error if it cannot be used.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.json")
    >>> _ = open(path, "w").write("{}")
    >>> read_manifest(path)
    {}
    >>> read_manifest(path + ".missing")
    Traceback (most recent call last):
    ...
    sser_lobes.recipe.ManifestError: ...valid.json.missing: cannot read the manifest...
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: cannot read the manifest ({error})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest is a JSON object {{id: {{...}}}}")
    return data


def require_entries(path, split):
    """Raise :class:`ManifestError` if the manifest of a required split is empty.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "train.json")
    >>> _ = open(path, "w").write("{}")
    >>> require_entries(path, "train")
    Traceback (most recent call last):
    ...
    sser_lobes.recipe.ManifestError: the train split is empty: ...train.json lists ...
    """
    if not read_manifest(path):
        raise ManifestError(f"the {split} split is empty: {path} lists no utterance")


def check_manifest_labels(path, labels, key="emo", allow_missing=False):
    """Check that every entry's label is one of ``labels``.

    Arguments
    ---------
    path : str
        SpeechBrain JSON manifest.
    labels : sequence of str
        Known classes.
    key : str
        Field holding the label.
    allow_missing : bool
        Accept entries whose label is null/absent (they are filtered later).

    Returns
    -------
    int
        Number of entries.

    Example
    -------
    >>> import tempfile, json, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> _ = open(path, "w").write(json.dumps({"u1": {"emo": "joy"}}))
    >>> check_manifest_labels(path, ["neu", "ang"])
    Traceback (most recent call last):
    ...
    sser_lobes.recipe.ManifestError: ...m.json: utterance u1 has label 'joy', ...
    """
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    for utt_id, entry in data.items():
        label = entry.get(key)
        if label is None and allow_missing:
            continue
        if label not in labels:
            raise ManifestError(
                f"{path}: utterance {utt_id} has label {label!r}, which is not one "
                f"of the classes {list(labels)} of the hparams."
            )
    return len(data)


CROP_MODES = ("first", "random")


def audio_pipeline(sample_rate, min_samples, crop_seconds=None, crop="random"):
    """Dynamic item ``wav`` -> ``sig``: the checked waveform, maybe cropped.

    Arguments
    ---------
    sample_rate : int
        Required sample rate (a file at another rate is an error naming it).
    min_samples : int
        Shortest accepted length (the encoder's receptive field).
    crop_seconds : float or None
        If set, a longer waveform is cut to a window of this length.
    crop : str
        Which window: ``"first"`` (the first ``crop_seconds``, as the
        Odyssey 2024 baseline in training and evaluation) or ``"random"``
        (a window drawn from torch's RNG, which the checkpoints save).

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> path = tempfile.mkdtemp() + "/a.wav"
    >>> soundfile.write(path, np.arange(32000, dtype="int16"), 16000)
    >>> random_crop = audio_pipeline(16000, 400, crop_seconds=0.5)
    >>> random_crop.func(path).shape
    torch.Size([8000])
    >>> first = audio_pipeline(16000, 400, crop_seconds=0.5, crop="first")
    >>> float(first.func(path)[0])  # the file's first sample
    0.0
    """
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}.")
    crop_samples = int(round(crop_seconds * sample_rate)) if crop_seconds else None

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(wav):
        sig = read_audio(wav, sample_rate=sample_rate, min_samples=min_samples)
        if crop_samples and sig.shape[0] > crop_samples:
            start = 0
            if crop == "random":
                start = int(torch.randint(0, sig.shape[0] - crop_samples + 1, (1,)))
            sig = sig[start : start + crop_samples]
        return sig

    return pipeline


def segment_audio_pipeline(sample_rate, min_samples):
    """Dynamic item ``wav``, ``start``, ``end`` -> ``sig``, as inference reads audio.

    For corpora that are not 16 kHz mono files (``recipes/Custom``): the
    segment ``[start, end)`` (seconds; None: the whole file) of a file at any
    sample rate and channel count, downmixed and resampled to ``sample_rate``
    by :func:`~sser_lobes.audio.load_audio_segment`, the conversion the
    inference interface applies to a user's file.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> path = tempfile.mkdtemp() + "/a.flac"
    >>> soundfile.write(path, np.full((44100, 2), 0.1), 44100)
    >>> segment_audio_pipeline(16000, 400).func(path, 0.5, None).shape
    torch.Size([8000])
    """

    @sb.utils.data_pipeline.takes("wav", "start", "end")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(wav, start, end):
        return load_audio_segment(
            wav, start, end, sample_rate=sample_rate, min_samples=min_samples
        )

    return pipeline


def categorical_label_encoder(labels):
    """A SpeechBrain ``CategoricalEncoder`` whose index order is ``labels``.

    Example
    -------
    >>> categorical_label_encoder(["neu", "ang"]).encode_label("ang")
    1
    """
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_iterable(labels)
    encoder.expect_len(len(labels))
    return encoder


def label_pipeline(label_encoder, key="emo"):
    """Dynamic item ``key`` -> ``key``, ``<key>_encoded`` (a long tensor [1]).

    Example
    -------
    >>> item = label_pipeline(categorical_label_encoder(["neu", "ang"]))
    >>> list(item.func("ang"))
    ['ang', tensor([1])]
    """

    @sb.utils.data_pipeline.takes(key)
    @sb.utils.data_pipeline.provides(key, f"{key}_encoded")
    def pipeline(label):
        yield label
        yield label_encoder.encode_label_torch(label)

    return pipeline


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


def text_pipeline(lookup, size):
    """Dynamic item ``id`` -> ``text_embedding``, ``has_text`` from a cache.

    Arguments
    ---------
    lookup : mapping
        Utterance id -> embedding; ids absent from it have no transcript.
    size : int
        Embedding size (zeros are given where there is no text; the model
        replaces them by its learned empty-text embedding).

    Example
    -------
    >>> item = text_pipeline({"u1": [0.5, 0.5]}, 2)
    >>> [list(item.func(u)) for u in ("u1", "u2")]
    [[tensor([0.5000, 0.5000]), tensor([True])], [tensor([0., 0.]), tensor([False])]]
    """

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("text_embedding", "has_text")
    def pipeline(utt_id):
        vector = lookup.get(utt_id) if hasattr(lookup, "get") else None
        if vector is None:
            yield torch.zeros(size)
            yield torch.tensor([False])
        else:
            yield torch.as_tensor(np.asarray(vector), dtype=torch.float32)
            yield torch.tensor([True])

    return pipeline


def prepare_text_embeddings(hparams, manifest_paths):
    """Transcribe (optional ASR) and embed every manifest's texts into the cache.

    Runs on the main process before training; the text encoder is loaded only
    if some text is not cached yet. Returns the embedding summary.
    """
    from sser_lobes.text import embed_manifest_texts, transcribe_missing

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
        from sser_lobes.text import TextEmbeddingCache, text_cache_key

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


def make_loader_kwargs(hparams, datasets, eval_splits, train_weights=None):
    """Loader options for training and evaluation.

    Training: ``batching: bucketed`` gives :class:`DurationBucketBatchSampler`
    batches (little padding, reshuffled each epoch; durations capped at
    ``train_crop_seconds`` when the recipe crops; weighted draws with
    replacement when ``train_weights`` is given, e.g. class-balanced),
    ``batching: random`` gives SpeechBrain's shuffled batches. Evaluation:
    fixed batches sorted by duration.

    Arguments
    ---------
    hparams : dict
        Uses ``batching``, ``batch_size``, ``eval_batch_size``, ``seed``,
        ``bucket_jitter``, ``num_workers`` and, if present,
        ``train_crop_seconds``.
    datasets : dict
        Split name -> DynamicItemDataset (with a ``duration`` key).
    eval_splits : list of str
        The evaluation splits.
    train_weights : sequence of float or None
        Per-utterance sampling weights of the training set.

    Returns
    -------
    train_sampler : DurationBucketBatchSampler or None
        Assign it to ``brain.train_sampler`` so that it gets ``set_epoch``.
    train_kwargs : dict
    eval_kwargs : dict
        split name -> loader kwargs.
    """
    workers = {"num_workers": hparams["num_workers"]}
    if hparams["batching"] == "bucketed":
        options = {
            "shuffle": True,
            "seed": hparams["seed"],
            "jitter": hparams["bucket_jitter"],
        }
        crop = hparams.get("train_crop_seconds")
        if crop:
            options["max_duration"] = crop
        if hparams.get("max_batch_seconds"):
            options["max_batch_seconds"] = hparams["max_batch_seconds"]
        if train_weights is not None:
            options["weights"] = train_weights
        train_sampler = DurationBucketBatchSampler.from_dataset(
            datasets["train"], hparams["batch_size"], **options
        )
        train_kwargs = {"batch_sampler": train_sampler, **workers}
    elif hparams["batching"] == "random":
        if train_weights is not None:
            raise ValueError("class-balanced sampling needs batching: bucketed.")
        train_sampler = None
        train_kwargs = {"batch_size": hparams["batch_size"], "shuffle": True, **workers}
    else:
        raise ValueError(
            f"batching must be 'bucketed' or 'random', got {hparams['batching']!r}."
        )
    eval_crop = hparams.get("eval_crop_seconds")
    eval_kwargs = {
        split: {
            "batch_sampler": DurationBucketBatchSampler.from_dataset(
                datasets[split],
                hparams["eval_batch_size"],
                shuffle=False,
                **({"max_duration": eval_crop} if eval_crop else {}),
            ),
            **workers,
        }
        for split in eval_splits
    }
    return train_sampler, train_kwargs, eval_kwargs


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
