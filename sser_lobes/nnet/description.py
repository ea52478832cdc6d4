"""The emotion model as plain data, and the code that builds it back.

A model folder (``python -m sser_lobes.export``) and a run folder describe
their :class:`~sser_lobes.nnet.model.EmotionModel` as JSON data: the SSL
encoder's transformers config and options, the pooling, the head, and the
optional gender conditioning and text fusion, each with its kind and sizes.
:func:`describe_model` writes that description; :func:`build_model` builds
the modules again with this package's own classes, choosing among a closed
set of kinds. Nothing in a description is imported, called or evaluated.

:func:`build_model` expects a description that was validated first
(:mod:`sser_lobes.inference.model_description` checks types, ranges and
sizes of a downloaded one); it still refuses a kind it does not know.

Example
-------
>>> import tempfile, torch
>>> from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
>>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
>>> encoder = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"), finetune="frozen")
>>> model = EmotionModel(encoder, MeanPooling(32), LinearHead(32, 4))
>>> description = describe_model(model)
>>> description["pooling"], description["head"]["n_outputs"]
({'type': 'mean', 'input_size': 32}, 4)
>>> rebuilt = build_model(description)
>>> sorted(rebuilt.state_dict()) == sorted(model.state_dict())
True
"""

import json

from sser_lobes.encoders.ssl_encoder import SSLEncoder
from sser_lobes.nnet.gender import GenderConditioning
from sser_lobes.nnet.heads import LinearHead, MLPHead
from sser_lobes.nnet.model import EmotionModel
from sser_lobes.nnet.pooling import POOLINGS, make_pooling
from sser_lobes.nnet.text_fusion import TextFusion

#: The name and version of the description format (a model folder's and a
#: run folder's ``sser_model.json``).
FORMAT = "sser-model"
FORMAT_VERSION = 1

#: A run whose SSL encoder is mostly frozen (``finetune: top`` or ``lora``)
#: checkpoints its trainable tensors only and keeps the frozen encoder
#: weights once, in this safetensors file of its save folder (keys as in the
#: model's state dict); an export joins the two.
FROZEN_ENCODER_FILE = "frozen_encoder.safetensors"

#: Facts of a training run kept in a run's description, for the model card
#: (an export keeps the ones that are not local paths).
TRAINING_FACTS = (
    "experiment_name",
    "ssl_source",
    "ssl_name",
    "finetune",
    "trainable_layers",
    "pooling_type",
    "selection_metric",
    "text_encoder_source",
    "asr_source",
    "data_folder",
    "output_folder",
    "fold",
    "seed",
)

#: Head kinds and their classes.
HEADS = {"linear": LinearHead, "mlp": MLPHead}

#: The sections of an architecture description.
SECTIONS = ("encoder", "pooling", "head", "gender", "text_fusion")


def describe_encoder(encoder):
    """The description of an :class:`SSLEncoder`: its transformers config
    and the options that change its output (not its fine-tuning mode)."""
    description = {
        "config": json.loads(encoder.config.to_json_string()),
        "output_layer": encoder.output_layer,
        "output_norm": encoder.output_norm,
        "normalize_waveform": encoder.normalize_waveform,
        "normalize_layers": bool(encoder.normalize_layers),
        "weighted_sum_layers": None,
    }
    if getattr(encoder, "weighted_sum_layers", None) is not None:
        description["weighted_sum_layers"] = list(encoder.selected_layers)
    if getattr(encoder, "adapters", None) is not None:
        # LoRA adapters not merged into the weights (a LoRA run, or an
        # export that keeps them apart): rank, alpha, targets and layers.
        description["adapters"] = dict(encoder.adapters)
    return description


def _pooling_type(pooling):
    for name, cls in POOLINGS.items():
        if type(pooling) is cls:
            return name
    raise ValueError(f"cannot describe pooling {type(pooling).__name__}")


def describe_head(head):
    """The description of a :class:`LinearHead` or :class:`MLPHead`."""
    if type(head) is LinearHead:
        return {
            "type": "linear",
            "input_size": head.input_size,
            "n_outputs": head.n_outputs,
            "bias": bool(head.use_bias),
            "output_activation": head.output_activation,
        }
    if type(head) is MLPHead:
        return {
            "type": "mlp",
            "input_size": head.input_size,
            "n_outputs": head.n_outputs,
            "hidden_size": head.hidden_size,
            "dropout": float(head.dropout),
            "input_dropout": float(head.input_dropout),
            "output_activation": head.output_activation,
        }
    raise ValueError(f"cannot describe head {type(head).__name__}")


def describe_model(model):
    """The architecture of an :class:`EmotionModel` as JSON-ready data.

    Raises
    ------
    ValueError
        For a module of a kind this package cannot build again.
    """
    gender = None
    if model.gender is not None:
        g = model.gender
        gender = {
            "mode": g.mode,
            "input_size": g.input_size,
            "embedding_size": g.embedding_size,
            "hidden_size": g.hidden_size,
        }
    text = None
    if model.text_fusion is not None:
        t = model.text_fusion
        text = {
            "mode": t.mode,
            "audio_size": t.audio_size,
            "text_size": t.text_size,
            "hidden_size": t.hidden_size,
            "frame_size": t.frame_size,
            "num_heads": t.num_heads,
            "dropout": float(t.dropout),
        }
    return {
        "encoder": describe_encoder(model.encoder),
        "pooling": {
            "type": _pooling_type(model.pooling),
            "input_size": model.pooling.input_size,
        },
        "head": describe_head(model.head),
        "gender": gender,
        "text_fusion": text,
    }


def encoder_options(description):
    """The :class:`SSLEncoder` arguments of an encoder description, besides
    its config: frozen, or with LoRA adapters (``adapters``) built on the
    described top layers by peft, from these numbers only.

    Example
    -------
    >>> described = {"output_layer": "last", "output_norm": None,
    ...     "normalize_waveform": "off", "normalize_layers": False,
    ...     "config": {"num_hidden_layers": 12},
    ...     "adapters": {"kind": "lora", "rank": 16, "alpha": 32.0,
    ...                  "targets": ["attention"], "layers": [9, 10, 11]}}
    >>> options = encoder_options(described)
    >>> options["finetune"], options["trainable_layers"], options["lora_rank"]
    ('lora', 3, 16)
    """
    options = {
        "finetune": "frozen",
        "output_layer": description["output_layer"],
        "output_norm": description["output_norm"],
        "normalize_waveform": description["normalize_waveform"],
        "normalize_layers": description["normalize_layers"],
        "weighted_sum_layers": description.get("weighted_sum_layers"),
    }
    adapters = description.get("adapters")
    if adapters is not None:
        layers = len(adapters["layers"])
        total = description["config"]["num_hidden_layers"]
        options.update(
            finetune="lora",
            trainable_layers=layers if layers < total else None,
            lora_rank=adapters["rank"],
            lora_alpha=adapters["alpha"],
            lora_targets=list(adapters["targets"]),
        )
    return options


def build_encoder(description):
    """An :class:`SSLEncoder` (random weights, frozen, eval mode) from its
    description."""
    encoder = SSLEncoder(
        config=dict(description["config"]),
        load_weights=False,
        **encoder_options(description),
    )
    if encoder.adapters is not None:
        encoder.model.requires_grad_(False)  # for inference, as a frozen one
    return encoder


def build_head(description):
    """A head from its description."""
    kind = description["type"]
    if kind == "linear":
        return LinearHead(
            description["input_size"],
            description["n_outputs"],
            bias=description["bias"],
            output_activation=description["output_activation"],
        )
    if kind == "mlp":
        return MLPHead(
            description["input_size"],
            description["n_outputs"],
            hidden_size=description["hidden_size"],
            dropout=description["dropout"],
            input_dropout=description["input_dropout"],
            output_activation=description["output_activation"],
        )
    raise ValueError(f"unknown head type {kind!r}; known: {sorted(HEADS)}")


def build_model(description):
    """An :class:`EmotionModel` in eval mode, with random weights, from a
    validated architecture description."""
    encoder = build_encoder(description["encoder"])
    pooling = description["pooling"]
    if pooling["type"] not in POOLINGS:
        raise ValueError(f"unknown pooling type {pooling['type']!r}")
    gender = description.get("gender")
    text = description.get("text_fusion")
    model = EmotionModel(
        encoder,
        make_pooling(pooling["type"], pooling["input_size"]),
        build_head(description["head"]),
        gender=None if gender is None else GenderConditioning(**gender),
        text_fusion=None if text is None else TextFusion(**text),
    )
    return model.eval()


def _plain(value):
    """A JSON scalar for a training fact (paths and other objects as text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def describe_run(hparams, window_seconds):
    """The description of a recipe run's model (what its folder's
    ``save/sser_model.json`` holds, and what an export of it starts from).

    Arguments
    ---------
    hparams : dict
        The run's hyperparameters, with the built ``model``.
    window_seconds : float
        The longest audio the model classifies whole
        (:func:`sser_lobes.dataio.chunking.inference_window_seconds`).

    Returns
    -------
    dict
        JSON-ready data; ``text_encoder.files`` is filled by the export, which
        saves the text encoder.
    """
    model = hparams["model"]
    task = hparams.get("task", "categorical")
    labels = hparams["emotions"] if task == "categorical" else hparams["attributes"]
    text = None
    if model.text_fusion is not None:
        text = {
            "files": [],
            "max_length": int(hparams["text_max_length"]),
            "normalize": bool(hparams["text_normalize"]),
        }
    crop = hparams.get("eval_crop_seconds")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task,
        "labels": [str(label) for label in labels],
        "sample_rate": int(hparams["sample_rate"]),
        "window_seconds": float(window_seconds),
        "chunk_hop_seconds": float(window_seconds) / 2,
        "eval_crop_seconds": None if crop is None else float(crop),
        "batch_size": int(hparams.get("eval_batch_size", 8)),
        "attribute_range": [1.0, 7.0],
        "architecture": describe_model(model),
        "text_encoder": text,
        "asr_source": None,
        "experiment": _plain(hparams.get("experiment_name")),
        "training": {key: _plain(hparams.get(key)) for key in TRAINING_FACTS},
    }
