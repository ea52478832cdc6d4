"""The model card (``README.md``) of an exported model folder.

Written from the model's description and the run's metrics files only: Hub
metadata, usage, exactly what loading reads and runs, the metrics of every
evaluated split, how far its probabilities can be trusted (calibration, the
abstention thresholds for 90 % and 95 % validation accuracy), who it fails
(WA / UA / macro-F1 per gender and per speaker, worst group and largest gap
with the groups' sizes), and how the model was trained. It names no local path of
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


def _pct(value):
    return "-" if not isinstance(value, (int, float)) else f"{100 * value:.2f}"


def _number(value, digits=4):
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _split_roles(rows):
    """``(valid row, test rows)``: the split the calibration was fitted on and
    the other labelled splits with reliability reports."""
    reported = [r for r in rows if isinstance(r[3].get("calibration"), dict)]
    valid = next(
        (r for r in reported if r[3]["calibration"].get("fitted_on") == r[0]), None
    )
    return valid, [r for r in reported if r is not valid]


def trust_section(description, rows):
    """The card's "How far to trust it" section (calibration and abstention),
    or "" when the run has no reliability report.

    Example
    -------
    >>> rows = [("valid", 4, {}, {"calibration": {"fitted_on": "valid",
    ...     "method": "temperature", "raw": {"ECE": 0.2, "NLL": 1.0},
    ...     "calibrated": {"ECE": 0.05, "NLL": 0.8}},
    ...     "selective": {"thresholds": {"0.90": {"threshold": 0.7,
    ...     "coverage": 0.5, "accuracy": 0.92}, "0.95": None}}})]
    >>> text = trust_section({"calibration": {"method": "temperature",
    ...     "temperature": [1.5]}}, rows)
    >>> "temperature 1.500" in text, "min_confidence=0.7000" in text
    (True, True)
    """
    valid, tests = _split_roles(rows)
    if valid is None:
        return ""
    calibration = description.get("calibration")
    if calibration:
        temperatures = ", ".join(f"{t:.3f}" for t in calibration["temperature"][:16])
        fitted = (
            f"Its probabilities are calibrated ({card_text(calibration['method'])} "
            f"scaling, temperature {temperatures}, fitted on the "
            f"{card_text(valid[0])} split by minimising its NLL); "
            "`calibrated=False` (`sser-predict --raw-probabilities`) gives the raw "
            "softmax."
        )
    else:
        fitted = "The model has no calibration: its probabilities are the raw softmax."
    lines = [
        "## How far to trust a probability",
        "",
        fitted,
        "",
        "| split | n | ECE raw | ECE calibrated | adaptive ECE raw / calibrated "
        "| NLL raw / calibrated | Brier raw / calibrated |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for split, n, _, data in [valid, *tests]:
        raw, cal = data["calibration"]["raw"], data["calibration"]["calibrated"]
        lines.append(
            f"| {card_text(split)} | {n} | {_pct(raw.get('ECE'))} | "
            f"{_pct(cal.get('ECE'))} | {_pct(raw.get('adaptive_ECE'))} / "
            f"{_pct(cal.get('adaptive_ECE'))} | {_number(raw.get('NLL'))} / "
            f"{_number(cal.get('NLL'))} | {_number(raw.get('Brier'))} / "
            f"{_number(cal.get('Brier'))} |"
        )
    lines += [
        "",
        "ECE: expected calibration error, 15 bins, in %. The reliability diagrams "
        "are `<split>_reliability_diagram.png`.",
        "",
        "### Abstaining",
        "",
        "`classify_file(path, min_confidence=p)` (`sser-predict --min-confidence "
        "p`) labels `uncertain` the utterances whose top probability is below `p`, "
        "and still returns the probabilities. Thresholds found on the "
        f"{card_text(valid[0])} split:",
        "",
        "| target accuracy | threshold p | coverage on "
        f"{card_text(valid[0])} | "
        + " | ".join(f"coverage / accuracy on {card_text(s)}" for s, *_ in tests)
        + " |",
        "|---|---:|---:|" + "---:|" * len(tests),
    ]
    thresholds = (valid[3].get("selective") or {}).get("thresholds") or {}
    for key, found in sorted(thresholds.items()):
        if not isinstance(found, dict):
            lines.append(
                f"| {card_text(key)} | none: no threshold reaches it | - |"
                + " - |" * len(tests)
            )
            continue
        cells = []
        for _, _, _, data in tests:
            given = (
                (data.get("selective") or {}).get("at_valid_thresholds") or {}
            ).get(key)
            cells.append(
                "-"
                if not isinstance(given, dict)
                else f"{_pct(given.get('coverage'))} / {_pct(given.get('accuracy'))}"
            )
        lines.append(
            f"| {card_text(key)} | min_confidence={_number(found.get('threshold'))} | "
            f"{_pct(found.get('coverage'))} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def groups_section(rows):
    """The card's "Who it fails" section: per-gender and per-speaker scores
    of each reported test split, or "".

    Example
    -------
    >>> groups = {"gender": {"groups": {"F": {"n": 3, "WA": 0.5, "UA": 0.5,
    ...     "macro_F1": 0.4}}, "mean": {"UA": 0.5}, "std": {"UA": 0.0},
    ...     "worst": {"UA": {"group": "F", "value": 0.5, "n": 3}},
    ...     "largest_gap": {"UA": {"value": 0.0, "best": {"group": "F", "n": 3},
    ...     "worst": {"group": "F", "n": 3}}}}}
    >>> rows = [("valid", 3, {}, {"calibration": {"fitted_on": "valid"}}),
    ...         ("test", 3, {}, {"calibration": {"fitted_on": "valid"},
    ...          "groups": groups})]
    >>> "| F | 3 | 50.00 | 50.00 | 40.00 |" in groups_section(rows)
    True
    """
    _, tests = _split_roles(rows)
    lines = []
    for split, _, _, data in tests:
        groups = data.get("groups") or {}
        for name in ("gender", "speaker"):
            report = groups.get(name)
            if not isinstance(report, dict):
                continue
            worst = report["worst"]["UA"]
            gap = report["largest_gap"]["UA"]
            lines += [
                f"### {card_text(name).capitalize()} ({card_text(split)} split)",
                "",
                f"UA over {card_text(name)}s: mean {_pct(report['mean']['UA'])} %, "
                f"standard deviation {_pct(report['std']['UA'])} points, worst "
                f"{card_text(worst['group'])} {_pct(worst['value'])} % (n "
                f"{worst['n']}), largest gap {_pct(gap['value'])} points "
                f"({card_text(gap['best']['group'])}, n {gap['best']['n']}, vs "
                f"{card_text(gap['worst']['group'])}, n {gap['worst']['n']}).",
                "",
                f"| {card_text(name)} | n | WA | UA | macro-F1 |",
                "|---|---:|---:|---:|---:|",
            ]
            for group, scores in list(report["groups"].items())[:64]:
                lines.append(
                    f"| {card_text(group, 64)} | {scores.get('n')} | "
                    f"{_pct(scores.get('WA'))} | {_pct(scores.get('UA'))} | "
                    f"{_pct(scores.get('macro_F1'))} |"
                )
            lines.append("")
    if not lines:
        return ""
    return (
        "## Who it fails\n\nScores per group of the test utterances (in %); "
        "small groups give noisy scores: read the sizes.\n\n" + "\n".join(lines)
    )


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

{trust_section(description, rows)}
{groups_section(rows)}

## Training

Recipe `{name}` of sser (SpeechBrain). Corpus and protocol: {protocol}.
See the sser README for the protocol and the published anchors.
"""
