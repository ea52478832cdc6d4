"""Split algorithms the preparations share.

:func:`stratified_share` draws a class-stratified share of utterances (the
validation set of IEMOCAP's leave-one-session-out folds, the Custom recipe's
validation and test shares), so that a small split still holds every class
that has two or more utterances.

Example
-------
>>> import random
>>> classes = {"a1": "ang", "a2": "ang", "a3": "ang", "n1": "neu", "n2": "neu"}
>>> chosen, rest = stratified_share(sorted(classes), classes, 0.34, random.Random(0))
>>> sorted(classes[u] for u in chosen)
['ang', 'neu']
>>> len(rest)
3
"""


def share_size(n, ratio):
    """Utterances of one class that go to the share: ``round(n * ratio)``, at
    least 1 and at most ``n - 1``; none for a class of fewer than 2.

    Example
    -------
    >>> share_size(10, 0.1), share_size(3, 0.1), share_size(1, 0.5)
    (1, 1, 0)
    """
    if n < 2:
        return 0
    return min(n - 1, max(1, round(n * ratio)))


def stratified_share(ids, classes_of, ratio, rng, class_order=None):
    """A class-stratified ``ratio`` share of ``ids`` and the rest.

    Arguments
    ---------
    ids : iterable of str
        The utterances to split.
    classes_of : dict
        Utterance id -> class.
    ratio : float
        The share of each class drawn (:func:`share_size`).
    rng : random.Random
        Shuffles each class's sorted utterances, class after class.
    class_order : sequence or None
        The order in which the classes are drawn (it decides which random
        numbers each class gets); ``None``: sorted.

    Returns
    -------
    chosen, rest : list of str
        Both sorted.
    """
    by_class = {}
    for uid in ids:
        by_class.setdefault(classes_of[uid], []).append(uid)
    order = sorted(by_class) if class_order is None else list(class_order)
    unordered = sorted(set(by_class) - set(order))
    if unordered:
        raise ValueError(f"class_order lacks the classes {unordered}")
    chosen, rest = [], []
    for cls in order:
        members = sorted(by_class.get(cls, ()))
        rng.shuffle(members)
        take = share_size(len(members), ratio)
        chosen += members[:take]
        rest += members[take:]
    return sorted(chosen), sorted(rest)
