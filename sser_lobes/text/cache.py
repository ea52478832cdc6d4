"""Transcript embeddings computed once and cached on disk.

The text encoder is frozen, so the embeddings are computed ONCE and cached;
training epochs read them from the cache and never run the text encoder.

* :class:`TextEmbeddingCache`: the on-disk cache, keyed by utterance id and
  by :func:`~sser_lobes.text.embedder.text_encoder_key` (the encoder's
  content and the embedding options); a changed transcript is re-embedded;
* :class:`TextEmbeddings`: the loaded cache, a read-only mapping;
* :func:`embed_manifest_texts`: embeds the ``"text"`` of SpeechBrain JSON
  manifests, loading the encoder only if something is not cached yet.

Example
-------

>>> from sser_lobes.text.tiny import tiny_text_encoder
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
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sser_lobes.dataio.files import atomic_write, atomic_write_json
from sser_lobes.errors import MissingTextError
from sser_lobes.text.embedder import _CACHE_FORMAT, TextEmbedder, text_encoder_key

logger = logging.getLogger(__name__)


MISSING_TEXT_MODES = ("error", "audio_only")


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

    >>> from sser_lobes.text.tiny import tiny_text_encoder
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
            "sser_lobes.text.asr.transcribe_missing)."
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
