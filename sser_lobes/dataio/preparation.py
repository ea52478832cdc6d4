"""The preparation machinery the recipes' ``*_prepare.py`` scripts share.

Every preparation script (``recipes/*/..._prepare.py``) writes its manifests
the same safe way:

* each JSON file is written atomically
  (:func:`sser_lobes.dataio.files.atomic_write_json`: a temporary file in the
  same folder, then ``os.replace``), so a crash never leaves a half-written
  manifest;
* a ``prepare_options.json`` "state" file records who wrote the folder, the
  options used and whether the preparation completed
  (:func:`write_state`); a re-run with the same options and complete outputs
  is skipped (:func:`read_state`, :func:`is_up_to_date`, :func:`reusable`),
  changed options rebuild (:func:`changed_options` says which), and files not
  written by the script are never overwritten (:func:`read_state` raises
  :class:`~sser_lobes.errors.PreparationError`);
* :func:`absent_classes` lists the classes a split lacks, and
  :func:`run_preparation_cli` is the command-line ending they share (one
  ``error:`` line instead of a traceback).

The order of writes that makes an interrupted preparation detectable::

    write_state(..., complete=False)   # before touching any output
    atomic_write_json(...)             # every output
    write_state(..., complete=True)    # last

Example
-------
>>> import tempfile, pathlib
>>> from sser_lobes.dataio.files import atomic_write_json
>>> tmp = tempfile.TemporaryDirectory()
>>> save = pathlib.Path(tmp.name)
>>> outputs = [save / "train.json"]
>>> options = {"seed": 1}
>>> read_state(save, outputs, "demo_prepare") is None  # nothing there yet
True
>>> _ = write_state(save, "demo_prepare", 1, options, complete=False)
>>> atomic_write_json(save / "train.json", {"utt1": {"wav": "a.wav"}})
>>> _ = write_state(save, "demo_prepare", 1, options, complete=True)
>>> state = read_state(save, outputs, "demo_prepare")
>>> is_up_to_date(state, options, outputs, format_version=1)
True
>>> changed_options(state, {"seed": 2})
['seed']
>>> read_state(save, outputs, "other_prepare")
Traceback (most recent call last):
...
sser_lobes.errors.PreparationError: ...: it was not written by other_prepare; ...
>>> tmp.cleanup()
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.errors import PreparationError

logger = logging.getLogger(__name__)


#: Name of the state file written next to the manifests.
OPTIONS_FILE = "prepare_options.json"


def read_state(save_folder, outputs, writer, options_file=OPTIONS_FILE):
    """Return the stored state (``prepare_options.json`` content), or None.

    Arguments
    ---------
    save_folder : str or os.PathLike
        Folder of the manifests.
    outputs : iterable of pathlib.Path
        The files the preparation is about to write.
    writer : str
        Name of the preparation script (e.g. ``"iemocap_prepare"``); the state
        file must have been written by it.
    options_file : str
        Name of the state file in ``save_folder``.

    Returns
    -------
    dict or None
        The state (keys ``written_by``, ``format_version``, ``complete``,
        ``options`` and possibly ``outputs``), or None when there is no state
        file and no output yet (a fresh folder).

    Raises
    ------
    PreparationError
        When outputs exist without a state file, or the state file cannot be
        read or was written by something else: those files are not ours, so
        they must not be overwritten.

    Example
    -------
    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> save = pathlib.Path(tmp.name)
    >>> _ = (save / "train.json").write_text("{}")
    >>> read_state(save, [save / "train.json"], "demo_prepare")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.PreparationError: ...: already holds train.json not ...
    >>> tmp.cleanup()
    """
    save_folder = Path(save_folder)
    options_path = save_folder / options_file
    existing = [Path(p).name for p in outputs if Path(p).exists()]
    if not options_path.exists():
        if existing:
            raise PreparationError(
                f"{save_folder}: already holds {', '.join(existing)} not written by "
                f"{writer} (no {options_file}); refusing to overwrite them. "
                f"Choose another save_folder or move those files away."
            )
        return None
    try:
        with open(options_path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError) as exc:
        state = None
        reason = f"it cannot be read ({exc})"
    else:
        reason = f"it was not written by {writer}"
    if not isinstance(state, dict) or state.get("written_by") != writer:
        raise PreparationError(
            f"{options_path}: {reason}; refusing to overwrite it or the manifests "
            f"next to it. Choose another save_folder or move the files away."
        )
    return state


def is_up_to_date(state, options, outputs, format_version):
    """Tell whether a previous preparation can be reused as it is.

    Arguments
    ---------
    state : dict or None
        As returned by :func:`read_state`.
    options : dict
        The JSON-comparable options of this run.
    outputs : iterable of pathlib.Path
        The files this run would write; all must exist.
    format_version : int
        Version of the manifest format the script writes now.

    Returns
    -------
    bool
        True when the previous preparation completed with the same options and
        format, and every output exists.

    Example
    -------
    >>> state = {"complete": True, "format_version": 1, "options": {"a": 1}}
    >>> is_up_to_date(state, {"a": 1}, [], format_version=1)
    True
    >>> is_up_to_date(state, {"a": 1}, [], format_version=2)
    False
    >>> is_up_to_date(None, {"a": 1}, [], format_version=1)
    False
    """
    return (
        isinstance(state, dict)
        and state.get("complete") is True
        and state.get("format_version") == format_version
        and state.get("options") == options
        and all(Path(p).exists() for p in outputs)
    )


def changed_options(state, options):
    """Names of the options that differ from the previous preparation's.

    Arguments
    ---------
    state : dict or None
        As returned by :func:`read_state`.
    options : dict
        The options of this run.

    Returns
    -------
    list of str
        Sorted option names (those of either run).

    Example
    -------
    >>> changed_options({"options": {"a": 1, "b": 2}}, {"a": 1, "b": 3, "c": 0})
    ['b', 'c']
    """
    old = (state or {}).get("options") or {}
    keys = set(old) | set(options)
    return sorted(k for k in keys if old.get(k) != options.get(k))


def write_state(
    save_folder,
    writer,
    format_version,
    options,
    complete,
    outputs=None,
    options_file=OPTIONS_FILE,
):
    """Write the state file (atomically) and return its content.

    Arguments
    ---------
    save_folder : str or os.PathLike
        Folder of the manifests (must exist).
    writer : str
        Name of the preparation script.
    format_version : int
        Version of the manifest format.
    options : dict
        JSON-serialisable options of this run.
    complete : bool
        False before the outputs are written, True once all are.
    outputs : list of str, optional
        Names of the files written (stored under ``"outputs"``, e.g. to
        remove stale outputs when the options change).
    options_file : str
        Name of the state file.

    Returns
    -------
    dict
        The state written.

    Example
    -------
    >>> import tempfile, json, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> state = write_state(tmp.name, "demo_prepare", 1, {"a": 1}, complete=True)
    >>> json.load(open(os.path.join(tmp.name, "prepare_options.json"))) == state
    True
    >>> state["written_by"], state["complete"]
    ('demo_prepare', True)
    >>> tmp.cleanup()
    """
    state = {
        "written_by": writer,
        "format_version": format_version,
        "complete": bool(complete),
        "options": options,
    }
    if outputs is not None:
        state["outputs"] = list(outputs)
    atomic_write_json(Path(save_folder) / options_file, state)
    return state


def absent_classes(records, splits, emotions, protocol):
    """Classes without utterances per split: an error for train (a model
    cannot learn them), a warning for valid and test (UA then averages over
    the classes present, see sser_lobes.evaluation.metrics).

    Arguments
    ---------
    records : dict
        Utterance id -> entry with an ``emo`` class.
    splits : dict
        Split name -> utterance ids.
    emotions : sequence of str
        The classes of the model.
    protocol : str
        Description of the split, for the error message.

    Returns
    -------
    dict
        ``{split: [classes]}`` for the splits that miss some.

    Example
    -------
    >>> records = {"u1": {"emo": "ang"}, "u2": {"emo": "neu"}}
    >>> absent_classes(records, {"train": ["u1", "u2"], "test": ["u2"]},
    ...                ["ang", "neu"], "demo")
    {'test': ['ang']}
    """
    absent = {}
    for split, ids in splits.items():
        present = {records[u]["emo"] for u in ids}
        missing = [e for e in emotions if e not in present]
        if missing:
            absent[split] = missing
    if "train" in absent:
        raise PreparationError(
            f"class(es) {', '.join(absent['train'])} have no training utterance in "
            f"this fold ({protocol}); a model cannot learn them. Drop them from "
            "emotions or check the corpus"
        )
    for split, missing in absent.items():
        logger.warning(
            "The %s split has no utterance of class(es) %s: its UA and macro-F1 "
            "average over the other classes only.",
            split,
            ", ".join(missing),
        )
    return absent


def reusable(save_folder, outputs, writer, format_version, options, log=None):
    """Whether a previous preparation in ``save_folder`` can be kept as it is.

    Reads the state file (:func:`read_state`, which refuses a folder another
    tool wrote) and logs the decision on ``log`` (the preparation's logger;
    default this module's): kept (same options, every output there) or
    rebuilt (which options changed, or an incomplete run).

    Example
    -------
    >>> import tempfile, pathlib
    >>> save = pathlib.Path(tempfile.mkdtemp())
    >>> reusable(save, [save / "train.json"], "demo_prepare", 1, {"seed": 1})
    False
    """
    log = log or logger
    state = read_state(save_folder, outputs, writer)
    if state is None:
        return False
    if is_up_to_date(state, options, outputs, format_version):
        log.info(
            "%s: manifests already prepared with the same options, skipping",
            save_folder,
        )
        return True
    changed = changed_options(state, options)
    log.info(
        "%s: rebuilding the manifests (%s)",
        save_folder,
        f"changed options: {', '.join(changed)}"
        if changed
        else "previous preparation incomplete",
    )
    return False


def run_preparation_cli(prepare, *args, **kwargs):
    """Run a preparation for a command line: its outputs, or one ``error:`` line.

    Returns the exit status (0, or 1 after printing ``error: ...`` on stderr
    for a problem with the options or the data).

    Example
    -------
    >>> def prepare(fail):
    ...     if fail:
    ...         raise PreparationError("corpus.csv: missing column(s) wav")
    ...     return {"train": "prep/train.json"}
    >>> run_preparation_cli(prepare, fail=False)
    train: prep/train.json
    0
    """
    import sys

    try:
        paths = prepare(*args, **kwargs)
    except (ValueError, OSError) as exc:  # PreparationError, AudioError included
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
