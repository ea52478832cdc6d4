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
