"""Checkpoints of the trainable tensors only, when the SSL encoder is mostly
frozen (``finetune: top`` or ``lora``).

SpeechBrain's ``Checkpointer`` saves a module's whole state dict at every
checkpoint. With top-k fine-tuning or LoRA, most of it is the frozen SSL
encoder (for top-3 of WavLM large: 24 of 27 layers' weights), which never
changes: each checkpoint would write it again. Here:

* the frozen encoder weights are written once per run, into
  ``save/frozen_encoder.safetensors``
  (:data:`~sser_lobes.nnet.description.FROZEN_ENCODER_FILE`: tensors only,
  keys as in the model's state dict), with a digest of the tensors and the
  fine-tuning options in its metadata (:func:`guard_frozen_encoder`);
* the model's checkpoint (``model.ckpt``) holds every other tensor of the
  state dict: the trained layers or the adapters, the pooling, the head,
  buffers (:func:`keep_trainable_only` registers the hooks with the
  ``Checkpointer``);
* a resumed run rebuilds the frozen part from ``ssl_source`` as it did the
  first time; it is refused (one line) if those weights, or the fine-tuning
  options, are not the ones the folder's checkpoints were trained with, and
  a checkpoint whose tensors are not exactly the trainable ones of this
  model is refused when it is loaded.

``python -m sser_lobes.export`` joins the two files
(:mod:`sser_lobes.inference.export`).
"""

import hashlib
import json
from pathlib import Path

import torch

from sser_lobes.errors import RecipeError
from sser_lobes.nnet.description import FROZEN_ENCODER_FILE

#: The fine-tuning modes whose checkpoints hold the trainable tensors only.
SPLIT_MODES = ("top", "lora")


def stores_trainable_only(model):
    """Whether ``model``'s checkpoints leave its frozen encoder out."""
    encoder = getattr(model, "encoder", None)
    return getattr(encoder, "finetune", None) in SPLIT_MODES


def frozen_encoder_names(model):
    """State-dict keys of the frozen weights of ``model``'s SSL encoder.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m")
    >>> encoder = SSLEncoder(folder, finetune="top", trainable_layers=1)
    >>> model = EmotionModel(encoder, MeanPooling(32), LinearHead(32, 4))
    >>> names = frozen_encoder_names(model)
    >>> sorted({k.split(".")[0] for k in trainable_state(model)})
    ['encoder', 'head']
    >>> any(".layers.0." in k for k in trainable_state(model))
    False
    """
    return {
        "encoder.model." + name
        for name, param in model.encoder.model.named_parameters()
        if not param.requires_grad
    }


def trainable_state(model):
    """``model``'s state dict without its frozen encoder weights."""
    frozen = frozen_encoder_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def save_trainable(model, path):
    """Checkpoint save hook: the trainable tensors (and buffers) only."""
    torch.save(trainable_state(model), path)


def load_trainable(model, path, end_of_epoch=False):
    """Checkpoint load hook: tensors that must be exactly the trainable ones
    of ``model`` (names and shapes); its frozen encoder is left as built.

    Raises
    ------
    RecipeError
        A checkpoint of another model (another ``trainable_layers``, rank,
        targets, or a whole-model checkpoint of another mode).
    """
    del end_of_epoch
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = trainable_state(model)
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unexpected or missing:
        first = (unexpected or missing)[0]
        what = "holds" if unexpected else "lacks"
        raise RecipeError(
            f"{path}: the checkpoint {what} {first} (and "
            f"{len(unexpected) + len(missing) - 1} more differences): it was "
            "trained with other fine-tuning options (--finetune, "
            "--trainable_layers, --lora_rank, --lora_targets) than this run's; "
            "use another --output_folder or --experiment_name"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise RecipeError(
                f"{path}: {key} has shape {list(value.shape)}, this run's model "
                f"needs {list(expected[key].shape)} (other fine-tuning options: use "
                "another --output_folder or --experiment_name)"
            )
    model.load_state_dict(state, strict=False)


def keep_trainable_only(checkpointer, model):
    """Make ``checkpointer`` save and load ``model`` (its recoverable
    ``"model"``) through :func:`save_trainable` / :func:`load_trainable`
    when :func:`stores_trainable_only`; returns whether it does."""
    if checkpointer is None or not stores_trainable_only(model):
        return False
    if checkpointer.recoverables.get("model") is not model:
        return False
    checkpointer.custom_save_hooks["model"] = save_trainable
    checkpointer.custom_load_hooks["model"] = load_trainable
    return True


def tensors_digest(tensors):
    """SHA-256 of named tensors (names, dtypes, shapes and bytes).

    Example
    -------
    >>> a = {"w": torch.ones(2)}
    >>> tensors_digest(a) == tensors_digest({"w": torch.ones(2)})
    True
    >>> tensors_digest(a) == tensors_digest({"w": torch.zeros(2)})
    False
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _options(model):
    encoder = model.encoder
    return {
        "finetune": encoder.finetune,
        "trainable_layers": encoder.trainable_layers,
        "adapters": encoder.adapters,
    }


def write_frozen_encoder(model, save_folder):
    """Write ``save_folder/frozen_encoder.safetensors`` unless it exists
    (main process); returns its path."""
    from safetensors.torch import save_file

    path = Path(save_folder) / FROZEN_ENCODER_FILE
    if path.exists():
        return path
    names = frozen_encoder_names(model)
    state = model.state_dict()
    tensors = {k: state[k].detach().contiguous().clone() for k in sorted(names)}
    metadata = {
        "digest": tensors_digest(tensors),
        "options": json.dumps(_options(model), sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def guard_frozen_encoder(model, save_folder):
    """Refuse a run whose frozen encoder, or fine-tuning options, are not
    those of the folder's ``frozen_encoder.safetensors`` (the checkpoints
    there hold only what was trained on top of it).

    Raises
    ------
    RecipeError
    """
    from safetensors import safe_open

    path = Path(save_folder) / FROZEN_ENCODER_FILE
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    saved = json.loads(metadata.get("options", "{}"))
    ours = json.loads(json.dumps(_options(model), sort_keys=True))
    if saved != ours:
        keys = sorted(set(saved) | set(ours))
        changed = [k for k in keys if saved.get(k) != ours.get(k)]
        shown = ", ".join(f"{k} {saved.get(k)!r} -> {ours.get(k)!r}" for k in changed)
        raise RecipeError(
            f"{path}: this run folder's checkpoints were trained with other "
            f"fine-tuning options ({shown}); use another --output_folder or "
            "--experiment_name"
        )
    state = model.state_dict()
    names = frozen_encoder_names(model)
    if metadata.get("digest") != tensors_digest({k: state[k] for k in names}):
        raise RecipeError(
            f"{path}: the frozen SSL encoder weights of this run (--ssl_source) are "
            "not those its checkpoints were trained on; use the same "
            "--ssl_source, or another --output_folder"
        )
