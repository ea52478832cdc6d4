"""Checks of a recipe run before anything heavy is built: one line per mistake.

HyperPyYAML builds every object of a hyperparameter file while loading it, so
a recipe that loads its file first downloads and builds the SSL encoder (a
``microsoft/wavlm-large`` download, or a long Hub traceback offline) before
it looks at ``--data_folder``. The recipes therefore start with a *preview*:

1. :func:`preview_hparams` resolves the overlays, the command-line overrides
   and the ``!ref`` references of the file without building anything (the
   ``!new:`` / ``!apply:`` / ``!name:`` entries stay unbuilt data), in about
   0.1 s;
2. the recipe checks its options and data folder on the plain values
   (:func:`check_choice`, :func:`check_int`, :func:`check_model_options` and
   the preparation's own option check);
3. :func:`check_pretrained_source` makes sure each pretrained model the file
   names is a local folder, in the Hugging Face cache, or reachable;

and only then loads the file for real. Every problem found is a
:class:`RecipeError`, which the recipes print as one line ``error: ...``
(:func:`run_recipe_main`) instead of a traceback.
"""

import logging
import os
import sys
from pathlib import Path

import ruamel.yaml
from hyperpyyaml.core import resolve_references

from sser_lobes.errors import RecipeError
from sser_lobes.training.hparams import merged_hparams_text
from sser_lobes.training.options import check_choice, check_int, check_number

logger = logging.getLogger(__name__)


def parse_overrides(overrides):
    """Command-line overrides (a YAML string or a mapping) as a plain dict.

    Example
    -------
    >>> parse_overrides("lr: 0.1\\nfold: auto\\n")
    {'lr': 0.1, 'fold': 'auto'}
    >>> parse_overrides(None)
    {}
    >>> parse_overrides("lr: 0.1\\nlr: 0.2\\n")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --lr is given twice on the command line
    """
    if not overrides:
        return {}
    if isinstance(overrides, str):
        try:
            loaded = ruamel.yaml.YAML(typ="safe", pure=True).load(overrides)
        except ruamel.yaml.constructor.DuplicateKeyError as error:
            key = str(error.problem).split('"')[1]
            raise RecipeError(f"--{key} is given twice on the command line") from None
        except ruamel.yaml.YAMLError as error:
            raise RecipeError(
                f"cannot read the command-line options: {error}"
            ) from None
        return dict(loaded or {})
    return dict(overrides)


def preview_hparams(hparams_file, overrides=None):
    """The plain values of a hyperparameter file, nothing built.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        A recipe hyperparameter file (overlays allowed).
    overrides : str or dict or None
        Command-line overrides, as ``speechbrain.parse_arguments`` gives them.

    Returns
    -------
    dict
        Top-level keys -> values with overlays, overrides and references
        applied. Entries that HyperPyYAML would build (``!new:`` ...) are left
        as unbuilt mappings or lists.

    Raises
    ------
    RecipeError
        Missing or malformed file, an override naming no key of the file, a
        required value (``!PLACEHOLDER``) not given.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "h.yaml").write_text(
    ...     "data: !PLACEHOLDER\\nfold: 1\\nout: !ref results/<fold>\\n"
    ...     "layer: !new:torch.nn.Linear [2, 2]\\n"
    ... )
    >>> preview = preview_hparams(folder / "h.yaml", "data: /x\\nfold: 3")
    >>> preview["out"], preview["layer"].tag.value
    ('results/3', '!new:torch.nn.Linear')
    >>> preview_hparams(folder / "h.yaml", {"data": "/x", "lr": 1})
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: unknown option --lr: (...h.yaml has no key 'lr'...
    >>> preview_hparams(folder / "h.yaml")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --data is required (e.g. --data=/path/...)
    """
    path = Path(hparams_file)
    try:
        text = merged_hparams_text(path)
    except FileNotFoundError as error:
        raise RecipeError(str(error)) from None
    except (ValueError, ruamel.yaml.YAMLError) as error:
        raise RecipeError(f"{path}: {_one_line(error)}") from None
    overrides = parse_overrides(overrides)
    try:
        stream = resolve_references(text, overrides, overrides_must_match=True)
    except KeyError as error:
        key = str(error.args[0]).split("'")[1] if "'" in str(error) else error
        known = list(ruamel.yaml.YAML().load(text))
        closest = closest_option(str(key), known)
        hint = f"did you mean --{closest}? " if closest else ""
        raise RecipeError(
            f"unknown option --{key}: {hint}({path} has no key {key!r}; "
            f"options are the top-level keys of the hparams file)"
        ) from None
    except ValueError as error:
        message = _one_line(error)
        if "!PLACEHOLDER" in message:
            key = message.split("'")[1] if "'" in message else "a value"
            raise RecipeError(f"--{key} is required (e.g. --{key}=/path/...)") from None
        raise RecipeError(f"{path}: {message}") from None
    return dict(ruamel.yaml.YAML().load(stream))


def _one_line(error):
    return " ".join(str(error).split())


def closest_option(key, options):
    """The option a mistyped ``key`` most likely meant, or None.

    ``--csv-file`` means ``--csv_file`` (the keys use underscores); otherwise
    the closest key by :func:`difflib.get_close_matches`.

    Example
    -------
    >>> closest_option("numbr_of_epochs", ["number_of_epochs", "batch_size"])
    'number_of_epochs'
    >>> closest_option("csv-file", ["csv_file", "test_csv"])
    'csv_file'
    >>> closest_option("zzz", ["csv_file"]) is None
    True
    """
    import difflib

    underscored = key.replace("-", "_")
    if underscored in options:
        return underscored
    matches = difflib.get_close_matches(underscored, options, n=1, cutoff=0.75)
    return matches[0] if matches else None


def check_model_options(hparams, selection_metrics, global_waveform_norm=False):
    """Options shared by the recipes that the lobes would refuse late.

    Checks ``finetune`` (with ``trainable_layers`` and the LoRA options,
    :func:`check_finetune_options`), ``output_layer``, ``weighted_sum_layers``,
    ``num_layers``, ``pooling_type``, ``batching``, ``selection_metric``, the
    epoch count, batch sizes and learning rates, the feature cache's options
    (:func:`~sser_lobes.training.feature_cache.check_feature_cache_options`), the
    options of the gender and text overlays when the file uses them, and the
    training targets and calibration
    (:func:`~sser_lobes.training.targets.check_target_options`).

    Arguments
    ---------
    hparams : dict
        :func:`preview_hparams` output.
    selection_metrics : sequence of str
        The metrics the recipe can select a checkpoint on.
    global_waveform_norm : bool
        Whether the recipe computes the training-set statistics of
        ``normalize_waveform: global``.

    Example
    -------
    >>> options = {"finetune": "partial", "pooling_type": "mean", "batching": "random",
    ...     "output_layer": "last", "num_layers": None, "number_of_epochs": 2,
    ...     "batch_size": 4, "eval_batch_size": 4, "lr": 0.1, "lr_ssl": 0.1,
    ...     "selection_metric": "UA", "num_workers": 0}
    >>> check_model_options(options, ("UA", "WA"))
    >>> check_model_options({**options, "selection_metric": "F1"}, ("UA", "WA"))
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --selection_metric must be one of UA, WA; got 'F1'
    """
    from sser_lobes.encoders.ssl_encoder import FINETUNE_MODES, layer_selection
    from sser_lobes.nnet.pooling import POOLINGS
    from sser_lobes.training.feature_cache import check_feature_cache_options
    from sser_lobes.training.targets import check_target_options

    check_choice(hparams, "finetune", FINETUNE_MODES)
    check_choice(hparams, "pooling_type", sorted(POOLINGS))
    check_choice(hparams, "batching", ("bucketed", "random"))
    check_choice(hparams, "selection_metric", tuple(selection_metrics))
    layer = hparams.get("output_layer")
    if layer not in ("last", "weighted_sum"):
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise RecipeError(
                "--output_layer must be last, weighted_sum or a layer index "
                f"(0 = the transformer input); got {layer!r}"
            )
    layers = hparams.get("weighted_sum_layers")
    if layers is not None:
        if layer != "weighted_sum":
            raise RecipeError(
                "--weighted_sum_layers is for --output_layer=weighted_sum; got "
                f"--output_layer={layer}"
            )
        try:
            layer_selection(layers)
        except ValueError as error:
            raise RecipeError(f"--{error}") from None
    check_int(hparams, "num_layers", minimum=1, allow_none=True)
    check_finetune_options(hparams)
    check_choice(hparams, "output_norm", ("utterance", "frame", None, True, False))
    norms = ["layer_norm", "utterance", "off", None, True, False]
    if global_waveform_norm:
        norms.append("global")
    check_choice(hparams, "normalize_waveform", norms)
    if "apply_spec_augment" in hparams:
        check_choice(hparams, "apply_spec_augment", (None, True, False))
    grad_norm = hparams.get("max_grad_norm", 5.0)
    if not isinstance(grad_norm, (int, float)) or grad_norm < 0:
        raise RecipeError(
            f"--max_grad_norm must be >= 0 (.inf: no clipping); got {grad_norm!r}. "
            "SpeechBrain 1.1.2 passes a negative value to clip_grad_norm_, which "
            "flips the sign of the gradients instead of disabling clipping"
        )
    check_int(hparams, "number_of_epochs", minimum=1)
    check_int(hparams, "batch_size", minimum=1)
    check_int(hparams, "eval_batch_size", minimum=1)
    check_int(hparams, "num_workers", minimum=0)
    if hparams.get("max_batch_seconds") is not None:
        check_number(hparams, "max_batch_seconds", inclusive=False)
        if hparams.get("batching") != "bucketed":
            raise RecipeError("--max_batch_seconds needs --batching=bucketed")
    check_number(hparams, "lr", inclusive=False)
    if "lr_ssl" in hparams:
        check_number(hparams, "lr_ssl", inclusive=False)
    check_feature_cache_options(hparams)
    if "gender_mode" in hparams:
        check_choice(hparams, "gender_mode", ("film", "embedding", "concat"))
        check_choice(hparams, "gender_at_evaluation", ("predicted", "label"))
    if "fusion_mode" in hparams:
        check_choice(hparams, "fusion_mode", ("concat", "gated", "cross_attention"))
        check_choice(hparams, "missing_text", ("error", "audio_only"))
    check_target_options(hparams, hparams.get("task", "categorical"))


def check_finetune_options(hparams):
    """``trainable_layers`` and the LoRA options against ``finetune``.

    Example
    -------
    >>> check_finetune_options({"finetune": "top", "trainable_layers": 3})
    >>> check_finetune_options({"finetune": "top", "trainable_layers": None})
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --finetune=top needs --trainable_layers=k: ...
    >>> check_finetune_options({"finetune": "lora", "trainable_layers": None,
    ...     "lora_rank": 16, "lora_alpha": 32, "lora_targets": "attention,ffn"})
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --lora_targets: 'ffn' is not a target; ...
    """
    from sser_lobes.encoders.lora import parse_targets

    finetune = hparams.get("finetune")
    if "trainable_layers" in hparams:
        check_int(hparams, "trainable_layers", minimum=1, allow_none=True)
    layers = hparams.get("trainable_layers")
    if finetune == "top" and layers is None:
        raise RecipeError(
            "--finetune=top needs --trainable_layers=k: how many top transformer "
            "layers train (e.g. 3)"
        )
    if layers is not None and finetune not in ("top", "lora"):
        raise RecipeError(
            "--trainable_layers is for --finetune=top or lora; got "
            f"--finetune={finetune}"
        )
    if layers is not None and hparams.get("apply_spec_augment") is True:
        raise RecipeError(
            "--apply_spec_augment=True cannot be used with --trainable_layers: "
            "SpecAugment masks the transformer's input, which is frozen below the "
            "trained layers (use --apply_spec_augment=False)"
        )
    if finetune == "lora":
        check_int(hparams, "lora_rank", minimum=1, maximum=1024)
        if hparams.get("lora_alpha") is not None:
            check_number(hparams, "lora_alpha", inclusive=False)
        try:
            parse_targets(hparams.get("lora_targets"))
        except ValueError as error:
            raise RecipeError(f"--{error}") from None


def check_trainable_layers(hparams):
    """``trainable_layers`` against the SSL model's layer count (read from its
    config, a small file), and the features' layers against the trained
    ones; nothing without ``trainable_layers``.

    Raises
    ------
    RecipeError
    """
    layers = hparams.get("trainable_layers")
    if layers is None:
        return
    from transformers import AutoConfig

    from sser_lobes.encoders.hf_utils import quiet_transformers
    from sser_lobes.encoders.ssl_encoder import layer_selection

    with quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(
                str(hparams["ssl_source"]), cache_dir=hparams.get("ssl_cache_dir")
            )
        except (OSError, ValueError):
            return  # check_pretrained_source reports an unreadable source
    total = hparams.get("num_layers") or config.num_hidden_layers
    if layers > total:
        raise RecipeError(
            f"--trainable_layers={layers}: {hparams['ssl_source']} has {total} "
            "transformer layers"
            + (" (--num_layers)" if hparams.get("num_layers") else "")
        )
    first = total - layers
    output_layer = hparams.get("output_layer")
    if output_layer == "weighted_sum":
        chosen = hparams.get("weighted_sum_layers")
        chosen = None if chosen is None else layer_selection(chosen, total)
        if chosen is None or min(chosen) < first:
            raise RecipeError(
                f"--output_layer=weighted_sum with --trainable_layers={layers}: the "
                f"trained layers give hidden states {first}..{total}; set "
                f"--weighted_sum_layers={first}-{total}"
            )
    elif isinstance(output_layer, int) and output_layer < first:
        raise RecipeError(
            f"--output_layer={output_layer} is below the {layers} trained layers "
            f"(hidden states {first}..{total}); use --output_layer=last"
        )


def check_run_options(run_opts):
    """The device and precision SpeechBrain was asked for exist here.

    Example
    -------
    >>> check_run_options({"device": "cpu", "precision": "fp32"})
    >>> check_run_options({"device": "cuda:0"})  # on a machine without CUDA
    ... # doctest: +SKIP
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --device=cuda:0: CUDA is not available here...
    """
    import torch

    device = str(run_opts.get("device") or "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RecipeError(
                f"--device={device}: CUDA is not available here "
                "(torch.cuda.is_available() is False); use --device=cpu"
            )
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise RecipeError(
                f"--device={device}: this machine has {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    elif device != "cpu" and not device.startswith(("mps", "xpu")):
        raise RecipeError(f"--device={device}: expected cpu or cuda[:N]")
    precision = run_opts.get("precision")
    if precision is not None and precision not in ("fp32", "fp16", "bf16"):
        raise RecipeError(f"--precision={precision}: expected fp32, fp16 or bf16")
    if precision == "fp16" and not device.startswith("cuda"):
        raise RecipeError(
            "--precision=fp16 needs a CUDA device (fp16 autocast with a gradient "
            "scaler); on CPU use fp32, or bf16"
        )


def _looks_like_path(source):
    return source.startswith(("/", ".", "~")) or os.sep * 2 in source


def check_pretrained_source(source, option, cache_dir=None, what="model"):
    """Make sure a pretrained model can be loaded, before it is built.

    A local folder must hold a ``config.json``; a Hub id must be in the
    Hugging Face cache or reachable. Only the small config file is read.

    Arguments
    ---------
    source : str
        Hub id or local folder.
    option : str
        The option that named it (for the message), e.g. ``"ssl_source"``.
    cache_dir : str or None
        The Hugging Face cache folder the recipe uses.
    what : str
        What the model is, for the message.

    Raises
    ------
    RecipeError
        With one line that names the source and how to point the option at a
        local folder.

    Example
    -------
    >>> import tempfile
    >>> check_pretrained_source(tempfile.mkdtemp(), "ssl_source")
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --ssl_source=...: this folder has no config...
    """
    source = str(source)
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise RecipeError(
                f"--{option}={source}: this folder has no config.json; a local "
                f"{what} is a Hugging Face model folder (config.json and the weights, "
                "as save_pretrained writes it)"
            )
        return
    if local.exists() or _looks_like_path(source):
        raise RecipeError(
            f"--{option}={source}: no such folder (give a Hugging Face model folder "
            "or a Hub id)"
        )
    from transformers import AutoConfig

    from sser_lobes.encoders.hf_utils import quiet_transformers

    with quiet_transformers():
        try:
            AutoConfig.from_pretrained(
                source, cache_dir=cache_dir, local_files_only=True
            )
            return
        except (OSError, ValueError):
            pass
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        reason = "offline mode (HF_HUB_OFFLINE)" if offline else hub_unreachable()
        if reason is None:
            try:
                AutoConfig.from_pretrained(source, cache_dir=cache_dir)
                return
            except (OSError, ValueError) as error:
                reason = _one_line(error).split(". ")[0]
    raise RecipeError(
        f"cannot load the {what} {source!r} (--{option}): it is not a local folder, "
        f"not in the Hugging Face cache, and the Hub cannot provide it ({reason}). "
        "Download it once where there is network access, or pass "
        f"--{option}=/path/to/a/local/model/folder"
    )


def hub_unreachable(timeout=3.0):
    """Why the Hugging Face Hub cannot be reached, or None if it can.

    One DNS lookup and TCP connection to the Hub endpoint (``HF_ENDPOINT``),
    so that an offline machine gets its answer at once instead of after the
    download client's retries.
    """
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"{host} is unreachable: {error.strerror or error}"


def check_pretrained_sources(hparams):
    """:func:`check_pretrained_source` for every pretrained model the run uses.

    The SSL encoder (``ssl_source``), and with the text overlay the text
    encoder (``text_encoder_source``) and the optional ASR model
    (``asr_source``).
    """
    cache_dir = hparams.get("ssl_cache_dir")
    check_pretrained_source(hparams["ssl_source"], "ssl_source", cache_dir, "SSL model")
    if hparams.get("text_encoder_source") and "text_fusion" in hparams:
        check_pretrained_source(
            hparams["text_encoder_source"], "text_encoder_source", what="text encoder"
        )
    if hparams.get("asr_source") and "text_fusion" in hparams:
        check_pretrained_source(hparams["asr_source"], "asr_source", what="ASR model")


def user_errors():
    """The exception classes that report a user's mistake (printed as one line)."""
    from sser_lobes.errors import (
        AudioError,
        ManifestError,
        MissingTextError,
        PreparationError,
    )

    return (RecipeError, AudioError, ManifestError, PreparationError, MissingTextError)


def run_recipe_main(main, extra_errors=()):
    """Run a recipe's ``main()``; a user's mistake exits with ``error: ...``.

    Problems with the options or the data are reported as one line that names
    the file or option, and the exit status is 1; anything else (a bug) keeps
    its traceback.

    Example
    -------
    >>> def main():
    ...     raise RecipeError("--test_session must be 1-5, got 9")
    >>> run_recipe_main(main)
    Traceback (most recent call last):
    ...
    SystemExit: error: --test_session must be 1-5, got 9
    """
    try:
        return main()
    except (*user_errors(), *extra_errors) as error:
        logger.debug("user error", exc_info=True)
        sys.exit(f"error: {error}")
