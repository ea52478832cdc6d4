"""Small helpers around HuggingFace transformers shared by the lobes."""

import contextlib

from transformers.utils import logging as hf_logging


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' info/warning logs and progress bars for a block.

    Loading a checkpoint without its pretraining-only weights (quantizer,
    ``project_q``) or with fewer layers is expected here, and the per-load
    progress bars drown the training log. Errors still show.

    Example
    -------
    >>> with quiet_transformers():
    ...     hf_logging.get_verbosity() == hf_logging.ERROR
    True
    """
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def config_value(source, key, cache_dir=None, revision=None):
    """Read one value of a HuggingFace model's config without loading weights.

    Lets hyperparameter files size a layer from a checkpoint, e.g. the width
    of a text encoder: ``!apply:sser_lobes.encoders.hf_utils.config_value [<src>,
    hidden_size]``.

    Example
    -------
    >>> import tempfile
    >>> from transformers import BertConfig
    >>> folder = tempfile.mkdtemp()
    >>> BertConfig(hidden_size=48).save_pretrained(folder)
    >>> config_value(folder, "hidden_size")
    48
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, cache_dir=cache_dir, revision=revision)
    if not hasattr(config, key):
        raise ValueError(f"{source}: its config has no field {key!r}.")
    return getattr(config, key)


#: (hidden size, layers) -> the size name of the published checkpoints
MODEL_SIZES = {(768, 12): "base", (1024, 24): "large", (1280, 48): "xlarge"}


def model_name(source):
    """A folder name for an SSL checkpoint, for ``ssl_name``.

    A local folder is named from its ``config.json``: the architecture and
    the size (``wavlm_large``, ``hubert_base``, or ``wavlm_h32_l2`` for a
    size no published checkpoint has), since the folder's own name says
    nothing reliable. A Hub id is named after its repository
    (``facebook/wav2vec2-base-960h`` -> ``wav2vec2_base_960h``). A folder
    without a readable config falls back to its own name.

    Example
    -------
    >>> import tempfile, json, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "my_checkpoint"
    >>> folder.mkdir()
    >>> _ = (folder / "config.json").write_text(json.dumps(
    ...     {"model_type": "wavlm", "hidden_size": 1024, "num_hidden_layers": 24}))
    >>> model_name(str(folder))
    'wavlm_large'
    >>> model_name("facebook/wav2vec2-base-960h")
    'wav2vec2_base_960h'
    """
    import json
    import re
    from pathlib import Path

    def clean(text):
        return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_") or "ssl"

    local = Path(str(source)).expanduser()
    if not local.is_dir():
        return clean(str(source).rstrip("/").rsplit("/", 1)[-1])
    try:
        config = json.loads((local / "config.json").read_text(encoding="utf-8"))
        kind = config["model_type"]
        shape = (int(config["hidden_size"]), int(config["num_hidden_layers"]))
    except (OSError, ValueError, KeyError, TypeError):
        return clean(local.resolve().name)
    size = MODEL_SIZES.get(shape, f"h{shape[0]}_l{shape[1]}")
    return clean(f"{kind}_{size}")
