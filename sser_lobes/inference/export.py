"""Export a trained recipe run as a Hub-ready model folder, and publish it.

    python -m sser_lobes.export RUN_FOLDER OUT_DIR [--onnx] [--push REPO_ID] [--dry-run]

``RUN_FOLDER`` is the output folder of a recipe run (it holds
``hyperparams.yaml``, ``save/`` with the checkpoints and the metrics files).
``OUT_DIR`` receives:

* ``hyperparams.yaml``: the inference hyperparameters for
  :class:`sser_lobes.inference.recognizer.EmotionRecognizer` (architecture, labels, the
  SSL encoder's config inline, the chunking window);
* ``model.safetensors``: the whole EmotionModel of the best checkpoint (by the
  run's selection metric), SSL encoder weights included: no second download;
* ``label_encoder.txt``, ``ssl_config.json``;
* ``text_encoder/`` for text-fused models (tokenizer and weights);
* ``model.onnx`` with ``--onnx``: the same model as an ONNX graph (dynamic
  batch and time axes), checked against PyTorch with ONNX Runtime on padded
  batches as part of the export (:mod:`sser_lobes.inference.onnx_export`);
* ``README.md``: a model card with usage, what loading runs, training
  recipe, protocol, metrics table and confusion matrix; the run's
  ``*_metrics.json`` and PNGs.

Safety. The exported ``hyperparams.yaml`` names only the constructors in
:data:`sser_lobes.inference.safe_hparams.ALLOWED_TAGS`, the ones
:class:`~sser_lobes.inference.recognizer.EmotionRecognizer` accepts; it keeps a
SpeechBrain ``pretrainer`` section, so plain ``Pretrained.from_hparams`` can
load it too (without any check). The run's checkpoint is read with
``torch.load(weights_only=True)``: a pickle naming other Python objects is
refused with an :class:`ExportError` naming the file. (The run folder's own
``hyperparams.yaml`` is built as the recipe built it: export only your own
runs.) Published files carry no local path of the training machine: the
card names a Hub SSL source as is and a local one by its architecture, the
corpus by its protocol; the copied metrics files are scrubbed (the run's own
are not changed), and the export fails if any uploadable file still holds
one. ``sser_export.json`` (the run folder and checkpoint paths) marks the
folder as ours and is never uploaded.

``--push REPO_ID`` uploads the folder with ``huggingface_hub`` (token from
``HF_TOKEN`` or the usual login); ``--dry-run`` lists what would be uploaded
without touching the network.
"""

import argparse
import importlib.metadata
import json
import math
import pickle
import re
import shutil
import sys
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from safetensors.torch import save_file
from speechbrain.utils.checkpoints import Checkpointer

from sser_lobes.errors import ExportError
from sser_lobes.inference.safe_hparams import ALLOWED_TAGS
from sser_lobes.nnet.gender import GenderConditioning
from sser_lobes.nnet.heads import LinearHead, MLPHead
from sser_lobes.nnet.pooling import POOLINGS
from sser_lobes.nnet.text_fusion import TextFusion

MARKER = "sser_export.json"
FORMAT_VERSION = 1


def _j(value):
    """JSON is valid YAML flow syntax: one-line, unambiguous values."""
    return json.dumps(value)


def load_run(run_folder, ssl_source=None, text_encoder_source=None):
    """Rebuild the run's model and load its best checkpoint.

    Arguments
    ---------
    run_folder : str or Path
        A recipe output folder.
    ssl_source, text_encoder_source : str or None
        Replace the sources recorded in the run (if they moved). The SSL
        encoder's weights are never read from the source: they come from the
        checkpoint.

    Returns
    -------
    hparams : dict
        The run's hyperparameters, with ``model`` holding the best weights.
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The selected checkpoint.
    """
    run = Path(run_folder)
    hparams_file = run / "hyperparams.yaml"
    if not hparams_file.is_file():
        raise ExportError(f"{run}: no hyperparams.yaml; is it a recipe run folder?")
    overrides = {"ssl_encoder": {"load_weights": False}}
    saved_config = _run_save_folder(run) / "ssl_config.json"
    if saved_config.is_file() and not ssl_source:
        # The encoder's config as trained (kept by the recipe): the original
        # source (hub cache or local folder) is not needed.
        overrides["ssl_encoder"]["config"] = str(saved_config)
    if ssl_source:
        overrides["ssl_source"] = ssl_source
    if text_encoder_source:
        overrides["text_encoder_source"] = text_encoder_source
    with open(hparams_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides, overrides_must_match=False)
    metric = hparams.get("selection_metric")
    save_folder = _run_save_folder(run)
    checkpoint = Checkpointer(save_folder).find_checkpoint(max_key=metric)
    if checkpoint is None:
        raise ExportError(
            f"{run}: no checkpoint in {save_folder}; the run never finished an epoch"
        )
    hparams["model"].load_state_dict(_load_tensors(checkpoint.paramfiles["model"]))
    return hparams, checkpoint


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
    """The run's checkpoint folder as written in its hyperparams.yaml."""
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


def _pooling_name(pooling):
    for name, cls in POOLINGS.items():
        if type(pooling) is cls:
            return name
    raise ExportError(f"cannot export pooling {type(pooling).__name__}.")


def _head_yaml(head):
    if isinstance(head, LinearHead):
        return (
            "head: !new:sser_lobes.nnet.heads.LinearHead\n"
            f"    input_size: {head.input_size}\n"
            f"    n_outputs: {head.n_outputs}\n"
            f"    bias: {_j(head.use_bias)}\n"
            f"    output_activation: {_j(head.output_activation)}\n"
        )
    if isinstance(head, MLPHead):
        return (
            "head: !new:sser_lobes.nnet.heads.MLPHead\n"
            f"    input_size: {head.input_size}\n"
            f"    n_outputs: {head.n_outputs}\n"
            f"    hidden_size: {head.hidden_size}\n"
            f"    dropout: {head.dropout}\n"
            f"    input_dropout: {head.input_dropout}\n"
            f"    output_activation: {_j(head.output_activation)}\n"
        )
    raise ExportError(f"cannot export head {type(head).__name__}.")


def _window_seconds(hparams, run):
    """Longest audio the model sees whole: the training crop or the longest
    utterance of the run's manifests, so that chunking never changes a
    prediction the recipe evaluated whole."""
    longest = float(hparams.get("train_crop_seconds") or 0.0)
    folder = run / "manifests"
    if not folder.is_dir():
        folder = Path(hparams.get("manifest_folder", folder))
    for manifest in folder.glob("*.json"):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for entry in data.values():
                if isinstance(entry, dict) and "duration" in entry:
                    longest = max(longest, float(entry["duration"]))
    return float(max(10, math.ceil(longest)))


def inference_yaml(hparams, run, text_files=()):
    """The ``hyperparams.yaml`` text of the exported model."""
    model = hparams["model"]
    encoder = model.encoder
    task = hparams.get("task", "categorical")
    labels = list(
        hparams["emotions"] if task == "categorical" else hparams["attributes"]
    )
    window = _window_seconds(hparams, run)
    config = json.loads(encoder.config.to_json_string())
    lines = [
        "# sser emotion recognizer: inference hyperparameters, written by",
        "# sser_lobes.inference.export. Load with:",
        "#   EmotionRecognizer.from_hparams(source=THIS_FOLDER_OR_REPO)",
        f"task: {task}",
        f"labels: {_j(labels)}",
        f"sample_rate: {int(hparams['sample_rate'])}",
        f"window_seconds: {window}  # longer audio is classified in chunks",
        f"eval_crop_seconds: {_j(hparams.get('eval_crop_seconds'))}  "
        "# the recipe evaluated the first N s only: inference does the same",
        f"chunk_hop_seconds: {window / 2}",
        f"batch_size: {int(hparams.get('eval_batch_size', 8))}",
        "attribute_range: [1.0, 7.0]  # attribute models: corpus scale",
        "source: null  # set by EmotionRecognizer.from_hparams",
        f"experiment: {_j(hparams.get('experiment_name'))}",
        f"ssl_config: {_j(config)}",
        "ssl_encoder: !new:sser_lobes.SSLEncoder",
        "    config: !ref <ssl_config>",
        "    load_weights: False",
        "    finetune: frozen",
        f"    output_layer: {_j(encoder.output_layer)}",
        f"    output_norm: {_j(encoder.output_norm)}",
        f"    normalize_waveform: {_j(encoder.normalize_waveform)}",
        f"    normalize_layers: {_j(encoder.normalize_layers)}",
        *(
            [f"    weighted_sum_layers: {_j(encoder.selected_layers)}"]
            if getattr(encoder, "weighted_sum_layers", None) is not None
            else []
        ),
        "pooling: !apply:sser_lobes.make_pooling",
        f"    - {_pooling_name(model.pooling)}",
        f"    - {model.pooling.input_size}",
    ]
    yaml = "\n".join(lines) + "\n"
    gender_ref = "null"
    if isinstance(model.gender, GenderConditioning):
        g = model.gender
        yaml += (
            "gender_conditioning: !new:sser_lobes.nnet.gender.GenderConditioning\n"
            f"    input_size: {g.input_size}\n"
            f"    mode: {g.mode}\n"
            f"    embedding_size: {g.embedding_size}\n"
            f"    hidden_size: {g.hidden_size}\n"
        )
        gender_ref = "!ref <gender_conditioning>"
    text_ref = "null"
    if isinstance(model.text_fusion, TextFusion):
        t = model.text_fusion
        yaml += (
            "text_fusion: !new:sser_lobes.nnet.text_fusion.TextFusion\n"
            f"    audio_size: {t.audio_size}\n"
            f"    text_size: {t.text_size}\n"
            f"    mode: {t.mode}\n"
            f"    hidden_size: {t.hidden_size}\n"
            f"    frame_size: {_j(t.frame_size)}\n"
            f"    num_heads: {t.num_heads}\n"
            f"    dropout: {t.dropout}\n"
            f"text_encoder_files: {_j(sorted(text_files))}\n"
            f"text_max_length: {int(hparams['text_max_length'])}\n"
            f"text_normalize: {_j(bool(hparams['text_normalize']))}\n"
            f"asr_source: {_j(_hub_id_or_none(hparams.get('asr_source')))}\n"
        )
        text_ref = "!ref <text_fusion>"
    yaml += _head_yaml(model.head)
    yaml += (
        "model: !new:sser_lobes.EmotionModel\n"
        "    encoder: !ref <ssl_encoder>\n"
        "    pooling: !ref <pooling>\n"
        "    head: !ref <head>\n"
        f"    gender: {gender_ref}\n"
        f"    text_fusion: {text_ref}\n"
        "modules:\n"
        "    model: !ref <model>\n"
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        "    loadables:\n"
        "        model: !ref <model>\n"
        "    paths:\n"
        "        model: model.safetensors\n"
        "    custom_hooks:\n"
        "        model: !name:sser_lobes.inference.recognizer.load_safetensors_state\n"
    )
    return yaml


def _hub_id_or_none(source):
    """A local ASR folder does not travel with the export: it is dropped."""
    return None if is_local_path(source) else source


def _metrics_rows(run):
    rows = []
    for path in sorted(Path(run).glob("*_metrics.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        split = data.get("split", path.name.replace("_metrics.json", ""))
        keys = [
            k
            for k in ("WA", "UA", "macro_F1", "micro_F1", "CCC_mean", "gender_accuracy")
            if isinstance(data.get(k), (int, float))
        ]
        rows.append((split, data.get("n"), {k: data[k] for k in keys}, data))
    return rows


def _package_version():
    """The installed ``sser`` version (the source tree's if not installed)."""
    try:
        return importlib.metadata.version("sser")
    except importlib.metadata.PackageNotFoundError:
        import sser_lobes

        return sser_lobes.__version__


def is_local_path(value):
    """Whether a source string names a local file or folder (not a Hub id).

    Example
    -------
    >>> is_local_path("microsoft/wavlm-large"), is_local_path("/data/models/wavlm")
    (False, True)
    """
    if not isinstance(value, str) or not value:
        return False
    path = Path(value).expanduser()
    return (
        value.startswith((".", "~", "\\"))
        or path.is_absolute()
        or re.match(r"^[A-Za-z]:[\\/]", value) is not None
        or path.exists()
    )


def describe_ssl(hparams, config):
    """The SSL encoder as a model card names it, without local paths: a Hub
    id as is, a local folder by its architecture.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(model_type="wavlm", hidden_size=1024,
    ...     num_hidden_layers=24, feat_extract_norm="layer", do_stable_layer_norm=True)
    >>> describe_ssl({"ssl_source": "microsoft/wavlm-large"}, config)
    '`microsoft/wavlm-large`'
    >>> text = describe_ssl({"ssl_source": "/home/me/wavlm"}, config)
    >>> print(text.replace(", ", "\\n"))
    a local wavlm checkpoint (hidden_size 1024
    24 layers
    feat_extract_norm layer
    do_stable_layer_norm True)
    """
    source = hparams.get("ssl_source")
    if source and not is_local_path(str(source)):
        return f"`{source}`"
    return (
        f"a local {config.model_type} checkpoint (hidden_size "
        f"{config.hidden_size}, {config.num_hidden_layers} layers, "
        f"feat_extract_norm {getattr(config, 'feat_extract_norm', None)}, "
        f"do_stable_layer_norm {getattr(config, 'do_stable_layer_norm', None)})"
    )


def model_card(hparams, run, checkpoint, repo_id=None):
    """README.md with Hub metadata, usage, safety, training details and
    metrics; it holds no local path of the training machine."""
    rows = _metrics_rows(run)
    first = rows[0][3] if rows else {}
    task = hparams.get("task", "categorical")
    source = repo_id or "PATH_OR_REPO_ID"
    columns = sorted({k for _, _, values, _ in rows for k in values})
    table = ["| split | n | " + " | ".join(columns) + " |"]
    table.append("|---" * (len(columns) + 2) + "|")
    for split, n, values, _ in rows:
        cells = [
            f"{values[c]:.4f}" if c.startswith("CCC") else f"{100 * values[c]:.2f}"
            for c in columns
            if c in values
        ]
        table.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    pictures = "\n".join(
        f"![{p.stem}]({p.name})"
        for p in sorted(Path(run).glob("*confusion_matrix.png"))
    )
    name = hparams.get("experiment_name")
    key = "emotions" if task == "categorical" else "attributes"
    labels = list(hparams.get(key) or [])
    usage = (
        "probabilities, score, index, label = recognizer.classify_file('speech.wav')"
        if task == "categorical"
        else "results = recognizer.predict_files(['speech.wav'])"
    )
    protocol = first.get("protocol") or "protocol not recorded"
    encoder = describe_ssl(hparams, hparams["model"].encoder.config)
    allowed = ", ".join(f"`{tag}`" for tag in ALLOWED_TAGS)
    return f"""---
library_name: speechbrain
license: apache-2.0
tags:
- speech-emotion-recognition
- audio-classification
- sser
- {hparams.get("ssl_name", "ssl")}
pipeline_tag: audio-classification
---

# {name}: speech emotion recognition

Trained with the recipe `{name}` of the Python package `sser` (version
{_package_version()}; SpeechBrain recipes for speech emotion recognition),
on {protocol}; fold {first.get("fold")}, seed {first.get("seed")}.
Encoder: {encoder}; fine-tuning: {hparams.get("finetune")}; pooling:
`{hparams.get("pooling_type")}`; labels: {labels}.
Checkpoint selected on `{hparams.get("selection_metric")}`
(epoch {checkpoint.meta.get("epoch")}).

## Usage

```python
# pip install sser
from sser_lobes.inference.recognizer import EmotionRecognizer
recognizer = EmotionRecognizer.from_hparams(
    "{source}", savedir="pretrained/{name}"
)
{usage}
```

or on the command line:
`sser-predict --model {source} audio_folder/ --output predictions.jsonl`.

Any sample rate, mono or stereo, wav / flac / ogg; audio longer than the
window is classified in overlapping chunks.

## What loading runs

`EmotionRecognizer.from_hparams` and `sser-predict` run no code chosen by
this repository:
- the interface is code of the installed `sser` package; no `custom.py` is
  fetched or imported;
- `hyperparams.yaml` is parsed without building anything, and refused unless
  every constructor it names is one that `sser_lobes.inference.export` writes:
  {allowed} (plus the references `!ref`, `!copy` and `!tuple`);
- the weights are read only from `model.safetensors` (tensors, no pickle),
  whatever the YAML's `pretrainer` section says.

Not covered: `trust_hparams=True` (`sser-predict --trust-hparams`) skips the
check and runs whatever the YAML names: use it only for files you wrote
yourself. Plain SpeechBrain (`Pretrained.from_hparams`) can load this folder
too, but it builds whatever the YAML names, without a check.

## Metrics (whole evaluation sets)

{chr(10).join(table)}

{first.get("split_description") or ""}

{pictures}

## Training

Recipe `{name}` of sser (SpeechBrain). Corpus and protocol: {protocol}.
See the sser README for the protocol and the published anchors.
"""


def _local_paths(hparams, run, checkpoint):
    """Absolute local paths of the training machine that an export must not
    publish, each with what replaces it (longest first).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> run = Path("/work/results/run")
    >>> hparams = {"data_folder": "/data/IEMOCAP_full_release", "lr": 0.1}
    >>> paths = _local_paths(hparams, run, SimpleNamespace(path=run / "save/CKPT"))
    >>> paths[str(run)], paths["/data/IEMOCAP_full_release"]
    ('<run folder>', '<data_folder>')
    """
    found = {}

    def add(path, label):
        for form in {str(path), str(Path(path).expanduser().resolve())}:
            if len(Path(form).parts) > 1 and Path(form).is_absolute():
                found.setdefault(form, label)

    for key, value in hparams.items():
        if isinstance(value, str) and is_local_path(value):
            path = Path(value).expanduser()
            if path.is_absolute() or path.exists():
                label = f"<{key}>"
                if key == "ssl_source":
                    label = describe_ssl(hparams, hparams["model"].encoder.config)
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
):
    """Write the Hub-ready folder of a run (see the module docstring).

    ``onnx=True`` also writes ``model.onnx``, checked against the PyTorch
    model with ONNX Runtime
    (:func:`sser_lobes.inference.onnx_export.export_folder_onnx`).

    Returns
    -------
    pathlib.Path
        The output folder.
    """
    run = Path(run_folder)
    out = _check_out_dir(out_dir)
    hparams, checkpoint = load_run(run, ssl_source, text_encoder_source)
    model = hparams["model"]
    if onnx and model.text_fusion is not None:
        raise ExportError(
            f"{run}: a text-fused model is not exported to ONNX (its text encoder "
            "is a second model); export it without --onnx."
        )

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    task = hparams.get("task", "categorical")
    labels = hparams["emotions"] if task == "categorical" else hparams["attributes"]
    (out / "label_encoder.txt").write_text(
        "".join(f"'{label}' => {i}\n" for i, label in enumerate(labels))
        + "================\n'starting_index' => 0\n",
        encoding="utf-8",
    )
    (out / "ssl_config.json").write_text(
        model.encoder.config.to_json_string(), encoding="utf-8"
    )

    text_files = []
    if model.text_fusion is not None:
        text_files = _export_text_encoder(hparams, out / "text_encoder")
    (out / "hyperparams.yaml").write_text(
        inference_yaml(hparams, run, text_files), encoding="utf-8"
    )
    local_paths = _local_paths(hparams, run, checkpoint)
    for pattern in ("*_metrics.json", "*confusion_matrix.png", "learning_curves.png"):
        for path in run.glob(pattern):
            shutil.copy(path, out / path.name)
            if path.suffix == ".json":
                # The copy only: the run's own files are never changed.
                _scrub_json_file(out / path.name, local_paths)
    _scrub_json_file(out / "ssl_config.json", local_paths)
    for path in (out / "text_encoder").rglob("*.json"):
        _scrub_json_file(path, local_paths, ours=False)
    (out / "README.md").write_text(
        model_card(hparams, run, checkpoint, repo_id), encoding="utf-8"
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
    stale_onnx = out / "model.onnx"
    stale_onnx.unlink(missing_ok=True)  # of an earlier export to this folder
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


def _export_text_encoder(hparams, folder):
    """Save the run's text encoder (tokenizer + weights) inside the export."""
    from transformers import AutoModel, AutoTokenizer

    from sser_lobes.encoders.hf_utils import quiet_transformers

    source = hparams["text_encoder_source"]
    with quiet_transformers():
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
        AutoModel.from_pretrained(source).save_pretrained(folder)
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        )
    except (ExportError, OnnxExportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
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
