#!/usr/bin/env python3
"""One IEMOCAP ablation table: a row per variant, mean ± std over its runs.

::

    python ablation.py base=results/IEMOCAP/wavlm_large_partial \\
        gender=results/IEMOCAP/wavlm_large_partial_gender \\
        text=results/IEMOCAP/wavlm_large_partial_text \\
        both=results/IEMOCAP/wavlm_large_partial_gender_text \\
        fused=results/IEMOCAP/fused [--markdown ablation.md] [--json ablation.json]

Each folder holds every run (folds x seeds) of one variant. Default file:
``test_metrics.json`` (the held-out session of each fold); default metrics
``WA UA macro_F1``, the last column is the WA difference to the first row in
percentage points. ``--file valid_metrics.json`` compares on the validation
sets instead. Logic in :mod:`sser_lobes.evaluation.ablation`.
"""

import sys

from sser_lobes.evaluation.ablation import main

if __name__ == "__main__":
    sys.exit(main(defaults={"file": "test_metrics.json"}))
