"""The model folder as a stock transformers audio classifier (no custom code).

    python -m sser_lobes.inference.transformers_export MODEL_FOLDER
    python -m sser_lobes.export RUN OUT --transformers      # the same, at export

writes, next to the sser files of an exported model folder, a checkpoint that
``transformers.pipeline("audio-classification", model=FOLDER)`` and
``AutoModelForAudioClassification.from_pretrained(FOLDER)`` load with no
custom code and ``trust_remote_code`` unset:

* ``config.json``: the encoder's config as a ``Wav2Vec2`` / ``Hubert`` /
  ``WavLMForSequenceClassification`` with ``id2label`` / ``label2id``; its
  ``transformers_weights`` entry names the weights file, because
  ``model.safetensors`` is sser's own (other tensor names);
* ``transformers.safetensors``: the weights;
* ``preprocessor_config.json``: a ``Wav2Vec2FeatureExtractor`` that
  normalises the waveform as sser does.

It works from the folder's description and weights only (loaded by
:meth:`EmotionRecognizer.from_hparams`), so it also runs on an existing
model folder. The map is exact or refused:

* LoRA adapters: a run exported with them merged (the default) is a plain
  encoder; adapters kept apart (``--keep-adapters``) are merged into a copy
  of the model for this checkpoint (stock transformers has no adapters),
  while sser's own files keep them;

* the encoder: ``output_layer="last"`` is the stock model's output;
  a layer ``k`` or a weighted sum of layers is ``use_weighted_layer_sum``
  over the first ``max(k)`` layers (later layers are dropped, as they do
  not change those hidden states), sser's softmax weights on the layers it
  sums and ``-inf`` on the others (a softmax weight of exactly 0);
* mean pooling and a linear head ``W, b``: transformers computes
  ``classifier(mean_t(projector(h_t)))``; the projector is ``W, b`` and the
  classifier the identity (``classifier_proj_size`` = the class count),
  the same function because a mean commutes with a linear map;
* the calibration (``calibration`` of the description, fitted by the
  recipe): ``logits / T + c`` is folded into the projector (``W / T``,
  ``b / T + c``, one temperature or one per class), so the stock model
  returns sser's default, calibrated probabilities (sser's
  ``calibrated=False`` raw softmax has no stock form);
* the waveform normalisation: ``utterance`` is the feature extractor's
  ``do_normalize`` (mean and variance of the utterance, eps 1e-7, as sser);
  ``off`` is ``do_normalize=False``; ``global`` (one training-set mean and
  std) has no feature-extractor form, so it is folded into the first
  convolution (weights divided by the std, a bias subtracting the mean's
  response; the config gets ``conv_bias=True`` with zero biases elsewhere).

Refused, with one line saying why: attribute models, any pooling but mean,
MLP heads, an output activation, gender conditioning, text fusion,
``output_norm`` (it divides each utterance's or frame's features by their
own standard deviation: no step of ``*ForSequenceClassification`` does
that, and it cannot be folded into linear layers), ``normalize_layers``,
``eval_crop_seconds`` (the pipeline has no crop), and description entries
this mapping does not know (they may change the output).

After writing, the export loads the folder with
``AutoModelForAudioClassification`` and compares its probabilities with
sser's on seeded waveforms; a difference above :data:`CHECK_ATOL` (divided by a
calibration temperature below 1, :func:`check_tolerance`) removes
the files and is an error. Two differences of use remain, and are stated in
the model card: audio longer than the model's window is classified by sser
in overlapping windows whose probabilities are pooled, by transformers in
one pass; and in padded batches the stock group-norm encoders
(wav2vec2-base / HuBERT-base style) let padding into their first
normalisation, which sser masks. One file at a time, up to the window, the
probabilities are the same (tested to 1e-5).
"""

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sser_lobes.errors import ExportError, ModelFormatError

#: The weights file of the transformers checkpoint (``model.safetensors`` is
#: sser's own, with sser's tensor names).
WEIGHTS = "transformers.safetensors"
#: Every file this module writes.
FILES = ("config.json", "preprocessor_config.json", WEIGHTS)
#: The sequence-classification class and base-model attribute per model type.
CLASSES = {
    "wav2vec2": ("Wav2Vec2ForSequenceClassification", "wav2vec2"),
    "hubert": ("HubertForSequenceClassification", "hubert"),
    "wavlm": ("WavLMForSequenceClassification", "wavlm"),
}
#: Largest difference of probabilities the export's own check accepts.
CHECK_ATOL = 1e-4
#: Description entries whose meaning the mapping knows (the others are
#: refused: they may change the output).
KNOWN_ENTRIES = frozenset(
    {
        "format",
        "format_version",
        "task",
        "labels",
        "sample_rate",
        "window_seconds",
        "chunk_hop_seconds",
        "eval_crop_seconds",
        "batch_size",
        "attribute_range",
        "architecture",
        "text_encoder",
        "asr_source",
        "experiment",
        "training",
        "calibration",
    }
)
_SSL_PREFIX = "encoder.model."


def refusal(description):
    """Why a model cannot be a stock transformers classifier, or None.

    Arguments
    ---------
    description : dict
        A checked model description (``sser_model.json``).

    Returns
    -------
    str or None
        One sentence naming the part that has no exact transformers form.

    Example
    -------
    >>> arch = {"encoder": {"output_norm": None, "normalize_layers": False},
    ...     "pooling": {"type": "attentive_statistics"},
    ...     "head": {"type": "linear", "output_activation": None},
    ...     "gender": None, "text_fusion": None}
    >>> print(refusal({"task": "categorical", "architecture": arch})[:48])
    attentive_statistics pooling has no transformers
    """
    unknown = sorted(set(description) - KNOWN_ENTRIES)
    if unknown:
        return (
            f"the description has {unknown[0]!r}, which this export does not "
            "know how to map (it may change the output)"
        )
    arch = description["architecture"]
    encoder, head = arch["encoder"], arch["head"]
    if description["task"] != "categorical":
        return (
            "an attribute (regression) model: the audio-classification pipeline "
            "returns class probabilities"
        )
    if arch["pooling"]["type"] != "mean":
        return (
            f"{arch['pooling']['type']} pooling has no transformers form: "
            "*ForSequenceClassification only averages the projected frames "
            "(mean pooling)"
        )
    if head["type"] != "linear":
        return (
            f"the {head['type']} head (Linear -> LayerNorm -> ReLU -> Linear) has "
            "no transformers form: its classifier is two linear layers around "
            "the mean"
        )
    if head.get("output_activation"):
        return f"the head's {head['output_activation']} output has no transformers form"
    if arch.get("gender"):
        return "gender conditioning has no transformers form"
    if arch.get("text_fusion"):
        return "text fusion needs a text encoder and a transcript input"
    if encoder["output_norm"] is not None:
        return (
            f"output_norm={encoder['output_norm']!r} divides the features by "
            f"their own standard deviation (per {encoder['output_norm']}), a step "
            "*ForSequenceClassification does not have and that cannot be folded "
            "into its linear layers; train with --output_norm=null for this format"
        )
    if encoder.get("normalize_layers"):
        return (
            "normalize_layers layer-normalises each hidden state before the "
            "weighted sum; transformers' use_weighted_layer_sum does not"
        )
    if encoder.get("normalize_waveform") == "layer_norm" and (
        encoder.get("config") or {}
    ).get("conv_bias", False):
        return (
            "normalize_waveform='layer_norm' divides by sqrt(variance + 1e-5) and "
            "the feature extractor by sqrt(variance + 1e-7); the two differ only "
            "in scale, which an encoder whose first convolution has no bias "
            "removes, but this one has a bias (conv_bias); train with "
            "--normalize_waveform=utterance for this format"
        )
    if description.get("eval_crop_seconds"):
        return (
            f"the model classifies only the first {description['eval_crop_seconds']:g}"
            " s of a file (eval_crop_seconds); the audio-classification pipeline "
            "has no crop"
        )
    return None


def _kept_layers(encoder, num_layers):
    """The hidden states sser reads (``None`` for ``last``)."""
    from sser_lobes.encoders.ssl_encoder import layer_selection

    layer = encoder["output_layer"]
    if layer == "last":
        return None
    if layer == "weighted_sum":
        return layer_selection(encoder.get("weighted_sum_layers"), num_layers)
    return [int(layer)]


def transformers_checkpoint(description, state):
    """The config, feature-extractor config and tensors of the stock model.

    Arguments
    ---------
    description : dict
        A checked model description that :func:`refusal` accepts.
    state : dict
        The EmotionModel's state dict (``model.safetensors``).

    Returns
    -------
    config : transformers.PretrainedConfig
    extractor : transformers.Wav2Vec2FeatureExtractor
    tensors : dict of str to torch.Tensor
    """
    from transformers import AutoConfig, Wav2Vec2FeatureExtractor

    why = refusal(description)
    if why:
        raise ExportError(f"not exported for transformers: {why}")
    if any(".lora_" in key or ".base_layer." in key for key in state):
        raise ExportError(
            "not exported for transformers: the state holds LoRA adapters; merge "
            "them into the weights first (SSLEncoder.merge_adapters)"
        )
    arch = description["architecture"]
    encoder = arch["encoder"]
    config = AutoConfig.for_model(**dict(encoder["config"]))
    class_name, base = CLASSES[config.model_type]
    labels = list(description["labels"])
    layers = _kept_layers(encoder, config.num_hidden_layers)
    kept = config.num_hidden_layers
    if layers is not None:
        kept = max(max(layers), 1)
    tensors = {}
    for key, value in state.items():
        if not key.startswith(_SSL_PREFIX):
            continue
        name = key[len(_SSL_PREFIX) :]
        parts = name.split(".")
        if parts[:2] == ["encoder", "layers"] and int(parts[2]) >= kept:
            continue
        tensors[f"{base}.{name}"] = value.detach().float().clone()
    config.num_hidden_layers = kept
    single_post_norm = (
        layers == [kept] and not config.do_stable_layer_norm
    )  # hidden_states[kept] is then last_hidden_state itself
    config.use_weighted_layer_sum = layers is not None and not single_post_norm
    if config.use_weighted_layer_sum:
        weights = torch.full((kept + 1,), -math.inf)
        learned = state.get("encoder.layer_weights")
        for i, layer in enumerate(layers):
            weights[layer] = 0.0 if learned is None else float(learned[i])
        tensors["layer_weights"] = weights
    head_weight = state["head.linear.weight"].detach().float()
    head_bias = state.get("head.linear.bias")
    classes = head_weight.shape[0]
    head_bias = (
        torch.zeros(classes) if head_bias is None else head_bias.detach().float()
    )
    tensors["projector.weight"], tensors["projector.bias"] = calibrated_linear(
        head_weight, head_bias, description.get("calibration")
    )
    tensors["classifier.weight"] = torch.eye(classes)
    tensors["classifier.bias"] = torch.zeros(classes)
    config.classifier_proj_size = classes
    config.architectures = [class_name]
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    norm = encoder["normalize_waveform"]
    if norm == "global":
        _fold_global_normalisation(config, state, tensors, base)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=int(description["sample_rate"]),
        padding_value=0.0,
        # layer_norm: the same but for its epsilon, i.e. a scale per
        # utterance, which the bias-free first convolution's normalisation
        # removes (a first convolution with a bias is refused above)
        do_normalize=norm in ("utterance", "layer_norm"),
        return_attention_mask=True,
    )
    return config, extractor, tensors


def calibrated_linear(weight, bias, calibration):
    """``weight, bias`` of a linear layer whose logits are calibrated:
    ``(W x + b) / T + c`` is ``(W / T) x + (b / T + c)``
    (:func:`sser_lobes.evaluation.calibration.apply_calibration`).

    Example
    -------
    >>> w, b = calibrated_linear(torch.ones(2, 3), torch.zeros(2),
    ...     {"temperature": [2.0], "bias": None})
    >>> w[0].tolist(), b.tolist()
    ([0.5, 0.5, 0.5], [0.0, 0.0])
    """
    weight, bias = weight.double(), bias.double()
    if calibration:
        temperature = torch.tensor(calibration["temperature"], dtype=torch.float64)
        weight = weight / temperature[:, None]
        bias = bias / temperature
        if calibration.get("bias") is not None:
            bias = bias + torch.tensor(calibration["bias"], dtype=torch.float64)
    return weight.float(), bias.float()


def _fold_global_normalisation(config, state, tensors, base):
    """``(x - mean) / (std + 1e-6)`` folded into the first convolution.

    The convolutions have no padding, so every output of the first one sees
    a full window: ``conv((x - m) / s) = conv(x) / s - (m / s) * sum(w)``.
    """
    from sser_lobes.encoders.ssl_encoder import GLOBAL_NORM_EPS

    mean = float(state["encoder.waveform_mean"])
    scale = float(state["encoder.waveform_std"]) + GLOBAL_NORM_EPS
    prefix = f"{base}.feature_extractor.conv_layers"
    weight = tensors[f"{prefix}.0.conv.weight"].double()
    bias = tensors.get(f"{prefix}.0.conv.bias")
    bias = torch.zeros(weight.shape[0]) if bias is None else bias
    tensors[f"{prefix}.0.conv.weight"] = (weight / scale).float()
    tensors[f"{prefix}.0.conv.bias"] = (
        bias.double() - (mean / scale) * weight.sum(dim=(1, 2))
    ).float()
    if not config.conv_bias:
        config.conv_bias = True
        for i in range(1, config.num_feat_extract_layers):
            channels = tensors[f"{prefix}.{i}.conv.weight"].shape[0]
            tensors[f"{prefix}.{i}.conv.bias"] = torch.zeros(channels)


def remove_transformers_files(folder):
    """Delete what :func:`export_transformers` writes (e.g. an earlier
    export's, before a new export into the same folder)."""
    for name in FILES:
        (Path(folder) / name).unlink(missing_ok=True)


def export_transformers(folder, check=True):
    """Write the transformers checkpoint into an exported model folder.

    Arguments
    ---------
    folder : str or Path
        An sser model folder (``sser_model.json`` + ``model.safetensors``).
    check : bool
        Load the written folder with ``AutoModelForAudioClassification`` and
        compare its probabilities with sser's (:func:`check_equal`).

    Returns
    -------
    list of str
        Notes on how to use it (the differences of use listed in the module
        docstring that apply to this model).

    Raises
    ------
    sser_lobes.errors.ExportError
        One line: the folder is not a model, its kind has no exact
        transformers form, or the check failed.
    """
    from sser_lobes.encoders.hf_utils import quiet_transformers
    from sser_lobes.inference.recognizer import EmotionRecognizer

    folder = Path(folder)
    try:
        recognizer = EmotionRecognizer.from_hparams(folder)
    except (ModelFormatError, FileNotFoundError) as error:
        raise ExportError(str(error)) from None
    description = recognizer.hparams.description
    why = refusal(description)
    if why:
        raise ExportError(f"{folder}: not exported for transformers: {why}")
    model = recognizer.model
    if description["architecture"]["encoder"].get("adapters"):
        # LoRA adapters kept apart (export --keep-adapters): the stock model
        # has no adapters, so a copy is merged (peft's merge, the same
        # function); sser's own files keep them, and the check below compares
        # with the model that keeps them apart.
        model = copy.deepcopy(model)
        model.encoder.merge_adapters()
    config, extractor, tensors = transformers_checkpoint(
        description, model.state_dict()
    )
    remove_transformers_files(folder)
    with quiet_transformers():
        config.save_pretrained(folder)
        extractor.save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    data["transformers_weights"] = WEIGHTS
    (folder / "config.json").write_text(
        json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS))
    if check:
        try:
            check_equal(folder, recognizer)
        except ExportError:
            remove_transformers_files(folder)
            raise
    return usage_notes(description)


def usage_notes(description):
    """The differences of use between the pipeline and sser for this model.

    Example
    -------
    >>> arch = {"encoder": {"config": {"feat_extract_norm": "layer"}}}
    >>> usage_notes({"window_seconds": 8.0, "architecture": arch})[0][:42]
    'audio longer than 8 s: sser classifies it '
    """
    notes = [
        f"audio longer than {description['window_seconds']:g} s: sser classifies "
        "it in overlapping windows and pools them, the transformers pipeline in "
        "one pass"
    ]
    config = description["architecture"]["encoder"]["config"]
    if config.get("feat_extract_norm") == "group":
        notes.append(
            "in padded batches (pipeline batch_size > 1) the stock group-norm "
            "encoder lets padding into its first normalisation (sser masks it): "
            "classify one file at a time for sser's numbers"
        )
    if description.get("calibration"):
        notes.append(
            "the probabilities are the calibrated ones (the temperature fitted on "
            "the validation split is folded into the classifier), as sser's "
            "default; sser's raw softmax (`calibrated=False`) has no stock form"
        )
    return notes


def check_tolerance(calibration):
    """The largest difference of probabilities :func:`check_equal` accepts:
    :data:`CHECK_ATOL`, divided by the smallest temperature of a calibration
    below 1 (dividing the logits by ``T < 1`` magnifies the float32
    differences of the two encoders' implementations by ``1 / T``).

    Example
    -------
    >>> check_tolerance(None) == CHECK_ATOL
    True
    >>> round(check_tolerance({"temperature": [0.5, 2.0]}) / CHECK_ATOL, 6)
    2.0
    """
    smallest = min((calibration or {}).get("temperature") or [1.0])
    return CHECK_ATOL / min(1.0, smallest)


def check_equal(folder, recognizer, seconds=(0.6, 1.7)):
    """The stock transformers model of ``folder`` gives sser's probabilities.

    Runs ``AutoModelForAudioClassification`` and its feature extractor on
    seeded waveforms of the given durations (each within the model's
    window), one at a time, as the pipeline does.

    Returns
    -------
    float
        The largest absolute difference of probabilities.

    Raises
    ------
    sser_lobes.errors.ExportError
        If it exceeds :data:`CHECK_ATOL` (:func:`check_tolerance`).
    """
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from sser_lobes.encoders.hf_utils import quiet_transformers

    with quiet_transformers():
        model = AutoModelForAudioClassification.from_pretrained(folder).eval()
        extractor = AutoFeatureExtractor.from_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    rate = recognizer.sample_rate
    worst = 0.0
    for duration in seconds:
        n = int(min(duration, recognizer.hparams.window_seconds) * rate)
        wav = 0.1 * torch.randn(n, generator=generator) + 0.01
        ours = recognizer.predict_batch(wav[None])["probabilities"][0]
        inputs = extractor(wav.numpy(), sampling_rate=rate, return_tensors="pt")
        with torch.no_grad():
            theirs = torch.softmax(model(**inputs).logits[0].float(), dim=-1)
        worst = max(worst, float((ours.cpu() - theirs).abs().max()))
    tolerance = check_tolerance(recognizer.calibration)
    if not worst <= tolerance:
        raise ExportError(
            f"{folder}: the transformers model's probabilities differ from sser's "
            f"by {worst:.2e} (> {tolerance:.3g}); nothing was written"
        )
    return worst


def main(argv=None):
    """``python -m sser_lobes.inference.transformers_export FOLDER``."""
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.inference.transformers_export",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("folder", help="an exported sser model folder")
    args = parser.parse_args(argv)
    try:
        notes = export_transformers(args.folder)
    except ExportError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(
        f"wrote {', '.join(FILES)} into {args.folder}: "
        f'transformers.pipeline("audio-classification", model="{args.folder}") '
        "loads it (equal to sser's probabilities, checked)"
    )
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
