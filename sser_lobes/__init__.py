"""sser_lobes: SpeechBrain lobes for speech emotion recognition with SSL encoders.

The package is layered; a subpackage imports only the ones listed before it
(``tests/test_layout.py`` checks the table):

=================  ==========================================================
``errors``         every error type (a module at the bottom)
``encoders``       the SSL encoder wrapper, its CPU fast path, int8, tiny models
``nnet``           pooling, heads, gender and text conditioning, the emotion
                   model, losses
``dataio``         audio, corpora, manifests, preparation, batching, chunking
``text``           transcript embeddings, their cache, ASR
``evaluation``     metrics, plots, aggregation, ablation, fusion
``training``       the recipes' Brain classes, set-up, checks, split guard,
                   feature cache
``inference``      export, the model folder, the recognizer, ``sser-predict``,
                   ONNX
``synthetic``      corpora in the real formats, for tests and the demo
=================  ==========================================================

``docs/architecture.md`` follows a run and a prediction through them. The
names people type are re-exported here and loaded on first use.

Example
-------
>>> from sser_lobes import SSLEncoder, MeanPooling, LinearHead, EmotionModel
>>> from sser_lobes import EmotionRecognizer
"""

import logging
import warnings

# transformers' WavLM attention hands torch a bool padding mask and a float
# position bias; torch warns about the mix at every first call. The masks are
# correct (the batch-invariance tests check it): the warning is not actionable.
warnings.filterwarnings(
    "ignore",
    message="Support for mismatched key_padding_mask and attn_mask",
    category=UserWarning,
)


class _NoTorchvisionNotice(logging.Filter):
    """Drop SpeechBrain's "torchvision is not available - cannot save figures".

    SpeechBrain logs it when ``speechbrain.utils.train_logger`` is imported
    (for its ProgressSampleLogger, which sser does not use); the recipes write
    their PNG figures with matplotlib, so the notice only misleads.
    """

    def filter(self, record):
        return "torchvision is not available" not in record.getMessage()


logging.getLogger("speechbrain.utils.train_logger").addFilter(_NoTorchvisionNotice())

# The lobes are imported on first use (PEP 562): light command lines
# (aggregate, padding_report, fuse, ...) and error messages do not pay for
# importing transformers' model code.
_LAZY = {
    "LinearHead": "sser_lobes.nnet.heads",
    "MLPHead": "sser_lobes.nnet.heads",
    "EmotionModel": "sser_lobes.nnet.model",
    "AttentiveStatisticsPooling": "sser_lobes.nnet.pooling",
    "MeanPooling": "sser_lobes.nnet.pooling",
    "MeanStdPooling": "sser_lobes.nnet.pooling",
    "StdPooling": "sser_lobes.nnet.pooling",
    "make_pooling": "sser_lobes.nnet.pooling",
    "SSLEncoder": "sser_lobes.encoders.ssl_encoder",
    "EmotionRecognizer": "sser_lobes.inference.recognizer",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sser_lobes' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "AttentiveStatisticsPooling",
    "EmotionModel",
    "EmotionRecognizer",
    "LinearHead",
    "MLPHead",
    "MeanPooling",
    "MeanStdPooling",
    "SSLEncoder",
    "StdPooling",
    "make_pooling",
]
