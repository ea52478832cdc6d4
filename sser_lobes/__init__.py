"""sser_lobes: SpeechBrain lobes for speech emotion recognition with SSL encoders.

Example
-------
>>> from sser_lobes import SSLEncoder, MeanPooling, LinearHead, EmotionModel
"""

from sser_lobes.heads import LinearHead, MLPHead
from sser_lobes.model import EmotionModel
from sser_lobes.pooling import (
    AttentiveStatisticsPooling,
    MeanPooling,
    MeanStdPooling,
    StdPooling,
    make_pooling,
)
from sser_lobes.ssl_encoder import SSLEncoder

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
