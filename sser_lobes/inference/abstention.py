"""Abstention: the label ``uncertain`` when the top probability is too low.

One function, :func:`decide`, used by the HTTP service's
``min_confidence`` and meant for any caller that abstains (the calibrated
probabilities of a model are the natural input).

Example
-------
>>> decide({"neu": 0.55, "ang": 0.45}, min_confidence=0.6)
'uncertain'
>>> decide({"neu": 0.55, "ang": 0.45}, min_confidence=None)
'neu'
"""

import math

#: The label given instead of a class when the model abstains.
UNCERTAIN = "uncertain"


def decide(probabilities, min_confidence=None):
    """The most probable class, or :data:`UNCERTAIN` below ``min_confidence``.

    Arguments
    ---------
    probabilities : dict of str to float
        Class probabilities (e.g. a result's ``"probabilities"``).
    min_confidence : float or None
        In [0, 1]: the top probability must reach it (``None``: never
        abstain).

    Returns
    -------
    str

    Example
    -------
    >>> decide({"sad": 0.7, "hap": 0.3}, 0.7)
    'sad'
    >>> decide({"sad": 0.7}, 1.5)
    Traceback (most recent call last):
    ...
    ValueError: min_confidence must be a number in [0, 1], got 1.5
    """
    if min_confidence is not None and not (
        isinstance(min_confidence, (int, float))
        and not isinstance(min_confidence, bool)
        and math.isfinite(min_confidence)
        and 0.0 <= min_confidence <= 1.0
    ):
        raise ValueError(
            f"min_confidence must be a number in [0, 1], got {min_confidence!r}"
        )
    if not probabilities:
        raise ValueError("no class probabilities to decide from")
    label = max(probabilities, key=probabilities.get)
    if min_confidence is not None and probabilities[label] < min_confidence:
        return UNCERTAIN
    return label
