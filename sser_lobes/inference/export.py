"""Export a trained recipe run as a model folder people can load, and publish it.

    python -m sser_lobes.export RUN_FOLDER OUT_DIR [--onnx] [--transformers]
        [--push REPO_ID] [--dry-run] [--trust-run] [--keep-adapters]

``RUN_FOLDER`` is the output folder of a recipe run (``save/`` with the
checkpoints and the model's description, the manifests, the metrics files).
``OUT_DIR`` receives:

* ``sser_model.json``: the model as data (task, labels, sample rate, the
  inference window, the SSL encoder's config and options, pooling, head,
  conditioning, and the calibration the recipe fitted on the validation set
  after training), the only file sser reads to build it
  (:mod:`sser_lobes.inference.model_description`); a calibration fitted for
  another checkpoint than the exported one is left out, with a warning;
* ``model.safetensors``: the whole EmotionModel of the best checkpoint (by the
  run's selection metric), SSL encoder weights included: no second download
  (a run that checkpoints its trainable tensors only, ``finetune: top`` or
  ``lora``, gives the rest from ``save/frozen_encoder.safetensors``; LoRA
  adapters are merged into the weights unless ``--keep-adapters``);
* ``hyperparams.yaml``: the same model for plain SpeechBrain users
  (``Pretrained.from_hparams``, which builds whatever a YAML names; sser
  never reads it unless asked to trust it);
* ``text_encoder/`` for text-fused models (tokenizer and safetensors weights);
* ``model.onnx`` with ``--onnx``: the same model as an ONNX graph (dynamic
  batch and time axes), checked against PyTorch with ONNX Runtime on padded
  batches as part of the export (:mod:`sser_lobes.inference.onnx_export`);
* with ``--transformers``: ``config.json``, ``preprocessor_config.json`` and
  ``transformers.safetensors``, the same model as a stock transformers
  ``*ForSequenceClassification`` that ``transformers.pipeline(
  "audio-classification", model=OUT_DIR)`` loads with no custom code, or one
  line saying why this kind of model has no exact transformers form
  (:mod:`sser_lobes.inference.transformers_export`);
* ``app.py`` and ``requirements.txt``: the folder runs as a Hub Space, the
  web page of :mod:`sser_lobes.inference.demo` (:mod:`sser_lobes.inference.space`);
* ``README.md``: a model card (:mod:`sser_lobes.inference.model_card`); the
  run's ``*_metrics.json``, PNGs and coverage-accuracy curves.

What export reads from the run folder. A run trained by this sser keeps its
model's description in ``save/sser_model.json`` (the recipe writes it when
training starts). Export reads it as data, with the checks a downloaded
model gets, builds the model with sser's code, and reads the best
checkpoint's weights with ``torch.load(weights_only=True)`` (a pickle naming
any Python object is refused): nothing of the run folder is executed, so a
run folder received from someone else can be exported. A run without that
file (trained by an older sser) can only be exported by building its
``hyperparams.yaml`` with HyperPyYAML, which RUNS the code that file names:
export refuses it unless ``--trust-run`` is given, for your own run folders.

Published files carry no local path of the training machine: the card names
a Hub SSL source as is and a local one by its architecture, the corpus by its
protocol; the description and the copied metrics files are scrubbed (the
run's own are not changed), and the export fails if any uploadable file
still holds one. ``sser_export.json`` (the run folder and checkpoint paths)
marks the folder as ours and is never uploaded.

``--push REPO_ID`` uploads the folder with ``huggingface_hub`` (token from
``HF_TOKEN`` or the usual login); ``--dry-run`` lists what would be uploaded
without touching the network.
"""

import argparse
import json
import pickle
import shutil
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from sser_lobes.dataio.chunking import inference_window_seconds
from sser_lobes.errors import ExportError, ModelFormatError
from sser_lobes.inference.model_card import describe_ssl, is_local_path, model_card
from sser_lobes.inference.model_description import (
    DESCRIPTION_FILE,
    WEIGHTS_FILE,
    model_file,
    read_description,
    read_safetensors_header,
    validate_description,
)
from sser_lobes.inference.space import write_space_files
from sser_lobes.nnet.description import (
    FROZEN_ENCODER_FILE,
    build_model,
    describe_run,
    encoder_options,
)

MARKER = "sser_export.json"

#: The class of each head type in the SpeechBrain YAML.
HEAD_CLASSES = {"linear": "LinearHead", "mlp": "MLPHead"}
FORMAT_VERSION = 2

#: Training facts a published description keeps (the others are local paths
#: of the training machine, or say where things were).
PUBLISHED_FACTS = (
    "experiment_name",
    "ssl_source",
    "ssl_name",
    "finetune",
    "trainable_layers",
    "pooling_type",
    "selection_metric",
    "fold",
    "seed",
)


# --------------------------------------------------------------------------
# Reading a run
# --------------------------------------------------------------------------


def load_run(run_folder, ssl_source=None, text_encoder_source=None, trust_run=False):
    """The model of a run's best checkpoint, and its description.

    Arguments
    ---------
    run_folder : str or Path
        A recipe output folder.
    ssl_source, text_encoder_source : str or None
        Replace the sources recorded in the run (if they moved). The SSL
        encoder's weights are never read from the source: they come from the
        checkpoint.
    trust_run : bool
        For a run without ``save/sser_model.json``: build its
        ``hyperparams.yaml`` with HyperPyYAML, which runs the code it names.

    Returns
    -------
    description : dict
        The checked description of the run's model.
    model : EmotionModel
        With the weights of the selected checkpoint, in eval mode.
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The selected checkpoint.
    """
    run = Path(run_folder)
    if not run.is_dir():
        raise ExportError(f"{run}: no such run folder")
    save = run / "save"
    if (save / DESCRIPTION_FILE).is_file() or (save / DESCRIPTION_FILE).is_symlink():
        description, model, checkpoint = _load_run_data(save)
    elif trust_run:
        description, model, checkpoint = _load_run_yaml(run, ssl_source)
    elif not (run / "hyperparams.yaml").is_file():
        raise ExportError(f"{run}: no hyperparams.yaml; is it a recipe run folder?")
    elif not save.is_dir():
        raise ExportError(
            f"{run}: no checkpoint folder (save/); the run never finished an epoch"
        )
    else:
        raise ExportError(
            f"{run}: no save/{DESCRIPTION_FILE} (the run was trained by an older "
            "sser). Exporting it means building its hyperparams.yaml, which runs "
            "the code that file names: if this run folder is your own, pass "
            "--trust-run"
        )
    training = dict(description.get("training") or {})
    if ssl_source:
        training["ssl_source"] = ssl_source
    if text_encoder_source:
        training["text_encoder_source"] = text_encoder_source
    description["training"] = training
    return description, model, checkpoint


def _load_run_data(save):
    """The data-only path: ``save/sser_model.json`` and the checkpoint's
    tensors; nothing of the run is executed."""
    from speechbrain.utils.checkpoints import Checkpointer

    try:
        description = validate_description(
            read_description(save), save / DESCRIPTION_FILE
        )
    except ModelFormatError as error:
        raise ExportError(str(error)) from None
    metric = (description.get("training") or {}).get("selection_metric")
    _check_checkpoint_folders(save)
    try:
        checkpoint = Checkpointer(save).find_checkpoint(max_key=metric)
    except (KeyError, TypeError, ValueError, OSError, yaml.YAMLError) as error:
        summary = " ".join(str(error).split())[:200] or type(error).__name__
        raise ExportError(
            f"{save}: cannot read the checkpoints' metadata: {summary}"
        ) from None
    if checkpoint is None:
        raise ExportError(
            f"{save.parent}: no checkpoint in {save}; the run never finished an epoch"
        )
    try:
        path = model_file(checkpoint.path, "model.ckpt", "model checkpoint")
    except ModelFormatError as error:
        raise ExportError(str(error)) from None
    state = _load_tensors(path)
    state = _with_frozen_encoder(save, state, path)
    model = build_model(description["architecture"])
    _check_state(state, model, path)
    bad = next(
        (
            k
            for k, v in state.items()
            if v.is_floating_point() and not v.isfinite().all()
        ),
        None,
    )
    if bad is not None:
        raise ExportError(f"{path}: {bad} holds NaN or infinite values")
    model.load_state_dict(state, strict=True)
    calibration = description.get("calibration")
    fitted_for = (calibration or {}).get("checkpoint")
    if fitted_for is not None and fitted_for != checkpoint.path.name:
        print(
            f"warning: {save / DESCRIPTION_FILE}: the calibration was fitted for "
            f"checkpoint {fitted_for}, not {checkpoint.path.name}, which is "
            "exported: the model is exported uncalibrated (rerun the recipe's "
            "evaluation to fit it again)"
        )
        description["calibration"] = None
    return description, model.eval(), checkpoint


def _with_frozen_encoder(save, state, checkpoint_path):
    """A checkpoint's tensors joined with the run's frozen encoder weights
    (``save/frozen_encoder.safetensors``, written once by runs whose
    checkpoints hold the trainable tensors only: ``finetune: top`` or
    ``lora``); the state itself for other runs. The file is read as tensors
    only (safetensors), and must be a regular file inside the run."""
    frozen_file = save / FROZEN_ENCODER_FILE
    if not (frozen_file.exists() or frozen_file.is_symlink()):
        return state
    from safetensors.torch import load_file

    try:
        path = model_file(save, FROZEN_ENCODER_FILE, "frozen encoder weights")
        read_safetensors_header(path)
    except ModelFormatError as error:
        raise ExportError(str(error)) from None
    frozen = load_file(str(path), device="cpu")
    both = sorted(set(frozen) & set(state))
    if both:
        raise ExportError(
            f"{checkpoint_path}: holds {both[0]}, which {path.name} holds too: "
            "the checkpoint and the frozen encoder weights belong to different runs"
        )
    return {**frozen, **state}


def _check_checkpoint_folders(save):
    """Each ``CKPT+*`` of a run is a real folder inside ``save/`` whose
    ``CKPT.yaml`` is a small regular file: a symlink out of the run, a FIFO
    (which would block the reader) or a huge file is refused."""
    for folder in sorted(save.glob("CKPT+*")):
        if folder.is_symlink() or not folder.is_dir():
            raise ExportError(f"{folder}: not a checkpoint folder inside the run")
        meta = folder / "CKPT.yaml"
        if meta.is_symlink() or not meta.is_file() or meta.stat().st_size > 65536:
            raise ExportError(
                f"{meta}: not a checkpoint's metadata file (a regular file under 64 kB)"
            )


def _load_run_yaml(run, ssl_source=None):
    """The ``--trust-run`` path: the run's ``hyperparams.yaml`` built as the
    recipe built it (this runs the code the file names)."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.checkpoints import Checkpointer

    hparams_file = run / "hyperparams.yaml"
    if not hparams_file.is_file():
        raise ExportError(f"{run}: no hyperparams.yaml; is it a recipe run folder?")
    save_folder = _run_save_folder(run)
    overrides = {"ssl_encoder": {"load_weights": False}}
    saved_config = save_folder / "ssl_config.json"
    if saved_config.is_file() and not ssl_source:
        # The encoder's config as trained (kept by the recipe): the original
        # source (hub cache or local folder) is not needed.
        overrides["ssl_encoder"]["config"] = str(saved_config)
    if ssl_source:
        overrides["ssl_source"] = ssl_source
    with open(hparams_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides, overrides_must_match=False)
    checkpoint = Checkpointer(save_folder).find_checkpoint(
        max_key=hparams.get("selection_metric")
    )
    if checkpoint is None:
        raise ExportError(
            f"{run}: no checkpoint in {save_folder}; the run never finished an epoch"
        )
    model = hparams["model"]
    state = _load_tensors(checkpoint.paramfiles["model"])
    state = _with_frozen_encoder(save_folder, state, checkpoint.paramfiles["model"])
    _check_state(state, model, checkpoint.paramfiles["model"])
    model.load_state_dict(state)
    manifests = sorted(
        Path(hparams.get("manifest_folder", run / "manifests")).glob("*.json")
    )
    if (run / "manifests").is_dir():
        manifests = sorted((run / "manifests").glob("*.json"))
    window = inference_window_seconds(manifests, hparams.get("train_crop_seconds"))
    data = json.loads(json.dumps(describe_run(hparams, window)))
    try:
        description = validate_description(data, hparams_file)
    except ModelFormatError as error:
        raise ExportError(str(error)) from None
    return description, model.eval(), checkpoint


def _check_state(state, model, path):
    """The checkpoint's tensors are the model's, name for name and shape for
    shape; one line names the first difference."""
    if not isinstance(state, dict) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ExportError(f"{path}: not a state dict of tensors")
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ExportError(f"{path}: lacks the tensor {key} of the run's model")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ExportError(
                f"{path}: {key} has shape {list(state[key].shape)}, the run's "
                f"model needs {list(value.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ExportError(f"{path}: holds {extra[0]}, which the run's model lacks")


def _load_tensors(path):
    """A checkpoint's state dict, read with ``torch.load(weights_only=True)``:
    tensors and plain containers only, a pickle naming any other Python
    object (which a plain ``torch.load`` would call) is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ExportError(
            f"{path}: not a plain tensor checkpoint, refused by "
            f"torch.load(weights_only=True): {_torch_load_reason(error)}"
        ) from None


def _torch_load_reason(error):
    """The specific part of torch's weights-only message, on one line (its
    generic advice to retry with ``weights_only=False`` is dropped)."""
    keep = [
        line.strip().split("use case: ")[-1]
        for line in str(error).splitlines()
        if line.strip()
        and not line.startswith(("Weights only load failed", "Check the documentation"))
    ]
    return " ".join(part for part in keep if part) or type(error).__name__


def _run_save_folder(run):
    """The checkpoint folder of a trusted run, as its hyperparams.yaml says."""
    import ruamel.yaml

    # Round-trip loading keeps the !new: tags as data: nothing is built.
    with open(run / "hyperparams.yaml", encoding="utf-8") as handle:
        data = ruamel.yaml.YAML().load(handle)
    # Recipe paths may be relative to where training ran: prefer the run's own.
    if (run / "save").is_dir():
        return run / "save"
    # A --save_folder elsewhere, but only if the file is this run's own (a
    # hyperparams.yaml copied from another run names that run's checkpoints).
    output = data.get("output_folder")
    saved = data.get("save_folder")
    if saved and output and _same_folder(output, run) and Path(saved).is_dir():
        return Path(saved)
    if output and not _same_folder(output, run):
        raise ExportError(
            f"{run}: no checkpoint folder (save/), and its hyperparams.yaml belongs "
            f"to another run ({output}); export that run folder instead"
        )
    raise ExportError(
        f"{run}: no checkpoint folder (save/); the run never finished an epoch"
    )


def _same_folder(a, b):
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------
# Writing the model folder
# --------------------------------------------------------------------------


def _j(value):
    """JSON is valid YAML flow syntax: one-line, unambiguous values."""
    return json.dumps(value)


def speechbrain_yaml(description):
    """``hyperparams.yaml`` for plain SpeechBrain users: the description's
    model as HyperPyYAML (``Pretrained.from_hparams`` builds it; sser does
    not read it)."""
    arch = description["architecture"]
    encoder = arch["encoder"]
    head = arch["head"]
    lines = [
        "# sser emotion recognizer for plain SpeechBrain (Pretrained.from_hparams),",
        "# written by sser_lobes.export from sser_model.json. sser itself reads",
        "# sser_model.json (data only):",
        "#   EmotionRecognizer.from_hparams(source=THIS_FOLDER_OR_REPO)",
        f"task: {description['task']}",
        f"labels: {_j(description['labels'])}",
        f"sample_rate: {description['sample_rate']}",
        f"window_seconds: {description['window_seconds']}",
        f"chunk_hop_seconds: {description['chunk_hop_seconds']}",
        f"eval_crop_seconds: {_j(description['eval_crop_seconds'])}",
        f"batch_size: {description['batch_size']}",
        f"attribute_range: {_j(description['attribute_range'])}",
        f"ssl_config: {_j(encoder['config'])}",
        "ssl_encoder: !new:sser_lobes.SSLEncoder",
        "    config: !ref <ssl_config>",
        "    load_weights: False",
    ]
    options = encoder_options(encoder)
    lines.append(f"    finetune: {options.pop('finetune')}")
    lines += [f"    {key}: {_j(value)}" for key, value in options.items()]
    lines += [
        "pooling: !apply:sser_lobes.make_pooling",
        f"    - {arch['pooling']['type']}",
        f"    - {arch['pooling']['input_size']}",
        f"head: !new:sser_lobes.nnet.heads.{HEAD_CLASSES[head['type']]}",
    ]
    lines += [f"    {k}: {_j(v)}" for k, v in head.items() if k != "type"]
    gender_ref = text_ref = "null"
    if arch.get("gender"):
        lines.append(
            "gender_conditioning: !new:sser_lobes.nnet.gender.GenderConditioning"
        )
        lines += [f"    {k}: {_j(v)}" for k, v in arch["gender"].items()]
        gender_ref = "!ref <gender_conditioning>"
    if arch.get("text_fusion"):
        lines.append("text_fusion: !new:sser_lobes.nnet.text_fusion.TextFusion")
        lines += [f"    {k}: {_j(v)}" for k, v in arch["text_fusion"].items()]
        text_ref = "!ref <text_fusion>"
    lines += [
        "model: !new:sser_lobes.EmotionModel",
        "    encoder: !ref <ssl_encoder>",
        "    pooling: !ref <pooling>",
        "    head: !ref <head>",
        f"    gender: {gender_ref}",
        f"    text_fusion: {text_ref}",
        "modules:",
        "    model: !ref <model>",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
        "        model: !ref <model>",
        "    paths:",
        f"        model: {WEIGHTS_FILE}",
        "    custom_hooks:",
        "        model: !name:sser_lobes.inference.recognizer.load_safetensors_state",
    ]
    return "\n".join(lines) + "\n"


def write_model_folder(out, description, model):
    """Write the loadable part of a model folder: ``sser_model.json`` (the
    description, checked first), ``model.safetensors`` and the SpeechBrain
    ``hyperparams.yaml``. The model card, metrics and text encoder are the
    export's business; benchmarks and tests that build a model in memory use
    this alone.

    Arguments
    ---------
    out : Path
        An existing folder.
    description : dict
        The model's description (e.g.
        :func:`sser_lobes.nnet.description.describe_run`).
    model : EmotionModel
        The model it describes, with its weights.
    """
    out = Path(out)
    data = json.loads(json.dumps(description))
    try:
        validate_description(data, out / DESCRIPTION_FILE)
    except ModelFormatError as error:
        raise ExportError(str(error)) from None
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    (out / DESCRIPTION_FILE).write_text(
        json.dumps(description, indent=2) + "\n", encoding="utf-8"
    )
    (out / "hyperparams.yaml").write_text(speechbrain_yaml(data), encoding="utf-8")


def published_description(description, text_files=()):
    """The description an export writes: the text encoder's files listed,
    training facts without the training machine's paths."""
    published = json.loads(json.dumps(description))
    training = published.get("training") or {}
    facts = {k: training.get(k) for k in PUBLISHED_FACTS if k in training}
    source = facts.get("ssl_source")
    if source is not None and is_local_path(str(source)):
        facts["ssl_source"] = describe_ssl(
            source, published["architecture"]["encoder"]["config"]
        )
    elif source is not None:
        facts["ssl_source"] = f"`{source}`"
    published["training"] = facts
    if published.get("text_encoder") is not None:
        published["text_encoder"]["files"] = sorted(text_files)
    asr = (description.get("training") or {}).get("asr_source")
    published["asr_source"] = None if is_local_path(asr) else asr
    return published


def _local_paths(description, run, checkpoint):
    """Absolute local paths of the training machine that an export must not
    publish, each with what replaces it (longest first).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> run = Path("/work/results/run")
    >>> description = {"training": {"data_folder": "/data/IEMOCAP", "seed": 1},
    ...     "architecture": {"encoder": {"config": {"model_type": "wavlm"}}}}
    >>> paths = _local_paths(description, run, SimpleNamespace(path=run / "save/C"))
    >>> paths[str(run)], paths["/data/IEMOCAP"]
    ('<run folder>', '<data_folder>')
    """
    found = {}

    def add(path, label):
        for form in {str(path), str(Path(path).expanduser().resolve())}:
            if len(Path(form).parts) > 1 and Path(form).is_absolute():
                found.setdefault(form, label)

    training = description.get("training") or {}
    config = description["architecture"]["encoder"]["config"]
    for key, value in training.items():
        if isinstance(value, str) and is_local_path(value):
            path = Path(value).expanduser()
            if path.is_absolute() or path.exists():
                label = f"<{key}>"
                if key == "ssl_source":
                    label = describe_ssl(value, config)
                add(path, label)
    add(checkpoint.path, "<checkpoint>")
    add(run.absolute(), "<run folder>")
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))


def _under(value, path):
    """Whether the string ``value`` is ``path`` or a path inside it."""
    return value == path or value.startswith((path + "/", path + "\\"))


def _strings(value):
    """Every string of JSON data."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _scrub(value, local_paths, ours=True):
    """JSON data with the local paths replaced.

    In files sser writes (``ours``) every occurrence is replaced and any other
    string that is an absolute path becomes ``<local path>``. In third-party
    files (the text encoder's) only strings that are a local path or lie
    inside one are changed: a tokenizer's vocabulary is left alone.

    Example
    -------
    >>> paths = {"/m/wavlm": "a local wavlm checkpoint"}
    >>> _scrub({"ssl_source": "/m/wavlm", "note": "see /m/wavlm/x"}, paths)
    {'ssl_source': 'a local wavlm checkpoint', 'note': 'see a local wavlm checkpoint/x'}
    >>> _scrub(["/home/me/other", "mean"], {})
    ['<local path>', 'mean']
    >>> _scrub(["/m/wavlm/vocab", "token /m/wavlm"], paths, ours=False)
    ['a local wavlm checkpoint/vocab', 'token /m/wavlm']
    """
    if isinstance(value, dict):
        return {k: _scrub(v, local_paths, ours) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, local_paths, ours) for v in value]
    if not isinstance(value, str):
        return value
    for path, label in local_paths.items():
        if ours:
            value = value.replace(path, label)
        elif _under(value, path):
            return label + value[len(path) :]
    if ours and is_local_path(value) and Path(value).is_absolute():
        return "<local path>"
    return value


def _scrub_json_file(path, local_paths, ours=True):
    """Rewrite an exported JSON file without local paths (only if it has any)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    scrubbed = _scrub(data, local_paths, ours)
    if scrubbed != data:
        path.write_text(json.dumps(scrubbed, indent=2) + "\n", encoding="utf-8")


def _check_no_local_paths(out, local_paths):
    """Refuse an export whose uploadable files still name a local path."""
    for name, size in upload_plan(out):
        file = out / name
        found = None
        if Path(name).parts[0] == "text_encoder":
            if file.suffix == ".json":
                strings = _strings(json.loads(file.read_text(encoding="utf-8")))
                found = next(
                    (p for text in strings for p in local_paths if _under(text, p)),
                    None,
                )
        elif size <= 50_000_000 and file.suffix != ".safetensors":
            data = file.read_bytes()
            found = next((p for p in local_paths if p.encode("utf-8") in data), None)
        if found:
            raise ExportError(
                f"{file} holds the local path {found}; it would be published "
                "by --push (nothing was uploaded)."
            )


def _check_out_dir(out):
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ExportError(
            f"{out} exists and was not written by sser_lobes.export; choose "
            "another output folder (nothing was changed)."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def export_run(
    run_folder,
    out_dir,
    repo_id=None,
    ssl_source=None,
    text_encoder_source=None,
    onnx=False,
    trust_run=False,
    transformers=False,
    keep_adapters=False,
):
    """Write the model folder of a run (see the module docstring).

    ``onnx=True`` also writes ``model.onnx``, checked against the PyTorch
    model with ONNX Runtime
    (:func:`sser_lobes.inference.onnx_export.export_folder_onnx`).
    ``transformers=True`` also writes the stock transformers checkpoint
    (:func:`sser_lobes.inference.transformers_export.export_transformers`),
    or refuses the export with one line before anything is written.

    A LoRA run's adapters are merged into the encoder's weights (peft's
    merge): the model folder is a plain encoder's, whose inference (fp32,
    int8, ONNX) is as fast as any. ``keep_adapters=True`` keeps them apart
    (the description's ``architecture.encoder.adapters``), for users who
    share one base encoder between tasks.

    Returns
    -------
    pathlib.Path
        The output folder.
    """
    run = Path(run_folder)
    out = _check_out_dir(out_dir)
    description, model, checkpoint = load_run(
        run, ssl_source, text_encoder_source, trust_run
    )
    encoder_section = description["architecture"]["encoder"]
    if encoder_section.get("adapters") is not None and not keep_adapters:
        model.encoder.merge_adapters()
        del encoder_section["adapters"]
    if onnx and model.text_fusion is not None:
        raise ExportError(
            f"{run}: a text-fused model is not exported to ONNX (its text encoder "
            "is a second model); export it without --onnx."
        )
    from sser_lobes.inference import transformers_export

    why = transformers and transformers_export.refusal(description)
    if why:
        raise ExportError(f"{run}: not exported for transformers: {why}")
    for stale in ("model.onnx", "label_encoder.txt", "ssl_config.json"):
        (out / stale).unlink(missing_ok=True)  # of an earlier export here
    transformers_export.remove_transformers_files(out)
    text_files = []
    if model.text_fusion is not None:
        source = description["training"].get("text_encoder_source")
        if not (text_encoder_source or trust_run) and is_local_path(source):
            raise ExportError(
                f"{run}: the run names a local text encoder ({source}); the export "
                "reads that folder and publishes its files: pass "
                f"--text-encoder-source {source} to confirm"
            )
        text_files = _export_text_encoder(source, out / "text_encoder")
    local_paths = _local_paths(description, run, checkpoint)
    published = _scrub(published_description(description, text_files), local_paths)
    write_model_folder(out, published, model)
    notes = transformers_export.export_transformers(out) if transformers else None
    write_space_files(out)
    for path in _run_files_to_publish(run):
        shutil.copy(path, out / path.name)
        if path.suffix == ".json":
            # The copy only: the run's own files are never changed.
            _scrub_json_file(out / path.name, local_paths)
    for path in (out / "text_encoder").rglob("*.json"):
        _scrub_json_file(path, local_paths, ours=False)
    (out / "README.md").write_text(
        model_card(published, run, checkpoint, repo_id, transformers_notes=notes),
        encoding="utf-8",
    )
    (out / MARKER).write_text(
        json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "run_folder": str(run.resolve()),
                "checkpoint": str(checkpoint.path),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    if onnx:
        from sser_lobes.inference.onnx_export import export_folder_onnx

        path, report = export_folder_onnx(out)
        details = ", ".join(f"{name} {diff:.1e}" for name, diff in report.items())
        print(
            f"wrote {path}: ONNX Runtime equals PyTorch on padded batches "
            f"(max |diff|: {details})"
        )
    _check_no_local_paths(out, local_paths)
    return out


#: The run's files an export publishes next to the model.
PUBLISHED_RUN_FILES = (
    "*_metrics.json",
    "*confusion_matrix.png",
    "learning_curves.png",
    "*_reliability_diagram.png",
    "*_coverage_accuracy.json",
    "*_coverage_accuracy.png",
)


def _run_files_to_publish(run):
    """The run's metrics and figures: regular files inside the run folder
    only (a symlink to a file elsewhere would publish that file), and JSON
    that parses."""
    found = []
    for pattern in PUBLISHED_RUN_FILES:
        for path in sorted(run.glob(pattern)):
            if path.is_symlink() or not path.is_file():
                print(f"warning: {path}: not a regular file of the run, left out")
                continue
            if path.suffix == ".json":
                try:
                    json.loads(path.read_text(encoding="utf-8"))
                except (UnicodeDecodeError, ValueError):
                    print(f"warning: {path}: not JSON, left out")
                    continue
            found.append(path)
    return found


def _export_text_encoder(source, folder):
    """Save the run's text encoder (tokenizer + safetensors weights) inside
    the export."""
    from transformers import AutoModel, AutoTokenizer

    from sser_lobes.encoders.hf_utils import quiet_transformers

    if not source:
        raise ExportError("the run's text encoder source is not recorded")
    try:
        with quiet_transformers():
            AutoTokenizer.from_pretrained(source).save_pretrained(folder)
            AutoModel.from_pretrained(source, trust_remote_code=False).save_pretrained(
                folder, safe_serialization=True
            )
    except (OSError, ValueError, RuntimeError) as error:
        summary = " ".join(str(error).split())[:300]
        raise ExportError(
            f"{source}: cannot read the text encoder: {summary}"
        ) from None
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]


def upload_plan(out_dir):
    """Files (relative path, bytes) that a push would upload."""
    out = Path(out_dir)
    return [
        (str(p.relative_to(out)), p.stat().st_size)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != MARKER
    ]


def push(out_dir, repo_id, dry_run=False, private=False):
    """Upload the folder to the HuggingFace Hub (or only list it)."""
    plan = upload_plan(out_dir)
    if dry_run:
        return plan
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True, private=private)
    api.upload_folder(
        folder_path=str(out_dir),
        repo_id=repo_id,
        ignore_patterns=[MARKER],
        commit_message="Upload sser emotion recognizer",
    )
    return plan


def main(argv=None):
    """Command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.export",
        description=__doc__.split("\n\n")[0],
        epilog="A run trained by this sser is exported from data only "
        "(save/sser_model.json and the checkpoint's tensors): nothing of the "
        "run folder is executed. --trust-run instead builds the run's "
        "hyperparams.yaml, which RUNS the code that file names.",
    )
    parser.add_argument("run_folder")
    parser.add_argument("out_dir")
    parser.add_argument("--push", metavar="REPO_ID", help="upload to this Hub repo")
    parser.add_argument("--dry-run", action="store_true", help="only list the upload")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--ssl-source", help="where the run's SSL model is now")
    parser.add_argument("--text-encoder-source", help="where its text encoder is now")
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx (needs onnx and onnxruntime), checked "
        "against PyTorch with ONNX Runtime",
    )
    parser.add_argument(
        "--keep-adapters",
        action="store_true",
        help="a LoRA run: keep the adapters apart from the encoder's weights "
        "(default: merged into them, a plain encoder as fast as any)",
    )
    parser.add_argument(
        "--trust-run",
        action="store_true",
        help="for a run without save/sser_model.json (trained by an older "
        "sser): build its hyperparams.yaml with HyperPyYAML. This RUNS the code "
        "that file names: only for your own run folders",
    )
    parser.add_argument(
        "--transformers",
        action="store_true",
        help="also write a stock transformers checkpoint (config.json, "
        "transformers.safetensors, preprocessor_config.json) that "
        'transformers.pipeline("audio-classification", model=OUT_DIR) loads '
        "without custom code; refused with one line for kinds of model that "
        "have no exact transformers form",
    )
    args = parser.parse_args(argv)
    from sser_lobes.errors import OnnxExportError

    try:
        out = export_run(
            args.run_folder,
            args.out_dir,
            repo_id=args.push,
            ssl_source=args.ssl_source,
            text_encoder_source=args.text_encoder_source,
            onnx=args.onnx,
            trust_run=args.trust_run,
            transformers=args.transformers,
            keep_adapters=args.keep_adapters,
        )
    except (ExportError, OnnxExportError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"exported {args.run_folder} -> {out}")
    if args.push:
        plan = push(out, args.push, dry_run=args.dry_run, private=args.private)
        verb = "would upload" if args.dry_run else "uploaded"
        total = sum(size for _, size in plan)
        print(f"{verb} {len(plan)} files ({total / 1e6:.1f} MB) to {args.push}:")
        for name, size in plan:
            print(f"  {name}  {size} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
