"""Command line: fuse several runs' predictions with searched weights.

::

    python -m sser_lobes.evaluation.fuse RUN_FOLDER RUN_FOLDER... --out OUT
        [--search-split development] [--apply-splits test1 test2 test3]
        [--metric macro_F1] [--bias] [--experiment fused]

Every RUN_FOLDER is the output folder of one run (one model variant, same
fold) holding ``<split>_predictions.csv`` files (see
:func:`sser_lobes.evaluation.fusion_search.load_member_predictions`). The fusion
weights (and, with ``--bias``, per-class biases) are searched on the
labelled ``--search-split`` by
:func:`sser_lobes.evaluation.fusion_search.search_fusion_weights`, then applied
unchanged to every ``--apply-splits`` split. Defaults are MSP-Podcast's
(Development; Test1, Test2, Test3); for IEMOCAP use ``--search-split valid
--apply-splits test`` (or ``recipes/IEMOCAP/fuse.py``), once per fold.

All members must have the same utterance ids, class labels (same order) and
targets on every split, and be runs of one task and fold: their metrics
files must agree on the task identity
(:func:`sser_lobes.evaluation.aggregate.run_task`: classes, label maps,
corpus, protocol, number of folds), the fold, the split description and
``speaker_independent``; the first member that differs is named, with what
differs. The encoders, fine-tuning modes and seeds may differ (fusing them
is the point).

Written in OUT:

* ``fusion.json``: ``experiment``; ``members`` (``folder``, ``experiment``
  from its metrics file, ``weight``); ``labels``; ``weights``; ``bias``
  (None without ``--bias``); ``search_split``; ``search_metric``; the
  copied run identity (below); ``search`` (``split``, ``metric``, ``bias``
  searched or not, ``score``, ``member_scores``, ``start`` point,
  ``weight_score`` before the bias stage, ``n_evaluations``, and ``fused`` /
  ``members`` scores); ``scores``: per split, ``n``, ``labelled`` and the
  fused and each member's WA / UA / macro-F1 / micro-F1 (None for an
  unlabelled split);
* ``fusion.md``: the Markdown table printed on stdout;
* for every split, ``<split>_predictions.csv`` (same format as
  :meth:`sser_lobes.evaluation.metrics.ClassificationStats.write_predictions`, empty
  targets for an unlabelled split);
* for every labelled split, ``<split>_metrics.json``: the
  :func:`sser_lobes.evaluation.metrics.classification_metrics` output plus
  ``experiment`` (``--experiment``, default ``"fused"``), ``split``, the
  fusion details, and ``task_identity``, ``protocol``,
  ``split_description``, ``speaker_independent`` and ``fold`` copied from
  the members' metrics files (they agree), ``seed`` when all members have
  the same (None otherwise), so that
  :mod:`sser_lobes.evaluation.aggregate` and :mod:`sser_lobes.evaluation.ablation`
  treat OUT as
  one more run;
* for an unlabelled split named ``test3`` (MSP-Podcast's hidden set), the
  challenge files ``test3_submission.csv`` (``FileName,EmoClass``) and
  ``test3_probabilities.csv`` (``FileName,<class>...``), ``FileName`` being
  the id plus ``.wav``.

Scores on the search split are optimistic (the weights were fitted there):
the table marks that split with ``*``.

Calibration (``--calibration temperature``, the default; ``none`` to skip):
a temperature is fitted on the logarithms of the fused probabilities of the
search split (minimising their NLL,
:func:`sser_lobes.evaluation.calibration.fit_calibration`) and applied to
every split: the written ``<split>_predictions.csv`` hold the calibrated
fused probabilities (a temperature never changes the predicted class, so the
scores are those of the fusion), ``fusion.json`` has ``calibration`` (the
temperature and, per labelled split, ECE / NLL / Brier before and after) and
each ``<split>_metrics.json`` its split's ``calibration`` and
``ECE_raw`` / ``ECE_calibrated``. The calibration of the search split is
optimistic too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sser_lobes.evaluation.aggregate import describe_differences, run_task
from sser_lobes.evaluation.calibration import (
    N_BINS,
    calibrated_probabilities,
    calibration_metrics,
    fit_calibration,
    probabilities_as_logits,
)
from sser_lobes.evaluation.fusion_search import (
    SEARCH_METRICS,
    fuse_probabilities,
    load_member_predictions,
    search_fusion_weights,
)
from sser_lobes.evaluation.metrics import ClassificationStats, classification_metrics

__all__ = ["format_table", "load_split", "main", "run_fusion"]

#: metrics stored per member / split in fusion.json
_SCORES = ("macro_F1", "UA", "WA", "micro_F1")
#: metrics shown in the printed table, in order
_TABLE = (("macro_F1", "macro-F1"), ("UA", "UA"), ("WA", "WA"))
#: run identity keys the members must agree on (copied to the fused record)
_IDENTITY = ("protocol", "split_description", "speaker_independent", "fold")
#: unlabelled splits that get the MSP-Podcast challenge files
_CHALLENGE_SPLITS = ("test3",)


def load_split(folders, split):
    """Load one split for every member and check that they agree.

    Parameters
    ----------
    folders : list of str or os.PathLike
        Member run folders.
    split : str
        Split name.

    Returns
    -------
    ids : list of str
        Sorted utterance ids (shared).
    labels : list of str
        Class names (shared).
    probs : list of numpy.ndarray
        One ``[N, C]`` array per member, rows in ``ids`` order.
    targets : numpy.ndarray or None
        Shared targets, None when the split is unlabelled.

    Raises
    ------
    ValueError
        If a member's ids, labels or targets differ from the first
        member's (the member's folder is named).

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name, p in [("a", 0.9), ("b", 0.4)]:
    ...         stats = ClassificationStats(["neu", "ang"])
    ...         stats.append(["u1"], [[p, 1 - p]], [0])
    ...         _ = stats.write_predictions(os.path.join(tmp, name, "test_predictions.csv"))
    ...     ids, labels, probs, targets = load_split(
    ...         [os.path.join(tmp, "a"), os.path.join(tmp, "b")], "test")
    >>> ids, labels, [p.round(2).tolist() for p in probs], targets.tolist()
    (['u1'], ['neu', 'ang'], [[[0.9, 0.1]], [[0.4, 0.6]]], [0])
    """  # noqa: E501
    ids = labels = targets = None
    probs = []
    for k, folder in enumerate(folders):
        m_ids, m_labels, m_probs, m_targets = load_member_predictions(folder, split)
        if k == 0:
            ids, labels, targets, first = m_ids, m_labels, m_targets, folder
        else:
            where = f"member {folder} differs from member {first} on split {split!r}"
            if m_labels != labels:
                raise ValueError(f"{where}: labels {m_labels} vs {labels}")
            if m_ids != ids:
                mine, theirs = set(m_ids), set(ids)
                missing = sorted(theirs - mine)
                extra = sorted(mine - theirs)
                raise ValueError(
                    f"{where}: utterance ids ({len(m_ids)} vs {len(ids)}; "
                    f"{len(missing)} missing, e.g. {missing[:3]}; "
                    f"{len(extra)} extra, e.g. {extra[:3]}); members must be "
                    "evaluated on the same utterances (on IEMOCAP the validation "
                    "split is drawn with the run's seed: fuse runs of the same "
                    "fold and seed)"
                )
            if (m_targets is None) != (targets is None):
                raise ValueError(f"{where}: one is labelled, the other is not")
            if targets is not None and not np.array_equal(m_targets, targets):
                bad = int(np.argmax(m_targets != targets))
                raise ValueError(
                    f"{where}: targets, e.g. utterance {ids[bad]!r}: "
                    f"{labels[m_targets[bad]]} vs {labels[targets[bad]]}"
                )
        probs.append(m_probs)
    return ids, labels, probs, targets


def _scores(targets, probs, labels):
    metrics = classification_metrics(targets, probs.argmax(axis=1), labels)
    return {key: metrics[key] for key in _SCORES}


def _member_identity(folder, splits):
    """experiment / protocol / fold / seed of a member, from its metrics files."""
    folder = Path(folder)
    candidates = [folder / f"{split}_metrics.json" for split in splits]
    candidates += sorted(folder.glob("*_metrics.json"))
    for path in candidates:
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"malformed metrics file {path}: {err}") from None
            if isinstance(record, dict):
                return record
    return {}


def _check_one_task(folders, records):
    """Refuse members that are runs of different tasks or folds."""

    def fusable(record):
        return {**run_task(record), **{key: record.get(key) for key in _IDENTITY}}

    for folder, record in zip(folders[1:], records[1:]):
        difference = describe_differences(fusable(records[0]), fusable(record))
        if difference:
            raise ValueError(
                f"member {folder} is not a run of the task and fold of member "
                f"{folders[0]} ({difference}); fuse runs of one task and fold"
            )


def _agreed(records, key):
    values = [record.get(key) for record in records]
    if values and all(v is not None and v == values[0] for v in values):
        return values[0]
    return None


def _write_json(path, content):
    path.write_text(
        json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def format_table(fusion):
    """Markdown table of a ``fusion.json`` record: members and fused, per split.

    Parameters
    ----------
    fusion : dict
        The content of ``fusion.json`` (see :func:`run_fusion`).

    Returns
    -------
    str
        Markdown text ending with a newline.

    Example
    -------
    >>> s = {"macro_F1": 0.5, "UA": 0.5, "WA": 0.5}
    >>> fusion = {"experiment": "fused", "search_split": "valid",
    ...     "search_metric": "macro_F1", "labels": ["a", "b"], "bias": None,
    ...     "members": [{"folder": "run1", "weight": 0.75},
    ...                 {"folder": "run2", "weight": 0.25}],
    ...     "scores": {"valid": {"fused": {"macro_F1": 1.0, "UA": 1.0, "WA": 1.0},
    ...                          "members": [s, s]}}}
    >>> print(format_table(fusion))  # doctest: +NORMALIZE_WHITESPACE
    ## Fusion (macro_F1 searched on valid, %)
    <BLANKLINE>
    | member | weight | valid* macro-F1 | valid* UA | valid* WA |
    |---|---:|---:|---:|---:|
    | run1 | 0.7500 | 50.00 | 50.00 | 50.00 |
    | run2 | 0.2500 | 50.00 | 50.00 | 50.00 |
    | **fused** | - | 100.00 | 100.00 | 100.00 |
    <BLANKLINE>
    \\* valid: weights fitted on this split, fused score optimistic.
    <BLANKLINE>
    """
    splits = [s for s, v in fusion["scores"].items() if v["fused"] is not None]
    header = ["member", "weight"]
    for split in splits:
        mark = "*" if split == fusion["search_split"] else ""
        header += [f"{split}{mark} {name}" for _, name in _TABLE]
    lines = [
        f"## Fusion ({fusion['search_metric']} searched on "
        f"{fusion['search_split']}, %)",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---:|" + "---:|" * (len(header) - 2),
    ]
    rows = [
        (m["folder"], f"{m['weight']:.4f}", k) for k, m in enumerate(fusion["members"])
    ]
    rows.append((f"**{fusion['experiment']}**", "-", None))
    for name, weight, k in rows:
        cells = [name.replace("|", "\\|"), weight]
        for split in splits:
            scores = fusion["scores"][split]
            values = scores["fused"] if k is None else scores["members"][k]
            cells += [_pct(values[key]) for key, _ in _TABLE]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"\\* {fusion['search_split']}: weights fitted on this split, "
        "fused score optimistic."
    )
    if fusion["bias"] is not None:
        bias = ", ".join(
            f"{label} {value:+.4f}"
            for label, value in zip(fusion["labels"], fusion["bias"])
        )
        lines.append(f"Class bias on the fused log-probabilities: {bias}.")
    calibration = fusion.get("calibration")
    if calibration:
        changes = "; ".join(
            f"{split} {100 * c['raw']['ECE']:.2f} -> {100 * c['calibrated']['ECE']:.2f}"
            for split, c in calibration["splits"].items()
        )
        lines.append(
            f"Calibrated: temperature {calibration['temperature'][0]:.3f} fitted on "
            f"{calibration['fitted_on']}; ECE (%) {changes}."
        )
    unlabelled = [s for s, v in fusion["scores"].items() if v["fused"] is None]
    if unlabelled:
        lines.append(f"Unlabelled (predictions only): {', '.join(unlabelled)}.")
    return "\n".join(lines) + "\n"


def run_fusion(
    folders,
    out,
    search_split="development",
    apply_splits=("test1", "test2", "test3"),
    metric="macro_F1",
    bias=False,
    experiment="fused",
    calibration="temperature",
):
    """Search fusion weights on one split, apply them, write every output.

    Parameters
    ----------
    folders : list of str or os.PathLike
        Member run folders (at least one, no duplicates).
    out : str or os.PathLike
        Output folder (created).
    search_split : str
        Labelled split on which the weights are searched.
    apply_splits : sequence of str
        Further splits the fusion is applied to.
    metric : str
        Metric maximised by the search (see
        :data:`sser_lobes.evaluation.fusion_search.SEARCH_METRICS`).
    bias : bool
        Also search per-class biases.
    experiment : str
        Experiment name written in the metrics files.
    calibration : str
        ``"temperature"`` (fitted on the fused search split, see the module
        docstring) or ``"none"``.

    Returns
    -------
    dict
        The content written to ``fusion.json``.
    """
    folders = [str(f) for f in folders]
    if not folders:
        raise ValueError("no member run folder given")
    resolved = [Path(f).resolve() for f in folders]
    dups = sorted({f for f, r in zip(folders, resolved) if resolved.count(r) > 1})
    if dups:
        raise ValueError(f"member run folder given more than once: {dups}")
    for folder in folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"run folder not found (or not a folder): {folder}")
    if Path(out).resolve() in resolved:
        raise ValueError(f"output folder {out} is a member run folder")
    splits = [search_split] + [s for s in apply_splits if s != search_split]
    if len(set(splits)) != len(splits):
        raise ValueError(f"split given more than once: {list(apply_splits)}")

    loaded = {split: load_split(folders, split) for split in splits}
    ids, labels, probs, targets = loaded[search_split]
    if targets is None:
        raise ValueError(
            f"search split {search_split!r} is unlabelled in {folders[0]}: the "
            "weights need targets"
        )
    for split in splits[1:]:
        if loaded[split][1] != labels:
            raise ValueError(
                f"split {split!r} has labels {loaded[split][1]}, split "
                f"{search_split!r} has {labels} (in {folders[0]})"
            )
    result = search_fusion_weights(probs, targets, labels, metric=metric, bias=bias)
    if calibration not in ("temperature", "none"):
        raise ValueError(
            f"calibration must be temperature or none, got {calibration!r}"
        )
    fitted = fit_calibration(
        probabilities_as_logits(
            fuse_probabilities(probs, result["weights"], result["bias"])
        ),
        targets,
        calibration,
    )
    if fitted is not None:
        fitted["fitted_on"] = search_split

    records = [_member_identity(f, splits) for f in folders]
    _check_one_task(folders, records)
    identity = {key: records[0].get(key) for key in _IDENTITY}
    identity["task_identity"] = records[0].get("task_identity")
    identity["seed"] = _agreed(records, "seed")
    fusion = {
        "experiment": experiment,
        "members": [
            {
                "folder": folder,
                "experiment": record.get("experiment"),
                "weight": weight,
            }
            for folder, record, weight in zip(folders, records, result["weights"])
        ],
        "labels": labels,
        "weights": result["weights"],
        "bias": result["bias"],
        "search_split": search_split,
        "search_metric": metric,
        "search": {
            "split": search_split,
            "metric": metric,
            "bias": bool(bias),
            "score": result["score"],
            "member_scores": result["member_scores"],
            "start": result["start"],
            "weight_score": result["weight_score"],
            "n_evaluations": result["n_evaluations"],
        },
        **identity,
        "calibration": None if fitted is None else {**fitted, "splits": {}},
        "scores": {},
    }

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        ids, _, probs, targets = loaded[split]
        raw = fuse_probabilities(probs, result["weights"], result["bias"])
        fused = raw
        if fitted is not None:
            fused = calibrated_probabilities(probabilities_as_logits(raw), fitted)
        stats = ClassificationStats(labels)
        stats.append(ids, fused, targets)
        stats.write_predictions(out / f"{split}_predictions.csv")
        entry = {"n": len(ids), "labelled": targets is not None, "fused": None}
        entry["members"] = [None] * len(folders)
        if targets is not None:
            metrics = stats.summarize()
            entry["fused"] = {key: metrics[key] for key in _SCORES}
            entry["members"] = [_scores(targets, p, labels) for p in probs]
            if fitted is not None:
                split_calibration = {
                    "method": fitted["method"],
                    "temperature": fitted["temperature"],
                    "fitted_on": search_split,
                    "raw": calibration_metrics(raw, targets, N_BINS),
                    "calibrated": calibration_metrics(fused, targets, N_BINS),
                }
                fusion["calibration"]["splits"][split] = split_calibration
                metrics = {
                    **metrics,
                    "calibration": split_calibration,
                    "ECE_raw": split_calibration["raw"]["ECE"],
                    "ECE_calibrated": split_calibration["calibrated"]["ECE"],
                }
            record = {
                "experiment": experiment,
                **identity,
                "split": split,
                "fusion": {
                    "members": folders,
                    "weights": result["weights"],
                    "bias": result["bias"],
                    "search_split": search_split,
                    "search_metric": metric,
                    "fitted_on_this_split": split == search_split,
                },
                **metrics,
            }
            _write_json(out / f"{split}_metrics.json", record)
        elif split in _CHALLENGE_SPLITS:
            stats.write_submission(out, split)
        fusion["scores"][split] = entry
    fusion["search"]["fused"] = fusion["scores"][search_split]["fused"]
    fusion["search"]["members"] = fusion["scores"][search_split]["members"]
    _write_json(out / "fusion.json", fusion)
    (out / "fusion.md").write_text(format_table(fusion), encoding="utf-8")
    return fusion


def _parser(defaults=None):
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.evaluation.fuse",
        description=(
            "Fuse several runs' class probabilities with non-negative weights "
            "(summing to one) searched on a labelled split, and apply them to "
            "other splits."
        ),
    )
    parser.add_argument("folders", nargs="+", metavar="RUN_FOLDER")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--search-split",
        default="development",
        help="labelled split to search the weights on (default: %(default)s)",
    )
    parser.add_argument(
        "--apply-splits",
        nargs="*",
        default=["test1", "test2", "test3"],
        help="splits to apply the fusion to (default: %(default)s)",
    )
    parser.add_argument(
        "--metric",
        default="macro_F1",
        choices=SEARCH_METRICS,
        help="metric maximised by the search (default: %(default)s)",
    )
    parser.add_argument(
        "--bias",
        action="store_true",
        help="also search per-class biases on the fused log-probabilities",
    )
    parser.add_argument(
        "--calibration",
        default="temperature",
        choices=("temperature", "none"),
        help="calibrate the fused probabilities with a temperature fitted on the "
        "search split (default: %(default)s)",
    )
    parser.add_argument(
        "--experiment",
        default="fused",
        help="experiment name in the metrics files (default: %(default)s)",
    )
    if defaults:
        parser.set_defaults(**defaults)
    return parser


def main(argv=None, defaults=None):
    """Command-line entry point; prints the Markdown table.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).
    defaults : dict, optional
        Option defaults overriding the generic ones (used by the recipe
        wrappers), e.g. ``{"search_split": "valid", "apply_splits": ["test"]}``.

    Returns
    -------
    int
        0 on success, 1 on error (the message goes to stderr).

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name, p in [("a", 0.9), ("b", 0.4)]:
    ...         stats = ClassificationStats(["neu", "ang"])
    ...         stats.append(["u1", "u2"], [[p, 1 - p], [0.3, 0.7]], [0, 1])
    ...         _ = stats.write_predictions(os.path.join(tmp, name, "valid_predictions.csv"))
    ...     code = main([os.path.join(tmp, "a"), os.path.join(tmp, "b"),
    ...                  "--out", os.path.join(tmp, "fused"),
    ...                  "--search-split", "valid", "--apply-splits"])
    ...     sorted(os.listdir(os.path.join(tmp, "fused")))
    ... # doctest: +ELLIPSIS
    ## Fusion (macro_F1 searched on valid, %)
    ...
    ['fusion.json', 'fusion.md', 'valid_metrics.json', 'valid_predictions.csv']
    >>> code
    0
    """  # noqa: E501
    args = _parser(defaults).parse_args(argv)
    try:
        fusion = run_fusion(
            args.folders,
            args.out,
            search_split=args.search_split,
            apply_splits=args.apply_splits,
            metric=args.metric,
            bias=args.bias,
            experiment=args.experiment,
            calibration=args.calibration,
        )
    except (OSError, ValueError) as err:
        print(f"fuse: error: {err}", file=sys.stderr)
        return 1
    print(format_table(fusion), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
