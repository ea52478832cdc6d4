"""Evaluation: metrics on whole sets, and the tables and figures made from
runs.

Owns the classification and regression metrics, confusion matrices and
learning curves, the aggregation of runs over folds and seeds, ablation
tables, late fusion and its weight search, the padding report, and the
evaluation of an exported model on a corpus file.

May import: :mod:`sser_lobes.errors`, :mod:`sser_lobes.dataio`.
"""
