"""A run folder never resumes a model trained on another split or seed.

SpeechBrain's ``Checkpointer`` recovers whatever checkpoint it finds in the
save folder. A run folder is named from a few options (experiment, seed,
fold), so a rerun with another validation ratio, split seed, protocol or
corpus lands in the same folder; the preparation rebuilds the manifests, the
old model is recovered, and the test score silently includes utterances that
model was trained on. The same goes for an ``--output_folder`` given twice
with another training ``--seed``: the other seed's checkpoint would be
resumed and its metrics written as this seed's; and so with other training
targets (``--targets``, ``--soft_label_smoothing``, ``--use_no_agreement``:
a model trained on the majority labels resumed as a soft-target one).

:class:`SplitGuard` stores a *split fingerprint* next to the checkpoints: the
protocol options of the run, its training seed, and a digest of each
manifest's membership and labels (utterance ids and every field except the
audio path, so moving the corpus keeps the fingerprint). A run whose save
folder holds checkpoints is refused, with a
:class:`sser_lobes.errors.RecipeError` that says what changed, unless its
fingerprint is the stored one:

* :meth:`SplitGuard.check_options` before anything is written into the run
  folder (the options are known from the hparams preview);
* :func:`prepare_guarded` prepares the data into a staging copy of the
  manifest folder and compares the staged manifests
  (:meth:`SplitGuard.check_manifests` without writing) before anything in the
  run folder changes; a refused rerun leaves the folder as it was (its
  manifests, ``split_info.json``, ``prepare_options.json`` and
  ``hyperparams.yaml`` still those of its checkpoints);
* :meth:`SplitGuard.check_manifests` on the manifests in place, before the
  ``Checkpointer`` recovers anything; it stores the fingerprint when the save
  folder has no checkpoint yet.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.errors import RecipeError

FINGERPRINT_FILE = "split_fingerprint.json"
#: Manifest fields that locate the data rather than define it.
LOCATION_FIELDS = ("wav", "text_file", "file", "path")
#: The option of the fingerprint that holds the run's training seed.
SEED_OPTION = "training_seed"
#: The options of the fingerprint that say what the model trains on
#: (:func:`sser_lobes.training.targets.target_options`).
TARGET_OPTIONS = ("targets", "soft_label_smoothing", "use_no_agreement")


def manifest_digest(path, location_fields=LOCATION_FIELDS):
    """SHA-256 of a JSON manifest's ids and fields, audio paths excluded.

    Arguments
    ---------
    path : str or os.PathLike
        A SpeechBrain JSON manifest (``{id: {field: value}}``).
    location_fields : sequence of str
        Fields left out (they change when the corpus moves).

    Returns
    -------
    str
        Hex digest; equal for manifests with the same members and labels.

    Example
    -------
    >>> import tempfile, json, os
    >>> folder = tempfile.mkdtemp()
    >>> a, b = os.path.join(folder, "a.json"), os.path.join(folder, "b.json")
    >>> _ = open(a, "w").write(json.dumps({"u1": {"wav": "/x/u1.wav", "emo": "ang"}}))
    >>> _ = open(b, "w").write(json.dumps({"u1": {"wav": "/y/u1.wav", "emo": "ang"}}))
    >>> manifest_digest(a) == manifest_digest(b)  # same data, moved corpus
    True
    """
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    kept = {
        utt: {k: v for k, v in sorted(entry.items()) if k not in location_fields}
        if isinstance(entry, dict)
        else entry
        for utt, entry in sorted(data.items())
    }
    text = json.dumps(kept, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def corpus_digest(manifests, location_fields=LOCATION_FIELDS):
    """SHA-256 of every utterance of a run's manifests taken together.

    The union of a fold's train, valid and test manifests is the corpus the
    task is defined on (after the class selection), whichever fold the run
    is: runs of every fold of one task share the digest, runs on another
    corpus content or class selection do not. Audio paths are left out, as
    in :func:`manifest_digest`.

    Example
    -------
    >>> import tempfile, json, os
    >>> folder = tempfile.mkdtemp()
    >>> def write(name, data):
    ...     path = os.path.join(folder, name)
    ...     _ = open(path, "w").write(json.dumps(data))
    ...     return path
    >>> a = {"u1": {"emo": "ang"}}
    >>> b = {"u2": {"emo": "neu"}}
    >>> fold1 = [write("train1.json", a), write("test1.json", b)]
    >>> fold2 = [write("train2.json", b), write("test2.json", a)]
    >>> corpus_digest(fold1) == corpus_digest(fold2)
    True
    """
    entries = []
    for path in manifests:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        for utt, entry in data.items():
            if isinstance(entry, dict):
                entry = {k: v for k, v in entry.items() if k not in location_fields}
            entries.append(json.dumps([utt, entry], sort_keys=True, ensure_ascii=False))
    return hashlib.sha256("\n".join(sorted(entries)).encode("utf-8")).hexdigest()


def has_checkpoints(save_folder):
    """Whether a SpeechBrain save folder holds a checkpoint (``CKPT+*``).

    Example
    -------
    >>> import tempfile
    >>> has_checkpoints(tempfile.mkdtemp())
    False
    """
    folder = Path(save_folder)
    return folder.is_dir() and any(p.is_dir() for p in folder.glob("CKPT+*"))


class SplitGuard:
    """Refuses to resume checkpoints of another split (see the module doc).

    Arguments
    ---------
    save_folder : str or os.PathLike
        The run's checkpoint folder.
    options : dict
        JSON-comparable protocol options that define the split (not the
        corpus location).
    run_name : str
        How the run is called in messages (its output folder).

    Example
    -------
    >>> import tempfile, json, os, pathlib
    >>> save = pathlib.Path(tempfile.mkdtemp())
    >>> manifest = save.parent / f"{save.name}-train.json"
    >>> _ = manifest.write_text(json.dumps({"u1": {"emo": "ang"}}))
    >>> SplitGuard(save, {"test_session": 1}, "run").check_manifests([manifest])
    >>> (save / "CKPT+epoch1").mkdir()  # the run trained one epoch
    >>> SplitGuard(save, {"test_session": 1}, "run").check_options()  # same split
    >>> SplitGuard(save, {"test_session": 2}, "run").check_options()
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: ...(changed: test_session 1 -> 2)...
    """

    def __init__(self, save_folder, options, run_name=None):
        self.save_folder = Path(save_folder)
        self.options = json.loads(json.dumps(options))
        self.run_name = run_name or str(self.save_folder.parent)

    @property
    def path(self):
        """The fingerprint file."""
        return self.save_folder / FINGERPRINT_FILE

    def stored(self):
        """The stored fingerprint, or None."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _refuse(self, reason):
        raise RecipeError(
            f"{self.run_name} holds checkpoints trained on another split ({reason}); "
            "resuming would evaluate a model on utterances it was trained on. Use "
            "another --output_folder (or another --fold / --experiment_name) for "
            "this split, or delete that folder to retrain it. Nothing was loaded."
        )

    def check_options(self):
        """Refuse when checkpoints exist and the protocol options (or the
        training seed) differ."""
        if not has_checkpoints(self.save_folder):
            return
        stored = self.stored()
        if stored is None:
            self._refuse(f"no readable {FINGERPRINT_FILE}, so the split is unknown")
        old = stored.get("options") or {}
        # An option the stored fingerprint lacks was not recorded when it was
        # written (an older version): it cannot be compared.
        keys = set(old)
        changed = [
            f"{k} {old.get(k)!r} -> {self.options.get(k)!r}"
            for k in sorted(keys)
            if old.get(k) != self.options.get(k)
        ]
        if changed == [
            f"{SEED_OPTION} {old.get(SEED_OPTION)!r} -> "
            f"{self.options.get(SEED_OPTION)!r}"
        ]:
            raise RecipeError(
                f"{self.run_name} holds checkpoints trained with --seed="
                f"{old[SEED_OPTION]}; resuming them with --seed="
                f"{self.options[SEED_OPTION]} would report seed "
                f"{self.options[SEED_OPTION]} for a model trained with seed "
                f"{old[SEED_OPTION]}. The default --output_folder has one folder "
                "per seed (.../seed_<seed>/...): leave it out, or give another "
                "--output_folder. Nothing was loaded."
            )
        targets = [k for k in sorted(keys) if old.get(k) != self.options.get(k)]
        if changed and set(targets) <= set(TARGET_OPTIONS):
            raise RecipeError(
                f"{self.run_name} holds checkpoints trained with other targets "
                "(changed: " + ", ".join(changed) + "); resuming them would mix two "
                "trainings in one model. Give this run another --output_folder (or "
                "--experiment_name), or delete that folder to retrain it. Nothing "
                "was loaded."
            )
        if changed:
            self._refuse("changed: " + ", ".join(changed))

    def check_manifests(self, manifests, write=True):
        """Compare the prepared manifests with the stored fingerprint.

        Arguments
        ---------
        manifests : sequence of path
            The manifests the run reads.
        write : bool
            Store the fingerprint when there is no checkpoint yet (the main
            process does; the others only check).
        """
        self.check_options()
        digests = {Path(m).name: manifest_digest(m) for m in manifests}
        if has_checkpoints(self.save_folder):
            stored = self.stored().get("manifests") or {}
            changed = sorted(
                name
                for name in set(stored) | set(digests)
                if stored.get(name) != digests.get(name)
            )
            if changed:
                self._refuse(
                    "the utterances or labels of " + ", ".join(changed) + " changed"
                )
            return
        if write:
            self.save_folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                self.path, {"options": self.options, "manifests": digests}
            )


def prepare_guarded(folder, prepare, guard=None):
    """Prepare a run's data into a staging copy of ``folder``; move it into
    place only when the run may proceed.

    1. ``folder`` (the run's manifest folder) is copied, with its
       modification times, to ``.<name>.staging`` next to it, so that the
       preparation still finds its previous outputs and skips work it did
       already;
    2. ``prepare(staging)`` writes the manifests there and returns their
       paths;
    3. ``guard.check_manifests(..., write=False)`` compares them with the
       fingerprint of the run's checkpoints: a refused run (or a failed
       preparation) removes the staging copy and the folders this call
       created, and the run folder is as it was;
    4. the staging copy replaces ``folder``.

    Arguments
    ---------
    folder : str or os.PathLike
        The manifest folder.
    prepare : callable
        ``prepare(staging_folder) -> list of manifest paths`` in it.
    guard : SplitGuard or None

    Returns
    -------
    list of pathlib.Path
        The manifests, in ``folder``.

    Example
    -------
    >>> import tempfile, json, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> def prepare(staging):
    ...     (staging / "train.json").write_text(json.dumps({"u1": {"emo": "ang"}}))
    ...     return [staging / "train.json"]
    >>> [p.name for p in prepare_guarded(run / "manifests", prepare)]
    ['train.json']
    >>> sorted(p.name for p in run.iterdir())
    ['manifests']
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()][1:]
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)  # a crashed earlier attempt
    try:
        if folder.is_dir():
            shutil.copytree(folder, staging, copy_function=shutil.copy2)
        else:
            staging.mkdir(parents=True)
        staged = [Path(path) for path in prepare(staging)]
        if guard is not None:
            guard.check_manifests(staged, write=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for path in created:  # deepest first; only the empty ones
            try:
                path.rmdir()
            except OSError:
                break
        raise
    previous = folder.with_name(f".{folder.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)
    return [folder / path.name for path in staged]
