"""Audio and data: reading files, describing corpora, writing manifests,
building batches.

Owns audio reading and checks (any rate, channels and format, with one-line
errors), the corpus CSV of the Custom recipe and the documented facts of the
public corpora, the preparation machinery the recipes' ``*_prepare.py``
scripts share (atomic writes, the state file that makes preparation
idempotent, per-row reports), the SpeechBrain data pipelines over JSON
manifests, duration-bucketed batching, chunking of long audio and waveform
statistics.

May import: :mod:`sser_lobes.errors` only (and torch, SpeechBrain's dataio).
"""
