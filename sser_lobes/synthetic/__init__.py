"""Synthetic corpora in the exact on-disk formats of the real ones.

IEMOCAP and MSP-Podcast are licensed and absent here; EmoDB, RAVDESS and
CREMA-D are public but not downloaded. The generators write small corpora in
their official layouts (file names, label files, partitions, macOS ``._*``
files and all), with emotions that differ in pitch, energy, rate and
brightness, so that the preparations, the recipes and the demo run end to end
and a model can learn something. Each is a function and a command line
(``python -m sser_lobes.synthetic.iemocap --out DIR``).

May import: :mod:`sser_lobes.errors`, :mod:`sser_lobes.dataio`.
"""
