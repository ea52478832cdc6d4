#!/usr/bin/env python3
"""Padding share of our batching against the challenge baseline's, same data.

    python benchmark_padding.py [--out bench_msp] [--utterances-per-class 40]
    python benchmark_padding.py --manifest /path/to/manifests/train.json

Without ``--manifest``, writes an MSP-Podcast-format corpus whose segments
last 2.75 to 11 s like the real ones (``sser_lobes.synthetic.msp_podcast``),
prepares it with ``msp_podcast_prepare.py`` and reads the training manifest.
For each batch size it prints the share of computed samples that is padding
with the Odyssey 2024 baseline's random batches and with our duration
buckets, both with the recipe's 12 s training crop, and the ratio. Padding is
compute and memory spent on zeros: the baseline pads every batch to its
longest utterance.
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = "MSP-Podcast challenge baseline: random batches"


def generated_manifest(out, utterances_per_class, seed):
    """Write (or reuse) the corpus and its manifests; return train.json."""
    from msp_podcast_prepare import prepare_msp_podcast

    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    corpus = out / "corpus"
    roots = sorted(corpus.glob("*")) if corpus.exists() else []
    if roots:
        root = roots[0]
    else:
        root = make_msp_podcast_corpus(
            corpus,
            utterances_per_class=utterances_per_class,
            seed=seed,
            min_duration=2.75,
            max_duration=11.0,
        )
    paths = prepare_msp_podcast(root, out / "manifests", splits=("Train",))
    return Path(paths["Train"])


def main(argv=None):
    """Print the padding table; return it as a dict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", help="an existing training manifest")
    parser.add_argument("--out", default="bench_msp", help="folder for the corpus")
    parser.add_argument("--utterances-per-class", type=int, default=40)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--crop-seconds", type=float, default=12.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1993)
    parser.add_argument("--json", help="also write the table as JSON")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from sser_lobes.evaluation.padding_report import (
        load_manifest_durations,
        padding_report,
    )

    if args.manifest:
        manifest = Path(args.manifest)
    else:
        manifest = generated_manifest(
            Path(args.out), args.utterances_per_class, args.seed
        )
    _, durations = load_manifest_durations(manifest)
    print(
        f"{manifest}: {len(durations)} training utterances, "
        f"{durations.min():.2f}-{durations.max():.2f} s "
        f"(mean {durations.mean():.2f} s), crop {args.crop_seconds:g} s"
    )
    print(f"| batch size | {PEER} | sser duration buckets | ratio |")
    print("|---|---|---|---|")
    table = {"manifest": str(manifest), "n": len(durations), "rows": []}
    for batch_size in args.batch_sizes:
        report = padding_report(
            durations,
            batch_size=batch_size,
            baseline_batch_size=batch_size,
            epochs=args.epochs,
            seed=args.seed,
            max_duration=args.crop_seconds,
        )
        ours = report["bucketed_padding_share"]
        peer = report["baseline_padding_share"]
        ratio = peer / ours if ours > 0 else float("inf")
        print(
            f"| {batch_size} | {100 * peer:.1f} % | {100 * ours:.1f} % | {ratio:.1f}x |"
        )
        table["rows"].append(
            {"batch_size": batch_size, "peer": peer, "ours": ours, "ratio": ratio}
        )
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as error:  # bad options or manifest: one line
        sys.exit(f"error: {error}")
