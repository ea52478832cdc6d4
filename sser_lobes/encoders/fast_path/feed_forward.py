"""Feed-forward blocks that skip padded frames.

The two dense layers of each transformer block run on the valid frames of
the batch only (:func:`scatter_rows` puts them back into a zero-padded
tensor), so padding costs nothing there. The attention's projections use the
same packing.
"""

import math

import torch
import torch.nn.functional as F
from transformers.activations import GELUActivation
from transformers.models.hubert.modeling_hubert import (
    HubertFeedForward,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2FeedForward,
)
from transformers.models.wavlm.modeling_wavlm import (
    WavLMFeedForward,
)

from sser_lobes.encoders.fast_path.call_state import CURRENT_CALL


def _activate(activation, x):
    """``activation(x)``, in place for the exact GELU of transformers when
    ``x`` is a temporary that autograd does not track (no new buffer)."""
    if (
        isinstance(activation, GELUActivation)
        and activation.act is F.gelu
        and not x.requires_grad
    ):
        return torch.ops.aten.gelu_(x)
    return activation(x)


def scatter_rows(values, rows, frame_shape):
    """``[*frame_shape, dim]`` tensor of the per-frame ``values`` computed on
    the valid frames ``rows`` (flat indices; padded frames get zeros), or
    ``values`` reshaped when ``rows`` is ``None`` (every frame computed).

    Example
    -------
    >>> scatter_rows(torch.ones(2, 3), torch.tensor([0, 2]), (1, 3))[0, :, 0]
    tensor([1., 0., 1.])
    """
    if rows is None:
        return values.view(*frame_shape, values.shape[-1])
    full = values.new_zeros(math.prod(frame_shape), values.shape[-1])
    return full.index_copy(0, rows, values).view(*frame_shape, values.shape[-1])


class _PackedFeedForward:
    """Forward of a transformer layer's feed-forward block that skips padded
    frames, in training and in eval mode.

    The feed-forward block is two thirds of a transformer layer's matrix
    products and works frame by frame; padded frames never reach a valid one
    (attention masks them out as keys) nor the loss, so only the valid frames
    are computed (padded rows get zeros) and the gradients are those of the
    full block. Their flat indices are passed as
    ``valid_rows`` or, when transformers calls the block inside
    :meth:`SSLEncoder.forward`, read from that call's state
    (:class:`EncoderCall`).

    Example
    -------
    >>> from transformers import WavLMConfig
    >>> ffn = FastWavLMFeedForward(WavLMConfig(hidden_size=8, intermediate_size=16))
    >>> ffn = ffn.eval()
    >>> h = torch.randn(2, 3, 8)
    >>> rows = torch.tensor([0, 1, 2, 3])  # the second utterance: 1 frame
    >>> out = ffn(h, valid_rows=rows)
    >>> torch.allclose(out[0], WavLMFeedForward.forward(ffn, h)[0], atol=1e-6)
    True
    >>> out[1, 1:].abs().max().item()
    0.0
    """

    def forward(self, hidden_states, valid_rows=None):
        """Feed-forward output of ``[batch, time, dim]`` hidden states.

        ``valid_rows`` (long ``[n]``, flat indices of the valid frames in
        ``[batch * time]``) defaults to those of the running
        :meth:`SSLEncoder.forward` call; ``None`` there: every frame.
        """
        rows = valid_rows
        if rows is None:
            call = CURRENT_CALL.get()
            if call is not None and call.frame_shape == hidden_states.shape[:2]:
                rows = call.valid_rows
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        if rows is not None:
            flat = flat.index_select(0, rows)
        inner = _activate(self.intermediate_act_fn, self.intermediate_dense(flat))
        if self.training:  # the dropouts are identities in eval mode
            inner = self.intermediate_dropout(inner)
        out = self.output_dense(inner)
        if self.training:
            out = self.output_dropout(out)
        return scatter_rows(out, rows, hidden_states.shape[:-1])


class FastWavLMFeedForward(_PackedFeedForward, WavLMFeedForward):
    """WavLM's feed-forward block, on valid frames only."""


class FastWav2Vec2FeedForward(_PackedFeedForward, Wav2Vec2FeedForward):
    """wav2vec 2.0's feed-forward block, on valid frames only."""


class FastHubertFeedForward(_PackedFeedForward, HubertFeedForward):
    """HuBERT's feed-forward block, on valid frames only."""
