"""Agreement with the annotators: a model's probabilities against the votes.

A hard-label metric (WA, UA, macro-F1) scores the majority vote only. When
the corpus ships every annotator's vote (:mod:`sser_lobes.dataio.votes`),
these metrics say how close the model's distribution is to the annotators':

* ``KL``: mean Kullback-Leibler divergence ``KL(votes || model)`` (nats;
  ``scipy.stats.entropy``), the quantity soft-target training minimises;
* ``JS``: mean Jensen-Shannon divergence (nats, at most ``ln 2``; the square
  of ``scipy.spatial.distance.jensenshannon``);
* ``clear`` / ``ambiguous``: the accuracy (against the hard label) on the
  utterances whose votes have a clear majority (one class holds more than
  half of them) and on the others, with their counts.

Utterances without votes are left out (``n_with_votes`` says how many have
them).

Example
-------
>>> probs = [[0.9, 0.1], [0.5, 0.5]]
>>> m = agreement_metrics(probs, [0, 1], [[1.0, 0.0], [0.5, 0.5]])
>>> round(m["KL"], 4), m["JS"] > 0, m["clear"]["n"], m["ambiguous"]["n"]
(0.0527, True, 1, 1)
"""

import numpy as np

from sser_lobes.dataio.votes import majority_kind

#: Probabilities are clipped to this before a logarithm.
EPSILON = 1e-12


def agreement_metrics(probs, targets, distributions):
    """KL / JS divergence to the votes and accuracy by majority kind.

    Arguments
    ---------
    probs : array-like, shape [N, C]
        The model's probabilities.
    targets : array-like of int, shape [N]
        Hard labels.
    distributions : sequence of (sequence of float or None)
        Each utterance's vote distribution over the C classes, or None.

    Returns
    -------
    dict or None
        None when no utterance has votes; else ``n_with_votes``, ``KL``,
        ``JS``, ``clear`` and ``ambiguous`` (``{"n", "accuracy"}``, accuracy
        None for an empty group).
    """
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy

    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    rows = [i for i, d in enumerate(distributions) if d is not None]
    if not rows:
        return None
    votes = np.asarray([distributions[i] for i in rows], dtype=np.float64)
    model = np.clip(probs[rows], EPSILON, 1.0)
    model = model / model.sum(axis=1, keepdims=True)
    kl = entropy(votes, model, axis=1)
    js = jensenshannon(votes, model, axis=1) ** 2
    correct = probs.argmax(axis=1) == targets
    result = {"n_with_votes": len(rows), "KL": float(kl.mean()), "JS": float(js.mean())}
    kinds = [majority_kind(v) for v in votes]
    for kind in ("clear", "ambiguous"):
        members = [row for row, k in zip(rows, kinds) if k == kind]
        result[kind] = {
            "n": len(members),
            "accuracy": float(correct[members].mean()) if members else None,
        }
    return result
