"""On-disk cache of a frozen SSL encoder's hidden states (``feature_cache: True``).

With ``finetune: frozen`` the encoder runs in eval mode without gradients, so
its hidden states are a deterministic function of the waveform; with
``finetune: top`` (or ``lora`` with ``trainable_layers``) so is the input of
the first trained layer, which is what the cache then stores (the trained
layers run live on it at every step). The cache
computes them once (:meth:`SSLEncoder.hidden_states
<sser_lobes.encoders.ssl_encoder.SSLEncoder.hidden_states>`: waveform normalisation and
the transformers model), stores them, and every epoch of every run that uses
the same encoder, layers and audio reads them back. What trains or is chosen
per run stays live
(:meth:`~sser_lobes.encoders.ssl_encoder.SSLEncoder.features_from_hidden`:
the softmax weights of ``weighted_sum``, ``normalize_layers``, ``output_norm``,
the padding mask), so a cached run and an uncached run go through the same
code and, with a float32 cache, give the same features to float rounding.

Layout (one folder shared by runs, ``feature_cache_folder``)::

    <folder>/<model_type>-<namespace>/meta.json
    <folder>/<model_type>-<namespace>/layer_<k>/<ab>/<utterance key>-<audio key>.npy

* the namespace is a hash of the encoder fingerprint (:func:`encoder_fingerprint`)
  and the storage dtype; ``meta.json`` describes it in words;
* ``layer_<k>`` is one hidden state (``layer_last`` for ``output_layer:
  last``): runs that use different layer subsets of the same encoder share
  the layers they have in common;
* the file name is :func:`entry_key`;
* each file is one ``.npy`` array ``[frames, hidden_size]`` (the valid frames
  only), read with ``np.load(mmap_mode="r")``.

What a key covers
-----------------
An entry is reused only when everything that changes the waveform the
transformers model sees, or what the model does with it, is the same. Two
functions compute the key, each over one side:

* :func:`entry_key`, the waveform: the utterance id; the audio file's size,
  modification time (ns) and content (SHA-1 of the whole file, computed
  every run: reading the audio once costs less than one cached epoch reads);
  the segment of the file (``start``, ``end``); and how the dataset reads it,
  the ``encoder_input`` its audio pipeline describes
  (:func:`sser_lobes.dataio.pipelines.encoder_input_of`): the reader, the
  sample rate, the channel handling (mono files only, or the mean of the
  channels), the resampler and its version, and the crop (the first N
  samples; a random crop gives another input every epoch and is refused).
* :func:`encoder_fingerprint`, the encoder: its weights and buffers (the
  ``global`` waveform statistics among them), its config (layers, sizes,
  overrides), the waveform normalisation (``utterance``, ``layer_norm``,
  ``global``, ``off``: the mode names the statistics and the epsilon), the
  group-norm masking, the CNN chunking, transformers' version and
  :data:`FORMAT_VERSION`. For the input of the trained layers of top-k
  fine-tuning, the weights are those of the frozen part only (the CNN, the
  position embedding and the layers below; not the trained layers nor their
  adapters, which change at every step), and the layer index of the split
  is part of it; the index is also the entry's ``layer_<k>`` folder.
* the storage dtype (``float32``, ``float16`` or ``bfloat16``) is part of
  the namespace.

A new input of the encoder belongs in one of the two: a description in the
audio pipeline's ``encoder_input`` for what changes the waveform, the
fingerprint for what changes the model.

An entry is valid if and only if its file exists: files are written to a
temporary name in the same folder and renamed (``os.replace``), so that a
reader never sees half an entry, and two runs or DDP processes that write the
same entry at once both leave a complete file. A change of weights, layer,
dtype, crop or audio (touched, rewritten, resized) changes the path, so the
entry is computed again; the old one stays on disk until the folder is
deleted, which is safe whenever no run uses it. A process killed while it
writes leaves a hidden ``.*.tmp`` file, never an entry.
"""

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from sser_lobes.errors import FeatureCacheError
from sser_lobes.training.options import check_choice

logger = logging.getLogger(__name__)

#: Bump when the stored values of a given encoder would change (e.g. a change
#: of the eval-mode computation): every entry is then computed again.
#: 2: entry_key covers the audio pipeline's encoder_input (sample rate,
#: resampler, channels, crop).
FORMAT_VERSION = 2
#: Storage dtypes. ``bfloat16`` is stored as the top 16 bits of each float32
#: (numpy has no bfloat16): float32's range, 8 significant bits; ``float16``:
#: 11 significant bits, values up to 65504.
DTYPES = ("float32", "float16", "bfloat16")
#: Frames per second of the wav2vec 2.0 / HuBERT / WavLM encoders (stride 320
#: samples at 16 kHz), for disk estimates.
FRAMES_PER_SECOND = 50
_HASH_CHUNK = 1 << 20


def check_feature_cache_options(hparams):
    """Refuse ``feature_cache: True`` with options that make the encoder's
    input or weights change during training (one line, before anything is
    built).

    Arguments
    ---------
    hparams : dict
        The recipe's hyperparameters (a preview is enough).

    Example
    -------
    >>> check_feature_cache_options({"feature_cache": True, "finetune": "frozen"})
    >>> check_feature_cache_options(
    ...     {"feature_cache": True, "finetune": "top", "trainable_layers": 3})
    >>> check_feature_cache_options({"feature_cache": True, "finetune": "partial"})
    Traceback (most recent call last):
    ...
    sser_lobes.errors.FeatureCacheError: --feature_cache=True needs ...
    """
    if "feature_cache" not in hparams:
        return
    check_choice(hparams, "feature_cache", (True, False))
    if not hparams["feature_cache"]:
        return
    if "feature_cache_dtype" in hparams:
        check_choice(hparams, "feature_cache_dtype", DTYPES)
    folder = hparams.get("feature_cache_folder", "")
    if "feature_cache_folder" in hparams and not (
        isinstance(folder, (str, os.PathLike)) and str(folder)
    ):
        raise FeatureCacheError(
            f"--feature_cache_folder must be a folder path; got {folder!r}"
        )
    finetune = hparams.get("finetune")
    split = finetune in ("top", "lora") and hparams.get("trainable_layers")
    if finetune != "frozen" and not split:
        raise FeatureCacheError(
            f"--feature_cache=True needs --finetune=frozen: with finetune={finetune} "
            "the encoder trains, so its outputs change at every step and cannot be "
            "stored (use --feature_cache=False, or --finetune=top / lora with "
            "--trainable_layers=k, whose frozen layers below the k trained ones "
            "are cached)"
        )
    if hparams.get("train_crop") == "random" and hparams.get("train_crop_seconds"):
        raise FeatureCacheError(
            "--feature_cache=True cannot be used with --train_crop=random: a "
            "random window gives the encoder a different input every epoch; use "
            "--train_crop=first (deterministic, part of the cache key), "
            "--train_crop_seconds=null or --feature_cache=False"
        )
    if hparams.get("apply_spec_augment") is True:
        raise FeatureCacheError(
            "--feature_cache=True cannot be used with --apply_spec_augment=True: "
            "SpecAugment masks the encoder input at random in training (and a "
            "frozen encoder, or the frozen layers below trained ones, which run in "
            "eval mode, never apply it); use "
            "--apply_spec_augment=False or --feature_cache=False"
        )


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def _sha256(data):
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def encoder_fingerprint(encoder):
    """A hash of everything that determines :meth:`SSLEncoder.hidden_states`
    (besides the layer choice, which the cache keys separately).

    It covers the weights and buffers of the transformers model and the
    waveform statistics of ``normalize_waveform: global`` (not the trainable
    ``layer_weights``), the model config (without its source path, so that the
    same checkpoint in two folders shares entries), the waveform
    normalisation, the group-norm masking, transformers' version and
    :data:`FORMAT_VERSION`. With trainable layers split off
    (``trainable_layers``), only the frozen part's weights
    (:meth:`~sser_lobes.encoders.ssl_encoder.SSLEncoder.frozen_state_names`)
    and the split's layer index: training the top layers, or their
    adapters, keeps the key.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes import SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
    >>> last = SSLEncoder(folder, finetune="frozen")
    >>> mixed = SSLEncoder(folder, finetune="frozen", output_layer="weighted_sum")
    >>> encoder_fingerprint(last) == encoder_fingerprint(mixed)
    True
    >>> other = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m", seed=1))
    >>> encoder_fingerprint(last) == encoder_fingerprint(other)
    False
    """
    import transformers

    config = encoder.config.to_dict()
    for key in ("_name_or_path", "transformers_version"):
        config.pop(key, None)
    described = {
        "format": FORMAT_VERSION,
        "transformers": transformers.__version__,
        "config": config,
        "model_class": type(encoder.model).__name__,
        "normalize_waveform": encoder.normalize_waveform,
        "uses_group_norm": encoder.uses_group_norm,
        "cnn_chunk_frames": encoder.cnn_chunk_frames,
    }
    if encoder.split_layer is not None:
        # The input of the first trained layer (frozen encoders: the key
        # is as before, their entries stay valid).
        described["split_layer"] = encoder.split_layer
    digest = hashlib.sha256()
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    state = encoder.state_dict()
    for name in encoder.frozen_state_names():
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tensor.numel()}|".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


def entry_key(utt_id, signature, encoder_input, segment=None):
    """The file name (without ``.npy``) of an utterance's entry.

    A hash of everything on the waveform's side that the module docstring
    lists ("What a key covers"); the encoder's side is the folder
    (:func:`encoder_fingerprint`).

    Arguments
    ---------
    utt_id : str
        The utterance id.
    signature : tuple
        :func:`audio_signature` of its audio file.
    encoder_input : dict
        How the audio is read: the ``encoder_input`` of the dataset's audio
        pipeline (:func:`sser_lobes.dataio.pipelines.encoder_input_of`).
    segment : tuple or None
        ``(start, end)`` in seconds of a segment of the file.

    Raises
    ------
    FeatureCacheError
        The reading is unknown, or not deterministic (a random crop).

    Example
    -------
    >>> reading = {"sample_rate": 16000, "resampler": None, "crop": None}
    >>> key = entry_key("u1", (4, 1, "c5a4"), reading)
    >>> key == entry_key("u1", (4, 1, "c5a4"), {**reading, "sample_rate": 8000})
    False
    """
    if not isinstance(encoder_input, dict):
        raise FeatureCacheError(
            "the dataset's audio pipeline does not describe how it reads the "
            "audio (encoder_input), so its features cannot be keyed: use an "
            "audio pipeline of sser_lobes.dataio.pipelines or --feature_cache=False"
        )
    crop = encoder_input.get("crop")
    if crop and crop[0] != "first":
        raise FeatureCacheError(
            f"a {crop[0]} crop gives the encoder another input every epoch: its "
            "features cannot be cached (use --train_crop=first or "
            "--feature_cache=False)"
        )
    reading = json.dumps(encoder_input, sort_keys=True, default=str)
    utterance = _sha256(["utterance", str(utt_id), reading])[:24]
    audio = _sha256(["audio", *signature, "segment", segment])[:16]
    return f"{utterance}-{audio}"


def audio_signature(path):
    """``(size, mtime_ns, sha1 of the content)`` of an audio file.

    Raises
    ------
    FeatureCacheError
        If the file cannot be read, or changed while it was read.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/a.wav"
    >>> _ = open(path, "wb").write(b"RIFF")
    >>> size, mtime_ns, sha1 = audio_signature(path)
    >>> size, sha1[:8]
    (4, '6ca0a12c')
    """
    try:
        before = os.stat(path)
        digest = hashlib.sha1()
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        after = os.stat(path)
    except OSError as error:
        raise FeatureCacheError(
            f"{path}: cannot read the audio file for the feature cache key "
            f"({error.strerror or error})"
        ) from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise FeatureCacheError(f"{path}: the file changed while it was read")
    return after.st_size, after.st_mtime_ns, digest.hexdigest()


# --------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------


class FeatureCache:
    """The stored hidden states of one encoder, for its selected layers.

    Arguments
    ---------
    folder : str or os.PathLike
        The cache root, shared by runs and encoders.
    encoder : sser_lobes.SSLEncoder
        Frozen encoder, or one whose trained layers are split off
        (:attr:`~sser_lobes.encoders.ssl_encoder.SSLEncoder.cacheable`); its
        :attr:`hidden_state_indices` are the stored hidden states.
    dtype : str
        ``"float32"`` (features identical to recomputing them, to float
        rounding), ``"float16"`` (half the disk; about 3 significant
        digits) or ``"bfloat16"`` (half the disk, float32's range, about 2
        significant digits).

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes import SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
    >>> encoder = SSLEncoder(folder, finetune="frozen")
    >>> cache = FeatureCache(tempfile.mkdtemp(), encoder)
    >>> name = entry_key("utt1", (4, 1, "c5a4"), {"sample_rate": 16000})
    >>> cache.missing({"utt1": name})
    ['utt1']
    >>> cache.store(name, np.ones((7, 1, 32), dtype="float32"))
    >>> cache.missing({"utt1": name}), cache.load(name).shape
    ([], (7, 1, 32))
    """

    def __init__(self, folder, encoder, dtype="float32"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
        if not encoder.cacheable:
            raise ValueError(
                "a feature cache stores a frozen encoder's outputs (or the frozen "
                f"part below trainable_layers); this encoder is {encoder.finetune!r}."
            )
        self.root = Path(folder)
        self.dtype = dtype
        self.layers = list(encoder.hidden_state_indices)
        self.hidden_size = int(encoder.output_size)
        self.fingerprint = encoder_fingerprint(encoder)
        namespace = _sha256({"encoder": self.fingerprint, "dtype": dtype})[:20]
        self.path = self.root / f"{encoder.config.model_type}-{namespace}"
        self.meta = {
            "format": FORMAT_VERSION,
            "encoder_fingerprint": self.fingerprint,
            "dtype": dtype,
            "source": encoder.source,
            "model_type": encoder.config.model_type,
            "hidden_size": self.hidden_size,
            "num_layers": encoder.num_layers,
            "normalize_waveform": encoder.normalize_waveform,
        }
        if encoder.split_layer is not None:
            self.meta["stores"] = (
                f"hidden state {encoder.split_layer}: the input of the trained "
                f"layers {encoder.split_layer}..{encoder.num_layers - 1} (0-based)"
            )

    def __repr__(self):
        return f"{type(self).__name__}({os.fspath(self.path)!r})"

    def create(self):
        """Create the folder and its ``meta.json`` (atomically; idempotent).

        Raises
        ------
        FeatureCacheError
            If the folder's ``meta.json`` describes another encoder (a hash
            collision or a copied folder).
        """
        meta_file = self.path / "meta.json"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not meta_file.is_file():
                _atomic_write_bytes(
                    meta_file, (json.dumps(self.meta, indent=2) + "\n").encode()
                )
            saved = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise FeatureCacheError(
                f"{meta_file}: cannot set up the feature cache ({error})"
            ) from None
        if (
            saved.get("encoder_fingerprint") != self.fingerprint
            or saved.get("dtype") != self.dtype
        ):
            raise FeatureCacheError(
                f"{meta_file}: this cache folder belongs to another encoder or "
                "dtype (a copied folder?); delete it or choose another "
                "--feature_cache_folder"
            )

    def entry_file(self, layer, name):
        """Path of one layer's array of an entry."""
        return self.path / f"layer_{layer}" / name[:2] / f"{name}.npy"

    def index(self, items, workers=4, progressbar=False):
        """Entry names of utterances, from their audio files.

        Arguments
        ---------
        items : list of tuple
            ``(utterance id, audio path, encoder input)``, optionally with a
            fourth element, the ``(start, end)`` segment of the file; the
            key is :func:`entry_key`.
        workers : int
            Threads that hash the audio files.
        progressbar : bool
            Show a tqdm bar.

        Returns
        -------
        dict
            ``{utterance id: entry name}``.
        """
        from tqdm import tqdm

        def name_of(item):
            utt_id, path, encoder_input, *segment = item
            segment = tuple(segment[0]) if segment and segment[0] else None
            signature = audio_signature(path)
            return utt_id, entry_key(utt_id, signature, encoder_input, segment)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            names = dict(
                tqdm(
                    pool.map(name_of, items),
                    total=len(items),
                    desc="feature cache: hashing audio",
                    dynamic_ncols=True,
                    disable=not progressbar,
                )
            )
        return names

    def missing(self, names):
        """Utterance ids of ``names`` that lack one of the selected layers."""
        return [
            utt_id
            for utt_id, name in names.items()
            if not all(self.entry_file(k, name).is_file() for k in self.layers)
        ]

    def store(self, name, hidden, utt_id=None):
        """Store one utterance's hidden states ``[frames, layers, hidden_size]``.

        Each layer is written to a temporary file next to its entry, then
        renamed to it: the entry appears complete or not at all.
        ``utt_id`` names the utterance in errors.
        """
        hidden = np.asarray(hidden)
        expected = (len(self.layers), self.hidden_size)
        if hidden.ndim != 3 or hidden.shape[1:] != expected:
            raise ValueError(
                f"hidden states of shape [frames, {expected[0]}, {expected[1]}] "
                f"expected, got {hidden.shape}."
            )
        for position, layer in enumerate(self.layers):
            values = _to_storage(hidden[:, position], self.dtype)
            if not np.isfinite(_from_storage(values, self.dtype)).all():
                what = f"utterance {utt_id}" if utt_id is not None else f"entry {name}"
                raise FeatureCacheError(
                    f"hidden state {layer} of {what} has values that "
                    f"{self.dtype} cannot hold (or the encoder output is not "
                    "finite); use --feature_cache_dtype=float32"
                )
            target = self.entry_file(layer, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save(target, values)

    def load(self, name, utt_id=None):
        """Hidden states ``[frames, layers, hidden_size]`` (float32) of an entry."""
        arrays = []
        for layer in self.layers:
            path = self.entry_file(layer, name)
            try:
                arrays.append(np.load(path, mmap_mode="r"))
            except (OSError, ValueError) as error:
                what = f"utterance {utt_id}" if utt_id is not None else "an utterance"
                raise FeatureCacheError(
                    f"{path}: cannot read the feature cache entry of {what} "
                    f"({error}); was it deleted while the run used it? Rerun to "
                    "compute it again"
                ) from None
        frames = arrays[0].shape[0]
        out = np.empty((frames, len(arrays), self.hidden_size), dtype=np.float32)
        for position, array in enumerate(arrays):
            if array.shape != (frames, self.hidden_size):
                raise FeatureCacheError(
                    f"{self.entry_file(self.layers[position], name)}: shape "
                    f"{array.shape}, expected ({frames}, {self.hidden_size})"
                )
            out[:, position] = _from_storage(array, self.dtype)
        return out

    def bytes_per_second(self):
        """Disk bytes per second of audio for the selected layers (at
        :data:`FRAMES_PER_SECOND`)."""
        return disk_cost(self.hidden_size, len(self.layers), self.dtype, 1 / 3600)


def _to_storage(values, dtype):
    """float32 values as stored in ``dtype`` (bfloat16: its bits as int16,
    rounded to nearest even by torch).

    Example
    -------
    >>> stored = _to_storage(np.array([1.0, 3.14159], dtype="float32"), "bfloat16")
    >>> stored.dtype, _from_storage(stored, "bfloat16").tolist()
    (dtype('int16'), [1.0, 3.140625])
    """
    values = np.asarray(values, dtype=np.float32)
    if dtype == "bfloat16":
        bits = torch.from_numpy(np.ascontiguousarray(values)).to(torch.bfloat16)
        return bits.view(torch.int16).numpy()
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def _from_storage(array, dtype):
    """The float32 values of a stored array."""
    if dtype == "bfloat16":
        bits = torch.from_numpy(np.array(array, dtype=np.int16))
        return bits.view(torch.bfloat16).float().numpy()
    return np.asarray(array, dtype=np.float32)


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def disk_cost(hidden_size, hidden_states, dtype="float32", hours=1.0):
    """Bytes that ``hidden_states`` stored layers take for ``hours`` of audio.

    Example
    -------
    >>> round(disk_cost(1024, 25, "float32") / 1e9, 1)  # WavLM large, all layers
    18.4
    >>> round(disk_cost(768, 13, "float16") / 1e9, 2)  # base, all layers, fp16
    3.59
    """
    itemsize = _itemsize(dtype)
    return hours * 3600 * FRAMES_PER_SECOND * hidden_states * hidden_size * itemsize


def _size(n_bytes):
    """``"12.3 MB"``-style size.

    Example
    -------
    >>> _size(2.5e9), _size(1234)
    ('2.50 GB', '0.00 MB')
    """
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.2f} GB"
    return f"{n_bytes / 1e6:.2f} MB"


def _temporary_name(target):
    return target.with_name(
        f".{target.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex}.tmp"
    )


def _atomic_save(target, array):
    tmp = _temporary_name(target)
    try:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_bytes(target, data):
    tmp = _temporary_name(target)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------
# Filling, and the recipes' datasets
# --------------------------------------------------------------------------


def fill(
    cache,
    encoder,
    dataset,
    names,
    utt_ids,
    batch_size=8,
    num_workers=0,
    progressbar=False,
    max_duration=None,
):
    """Compute and store the entries of some utterances of a dataset.

    The utterances are encoded longest first, in batches of similar lengths
    (:func:`fill_batches`), by
    :meth:`SSLEncoder.hidden_states
    <sser_lobes.encoders.ssl_encoder.SSLEncoder.hidden_states>` on the encoder's device,
    from the dataset's own ``sig`` item (so with the recipe's crop).

    Arguments
    ---------
    cache : FeatureCache
    encoder : sser_lobes.SSLEncoder
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        Provides ``sig``; its entries have a ``duration``.
    names : dict
        ``{utterance id: entry name}`` (:meth:`FeatureCache.index`).
    utt_ids : list of str
        The utterances to compute.
    batch_size, num_workers : int
        Of the loader that reads the audio.
    progressbar : bool
        Show a tqdm bar.
    max_duration : float or None
        The crop of the dataset's ``sig`` (seconds), for batching.

    Returns
    -------
    int
        How many utterances were computed. Torch's random state is the same
        after the call as before it.
    """
    from speechbrain.dataio.batch import PaddedBatch
    from tqdm import tqdm

    from sser_lobes.encoders.ssl_encoder import relative_to_absolute

    if not utt_ids:
        return 0
    position = {uid: i for i, uid in enumerate(dataset.data_ids)}
    durations = [
        min(_duration(dataset, uid), max_duration or np.inf) for uid in utt_ids
    ]
    batches = [
        [position[utt_ids[i]] for i in batch]
        for batch in fill_batches(durations, batch_size)
    ]
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    done = 0
    # A DataLoader draws its base seed from torch's global generator: without
    # the fork, filling the cache would shift every later random draw
    # (dropout, crops) and a cached run would not train as an uncached one.
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), dataset.output_keys_as(["id", "sig"]):
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=batches,
                collate_fn=PaddedBatch,
                num_workers=num_workers,
            )
            for batch in tqdm(
                loader,
                desc="feature cache: encoding",
                dynamic_ncols=True,
                disable=not progressbar,
            ):
                wavs, wav_lens = batch.sig
                with torch.no_grad():
                    hidden, hidden_lens = encoder.hidden_states(
                        wavs.to(device), wav_lens.to(device)
                    )
                frames = relative_to_absolute(hidden_lens, hidden.shape[1]).tolist()
                hidden = hidden.float().cpu().numpy()
                for row, utt_id in enumerate(batch.id):
                    cache.store(names[utt_id], hidden[row, : frames[row]], utt_id)
                done += len(batch.id)
    finally:
        encoder.train(was_training)
    return done


def fill_batches(durations, batch_size, min_ratio=0.75):
    """Batches for encoding: longest first, at most ``batch_size``
    utterances, none shorter than ``min_ratio`` of its batch's longest (so
    that a 34 s outlier does not pad seven 10 s utterances to 34 s).

    Returns
    -------
    list of list of int
        Indices into ``durations``.

    Example
    -------
    >>> fill_batches([3.0, 34.0, 10.0, 9.0, 2.9], 2)
    [[1], [2, 3], [0, 4]]
    """
    order = sorted(range(len(durations)), key=lambda i: -durations[i])
    batches = []
    for index in order:
        batch = batches[-1] if batches else None
        if (
            batch is None
            or len(batch) >= batch_size
            or durations[index] < min_ratio * durations[batch[0]]
        ):
            batches.append([index])
        else:
            batch.append(index)
    return batches


def _segment(dataset, utt_id):
    """``(start, end)`` of a manifest entry that is a segment of its file, or None."""
    entry = dataset.data[utt_id]
    if entry.get("start") is None and entry.get("end") is None:
        return None
    return (entry.get("start"), entry.get("end"))


def _duration(dataset, utt_id):
    return float(dataset.data[utt_id].get("duration", 0.0))


def _rank_and_world():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def crop_seconds(hparams, split):
    """The first-window crop the recipes' audio pipeline applies to a split:
    ``train_crop_seconds`` for training, ``eval_crop_seconds`` otherwise
    (absent or null: whole utterances)."""
    key = "train_crop_seconds" if split == "train" else "eval_crop_seconds"
    return hparams.get(key) or None


def check_disk_space(cache, seconds_to_fill):
    """Refuse to start filling a cache that the disk cannot hold.

    Arguments
    ---------
    cache : FeatureCache
    seconds_to_fill : float
        Audio seconds still to encode.

    Returns
    -------
    float
        The estimated bytes.
    """
    needed = seconds_to_fill * cache.bytes_per_second()
    try:
        free = shutil.disk_usage(cache.path).free
    except OSError:
        return needed
    if needed > free:
        raise FeatureCacheError(
            f"--feature_cache_folder={cache.root}: the missing entries need about "
            f"{needed / 1e9:.1f} GB ({seconds_to_fill / 3600:.1f} h of audio x "
            f"{len(cache.layers)} hidden state(s) x {cache.hidden_size} x "
            f"{cache.dtype}), but only {free / 1e9:.1f} GB are free there; choose "
            "another folder, --feature_cache_dtype=float16 or fewer "
            "--weighted_sum_layers"
        )
    return needed


def read_from_cache(dataset, cache, names):
    """Make a dataset give the cached ``ssl_hidden`` instead of ``sig``.

    ``ssl_hidden`` is a float32 tensor ``[frames, layers, hidden_size]`` per
    utterance; SpeechBrain's ``PaddedBatch`` pads it along the frames and
    gives relative lengths, which :class:`~sser_lobes.nnet.model.EmotionModel`
    takes as ``hidden, hidden_lens``.
    """
    from speechbrain.utils.data_pipeline import provides, takes

    @takes("id")
    @provides("ssl_hidden")
    def cached_hidden(utt_id):
        return torch.from_numpy(cache.load(names[utt_id], utt_id))

    mapping = dict(dataset.pipeline.output_mapping)
    if "sig" not in mapping.values():
        raise ValueError(f"the dataset has no 'sig' output to replace: {mapping}")
    dataset.add_dynamic_item(cached_hidden)
    dataset.set_output_keys(
        {
            ("ssl_hidden" if inside == "sig" else outside): (
                "ssl_hidden" if inside == "sig" else inside
            )
            for outside, inside in mapping.items()
        }
    )


def setup_feature_cache(hparams, datasets, brain):
    """Fill the cache for every split and switch the datasets to it.

    Does nothing unless ``hparams["feature_cache"]``. Called by both recipes
    after the datasets and the Brain are built (the encoder is then on its
    device, with its final waveform statistics).

    1. Every process hashes the audio of every split
       (:meth:`FeatureCache.index`) and lists the missing entries.
    2. Each process encodes its share of them (every ``world_size``-th
       utterance, longest first), then waits for the others; outside DDP the
       one process does everything. Whatever is still missing afterwards
       (another run sharing the folder was to write it, or a race) is
       computed by each process that misses it.
    3. Each dataset reads ``ssl_hidden`` from the cache instead of ``sig``
       (:func:`read_from_cache`): training never reads the audio again.

    Arguments
    ---------
    hparams : dict
        Uses ``feature_cache``, ``feature_cache_folder``,
        ``feature_cache_dtype``, ``ssl_encoder``, ``eval_batch_size``,
        ``num_workers`` and the crops (:func:`crop_seconds`, for batching).
        How each split's audio is read (sample rate, resampler, channels,
        crop) comes from its dataset (:func:`entry_key`).
    datasets : dict
        Split name -> DynamicItemDataset with a ``sig`` output.
    brain : speechbrain.Brain
        For the progress-bar option.

    Returns
    -------
    dict or None
        Counts and sizes (also logged), or None without a cache.
    """
    if not hparams.get("feature_cache"):
        return None
    from speechbrain.utils.distributed import ddp_barrier, if_main_process

    from sser_lobes.dataio.pipelines import encoder_input_of

    check_feature_cache_options(hparams)
    encoder = hparams["ssl_encoder"]
    dtype = hparams.get("feature_cache_dtype", "float32")
    cache = FeatureCache(hparams["feature_cache_folder"], encoder, dtype)
    cache.create()
    progressbar = not getattr(brain, "noprogressbar", False) and if_main_process()

    names = {}
    for split, dataset in datasets.items():
        encoder_input = encoder_input_of(dataset)
        with dataset.output_keys_as(["id", "wav"]):
            items = [
                (item["id"], item["wav"], encoder_input, _segment(dataset, item["id"]))
                for item in dataset
            ]
        names[split] = cache.index(items, progressbar=progressbar)
    # Nobody writes before every process has listed what is missing.
    ddp_barrier()
    missing = {
        split: cache.missing(split_names) for split, split_names in names.items()
    }
    ddp_barrier()

    seconds = sum(
        min(_duration(datasets[split], uid), crop_seconds(hparams, split) or np.inf)
        for split, ids in missing.items()
        for uid in ids
    )
    estimate = check_disk_space(cache, seconds)
    total = sum(len(split_names) for split_names in names.values())
    to_compute = sum(len(ids) for ids in missing.values())
    if if_main_process():
        logger.info(
            "Feature cache %s: %d of %d utterances to encode (about %s); %d found",
            cache.path,
            to_compute,
            total,
            _size(estimate),
            total - to_compute,
        )
    rank, world_size = _rank_and_world()
    options = {
        "batch_size": hparams["eval_batch_size"],
        "num_workers": hparams["num_workers"],
        "progressbar": progressbar,
    }
    computed = 0
    for split, dataset in datasets.items():
        ordered = sorted(missing[split], key=lambda uid: -_duration(dataset, uid))
        share = ordered[rank::world_size]
        crop = crop_seconds(hparams, split)
        computed += fill(
            cache, encoder, dataset, names[split], share, max_duration=crop, **options
        )
    ddp_barrier()
    for split, dataset in datasets.items():
        still = cache.missing(names[split])
        crop = crop_seconds(hparams, split)
        computed += fill(
            cache, encoder, dataset, names[split], still, max_duration=crop, **options
        )

    for split, dataset in datasets.items():
        read_from_cache(dataset, cache, names[split])
    per_process = [computed]
    if world_size > 1:
        per_process = [None] * world_size
        torch.distributed.all_gather_object(per_process, computed)
    summary = {
        "folder": os.fspath(cache.path),
        "utterances": total,
        "found": total - to_compute,
        "encoded_per_process": per_process,
        "layers": list(cache.layers),
        "dtype": cache.dtype,
    }
    if if_main_process():
        logger.info(
            "Feature cache %s: encoded %s of the %d utterances%s; %d were already "
            "cached",
            cache.path,
            " + ".join(map(str, per_process)),
            total,
            " (per process)" if world_size > 1 else "",
            total - to_compute,
        )
    return summary
