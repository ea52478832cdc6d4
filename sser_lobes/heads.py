"""Classification heads applied to a pooled utterance embedding."""

from torch import nn


class LinearHead(nn.Module):
    """One linear layer from the embedding to class logits (system A).

    Wang et al. (2021) use ``Linear(768 -> 4, bias=False)`` after mean pooling.

    Arguments
    ---------
    input_size : int
        Embedding dimension.
    n_outputs : int
        Number of classes (or regression targets).
    bias : bool
        Whether the layer has a bias.

    Example
    -------
    >>> import torch
    >>> head = LinearHead(8, 4, bias=False)
    >>> head(torch.randn(3, 8)).shape
    torch.Size([3, 4])
    """

    def __init__(self, input_size, n_outputs, bias=False):
        super().__init__()
        self.input_size = input_size
        self.n_outputs = n_outputs
        self.linear = nn.Linear(input_size, n_outputs, bias=bias)

    def forward(self, embedding):
        """Return logits ``[batch, n_outputs]``."""
        return self.linear(embedding)


class MLPHead(nn.Module):
    """Linear -> LayerNorm -> ReLU -> Dropout -> Linear (Odyssey 2024 baseline).

    The MSP-Podcast challenge baseline uses a hidden size of 1024 and dropout
    0.5 after attentive statistics pooling of WavLM large (2048 inputs).

    Arguments
    ---------
    input_size : int
        Embedding dimension.
    n_outputs : int
        Number of classes (or regression targets).
    hidden_size : int
        Width of the hidden layer.
    dropout : float
        Dropout probability after the activation.

    Example
    -------
    >>> import torch
    >>> head = MLPHead(8, 3, hidden_size=16)
    >>> head(torch.randn(2, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, input_size, n_outputs, hidden_size=1024, dropout=0.5):
        super().__init__()
        self.input_size = input_size
        self.n_outputs = n_outputs
        self.layers = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.LayerNorm(hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, n_outputs),
        )

    def forward(self, embedding):
        """Return logits ``[batch, n_outputs]``."""
        return self.layers(embedding)
