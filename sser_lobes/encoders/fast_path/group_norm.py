"""The first CNN layer's group norm, with statistics over valid frames only.

wav2vec2-base and HuBERT-base normalise the first convolution's output per
channel over time; over a padded batch, stock transformers lets the padding
into those statistics (a 0.59 feature shift measured in BRIEF.md).
:class:`MaskedGroupNorm` takes the valid frames from the encoder call's state.
"""

import torch
from torch import nn

from sser_lobes.encoders.fast_path.call_state import CURRENT_CALL


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel group norm whose statistics ignore padded frames.

    Drop-in replacement (same parameters and state-dict keys) for the
    ``nn.GroupNorm(num_groups=C, num_channels=C)`` of the first CNN layer of
    wav2vec2-base style models. The number of valid frames of each row is
    passed as ``valid_frames`` or, when transformers calls the module inside
    :meth:`SSLEncoder.forward`, read from that call's state
    (:class:`EncoderCall`); without either it is a plain group norm.
    :class:`SSLEncoder` uses it when the CNN trains (``finetune="entire"``);
    in eval mode the CNN runs utterance by utterance and needs no mask.

    Arguments
    ---------
    num_channels : int
        Number of channels (one group per channel).
    eps : float
        Added to the variance.

    Example
    -------
    >>> norm = MaskedGroupNorm(4)
    >>> x = torch.randn(1, 4, 10)
    >>> padded = torch.cat([x, torch.randn(1, 4, 6)], dim=2)
    >>> y = norm(padded, valid_frames=torch.tensor([10]))[..., :10]
    >>> torch.allclose(y, norm(x), atol=1e-5)
    True
    """

    def __init__(self, num_channels, eps=1e-5):
        super().__init__(num_channels, num_channels, eps=eps, affine=True)

    def forward(self, x, valid_frames=None):
        """Normalise ``x`` ``[batch, channels, time]`` over its valid frames.

        Padded frames are set to zero. The statistics of each row are taken
        on its valid slice, then one fused scale-and-shift pass normalises
        the batch; a batch without padding goes through the plain group norm.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, time]`` activations.
        valid_frames : torch.Tensor or None
            Long ``[batch]``: valid frames of each row. ``None`` takes them
            from the running :meth:`SSLEncoder.forward` call, if any.
        """
        if valid_frames is None:
            call = CURRENT_CALL.get()
            if call is not None and call.first_norm_frames is not None:
                if call.first_norm_frames.shape[0] == x.shape[0]:
                    valid_frames = call.first_norm_frames
        if valid_frames is None:
            return super().forward(x)
        length = x.shape[-1]
        frames = valid_frames.to(x.device).clamp(max=length)
        if bool((frames >= length).all()):
            return super().forward(x)
        x32 = x.float()
        stats = [
            torch.var_mean(x32[row, :, : max(n, 1)], dim=-1, correction=0)
            for row, n in enumerate(frames.tolist())
        ]
        var = torch.stack([v for v, _ in stats])
        mean = torch.stack([m for _, m in stats])
        scale = self.weight.float() * torch.rsqrt(var + self.eps)
        shift = self.bias.float() - mean * scale
        y = torch.addcmul(shift[:, :, None], x32, scale[:, :, None])
        padded = torch.arange(length, device=x.device)[None, :] >= frames[:, None]
        return y.masked_fill_(padded[:, None, :], 0.0).to(x.dtype)
