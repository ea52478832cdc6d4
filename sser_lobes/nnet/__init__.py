"""The emotion model's neural-network parts, after the encoder.

Owns time pooling over valid frames, the heads (linear, MLP), gender
conditioning, text fusion, :class:`~sser_lobes.nnet.model.EmotionModel`
(encoder -> pooling -> [gender, text] -> head) and the losses (weighted
cross-entropy, focal, CCC).

May import: :mod:`sser_lobes.errors`, :mod:`sser_lobes.encoders`.
"""
