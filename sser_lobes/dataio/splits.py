"""Split algorithms the preparations share.

:func:`stratified_share` draws a class-stratified share of utterances (the
validation set of IEMOCAP's leave-one-session-out folds, the Custom recipe's
validation and test shares), so that a small split still holds every class
that has two or more utterances. :func:`stratified_group_folds` groups
speakers into folds (the Custom recipe's ``speaker_kfold``) so that every
fold holds every class where the speakers allow it.

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


def stratified_group_folds(group_counts, classes, num_folds, seed):
    """Groups (speakers) into ``num_folds`` folds that keep every class where
    the groups allow it, and are stratified by class as far as they allow.

    The start is scikit-learn's
    :class:`~sklearn.model_selection.StratifiedGroupKFold` (shuffled with
    ``seed``). Its greedy pass does not look for every class in every fold: a
    class spoken by as many speakers as there are folds can end up with two
    of them in one fold and none in another. A local search then moves single
    groups to another fold and swaps pairs of groups, and keeps a change when
    it lowers, in this order,

    1. the number of (fold, class) pairs without an utterance (a test fold
       without a class has no recall for it: its UA averages over fewer
       classes);
    2. the spread of the class shares and fold sizes around ``1 /
       num_folds`` (the sum of their squared deviations);

    and never empties a fold. The result is deterministic for a given
    ``seed``.

    Arguments
    ---------
    group_counts : dict
        Group (speaker) -> ``{class: number of utterances}``.
    classes : list of str
        The classes (those a group lacks count 0).
    num_folds : int
        At most the number of groups.
    seed : int
        Shuffles the groups in StratifiedGroupKFold.

    Returns
    -------
    list of list of str
        The groups of each fold, sorted within a fold.

    Example
    -------
    >>> counts = {"a1": {"ang": 9, "neu": 1}, "a2": {"ang": 5, "neu": 5},
    ...           "n1": {"neu": 6}, "n2": {"neu": 6}}
    >>> folds = stratified_group_folds(counts, ["ang", "neu"], 2, seed=0)
    >>> sorted(sum(counts[g].get("ang", 0) > 0 for g in fold) for fold in folds)
    [1, 1]
    """
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    groups = sorted(group_counts)
    if not 2 <= num_folds <= len(groups):
        raise ValueError(
            f"num_folds must be between 2 and the number of groups ({len(groups)}), "
            f"got {num_folds}"
        )
    table = np.array(
        [[group_counts[g].get(c, 0) for c in classes] for g in groups], dtype=float
    )
    labels = np.repeat(
        np.tile(np.arange(len(classes)), len(groups)), table.ravel().astype(int)
    )
    owners = np.repeat(
        np.repeat(np.arange(len(groups)), len(classes)), table.ravel().astype(int)
    )
    fold_of = np.zeros(len(groups), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class in y has only n members": the search
        # below and the preparation's warnings handle thin classes.
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, test) in enumerate(splitter.split(labels, labels, owners)):
            fold_of[np.unique(owners[test])] = fold
    return _improve_folds(table, fold_of, num_folds, groups)


def _improve_folds(table, fold_of, num_folds, groups, max_passes=100):
    """The local search of :func:`stratified_group_folds` (moves, then swaps,
    until neither lowers the objective)."""
    import numpy as np

    totals = table.sum(axis=0)
    present = totals > 0
    per_class = np.where(present, totals, 1.0)
    grand = max(float(table.sum()), 1.0)
    target = 1.0 / num_folds
    size_weight = float(present.sum())
    # Any missing (fold, class) pair outweighs the largest possible spread.
    missing_weight = 4.0 * num_folds * (table.shape[1] + 1) + 1.0

    def cost(rows):
        shares = rows / per_class
        spread = (((shares - target) ** 2) * present).sum(-1)
        spread = spread + size_weight * (rows.sum(-1) / grand - target) ** 2
        missing = ((rows == 0) & present).sum(-1)
        return missing_weight * missing + spread

    folds = np.zeros((num_folds, table.shape[1]))
    np.add.at(folds, fold_of, table)
    members = np.bincount(fold_of, minlength=num_folds)
    for _ in range(max_passes):
        changed = False
        for g in range(len(groups)):
            a = fold_of[g]
            if members[a] == 1:
                continue
            base = cost(folds)
            delta = cost(folds + table[g]) - base + cost(folds[a] - table[g]) - base[a]
            delta[a] = 0.0
            b = int(np.argmin(delta))
            if delta[b] < -1e-12:
                folds[a] -= table[g]
                folds[b] += table[g]
                members[a] -= 1
                members[b] += 1
                fold_of[g] = b
                changed = True
        for g in range(len(groups)):
            a = fold_of[g]
            base = cost(folds)
            diff = table - table[g]  # swap g with each h: fold a gets h, h's fold g
            delta = cost(folds[a] + diff) - base[a]
            delta += cost(folds[fold_of] - diff) - base[fold_of]
            delta[fold_of == a] = 0.0
            h = int(np.argmin(delta))
            if delta[h] < -1e-12:
                b = fold_of[h]
                folds[a] += diff[h]
                folds[b] -= diff[h]
                fold_of[g], fold_of[h] = b, a
                changed = True
        if not changed:
            break
    return [
        sorted(groups[i] for i in np.flatnonzero(fold_of == f))
        for f in range(num_folds)
    ]
