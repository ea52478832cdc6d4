"""Heads applied to a pooled utterance embedding: class logits or attributes."""

import torch
from torch import nn

OUTPUT_ACTIVATIONS = (None, "sigmoid")


def _check_activation(name):
    if name not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {name!r}."
        )
    return name


def _activate(outputs, name):
    return torch.sigmoid(outputs) if name == "sigmoid" else outputs


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
    output_activation : str or None
        ``None`` for logits; ``"sigmoid"`` bounds regression outputs to
        (0, 1) (attributes rescaled to the unit interval).

    Example
    -------
    >>> import torch
    >>> head = LinearHead(8, 4, bias=False)
    >>> head(torch.randn(3, 8)).shape
    torch.Size([3, 4])
    """

    def __init__(self, input_size, n_outputs, bias=False, output_activation=None):
        super().__init__()
        self.input_size = input_size
        self.n_outputs = n_outputs
        self.output_activation = _check_activation(output_activation)
        self.use_bias = bias
        self.linear = nn.Linear(input_size, n_outputs, bias=bias)

    def forward(self, embedding):
        """Return logits (or bounded values) ``[batch, n_outputs]``."""
        return _activate(self.linear(embedding), self.output_activation)


class MLPHead(nn.Module):
    """[Dropout] -> Linear -> LayerNorm -> ReLU -> Dropout -> Linear.

    The MSP-Podcast challenge baseline (``net/ser.py`` of
    msplabresearch/MSP-Podcast_Challenge) uses a hidden size of 1024 and
    dropout 0.5 both on the input (the pooled 2048-d attentive statistics of
    WavLM large) and after the activation.

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
    input_dropout : float
        Dropout probability on the input embedding (0: none).
    output_activation : str or None
        ``None`` for logits; ``"sigmoid"`` bounds regression outputs to (0, 1).

    Example
    -------
    >>> import torch
    >>> head = MLPHead(8, 3, hidden_size=16)
    >>> head(torch.randn(2, 8)).shape
    torch.Size([2, 3])
    >>> bounded = MLPHead(8, 3, hidden_size=16, output_activation="sigmoid")
    >>> values = bounded(torch.randn(5, 8))
    >>> bool(((values > 0) & (values < 1)).all())
    True
    """

    def __init__(
        self,
        input_size,
        n_outputs,
        hidden_size=1024,
        dropout=0.5,
        output_activation=None,
        input_dropout=0.0,
    ):
        super().__init__()
        self.input_size = input_size
        self.n_outputs = n_outputs
        self.output_activation = _check_activation(output_activation)
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.input_dropout = input_dropout
        # No parameters: the state-dict keys stay those of the layers below.
        self.input_dropout_layer = nn.Dropout(input_dropout)
        self.layers = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.LayerNorm(hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, n_outputs),
        )

    def forward(self, embedding):
        """Return logits (or bounded values) ``[batch, n_outputs]``."""
        hidden = self.layers(self.input_dropout_layer(embedding))
        return _activate(hidden, self.output_activation)
