"""The utterance-level emotion model: SSL encoder -> time pooling -> head.

Training (the recipes' ``compute_forward``) and inference (the pretrained
interface) both call :class:`EmotionModel`, so they cannot drift apart.
"""

from torch import nn


class EmotionModel(nn.Module):
    """Waveforms to utterance logits through an encoder, a pooling and a head,
    optionally conditioned on gender and fused with a text embedding.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps ``(wavs, wav_lens)`` to ``(feats, feat_lens)``, e.g.
        :class:`sser_lobes.SSLEncoder`.
    pooling : torch.nn.Module
        Maps ``(feats, feat_lens)`` to an embedding ``[batch, dim]``.
    head : torch.nn.Module
        Maps the embedding to logits ``[batch, n_outputs]`` (or, for an
        attribute head, the regressed values).
    gender : sser_lobes.nnet.gender.GenderConditioning or None
        Conditions the pooled embedding on gender (label or prediction).
    text_fusion : sser_lobes.nnet.text_fusion.TextFusion or None
        Fuses the embedding with a text embedding.

    Example
    -------
    >>> import tempfile, torch
    >>> from sser_lobes import SSLEncoder, MeanPooling, LinearHead
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> encoder = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"))
    >>> model = EmotionModel(encoder, MeanPooling(32), LinearHead(32, 4))
    >>> out = model(torch.randn(2, 8000), torch.tensor([1.0, 0.6]))
    >>> out["logits"].shape, out["embedding"].shape
    (torch.Size([2, 4]), torch.Size([2, 32]))
    """

    def __init__(self, encoder, pooling, head, gender=None, text_fusion=None):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = head
        self.gender = gender
        self.text_fusion = text_fusion

    def forward(
        self,
        wavs=None,
        wav_lens=None,
        gender=None,
        text=None,
        has_text=None,
        hidden=None,
        hidden_lens=None,
    ):
        """Return a dict with ``logits``, the final ``embedding`` and, with
        gender conditioning, ``gender_logits``.

        Arguments
        ---------
        wavs, wav_lens : torch.Tensor
            Padded waveforms ``[batch, samples]`` and relative lengths.
        gender : torch.Tensor or None
            Gender indices (0 F, 1 M, -1 unknown); ``None`` at inference: the
            model's own gender prediction is used.
        text : torch.Tensor or None
            Text embeddings ``[batch, dim]`` (required with text fusion).
        has_text : torch.Tensor or None
            Bool ``[batch]``: False where the utterance has no transcript.
        hidden, hidden_lens : torch.Tensor or None
            Instead of waveforms: the encoder's hidden states ``[batch,
            frames, layers, hidden_size]`` and their relative lengths, as
            ``encoder.hidden_states`` computes them (read from a
            :mod:`~sser_lobes.training.feature_cache`); the encoder's live part
            (``encoder.features_from_hidden``) still runs.
        """
        if hidden is not None:
            feats, feat_lens = self.encoder.features_from_hidden(hidden, hidden_lens)
        else:
            feats, feat_lens = self.encoder(wavs, wav_lens)
        embedding = self.pooling(feats, feat_lens)
        out = {}
        if self.gender is not None:
            embedding, out["gender_logits"] = self.gender(embedding, gender)
        if self.text_fusion is not None:
            if text is None:
                raise ValueError(
                    "this model fuses text: pass the text embeddings (text=...)."
                )
            embedding = self.text_fusion(
                embedding, text, has_text, frames=feats, frame_lens=feat_lens
            )
        out["logits"] = self.head(embedding)
        out["embedding"] = embedding
        return out
