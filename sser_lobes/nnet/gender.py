"""Gender conditioning of the utterance embedding (system B, Diatlova et al. 2024).

Emotion is expressed differently by female and male speakers (pitch range,
energy). :class:`GenderConditioning` conditions the pooled embedding on the
speaker's gender and predicts that gender with its own head (trained as an
auxiliary task):

* in training, the corpus label is used (teacher forcing) where it is known;
* at inference, or for utterances whose gender is unknown, the model's own
  prediction is used, so a trained model needs nothing but audio.

Gender indices: 0 female, 1 male, -1 unknown (see :func:`gender_index`).
"""

import torch
from torch import nn

GENDERS = ("F", "M")
CONDITIONING_MODES = ("embedding", "film", "concat")
UNKNOWN = -1

_ALIASES = {"f": 0, "female": 0, "w": 0, "woman": 0, "m": 1, "male": 1, "man": 1}


def gender_index(value):
    """Map a corpus gender label to 0 (female), 1 (male) or -1 (unknown).

    IEMOCAP writes ``F`` / ``M``, MSP-Podcast ``Female`` / ``Male``; anything
    else (``Unknown``, empty, None) is unknown.

    Example
    -------
    >>> [gender_index(g) for g in ("F", "Male", "Unknown", None)]
    [0, 1, -1, -1]
    """
    if value is None:
        return UNKNOWN
    return _ALIASES.get(str(value).strip().lower(), UNKNOWN)


class GenderConditioning(nn.Module):
    """Predicts the speaker's gender and conditions the embedding on it.

    Arguments
    ---------
    input_size : int
        Size of the pooled utterance embedding.
    mode : str
        ``"embedding"``: add a learned vector per gender;
        ``"film"``: FiLM, ``x * (1 + gamma_g) + beta_g`` with learned
        ``gamma_g``, ``beta_g`` per gender;
        ``"concat"``: append a learned gender embedding of
        ``embedding_size`` (the output grows by that much).
    embedding_size : int
        Size of the appended embedding in ``"concat"`` mode.
    hidden_size : int
        Hidden width of the gender classifier (0: a single linear layer).

    Example
    -------
    >>> cond = GenderConditioning(8, mode="film")
    >>> x = torch.randn(3, 8)
    >>> out, logits = cond(x, torch.tensor([0, 1, -1]))
    >>> out.shape, logits.shape, cond.output_size
    (torch.Size([3, 8]), torch.Size([3, 2]), 8)
    >>> concat = GenderConditioning(8, mode="concat", embedding_size=4)
    >>> concat(x)[0].shape
    torch.Size([3, 12])
    """

    def __init__(self, input_size, mode="film", embedding_size=16, hidden_size=0):
        super().__init__()
        if mode not in CONDITIONING_MODES:
            raise ValueError(f"mode must be one of {CONDITIONING_MODES}, got {mode!r}.")
        self.input_size = input_size
        self.mode = mode
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        if hidden_size:
            self.classifier = nn.Sequential(
                nn.Linear(input_size, hidden_size),
                nn.ReLU(),
                nn.Linear(hidden_size, len(GENDERS)),
            )
        else:
            self.classifier = nn.Linear(input_size, len(GENDERS))
        if mode == "embedding":
            self.table = nn.Embedding(len(GENDERS), input_size)
            nn.init.zeros_(self.table.weight)
            self.output_size = input_size
        elif mode == "film":
            # Starts as the identity: gamma = beta = 0.
            self.table = nn.Embedding(len(GENDERS), 2 * input_size)
            nn.init.zeros_(self.table.weight)
            self.output_size = input_size
        else:
            self.table = nn.Embedding(len(GENDERS), embedding_size)
            self.output_size = input_size + embedding_size

    def resolve(self, logits, gender=None):
        """Gender index per utterance: the label where known, else predicted."""
        predicted = logits.argmax(dim=-1)
        if gender is None:
            return predicted
        gender = gender.to(predicted.device).long().reshape(-1)
        return torch.where(gender >= 0, gender, predicted)

    def forward(self, embedding, gender=None):
        """Condition ``embedding`` ``[batch, input_size]``.

        Arguments
        ---------
        embedding : torch.Tensor
            Pooled utterance embeddings.
        gender : torch.Tensor or None
            Gender indices ``[batch]`` (0, 1, or -1 for unknown); ``None``
            (inference) uses the predicted gender for every utterance.

        Returns
        -------
        conditioned : torch.Tensor
            ``[batch, output_size]``.
        logits : torch.Tensor
            Gender logits ``[batch, 2]`` (for the auxiliary loss and reports).
        """
        logits = self.classifier(embedding)
        index = self.resolve(logits, gender)
        vectors = self.table(index).to(embedding.dtype)
        if self.mode == "embedding":
            return embedding + vectors, logits
        if self.mode == "film":
            gamma, beta = vectors.chunk(2, dim=-1)
            return embedding * (1 + gamma) + beta, logits
        return torch.cat([embedding, vectors], dim=-1), logits
