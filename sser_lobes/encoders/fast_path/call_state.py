"""The batch of the current :meth:`SSLEncoder.forward` call, for the fast
modules that transformers calls without it.

:data:`CURRENT_CALL` is a context variable holding an :class:`EncoderCall`
(the padded shape, the sample and frame lengths of the batch): one value per
thread and asyncio task, so one encoder can serve concurrent calls.

Example
-------
>>> CURRENT_CALL.get() is None  # outside a forward pass
True
"""

import contextvars
from typing import NamedTuple

import torch


class EncoderCall(NamedTuple):
    """What the model's modules need to know about the batch of one
    :meth:`SSLEncoder.forward` call.

    :meth:`SSLEncoder.forward` sets it in :data:`CURRENT_CALL` for the
    duration of the transformers forward pass and resets it afterwards; the
    modules read it there. A context variable has one value per thread (and
    per asyncio task), so calls running at the same time on one encoder, or
    on DataParallel replicas, never see each other's batch, and nested calls
    (one encoder inside another model's forward) restore the outer state.
    Each module checks that the tensor it receives has the shape of this
    call's batch and otherwise runs its plain transformers code.

    Attributes
    ----------
    input_shape : tuple of int
        ``(batch, samples)`` of the padded waveforms.
    sample_lengths : torch.Tensor
        Long ``[batch]``: valid samples of each row.
    cnn_chunk_frames : int or None
        The eval-mode feature encoder runs each row's valid samples alone
        (:meth:`UtteranceWiseFeatureEncoder.utterance_features`), in chunks
        of this many frames; ``None``: the CNN runs batched.
    first_norm_frames : torch.Tensor or None
        Long ``[batch]``: valid frames of the first CNN layer, for the
        group norm of a batched CNN (:class:`MaskedGroupNorm`).
    frame_shape : tuple of int
        ``(batch, frames)`` of the transformer's hidden states.
    valid_rows : torch.Tensor or None
        Flat indices of the valid frames in ``[batch * frames]``, for the
        feed-forward blocks (:class:`_PackedFeedForward`); ``None`` when
        the batch has no padded frame.
    """

    input_shape: tuple
    sample_lengths: torch.Tensor
    cnn_chunk_frames: int | None
    first_norm_frames: torch.Tensor | None
    frame_shape: tuple
    valid_rows: torch.Tensor | None


#: The :class:`EncoderCall` of the running :meth:`SSLEncoder.forward` in this
#: thread or task (``None`` outside one).
CURRENT_CALL = contextvars.ContextVar("sser_ssl_encoder_call", default=None)
