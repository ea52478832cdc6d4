"""The convolutional position embedding of wav2vec 2.0 / HuBERT / WavLM,
run channels-last.

A grouped convolution with a 128-tap kernel over ``[batch, dim, time]``: on a
CPU the channels-last layout is about twice as fast, with the same weights
and output.
"""

import torch
import torch.nn.functional as F
from transformers.models.hubert.modeling_hubert import (
    HubertPositionalConvEmbedding,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2PositionalConvEmbedding,
)
from transformers.models.wavlm.modeling_wavlm import (
    WavLMPositionalConvEmbedding,
)


class _ChannelsLastPositionalConv:
    """Forward of the convolutional position embedding of wav2vec 2.0 /
    HuBERT / WavLM with a channels-last convolution.

    The embedding is a grouped convolution with a long kernel (128) over
    ``[batch, dim, time]``, the transpose of contiguous hidden states: as a
    2-D convolution on that layout (no copy) oneDNN runs it about twice as
    fast as transformers' 1-D call, with the same weights (weight norm
    included), result and gradients (training and eval mode).

    Example
    -------
    >>> from transformers import WavLMConfig
    >>> config = WavLMConfig(
    ...     hidden_size=16, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4
    ... )
    >>> conv = FastWavLMPositionalConvEmbedding(config).eval()
    >>> h = torch.randn(2, 10, 16)
    >>> slow = WavLMPositionalConvEmbedding.forward(conv, h)
    >>> torch.allclose(conv(h), slow, atol=1e-6)
    True
    """

    def forward(self, hidden_states):
        """Position embeddings ``[batch, time, dim]`` of ``hidden_states``."""
        if getattr(self, "batch_norm", None) is not None:
            return super().forward(hidden_states)
        conv = self.conv
        x = hidden_states.transpose(1, 2)[:, :, None, :]
        x = x.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(
            x,
            conv.weight[:, :, None, :],
            conv.bias,
            stride=(1, conv.stride[0]),
            padding=(0, conv.padding[0]),
            dilation=(1, conv.dilation[0]),
            groups=conv.groups,
        )
        out = self.activation(self.padding(out[:, :, 0, :]))
        return out.transpose(1, 2)


class FastWavLMPositionalConvEmbedding(
    _ChannelsLastPositionalConv, WavLMPositionalConvEmbedding
):
    """WavLM's position embedding, channels-last in eval mode."""


class FastWav2Vec2PositionalConvEmbedding(
    _ChannelsLastPositionalConv, Wav2Vec2PositionalConvEmbedding
):
    """wav2vec 2.0's position embedding, channels-last in eval mode."""


class FastHubertPositionalConvEmbedding(
    _ChannelsLastPositionalConv, HubertPositionalConvEmbedding
):
    """HuBERT's position embedding, channels-last in eval mode."""
