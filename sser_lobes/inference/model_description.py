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
   by key, and the label count against the head's output size. Unknown keys
   are ignored with a warning;
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
from pathlib import Path

import torch

from sser_lobes.encoders.ssl_encoder import (
    OUTPUT_NORMS,
    SUPPORTED_MODEL_TYPES,
    WAVEFORM_NORMS,
)
from sser_lobes.errors import ModelFormatError
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
}
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
#: Upper bounds of the size fields of the SSL configs (the largest public
#: checkpoints are far below them).
_CONFIG_LIMITS = {
    "hidden_size": 8192,
    "intermediate_size": 65536,
    "num_hidden_layers": 96,
    "num_attention_heads": 128,
    "num_conv_pos_embeddings": 1024,
    "num_conv_pos_embedding_groups": 1024,
    "num_feat_extract_layers": 32,
    "num_buckets": 4096,
    "max_bucket_distance": 1 << 20,
    "vocab_size": 1 << 20,
}
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
    if not path.is_file():
        raise ModelFormatError(f"{path}: no {what} in the model folder")
    if not trusted and not inside_folder(path, folder):
        raise ModelFormatError(
            f"{path}: a symlink that leads out of the model folder "
            f"({os.path.realpath(path)}); it is not followed"
        )
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
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise where.error(
            key, f"must be a non-empty string of at most {limit} characters"
        )
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
        return _int(where, key, value, 0, _CONFIG_LIMITS.get(field, 1 << 20))
    if isinstance(default, float):
        high = 1.0 if ("dropout" in field or field.endswith("_prob")) else 1e6
        return _number(where, key, value, 0.0, high)
    if isinstance(default, (list, tuple)):
        items = _list(where, key, value, 64)
        return [_int(where, f"{key}[{i}]", v, 1, MAX_SIZE) for i, v in enumerate(items)]
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
    if any(len(c) != layers for c in conv):
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
        ),
        optional=("weighted_sum_layers",),
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
    encoder["config"] = config
    return encoder, config["hidden_size"]


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


def _validate_text_fusion(where, value, size):
    if value is None:
        return None
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
    if text["frame_size"] is not None:
        _int(where, "architecture.text_fusion.frame_size", text["frame_size"], 1)
    _number(where, "architecture.text_fusion.dropout", text["dropout"], 0.0, 1.0)
    if text["audio_size"] != size:
        raise where.error(
            "architecture.text_fusion.audio_size",
            f"is {text['audio_size']}, the pooling (and gender) give {size}",
        )
    return text


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
    arch["text_fusion"] = _validate_text_fusion(where, arch.get("text_fusion"), size)
    if arch["text_fusion"] is not None:
        t = arch["text_fusion"]
        size = t["audio_size"] + t["hidden_size"] if t["mode"] == "concat" else size
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
    if not labels or len(set(labels)) != len(labels):
        raise where.error("labels", "must be distinct and not empty")
    _int(where, "sample_rate", description["sample_rate"], 1000, 384000)
    window = _number(where, "window_seconds", description["window_seconds"], 0.1, 3600)
    if description["chunk_hop_seconds"] is None:
        description["chunk_hop_seconds"] = window / 2
    _number(where, "chunk_hop_seconds", description["chunk_hop_seconds"], 0.01, window)
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
    description["architecture"] = validate_architecture(
        description["architecture"], where
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
    return description


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


def check_weights(description, weights_path):
    """Compare ``model.safetensors`` with the model the description builds.

    The tensor names and shapes are read from the file's header; the model
    is built on the ``meta`` device (no memory for weights). The first
    missing, extra or misshapen tensor is named.

    Raises
    ------
    ModelFormatError
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
            dtypes = {k: handle.get_slice(k).get_dtype() for k in found}
    except (SafetensorError, OSError, ValueError) as error:
        summary = " ".join(str(error).split())
        raise ModelFormatError(
            f"{weights_path}: not a safetensors file ({summary})"
        ) from None
    with torch.device("meta"):
        expected = {
            k: tuple(v.shape)
            for k, v in build_model(description["architecture"]).state_dict().items()
        }
    for key in sorted(expected):
        if key not in found:
            raise ModelFormatError(
                f"{weights_path}: lacks the tensor {key} the description's model has"
            )
        if found[key] != expected[key]:
            raise ModelFormatError(
                f"{weights_path}: {key} has shape {list(found[key])}, the "
                f"description's model needs {list(expected[key])}"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ModelFormatError(
            f"{weights_path}: holds the tensor {extra[0]} (and {len(extra) - 1} "
            "more) that the description's model does not have"
        )
    bad = sorted(k for k, d in dtypes.items() if d not in ("F32", "F16", "BF16", "F64"))
    if bad:
        raise ModelFormatError(
            f"{weights_path}: {bad[0]} is {dtypes[bad[0]]}, not a float tensor"
        )


def load_model(description, weights_path):
    """The :class:`EmotionModel` of a validated description with the weights
    of ``weights_path`` (checked first with :func:`check_weights`)."""
    from safetensors.torch import load_file

    check_weights(description, weights_path)
    model = build_model(description["architecture"])
    state = load_file(str(weights_path), device="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval()
