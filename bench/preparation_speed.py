#!/usr/bin/env python3
"""How long the MSP-Podcast preparation and the synthetic corpus take.

    python bench/preparation_speed.py [--rows 150000] [--repeats 3] [--json out.json]

Timings live here, not in the test suite (no test asserts a wall-clock time;
``tests/test_suite_rules.py``). Three figures, each the median of
``--repeats`` runs, with the 1-minute load average before and after:

* ``parse_labels``: ``msp_podcast_prepare.read_labels`` on a release-sized
  ``labels_consensus.csv`` (``--rows`` rows,
  :func:`sser_lobes.synthetic.msp_podcast.make_label_table`);
* ``prepare``: the whole ``prepare_msp_podcast`` on that table (every row
  checked, the missing audio of all rows but one reported);
* ``generate_corpus``: ``make_msp_podcast_corpus`` with its defaults (96
  files of 1-2 s).

Prints a JSON record and the markdown row of bench/README.md's table.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes" / "MSP-Podcast"))


def _median_seconds(run, repeats):
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds


def main(argv=None):
    import msp_podcast_prepare as prep

    from sser_lobes.synthetic.msp_podcast import (
        make_label_table,
        make_msp_podcast_corpus,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the JSON record here")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labels = make_label_table(work / "big", rows=args.rows)
        parse, parse_all = _median_seconds(
            lambda: prep.read_labels(labels), args.repeats
        )
        runs = iter(range(args.repeats))
        prepare, prepare_all = _median_seconds(
            lambda: prep.prepare_msp_podcast(
                work / "big",
                work / f"prep{next(runs)}",
                splits=("Train", "Development", "Test1", "Test2"),
                num_workers=2,
            ),
            args.repeats,
        )
        corpora = iter(range(args.repeats))
        generate, generate_all = _median_seconds(
            lambda: make_msp_podcast_corpus(work / f"corpus{next(corpora)}"),
            args.repeats,
        )
    record = {
        "rows": args.rows,
        "parse_labels_seconds": parse,
        "prepare_seconds": prepare,
        "generate_corpus_seconds": generate,
        "all_seconds": {
            "parse_labels": parse_all,
            "prepare": prepare_all,
            "generate_corpus": generate_all,
        },
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "cpus": len(os.sched_getaffinity(0)),
    }
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(
        f"| {args.rows:,} label rows | {parse:.2f} s | {prepare:.2f} s | "
        f"{generate:.2f} s | {load_before:.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
