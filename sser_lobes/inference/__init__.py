"""Inference: a trained model as a folder people load, and the ways to run it.

Owns the export of a run as a model folder
(:mod:`~sser_lobes.inference.export`), the one-line recognizer
(:class:`~sser_lobes.inference.recognizer.EmotionRecognizer`), the
``sser-predict`` command line, the ONNX export and runtime, the stock
transformers checkpoint (:mod:`~sser_lobes.inference.transformers_export`),
the web page (``sser-demo``, :mod:`~sser_lobes.inference.demo`) and the
HTTP service (``sser-serve``, :mod:`~sser_lobes.inference.server`).

May import: every layer but :mod:`sser_lobes.training` (an export reads a
run folder's files, not the recipe's code).

Example
-------
>>> from sser_lobes.inference import EmotionRecognizer
>>> EmotionRecognizer.__module__
'sser_lobes.inference.recognizer'
"""


def __getattr__(name):
    # The short import path users type; loaded on first use (PEP 562).
    if name == "EmotionRecognizer":
        from sser_lobes.inference.recognizer import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'sser_lobes.inference' has no attribute {name!r}")
