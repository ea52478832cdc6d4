"""Fusion of the audio embedding with a cached text (transcript) embedding.

System B (Diatlova et al. 2024) added semantic information from transcripts
embedded by a pretrained language model; it helped less than gender or hurt,
so the fusion is a switchable lobe for ablations. The text embeddings come
from :mod:`sser_lobes.text.embedder` (computed once and cached, never during training
epochs). An utterance without transcript uses a learned empty-text embedding
(``has_text`` False).
"""

import torch
from torch import nn

from sser_lobes.nnet.pooling import frame_mask

FUSION_MODES = ("concat", "gated", "cross_attention")


class TextFusion(nn.Module):
    """Combine an utterance's audio embedding with its text embedding.

    Arguments
    ---------
    audio_size : int
        Size of the (pooled, maybe gender-conditioned) audio embedding.
    text_size : int
        Size of the cached text embedding.
    mode : str
        ``"concat"``: ``[audio, W_t text]``;
        ``"gated"``: ``z * W_a audio + (1 - z) * W_t text`` with a learned
        gate ``z = sigmoid(W_z [W_a audio, W_t text])``;
        ``"cross_attention"``: the text embedding queries the SSL frames
        (multi-head attention over valid frames only) and the result is
        appended: ``[audio, attended frames, W_t text]``.
    hidden_size : int
        Width of the projections.
    frame_size : int or None
        Size of the SSL frames (``"cross_attention"`` only).
    num_heads : int
        Attention heads (``"cross_attention"`` only).
    dropout : float
        Dropout on the projected text.

    Example
    -------
    >>> fusion = TextFusion(8, 6, mode="gated", hidden_size=4)
    >>> out = fusion(torch.randn(2, 8), torch.randn(2, 6), torch.tensor([True, False]))
    >>> out.shape, fusion.output_size
    (torch.Size([2, 4]), 4)
    >>> attn = TextFusion(8, 6, "cross_attention", 4, frame_size=5, num_heads=2)
    >>> frames = torch.randn(2, 7, 5)
    >>> attn(torch.randn(2, 8), torch.randn(2, 6), None, frames, torch.ones(2)).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        audio_size,
        text_size,
        mode="concat",
        hidden_size=256,
        frame_size=None,
        num_heads=4,
        dropout=0.1,
    ):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"mode must be one of {FUSION_MODES}, got {mode!r}.")
        self.mode = mode
        self.audio_size = audio_size
        self.text_size = text_size
        self.hidden_size = hidden_size
        self.frame_size = frame_size
        self.num_heads = num_heads
        self.dropout = dropout
        self.empty_text = nn.Parameter(torch.zeros(text_size))
        self.text_proj = nn.Sequential(
            nn.Linear(text_size, hidden_size), nn.ReLU(), nn.Dropout(dropout)
        )
        if mode == "concat":
            self.output_size = audio_size + hidden_size
        elif mode == "gated":
            self.audio_proj = nn.Linear(audio_size, hidden_size)
            self.gate = nn.Linear(2 * hidden_size, hidden_size)
            self.output_size = hidden_size
        else:
            if frame_size is None:
                raise ValueError("cross_attention fusion needs frame_size.")
            self.query = nn.Linear(text_size, hidden_size)
            self.attention = nn.MultiheadAttention(
                hidden_size,
                num_heads,
                kdim=frame_size,
                vdim=frame_size,
                batch_first=True,
            )
            self.output_size = audio_size + 2 * hidden_size

    def forward(self, audio, text, has_text=None, frames=None, frame_lens=None):
        """Fuse ``audio`` ``[batch, audio_size]`` with ``text`` ``[batch, text_size]``.

        Arguments
        ---------
        audio : torch.Tensor
            Audio embeddings.
        text : torch.Tensor
            Text embeddings (rows of utterances without text are ignored).
        has_text : torch.Tensor or None
            Bool ``[batch]``; False rows use the learned empty-text embedding.
        frames, frame_lens : torch.Tensor
            SSL frames ``[batch, frames, frame_size]`` and relative lengths
            (``"cross_attention"`` only).

        Returns
        -------
        torch.Tensor
            ``[batch, output_size]``.
        """
        text = text.to(audio.dtype)
        if has_text is not None:
            keep = has_text.to(device=audio.device).bool().reshape(-1, 1)
            text = torch.where(keep, text, self.empty_text.to(audio.dtype))
        projected = self.text_proj(text)
        if self.mode == "concat":
            return torch.cat([audio, projected], dim=-1)
        if self.mode == "gated":
            audio_h = self.audio_proj(audio)
            gate = torch.sigmoid(self.gate(torch.cat([audio_h, projected], dim=-1)))
            return gate * audio_h + (1 - gate) * projected
        if frames is None:
            raise ValueError("cross_attention fusion needs the SSL frames.")
        valid = frame_mask(frames, frame_lens)[..., 0] > 0
        query = self.query(text)[:, None, :]
        attended, _ = self.attention(
            query,
            frames.to(query.dtype),
            frames.to(query.dtype),
            key_padding_mask=~valid,
            need_weights=False,
        )
        return torch.cat([audio, attended[:, 0], projected], dim=-1)
