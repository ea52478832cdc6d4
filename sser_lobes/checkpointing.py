"""Checkpoint helpers so that an interrupted run resumes exactly where it was."""

import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


@register_checkpoint_hooks
class RNGState:
    """Saves and restores the Python, NumPy and torch random states.

    Add it to a SpeechBrain ``Checkpointer`` (``recoverables`` in YAML): a run
    interrupted after epoch ``k`` and resumed then draws the same dropout
    masks, SpecAugment masks and layer drops as a run that never stopped, so
    it ends with the same model. Only the main process saves (SpeechBrain's
    default); under DDP every process resumes from the main process' state.

    Example
    -------
    >>> import tempfile, pathlib
    >>> state = RNGState()
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rng.ckpt"
    >>> state._save(path)
    >>> first = torch.rand(1)
    >>> state._recover(path, end_of_epoch=True)
    >>> bool(torch.rand(1) == first)
    True
    """

    @mark_as_saver
    def _save(self, path):
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch
        state = torch.load(path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
