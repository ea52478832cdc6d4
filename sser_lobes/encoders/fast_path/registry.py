"""Which transformers module class each fast module replaces, and the
transformers versions this was checked against.

:class:`~sser_lobes.encoders.ssl_encoder.SSLEncoder` switches the class of
every module found in :data:`FAST_MODULES` (same parameters, same state-dict
keys); :func:`check_transformers_version` refuses a transformers whose
internals differ.

Example
-------
>>> from transformers.models.wavlm.modeling_wavlm import WavLMAttention
>>> FAST_MODULES[WavLMAttention].__name__
'FastWavLMAttention'
"""

import logging

from packaging.version import Version
from torch import nn
from transformers.models.hubert.modeling_hubert import (
    HubertFeatureEncoder,
    HubertFeedForward,
    HubertPositionalConvEmbedding,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2FeatureEncoder,
    Wav2Vec2FeedForward,
    Wav2Vec2PositionalConvEmbedding,
)
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
    WavLMFeatureEncoder,
    WavLMFeedForward,
    WavLMPositionalConvEmbedding,
)

from sser_lobes.encoders.fast_path.attention import FastWavLMAttention
from sser_lobes.encoders.fast_path.cpu_dropout import CPUDropout
from sser_lobes.encoders.fast_path.feature_encoder import (
    FastHubertFeatureEncoder,
    FastWav2Vec2FeatureEncoder,
    FastWavLMFeatureEncoder,
)
from sser_lobes.encoders.fast_path.feed_forward import (
    FastHubertFeedForward,
    FastWav2Vec2FeedForward,
    FastWavLMFeedForward,
)
from sser_lobes.encoders.fast_path.positional_conv import (
    FastHubertPositionalConvEmbedding,
    FastWav2Vec2PositionalConvEmbedding,
    FastWavLMPositionalConvEmbedding,
)

logger = logging.getLogger(__name__)


#: transformers versions whose internals the fast path was checked against
#: (setup.py requires the same range).
TRANSFORMERS_RANGE = ("5.16", "6")


def check_transformers_version(version=None):
    """Raise if ``transformers`` is older than the fast path supports.

    Before 5.16, WavLM's attention took ``output_attentions`` before
    ``index`` (the training path of :class:`FastWavLMAttention` breaks) and
    ``hidden_states[num_layers]`` of stable-layer-norm models carried the
    final layer norm (``output_layer`` would silently change meaning). A
    version from 6 on is untested and only logged.

    Arguments
    ---------
    version : str or None
        The version to check; ``None`` checks the installed one.

    Example
    -------
    >>> check_transformers_version("5.23.0")
    >>> check_transformers_version("4.57.6")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    RuntimeError: sser_lobes needs transformers>=5.16,<6; 4.57.6 is installed ...
    """
    if version is None:
        import transformers

        version = transformers.__version__
    low, high = TRANSFORMERS_RANGE
    spec = f"transformers>={low},<{high}"
    if Version(version) < Version(low):
        raise RuntimeError(
            f'sser_lobes needs {spec}; {version} is installed (pip install "{spec}").'
        )
    if Version(version) >= Version(high):
        logger.warning(
            "sser_lobes was tested with %s; %s is installed.",
            spec,
            version,
        )


# transformers (or torch) class -> the same module with a faster path.
FAST_MODULES = {
    WavLMAttention: FastWavLMAttention,
    WavLMPositionalConvEmbedding: FastWavLMPositionalConvEmbedding,
    Wav2Vec2PositionalConvEmbedding: FastWav2Vec2PositionalConvEmbedding,
    HubertPositionalConvEmbedding: FastHubertPositionalConvEmbedding,
    WavLMFeedForward: FastWavLMFeedForward,
    Wav2Vec2FeedForward: FastWav2Vec2FeedForward,
    HubertFeedForward: FastHubertFeedForward,
    WavLMFeatureEncoder: FastWavLMFeatureEncoder,
    Wav2Vec2FeatureEncoder: FastWav2Vec2FeatureEncoder,
    HubertFeatureEncoder: FastHubertFeatureEncoder,
    nn.Dropout: CPUDropout,
}
