"""Annotator votes: each utterance's vote distribution as data.

Emotion labels are opinions. IEMOCAP, MSP-Podcast and CREMA-D ship every
annotator's vote; a manifest entry keeps them as ``"votes"``: a JSON object
``{class: count}`` (counts are non-negative numbers; an annotator who gave
two classes counts 0.5 for each), in the corpus' class names after its label
map (IEMOCAP's ``exc`` merged into ``hap``, MSP-Podcast's letters with ``O``
for "other"), or ``null`` when the corpus has no votes for the utterance.
Votes for classes the task does not have (IEMOCAP's ``fru``, MSP-Podcast's
``O``) are kept: the task's distribution is taken over its own classes
(:func:`vote_distribution`), and what share of the votes fell outside them is
known (:func:`in_class_share`).

* :func:`parse_votes_text` reads the compact form ``"neu:3,ang:1"`` (the
  Custom CSV's ``votes`` column);
* :func:`clean_votes` checks and normalises a mapping;
* :func:`vote_distribution` is the distribution over the task's classes;
* :func:`majority_kind` says whether the votes have a clear majority.

Example
-------
>>> votes = parse_votes_text("neu:3, ang:1, fru:1")
>>> vote_distribution(votes, ["neu", "hap", "sad", "ang"])
[0.75, 0.0, 0.0, 0.25]
>>> majority_kind(vote_distribution(votes, ["neu", "hap", "sad", "ang"]))
'clear'
"""

import math

#: Name of the manifest field holding an utterance's votes.
VOTES_FIELD = "votes"

#: The two kinds of :func:`majority_kind`.
MAJORITY_KINDS = ("clear", "ambiguous")


def clean_votes(votes, label_map=None):
    """A checked, sorted ``{class: count}`` without zero counts, or None.

    Arguments
    ---------
    votes : dict or None
        Class name -> count (int or float >= 0).
    label_map : dict or None
        Class names renamed or merged (``{"exc": "hap"}``); merged counts add.

    Returns
    -------
    dict or None
        None when there is no positive count.

    Raises
    ------
    ValueError
        A count that is not a finite number >= 0, or an empty class name.

    Example
    -------
    >>> clean_votes({"exc": 1, "hap": 2, "neu": 0}, {"exc": "hap"})
    {'hap': 3.0}
    >>> clean_votes({"neu": -1})
    Traceback (most recent call last):
    ...
    ValueError: vote count of 'neu' must be a finite number >= 0, got -1
    """
    if votes is None:
        return None
    if not isinstance(votes, dict):
        raise ValueError(f"votes must be a {{class: count}} mapping, got {votes!r}")
    label_map = label_map or {}
    merged = {}
    for name, count in votes.items():
        name = str(name).strip()
        if not name:
            raise ValueError("a vote names no class")
        if (
            isinstance(count, bool)
            or not isinstance(count, (int, float))
            or not math.isfinite(count)
            or count < 0
        ):
            raise ValueError(
                f"vote count of {name!r} must be a finite number >= 0, got {count!r}"
            )
        target = label_map.get(name, name)
        merged[target] = merged.get(target, 0.0) + float(count)
    cleaned = {k: v for k, v in sorted(merged.items()) if v > 0}
    return cleaned or None


def parse_votes_text(text, label_map=None):
    """``"neu:3,ang:1"`` -> ``{"ang": 1.0, "neu": 3.0}`` (empty text: None).

    Raises
    ------
    ValueError
        An item that is not ``class:count``, a class given twice, or a bad
        count.

    Example
    -------
    >>> parse_votes_text("neu:3,ang:1")
    {'ang': 1.0, 'neu': 3.0}
    >>> parse_votes_text("neu=3")
    Traceback (most recent call last):
    ...
    ValueError: votes item 'neu=3' is not class:count (e.g. "neu:3,ang:1")
    """
    if text is None or not str(text).strip():
        return None
    votes = {}
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, count = item.rpartition(":")
        name = name.strip()
        if not sep or not name:
            raise ValueError(
                f'votes item {item!r} is not class:count (e.g. "neu:3,ang:1")'
            )
        try:
            value = float(count)
        except ValueError:
            raise ValueError(
                f"votes item {item!r}: {count.strip()!r} is not a number"
            ) from None
        if name in votes:
            raise ValueError(f"votes: class {name!r} is given twice")
        votes[name] = value
    return clean_votes(votes, label_map)


def vote_distribution(votes, classes):
    """The votes' distribution over ``classes`` (renormalised), or None.

    Votes for other classes are left out; None when no vote falls in
    ``classes`` (or there are no votes).

    Example
    -------
    >>> vote_distribution({"A": 2, "N": 1, "O": 1}, ["A", "S", "N"])
    [0.6666666666666666, 0.0, 0.3333333333333333]
    >>> vote_distribution({"O": 3}, ["A", "N"]) is None
    True
    """
    if not votes:
        return None
    counts = [float(votes.get(name, 0.0)) for name in classes]
    total = sum(counts)
    if total <= 0:
        return None
    return [c / total for c in counts]


def in_class_share(votes, classes):
    """Share of the votes that name one of ``classes`` (0 without votes).

    Example
    -------
    >>> in_class_share({"A": 2, "O": 2}, ["A", "N"])
    0.5
    """
    if not votes:
        return 0.0
    total = sum(votes.values())
    inside = sum(v for k, v in votes.items() if k in set(classes))
    return inside / total if total > 0 else 0.0


def majority_kind(distribution, threshold=0.5):
    """``"clear"`` when one class holds more than ``threshold`` of the votes,
    else ``"ambiguous"``.

    Example
    -------
    >>> majority_kind([0.5, 0.5]), majority_kind([0.6, 0.4])
    ('ambiguous', 'clear')
    """
    return "clear" if max(distribution) > threshold + 1e-12 else "ambiguous"


def has_votes(manifest_entries):
    """Whether every entry of a manifest has a ``votes`` field (null or not),
    and at least one has votes.

    Example
    -------
    >>> has_votes({"u1": {"votes": None}, "u2": {"votes": {"neu": 1.0}}})
    True
    >>> has_votes({"u1": {"emo": "neu"}})
    False
    """
    entries = list(manifest_entries.values())
    return (
        bool(entries)
        and all(isinstance(e, dict) and VOTES_FIELD in e for e in entries)
        and any(e.get(VOTES_FIELD) for e in entries)
    )
