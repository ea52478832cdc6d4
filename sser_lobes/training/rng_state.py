"""Checkpoint helpers so that an interrupted run resumes exactly where it was."""

import logging
import pickle
import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

logger = logging.getLogger(__name__)

#: Version of the file layout written by :class:`RNGState`.
RNG_FORMAT = 2


def _distributed():
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def current_rng_state():
    """This process' Python, NumPy, torch (and CUDA device) random states.

    Only plain containers, numbers and tensors, so that the state loads with
    ``torch.load(..., weights_only=True)``.

    Example
    -------
    >>> state = current_rng_state()
    >>> sorted(state)
    ['numpy', 'python', 'torch']
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            pos,
            has_gauss,
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's own device
    return state


def set_rng_state(state):
    """Restore a state of :func:`current_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@register_checkpoint_hooks
class RNGState:
    """Saves and restores the Python, NumPy and torch random states of every rank.

    Add it to a SpeechBrain ``Checkpointer`` (``recoverables`` in YAML): a run
    interrupted after epoch ``k`` and resumed then draws the same dropout
    masks, SpecAugment masks and layer drops as a run that never stopped, so
    it ends with the same model.

    Under DDP only the main process writes checkpoints, so every rank calls
    :meth:`gather` just before a checkpoint is saved (the recipes'
    ``SERBrain`` does): the main process then writes one state per rank, and
    on resume each rank restores its own (not rank 0's). The file loads with
    ``torch.load(..., weights_only=True)``: a crafted checkpoint cannot run
    code. A file of the earlier pickle format is not loaded (the random
    states then stay as they are, with a warning).

    Example
    -------
    >>> import tempfile, pathlib
    >>> state = RNGState()
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rng.ckpt"
    >>> state.gather()  # on every rank, before the checkpoint
    >>> state._save(path)
    >>> first = torch.rand(1)
    >>> state._recover(path, end_of_epoch=True)
    >>> bool(torch.rand(1) == first)
    True
    """

    def __init__(self):
        self._gathered = None

    def gather(self):
        """Collect every rank's state on the main process (call on all ranks)."""
        state = current_rng_state()
        if _distributed() and torch.distributed.get_world_size() > 1:
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, state)
        else:
            states = [state]
        self._gathered = states

    @mark_as_saver
    def _save(self, path):
        states = self._gathered or [current_rng_state()]
        self._gathered = None
        torch.save({"format": RNG_FORMAT, "ranks": states}, path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch
        try:
            data = torch.load(path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError) as error:
            logger.warning(
                "%s: not a weights-only RNG state (earlier format?); the random "
                "states are not restored (%s)",
                path,
                str(error).splitlines()[0],
            )
            return
        states = data["ranks"]
        rank = torch.distributed.get_rank() if _distributed() else 0
        if rank >= len(states):
            logger.warning(
                "%s holds %d rank state(s), this is rank %d: using rank 0's",
                path,
                len(states),
                rank,
            )
            rank = 0
        set_rng_state(states[rank])
