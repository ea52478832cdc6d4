"""The raw outputs of one evaluation, kept for calibration and reports.

:class:`EvaluationOutputs` collects, batch after batch, each utterance's
logits (before any softmax or calibration), its target class and its vote
distribution (when the corpus has votes), for
:mod:`sser_lobes.training.reliability`.
"""

import numpy as np


class EvaluationOutputs:
    """Raw logits, targets and vote distributions of one evaluation.

    Example
    -------
    >>> import torch
    >>> outputs = EvaluationOutputs()
    >>> outputs.append(["b", "a"], torch.tensor([[0.0, 1.0], [2.0, 0.0]]),
    ...                torch.tensor([1, 0]))
    >>> ids, logits, targets, votes = outputs.gather()
    >>> ids, targets.tolist(), votes
    (['a', 'b'], [0, 1], [None, None])
    """

    def __init__(self):
        self.ids = []
        self.logits = []
        self.targets = []
        self.distributions = []

    def __len__(self):
        return len(self.ids)

    def append(self, ids, logits, targets, vote_targets=None, has_votes=None):
        """One batch: ids, logits ``[B, C]``, targets ``[B]`` / ``[B, 1]``,
        and optionally the vote targets ``[B, C]`` with ``has_votes``."""
        self.ids.extend(ids)
        self.logits.append(logits.detach().double().cpu().numpy())
        self.targets.append(targets.detach().reshape(-1).cpu().numpy())
        if vote_targets is None:
            self.distributions.extend([None] * len(ids))
        else:
            rows = vote_targets.detach().double().cpu().numpy()
            flags = has_votes.detach().reshape(-1).cpu().tolist()
            self.distributions.extend(
                [list(row) if flag else None for row, flag in zip(rows, flags)]
            )

    def gather(self):
        """``(ids, logits [N, C], targets [N], distributions)`` sorted by id."""
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        logits = np.concatenate(self.logits)[order]
        targets = np.concatenate(self.targets).astype(np.int64)[order]
        return (
            [self.ids[i] for i in order],
            logits,
            targets,
            [self.distributions[i] for i in order],
        )
