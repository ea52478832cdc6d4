"""SpeechBrain data pipelines over the recipes' JSON manifests.

* :func:`read_manifest`, :func:`require_entries`,
  :func:`check_manifest_labels`: read a manifest and fail early, naming the
  file and the utterance, on an empty split or a label the model does not
  know (:class:`~sser_lobes.errors.ManifestError`);
* :func:`audio_pipeline`, :func:`segment_audio_pipeline`,
  :func:`label_pipeline`, :func:`categorical_label_encoder`,
  :func:`text_pipeline`, :func:`vote_target_pipeline`: the dynamic items of
  the datasets (audio read and
  checked as in inference, optional first-N-seconds or random crops); the
  audio items describe how they read (:func:`encoder_input_of`), for the
  feature cache's keys;
* :func:`make_loader_kwargs`: duration-bucketed (or random) training batches
  and length-sorted evaluation batches.

Example
-------
>>> encoder = categorical_label_encoder(["neu", "hap", "sad", "ang"])
>>> int(encoder.encode_label("sad"))
2
"""

import json

import numpy as np
import speechbrain as sb
import torch

from sser_lobes.dataio.audio import load_audio_segment, read_audio, resampler_name
from sser_lobes.dataio.batching import DurationBucketBatchSampler
from sser_lobes.dataio.votes import vote_distribution
from sser_lobes.errors import ManifestError


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
    sser_lobes.errors.ManifestError: ...valid.json.missing: cannot read the manifest...
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
    sser_lobes.errors.ManifestError: the train split is empty: ...train.json lists ...
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
    sser_lobes.errors.ManifestError: ...m.json: utterance u1 has label 'joy', ...
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

    pipeline.encoder_input = {
        "reader": "read_audio: files at sample_rate, mono, else an error",
        "sample_rate": int(sample_rate),
        "channels": "mono only",
        "resampler": None,
        "crop": [crop, crop_samples] if crop_samples else None,
    }
    return pipeline


def segment_audio_pipeline(sample_rate, min_samples):
    """Dynamic item ``wav``, ``start``, ``end`` -> ``sig``, as inference reads audio.

    For corpora that are not 16 kHz mono files (``recipes/Custom``): the
    segment ``[start, end)`` (seconds; None: the whole file) of a file at any
    sample rate and channel count, downmixed and resampled to ``sample_rate``
    by :func:`~sser_lobes.dataio.audio.load_audio_segment`, the conversion the
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

    pipeline.encoder_input = {
        "reader": "load_audio_segment: any file, the segment only",
        "sample_rate": int(sample_rate),
        "channels": "mean of the channels",
        "resampler": resampler_name(),
        "crop": None,
    }
    return pipeline


def encoder_input_of(dataset):
    """How a dataset's ``sig`` is read: the ``encoder_input`` description
    of the pipeline that provides it (:func:`audio_pipeline`,
    :func:`segment_audio_pipeline`): the reader, the sample rate, the
    channel handling, the resampler and the crop. None if the pipeline does
    not describe itself.

    Example
    -------
    >>> import speechbrain as sb
    >>> data = sb.dataio.dataset.DynamicItemDataset(
    ...     {"u1": {"wav": "a.wav"}}, dynamic_items=[audio_pipeline(16000, 400)],
    ...     output_keys=["id", "sig"])
    >>> encoder_input_of(data)["sample_rate"]
    16000
    """
    for item in getattr(dataset.pipeline, "dynamic_items", ()):
        if "sig" in getattr(item, "provides", ()):
            return getattr(item, "encoder_input", None)
    return None


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
    """Dynamic item ``key`` -> ``key``, ``<key>_encoded`` (a long tensor [1];
    ``-1`` for an utterance without a label, e.g. a "no agreement" one that
    trains on its votes only).

    Example
    -------
    >>> item = label_pipeline(categorical_label_encoder(["neu", "ang"]))
    >>> list(item.func("ang")), list(item.func(None))
    (['ang', tensor([1])], [None, tensor([-1])])
    """

    @sb.utils.data_pipeline.takes(key)
    @sb.utils.data_pipeline.provides(key, f"{key}_encoded")
    def pipeline(label):
        yield label
        if label is None:
            yield torch.tensor([-1])
        else:
            yield label_encoder.encode_label_torch(label)

    return pipeline


def vote_target_pipeline(classes, no_agreement_weight=0.0):
    """Dynamic item ``votes``, ``emo`` -> ``emo_target``, ``has_votes``,
    ``target_weight``.

    ``emo_target`` (float ``[C]``) is the distribution of the utterance's
    annotator votes over ``classes``
    (:func:`~sser_lobes.dataio.votes.vote_distribution`), or the one-hot
    vector of its label when it has no vote in those classes; ``has_votes``
    (bool ``[1]``) says which; ``target_weight`` (float ``[1]``) is 1 for a
    labelled utterance and ``no_agreement_weight`` for one without a label
    (MSP-Podcast's O and X, IEMOCAP's xxx), which trains on its votes alone.

    Example
    -------
    >>> item = vote_target_pipeline(["neu", "ang"], no_agreement_weight=0.5)
    >>> [t.tolist() for t in item.func({"neu": 3, "ang": 1, "fru": 1}, "neu")]
    [[0.75, 0.25], [True], [1.0]]
    >>> [t.tolist() for t in item.func(None, "ang")]
    [[0.0, 1.0], [False], [1.0]]
    >>> [t.tolist() for t in item.func({"ang": 2}, None)]
    [[0.0, 1.0], [True], [0.5]]
    """
    classes = list(classes)
    index = {name: i for i, name in enumerate(classes)}

    @sb.utils.data_pipeline.takes("votes", "emo")
    @sb.utils.data_pipeline.provides("emo_target", "has_votes", "target_weight")
    def pipeline(votes, emo):
        distribution = vote_distribution(votes, classes)
        if distribution is not None:
            target = torch.tensor(distribution, dtype=torch.float32)
        else:
            target = torch.zeros(len(classes))
            if emo is not None:
                target[index[emo]] = 1.0
        yield target
        yield torch.tensor([distribution is not None])
        weight = 1.0 if emo is not None else float(no_agreement_weight)
        yield torch.tensor([weight], dtype=torch.float32)

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
