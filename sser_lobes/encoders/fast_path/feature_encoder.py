"""The CNN feature encoder, utterance by utterance, time-major, on valid
samples only.

In eval mode the CNN of every utterance runs on its own valid samples, in
cache-sized chunks of frames, with the first-layer group norm folded into
the convolution: no padding is computed and no mask is needed, and the frozen
CNN of partial fine-tuning keeps no autograd graph.
"""

import math

import torch
from torch import nn
from transformers.models.hubert.modeling_hubert import (
    HubertFeatureEncoder,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2FeatureEncoder,
)
from transformers.models.wavlm.modeling_wavlm import (
    WavLMFeatureEncoder,
)

from sser_lobes.encoders.fast_path.call_state import CURRENT_CALL
from sser_lobes.encoders.fast_path.feed_forward import _activate


class UtteranceWiseFeatureEncoder:
    """Eval-mode forward of the CNN feature encoder that runs each utterance
    of a padded batch alone, on its valid samples.

    Inside :meth:`SSLEncoder.forward`, whose call state
    (:class:`EncoderCall`) gives the sample lengths, the features of each row
    are computed from its valid samples only (:meth:`utterance_features`): no
    padding is computed, and a group-norm first layer normalises over the
    utterance itself. Padded frames are zero. Otherwise (training mode, a
    call from outside :class:`SSLEncoder`, or a batched CNN) it is
    transformers' forward, whose group norm is masked in training
    (:class:`MaskedGroupNorm`). Parameters and state-dict keys are
    unchanged: :class:`SSLEncoder` switches the class of the model's feature
    encoder.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.encoders.ssl_encoder import SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="hubert")
    >>> enc = SSLEncoder(folder, finetune="frozen")  # group-norm CNN
    >>> type(enc.model.feature_extractor).__name__
    'FastHubertFeatureEncoder'
    >>> wavs, lens = torch.randn(2, 9000), torch.tensor([1.0, 0.5])
    >>> fast, _ = enc(wavs, lens)  # eval: utterance by utterance
    >>> _ = enc.model.feature_extractor.train()  # batched, masked norm
    >>> slow, _ = enc(wavs, lens)
    >>> torch.allclose(fast, slow, atol=1e-5)
    True
    """

    def forward(self, input_values):
        """CNN features ``[batch, channels, frames]`` of ``[batch, samples]``.

        In eval mode the features are stored time-major
        (``[batch, frames, channels]``) and returned as a transposed view,
        which is the layout transformers' feature projection reads next.
        """
        call = None if self.training else CURRENT_CALL.get()
        if (
            call is None
            or call.cnn_chunk_frames is None
            or call.input_shape != input_values.shape
        ):
            return super().forward(input_values)
        channels = self.conv_layers[-1].conv.out_channels
        out = input_values.new_zeros(call.frame_shape[0], call.frame_shape[1], channels)
        for row, length in enumerate(call.sample_lengths.tolist()):
            feats = self.utterance_features(
                input_values[row, :length], call.cnn_chunk_frames
            )
            out[row, : feats.shape[0]] = feats
        return out.transpose(1, 2)

    def output_frames(self, samples):
        """Frames of the CNN output for ``samples`` input samples.

        Example
        -------
        >>> from transformers import WavLMConfig
        >>> FastWavLMFeatureEncoder(WavLMConfig()).output_frames(16000)
        49
        """
        for layer in self.conv_layers:
            conv = layer.conv
            samples = (samples - conv.kernel_size[0]) // conv.stride[0] + 1
        return samples

    def receptive_field(self):
        """Samples needed for one output frame (400 for wav2vec 2.0's CNN)."""
        field = 1
        for layer in reversed(self.conv_layers):
            conv = layer.conv
            field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
        return field

    def utterance_features(self, wav, chunk_frames=150):
        """CNN features ``[frames, channels]`` of one waveform ``[samples]``.

        Each convolution runs time-major, as one or two matrix products on
        strided views of the ``[time, channels]`` input
        (:func:`time_major_conv`), so the activations stay contiguous for the
        GELU and the layer norms. The CNN has no padding, so output frame
        ``t`` only sees samples ``[t * hop, t * hop + field)`` (``hop`` the
        product of the strides, ``field`` the receptive field) and the
        waveform can be processed in chunks of ``chunk_frames`` frames with
        the same result: the tensors of a chunk stay in the CPU cache (below
        3 s there is one chunk). A group-norm first layer normalises over the
        whole utterance: its statistics are computed first and folded into
        the convolution (:meth:`_first_norm_affine`).

        Example
        -------
        >>> from transformers import Wav2Vec2Config
        >>> config = Wav2Vec2Config(conv_dim=(8, 8), conv_kernel=(10, 3),
        ...                         conv_stride=(5, 2), feat_extract_norm="group")
        >>> cnn = FastWav2Vec2FeatureEncoder(config).eval()
        >>> wav = torch.randn(1600)
        >>> whole = cnn.utterance_features(wav)
        >>> reference = Wav2Vec2FeatureEncoder.forward(cnn, wav[None])[0].T
        >>> whole.shape, torch.allclose(whole, reference, atol=1e-5)
        (torch.Size([159, 8]), True)
        >>> chunked = cnn.utterance_features(wav, chunk_frames=7)
        >>> torch.allclose(chunked, whole, atol=1e-5)
        True
        """
        layers = self.conv_layers
        first = layers[0]
        total = self.output_frames(wav.shape[0])
        hop = math.prod(layer.conv.stride[0] for layer in layers)
        field = self.receptive_field()
        # Per layer: time-major matrices and bias (None: the conv's own). A
        # group-norm first layer is folded into its conv for this utterance.
        weights = [self._time_major_weights(layer.conv) for layer in layers]
        biases = [None] * len(layers)
        if isinstance(getattr(first, "layer_norm", None), nn.GroupNorm):
            weight, biases[0] = self._first_norm_affine(wav)
            weights[0] = time_major_weights(weight, first.conv.stride[0])
        chunk = max(1, int(chunk_frames))
        pieces = []
        for start in range(0, total, chunk):
            stop = min(total, start + chunk)
            hidden = wav[start * hop : (stop - 1) * hop + field, None]
            for layer, matrices, bias in zip(layers, weights, biases):
                hidden = time_major_conv(hidden, matrices, layer.conv, bias)
                norm = getattr(layer, "layer_norm", None)
                if isinstance(norm, nn.LayerNorm):
                    hidden = norm(hidden)
                hidden = _activate(layer.activation, hidden)
            pieces.append(hidden)
        return torch.cat(pieces, dim=0)

    def _time_major_weights(self, conv):
        """:func:`time_major_weights` of a CNN convolution, kept until its
        weight changes (frozen CNNs compute them once)."""
        weight = conv.weight
        if weight.requires_grad and torch.is_grad_enabled():
            return time_major_weights(weight, conv.stride[0])
        cache = self.__dict__.setdefault("_time_major_cache", {})
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = cache.get(id(conv))
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, time_major_weights(weight, conv.stride[0]))
            cache[id(conv)] = cached
        return cached[1]

    def _first_norm_affine(self, wav):
        """Weight and bias of one convolution equal to the first layer's
        convolution followed by its group norm, on this utterance.

        The first convolution is linear in the waveform's patches, so the
        per-channel mean and variance of its output follow from the mean and
        covariance of the patches (computed in float64), without computing
        the output twice; the normalisation's scale and shift then fold into
        the convolution.
        """
        first = self.conv_layers[0]
        conv, norm = first.conv, first.layer_norm
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        patches = wav.double().unfold(0, kernel, stride)
        centre = patches.mean(0)
        centred = patches - centre
        covariance = centred.T @ centred / patches.shape[0]
        weight = conv.weight.double()[:, 0, :]
        mean = weight @ centre
        if conv.bias is not None:
            mean = mean + conv.bias.double()
        var = ((weight @ covariance) * weight).sum(1)
        scale = norm.weight.double() * torch.rsqrt(var + norm.eps)
        shift = norm.bias.double() - mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        folded = conv.weight.double() * scale[:, None, None]
        return folded.to(conv.weight.dtype), shift.to(conv.weight.dtype)


class FastWavLMFeatureEncoder(UtteranceWiseFeatureEncoder, WavLMFeatureEncoder):
    """WavLM's CNN feature encoder, utterance by utterance in eval mode."""


class FastWav2Vec2FeatureEncoder(UtteranceWiseFeatureEncoder, Wav2Vec2FeatureEncoder):
    """wav2vec 2.0's CNN feature encoder, utterance by utterance in eval mode."""


class FastHubertFeatureEncoder(UtteranceWiseFeatureEncoder, HubertFeatureEncoder):
    """HuBERT's CNN feature encoder, utterance by utterance in eval mode."""


def time_major_weights(weight, stride):
    """Matrices of a strided 1-D convolution for :func:`time_major_conv`.

    Arguments
    ---------
    weight : torch.Tensor
        ``[out_channels, in_channels, kernel]`` convolution weight.
    stride : int
        The convolution's stride.

    Returns
    -------
    list of torch.Tensor
        One ``[taps * in_channels, out_channels]`` matrix per group of
        ``stride`` consecutive taps (the last group may be shorter).
    """
    kernel = weight.shape[-1]
    return [
        weight[:, :, start : start + stride]
        .permute(2, 1, 0)
        .reshape(-1, weight.shape[0])
        .contiguous()
        for start in range(0, kernel, stride)
    ]


def time_major_conv(x, weights, conv, bias=None):
    """``conv`` (no padding, no dilation, one group) on time-major input.

    Output frame ``t`` of a convolution with kernel ``k`` and stride ``s``
    is ``sum_j x[s t + j] W_j``. Taps ``j = s q .. s q + s - 1`` read the
    consecutive rows ``s (t + q) ..``, which for all ``t`` form a strided
    matrix view of ``x`` (rows ``s * channels`` apart): the convolution is
    ``ceil(k / s)`` matrix products, without an unfolded copy of ``x``.

    Arguments
    ---------
    x : torch.Tensor
        ``[time, in_channels]`` contiguous input.
    weights : list of torch.Tensor
        :func:`time_major_weights` of the convolution.
    conv : torch.nn.Conv1d
        The convolution (kernel size and stride are read from it).
    bias : torch.Tensor or None
        ``[out_channels]``; defaults to ``conv.bias``.

    Returns
    -------
    torch.Tensor
        ``[frames, out_channels]``, equal to ``conv(x.T[None])[0].T``.

    Example
    -------
    >>> conv = nn.Conv1d(4, 6, kernel_size=3, stride=2)
    >>> x = torch.randn(11, 4)
    >>> out = time_major_conv(x, time_major_weights(conv.weight, 2), conv)
    >>> out.shape
    torch.Size([5, 6])
    >>> torch.allclose(out, conv(x.T[None])[0].T, atol=1e-6)
    True
    """
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    if bias is None:
        bias = conv.bias
    x = x.contiguous()
    length, channels = x.shape
    frames = (length - kernel) // stride + 1
    out = None
    for group, matrix in enumerate(weights):
        view = x.as_strided(
            (frames, matrix.shape[0]),
            (stride * channels, 1),
            x.storage_offset() + group * stride * channels,
        )
        if out is not None:
            # In place, so not autocast: follow the first product's dtype.
            out = out.addmm_(view.to(out.dtype), matrix.to(out.dtype))
        elif bias is not None:
            out = torch.addmm(bias, view, matrix)
        else:
            out = view @ matrix
    return out
