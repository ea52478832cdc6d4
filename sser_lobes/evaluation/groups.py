"""Who a model fails: WA, UA and macro-F1 per group of utterances.

An average hides the people a model is worse for. :func:`group_metrics`
scores every group (a gender, a speaker) on its own utterances, with the
whole-set definitions of :func:`sser_lobes.evaluation.metrics.classification_metrics`,
and summarises the groups: the mean over groups, the worst group, the spread
(standard deviation over groups) and the largest gap (best minus worst), each
with the groups' sizes. :func:`fairness_report` does it per gender and per
speaker from the manifest's fields.

Utterances whose group is unknown (``None``, ``""`` or ``Unknown``, as
MSP-Podcast writes an unknown speaker) are left out and counted. A small
group gives a noisy score: read the sizes before the gaps.

Example
-------
>>> report = group_metrics([0, 0, 1, 1], [0, 0, 1, 0], ["neu", "ang"],
...                        ["F", "F", "M", "M"])
>>> report["groups"]["M"]["WA"], report["largest_gap"]["WA"]["value"]
(0.5, 0.5)
>>> report["worst"]["WA"]["group"], report["worst"]["WA"]["n"]
('M', 2)
"""

import numpy as np

from sser_lobes.evaluation.metrics import classification_metrics

#: The metrics scored per group.
GROUP_METRICS = ("WA", "UA", "macro_F1")
#: Group values that mean "unknown".
UNKNOWN = ("", "unknown", "none", "null")


def _known(value):
    return value is not None and str(value).strip().casefold() not in UNKNOWN


def group_metrics(targets, predictions, labels, groups):
    """Metrics per group and their summary.

    Arguments
    ---------
    targets, predictions : sequence of int
        Class indices of the utterances.
    labels : list of str
        Class names.
    groups : sequence
        The group of each utterance (None or ``Unknown``: unknown).

    Returns
    -------
    dict or None
        None without any known group; else ``groups`` (``{name: {"n",
        "WA", "UA", "macro_F1"}}``), ``n_groups``, ``n_unknown``, and per
        metric: ``mean`` over groups, ``std`` over groups (the spread),
        ``worst`` and ``best`` (``{"group", "value", "n"}``) and
        ``largest_gap`` (``{"value", "best", "worst"}``).
    """
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    members = {}
    unknown = 0
    for index, group in enumerate(groups):
        if _known(group):
            members.setdefault(str(group), []).append(index)
        else:
            unknown += 1
    if not members:
        return None
    scores = {}
    for name in sorted(members):
        rows = members[name]
        metrics = classification_metrics(targets[rows], predictions[rows], labels)
        scores[name] = {"n": len(rows), **{m: metrics[m] for m in GROUP_METRICS}}
    report = {"groups": scores, "n_groups": len(scores), "n_unknown": unknown}
    for key in ("mean", "std", "worst", "best", "largest_gap"):
        report[key] = {}
    for metric in GROUP_METRICS:
        values = {name: s[metric] for name, s in scores.items()}
        worst = min(values, key=lambda g: (values[g], g))
        best = max(values, key=lambda g: (values[g], g))
        report["mean"][metric] = float(np.mean(list(values.values())))
        report["std"][metric] = float(np.std(list(values.values())))
        report["worst"][metric] = {
            "group": worst,
            "value": values[worst],
            "n": scores[worst]["n"],
        }
        report["best"][metric] = {
            "group": best,
            "value": values[best],
            "n": scores[best]["n"],
        }
        report["largest_gap"][metric] = {
            "value": values[best] - values[worst],
            "best": report["best"][metric],
            "worst": report["worst"][metric],
        }
    return report


def fairness_report(targets, predictions, labels, attributes):
    """:func:`group_metrics` for each grouping of the utterances.

    Arguments
    ---------
    targets, predictions : sequence of int
    labels : list of str
    attributes : dict
        Grouping name (``gender``, ``speaker``) -> the group of each
        utterance, in the order of ``targets``.

    Returns
    -------
    dict
        Grouping name -> :func:`group_metrics` (groupings without any known
        group are left out).

    Example
    -------
    >>> report = fairness_report([0, 1], [0, 0], ["a", "b"],
    ...     {"gender": ["F", "M"], "speaker": [None, None]})
    >>> sorted(report), report["gender"]["worst"]["UA"]["group"]
    (['gender'], 'M')
    """
    report = {}
    for name, groups in attributes.items():
        metrics = group_metrics(targets, predictions, labels, groups)
        if metrics is not None:
            report[name] = metrics
    return report


def summary_line(report, metric="UA"):
    """One line per grouping, e.g. for a log or a model card.

    Example
    -------
    >>> report = fairness_report([0, 1, 0, 1], [0, 1, 1, 1], ["a", "b"],
    ...     {"gender": ["F", "F", "M", "M"]})
    >>> summary_line(report)
    ['gender: UA mean 75.00 %, worst M 50.00 % (n 2), largest gap 50.00 points (F n 2 vs M n 2)']
    """  # noqa: E501
    lines = []
    for name, groups in report.items():
        worst = groups["worst"][metric]
        gap = groups["largest_gap"][metric]
        lines.append(
            f"{name}: {metric} mean {100 * groups['mean'][metric]:.2f} %, worst "
            f"{worst['group']} {100 * worst['value']:.2f} % (n {worst['n']}), "
            f"largest gap {100 * gap['value']:.2f} points ({gap['best']['group']} "
            f"n {gap['best']['n']} vs {gap['worst']['group']} n {gap['worst']['n']})"
        )
    return lines
