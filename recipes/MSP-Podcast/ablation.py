#!/usr/bin/env python3
"""One MSP-Podcast ablation table: a row per variant, mean ± std over its runs.

::

    r=results/MSP-Podcast/wavlm_large_categorical
    python ablation.py base=${r}_attentive_statistics_weighted_ce \\
        mean=${r}_mean_weighted_ce std=${r}_std_weighted_ce \\
        focal=${r}_attentive_statistics_focal \\
        fused=results/MSP-Podcast/fused [--markdown ablation.md]

Each folder holds every run (seeds) of one variant. Defaults for this recipe:
``--file test1_metrics.json`` (Test1, the main labelled test set; use
``--file test2_metrics.json`` or ``development_metrics.json`` for the
others; Test3 has no labels) and ``--metrics macro_F1 UA WA`` so that the
last column is the macro-F1 difference (the challenge metric) to the first
row, in percentage points. Logic in :mod:`sser_lobes.evaluation.ablation`.
"""

import sys

from sser_lobes.evaluation.ablation import main

if __name__ == "__main__":
    sys.exit(
        main(
            defaults={"file": "test1_metrics.json", "metrics": ["macro_F1", "UA", "WA"]}
        )
    )
