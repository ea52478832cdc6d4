"""The transformers-native export: a stock ``*ForSequenceClassification``
that ``transformers.pipeline`` loads with no custom code and whose
probabilities equal sser's, or one line saying why not."""

import json

import numpy as np
import pytest
import soundfile
import torch
from conftest import IEMOCAP, iemocap_argv, recipe_process_state, run_recipe

from sser_lobes import (
    EmotionModel,
    EmotionRecognizer,
    LinearHead,
    MeanPooling,
    SSLEncoder,
)
from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
from sser_lobes.errors import ExportError
from sser_lobes.inference import export, transformers_export
from sser_lobes.nnet.description import describe_run

LABELS = ["neu", "hap", "sad", "ang"]

#: name -> (arch, feat_extract_norm, output_layer, normalize_waveform)
KINDS = {
    "wavlm_last": ("wavlm", "layer", "last", "utterance"),
    "wavlm_weighted_global": ("wavlm", "layer", "weighted_sum", "global"),
    "hubert_last": ("hubert", "group", "last", "utterance"),
    "hubert_layer1_off": ("hubert", "group", 1, "off"),
    "wav2vec2_weighted": ("wav2vec2", "group", "weighted_sum", "utterance"),
    "wav2vec2_large_layer1": ("wav2vec2", "layer", 1, "global"),
    # the IEMOCAP recipe's default for a checkpoint that normalises (as
    # SpeechBrain's wrapper); the tiny models' first convolution has no bias
    "wavlm_layer_norm": ("wavlm", "layer", "last", "layer_norm"),
    "hubert_layer_norm": ("hubert", "group", "weighted_sum", "layer_norm"),
}


def write_model(folder, arch, norm, output_layer, waveform_norm, seed=0, **encoder):
    """An sser model folder of a tiny random model with a sharp linear head."""
    ssl = make_tiny_ssl(
        folder.parent / f"{folder.name}_ssl",
        arch,
        norm,
        seed=seed,
        conv_bias=encoder.pop("conv_bias", False),
    )
    torch.manual_seed(seed)
    model_encoder = SSLEncoder(
        ssl,
        finetune="frozen",
        output_layer=output_layer,
        output_norm=encoder.pop("output_norm", None),
        normalize_waveform=waveform_norm,
        weighted_sum_layers=encoder.pop("weighted_sum_layers", None),
    )
    if waveform_norm == "global":
        model_encoder.set_waveform_stats(0.02, 0.3, 16000)
    if output_layer == "weighted_sum":
        with torch.no_grad():
            model_encoder.layer_weights.normal_()
    head = LinearHead(32, len(LABELS), bias=True)
    with torch.no_grad():
        head.linear.weight.mul_(10.0)  # probabilities far from uniform
    model = EmotionModel(model_encoder, MeanPooling(32), head).eval()
    folder.mkdir(parents=True)
    hparams = {
        "model": model,
        "emotions": LABELS,
        "sample_rate": 16000,
        "experiment_name": "tiny",
    }
    export.write_model_folder(folder, describe_run(hparams, 3.0), model)
    return folder


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    """Seeded 16 kHz files of 0.5 to 2.9 s (within the 3 s window)."""
    root = tmp_path_factory.mktemp("tf_audio")
    rng = np.random.default_rng(3)
    files = []
    for i, seconds in enumerate((0.5, 1.3, 2.9)):
        n = int(seconds * 16000)
        t = np.arange(n) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (120 + 60 * i) * t) * (1 + np.sin(3 * t))
        wav += 0.02 * rng.standard_normal(n)
        path = root / f"f{i}.wav"
        soundfile.write(path, wav.astype(np.float32), 16000, subtype="PCM_16")
        files.append(path)
    return files


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pipeline_equals_sser_one_file_at_a_time(kind, tmp_path, audio_files):
    from transformers import AutoModelForAudioClassification, pipeline

    folder = write_model(tmp_path / kind, *KINDS[kind])
    status = transformers_export.main([str(folder)])
    assert status == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["transformers_weights"] == "transformers.safetensors"
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert "auto_map" not in config  # no custom code to trust
    model = AutoModelForAudioClassification.from_pretrained(folder)
    assert type(model).__name__ == transformers_export.CLASSES[KINDS[kind][0]][0]
    recognizer = EmotionRecognizer.from_hparams(folder)
    classifier = pipeline("audio-classification", model=str(folder))
    for path in audio_files:
        ours, _, _, label = recognizer.classify_file(path)
        array, rate = soundfile.read(path, dtype="float32")
        results = classifier({"raw": array, "sampling_rate": rate}, top_k=None)
        theirs = {r["label"]: r["score"] for r in results}
        assert max(theirs, key=theirs.get) == label
        for index, name in enumerate(LABELS):
            assert abs(theirs[name] - float(ours[index])) < 1e-5, (kind, path, name)
    # sser still loads its own files, unchanged, from the same folder
    assert recognizer.labels == LABELS


@pytest.mark.parametrize(
    "calibration",
    [
        {"method": "temperature", "temperature": [2.5], "bias": None},
        {
            "method": "vector",
            "temperature": [0.5, 2.0, 1.0, 3.0],
            "bias": [0.3, -0.2, 0.0, 0.1],
        },
    ],
)
def test_the_calibration_is_folded_into_the_classifier(
    calibration, tmp_path, audio_files
):
    """The stock model returns sser's default (calibrated) probabilities,
    not the raw softmax."""
    from transformers import pipeline

    folder = write_model(tmp_path / "cal", "wavlm", "layer", "last", "utterance")
    path = folder / "sser_model.json"
    description = json.loads(path.read_text())
    description["calibration"] = dict(calibration, fitted_on="valid", n=10)
    path.write_text(json.dumps(description))
    notes = transformers_export.export_transformers(folder)
    assert any("calibrated" in note for note in notes)
    recognizer = EmotionRecognizer.from_hparams(folder)
    classifier = pipeline("audio-classification", model=str(folder))
    for audio in audio_files:
        ours = recognizer.classify_file(audio)[0]
        raw = recognizer.classify_file(audio, calibrated=False)[0]
        assert float((ours - raw).abs().max()) > 1e-2  # the calibration matters
        array, rate = soundfile.read(audio, dtype="float32")
        results = classifier({"raw": array, "sampling_rate": rate}, top_k=None)
        theirs = {r["label"]: r["score"] for r in results}
        for index, name in enumerate(LABELS):
            assert abs(theirs[name] - float(ours[index])) < 1e-5, (audio, name)


def test_layer_norm_with_a_biased_first_convolution_is_refused(tmp_path):
    """``layer_norm`` and the feature extractor differ by a scale per
    utterance; only a bias-free first convolution makes that irrelevant."""
    folder = write_model(
        tmp_path / "biased", "wavlm", "layer", "last", "layer_norm", conv_bias=True
    )
    with pytest.raises(ExportError) as info:
        transformers_export.export_transformers(folder)
    message = str(info.value)
    assert "\n" not in message and "conv_bias" in message
    assert "--normalize_waveform=utterance" in message


def test_a_weighted_subset_of_layers(tmp_path, audio_files):
    """``weighted_sum_layers=[0, 2]``: the other layer weighs exactly 0."""
    folder = write_model(
        tmp_path / "subset",
        "wavlm",
        "layer",
        "weighted_sum",
        "utterance",
        weighted_sum_layers=[0, 2],
    )
    transformers_export.export_transformers(folder)
    from safetensors.torch import load_file

    weights = load_file(folder / transformers_export.WEIGHTS)["layer_weights"]
    assert torch.isinf(weights[1]) and torch.isfinite(weights[[0, 2]]).all()


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    folder = write_model(
        tmp_path / "normed", "wavlm", "layer", "last", "utterance", output_norm="frame"
    )
    with pytest.raises(ExportError) as info:
        transformers_export.export_transformers(folder)
    message = str(info.value)
    assert "\n" not in message and "output_norm='frame'" in message
    assert not any((folder / name).exists() for name in transformers_export.FILES)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"pooling": {"type": "attentive_statistics"}}, "attentive_statistics pooling"),
        ({"head": {"type": "mlp", "output_activation": None}}, "mlp head"),
        ({"gender": {"mode": "film"}}, "gender conditioning"),
        ({"text_fusion": {"mode": "concat"}}, "text fusion"),
        ({"encoder_output_norm": "utterance"}, "output_norm='utterance'"),
        ({"encoder_normalize_layers": True}, "normalize_layers"),
        ({"eval_crop_seconds": 12.0}, "first 12 s"),
        ({"future_entry": {"scale": 1.5}}, "'future_entry'"),
        ({"task": "attributes"}, "attribute (regression) model"),
    ],
)
def test_kinds_without_an_exact_form_are_refused(change, expected):
    description = {
        "task": "categorical",
        "eval_crop_seconds": None,
        "architecture": {
            "encoder": {"output_norm": None, "normalize_layers": False},
            "pooling": {"type": "mean"},
            "head": {"type": "linear", "output_activation": None},
            "gender": None,
            "text_fusion": None,
        },
    }
    assert transformers_export.refusal(description) is None
    for key, value in change.items():
        if key.startswith("encoder_"):
            description["architecture"]["encoder"][key[8:]] = value
        elif key in description["architecture"]:
            description["architecture"][key] = value
        else:
            description[key] = value
    assert expected in transformers_export.refusal(description)


def test_export_command_with_transformers(iemocap_small_corpus, tiny_models, tmp_path):
    """``python -m sser_lobes.export RUN OUT --transformers`` on a recipe run
    without output normalisation; the card's library becomes transformers.
    The recipe's default (``output_norm: utterance``) is refused in one line
    before anything is written."""
    run = tmp_path / "run"
    argv = iemocap_argv(
        iemocap_small_corpus,
        tiny_models["hubert_base"],
        run,
        "--test_session=1",
        "--output_norm=null",
        epochs=1,
    )
    run_recipe(IEMOCAP, argv)
    out = tmp_path / "model"
    with recipe_process_state() as (_, stderr):
        status = export.main([str(run), str(out), "--transformers"])
    assert status == 0, stderr.getvalue()
    assert all((out / name).is_file() for name in transformers_export.FILES)
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and 'pipeline("audio-classif' in card
    assert "group-norm" in card  # the padded-batch difference is stated

    normed = tmp_path / "normed_run"
    argv = iemocap_argv(
        iemocap_small_corpus, tiny_models["wavlm"], normed, "--test_session=1", epochs=1
    )
    run_recipe(IEMOCAP, argv)
    refused = tmp_path / "refused"
    with recipe_process_state() as (_, stderr):
        assert export.main([str(normed), str(refused), "--transformers"]) == 1
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and "output_norm='utterance'" in lines[0], lines
    assert not (refused / "model.safetensors").exists()


@pytest.mark.parametrize("keep_adapters", [True, False])
def test_lora_models_export_with_their_adapters_merged(
    keep_adapters, tmp_path, audio_files
):
    """A LoRA model (adapters on the top layer): merged at sser's export it
    is a plain encoder; kept apart (``--keep-adapters``) the stock checkpoint
    gets them merged into a copy while sser's files keep them. Either way
    the pipeline gives sser's probabilities, with the adapters' effect in
    the weights, and an unmerged state is refused in one line."""
    from safetensors.torch import load_file
    from transformers import pipeline

    ssl = make_tiny_ssl(tmp_path / "ssl", "wavlm", "layer", seed=0)
    torch.manual_seed(0)
    encoder = SSLEncoder(
        ssl,
        finetune="lora",
        trainable_layers=1,
        lora_rank=4,
        lora_alpha=8,
        output_layer="last",
        output_norm=None,
        normalize_waveform="utterance",
    )
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # trained adapters: not a no-op
    head = LinearHead(32, len(LABELS), bias=True)
    with torch.no_grad():
        head.linear.weight.mul_(10.0)
    model = EmotionModel(encoder, MeanPooling(32), head).eval()
    if not keep_adapters:
        encoder.merge_adapters()
    folder = tmp_path / "lora"
    folder.mkdir()
    hparams = {"model": model, "emotions": LABELS, "sample_rate": 16000}
    hparams["experiment_name"] = "tiny"
    export.write_model_folder(folder, describe_run(hparams, 3.0), model)
    description = json.loads((folder / "sser_model.json").read_text())
    assert ("adapters" in description["architecture"]["encoder"]) == keep_adapters

    assert transformers_export.main([str(folder)]) == 0
    recognizer = EmotionRecognizer.from_hparams(folder)
    kept = [k for k in recognizer.model.state_dict() if "lora_A" in k]
    assert bool(kept) == keep_adapters  # sser's own files are unchanged
    stock = load_file(folder / transformers_export.WEIGHTS)
    assert not any("lora" in k or "base_layer" in k for k in stock)
    q_proj = "encoder.layers.1.attention.q_proj.weight"
    base = load_file(ssl / "model.safetensors")
    assert not torch.allclose(stock[f"wavlm.{q_proj}"], base[q_proj])
    classifier = pipeline("audio-classification", model=str(folder))
    for path in audio_files:
        ours, _, _, _ = recognizer.classify_file(path)
        array, rate = soundfile.read(path, dtype="float32")
        results = classifier({"raw": array, "sampling_rate": rate}, top_k=None)
        theirs = {r["label"]: r["score"] for r in results}
        for index, name in enumerate(LABELS):
            assert abs(theirs[name] - float(ours[index])) < 1e-5, (path, name)
    if keep_adapters:
        with pytest.raises(ExportError) as info:
            transformers_export.transformers_checkpoint(
                recognizer.hparams.description, recognizer.model.state_dict()
            )
        assert "merge them into the weights first" in str(info.value)
        assert "\n" not in str(info.value)
