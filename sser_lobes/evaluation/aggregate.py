"""Aggregate test metrics of many runs (folds x seeds) into summary tables.

Every run (one fold of one seed) writes a ``test_metrics.json`` holding at
least the metric values (floats in [0, 1], e.g. ``WA``, ``UA``, ``macro_F1``)
and optionally ``experiment``, ``protocol``, ``fold`` (e.g. ``"session_3"``)
and ``seed``. This module finds those files, groups the runs and reports
mean ± sample standard deviation (ddof=1; 0 for a single run) per metric, in
percent, as Markdown (and JSON when asked).

Grouping rule
-------------
Runs are grouped by experiment and by everything that makes their scores
scores of one task (:func:`run_configuration`): the classes and their
order, the label maps, the corpus (a digest of its utterances and labels),
the protocol, the number of folds (the recipes record these as
``task_identity``), the encoder, the fine-tuning mode and the training
targets (hard labels or the annotators' votes; a file without them was
trained on hard labels). Runs of one
experiment name that differ in any of them are never averaged together:
they are separate rows, and a warning names what differs (e.g. a 4-class
and a 3-class run, or a 5-fold and a 2-fold run of one corpus). Within a
row, every fold must hold the same seeds (otherwise the mean would weight
the folds unequally): a row whose folds have different seeds is refused,
with the folds and their seeds named.

Groups across folds
-------------------
The per-gender and per-speaker scores of each run's test utterances
(``groups`` in the metrics files, :mod:`sser_lobes.evaluation.groups`) are
carried too (:func:`aggregate_groups`): per gender, the mean and standard
deviation over runs of WA / UA / macro-F1 and the utterances it had; per
speaker, the mean over the runs that tested it (each speaker is tested by one
fold in leave-one-speaker/session-out, so the folds together cover every
speaker), the worst speaker, the spread over speakers and the largest gap,
with the sizes. The Markdown report adds a section for them.

When a file has no ``experiment`` key, the experiment is derived from the
folder layout: take the path of the folder holding the
file relative to the folder given on the command line, drop every component
that names a run rather than an experiment -- purely numeric (a SpeechBrain
seed folder such as ``1993``), ``fold_3`` / ``session3`` / ``seed-7`` /
``run_2`` / ``split_1`` / ``speaker_4`` style names, or equal to the run's
own ``fold`` or ``seed`` value -- and join the rest with ``/``. If nothing
remains, the name of the given folder is used. Examples, for the folder
``results`` given on the command line::

    results/wavlm_frozen/1993/session_1/test_metrics.json -> wavlm_frozen
    results/hubert/pf/seed_7/fold_2/test_metrics.json     -> hubert/pf
    results/test_metrics.json                             -> results

Command line::

    python -m sser_lobes.evaluation.aggregate results/ [--metrics WA UA macro_F1]
        [--markdown summary.md] [--json summary.json] [--file test_metrics.json]
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import re
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_METRICS",
    "TASK_FIELDS",
    "aggregate_runs",
    "describe_differences",
    "run_configuration",
    "run_task",
    "collect_runs",
    "find_incomplete_runs",
    "format_markdown",
    "main",
]

#: metrics reported when none are requested
DEFAULT_METRICS = ("WA", "UA", "macro_F1")

#: the fields of a run's task identity (``task_identity`` in its metrics file)
TASK_FIELDS = (
    "labels",
    "label_map",
    "test_label_map",
    "corpus",
    "protocol",
    "num_folds",
)


def run_task(run):
    """What a run's scores are scores of: its ``task_identity`` fields.

    Files written before the recipes recorded ``task_identity`` give what
    they have (``labels``, ``protocol``); the other fields are None.

    Example
    -------
    >>> run_task({"labels": ["neu", "ang"], "protocol": "loso"})["labels"]
    ['neu', 'ang']
    """
    task = run.get("task_identity")
    task = task if isinstance(task, dict) else {}
    identity = {key: task.get(key) for key in TASK_FIELDS}
    if identity["labels"] is None:
        identity["labels"] = run.get("labels")
    if identity["protocol"] is None:
        identity["protocol"] = run.get("protocol")
    return identity


#: The training targets of a metrics file without them (the hard labels).
HARD_TARGETS = {"targets": "hard", "soft_label_smoothing": 0.0, "use_no_agreement": 0.0}


def run_configuration(run):
    """The task (:func:`run_task`), the encoder, the fine-tuning mode and the
    training targets.

    Example
    -------
    >>> run_configuration({"encoder": "wavlm"})["training_targets"]["targets"]
    'hard'
    """
    targets = run.get("training_targets")
    return {
        **run_task(run),
        "encoder": run.get("encoder"),
        "finetune": run.get("finetune"),
        "training_targets": targets if isinstance(targets, dict) else HARD_TARGETS,
    }


def describe_differences(first, other, keys=None):
    """``"labels [...] vs [...]; num_folds 5 vs 2"``: the fields that differ.

    Example
    -------
    >>> describe_differences({"labels": ["a", "b"], "num_folds": 5},
    ...                      {"labels": ["a"], "num_folds": 5})
    "labels ['a', 'b'] vs ['a']"
    """
    keys = keys or sorted(set(first) | set(other))
    return "; ".join(
        f"{key} {first.get(key)!r} vs {other.get(key)!r}"
        for key in keys
        if first.get(key) != other.get(key)
    )


def _key(identity):
    return json.dumps(identity, sort_keys=True, default=str)


#: folder names that identify a run (fold / seed), not an experiment
_RUN_FOLDER = re.compile(
    r"^(\d+|(fold|session|ses|seed|run|split|speaker|spk)[-_]?\d+)$", re.IGNORECASE
)


def _natural_key(value):
    """Sort key ordering ``fold_2`` before ``fold_10``; None sorts first."""
    if value is None:
        return ((-1, ""),)
    parts = re.split(r"(\d+)", str(value))
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def _experiment_from_folders(file, root, run):
    """Experiment name derived from the folder layout (see module docstring)."""
    run_values = {str(run[key]) for key in ("fold", "seed") if run.get(key) is not None}
    parts = file.parent.relative_to(root).parts
    kept = [p for p in parts if not _RUN_FOLDER.match(p) and p not in run_values]
    if kept:
        return "/".join(kept)
    return root.resolve().name or str(root)


def collect_runs(folders, filename="test_metrics.json"):
    """Find and load every ``filename`` under the given folders (recursively).

    Parameters
    ----------
    folders : str, os.PathLike or list of them
        Folders to search. A file found through two overlapping folders is
        loaded once.
    filename : str
        Name of the per-run metrics file.

    Returns
    -------
    list of dict
        One dict per file, sorted by path: the file's content, plus
        ``"_path"`` (the file, as a string) and ``"experiment"`` when the file
        has none (derived from the folder layout, see the module docstring).

    Raises
    ------
    FileNotFoundError
        If a folder does not exist or no file is found.
    ValueError
        If a file is not valid JSON or not a JSON object (the file is named).

    Example
    -------
    >>> import json, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = os.path.join(tmp, "wavlm", "1993", "session_1")
    ...     os.makedirs(run)
    ...     with open(os.path.join(run, "test_metrics.json"), "w") as f:
    ...         json.dump({"WA": 0.7, "fold": "session_1"}, f)
    ...     runs = collect_runs([tmp])
    >>> [(r["experiment"], r["fold"], r["WA"]) for r in runs]
    [('wavlm', 'session_1', 0.7)]
    """
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    folders = list(folders)
    if not folders:
        raise FileNotFoundError("no folder given to search for run metrics")
    if not filename or os.sep in filename or (os.altsep and os.altsep in filename):
        raise ValueError(f"filename must be a bare file name, got {filename!r}")
    found = {}  # resolved path -> (file, root)
    for folder in folders:
        root = Path(os.fspath(folder))
        if not root.is_dir():
            raise FileNotFoundError(f"run folder not found (or not a folder): {root}")
        for file in sorted(root.rglob(filename)):
            if file.is_file():
                found.setdefault(file.resolve(), (file, root))
    if not found:
        raise FileNotFoundError(
            f"no {filename!r} found under: {', '.join(str(f) for f in folders)}"
        )
    runs = []
    for file, root in sorted(found.values(), key=lambda fr: str(fr[0])):
        try:
            content = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"malformed run file {file}: {err}") from None
        if not isinstance(content, dict):
            raise ValueError(
                f"malformed run file {file}: expected a JSON object, "
                f"got {type(content).__name__}"
            )
        run = dict(content)
        run["_path"] = str(file)
        if run.get("experiment") is None:
            run["experiment"] = _experiment_from_folders(file, root, run)
        runs.append(run)
    return runs


def find_incomplete_runs(folders, filename="test_metrics.json"):
    """Recipe run folders (holding ``hyperparams.yaml``) without ``filename``.

    A fold that crashed or is still training has a run folder but no metrics:
    it must be reported, not silently left out of a mean over folds.

    Parameters
    ----------
    folders : str, os.PathLike or list of them
        Folders to search (recursively).
    filename : str
        Name of the per-run metrics file.

    Returns
    -------
    list of str
        The incomplete run folders, sorted.

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for fold in ("session1", "session2"):
    ...         os.makedirs(os.path.join(tmp, fold))
    ...         open(os.path.join(tmp, fold, "hyperparams.yaml"), "w").close()
    ...     open(os.path.join(tmp, "session1", "test_metrics.json"), "w").close()
    ...     [os.path.basename(f) for f in find_incomplete_runs(tmp)]
    ['session2']
    """
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    incomplete = set()
    for folder in folders:
        root = Path(os.fspath(folder))
        if not root.is_dir():
            continue
        for hparams in root.rglob("hyperparams.yaml"):
            run = hparams.parent
            if not (run / filename).is_file():
                incomplete.add(str(run))
    return sorted(incomplete)


def _check_metric(run, metric, where):
    if metric not in run:
        keys = sorted(k for k in run if not k.startswith("_"))
        raise ValueError(f"{where}: missing metric {metric!r} (keys: {keys})")
    value = run[metric]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: metric {metric!r} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{where}: metric {metric!r} = {value!r} is not in [0, 1] "
            "(metrics must be fractions, not percentages)"
        )
    return value


def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(values.mean()), "std": std}


def _check_metric_names(metrics):
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise ValueError(f"metrics must be a non-empty list of names, got {metrics!r}")
    return metrics


def aggregate_runs(runs, metrics=DEFAULT_METRICS):
    """Group runs by experiment and task (see the module docstring) and
    summarise each metric.

    Parameters
    ----------
    runs : list of dict
        Runs as returned by :func:`collect_runs` (``"experiment"``, and
        optionally ``"protocol"``, ``"fold"``, ``"seed"``, ``"_path"`` keys).
    metrics : list of str
        Metric keys to summarise; every run must have them, as floats in
        [0, 1].

    Returns
    -------
    dict
        ``{"metrics": [...], "scale": "fraction", "experiments": [...],
        "warnings": [...]}``; each experiment (sorted by name, then
        protocol) is ``{"experiment", "protocol", "configuration"
        (:func:`run_configuration`), "n_runs", "folds", "seeds", "metrics":
        {metric: {"mean", "std", "min", "max"}}, "per_fold": [{"fold",
        "n_runs", "metrics": {metric: {"mean", "std"}}}], "runs": [file
        paths]}``; ``warnings`` names the differences of the rows that share
        an experiment name. Means and
        standard deviations (sample, ddof=1, 0 for one run) are fractions in
        [0, 1]; the overall std is over all runs, so it includes fold-to-fold
        variation.

    Raises
    ------
    ValueError
        If ``runs`` is empty, a metric is missing / not a number / outside
        [0, 1], two runs of one group have the same fold and seed (the
        offending files are named), or the folds of one group hold
        different seeds.

    Example
    -------
    >>> runs = [{"experiment": "a", "fold": "s1", "WA": 0.6},
    ...         {"experiment": "a", "fold": "s2", "WA": 0.8}]
    >>> summary = aggregate_runs(runs, ["WA"])["experiments"][0]
    >>> summary["n_runs"], summary["metrics"]["WA"]["mean"]
    (2, 0.7)
    >>> round(summary["metrics"]["WA"]["std"], 6)  # sqrt(2 * 0.1**2 / 1)
    0.141421
    """
    metrics = _check_metric_names(metrics)
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to aggregate")
    groups = {}
    for index, run in enumerate(runs):
        where = run.get("_path", f"run #{index}") if isinstance(run, dict) else None
        if where is None:
            raise ValueError(f"run #{index} is not a dict: {run!r}")
        values = {m: _check_metric(run, m, where) for m in metrics}
        experiment = run.get("experiment")
        experiment = "(unnamed)" if experiment is None else str(experiment)
        configuration = run_configuration(run)
        fold, seed = run.get("fold"), run.get("seed")
        group = groups.setdefault((experiment, _key(configuration)), [])
        if fold is not None and seed is not None:
            for other in group:
                if (other["fold"], other["seed"]) == (fold, seed):
                    raise ValueError(
                        f"duplicate run (experiment {experiment!r}, fold {fold!r}, "
                        f"seed {seed!r}): {other['where']} and {where}"
                    )
        group.append(
            {
                "fold": fold,
                "seed": seed,
                "values": values,
                "where": str(where),
                "configuration": configuration,
                "groups": run.get("groups"),
            }
        )

    experiments = []
    for (experiment, _), group in sorted(groups.items()):
        configuration = group[0]["configuration"]
        protocol = configuration["protocol"]
        protocol = None if protocol is None else str(protocol)
        _check_seeds(experiment, group)
        summary = {}
        for m in metrics:
            values = [r["values"][m] for r in group]
            summary[m] = _mean_std(values)
            summary[m]["min"] = min(values)
            summary[m]["max"] = max(values)
        folds = sorted({r["fold"] for r in group}, key=_natural_key)
        per_fold = []
        for fold in folds:
            members = [r for r in group if r["fold"] == fold]
            per_fold.append(
                {
                    "fold": None if fold is None else str(fold),
                    "n_runs": len(members),
                    "metrics": {
                        m: _mean_std([r["values"][m] for r in members]) for m in metrics
                    },
                }
            )
        seeds = sorted(
            {r["seed"] for r in group if r["seed"] is not None}, key=_natural_key
        )
        experiments.append(
            {
                "experiment": experiment,
                "protocol": protocol,
                "configuration": configuration,
                "n_runs": len(group),
                "folds": [str(f) for f in folds if f is not None],
                "seeds": seeds,
                "metrics": summary,
                "per_fold": per_fold,
                "groups": aggregate_groups([r["groups"] for r in group]),
                "runs": [r["where"] for r in group],
            }
        )
    experiments.sort(key=lambda e: (e["experiment"], e["protocol"] or ""))
    warnings = []
    for name in sorted({e["experiment"] for e in experiments}):
        rows = [e for e in experiments if e["experiment"] == name]
        for row in rows[1:]:
            warnings.append(
                f"experiment {name!r}: runs of different tasks, reported as "
                "separate rows, never averaged: "
                + describe_differences(rows[0]["configuration"], row["configuration"])
            )
    return {
        "metrics": metrics,
        "scale": "fraction",
        "experiments": experiments,
        "warnings": warnings,
    }


GROUP_METRICS = ("WA", "UA", "macro_F1")


def aggregate_groups(reports):
    """Per-gender and per-speaker scores of many runs (see the module
    docstring).

    Arguments
    ---------
    reports : list of (dict or None)
        Each run's ``groups`` (None for a run without them).

    Returns
    -------
    dict
        Grouping name -> ``{"groups": {group: {"n_runs", "n", metric:
        {"mean", "std"}}}, "mean", "std", "worst", "largest_gap"}`` (the
        last four over the groups' means, as
        :func:`sser_lobes.evaluation.groups.group_metrics`).

    Example
    -------
    >>> run = lambda ua_f, ua_m: {"gender": {"groups": {
    ...     "F": {"n": 4, "WA": ua_f, "UA": ua_f, "macro_F1": ua_f},
    ...     "M": {"n": 4, "WA": ua_m, "UA": ua_m, "macro_F1": ua_m}}}}
    >>> groups = aggregate_groups([run(0.5, 0.7), run(0.7, 0.9)])["gender"]
    >>> groups["groups"]["F"]["UA"]["mean"], groups["groups"]["F"]["n"]
    (0.6, 8)
    >>> groups["worst"]["UA"]["group"], round(groups["largest_gap"]["UA"]["value"], 2)
    ('F', 0.2)
    """
    collected = {}
    for report in reports:
        if not isinstance(report, dict):
            continue
        for name, grouping in report.items():
            scores = (grouping or {}).get("groups") or {}
            for group, values in scores.items():
                entry = collected.setdefault(name, {}).setdefault(
                    str(group), {"n": 0, **{m: [] for m in GROUP_METRICS}}
                )
                entry["n"] += int(values.get("n") or 0)
                for metric in GROUP_METRICS:
                    if isinstance(values.get(metric), (int, float)):
                        entry[metric].append(float(values[metric]))
    result = {}
    for name, groups in collected.items():
        summary = {
            group: {
                "n_runs": len(entry["UA"]),
                "n": entry["n"],
                **{m: _mean_std(entry[m]) for m in GROUP_METRICS if entry[m]},
            }
            for group, entry in sorted(
                groups.items(), key=lambda kv: _natural_key(kv[0])
            )
        }
        out = {"groups": summary, "mean": {}, "std": {}, "worst": {}, "largest_gap": {}}
        for metric in GROUP_METRICS:
            means = {g: s[metric]["mean"] for g, s in summary.items() if metric in s}
            if not means:
                continue
            worst = min(means, key=lambda g: (means[g], g))
            best = max(means, key=lambda g: (means[g], g))
            out["mean"][metric] = float(np.mean(list(means.values())))
            out["std"][metric] = float(np.std(list(means.values())))
            out["worst"][metric] = {
                "group": worst,
                "value": means[worst],
                "n": summary[worst]["n"],
            }
            out["largest_gap"][metric] = {
                "value": means[best] - means[worst],
                "best": {"group": best, "value": means[best], "n": summary[best]["n"]},
                "worst": out["worst"][metric],
            }
        result[name] = out
    return result


def groups_markdown(aggregated, metric="UA"):
    """The Markdown section of the groups (empty without any).

    Example
    -------
    >>> run = {"experiment": "a", "fold": "s1", "WA": 0.6, "groups": {"gender": {
    ...     "groups": {"F": {"n": 2, "WA": 0.5, "UA": 0.5, "macro_F1": 0.5},
    ...                "M": {"n": 2, "WA": 0.7, "UA": 0.7, "macro_F1": 0.7}}}}}
    >>> print(groups_markdown(aggregate_runs([run], ["WA"])).splitlines()[4])
    | a | gender | 2 | 60.00 | 50.00 (F, n 2) | 10.00 | 20.00 (M n 2 vs F n 2) |
    """
    lines = []
    names = [exp["experiment"] for exp in aggregated["experiments"]]
    for exp in aggregated["experiments"]:
        for name, grouping in (exp.get("groups") or {}).items():
            if metric not in grouping["worst"]:
                continue
            worst = grouping["worst"][metric]
            gap = grouping["largest_gap"][metric]
            lines.append(
                f"| {markdown_text(_row_name(exp, names))} | {markdown_text(name)} | "
                f"{len(grouping['groups'])} | {100 * grouping['mean'][metric]:.2f} | "
                f"{100 * worst['value']:.2f} ({markdown_text(worst['group'])}, n "
                f"{worst['n']}) | {100 * grouping['std'][metric]:.2f} | "
                f"{100 * gap['value']:.2f} ({markdown_text(gap['best']['group'])} n "
                f"{gap['best']['n']} vs {markdown_text(gap['worst']['group'])} n "
                f"{gap['worst']['n']}) |"
            )
    if not lines:
        return ""
    return (
        "\n".join(
            [
                f"## Per group ({metric} of the test utterances, each group's mean "
                "over the runs that tested it, %)",
                "",
                "| experiment | grouping | groups | mean | worst | std over groups "
                "| largest gap |",
                "|---|---|---:|---:|---:|---:|---:|",
                *lines,
            ]
        )
        + "\n"
    )


def _check_seeds(experiment, group):
    """Refuse a group whose folds hold different seeds."""
    seeds = {}
    for run in group:
        if run["fold"] is not None and run["seed"] is not None:
            seeds.setdefault(str(run["fold"]), set()).add(run["seed"])
    sets = {tuple(sorted(v, key=_natural_key)) for v in seeds.values()}
    if len(sets) > 1:
        listing = "; ".join(
            f"{fold}: {sorted(values, key=_natural_key)}"
            for fold, values in sorted(
                seeds.items(), key=lambda kv: _natural_key(kv[0])
            )
        )
        raise ValueError(
            f"experiment {experiment!r}: its folds hold different seeds ({listing}); "
            "a mean over them would weight the folds unequally. Run the missing "
            "seeds (or finish them), or aggregate folders that hold the same seeds"
        )


def format_cell(stats):
    """``mean ± std`` in percent with 2 decimals."""
    return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def markdown_text(text):
    """Text safe inside a Markdown table cell (``-`` for None)."""
    return "-" if text is None else str(text).replace("|", "\\|")


def format_markdown(aggregated, metrics=None):
    """Markdown tables: one row per experiment, then a per-fold breakdown.

    Cells are ``mean ± std`` in percent with 2 decimals.

    Parameters
    ----------
    aggregated : dict
        Output of :func:`aggregate_runs`.
    metrics : list of str, optional
        Metrics (columns) to show, in order; default: all aggregated ones.

    Returns
    -------
    str
        Markdown text ending with a newline.

    Example
    -------
    >>> runs = [{"experiment": "a", "fold": "s1", "WA": 0.6},
    ...         {"experiment": "a", "fold": "s2", "WA": 0.8}]
    >>> print(format_markdown(aggregate_runs(runs, ["WA"])).splitlines()[4])
    | a | - | 2 | 2 | 0 | 70.00 ± 14.14 |
    """
    if not isinstance(aggregated, dict) or "experiments" not in aggregated:
        raise ValueError("aggregated must be the dict returned by aggregate_runs")
    available = list(aggregated.get("metrics", []))
    metrics = available if metrics is None else _check_metric_names(metrics)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise ValueError(f"metrics {unknown} were not aggregated (have {available})")

    lines = [
        "## Test results (mean ± std over runs, %)",
        "",
        "| experiment | protocol | runs | folds | seeds | "
        + " | ".join(metrics)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(metrics),
    ]
    names = [exp["experiment"] for exp in aggregated["experiments"]]
    for exp in aggregated["experiments"]:
        cells = [
            markdown_text(_row_name(exp, names)),
            markdown_text(exp["protocol"]),
            str(exp["n_runs"]),
            _folds_cell(exp),
            str(len(exp["seeds"])),
        ]
        cells += [format_cell(exp["metrics"][m]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per-fold breakdown (mean ± std over runs of each fold, %)",
        "",
        "| experiment | protocol | fold | runs | " + " | ".join(metrics) + " |",
        "|---|---|---|---:|" + "---:|" * len(metrics),
    ]
    for exp in aggregated["experiments"]:
        for fold in exp["per_fold"]:
            cells = [
                markdown_text(_row_name(exp, names)),
                markdown_text(exp["protocol"]),
                markdown_text(fold["fold"]),
                str(fold["n_runs"]),
            ]
            cells += [format_cell(fold["metrics"][m]) for m in metrics]
            lines.append("| " + " | ".join(cells) + " |")
    groups = groups_markdown(aggregated)
    if groups:
        lines += ["", groups.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _row_name(exp, names):
    """The experiment, with its task when another row has the same name."""
    if names.count(exp["experiment"]) < 2:
        return exp["experiment"]
    task = exp.get("configuration") or {}
    parts = []
    if task.get("labels") is not None:
        parts.append(",".join(map(str, task["labels"])))
    if task.get("num_folds"):
        parts.append(f"{task['num_folds']} folds")
    if task.get("corpus"):
        parts.append(f"corpus {str(task['corpus'])[:8]}")
    return f"{exp['experiment']} [{'; '.join(parts) or 'another task'}]"


def _folds_cell(exp):
    """``2`` or, when the task has more folds than the row, ``2 of 5``."""
    folds = len(exp["folds"])
    total = (exp.get("configuration") or {}).get("num_folds")
    return f"{folds} of {total}" if total and folds != total else str(folds)


def incomplete_runs_markdown(incomplete, filename="test_metrics.json"):
    """Markdown section listing the run folders left out of the means.

    Example
    -------
    >>> print(incomplete_runs_markdown(["results/x/session4"]).strip())
    ## Incomplete runs (no test_metrics.json, not in the means)
    <BLANKLINE>
    - results/x/session4
    """
    lines = ["", f"## Incomplete runs (no {filename}, not in the means)", ""]
    lines += [f"- {markdown_text(run)}" for run in incomplete]
    return "\n".join(lines) + "\n"


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.evaluation.aggregate",
        description=(
            "Aggregate per-run test metrics (one JSON file per fold / seed) into "
            "mean ± std tables, grouped by experiment and protocol."
        ),
    )
    parser.add_argument("folders", nargs="+", metavar="RUN_FOLDER")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        help="metric keys to report (default: %(default)s)",
    )
    parser.add_argument("--markdown", metavar="OUT_MD", help="write Markdown here")
    parser.add_argument("--json", metavar="OUT_JSON", help="write JSON here")
    parser.add_argument(
        "--file",
        default="test_metrics.json",
        help="name of the per-run metrics file (default: %(default)s)",
    )
    return parser


def write_report(text, data, markdown=None, json_path=None):
    """Write a Markdown table and/or its JSON data (parent folders created).

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_report("| a |", {"a": 1}, folder / "t.md", folder / "sub" / "t.json")
    >>> (folder / "sub" / "t.json").read_text()
    '{\\n  "a": 1\\n}\\n'
    """
    if markdown:
        out = Path(markdown)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    if json_path:
        out = Path(json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def main(argv=None):
    """Command-line entry point; prints the Markdown tables.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on error (the message goes to stderr).

    Example
    -------
    >>> import json, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for fold, wa in [("session_1", 0.5), ("session_2", 0.7)]:
    ...         os.makedirs(os.path.join(tmp, "exp", fold))
    ...         with open(os.path.join(tmp, "exp", fold, "m.json"), "w") as f:
    ...             json.dump({"WA": wa, "fold": fold}, f)
    ...     code = main([tmp, "--file", "m.json", "--metrics", "WA"])
    ... # doctest: +ELLIPSIS
    ## Test results (mean ± std over runs, %)
    ...
    | exp | - | 2 | 2 | 0 | 60.00 ± 14.14 |
    ...
    >>> code
    0
    """
    args = _parser().parse_args(argv)
    try:
        runs = collect_runs(args.folders, filename=args.file)
        aggregated = aggregate_runs(runs, args.metrics)
        text = format_markdown(aggregated, args.metrics)
        for warning in aggregated["warnings"]:
            print(f"aggregate: warning: {warning}", file=sys.stderr)
        incomplete = find_incomplete_runs(args.folders, filename=args.file)
        if incomplete:
            aggregated["incomplete_runs"] = incomplete
            text += incomplete_runs_markdown(incomplete, args.file)
            for run in incomplete:
                print(
                    f"aggregate: warning: {run}: no {args.file} (unfinished or "
                    "failed run), not included in the means",
                    file=sys.stderr,
                )
        write_report(text, aggregated, markdown=args.markdown, json_path=args.json)
    except (OSError, ValueError) as err:
        print(f"aggregate: error: {err}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
