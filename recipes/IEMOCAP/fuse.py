#!/usr/bin/env python3
"""Fuse several IEMOCAP model variants with weights searched on the valid set.

One fusion per fold: the members are the runs of the different variants on
the same fold (same test session) and the same seed (the recipe draws the
validation utterances with the run's seed, and the fusion needs the same
utterances in every member); the weights are searched on that fold's
validation set and applied to its test set::

    python fuse.py \\
        results/IEMOCAP/wavlm_large_partial/loso/seed_1993/session1 \\
        results/IEMOCAP/hubert_large_partial/loso/seed_1993/session1 \\
        results/IEMOCAP/wav2vec2_base_partial/loso/seed_1993/session1 \\
        --out results/IEMOCAP/fused/loso/seed_1993/session1 [--bias]

and for all five folds::

    for s in 1 2 3 4 5; do
        run=loso/seed_1993/session$s
        python fuse.py results/IEMOCAP/{wavlm,hubert}_large_partial/$run \\
            --out results/IEMOCAP/fused/$run
    done
    python aggregate.py results/IEMOCAP/fused

Defaults here: ``--search-split valid --apply-splits test`` (the IEMOCAP
recipe's split names); other options as in :mod:`sser_lobes.evaluation.fuse`
(``--metric macro_F1|UA|WA|micro_F1``, ``--bias``, ``--experiment``). Each
output folder gets ``fusion.json``, ``valid_*`` and ``test_*`` metrics and
predictions, with the fold copied from the members, so that ``aggregate.py``
and ``ablation.py`` treat it as one more run.
"""

import sys

from sser_lobes.evaluation.fuse import main

if __name__ == "__main__":
    sys.exit(main(defaults={"search_split": "valid", "apply_splits": ["test"]}))
