#!/usr/bin/env python3
"""Turn the generic recipe's run folders into a mean ± std table per experiment.

    python aggregate.py results/Custom [--markdown summary.md] [--json summary.json]

Finds every ``test_metrics.json`` below the given folders (one per fold and
seed, written by ``train.py``), groups them by experiment and protocol, and
prints WA / UA / macro-F1 as mean ± std over the runs, plus a per-fold table.
The logic lives in :mod:`sser_lobes.evaluation.aggregate`, shared with the other
recipes.
"""

import sys

from sser_lobes.evaluation.aggregate import main

if __name__ == "__main__":
    sys.exit(main())
