"""Ablation table: one row per model variant, mean ± std over its runs.

::

    python -m sser_lobes.evaluation.ablation LABEL=FOLDER [LABEL=FOLDER ...]
        [--file test_metrics.json] [--metrics WA UA macro_F1]
        [--markdown out.md] [--json out.json]

for example::

    python -m sser_lobes.evaluation.ablation base=results/IEMOCAP/wavlm_large_partial \\
        gender=results/IEMOCAP/wavlm_gender text=results/IEMOCAP/wavlm_text \\
        both=results/IEMOCAP/wavlm_gender_text fused=results/IEMOCAP/fused

Each FOLDER holds all the runs (folds x seeds, at any depth) of one variant:
every ``--file`` below it is one run (found and loaded by
:func:`sser_lobes.evaluation.aggregate.collect_runs`). All runs of a variant are
summarised together under its LABEL, whatever their own ``experiment``
name, by :func:`sser_lobes.evaluation.aggregate.aggregate_runs`: mean ± sample standard
deviation (ddof=1, 0 for one run) over the runs, in percent with two
decimals, and the number of runs. The table has one row per LABEL, in the
order given, and a last column with the difference of the first metric's
mean to the first row's (percentage points; the first row is the
reference).

Errors: a folder without runs, a folder whose runs are not one
configuration (:func:`sser_lobes.evaluation.aggregate.run_configuration`:
the task, the encoder, the fine-tuning mode and the training targets; e.g.
leave-one-session-out and random-split runs, or 4-class and 3-class runs),
variants of different tasks (:func:`sser_lobes.evaluation.aggregate.run_task`:
classes, label maps, corpus, protocol, number of folds; the encoder, the
fine-tuning mode and the training targets may differ, that is what an
ablation compares), two runs of one
variant with the same fold and seed, a repeated LABEL. Each error names
what differs. Variants whose runs cover different folds or seeds are
reported on stderr: their means are over different test sets or seeds.
"""

from __future__ import annotations

import argparse
import sys

from sser_lobes.evaluation.aggregate import (
    DEFAULT_METRICS,
    aggregate_runs,
    collect_runs,
    describe_differences,
    find_incomplete_runs,
    format_cell,
    markdown_text,
    run_configuration,
    run_task,
    write_report,
)

__all__ = ["ablation_table", "format_ablation", "main", "parse_variants"]


def parse_variants(items):
    """Parse ``LABEL=FOLDER`` arguments.

    Parameters
    ----------
    items : list of str
        Arguments such as ``"base=results/wavlm"``; the label is what comes
        before the first ``=``.

    Returns
    -------
    list of tuple
        ``(label, folder)`` pairs, in the given order.

    Raises
    ------
    ValueError
        On an item without ``=``, an empty label or folder, or a repeated
        label.

    Example
    -------
    >>> parse_variants(["base=results/a", "fused=results/b=c"])
    [('base', 'results/a'), ('fused', 'results/b=c')]
    """
    variants = []
    for item in items:
        label, sep, folder = str(item).partition("=")
        label = label.strip()
        if not sep or not label or not folder:
            raise ValueError(f"expected LABEL=FOLDER, got {item!r}")
        if any(label == other for other, _ in variants):
            raise ValueError(f"label {label!r} given more than once")
        variants.append((label, folder))
    if not variants:
        raise ValueError("no LABEL=FOLDER given")
    return variants


def ablation_table(variants, filename="test_metrics.json", metrics=DEFAULT_METRICS):
    """Summarise each variant's runs; one row per variant, in order.

    Parameters
    ----------
    variants : list of tuple
        ``(label, folder)`` pairs (see :func:`parse_variants`).
    filename : str
        Per-run metrics file name.
    metrics : list of str
        Metric keys; the delta column uses the first one.

    Returns
    -------
    dict
        ``{"file", "metrics", "scale": "fraction", "delta_metric", "rows",
        "warnings"}``; each row is ``{"label", "folder", "experiments" (the
        runs' own names), "protocol", "n_runs", "folds", "seeds", "metrics":
        {metric: {"mean", "std", "min", "max"}}, "delta"}`` with fractions in
        [0, 1]; ``delta`` is the first metric's mean minus the first row's
        (None for the first row); ``"runs"`` lists the files.

    Raises
    ------
    FileNotFoundError
        If a folder does not exist or holds no run (the label is named).
    ValueError
        If a variant's runs come from different protocols, or on the errors
        of :func:`sser_lobes.evaluation.aggregate.aggregate_runs`.

    Example
    -------
    >>> import json, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for variant, fold, wa in [("a", 1, 0.6), ("a", 2, 0.8), ("b", 1, 0.75)]:
    ...         run = os.path.join(tmp, variant, f"fold_{fold}")
    ...         os.makedirs(run)
    ...         with open(os.path.join(run, "test_metrics.json"), "w") as f:
    ...             json.dump({"WA": wa, "fold": fold, "seed": 1}, f)
    ...     table = ablation_table([("base", os.path.join(tmp, "a")),
    ...                             ("new", os.path.join(tmp, "b"))], metrics=["WA"])
    >>> [(r["label"], r["n_runs"], round(r["metrics"]["WA"]["mean"], 4))
    ...  for r in table["rows"]]
    [('base', 2, 0.7), ('new', 1, 0.75)]
    >>> round(table["rows"][1]["delta"], 4)
    0.05
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("no metric given")
    variants = list(variants)
    if not variants:
        raise ValueError("no variant given")
    rows = []
    warnings = []
    for label, folder in variants:
        try:
            runs = collect_runs([folder], filename=filename)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"variant {label!r}: {err}") from None
        first = runs[0]
        for run in runs[1:]:
            difference = describe_differences(
                run_configuration(first), run_configuration(run)
            )
            if difference:
                raise ValueError(
                    f"variant {label!r}: the runs under {folder} are not one "
                    f"configuration ({first['_path']} and {run['_path']} differ: "
                    f"{difference}); give each configuration its own LABEL=FOLDER"
                )
        for run_folder in find_incomplete_runs([folder], filename=filename):
            warnings.append(
                f"variant {label!r}: {run_folder} has no {filename} (unfinished "
                "or failed run), not in its mean"
            )
        names = sorted({str(run.get("experiment")) for run in runs})
        relabelled = [{**run, "experiment": label} for run in runs]
        try:
            summary = aggregate_runs(relabelled, metrics)["experiments"][0]
        except ValueError as err:
            raise ValueError(f"variant {label!r} ({folder}): {err}") from None
        rows.append(
            {
                "label": label,
                "folder": str(folder),
                "experiments": names,
                "task": run_task(first),
                "protocol": summary["protocol"],
                "n_runs": summary["n_runs"],
                "folds": summary["folds"],
                "seeds": summary["seeds"],
                "metrics": summary["metrics"],
                "runs": summary["runs"],
            }
        )
    first = metrics[0]
    reference = rows[0]["metrics"][first]["mean"]
    for k, row in enumerate(rows):
        row["delta"] = None if k == 0 else row["metrics"][first]["mean"] - reference
    for row in rows[1:]:
        difference = describe_differences(rows[0]["task"], row["task"])
        if difference:
            raise ValueError(
                f"variants {rows[0]['label']!r} and {row['label']!r} are not one "
                f"task ({difference}); an ablation compares variants of one task"
            )
        for key in ("folds", "seeds"):
            if row[key] != rows[0][key]:
                warnings.append(
                    f"variants {rows[0]['label']!r} and {row['label']!r} cover "
                    f"different {key} ({rows[0][key]} vs {row[key]}): their means "
                    "are not over the same runs"
                )
    return {
        "file": filename,
        "metrics": metrics,
        "scale": "fraction",
        "delta_metric": first,
        "rows": rows,
        "warnings": warnings,
    }


def format_ablation(table):
    """Markdown: one table, one row per variant, delta on the first metric.

    Parameters
    ----------
    table : dict
        Output of :func:`ablation_table`.

    Returns
    -------
    str
        Markdown text ending with a newline.

    Example
    -------
    >>> stats = {"WA": {"mean": 0.7, "std": 0.01}}
    >>> table = {"file": "test_metrics.json", "metrics": ["WA"], "rows": [
    ...     {"label": "base", "protocol": "loso", "n_runs": 5, "metrics": stats,
    ...      "delta": None},
    ...     {"label": "fused", "protocol": "loso", "n_runs": 5,
    ...      "metrics": {"WA": {"mean": 0.7123, "std": 0.02}}, "delta": 0.0123}]}
    >>> print(format_ablation(table))
    ## Ablation on test_metrics.json (mean ± std over runs, %)
    <BLANKLINE>
    | variant | runs | WA | Δ WA |
    |---|---:|---:|---:|
    | base | 5 | 70.00 ± 1.00 | ref |
    | fused | 5 | 71.23 ± 2.00 | +1.23 |
    <BLANKLINE>
    Protocol: loso.
    <BLANKLINE>
    """
    metrics = table["metrics"]
    lines = [
        f"## Ablation on {table['file']} (mean ± std over runs, %)",
        "",
        "| variant | runs | " + " | ".join(metrics) + f" | Δ {metrics[0]} |",
        "|---|---:|" + "---:|" * (len(metrics) + 1),
    ]
    for row in table["rows"]:
        delta = "ref" if row["delta"] is None else f"{100 * row['delta']:+.2f}"
        cells = [markdown_text(row["label"]), str(row["n_runs"])]
        cells += [format_cell(row["metrics"][m]) for m in metrics]
        cells.append(delta)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Protocol: {markdown_text(table['rows'][0]['protocol'])}.")
    incomplete = [w for w in table.get("warnings", []) if "unfinished" in w]
    if incomplete:
        lines += ["", "Left out of the means:", ""]
        lines += [f"- {markdown_text(w)}" for w in incomplete]
    return "\n".join(lines) + "\n"


def _parser(defaults=None):
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.evaluation.ablation",
        description=(
            "One table comparing model variants: mean ± std over each variant's "
            "runs, one row per LABEL=FOLDER in the given order, and the delta of "
            "the first metric to the first row."
        ),
    )
    parser.add_argument("variants", nargs="+", metavar="LABEL=FOLDER")
    parser.add_argument(
        "--file",
        default="test_metrics.json",
        help="name of the per-run metrics file (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        help="metric keys, the first one gets the delta column (default: %(default)s)",
    )
    parser.add_argument("--markdown", metavar="OUT_MD", help="write Markdown here")
    parser.add_argument("--json", metavar="OUT_JSON", help="write JSON here")
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
        wrappers), e.g. ``{"file": "test1_metrics.json"}``.

    Returns
    -------
    int
        0 on success, 1 on error (the message goes to stderr).

    Example
    -------
    >>> import json, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for variant, wa in [("a", 0.5), ("b", 0.6)]:
    ...         os.makedirs(os.path.join(tmp, variant, "fold_1"))
    ...         with open(os.path.join(tmp, variant, "fold_1", "m.json"), "w") as f:
    ...             json.dump({"WA": wa, "fold": "fold_1"}, f)
    ...     code = main([f"base={tmp}/a", f"new={tmp}/b", "--file", "m.json",
    ...                  "--metrics", "WA"])
    ... # doctest: +ELLIPSIS
    ## Ablation on m.json (mean ± std over runs, %)
    ...
    | new | 1 | 60.00 ± 0.00 | +10.00 |
    ...
    >>> code
    0
    """
    args = _parser(defaults).parse_args(argv)
    try:
        table = ablation_table(
            parse_variants(args.variants), filename=args.file, metrics=args.metrics
        )
        text = format_ablation(table)
        write_report(text, table, markdown=args.markdown, json_path=args.json)
    except (OSError, ValueError) as err:
        print(f"ablation: error: {err}", file=sys.stderr)
        return 1
    for warning in table["warnings"]:
        print(f"ablation: warning: {warning}", file=sys.stderr)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
