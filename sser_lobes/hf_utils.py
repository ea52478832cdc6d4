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
