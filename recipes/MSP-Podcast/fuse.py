#!/usr/bin/env python3
"""Fuse several MSP-Podcast Task 1 models with weights searched on Development.

As in the Odyssey 2024 submission of system B (project brief), the class
probabilities of several variants are averaged with non-negative weights
summing to one, found by maximising macro-F1 on Development, and applied to
Test1, Test2 and the hidden Test3::

    r=results/MSP-Podcast/wavlm_large_categorical
    python fuse.py ${r}_attentive_statistics_weighted_ce/seed_1993 \\
        ${r}_std_weighted_ce/seed_1993 ${r}_std_focal/seed_1993 \\
        --out results/MSP-Podcast/fused [--bias]

Defaults: ``--search-split development --apply-splits test1 test2 test3
--metric macro_F1``. Test3 is read from each member's
``test3_probabilities.csv`` (or ``test3_predictions.csv``); the output folder
gets the challenge files ``test3_submission.csv`` and
``test3_probabilities.csv`` of the fusion, plus ``fusion.json`` and the
metrics / predictions of Development, Test1 and Test2. The Development score
of the fusion is optimistic (the weights were fitted on it): compare on
Test1 / Test2. See :mod:`sser_lobes.evaluation.fuse` for every option.
"""

import sys

from sser_lobes.evaluation.fuse import main

if __name__ == "__main__":
    sys.exit(
        main(
            defaults={
                "search_split": "development",
                "apply_splits": ["test1", "test2", "test3"],
            }
        )
    )
