"""sser_lobes: SpeechBrain lobes for speech emotion recognition with SSL encoders.

Example
-------
>>> from sser_lobes import SSLEncoder, MeanPooling, LinearHead, EmotionModel
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

from sser_lobes.heads import LinearHead, MLPHead  # noqa: E402
from sser_lobes.model import EmotionModel  # noqa: E402
from sser_lobes.pooling import (  # noqa: E402
    AttentiveStatisticsPooling,
    MeanPooling,
    MeanStdPooling,
    StdPooling,
    make_pooling,
)
from sser_lobes.ssl_encoder import SSLEncoder  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AttentiveStatisticsPooling",
    "EmotionModel",
    "LinearHead",
    "MLPHead",
    "MeanPooling",
    "MeanStdPooling",
    "SSLEncoder",
    "StdPooling",
    "make_pooling",
]
