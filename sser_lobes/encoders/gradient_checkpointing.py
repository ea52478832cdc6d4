"""Gradient checkpointing of the SSL encoder's layers.

Each transformer layer (and the CNN when it trains) recomputes its
activations in the backward pass instead of storing them. The recompute runs
outside :meth:`SSLEncoder.forward`, so :func:`checkpoint_contexts` gives it
the forward pass's call state and random state (dropout masks are replayed:
the gradients equal those without checkpointing, ``tests/test_checkpointing``
of the encoder). :func:`enable_checkpointing` switches it on for a model.
"""

import contextlib

from sser_lobes.encoders.fast_path.call_state import CURRENT_CALL


def checkpoint_contexts():
    """``context_fn`` of ``torch.utils.checkpoint``: the recompute of a
    checkpointed layer (in the backward pass, outside
    :meth:`SSLEncoder.forward`) sees the call state of the forward pass.

    Returns
    -------
    tuple
        (context of the forward pass, context of the recompute).

    Example
    -------
    >>> forward, recompute = checkpoint_contexts()
    >>> with recompute:
    ...     CURRENT_CALL.get() is None  # no call state outside a forward
    True
    """
    call = CURRENT_CALL.get()

    @contextlib.contextmanager
    def replay():
        token = CURRENT_CALL.set(call)
        try:
            yield
        finally:
            CURRENT_CALL.reset(token)

    return contextlib.nullcontext(), replay()


def enable_checkpointing(model):
    """Gradient (activation) checkpointing of a transformers model's layers,
    non-reentrant, with the call state replayed in the recompute.

    Activations of each transformer layer (and of a trained CNN's layers) are
    recomputed in the backward pass instead of being stored; the random state
    is restored for the recompute, so dropout masks are the same and the
    gradients equal those of a run without checkpointing.
    """
    kwargs = {"use_reentrant": False, "context_fn": checkpoint_contexts}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers before the activation_checkpointing_* names
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
