"""Export a trained recipe run as a Hub-ready model folder, and publish it.

    python -m sser_lobes.export RUN_FOLDER OUT_DIR [--push REPO_ID] [--dry-run]

``RUN_FOLDER`` is the output folder of a recipe run (it holds
``hyperparams.yaml``, ``save/`` with the checkpoints and the metrics files).
``OUT_DIR`` receives:

* ``hyperparams.yaml``: the inference hyperparameters for
  :class:`sser_lobes.inference.EmotionRecognizer` (architecture, labels, the
  SSL encoder's config inline, the chunking window);
* ``model.safetensors``: the whole EmotionModel of the best checkpoint (by the
  run's selection metric), SSL encoder weights included: no second download;
* ``label_encoder.txt``, ``ssl_config.json``;
* ``text_encoder/`` for text-fused models (tokenizer and weights);
* ``README.md``: a model card with usage, training recipe, protocol, metrics
  table and confusion matrix; the run's ``*_metrics.json`` and PNGs.

``--push REPO_ID`` uploads the folder with ``huggingface_hub`` (token from
``HF_TOKEN`` or the usual login); ``--dry-run`` lists what would be uploaded
without touching the network.
"""

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from safetensors.torch import save_file
from speechbrain.utils.checkpoints import Checkpointer

from sser_lobes.gender import GenderConditioning
from sser_lobes.heads import LinearHead, MLPHead
from sser_lobes.pooling import POOLINGS
from sser_lobes.text_fusion import TextFusion

MARKER = "sser_export.json"
FORMAT_VERSION = 1


class ExportError(ValueError):
    """A run folder that cannot be exported, or an output folder not ours."""


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
        raise ExportError(f"{run}: no checkpoint in {save_folder}.")
    state = torch.load(checkpoint.paramfiles["model"], map_location="cpu")
    hparams["model"].load_state_dict(state)
    return hparams, checkpoint


def _run_save_folder(run):
    """The run's checkpoint folder as written in its hyperparams.yaml."""
    import ruamel.yaml

    # Round-trip loading keeps the !new: tags as data: nothing is built.
    with open(run / "hyperparams.yaml", encoding="utf-8") as handle:
        data = ruamel.yaml.YAML().load(handle)
    # Recipe paths may be relative to where training ran: prefer the run's own.
    for candidate in (run / "save", Path(data.get("save_folder") or run / "save")):
        if candidate.is_dir():
            return candidate
    raise ExportError(f"{run}: no checkpoint folder (save/).")


def _pooling_name(pooling):
    for name, cls in POOLINGS.items():
        if type(pooling) is cls:
            return name
    raise ExportError(f"cannot export pooling {type(pooling).__name__}.")


def _head_yaml(head):
    if isinstance(head, LinearHead):
        return (
            "head: !new:sser_lobes.heads.LinearHead\n"
            f"    input_size: {head.input_size}\n"
            f"    n_outputs: {head.n_outputs}\n"
            f"    bias: {_j(head.use_bias)}\n"
            f"    output_activation: {_j(head.output_activation)}\n"
        )
    if isinstance(head, MLPHead):
        return (
            "head: !new:sser_lobes.heads.MLPHead\n"
            f"    input_size: {head.input_size}\n"
            f"    n_outputs: {head.n_outputs}\n"
            f"    hidden_size: {head.hidden_size}\n"
            f"    dropout: {head.dropout}\n"
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
        "# sser_lobes.export. Load with:",
        "#   EmotionRecognizer.from_hparams(source=THIS_FOLDER_OR_REPO)",
        f"task: {task}",
        f"labels: {_j(labels)}",
        f"sample_rate: {int(hparams['sample_rate'])}",
        f"window_seconds: {window}  # longer audio is classified in chunks",
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
        "pooling: !apply:sser_lobes.make_pooling",
        f"    - {_pooling_name(model.pooling)}",
        f"    - {model.pooling.input_size}",
    ]
    yaml = "\n".join(lines) + "\n"
    gender_ref = "null"
    if isinstance(model.gender, GenderConditioning):
        g = model.gender
        yaml += (
            "gender_conditioning: !new:sser_lobes.gender.GenderConditioning\n"
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
            "text_fusion: !new:sser_lobes.text_fusion.TextFusion\n"
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
            f"asr_source: {_j(hparams.get('asr_source'))}\n"
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
        "        model: !name:sser_lobes.inference.load_safetensors_state\n"
    )
    return yaml


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


def model_card(hparams, run, checkpoint, repo_id=None):
    """README.md with Hub metadata, usage, training details and metrics."""
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

# {hparams.get("experiment_name")}: speech emotion recognition

Trained with the [sser](https://github.com/) recipe `{hparams.get("experiment_name")}`
({first.get("protocol") or "protocol not recorded"}; fold {first.get("fold")},
seed {first.get("seed")}). Encoder `{hparams.get("ssl_source")}`
(fine-tuning: {hparams.get("finetune")}), pooling `{hparams.get("pooling_type")}`,
labels {labels}.
Checkpoint selected on `{hparams.get("selection_metric")}`
(epoch {checkpoint.meta.get("epoch")}).

## Usage

```python
# pip install sser   (the interface is in the package: no remote code)
from sser_lobes.inference import EmotionRecognizer
recognizer = EmotionRecognizer.from_hparams(
    "{source}", savedir="pretrained/{name}"
)
{usage}
```

or on the command line:
`sser-predict --model {source} audio_folder/ --output predictions.jsonl`.

Any sample rate, mono or stereo, wav / flac / ogg; audio longer than the
window is classified in overlapping chunks.

## Metrics (whole evaluation sets)

{chr(10).join(table)}

{first.get("split_description") or ""}

{pictures}

## Training

Recipe `{hparams.get("experiment_name")}` of sser (SpeechBrain). Data folder at
training time: `{hparams.get("data_folder")}`. See the sser README for the
protocol and the published anchors.
"""


def _check_out_dir(out):
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ExportError(
            f"{out} exists and was not written by sser_lobes.export; choose another "
            "output folder (nothing was changed)."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def export_run(
    run_folder, out_dir, repo_id=None, ssl_source=None, text_encoder_source=None
):
    """Write the Hub-ready folder of a run (see the module docstring).

    Returns
    -------
    pathlib.Path
        The output folder.
    """
    run = Path(run_folder)
    out = _check_out_dir(out_dir)
    hparams, checkpoint = load_run(run, ssl_source, text_encoder_source)
    model = hparams["model"]

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
    for pattern in ("*_metrics.json", "*confusion_matrix.png", "learning_curves.png"):
        for path in run.glob(pattern):
            shutil.copy(path, out / path.name)
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
    return out


def _export_text_encoder(hparams, folder):
    """Save the run's text encoder (tokenizer + weights) inside the export."""
    from transformers import AutoModel, AutoTokenizer

    from sser_lobes.hf_utils import quiet_transformers

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
    args = parser.parse_args(argv)
    try:
        out = export_run(
            args.run_folder,
            args.out_dir,
            repo_id=args.push,
            ssl_source=args.ssl_source,
            text_encoder_source=args.text_encoder_source,
        )
    except (ExportError, OSError) as error:
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
