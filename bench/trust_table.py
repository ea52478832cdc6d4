#!/usr/bin/env python3
"""The "Trusting a prediction" table of README from run folders.

    python bench/trust_table.py NAME=RUN_FOLDER [NAME=RUN_FOLDER ...] [--split test]

For each run: the test split's ECE (15 bins) and NLL of the raw and the
calibrated probabilities (temperature fitted on the validation split), the
coverage at 95 % accuracy on the test split itself (the largest share of
utterances the model can answer at that accuracy), and the threshold found
on the validation split for 95 % accuracy with the coverage and accuracy it
gives on the test split; and the mean KL divergence from the annotators'
vote distributions to the (raw) probabilities, on the utterances with votes.
The numbers are read from the metrics files the recipes write
(``<split>_metrics.json``), nothing is recomputed.
"""

import argparse
import json
import sys
from pathlib import Path


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def row(name, run, split):
    """One Markdown row of a run folder."""
    metrics = json.loads((Path(run) / f"{split}_metrics.json").read_text())
    calibration = metrics["calibration"]
    raw, cal = calibration["raw"], calibration["calibrated"]
    own = (metrics["selective"]["thresholds"] or {}).get("0.95")
    given = (metrics["selective"].get("at_valid_thresholds") or {}).get("0.95")
    valid = (
        "none reached"
        if given is None
        else (
            f"p >= {given['threshold']:.3f}: {_pct(given['coverage'])} % / "
            f"{_pct(given['accuracy'])} %"
        )
    )
    temperature = ", ".join(f"{t:.2f}" for t in calibration["temperature"] or [])
    agreement = metrics.get("agreement") or {}
    kl = "-" if agreement.get("KL") is None else f"{agreement['KL']:.3f}"
    targets = (metrics.get("training_targets") or {}).get("targets", "hard")
    return (
        f"| {name} | {targets} | {metrics['n']} | {_pct(metrics['WA'])} | "
        f"{temperature or '-'} | "
        f"{_pct(raw['ECE'])} -> {_pct(cal['ECE'])} | {raw['NLL']:.3f} -> "
        f"{cal['NLL']:.3f} | {_pct(own['coverage']) if own else '0.0'} | {valid} | "
        f"{kl} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_FOLDER")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    print(
        f"| run | targets | {args.split} n | WA (%) | temperature | ECE raw -> "
        "calibrated (%) | NLL raw -> calibrated | coverage at 95 % accuracy (%) | "
        f"valid threshold for 95 %: {args.split} coverage / accuracy | mean KL "
        "to the votes |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for item in args.runs:
        name, _, run = item.partition("=")
        if not run:
            parser.error(f"{item}: give NAME=RUN_FOLDER")
        print(row(name, run, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
