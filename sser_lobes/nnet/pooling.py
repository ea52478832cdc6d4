"""Time pooling over the valid frames of padded sequences.

Every pooling takes features ``[batch, frames, input_size]`` and SpeechBrain
relative lengths ``[batch]`` and returns ``[batch, output_size]``. Padded
frames never enter the statistics, so an utterance pools to the same vector
alone or in a padded batch.

* :class:`MeanPooling`: average (system A, Wang et al. 2021).
* :class:`StdPooling`, :class:`MeanStdPooling`: standard deviation, and mean
  with standard deviation (system B, Diatlova et al. 2024, found std best).
* :class:`AttentiveStatisticsPooling`: attention-weighted mean and standard
  deviation (the MSP-Podcast / Odyssey 2024 challenge baseline).
"""

import torch
from torch import nn

from sser_lobes.encoders.ssl_encoder import length_mask, relative_to_absolute

STD_FLOOR = 1e-5


def frame_mask(feats, lengths):
    """Float mask ``[batch, frames, 1]``: 1 on valid frames, 0 on padding.

    Arguments
    ---------
    feats : torch.Tensor
        ``[batch, frames, dim]``.
    lengths : torch.Tensor or None
        Relative lengths ``[batch]``; ``None`` means no padding.

    Example
    -------
    >>> frame_mask(torch.zeros(2, 4, 3), torch.tensor([1.0, 0.5]))[..., 0]
    tensor([[1., 1., 1., 1.],
            [1., 1., 0., 0.]])
    """
    batch, frames = feats.shape[:2]
    if lengths is None:
        return feats.new_ones(batch, frames, 1)
    absolute = relative_to_absolute(lengths.cpu(), frames).to(feats.device)
    return length_mask(absolute, frames).to(feats.dtype)[:, :, None]


def masked_mean_std(feats, weights):
    """Weighted mean and standard deviation over time.

    Arguments
    ---------
    feats : torch.Tensor
        ``[batch, frames, dim]``.
    weights : torch.Tensor
        ``[batch, frames, 1]``, non-negative, summing to one over valid frames
        and zero on padding.

    Returns
    -------
    mean, std : torch.Tensor
        ``[batch, dim]`` each; the std is floored at ``sqrt(1e-5)`` so that its
        gradient stays finite on constant inputs.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> w = torch.tensor([[[0.5], [0.5], [0.0]]])
    >>> mean, std = masked_mean_std(x, w)
    >>> mean, std
    (tensor([[2.]]), tensor([[1.]]))
    """
    feats = feats.float()
    weights = weights.float()
    mean = (feats * weights).sum(dim=1)
    var = (weights * (feats - mean[:, None, :]) ** 2).sum(dim=1)
    return mean, torch.sqrt(var.clamp(min=STD_FLOOR))


def _uniform_weights(feats, lengths):
    mask = frame_mask(feats, lengths).float()
    return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


class MeanPooling(nn.Module):
    """Average of the valid frames.

    Arguments
    ---------
    input_size : int
        Feature dimension (``output_size`` equals it).

    Example
    -------
    >>> pool = MeanPooling(2)
    >>> x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    >>> pool(x, torch.tensor([2 / 3]))
    tensor([[2., 3.]])
    """

    def __init__(self, input_size):
        super().__init__()
        self.input_size = input_size
        self.output_size = input_size

    def forward(self, feats, lengths=None):
        """Pool ``[batch, frames, dim]`` to ``[batch, dim]``."""
        weights = _uniform_weights(feats, lengths)
        return (feats.float() * weights).sum(dim=1).to(feats.dtype)


class StdPooling(nn.Module):
    """Standard deviation of the valid frames (biased estimate).

    Example
    -------
    >>> pool = StdPooling(1)
    >>> pool(torch.tensor([[[1.0], [3.0], [50.0]]]), torch.tensor([2 / 3]))
    tensor([[1.]])
    """

    def __init__(self, input_size):
        super().__init__()
        self.input_size = input_size
        self.output_size = input_size

    def forward(self, feats, lengths=None):
        """Pool ``[batch, frames, dim]`` to ``[batch, dim]``."""
        _, std = masked_mean_std(feats, _uniform_weights(feats, lengths))
        return std.to(feats.dtype)


class MeanStdPooling(nn.Module):
    """Mean and standard deviation of the valid frames, concatenated.

    Example
    -------
    >>> pool = MeanStdPooling(1)
    >>> pool.output_size
    2
    >>> pool(torch.tensor([[[1.0], [3.0], [50.0]]]), torch.tensor([2 / 3]))
    tensor([[2., 1.]])
    """

    def __init__(self, input_size):
        super().__init__()
        self.input_size = input_size
        self.output_size = 2 * input_size

    def forward(self, feats, lengths=None):
        """Pool ``[batch, frames, dim]`` to ``[batch, 2 * dim]``."""
        mean, std = masked_mean_std(feats, _uniform_weights(feats, lengths))
        return torch.cat([mean, std], dim=-1).to(feats.dtype)


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over valid frames.

    As in the Odyssey 2024 MSP-Podcast challenge baseline: frame scores
    ``tanh(W x_t + b) . v``, softmax over the valid frames, then the weighted
    mean and standard deviation, concatenated (``2 * input_size``). The
    baseline loops over utterances; this version is batched and masks the
    padding, which gives the same numbers.

    Arguments
    ---------
    input_size : int
        Feature dimension.

    Example
    -------
    >>> pool = AttentiveStatisticsPooling(4)
    >>> x = torch.randn(1, 5, 4)
    >>> padded = torch.cat([x, torch.randn(1, 3, 4)], dim=1)
    >>> alone = pool(x)
    >>> batched = pool(padded, torch.tensor([5 / 8]))
    >>> alone.shape, torch.allclose(alone, batched, atol=1e-6)
    (torch.Size([1, 8]), True)
    """

    def __init__(self, input_size):
        super().__init__()
        self.input_size = input_size
        self.output_size = 2 * input_size
        self.sap_linear = nn.Linear(input_size, input_size)
        self.attention = nn.Parameter(torch.empty(input_size, 1))
        nn.init.normal_(self.attention, mean=0.0, std=1.0)

    def forward(self, feats, lengths=None):
        """Pool ``[batch, frames, dim]`` to ``[batch, 2 * dim]``."""
        mask = frame_mask(feats, lengths)
        scores = torch.tanh(self.sap_linear(feats)) @ self.attention
        scores = scores.float().masked_fill(mask == 0, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        mean, std = masked_mean_std(feats, weights)
        return torch.cat([mean, std], dim=-1).to(feats.dtype)


POOLINGS = {
    "mean": MeanPooling,
    "std": StdPooling,
    "mean_std": MeanStdPooling,
    "attentive_statistics": AttentiveStatisticsPooling,
}


def make_pooling(name, input_size):
    """Build a pooling layer by name, so that YAML can switch it with one key.

    Arguments
    ---------
    name : str
        One of ``"mean"``, ``"std"``, ``"mean_std"``,
        ``"attentive_statistics"``.
    input_size : int
        Feature dimension.

    Example
    -------
    >>> make_pooling("mean_std", 8).output_size
    16
    """
    if name not in POOLINGS:
        raise ValueError(f"Unknown pooling {name!r}; choose one of {sorted(POOLINGS)}.")
    return POOLINGS[name](input_size)
