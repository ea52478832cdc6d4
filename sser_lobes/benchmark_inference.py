"""CPU inference throughput of sser against the usual alternatives.

    python -m sser_lobes.benchmark_inference [--utterances 48] [--min-seconds 1.2]
        [--max-seconds 4.2] [--threads 2] [--batch-size 8] [--repeats 3]
        [--json out.json] [--tiny]

One run, one model, one set of files. A base-size WavLM with random weights
(hidden 768, 12 layers, the conv feature encoder of ``wavlm-base-plus``,
about 94 M parameters) is built from a transformers ``WavLMConfig`` and saved
to a temporary folder: nothing is downloaded. The same weights serve

* ``sser_batched``: :meth:`sser_lobes.inference.EmotionRecognizer.predict_files`
  (files sorted by length and batched);
* ``sser_single``: :meth:`~sser_lobes.inference.EmotionRecognizer.classify_file`,
  one file at a time;
* ``pipeline_single`` / ``pipeline_batched``: ``transformers.pipeline(
  "audio-classification")`` on the saved ``WavLMForSequenceClassification``,
  one file at a time and in batches (in the order of the files, as the
  pipeline does);
* ``speechbrain_single``: SpeechBrain's stock wrapper
  ``speechbrain.integrations.huggingface.wavlm.WavLM`` (frozen, pointed at the
  local folder) followed by the same mean pooling and linear head as sser,
  one file at a time.

The HF classifier is ``projector (768 -> 256) -> masked mean over frames ->
classifier (256 -> C)``. Averaging commutes with a linear map, so sser's
``MeanPooling -> LinearHead(768, C)`` with weight ``W_c @ W_p`` and bias
``W_c @ b_p + b_c`` is the same function (:func:`fold_linear_head`): every
system must give the same class probabilities, and the benchmark checks it
against the pipeline run one file at a time (the stock reference).

Reported per mode: utterances and audio seconds per second (median over
``--repeats``; the modes are interleaved within each repeat, in a rotated
order, so that a slow moment of the machine hits them all), the share of
padded samples in what the model computed, and the largest absolute
difference of class probabilities from the pipeline's. Also: the model's
FLOPs per audio second (counted with ``torch.utils.flop_counter`` on the HF
model) and the fp32 roofline, for the brief's matmul rate (131 GFLOP/s) and
for the rate measured in the run.

Files are generated in a temporary folder: 16 kHz PCM16 wav, harmonic
"voiced" signals with noise, durations uniform in ``[min, max]``; everything
is seeded.
"""

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

SAMPLE_RATE = 16000
LABELS = ["neu", "hap", "sad", "ang"]
BRIEF_PEAK_GFLOPS = 131.0
TARGET_SPEEDUP = 1.3
MODES = {
    "sser_batched": "sser predict_files (batched by length)",
    "sser_single": "sser classify_file (1 file at a time)",
    "pipeline_single": "HF audio-classification pipeline (1 at a time)",
    "pipeline_batched": "HF audio-classification pipeline (batch_size)",
    "speechbrain_single": "SpeechBrain WavLM wrapper + same head (1 at a time)",
}
OURS = ("sser_batched", "sser_single")
REFERENCE = "pipeline_single"
# The classifier of a random model gives nearly uniform probabilities; a
# larger head makes them differ between files, so that the agreement check
# compares informative numbers.
HEAD_SCALE = 10.0


# ----------------------------------------------------------------- setup
def base_config(num_labels=4, tiny=False):
    """The WavLM config of the benchmark (base size, or tiny for tests).

    The base config is ``WavLMConfig()``'s defaults, which are the
    architecture of ``microsoft/wavlm-base-plus``: hidden 768, 12 layers,
    7 conv layers of 512 channels with a group norm on the first one and no
    conv bias.

    Example
    -------
    >>> config = base_config()
    >>> config.hidden_size, config.num_hidden_layers, config.feat_extract_norm
    (768, 12, 'group')
    >>> config.conv_kernel, config.conv_stride, config.conv_bias
    ((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), False)
    >>> base_config(tiny=True).hidden_size
    32
    """
    from transformers import WavLMConfig

    from sser_lobes.tiny_ssl import tiny_ssl_config

    if tiny:
        config = tiny_ssl_config("wavlm", "group", hidden_size=32, num_layers=2)
        config.classifier_proj_size = 16
    else:
        config = WavLMConfig()
    config.num_labels = num_labels
    config.id2label = dict(enumerate(LABELS[:num_labels]))
    config.label2id = {label: i for i, label in config.id2label.items()}
    return config


def make_audio_files(folder, count, min_seconds, max_seconds, seed=0):
    """Write ``count`` seeded 16 kHz wav files with durations in [min, max].

    Each file is a harmonic tone with a drifting pitch (100-300 Hz), a
    syllable-rate amplitude envelope and some noise.

    Returns
    -------
    list of (pathlib.Path, int)
        Paths and lengths in samples, in generation order.

    Example
    -------
    >>> import tempfile
    >>> files = make_audio_files(tempfile.mkdtemp(), 3, 1.0, 2.0, seed=1)
    >>> [16000 <= n <= 32000 for _, n in files]
    [True, True, True]
    """
    if not 0 < min_seconds <= max_seconds:
        raise ValueError("need 0 < min_seconds <= max_seconds.")
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        seconds = rng.uniform(min_seconds, max_seconds)
        n = int(round(seconds * SAMPLE_RATE))
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.uniform(100, 300) * (
            1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
        )
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2
        wav = 0.2 * envelope * voice + 0.01 * rng.standard_normal(n)
        wav = 0.9 * wav / np.abs(wav).max()
        path = folder / f"utt{index:03d}.wav"
        soundfile.write(path, wav.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        files.append((path, n))
    return files


def fold_linear_head(projector, classifier):
    """One linear layer equal to ``classifier(projector(x))``.

    Mean pooling commutes with a linear map, so HF's
    ``projector -> masked mean -> classifier`` equals
    ``masked mean -> folded layer``.

    Arguments
    ---------
    projector, classifier : torch.nn.Linear

    Returns
    -------
    weight : torch.Tensor
        ``W_c @ W_p`` ``[classes, hidden]``.
    bias : torch.Tensor
        ``W_c @ b_p + b_c`` ``[classes]``.

    Example
    -------
    >>> p, c = torch.nn.Linear(6, 3), torch.nn.Linear(3, 2)
    >>> w, b = fold_linear_head(p, c)
    >>> x = torch.randn(5, 6)
    >>> torch.allclose(x @ w.T + b, c(p(x)), atol=1e-6)
    True
    """
    with torch.no_grad():
        w_p, b_p = projector.weight.double(), projector.bias.double()
        w_c, b_c = classifier.weight.double(), classifier.bias.double()
        weight = (w_c @ w_p).float()
        bias = (w_c @ b_p + b_c).float()
    return weight, bias


def build_models(folder, config, seed=0, max_seconds=10.0):
    """Write the HF model folder and the equivalent sser export folder.

    Arguments
    ---------
    folder : str or Path
        Where to write ``hf/`` (``WavLMForSequenceClassification`` and its
        feature extractor) and ``sser/`` (``hyperparams.yaml`` and
        ``model.safetensors`` in :mod:`sser_lobes.export`'s format).
    config : transformers.WavLMConfig
    seed : int
        Seed of the random weights.
    max_seconds : float
        Longest file: the export's window covers it (no chunking).

    Returns
    -------
    hf_dir, sser_dir : pathlib.Path
    head : sser_lobes.heads.LinearHead
        The folded head (shared with the SpeechBrain mode).
    """
    from safetensors.torch import save_file
    from transformers import Wav2Vec2FeatureExtractor, WavLMForSequenceClassification

    from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    from sser_lobes.export import inference_yaml
    from sser_lobes.hf_utils import quiet_transformers

    folder = Path(folder)
    hf_dir, sser_dir = folder / "hf", folder / "sser"
    torch.manual_seed(seed)
    with quiet_transformers():
        hf = WavLMForSequenceClassification(config).eval()
    with torch.no_grad():
        hf.classifier.weight.mul_(HEAD_SCALE)
    with quiet_transformers():
        hf.save_pretrained(hf_dir)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    extractor.save_pretrained(hf_dir)

    hidden, classes = config.hidden_size, config.num_labels
    encoder = SSLEncoder(
        config=config.to_dict(),
        load_weights=False,
        finetune="frozen",
        output_norm=False,
        normalize_waveform=extractor.do_normalize,
    )
    head = LinearHead(hidden, classes, bias=True)
    model = EmotionModel(encoder, MeanPooling(hidden), head).eval()
    encoder.model.load_state_dict(hf.wavlm.state_dict())
    weight, bias = fold_linear_head(hf.projector, hf.classifier)
    with torch.no_grad():
        head.linear.weight.copy_(weight)
        head.linear.bias.copy_(bias)

    sser_dir.mkdir(parents=True, exist_ok=True)
    hparams = {
        "model": model,
        "emotions": list(config.id2label.values()),
        "sample_rate": SAMPLE_RATE,
        "eval_batch_size": 8,
        "experiment_name": "benchmark_random_wavlm",
        "train_crop_seconds": float(max_seconds),
    }
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(sser_dir / "model.safetensors"))
    (sser_dir / "hyperparams.yaml").write_text(
        inference_yaml(hparams, sser_dir), encoding="utf-8"
    )
    return hf_dir, sser_dir, head


# ------------------------------------------------------------- padding
class PaddingMeter:
    """Counts valid and computed (padded) samples of the batches a model sees.

    Example
    -------
    >>> meter = PaddingMeter()
    >>> meter.add(torch.zeros(2, 10), valid=15)
    >>> meter.share
    0.25
    """

    def __init__(self):
        self.computed = 0
        self.valid = 0
        self.batches = 0

    def add(self, wavs, valid):
        """Record one batch ``[batch, samples]`` holding ``valid`` real samples."""
        self.computed += int(wavs.shape[0] * wavs.shape[-1])
        self.valid += int(valid)
        self.batches += 1

    @property
    def share(self):
        """Fraction of the computed samples that are padding."""
        return 1.0 - self.valid / self.computed if self.computed else 0.0


@contextlib.contextmanager
def _metered(module, count_valid):
    """Attach a :class:`PaddingMeter` to ``module``'s forward pre-hook."""
    meter = PaddingMeter()

    def hook(_, args, kwargs):
        wavs = args[0] if args else kwargs["input_values"]
        meter.add(wavs, count_valid(wavs, args, kwargs))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield meter
    finally:
        handle.remove()


def _valid_from_lens(wavs, args, kwargs):
    lens = args[1] if len(args) > 1 else kwargs.get("wav_lens")
    if lens is None:
        return wavs.numel()
    return int(torch.round(lens.float() * wavs.shape[1]).sum())


def _valid_from_mask(wavs, args, kwargs):
    mask = kwargs.get("attention_mask")
    return wavs.numel() if mask is None else int(mask.sum())


# ----------------------------------------------------------------- modes
def _read(path):
    wav, _ = soundfile.read(str(path), dtype="float32")
    return wav


class Systems:
    """The five ways of classifying the files, all built on one model.

    Each ``run_<mode>(paths)`` reads the files itself and returns the class
    probabilities ``[files, classes]`` (numpy, in the order of ``paths``)
    and the :class:`PaddingMeter` of the run.
    """

    def __init__(self, hf_dir, sser_dir, head, batch_size, save_dir):
        from speechbrain.integrations.huggingface.wavlm import WavLM
        from transformers import pipeline

        from sser_lobes import MeanPooling
        from sser_lobes.hf_utils import quiet_transformers
        from sser_lobes.inference import EmotionRecognizer

        self.batch_size = batch_size
        self.recognizer = EmotionRecognizer.from_hparams(str(sser_dir))
        self.labels = list(self.recognizer.labels)
        with quiet_transformers():
            self.pipe = pipeline("audio-classification", model=str(hf_dir))
            self.speechbrain = WavLM(
                source=str(hf_dir), save_path=str(save_dir), freeze=True
            ).eval()
        self.pooling = MeanPooling(head.input_size)
        self.head = head.eval()

    def _pipeline_probs(self, outputs):
        return [
            [{o["label"]: o["score"] for o in out}[label] for label in self.labels]
            for out in outputs
        ]

    def run_sser_batched(self, paths):
        with _metered(self.recognizer.mods.model, _valid_from_lens) as meter:
            results = self.recognizer.predict_files(paths, batch_size=self.batch_size)
        probs = [[r["probabilities"][c] for c in self.labels] for r in results]
        return np.array(probs), meter

    def run_sser_single(self, paths):
        with _metered(self.recognizer.mods.model, _valid_from_lens) as meter:
            probs = [self.recognizer.classify_file(p)[0].tolist() for p in paths]
        return np.array(probs), meter

    def run_pipeline_single(self, paths):
        with _metered(self.pipe.model, _valid_from_mask) as meter:
            outputs = [self.pipe(_read(p), top_k=None) for p in paths]
        return np.array(self._pipeline_probs(outputs)), meter

    def run_pipeline_batched(self, paths):
        with _metered(self.pipe.model, _valid_from_mask) as meter:
            outputs = self.pipe(
                [_read(p) for p in paths], batch_size=self.batch_size, top_k=None
            )
        return np.array(self._pipeline_probs(outputs)), meter

    def run_speechbrain_single(self, paths):
        probs = []
        with _metered(self.speechbrain.model, _valid_from_mask) as meter:
            for path in paths:
                wav = torch.from_numpy(_read(path))[None]
                with torch.no_grad():
                    feats = self.speechbrain(wav)
                    logits = self.head(self.pooling(feats))
                probs.append(torch.softmax(logits, dim=-1)[0].tolist())
        return np.array(probs), meter


# ------------------------------------------------------------ FLOPs, peak
def flops_per_audio_second(model, seconds=3.0):
    """FLOPs of one forward pass per second of audio (one utterance).

    Counted with ``torch.utils.flop_counter`` (matmuls and convolutions;
    a multiply-add is 2 FLOPs).

    Example
    -------
    >>> lin = torch.nn.Linear(16000, 1, bias=False)
    >>> flops_per_audio_second(lambda w: lin(w), seconds=1.0)
    32000.0
    """
    from torch.utils.flop_counter import FlopCounterMode

    wav = torch.randn(1, int(round(seconds * SAMPLE_RATE)))
    # no_grad, not inference_mode: weight-norm parametrisations fail under
    # the counter in inference mode.
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(wav)
    return counter.get_total_flops() / seconds


def matmul_gflops(size=2048, seconds=1.0):
    """Best fp32 matmul rate (GFLOP/s) of ``size`` x ``size`` products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


# ------------------------------------------------------------------- run
def run_benchmark(
    utterances=48,
    min_seconds=1.2,
    max_seconds=4.2,
    threads=2,
    batch_size=8,
    repeats=3,
    tiny=False,
    seed=0,
    tolerance=1e-5,
    workdir=None,
    log=print,
):
    """Build everything, time every mode and check the outputs agree.

    Returns
    -------
    dict
        The JSON report (see :func:`main`).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory())
        workdir = Path(workdir)
        files = make_audio_files(
            workdir / "audio", utterances, min_seconds, max_seconds, seed
        )
        paths = [str(p) for p, _ in files]
        audio_seconds = sum(n for _, n in files) / SAMPLE_RATE
        config = base_config(tiny=tiny)
        start = time.perf_counter()
        hf_dir, sser_dir, head = build_models(workdir, config, seed, max_seconds)
        systems = Systems(hf_dir, sser_dir, head, batch_size, workdir / "sb_cache")
        setup_seconds = time.perf_counter() - start
        params = sum(p.numel() for p in systems.recognizer.mods.model.parameters())
        log(
            f"{len(files)} files, {audio_seconds:.1f} s of audio; model "
            f"{params / 1e6:.3g} M parameters (hidden {config.hidden_size}, "
            f"{config.num_hidden_layers} layers); {threads} threads; "
            f"set-up {setup_seconds:.1f} s"
        )

        warm = paths[: max(2, min(batch_size, len(paths)))]
        for mode in MODES:
            getattr(systems, f"run_{mode}")(warm)
        times = {mode: [] for mode in MODES}
        outputs, meters = {}, {}
        names = list(MODES)
        for repeat in range(repeats):
            # Rotate the order so that no mode always follows the same one.
            shift = repeat % len(names)
            for mode in names[shift:] + names[:shift]:
                start = time.perf_counter()
                probs, meter = getattr(systems, f"run_{mode}")(paths)
                times[mode].append(time.perf_counter() - start)
                outputs[mode], meters[mode] = probs, meter
            log(
                f"repeat {repeat + 1}/{repeats}: "
                + ", ".join(f"{m} {times[m][-1]:.2f} s" for m in MODES)
            )

        # Counted on the stock HF model (eager attention: every product is
        # visible to the counter), the same function for every system.
        gflop = flops_per_audio_second(
            systems.pipe.model, (min_seconds + max_seconds) / 2
        )
        measured_peak = matmul_gflops(seconds=0.3 if tiny else 1.5)

    reference = outputs[REFERENCE]
    modes = {}
    for mode, description in MODES.items():
        seconds = statistics.median(times[mode])
        diff = float(np.abs(outputs[mode] - reference).max())
        same_label = float(np.mean(outputs[mode].argmax(1) == reference.argmax(1)))
        modes[mode] = {
            "description": description.replace("batch_size", f"batch {batch_size}"),
            "seconds": seconds,
            "all_seconds": times[mode],
            "utterances_per_second": len(paths) / seconds,
            "audio_seconds_per_second": audio_seconds / seconds,
            "padding_share": meters[mode].share,
            "model_calls": meters[mode].batches,
            "max_abs_diff_vs_pipeline": diff,
            "same_label_as_pipeline": same_label,
        }
    peers = [m for m in MODES if m not in OURS]
    best_peer = max(peers, key=lambda m: modes[m]["audio_seconds_per_second"])
    best_ours = max(OURS, key=lambda m: modes[m]["audio_seconds_per_second"])
    speedup = (
        modes[best_ours]["audio_seconds_per_second"]
        / modes[best_peer]["audio_seconds_per_second"]
    )
    ours_diff = max(modes[m]["max_abs_diff_vs_pipeline"] for m in OURS)
    ours_labels = min(modes[m]["same_label_as_pipeline"] for m in OURS)
    gflop_per_s = gflop / 1e9
    return {
        "settings": {
            "utterances": utterances,
            "min_seconds": min_seconds,
            "max_seconds": max_seconds,
            "threads": threads,
            "interop_threads": torch.get_num_interop_threads(),
            "batch_size": batch_size,
            "repeats": repeats,
            "tiny": tiny,
            "seed": seed,
        },
        "model": {
            "parameters": params,
            "hidden_size": config.hidden_size,
            "num_layers": config.num_hidden_layers,
            "feat_extract_norm": config.feat_extract_norm,
            "classes": len(LABELS),
        },
        "versions": _versions(),
        "audio_seconds": audio_seconds,
        "setup_seconds": setup_seconds,
        "modes": modes,
        "ours": best_ours,
        "best_peer": best_peer,
        "speedup_vs_best_peer": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "target_met": speedup >= TARGET_SPEEDUP,
        "gflop_per_audio_second": gflop_per_s,
        "roofline": {
            "brief_peak_gflops": BRIEF_PEAK_GFLOPS,
            "brief_audio_seconds_per_second": BRIEF_PEAK_GFLOPS / gflop_per_s,
            "measured_peak_gflops": measured_peak,
            "measured_audio_seconds_per_second": measured_peak / gflop_per_s,
        },
        "agreement": {
            "reference": REFERENCE,
            "tolerance": tolerance,
            "max_abs_diff_ours": ours_diff,
            "same_labels_ours": ours_labels,
            "probability_range": [float(reference.min()), float(reference.max())],
            "ok": bool(ours_diff <= tolerance and ours_labels == 1.0),
        },
    }


def _versions():
    import speechbrain
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "speechbrain": speechbrain.__version__,
    }


def format_report(report):
    """The results table and the summary lines, as text."""
    rows = [
        f"{'mode':<52} {'utt/s':>7} {'audio-s/s':>10} {'vs peer':>8} "
        f"{'padding':>8} {'max|dp| vs pipe':>16}"
    ]
    best_peer = report["modes"][report["best_peer"]]["audio_seconds_per_second"]
    for mode in report["modes"].values():
        rows.append(
            f"{mode['description']:<52} {mode['utterances_per_second']:>7.2f} "
            f"{mode['audio_seconds_per_second']:>10.2f} "
            f"{mode['audio_seconds_per_second'] / best_peer:>7.2f}x "
            f"{100 * mode['padding_share']:>7.1f}% "
            f"{mode['max_abs_diff_vs_pipeline']:>16.2e}"
        )
    roof = report["roofline"]
    agreement = report["agreement"]
    low, high = agreement["probability_range"]
    rows += [
        "",
        f"ours ({report['ours']}) vs best peer ({report['best_peer']}): "
        f"{report['speedup_vs_best_peer']:.2f}x (target "
        f"{report['target_speedup']}x: "
        f"{'met' if report['target_met'] else 'NOT met'})",
        f"model FLOPs: {report['gflop_per_audio_second']:.2f} GFLOP per audio second",
        f"fp32 roofline: {roof['brief_audio_seconds_per_second']:.1f} audio-s/s at "
        f"the brief's {roof['brief_peak_gflops']:.0f} GFLOP/s; "
        f"{roof['measured_audio_seconds_per_second']:.1f} audio-s/s at the "
        f"{roof['measured_peak_gflops']:.0f} GFLOP/s matmul rate measured now",
        f"agreement with {agreement['reference']}: max |dp| of ours "
        f"{agreement['max_abs_diff_ours']:.2e} (tolerance "
        f"{agreement['tolerance']:.0e}), same labels "
        f"{100 * agreement['same_labels_ours']:.0f}%, probabilities in "
        f"[{low:.3f}, {high:.3f}]: {'OK' if agreement['ok'] else 'FAILED'}",
        f"SpeechBrain's wrapper, one file at a time (no padding): max |dp| "
        f"{report['modes']['speechbrain_single']['max_abs_diff_vs_pipeline']:.2e} "
        "(its waveform layer norm has eps 1e-5, the feature extractor 1e-7)",
        f"the pipeline in batches differs from itself one at a time by up to "
        f"{report['modes']['pipeline_batched']['max_abs_diff_vs_pipeline']:.2e}: "
        "with a group-norm CNN (wavlm-base-plus), padding enters the statistics "
        "of the first layer's norm",
    ]
    return "\n".join(rows)


def main(argv=None):
    """Command line; returns 0, or 1 when the outputs do not agree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=None, help="default 48")
    parser.add_argument("--min-seconds", type=float, default=1.2)
    parser.add_argument("--max-seconds", type=float, default=4.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="default 3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--json", help="write the report to this file")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="hidden 32, 2 layers, 4 utterances, 1 repeat: a smoke test",
    )
    args = parser.parse_args(argv)
    utterances = args.utterances or (4 if args.tiny else 48)
    repeats = args.repeats or (1 if args.tiny else 3)
    report = run_benchmark(
        utterances=utterances,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        threads=args.threads,
        batch_size=args.batch_size,
        repeats=repeats,
        tiny=args.tiny,
        seed=args.seed,
        tolerance=args.tolerance,
    )
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if report["agreement"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
