"""The model card (``README.md``) of an exported model folder.

Written from the model's description and the run's metrics files only: Hub
metadata, usage, exactly what loading reads and runs, the metrics of every
evaluated split, and how the model was trained. It names no local path of
the training machine (:func:`describe_ssl` names a local SSL checkpoint by
its architecture).
"""

import importlib.metadata
import json
import re
from pathlib import Path

#: Metrics shown in the card's table, in this order, when a split has them.
CARD_METRICS = ("WA", "UA", "macro_F1", "micro_F1", "CCC_mean", "gender_accuracy")


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


def describe_ssl(source, config):
    """The SSL encoder as a model card names it, without local paths: a Hub
    id as is, a local folder by its architecture.

    Arguments
    ---------
    source : str or None
        The run's ``ssl_source``.
    config : dict
        The encoder's transformers config.

    Example
    -------
    >>> config = {"model_type": "wavlm", "hidden_size": 1024,
    ...     "num_hidden_layers": 24, "feat_extract_norm": "layer",
    ...     "do_stable_layer_norm": True}
    >>> describe_ssl("microsoft/wavlm-large", config)
    '`microsoft/wavlm-large`'
    >>> print(describe_ssl("/home/me/wavlm", config).replace(", ", "\\n"))
    a local wavlm checkpoint (hidden_size 1024
    24 layers
    feat_extract_norm layer
    do_stable_layer_norm True)
    """
    if source and not is_local_path(str(source)):
        return f"`{source}`"
    return (
        f"a local {config.get('model_type')} checkpoint (hidden_size "
        f"{config.get('hidden_size')}, {config.get('num_hidden_layers')} layers, "
        f"feat_extract_norm {config.get('feat_extract_norm')}, "
        f"do_stable_layer_norm {config.get('do_stable_layer_norm')})"
    )


def package_version():
    """The installed ``sser`` version (the source tree's if not installed)."""
    try:
        return importlib.metadata.version("sser")
    except importlib.metadata.PackageNotFoundError:
        import sser_lobes

        return sser_lobes.__version__


def metrics_rows(run):
    """``(split, n, {metric: value}, whole file)`` of the run's
    ``*_metrics.json`` files."""
    rows = []
    for path in sorted(Path(run).glob("*_metrics.json")):
        if path.is_symlink() or not path.is_file():
            continue  # a FIFO would block the reader; a link leads elsewhere
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        split = re.sub(
            r"[^A-Za-z0-9_.-]", "", str(data.get("split", path.stem))[:40]
        ) or path.name.replace("_metrics.json", "")
        n = data.get("n") if isinstance(data.get("n"), int) else None
        values = {
            k: data[k]
            for k in CARD_METRICS
            if isinstance(data.get(k), (int, float)) and not isinstance(data[k], bool)
        }
        rows.append((split, n, values, data))
    return rows


def card_text(value, limit=200):
    """A value of a run's files as plain text for the card: one line, no
    Markdown or HTML markup (a received run's files could carry links,
    images or script tags into a published card).

    Example
    -------
    >>> card_text("test <img src=x onerror=alert(1)> [click](http://x)")
    'test img src=x onerror=alert1 link removed'
    """
    text = " ".join(str(value).split())[:limit]
    text = re.sub(r"\S*://\S*", "link removed", text)
    return "".join(c for c in text if c not in "<>[]()`*_|#!\\{}")


def _metrics_table(rows):
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
    return "\n".join(table)


def finetune_text(training):
    """The fine-tuning mode of a run's training facts, with its layers.

    Example
    -------
    >>> finetune_text({"finetune": "top", "trainable_layers": 3})
    'top (the top 3 transformer layers trained)'
    >>> finetune_text({"finetune": "lora", "trainable_layers": None})
    'lora (adapters on every transformer layer)'
    >>> finetune_text({"finetune": "partial"})
    'partial'
    """
    mode = training.get("finetune")
    layers = card_text(training.get("trainable_layers"))  # a run's file: text
    if mode == "top":
        return f"top (the top {layers} transformer layers trained)"
    if mode == "lora":
        if layers in ("None", "0", ""):
            return "lora (adapters on every transformer layer)"
        plural = "" if layers == "1" else "s"
        return f"lora (adapters on the top {layers} transformer layer{plural})"
    return card_text(mode)


def _transformers_usage(source, notes):
    """The card's transformers section (empty without the checkpoint)."""
    if notes is None:
        return ""
    lines = "".join(f"- {note}.\n" for note in notes)
    return f"""
### With transformers alone (no sser, no custom code)

```python
from transformers import pipeline
classifier = pipeline("audio-classification", model="{source}")
classifier("speech.wav", top_k=None)
```

`config.json` names its weights `transformers.safetensors`
(`transformers_weights`); the feature extractor normalises the waveform as
sser does. One file at a time the probabilities equal sser's (checked at
export). Differences of use:
{lines}"""


def model_card(description, run, checkpoint, repo_id=None, transformers_notes=None):
    """README.md with Hub metadata, usage, what loading runs, metrics and
    training details.

    Arguments
    ---------
    description : dict
        The exported model's description (its ``training`` facts already
        without local paths).
    run : Path
        The run folder (its metrics files and figures).
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The exported checkpoint (its epoch).
    repo_id : str or None
        The Hub repository the folder is pushed to.
    transformers_notes : list of str or None
        The folder also holds a stock transformers checkpoint
        (:mod:`sser_lobes.inference.transformers_export`): the card's
        library is then ``transformers`` (the Hub's widget runs its
        pipeline), with usage and these differences of use.
    """
    rows = metrics_rows(run)
    first = rows[0][3] if rows else {}
    training = description.get("training") or {}
    task = description["task"]
    name = training.get("experiment_name") or description.get("experiment")
    source = repo_id or "PATH_OR_REPO_ID"
    usage = (
        "probabilities, score, index, label = recognizer.classify_file('speech.wav')"
        if task == "categorical"
        else "results = recognizer.predict_files(['speech.wav'])"
    )
    protocol = card_text(first.get("protocol") or "protocol not recorded")
    pictures = "\n".join(
        f"![{p.stem}]({p.name})"
        for p in sorted(Path(run).glob("*confusion_matrix.png"))
    )
    encoder = training.get("ssl_source") or "an SSL encoder"
    pooling = description["architecture"]["pooling"]["type"]
    library = "speechbrain" if transformers_notes is None else "transformers"
    return f"""---
library_name: {library}
license: apache-2.0
tags:
- speech-emotion-recognition
- audio-classification
- sser
- {training.get("ssl_name") or "ssl"}
pipeline_tag: audio-classification
sdk: gradio
app_file: app.py
---

# {name}: speech emotion recognition

Trained with the recipe `{name}` of the Python package `sser` (version
{package_version()}; SpeechBrain recipes for speech emotion recognition),
on {protocol}; fold {card_text(first.get("fold"))}, seed {card_text(first.get("seed"))}.
Encoder: {encoder}; fine-tuning: {finetune_text(training)}; pooling:
`{pooling}`; labels: {list(description["labels"])}.
Checkpoint selected on `{training.get("selection_metric")}`
(epoch {checkpoint.meta.get("epoch")}).

## Usage

```python
# pip install sser
from sser_lobes import EmotionRecognizer
recognizer = EmotionRecognizer.from_hparams("{source}")
{usage}
```

or on the command line:
`sser-predict --model {source} audio_folder/ --output predictions.jsonl`.
A web page to drop or record audio (this folder runs as a Gradio Space):
`pip install -r requirements.txt && python app.py`, or `sser-demo {source}`;
an HTTP service: `sser-serve {source}`.

Any sample rate, mono or stereo, wav / flac / ogg; audio longer than
{description["window_seconds"]:g} s is classified in overlapping windows.
{_transformers_usage(source, transformers_notes)}
## What loading reads and runs

`EmotionRecognizer.from_hparams` and `sser-predict` run no code of this
repository:
- they read `sser_model.json` with a JSON parser (refused above 1 MB; no
  references, anchors or tags exist in JSON) and check every value against
  sser's schema (types, ranges, the closed sets of pooling, head and
  conditioning kinds, the label count against the head);
- the modules are built by the installed `sser` package's code; nothing in
  the description is imported, called or used as a path outside the folder;
- the weights are read only from `model.safetensors` (tensors, no pickle),
  after their names and shapes are checked against the description;
- a text-fused model's `text_encoder/` is read from this folder
  (safetensors weights, no remote code).

`hyperparams.yaml` is for plain SpeechBrain (`Pretrained.from_hparams`),
which builds whatever the YAML names: sser never reads it unless asked with
`trust_hparams=True` (`sser-predict --trust-hparams`), which runs that code.

## Metrics (whole evaluation sets)

{_metrics_table(rows)}

{card_text(first.get("split_description") or "", 1000)}

{pictures}

## Training

Recipe `{name}` of sser (SpeechBrain). Corpus and protocol: {protocol}.
See the sser README for the protocol and the published anchors.
"""
