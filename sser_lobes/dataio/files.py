"""Files written whole or not at all, and their digests.

:func:`atomic_write` and :func:`atomic_write_json` write through a temporary
file in the destination's folder and ``os.replace`` it into place, so a crash
never leaves a half-written manifest, cache entry or state file;
:func:`file_sha256` is the content digest the split guard and the caches key
on.

Example
-------
>>> import tempfile, pathlib, json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
>>> atomic_write_json(path, {"x": 1})
>>> json.loads(path.read_text())
{'x': 1}
>>> len(file_sha256(path))
64
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path


def atomic_write(path, write):
    """Write ``path`` with ``write(handle)`` through a temporary file.

    ``handle`` is a binary file with a unique name in the same folder (so
    the ``os.replace`` that follows is atomic on POSIX file systems); it is
    removed if writing fails, and ``path`` is then left as it was.

    Arguments
    ---------
    path : str or os.PathLike
        Destination file; its folder must exist.
    write : callable
        Called with the open binary handle.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "a.bin")
    >>> atomic_write(path, lambda handle: handle.write(b"ok"))
    >>> open(path, "rb").read(), os.listdir(tmp.name)
    (b'ok', ['a.bin'])
    >>> tmp.cleanup()
    """
    path = Path(path)
    # A unique name in the same folder; open(..., "x") respects the umask.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path, data):
    """Write JSON to ``path`` atomically (:func:`atomic_write`).

    The output is indented, UTF-8 (``ensure_ascii=False``) and ends with a
    newline.

    Arguments
    ---------
    path : str or os.PathLike
        Destination file; its folder must exist.
    data : object
        Anything ``json.dumps`` accepts.

    Example
    -------
    >>> import tempfile, os, json
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "a.json")
    >>> atomic_write_json(path, {"é": [1, 2]})
    >>> json.load(open(path, encoding="utf-8"))
    {'é': [1, 2]}
    >>> os.listdir(tmp.name)  # no temporary file left behind
    ['a.json']
    >>> tmp.cleanup()
    """
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def file_sha256(path):
    """Hex sha256 of a file's bytes (a corpus file is part of the options a
    preparation is keyed by, and of the metrics that name it).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/empty.csv"
    >>> _ = open(path, "w").write("")
    >>> file_sha256(path)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
