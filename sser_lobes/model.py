"""The utterance-level emotion model: SSL encoder -> time pooling -> head.

Training (the recipes' ``compute_forward``) and inference (the pretrained
interface) both call :class:`EmotionModel`, so they cannot drift apart.
"""

from torch import nn


class EmotionModel(nn.Module):
    """Waveforms to utterance logits through an encoder, a pooling and a head.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps ``(wavs, wav_lens)`` to ``(feats, feat_lens)``, e.g.
        :class:`sser_lobes.SSLEncoder`.
    pooling : torch.nn.Module
        Maps ``(feats, feat_lens)`` to an embedding ``[batch, dim]``.
    head : torch.nn.Module
        Maps the embedding to logits ``[batch, n_outputs]``.

    Example
    -------
    >>> import tempfile, torch
    >>> from sser_lobes import SSLEncoder, MeanPooling, LinearHead
    >>> from sser_lobes.tiny_ssl import make_tiny_ssl
    >>> encoder = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"))
    >>> model = EmotionModel(encoder, MeanPooling(32), LinearHead(32, 4))
    >>> out = model(torch.randn(2, 8000), torch.tensor([1.0, 0.6]))
    >>> out["logits"].shape, out["embedding"].shape
    (torch.Size([2, 4]), torch.Size([2, 32]))
    """

    def __init__(self, encoder, pooling, head):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = head

    def forward(self, wavs, wav_lens=None):
        """Return a dict with ``logits`` and the pooled ``embedding``."""
        feats, feat_lens = self.encoder(wavs, wav_lens)
        embedding = self.pooling(feats, feat_lens)
        return {"logits": self.head(embedding), "embedding": embedding}
