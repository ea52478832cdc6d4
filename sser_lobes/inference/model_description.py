"""The model folder's description: read as data, checked, never executed.

A model folder written by ``python -m sser_lobes.export`` holds
``sser_model.json`` (this description) and ``model.safetensors`` (the
weights). Loading a model reads only these two files (and, for text-fused
models, the text encoder's files listed in the description, inside the
folder):

1. :func:`read_description` refuses a file above :data:`MAX_DESCRIPTION_BYTES`
   before reading it, and a symlink that leads out of the model folder; it
   parses the text with :func:`json.loads` (no references, anchors, tags or
   arithmetic exist in JSON), refusing duplicate keys, ``NaN`` / ``Infinity``
   and nesting deeper than :data:`MAX_DEPTH`;
2. :func:`validate_description` checks every value against the schema written
   here: types, ranges, the closed sets of pooling / head / conditioning
   kinds, string and list lengths, the SSL encoder's transformers config key
   by key, and the label count against the head's output size, and the
   optional ``calibration`` (method, one temperature or one per class, each
   finite in ``TEMPERATURE_RANGE``, biases bounded; a description without it
   loads as an uncalibrated model). Unknown keys are ignored with a warning;
3. :func:`check_weights` compares the tensor names and shapes of
   ``model.safetensors`` (its header only) with the model the description
   builds on the ``meta`` device, before any real memory is allocated, and
   names the first difference;
4. :func:`sser_lobes.nnet.description.build_model` builds the modules with
   this package's classes; the weights are loaded from safetensors (tensors
   only, no pickle).

Every problem is a :class:`~sser_lobes.errors.ModelFormatError` whose message
is one line naming the file. Nothing from the description is imported,
called, evaluated or used as a path outside the model folder.

Example
-------
>>> import json, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> text = '{"format": "sser-model", "a": 1, "a": 2}'
>>> _ = (folder / "sser_model.json").write_text(text)
>>> read_description(folder)
Traceback (most recent call last):
...
sser_lobes.errors.ModelFormatError: .../sser_model.json: the key 'a' is given twice
"""

import json
import logging
import math
import os
import unicodedata
from pathlib import Path

import torch

from sser_lobes.encoders.lora import ADAPTER_KINDS, LORA_TARGETS
from sser_lobes.encoders.ssl_encoder import (
    OUTPUT_NORMS,
    SUPPORTED_MODEL_TYPES,
    WAVEFORM_NORMS,
    receptive_field,
)
from sser_lobes.errors import ModelFormatError
from sser_lobes.evaluation.calibration import BIAS_LIMIT, TEMPERATURE_RANGE
from sser_lobes.nnet.description import FORMAT, FORMAT_VERSION, HEADS, build_model
from sser_lobes.nnet.gender import CONDITIONING_MODES
from sser_lobes.nnet.heads import OUTPUT_ACTIVATIONS
from sser_lobes.nnet.pooling import POOLINGS
from sser_lobes.nnet.text_fusion import FUSION_MODES

logger = logging.getLogger(__name__)

DESCRIPTION_FILE = "sser_model.json"
WEIGHTS_FILE = "model.safetensors"

#: A description is a few kB (the SSL config is most of it): 1 MB is plenty.
MAX_DESCRIPTION_BYTES = 1_000_000
#: Nesting of JSON objects and arrays.
MAX_DEPTH = 16
#: Characters of a label, and of any other string.
MAX_LABEL_CHARS = 64
MAX_STRING_CHARS = 512
#: Entries of a list (labels, layers, config lists) and keys of an object.
MAX_LIST_ITEMS = 1024
#: Size arguments (hidden sizes, outputs, ...).
MAX_SIZE = 65536
#: The longest window a model is run on at once (longer audio is chunked).
MAX_WINDOW_SECONDS = 300.0
#: A safetensors header (the JSON that lists the tensors) and its entries.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 20000
#: The smallest hop between windows, as a share of the window: more overlap
#: would make a folder choose how many times each second is computed.
MIN_HOP_SHARE = 0.25

TASKS = ("categorical", "attributes")

#: Top-level keys written by the exporter. Optional keys have a default.
_OPTIONAL = {
    "eval_crop_seconds": None,
    "chunk_hop_seconds": None,
    "batch_size": 8,
    "attribute_range": [1.0, 7.0],
    "text_encoder": None,
    "asr_source": None,
    "experiment": None,
    "training": None,
    "calibration": None,
}

#: Keys of the optional ``calibration`` entry
#: (:mod:`sser_lobes.evaluation.calibration`); the first three are required.
_CALIBRATION_KEYS = (
    "method",
    "temperature",
    "bias",
    "fitted_on",
    "n",
    "nll_before",
    "nll_after",
    "checkpoint",
)
CALIBRATIONS = ("temperature", "vector")
_REQUIRED = (
    "format",
    "format_version",
    "task",
    "labels",
    "sample_rate",
    "window_seconds",
    "architecture",
)

#: Keys of a transformers config that describe where and how it was saved,
#: not the network: dropped without a warning.
_CONFIG_BOOKKEEPING = frozenset(
    {
        "transformers_version",
        "architectures",
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "id2label",
        "label2id",
        "problem_type",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "auto_map",
        "_attn_implementation",
        "attn_implementation",
        "model_type",
    }
)
#: Bounds (low, high) of the integer fields of the SSL configs; the largest
#: public checkpoints are far inside them. Other integer fields: 0..65536.
_CONFIG_LIMITS = {
    "hidden_size": (1, 8192),
    "intermediate_size": (1, 65536),
    "num_hidden_layers": (1, 96),
    "num_attention_heads": (1, 128),
    "num_conv_pos_embeddings": (1, 1024),
    "num_conv_pos_embedding_groups": (1, 1024),
    "num_feat_extract_layers": (1, 16),
    "num_buckets": (2, 4096),
    "max_bucket_distance": (1, 1 << 20),
    "vocab_size": (1, 1 << 20),
    "num_adapter_layers": (0, 16),
}
#: Bounds of each entry of the CNN's lists.
_CONV_LIMITS = {"conv_dim": 8192, "conv_kernel": 1024, "conv_stride": 16}
#: Config switches sser's encoder does not build (adapters after the
#: transformer): a description that turns them on is refused.
_CONFIG_UNSUPPORTED = {"add_adapter": True}
_CONFIG_CHOICES = {
    "feat_extract_norm": ("group", "layer"),
    "ctc_loss_reduction": ("sum", "mean"),
}


def _activations():
    from transformers.activations import ACT2FN

    return tuple(sorted(ACT2FN))


class _Where:
    """Names a value in its file for error messages: ``file: key.sub``."""

    def __init__(self, source):
        self.source = str(source)

    def error(self, key, problem):
        where = f" {key}" if key else ""
        return ModelFormatError(f"{self.source}:{where} {problem}")


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} is given twice")
        seen[key] = value
    return seen


def _no_constants(name):
    raise ValueError(f"{name} is not a number a description may hold")


def _depth(value, limit):
    """Nesting depth of JSON data, stopping at ``limit + 1``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def inside_folder(path, folder):
    """Whether ``path``, symlinks followed, lies inside ``folder``.

    Example
    -------
    >>> import tempfile, pathlib, os
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "a").write_text("x")
    1
    >>> os.symlink("/etc/hostname", folder / "b")
    >>> inside_folder(folder / "a", folder), inside_folder(folder / "b", folder)
    (True, False)
    """
    try:
        resolved = Path(path).resolve(strict=True)
        root = Path(folder).resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return resolved == root or root in resolved.parents


def model_file(folder, name, what, trusted=False):
    """The path of ``name`` inside ``folder``, checked.

    A file (or a symlink to one) that leads out of the folder is refused:
    a downloaded folder could otherwise make sser read any file of the
    machine as weights or as a tokenizer. ``trusted=True`` (files that
    :mod:`huggingface_hub` placed in its cache, whose snapshot entries are
    symlinks into its blob store) only checks that the file exists.
    """
    folder = Path(folder)
    parts = Path(name).parts
    if (
        not parts
        or Path(name).is_absolute()
        or any(p in ("..", "") for p in parts)
        or "\\" in str(name)
    ):
        raise ModelFormatError(f"{folder}: {name!r} is not a file name inside it")
    path = folder / name
    if not path.exists() and not path.is_symlink():
        raise ModelFormatError(f"{path}: no {what} in the model folder")
    if not trusted and not inside_folder(path, folder):
        raise ModelFormatError(
            f"{path}: a symlink that leads out of the model folder "
            f"({os.path.realpath(path)}); it is not followed"
        )
    if not path.is_file():
        raise ModelFormatError(f"{path}: the {what} is not a regular file")
    return path


def read_description(folder, trusted=False):
    """The parsed, not yet validated, ``sser_model.json`` of ``folder``.

    Raises
    ------
    ModelFormatError
        Missing, too large, outside the folder, not UTF-8 JSON, duplicate
        keys, NaN / Infinity, nested too deep, or not an object.
    """
    path = model_file(folder, DESCRIPTION_FILE, "sser_model.json", trusted)
    size = path.stat().st_size
    if size > MAX_DESCRIPTION_BYTES:
        raise ModelFormatError(
            f"{path}: {size} bytes; a model description is at most "
            f"{MAX_DESCRIPTION_BYTES} bytes, refused without reading it"
        )
    with open(path, "rb") as handle:
        raw = handle.read(MAX_DESCRIPTION_BYTES + 1)
    if len(raw) > MAX_DESCRIPTION_BYTES:
        raise ModelFormatError(f"{path}: grew above {MAX_DESCRIPTION_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        data = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except UnicodeDecodeError:
        raise ModelFormatError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: nested too deep") from None
    except ValueError as error:
        message = str(error).split("\n")[0]
        raise ModelFormatError(f"{path}: {message}") from None
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise ModelFormatError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: a model description is a JSON object")
    return data


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _int(where, key, value, low=0, high=MAX_SIZE):
    if not _is_int(value) or not low <= value <= high:
        raise where.error(key, f"must be an integer in {low}..{high}, got {value!r}")
    return value


def _number(where, key, value, low=-math.inf, high=math.inf, allow_none=False):
    if value is None and allow_none:
        return None
    if not _is_number(value) or not low <= value <= high:
        raise where.error(key, f"must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _bool(where, key, value):
    if not isinstance(value, bool):
        raise where.error(key, f"must be true or false, got {value!r}")
    return value


def _choice(where, key, value, choices):
    if isinstance(value, bool) or value not in choices:
        shown = ", ".join("null" if c is None else str(c) for c in choices)
        raise where.error(key, f"must be one of {shown}; got {value!r}")
    return value


def _string(where, key, value, limit=MAX_STRING_CHARS, allow_none=False):
    """A short printable string in Unicode normal form C (labels and facts go
    into CSV files, logs and the model card: no control, format or
    surrogate characters, no look-alike twins)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise where.error(
            key, f"must be a non-empty string of at most {limit} characters"
        )
    if not value.isprintable() or unicodedata.normalize("NFC", value) != value:
        raise where.error(
            key, f"{value!r} holds control characters or is not in Unicode NFC form"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise where.error(key, f"{value!r} is not valid Unicode text") from None
    return value


def _object(where, key, value, known, optional=()):
    """A JSON object with the keys ``known`` (those in ``optional`` may be
    absent); unknown keys are dropped with a warning."""
    if not isinstance(value, dict):
        raise where.error(key, f"must be an object, got {type(value).__name__}")
    missing = [k for k in known if k not in value and k not in optional]
    if missing:
        raise where.error(key, f"lacks {', '.join(missing)}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        shown = ", ".join(repr(k)[:40] for k in unknown[:5])
        logger.warning(
            "%s: %s: ignored unknown key(s) %s", where.source, key or "top", shown
        )
    return {k: value[k] for k in known if k in value}


def _list(where, key, value, limit=MAX_LIST_ITEMS):
    if not isinstance(value, list) or len(value) > limit:
        raise where.error(key, f"must be a list of at most {limit} items")
    return value


# --------------------------------------------------------------------------
# The SSL encoder's transformers config
# --------------------------------------------------------------------------


def _config_value(where, field, value, default):
    """One transformers config value, of the type of its default."""
    key = f"encoder.config.{field}"
    if field in _CONFIG_CHOICES:
        return _choice(where, key, value, _CONFIG_CHOICES[field])
    if field in ("hidden_act", "feat_extract_activation"):
        return _choice(where, key, value, _activations())
    if isinstance(default, bool):
        return _bool(where, key, value)
    if isinstance(default, int):
        if value is None and field in ("pad_token_id", "bos_token_id", "eos_token_id"):
            return None
        low, high = _CONFIG_LIMITS.get(field, (0, MAX_SIZE))
        return _int(where, key, value, low, high)
    if isinstance(default, float):
        high = 1.0 if ("dropout" in field or field.endswith("_prob")) else 1e6
        return _number(where, key, value, 0.0, high)
    if isinstance(default, (list, tuple)):
        items = _list(where, key, value, 16)
        high = _CONV_LIMITS.get(field, MAX_SIZE)
        return [_int(where, f"{key}[{i}]", v, 1, high) for i, v in enumerate(items)]
    if isinstance(default, str):
        return _string(where, key, value, 64)
    if default is None:
        if value is None or _is_int(value):
            return value
        raise where.error(key, f"must be null or an integer, got {value!r}")
    raise where.error(key, "is not a config value sser reads")


def validate_ssl_config(config, where):
    """A clean copy of an SSL encoder's transformers config.

    The model type must be one :class:`~sser_lobes.SSLEncoder` supports;
    every other key must be a field of that type's config, with a value of
    the field's type within bounds. Bookkeeping keys (``architectures``,
    ``auto_map``, ``torch_dtype``, ...) are dropped; unknown keys are
    ignored with a warning.
    """
    from transformers import AutoConfig

    if not isinstance(config, dict):
        raise where.error("encoder.config", "must be an object")
    model_type = _choice(
        where,
        "encoder.config.model_type",
        config.get("model_type"),
        SUPPORTED_MODEL_TYPES,
    )
    defaults = AutoConfig.for_model(model_type).to_dict()
    clean = {"model_type": model_type}
    unknown = []
    for key, value in config.items():
        if key in _CONFIG_BOOKKEEPING:
            continue
        if key not in defaults:
            unknown.append(key)
            continue
        clean[key] = _config_value(where, key, value, defaults[key])
    for key, value in _CONFIG_UNSUPPORTED.items():
        if clean.get(key) == value:
            raise where.error(
                f"encoder.config.{key}", f"{value} is not a configuration sser builds"
            )
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        clean.setdefault(key, defaults[key])
    if unknown:
        logger.warning(
            "%s: encoder.config: ignored unknown key(s) %s",
            where.source,
            ", ".join(repr(k)[:40] for k in sorted(unknown)[:5]),
        )
    conv = [
        clean.get(k, defaults[k]) for k in ("conv_dim", "conv_stride", "conv_kernel")
    ]
    layers = clean.get("num_feat_extract_layers", len(conv[0]))
    if layers < 1 or any(len(c) != layers for c in conv):
        raise where.error(
            "encoder.config",
            "conv_dim, conv_stride and conv_kernel need one entry "
            "per feature-extractor layer",
        )
    hidden, heads = clean["hidden_size"], clean["num_attention_heads"]
    if heads < 1 or hidden % heads:
        raise where.error(
            "encoder.config",
            f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}",
        )
    groups = clean.get(
        "num_conv_pos_embedding_groups", defaults["num_conv_pos_embedding_groups"]
    )
    if hidden % groups:
        raise where.error(
            "encoder.config",
            f"hidden_size {hidden} is not a multiple of "
            f"num_conv_pos_embedding_groups {groups}",
        )
    return clean


# --------------------------------------------------------------------------
# The architecture
# --------------------------------------------------------------------------


def _validate_encoder(where, value):
    encoder = _object(
        where,
        "architecture.encoder",
        value,
        (
            "config",
            "output_layer",
            "output_norm",
            "normalize_waveform",
            "normalize_layers",
            "weighted_sum_layers",
            "adapters",
        ),
        optional=("weighted_sum_layers", "adapters"),
    )
    config = validate_ssl_config(encoder["config"], where)
    layers = config["num_hidden_layers"]
    output_layer = encoder["output_layer"]
    if output_layer not in ("last", "weighted_sum"):
        _int(where, "architecture.encoder.output_layer", output_layer, 0, layers)
    _choice(
        where, "architecture.encoder.output_norm", encoder["output_norm"], OUTPUT_NORMS
    )
    _choice(
        where,
        "architecture.encoder.normalize_waveform",
        encoder["normalize_waveform"],
        WAVEFORM_NORMS,
    )
    _bool(where, "architecture.encoder.normalize_layers", encoder["normalize_layers"])
    chosen = encoder.get("weighted_sum_layers")
    if chosen is not None:
        if output_layer != "weighted_sum":
            raise where.error(
                "architecture.encoder.weighted_sum_layers",
                "is for output_layer weighted_sum",
            )
        items = _list(where, "architecture.encoder.weighted_sum_layers", chosen, 128)
        for i, k in enumerate(items):
            _int(where, f"architecture.encoder.weighted_sum_layers[{i}]", k, 0, layers)
        if not items or len(set(items)) != len(items):
            raise where.error(
                "architecture.encoder.weighted_sum_layers", "must be distinct indices"
            )
    encoder["adapters"] = _validate_adapters(where, encoder.get("adapters"), config)
    if encoder["adapters"] is None:
        del encoder["adapters"]
    encoder["config"] = config
    return encoder, config["hidden_size"]


def _validate_adapters(where, value, config):
    """LoRA adapters kept apart from the weights (``export --keep-adapters``):
    the kind, the rank (at most the hidden size), alpha, the target groups
    and the layers, which are the top ones (sser builds adapters on the top
    ``k`` layers only). peft builds them from these numbers; no file of the
    folder is handed to it."""
    if value is None:
        return None
    key = "architecture.encoder.adapters"
    adapters = _object(
        where, key, value, ("kind", "rank", "alpha", "targets", "layers")
    )
    _choice(where, f"{key}.kind", adapters["kind"], ADAPTER_KINDS)
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    _int(where, f"{key}.rank", adapters["rank"], 1, min(hidden, 1024))
    adapters["alpha"] = _number(where, f"{key}.alpha", adapters["alpha"], 1e-6, 1e6)
    targets = _list(where, f"{key}.targets", adapters["targets"], len(LORA_TARGETS))
    for i, target in enumerate(targets):
        _choice(where, f"{key}.targets[{i}]", target, tuple(LORA_TARGETS))
    if not targets or len(set(targets)) != len(targets):
        raise where.error(f"{key}.targets", "must name distinct targets")
    chosen = _list(where, f"{key}.layers", adapters["layers"], 128)
    for i, layer in enumerate(chosen):
        _int(where, f"{key}.layers[{i}]", layer, 0, layers - 1)
    if not chosen or sorted(chosen) != list(range(layers - len(chosen), layers)):
        raise where.error(
            f"{key}.layers",
            f"must be the top layers k..{layers - 1} of the {layers}, got {chosen}",
        )
    adapters["targets"], adapters["layers"] = sorted(targets), sorted(chosen)
    return adapters


def _validate_head(where, value):
    kind = value.get("type") if isinstance(value, dict) else None
    _choice(where, "architecture.head.type", kind, tuple(HEADS))
    keys = {
        "linear": ("type", "input_size", "n_outputs", "bias", "output_activation"),
        "mlp": (
            "type",
            "input_size",
            "n_outputs",
            "hidden_size",
            "dropout",
            "input_dropout",
            "output_activation",
        ),
    }[kind]
    head = _object(where, "architecture.head", value, keys)
    _int(where, "architecture.head.input_size", head["input_size"], 1)
    _int(where, "architecture.head.n_outputs", head["n_outputs"], 1)
    _choice(
        where,
        "architecture.head.output_activation",
        head["output_activation"],
        OUTPUT_ACTIVATIONS,
    )
    if kind == "linear":
        _bool(where, "architecture.head.bias", head["bias"])
    else:
        _int(where, "architecture.head.hidden_size", head["hidden_size"], 1)
        for key in ("dropout", "input_dropout"):
            _number(where, f"architecture.head.{key}", head[key], 0.0, 1.0)
    return head


def _validate_gender(where, value, size):
    if value is None:
        return None
    gender = _object(
        where,
        "architecture.gender",
        value,
        ("mode", "input_size", "embedding_size", "hidden_size"),
    )
    _choice(where, "architecture.gender.mode", gender["mode"], CONDITIONING_MODES)
    _int(where, "architecture.gender.input_size", gender["input_size"], 1)
    _int(where, "architecture.gender.embedding_size", gender["embedding_size"], 0)
    _int(where, "architecture.gender.hidden_size", gender["hidden_size"], 0)
    if gender["input_size"] != size:
        raise where.error(
            "architecture.gender.input_size",
            f"is {gender['input_size']}, the pooling gives {size}",
        )
    return gender


def _validate_text_fusion(where, value, size, hidden):
    """The text fusion section; returns it and the size it outputs."""
    if value is None:
        return None, size
    text = _object(
        where,
        "architecture.text_fusion",
        value,
        (
            "mode",
            "audio_size",
            "text_size",
            "hidden_size",
            "frame_size",
            "num_heads",
            "dropout",
        ),
    )
    _choice(where, "architecture.text_fusion.mode", text["mode"], FUSION_MODES)
    for key in ("audio_size", "text_size", "hidden_size", "num_heads"):
        _int(where, f"architecture.text_fusion.{key}", text[key], 1)
    _number(where, "architecture.text_fusion.dropout", text["dropout"], 0.0, 1.0)
    if text["audio_size"] != size:
        raise where.error(
            "architecture.text_fusion.audio_size",
            f"is {text['audio_size']}, the pooling (and gender) give {size}",
        )
    if text["mode"] == "cross_attention":
        if text["frame_size"] != hidden:
            raise where.error(
                "architecture.text_fusion.frame_size",
                f"is {text['frame_size']!r}; cross_attention attends to the "
                f"encoder's frames of size {hidden}",
            )
        if text["hidden_size"] % text["num_heads"]:
            raise where.error(
                "architecture.text_fusion.hidden_size",
                f"{text['hidden_size']} is not a multiple of num_heads "
                f"{text['num_heads']}",
            )
    elif text["frame_size"] is not None:
        _int(where, "architecture.text_fusion.frame_size", text["frame_size"], 1)
    output = {
        "concat": text["audio_size"] + text["hidden_size"],
        "gated": text["hidden_size"],
        "cross_attention": text["audio_size"] + 2 * text["hidden_size"],
    }[text["mode"]]
    return text, output


def validate_architecture(value, where):
    """The checked architecture section (see the module docstring)."""
    arch = _object(
        where,
        "architecture",
        value,
        ("encoder", "pooling", "head", "gender", "text_fusion"),
        optional=("gender", "text_fusion"),
    )
    arch["encoder"], hidden = _validate_encoder(where, arch["encoder"])
    pooling = _object(
        where, "architecture.pooling", arch["pooling"], ("type", "input_size")
    )
    _choice(where, "architecture.pooling.type", pooling["type"], tuple(POOLINGS))
    _int(where, "architecture.pooling.input_size", pooling["input_size"], 1)
    if pooling["input_size"] != hidden:
        raise where.error(
            "architecture.pooling.input_size",
            f"is {pooling['input_size']}, the encoder gives {hidden}",
        )
    arch["pooling"] = pooling
    size = pooling["input_size"] * (1 if pooling["type"] in ("mean", "std") else 2)
    arch["gender"] = _validate_gender(where, arch.get("gender"), size)
    if arch["gender"] is not None and arch["gender"]["mode"] == "concat":
        size += arch["gender"]["embedding_size"]
    arch["text_fusion"], size = _validate_text_fusion(
        where, arch.get("text_fusion"), size, hidden
    )
    arch["head"] = _validate_head(where, arch["head"])
    if arch["head"]["input_size"] != size:
        raise where.error(
            "architecture.head.input_size",
            f"is {arch['head']['input_size']}, the layers before it give {size}",
        )
    return arch


# --------------------------------------------------------------------------
# The whole description
# --------------------------------------------------------------------------


def _validate_text_encoder(where, value):
    if value is None:
        return None
    text = _object(where, "text_encoder", value, ("files", "max_length", "normalize"))
    files = _list(where, "text_encoder.files", text["files"], 256)
    for i, name in enumerate(files):
        _string(where, f"text_encoder.files[{i}]", name, 200)
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or "\\" in name or not parts:
            raise where.error(
                f"text_encoder.files[{i}]",
                f"{name!r} is not a file name inside text_encoder/",
            )
    _int(where, "text_encoder.max_length", text["max_length"], 1, 8192)
    _bool(where, "text_encoder.normalize", text["normalize"])
    return text


def _validate_training(where, value):
    """Free-form facts of the training run, for people (strings, numbers,
    booleans and null only); never used to build anything."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 64:
        raise where.error("training", "must be an object of at most 64 keys")
    clean = {}
    for key, item in value.items():
        _string(where, "training", key, 64)
        if item is None or isinstance(item, bool) or _is_number(item):
            clean[key] = item
        else:
            clean[key] = _string(where, f"training.{key}", item)
    return clean


def _validate_calibration(where, value, task, n_labels):
    """The temperature (one, or one per class) and biases the recognizer
    applies to the logits; ``None``: an uncalibrated model."""
    if value is None:
        return None
    if task != "categorical":
        raise where.error("calibration", "is for categorical models only")
    value = _object(
        where, "calibration", value, _CALIBRATION_KEYS, _CALIBRATION_KEYS[3:]
    )
    method = _choice(where, "calibration.method", value["method"], CALIBRATIONS)
    wanted = 1 if method == "temperature" else n_labels
    temperatures = _list(where, "calibration.temperature", value["temperature"])
    if len(temperatures) != wanted:
        raise where.error(
            "calibration.temperature",
            f"must hold {wanted} value(s) for method {method} and {n_labels} labels, "
            f"got {len(temperatures)}",
        )
    low, high = TEMPERATURE_RANGE
    value["temperature"] = [
        _number(where, f"calibration.temperature[{i}]", t, low, high)
        for i, t in enumerate(temperatures)
    ]
    bias = value["bias"]
    if method == "temperature" and bias is not None:
        raise where.error("calibration.bias", "must be null for method temperature")
    if bias is not None:
        bias = _list(where, "calibration.bias", bias)
        if len(bias) != n_labels:
            raise where.error(
                "calibration.bias", f"must hold {n_labels} values, got {len(bias)}"
            )
        value["bias"] = [
            _number(where, f"calibration.bias[{i}]", b, -BIAS_LIMIT, BIAS_LIMIT)
            for i, b in enumerate(bias)
        ]
    _string(where, "calibration.fitted_on", value.get("fitted_on"), 64, allow_none=True)
    _string(
        where, "calibration.checkpoint", value.get("checkpoint"), 200, allow_none=True
    )
    if value.get("n") is not None:
        _int(where, "calibration.n", value["n"], 1, 10**9)
    for key in ("nll_before", "nll_after"):
        _number(where, f"calibration.{key}", value.get(key), 0.0, 1e6, allow_none=True)
    return value


def validate_description(data, source, overrides=None):
    """The checked description of a model folder.

    Arguments
    ---------
    data : dict
        As :func:`read_description` returns it.
    source : str or Path
        Names the file in messages.
    overrides : dict or None
        Inference settings a caller replaces (``window_seconds``,
        ``chunk_hop_seconds``, ``batch_size``, ``eval_crop_seconds``),
        checked like the file's own.

    Returns
    -------
    dict
        Every top-level key, optional ones filled in.

    Example
    -------
    >>> validate_description({"format": "sser-model", "format_version": 1}, "m.json")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.ModelFormatError: m.json: lacks task, labels, sample_rate, ...
    """
    where = _Where(source)
    if data.get("format") != FORMAT:
        raise where.error(
            "format", f"must be {FORMAT!r}; this is not an sser model description"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise where.error(
            "format_version",
            f"is {data.get('format_version')!r}; this sser reads version "
            f"{FORMAT_VERSION} (upgrade sser, or re-export the model)",
        )
    description = _object(where, "", data, (*_REQUIRED, *_OPTIONAL), tuple(_OPTIONAL))
    for key, default in _OPTIONAL.items():
        description.setdefault(key, default)
    settings = (
        "window_seconds",
        "chunk_hop_seconds",
        "batch_size",
        "eval_crop_seconds",
    )
    if overrides is not None and not isinstance(overrides, dict):
        raise ModelFormatError(
            f"overrides must be a dict of {', '.join(settings)}, got "
            f"{type(overrides).__name__}"
        )
    for key, value in (overrides or {}).items():
        if key not in settings:
            raise ModelFormatError(
                f"overrides: {key!r} cannot be overridden; only {', '.join(settings)}"
            )
        description[key] = value
    _choice(where, "task", description["task"], TASKS)
    labels = _list(where, "labels", description["labels"])
    for i, label in enumerate(labels):
        _string(where, f"labels[{i}]", label, MAX_LABEL_CHARS)
    if not labels or len({label.casefold() for label in labels}) != len(labels):
        raise where.error("labels", "must be distinct (ignoring case) and not empty")
    _int(where, "sample_rate", description["sample_rate"], 1000, 384000)
    window = _number(
        where, "window_seconds", description["window_seconds"], 0.1, MAX_WINDOW_SECONDS
    )
    if description["chunk_hop_seconds"] is None:
        description["chunk_hop_seconds"] = window / 2
    _number(
        where,
        "chunk_hop_seconds",
        description["chunk_hop_seconds"],
        window * MIN_HOP_SHARE,
        window,
    )
    _number(
        where,
        "eval_crop_seconds",
        description["eval_crop_seconds"],
        0.1,
        36000,
        allow_none=True,
    )
    _int(where, "batch_size", description["batch_size"], 1, 1024)
    low, high = _list(where, "attribute_range", description["attribute_range"], 2)
    _number(where, "attribute_range[0]", low)
    _number(where, "attribute_range[1]", high, low)
    if not high > low:
        raise where.error("attribute_range", f"is [{low}, {high}]: an empty range")
    description["architecture"] = validate_architecture(
        description["architecture"], where
    )
    config = description["architecture"]["encoder"]["config"]
    defaults = (
        [10, 3, 3, 3, 3, 2, 2],  # wav2vec 2.0 / HuBERT / WavLM kernels
        [5, 2, 2, 2, 2, 2, 2],
    )
    field = receptive_field(
        config.get("conv_kernel", defaults[0]), config.get("conv_stride", defaults[1])
    )
    if field > min(description["sample_rate"], window * description["sample_rate"]):
        raise where.error(
            "architecture.encoder.config",
            f"its CNN needs {field} samples for one frame, more than one second "
            "(or the window) of audio",
        )
    outputs = description["architecture"]["head"]["n_outputs"]
    if outputs != len(labels):
        raise where.error(
            "labels", f"names {len(labels)} classes, the head has {outputs} outputs"
        )
    description["text_encoder"] = _validate_text_encoder(
        where, description["text_encoder"]
    )
    if (description["text_encoder"] is None) != (
        description["architecture"]["text_fusion"] is None
    ):
        raise where.error(
            "text_encoder", "is needed by a text-fused model, and only by one"
        )
    _string(where, "asr_source", description["asr_source"], 200, allow_none=True)
    _string(where, "experiment", description["experiment"], 200, allow_none=True)
    description["training"] = _validate_training(where, description["training"])
    description["calibration"] = _validate_calibration(
        where, description["calibration"], description["task"], len(labels)
    )
    return description


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


def read_safetensors_header(path):
    """Tensor name -> ``(dtype, shape)`` from a safetensors file's header,
    read and checked without loading any tensor: a header above
    :data:`MAX_HEADER_BYTES` or with more than :data:`MAX_TENSORS` entries,
    duplicate names, or offsets outside the file are refused.

    Raises
    ------
    ModelFormatError
    """
    import struct

    size = Path(path).stat().st_size
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) < 8:
            raise ModelFormatError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", start)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ModelFormatError(
                f"{path}: not a safetensors file sser reads (a {length}-byte header)"
            )
        raw = handle.read(length)
    try:
        header = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        message = str(error).split("\n")[0]
        raise ModelFormatError(f"{path}: not a safetensors file ({message})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path}: not a safetensors file")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise ModelFormatError(
            f"{path}: holds {len(header)} tensors; at most {MAX_TENSORS}"
        )
    tensors = {}
    for name, entry in header.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(_is_int(d) and d >= 0 for d in entry["shape"])
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(
                _is_int(o) and 0 <= o <= size - 8 - length
                for o in entry["data_offsets"]
            )
        ):
            raise ModelFormatError(f"{path}: the header entry of {name!r} is malformed")
        tensors[name] = (entry["dtype"], tuple(entry["shape"]))
    return tensors


def _dtype_kind(dtype):
    return "float" if dtype in ("F16", "BF16", "F32", "F64") else dtype


def check_weights(description, weights_path):
    """Compare ``model.safetensors`` with the model the description builds.

    The tensor names, shapes and dtypes are read from the file's header; the
    model is built on the ``meta`` device (no memory for weights). The first
    missing, extra, misshapen or mistyped tensor is named.

    Raises
    ------
    ModelFormatError
    """
    found = read_safetensors_header(weights_path)
    with torch.device("meta"):
        model = build(description["architecture"], weights_path)
    expected = model.state_dict()
    for key in sorted(expected):
        if key not in found:
            raise ModelFormatError(
                f"{weights_path}: lacks the tensor {key} the description's model has"
            )
        dtype, shape = found[key]
        if shape != tuple(expected[key].shape):
            raise ModelFormatError(
                f"{weights_path}: {key} has shape {list(shape)}, the "
                f"description's model needs {list(expected[key].shape)}"
            )
        wanted = "float" if expected[key].is_floating_point() else "I64"
        if _dtype_kind(dtype) != wanted:
            raise ModelFormatError(
                f"{weights_path}: {key} is {dtype}; the description's model needs "
                f"{'a float tensor' if wanted == 'float' else wanted}"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ModelFormatError(
            f"{weights_path}: holds the tensor {extra[0]} (and {len(extra) - 1} "
            "more) that the description's model does not have"
        )


def build(architecture, source):
    """:func:`sser_lobes.nnet.description.build_model`, its failures (a
    combination of values the checks above let through) as one
    :class:`ModelFormatError` line naming ``source``."""
    try:
        return build_model(architecture)
    except (
        ValueError,
        RuntimeError,
        TypeError,
        KeyError,
        IndexError,
        AssertionError,
        ZeroDivisionError,
        OverflowError,
    ) as error:
        summary = " ".join(str(error).split())[:300] or type(error).__name__
        raise ModelFormatError(
            f"{source}: cannot build the described model: {summary}"
        ) from None


def smoke_test(model, description, source):
    """Run the model once on one second of quiet noise: it must give finite
    outputs of the described size, so a model that fails on audio fails at
    load, in one line, instead of at the first file."""
    rate = description["sample_rate"]
    wavs = 0.01 * torch.randn(2, rate, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([1.0, 0.75])
    inputs = {}
    fusion = description["architecture"].get("text_fusion")
    if fusion is not None:
        inputs = {
            "text": torch.zeros(2, fusion["text_size"]),
            "has_text": torch.tensor([False, False]),
        }
    try:
        with torch.no_grad():
            logits = model(wavs, lens, **inputs)["logits"]
    except (
        RuntimeError,
        ValueError,
        ZeroDivisionError,
        IndexError,
        TypeError,
    ) as error:
        summary = " ".join(str(error).split())[:300] or type(error).__name__
        raise ModelFormatError(
            f"{source}: the model fails on audio: {summary}"
        ) from None
    if tuple(logits.shape) != (2, len(description["labels"])):
        raise ModelFormatError(
            f"{source}: the model gives outputs of shape {list(logits.shape)}"
        )
    if not torch.isfinite(logits).all():
        raise ModelFormatError(f"{source}: the model gives non-finite outputs")


def load_model(description, weights_path):
    """The :class:`EmotionModel` of a validated description with the weights
    of ``weights_path``: checked first (:func:`check_weights`), every tensor
    finite, and run once (:func:`smoke_test`)."""
    from safetensors.torch import load_file

    check_weights(description, weights_path)
    model = build(description["architecture"], weights_path)
    state = load_file(str(weights_path), device="cpu")
    bad = next(
        (
            k
            for k, v in state.items()
            if v.is_floating_point() and not v.isfinite().all()
        ),
        None,
    )
    if bad is not None:
        raise ModelFormatError(f"{weights_path}: {bad} holds NaN or infinite values")
    model.load_state_dict(state, strict=True)
    model.eval()
    encoder = model.encoder
    if encoder.normalize_waveform == "global" and not float(
        encoder.waveform_stats_samples
    ):
        raise ModelFormatError(
            f"{weights_path}: the model normalises with training-set waveform "
            "statistics, and its weights hold none"
        )
    smoke_test(model, description, weights_path)
    return model


# --------------------------------------------------------------------------
# A text-fused model's text encoder
# --------------------------------------------------------------------------

#: The folder a text-fused model's text encoder is saved in.
TEXT_ENCODER_FOLDER = "text_encoder"
#: Text encoder kinds sser loads (sentence-embedding encoders of
#: transformers, no remote code).
TEXT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra")
#: Weights in any other format than safetensors are pickles: never read.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".py")
_TEXT_LIMITS = {
    "hidden_size": 8192,
    "dim": 8192,
    "num_hidden_layers": 48,
    "n_layers": 48,
    "num_attention_heads": 128,
    "n_heads": 128,
    "intermediate_size": 65536,
    "hidden_dim": 65536,
    "vocab_size": 1 << 20,
    "max_position_embeddings": 8192,
    "type_vocab_size": 16,
}


def check_text_encoder(folder, description):
    """Check a text-fused model's ``text_encoder/`` before transformers reads
    it: it holds exactly the files the description lists (transformers reads
    whatever it finds there), each a regular file inside the model folder,
    weights as safetensors only, and a ``config.json`` of a known kind whose
    width is the fusion's ``text_size``.

    Returns
    -------
    pathlib.Path
        The checked ``text_encoder/`` folder.

    Raises
    ------
    ModelFormatError
    """
    folder = Path(folder)
    root = folder / TEXT_ENCODER_FOLDER
    files = list(description["text_encoder"]["files"])
    where = _Where(folder / DESCRIPTION_FILE)
    for name in ("config.json", "model.safetensors"):
        if name not in files:
            raise where.error("text_encoder.files", f"lacks {name}")
    pickles = [n for n in files if n.lower().endswith(_PICKLE_SUFFIXES)]
    if pickles:
        raise where.error(
            "text_encoder.files", f"lists {pickles[0]}: weights are safetensors only"
        )
    if root.is_symlink() or not root.is_dir():
        raise ModelFormatError(f"{root}: no text encoder folder in the model folder")
    present = []
    for entry in root.rglob("*"):
        if len(present) > 256:
            raise ModelFormatError(f"{root}: holds more than 256 files")
        if entry.is_dir() and not entry.is_symlink():
            continue
        present.append(entry.relative_to(root).as_posix())
    unlisted = sorted(set(present) - set(files))
    if unlisted:
        raise ModelFormatError(
            f"{root / unlisted[0]}: a file sser_model.json does not list; "
            "transformers would read it"
        )
    for name in files:
        model_file(folder, f"{TEXT_ENCODER_FOLDER}/{name}", "text encoder file")
    config_path = root / "config.json"
    if config_path.stat().st_size > MAX_DESCRIPTION_BYTES:
        raise ModelFormatError(f"{config_path}: larger than {MAX_DESCRIPTION_BYTES}")
    try:
        config = json.loads(
            config_path.read_text(encoding="utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        message = str(error).split("\n")[0]
        raise ModelFormatError(f"{config_path}: {message}") from None
    where = _Where(config_path)
    if not isinstance(config, dict):
        raise where.error("", "a config is a JSON object")
    _choice(where, "model_type", config.get("model_type"), TEXT_MODEL_TYPES)
    for key, high in _TEXT_LIMITS.items():
        if key in config:
            _int(where, key, config[key], 1, high)
    width = config.get("hidden_size", config.get("dim"))
    size = description["architecture"]["text_fusion"]["text_size"]
    if width != size:
        raise where.error(
            "hidden_size", f"is {width!r}; the model's text fusion takes {size}"
        )
    return root
