"""Dynamic int8 quantization of an SSL encoder, for CPU inference.

    recognizer = EmotionRecognizer.from_hparams("my_model", quantize="int8")
    sser-predict --model my_model --quantize int8 recordings/

:func:`quantize_int8` replaces every ``nn.Linear`` of a wav2vec 2.0 /
HuBERT / WavLM encoder, in place, by a dynamically quantized linear layer
(``torch.ao.nn.quantized.dynamic.Linear``): the feature projection, the
attention's query / key / value / output projections and the feed-forward
blocks, about 60 % of the model's FLOPs (LoRA adapters kept apart are merged
into their weights first). The weights are int8 with one scale
per output channel; the activations are quantized on the fly, with one
scale per call. WavLM's small position-gate projection
(``gru_rel_pos_linear``, 64 -> 8) stays in fp32, as do the CNN feature
encoder, the position convolution, the normalisations, the attention
itself, the pooling and the head.

What changes. The probabilities move a little: on the two trained models
of ``bench/int8_agreement.py`` (60 test files each) by at most 0.043, and
the top-1 label of int8 equals fp32's on every file. The activation scale is
that of the whole call, so a file's probabilities alone and in a padded
batch differ slightly (up to 0.006 on the base-size benchmark; the fp32
model gives the same numbers to 1e-6).
Everything else is the fp32 model's: the waveform normalisation, the
utterance-wise CNN and the masking of padded frames of
:mod:`sser_lobes.encoders.fast_path`.

Where it runs. int8 kernels exist on CPU only: :func:`check_int8_device`
refuses another device with a one-line error. The packing engine is oneDNN
on CPUs with AMX (Intel Sapphire Rapids and later), whose int8 tile
instructions run the products several times faster than fp32, and PyTorch's
default engine elsewhere (fbgemm on x86; :func:`default_engine`). The
speed figures against fp32 sser, the PyTorch peers and ONNX Runtime are in
``bench/README.md``.

Not quantized: the CNN. Its convolutions are a third of the FLOPs and run as
matrix products in the eval path, but int8 weights there (a relative
rounding error of about 0.7 %) changed 5 of 60 test decisions of the trained
tiny model, as much as fp32 noise of that size does; the linear layers
alone change none.
"""

import contextlib
import logging

import torch
from torch import nn

from sser_lobes.encoders.lora import merge_lora
from sser_lobes.errors import QuantizationError

logger = logging.getLogger(__name__)

#: The values of ``EmotionRecognizer.from_hparams(quantize=...)``.
QUANTIZE_CHOICES = (None, "int8")

#: Linear layers left in fp32, by attribute name: WavLM's position gate
#: (head_dim -> 8) costs nothing and scales the relative position bias.
FP32_LINEARS = ("gru_rel_pos_linear",)


def check_int8_device(device):
    """Raise :class:`QuantizationError` unless ``device`` is a CPU.

    Example
    -------
    >>> check_int8_device("cpu")
    >>> check_int8_device("cuda:0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sser_lobes.errors.QuantizationError: quantize='int8' runs on the CPU only ...
    """
    if torch.device(device).type != "cpu":
        raise QuantizationError(
            f"quantize='int8' runs on the CPU only (dynamic int8 kernels), not on "
            f"{device}; use the fp32 model there (drop quantize / --quantize), or "
            "run on device 'cpu'."
        )


def _cpu_has_amx():
    """Whether the CPU has AMX tiles (private torch helper; False if absent)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def default_engine():
    """The quantized engine :func:`quantize_int8` packs the weights for.

    oneDNN on CPUs with AMX (its int8 tile kernels are the fastest there),
    else PyTorch's default engine for the platform (``x86``, i.e. fbgemm,
    on x86; ``qnnpack`` on ARM).

    Example
    -------
    >>> default_engine() in torch.backends.quantized.supported_engines
    True
    """
    engines = torch.backends.quantized.supported_engines
    if "onednn" in engines and _cpu_has_amx():
        return "onednn"
    for engine in ("x86", "fbgemm", "qnnpack"):
        if engine in engines:
            return engine
    raise QuantizationError(
        f"this PyTorch build has no int8 CPU engine (supported: {engines})."
    )


@contextlib.contextmanager
def _packing_engine(engine):
    """Pack weights for ``engine``; the global setting is restored after.

    The packed weights keep their engine: a quantized layer runs its own
    kernels whatever the global setting is when it is called.
    """
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def int8_linear(linear):
    """A dynamically quantized copy of ``linear`` (per-channel int8 weights).

    Pack inside :func:`_packing_engine` to choose the kernels.

    Example
    -------
    >>> layer = torch.nn.Linear(64, 32)
    >>> x = torch.randn(5, 64)
    >>> q = int8_linear(layer)
    >>> error = (q(x) - layer(x)).norm() / layer(x).norm()
    >>> bool(error < 0.02)
    True
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    float_linear = nn.Linear(linear.in_features, linear.out_features)
    float_linear.weight, float_linear.bias = linear.weight, linear.bias
    float_linear.qconfig = per_channel_dynamic_qconfig
    with torch.no_grad():
        return DynamicLinear.from_float(float_linear)


def _ssl_model(module):
    """The transformers model inside an EmotionModel, SSLEncoder or itself."""
    for path in ("encoder.model", "model"):
        target = module
        for name in path.split("."):
            target = getattr(target, name, None)
        if target is not None and hasattr(target, "feature_extractor"):
            return target
    if hasattr(module, "feature_extractor") and hasattr(module, "encoder"):
        return module
    raise QuantizationError(
        f"quantize_int8 needs an EmotionModel, an SSLEncoder or a transformers "
        f"wav2vec2 / HuBERT / WavLM model, got {type(module).__name__}."
    )


def quantize_int8(model, engine=None):
    """Quantize the SSL encoder of ``model`` to dynamic int8, in place.

    Arguments
    ---------
    model : torch.nn.Module
        An :class:`~sser_lobes.EmotionModel`, an :class:`~sser_lobes.SSLEncoder`
        or the transformers model itself, on the CPU. Only the SSL encoder is
        quantized (pooling and heads stay in fp32); it is for inference only,
        and its remaining fp32 parameters are frozen.
    engine : str or None
        ``"onednn"``, ``"x86"``, ``"fbgemm"`` or ``"qnnpack"``; ``None``:
        :func:`default_engine`.

    Returns
    -------
    dict
        What was quantized: ``{"engine", "linear_layers"}``.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes import SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> encoder = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m")).eval()
    >>> wavs, lens = torch.randn(2, 16000), torch.tensor([1.0, 0.6])
    >>> reference, _ = encoder(wavs, lens)
    >>> summary = quantize_int8(encoder)
    >>> summary["linear_layers"]  # 2 layers x 6, and the feature projection
    13
    >>> feats, _ = encoder(wavs, lens)
    >>> bool((feats - reference).norm() / reference.norm() < 0.1)
    True
    """
    ssl = _ssl_model(model)
    if any(p.device.type != "cpu" for p in ssl.parameters()):
        raise QuantizationError("quantize_int8: move the model to the CPU first.")
    engine = engine or default_engine()
    if engine not in torch.backends.quantized.supported_engines:
        raise QuantizationError(
            f"quantized engine {engine!r} is not in this PyTorch build "
            f"({torch.backends.quantized.supported_engines})."
        )
    linears = 0
    # LoRA adapters kept apart (a model folder exported with them) are
    # merged into their float weights first: the int8 layers replace those.
    if merge_lora(ssl) and hasattr(model, "adapters"):
        model.adapters = None
    encoder = getattr(model, "encoder", None)
    if getattr(encoder, "adapters", None) is not None:
        encoder.adapters = None
    # For inference only: int8 layers have no gradient, and the fp32 rest
    # (CNN, norms, position convolution) is frozen with them.
    for param in ssl.parameters():
        param.requires_grad_(False)
    with _packing_engine(engine):
        for parent in list(ssl.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear and name not in FP32_LINEARS:
                    setattr(parent, name, int8_linear(child))
                    linears += 1
    logger.info("int8 (%s): %d linear layers", engine, linears)
    return {"engine": engine, "linear_layers": linears}
