"""A run folder never resumes a model trained on another split.

SpeechBrain's ``Checkpointer`` recovers whatever checkpoint it finds in the
save folder. A run folder is named from a few options (experiment, seed,
fold), so a rerun with another validation ratio, split seed, protocol or
corpus lands in the same folder; the preparation rebuilds the manifests, the
old model is recovered, and the test score silently includes utterances that
model was trained on.

:class:`SplitGuard` stores a *split fingerprint* next to the checkpoints: the
protocol options of the run and a digest of each manifest's membership and
labels (utterance ids and every field except the audio path, so moving the
corpus keeps the fingerprint). A run whose save folder holds checkpoints is
refused, with a :class:`sser_lobes.errors.RecipeError` that says what
changed, unless its fingerprint is the stored one:

* :meth:`SplitGuard.check_options` before anything is written into the run
  folder (the options are known from the hparams preview);
* :meth:`SplitGuard.check_manifests` after the preparation, before the
  ``Checkpointer`` recovers anything; it stores the fingerprint when the save
  folder has no checkpoint yet.
"""

import hashlib
import json
from pathlib import Path

from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.errors import RecipeError

FINGERPRINT_FILE = "split_fingerprint.json"
#: Manifest fields that locate the data rather than define it.
LOCATION_FIELDS = ("wav", "text_file", "file", "path")


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
        """Refuse when checkpoints exist and the protocol options differ."""
        if not has_checkpoints(self.save_folder):
            return
        stored = self.stored()
        if stored is None:
            self._refuse(f"no readable {FINGERPRINT_FILE}, so the split is unknown")
        old = stored.get("options") or {}
        changed = [
            f"{k} {old.get(k)!r} -> {self.options.get(k)!r}"
            for k in sorted(set(old) | set(self.options))
            if old.get(k) != self.options.get(k)
        ]
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
