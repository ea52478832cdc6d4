"""CPU inference throughput of sser against the usual alternatives, like for like.

    python bench/benchmark_inference.py [--utterances 48] [--min-seconds 1.2]
        [--max-seconds 4.2] [--threads 2] [--batch-size 8] [--repeats 5]
        [--json out.json] [--tiny]

One process, one model, one set of files, the same threads for every system
(the rules of every figure are in ``bench/README.md``). A base-size WavLM
with random weights (hidden 768, 12 layers, the conv feature encoder of
``wavlm-base-plus``, about 94 M parameters) is built from a transformers
``WavLMConfig`` and saved to a temporary folder: nothing is downloaded. The
same weights serve

* ``sser_single`` / ``sser_batched``:
  :meth:`sser_lobes.inference.recognizer.EmotionRecognizer.classify_file` one file at a
  time, and :meth:`~sser_lobes.inference.recognizer.EmotionRecognizer.predict_files`
  (files sorted by length, batches of ``--batch-size``);
* ``pipeline_single`` / ``pipeline_batched``: ``transformers.pipeline(
  "audio-classification")`` on the saved ``WavLMForSequenceClassification``,
  one file at a time, and on the list of waveforms sorted by length with
  ``batch_size=`` (results put back in file order);
* ``speechbrain_single`` / ``speechbrain_batched``: SpeechBrain's stock
  wrapper ``speechbrain.integrations.huggingface.wavlm.WavLM`` (frozen,
  pointed at the local folder) followed by the same mean pooling and linear
  head as sser, one file at a time, and on length-sorted padded batches with
  relative lengths.

Every peer gets what a careful user of it would do: length-sorted batches
like sser's. The headline ratio is the best sser configuration against the
best peer configuration; single-file and batched figures are also reported
apart, and the headline is split into a code-path factor (sser one file at a
time against the best peer one file at a time) and a batching factor (the
rest: what sser's batching adds beyond the best peer's own batching).

The HF classifier is ``projector (768 -> 256) -> masked mean over frames ->
classifier (256 -> C)``. Averaging commutes with a linear map, so sser's
``MeanPooling -> LinearHead(768, C)`` with weight ``W_c @ W_p`` and bias
``W_c @ b_p + b_c`` is the same function (:func:`fold_linear_head`): every
system must give the same class probabilities, and the benchmark checks it
against the pipeline run one file at a time (the stock reference).

Reported per system: utterances and audio seconds per second (median over
``--repeats`` rounds; the systems are interleaved within each round, in an
order rotated every round, so that a slow moment of the machine hits them
all), the share of padded samples in what the model computed, and the
largest absolute difference of class probabilities from the pipeline's.
Also: the model's FLOPs per audio second (counted with
``torch.utils.flop_counter`` on the HF model) and the fp32 roofline at the
matmul rate measured in the run, the machine, its load average and the
date. The output ends with the JSON report and one markdown row for the
table of ``bench/README.md``.

Files are generated in a temporary folder: 16 kHz PCM16 wav, harmonic
"voiced" signals with noise, durations uniform in ``[min, max]``; everything
is seeded.
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

# Run as a script, the bench uses the sser_lobes of its own checkout.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000
LABELS = ["neu", "hap", "sad", "ang"]
#: Headline target of the fp32 figure (issue 11): sser >= 1.15x the best
#: peer configuration.
TARGET_SPEEDUP = 1.15
#: system -> (description, family, kind). "single" systems see one file per
#: model call; "batched" ones length-sorted padded batches.
MODES = {
    "sser_batched": ("sser predict_files (sorted, batch_size)", "sser", "batched"),
    "sser_single": ("sser classify_file (1 file at a time)", "sser", "single"),
    "pipeline_batched": (
        "HF audio-classification pipeline (sorted, batch_size)",
        "pipeline",
        "batched",
    ),
    "pipeline_single": (
        "HF audio-classification pipeline (1 at a time)",
        "pipeline",
        "single",
    ),
    "speechbrain_batched": (
        "SpeechBrain WavLM wrapper + same head (sorted, batch_size)",
        "speechbrain",
        "batched",
    ),
    "speechbrain_single": (
        "SpeechBrain WavLM wrapper + same head (1 at a time)",
        "speechbrain",
        "single",
    ),
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

    from sser_lobes.encoders.tiny_ssl import tiny_ssl_config

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
        feature extractor) and ``sser/`` (``sser_model.json`` and
        ``model.safetensors`` in :mod:`sser_lobes.inference.export`'s format).
    config : transformers.WavLMConfig
    seed : int
        Seed of the random weights.
    max_seconds : float
        Longest file: the export's window covers it (no chunking).

    Returns
    -------
    hf_dir, sser_dir : pathlib.Path
    head : sser_lobes.nnet.heads.LinearHead
        The folded head (shared with the SpeechBrain mode).
    """
    from transformers import Wav2Vec2FeatureExtractor, WavLMForSequenceClassification

    from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    from sser_lobes.encoders.hf_utils import quiet_transformers
    from sser_lobes.inference.export import write_model_folder
    from sser_lobes.nnet.description import describe_run

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
    window = float(max(10, math.ceil(max_seconds)))
    write_model_folder(sser_dir, describe_run(hparams, window), model)
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


def _sorted_batches(waveforms, batch_size):
    """Indices of ``waveforms`` sorted by length, cut into batches.

    Example
    -------
    >>> _sorted_batches([np.zeros(5), np.zeros(2), np.zeros(9)], 2)
    [[1, 0], [2]]
    """
    order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _padded(waveforms):
    """``[batch, max]`` float tensor and relative lengths of 1-D arrays."""
    longest = max(len(w) for w in waveforms)
    batch = torch.zeros(len(waveforms), longest)
    for row, wav in enumerate(waveforms):
        batch[row, : len(wav)] = torch.from_numpy(wav)
    return batch, torch.tensor([len(w) / longest for w in waveforms])


class Systems:
    """The ways of classifying the files, all built on one model.

    Each ``run_<mode>(paths)`` reads the files itself and returns the class
    probabilities ``[files, classes]`` (numpy, in the order of ``paths``)
    and the :class:`PaddingMeter` of the run.
    """

    modes = MODES

    def __init__(self, hf_dir, sser_dir, head, batch_size, save_dir):
        from speechbrain.integrations.huggingface.wavlm import WavLM
        from transformers import pipeline

        from sser_lobes import MeanPooling
        from sser_lobes.encoders.hf_utils import quiet_transformers
        from sser_lobes.inference.recognizer import EmotionRecognizer

        self.batch_size = batch_size
        self.sser_dir = sser_dir
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

    def _recognizer_batched(self, recognizer, paths):
        with _metered(recognizer.mods.model, _valid_from_lens) as meter:
            results = recognizer.predict_files(paths, batch_size=self.batch_size)
        probs = [[r["probabilities"][c] for c in self.labels] for r in results]
        return np.array(probs), meter

    def _recognizer_single(self, recognizer, paths):
        with _metered(recognizer.mods.model, _valid_from_lens) as meter:
            probs = [recognizer.classify_file(p)[0].tolist() for p in paths]
        return np.array(probs), meter

    def run_sser_batched(self, paths):
        return self._recognizer_batched(self.recognizer, paths)

    def run_sser_single(self, paths):
        return self._recognizer_single(self.recognizer, paths)

    def run_pipeline_single(self, paths):
        with _metered(self.pipe.model, _valid_from_mask) as meter:
            outputs = [self.pipe(_read(p), top_k=None) for p in paths]
        return np.array(self._pipeline_probs(outputs)), meter

    def run_pipeline_batched(self, paths):
        waveforms = [_read(p) for p in paths]
        order = [i for batch in _sorted_batches(waveforms, 1) for i in batch]
        with _metered(self.pipe.model, _valid_from_mask) as meter:
            outputs = self.pipe(
                [waveforms[i] for i in order], batch_size=self.batch_size, top_k=None
            )
        probs = np.zeros((len(paths), len(self.labels)))
        probs[order] = self._pipeline_probs(outputs)
        return probs, meter

    def _speechbrain_probs(self, wavs, lens):
        with torch.no_grad():
            feats = self.speechbrain(wavs, lens)
            logits = self.head(self.pooling(feats, lens))
        return torch.softmax(logits, dim=-1)

    def run_speechbrain_single(self, paths):
        probs = []
        with _metered(self.speechbrain.model, _valid_from_mask) as meter:
            for path in paths:
                wav = torch.from_numpy(_read(path))[None]
                probs.append(self._speechbrain_probs(wav, None)[0].tolist())
        return np.array(probs), meter

    def run_speechbrain_batched(self, paths):
        waveforms = [_read(p) for p in paths]
        probs = np.zeros((len(paths), len(self.labels)))
        with _metered(self.speechbrain.model, _valid_from_mask) as meter:
            for batch in _sorted_batches(waveforms, self.batch_size):
                wavs, lens = _padded([waveforms[i] for i in batch])
                probs[batch] = self._speechbrain_probs(wavs, lens).numpy()
        return probs, meter


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


# --------------------------------------------------------------- machine
#: CPU features that decide the int8 and bf16 kernels (from /proc/cpuinfo).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def machine_info():
    """CPU model and features, core count, load average and date of this run."""
    model = platform.processor() or platform.machine()
    flags = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
            if flags and model:
                break
    return {
        "cpu": model,
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "load_average_1min": _load(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _load():
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


def _versions():
    import speechbrain
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "speechbrain": speechbrain.__version__,
    }
    with contextlib.suppress(ImportError):
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return versions


# ------------------------------------------------------------------- run
def time_systems(systems, paths, repeats, log=print):
    """Run every mode of ``systems`` on ``paths`` in interleaved rounds.

    Written files are flushed to disk and a warm-up pass on a few files
    comes first. In round ``r`` the modes run
    in their order rotated by ``r``, so that no mode always follows the same
    one.

    Returns
    -------
    times : dict
        ``{mode: [seconds of each round]}``.
    outputs, meters : dict
        ``{mode: probabilities}`` and ``{mode: PaddingMeter}`` of the last
        round.
    """
    names = list(systems.modes)
    # The set-up wrote the models (several hundred MB): flush them now, so
    # that the kernel's write-back does not compete with the first round.
    if hasattr(os, "sync"):
        os.sync()
    warm = paths[: max(2, min(systems.batch_size, len(paths)))]
    for mode in names:
        getattr(systems, f"run_{mode}")(warm)
    times = {mode: [] for mode in names}
    outputs, meters = {}, {}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for mode in names[shift:] + names[:shift]:
            start = time.perf_counter()
            probs, meter = getattr(systems, f"run_{mode}")(paths)
            times[mode].append(time.perf_counter() - start)
            outputs[mode], meters[mode] = probs, meter
        log(
            f"round {repeat + 1}/{repeats} (load {_load()}): "
            + ", ".join(f"{m} {times[m][-1]:.2f} s" for m in names)
        )
    return times, outputs, meters


def mode_table(systems, times, outputs, meters, audio_seconds, batch_size):
    """Per-mode figures: medians, padding and differences from the reference."""
    reference = outputs[REFERENCE]
    modes = {}
    for mode, (description, family, kind) in systems.modes.items():
        seconds = statistics.median(times[mode])
        modes[mode] = {
            "description": description.replace("batch_size", f"batch {batch_size}"),
            "family": family,
            "kind": kind,
            "seconds": seconds,
            "all_seconds": times[mode],
            "utterances_per_second": len(outputs[mode]) / seconds,
            "audio_seconds_per_second": audio_seconds / seconds,
            "padding_share": meters[mode].share,
            "model_calls": meters[mode].batches,
            "max_abs_diff_vs_pipeline": float(np.abs(outputs[mode] - reference).max()),
            "same_label_as_pipeline": float(
                np.mean(outputs[mode].argmax(1) == reference.argmax(1))
            ),
        }
    return modes


def _best(modes, names):
    return max(names, key=lambda m: modes[m]["audio_seconds_per_second"])


def _rate(modes, name):
    return modes[name]["audio_seconds_per_second"]


def speedup_split(modes, ours, peers):
    """The headline ratio and how it splits into code path and batching.

    ``headline`` is the best of ``ours`` against the best of ``peers``, any
    configuration. ``code_path`` is ours one file at a time against the best
    peer one file at a time (same work, no padding on either side: only the
    code differs). ``batching`` is the rest, ``headline / code_path``: what
    our batching gains over our single-file run, divided by what the best
    peer configuration gains over the best single-file peer. Shares are in
    log terms (``log(code_path) / log(headline)``), given only when both
    factors are gains (>= 1) and the headline is above 1: otherwise the
    factors pull in opposite directions and only the factors are reported.

    Example
    -------
    >>> modes = {m: {"audio_seconds_per_second": r, "kind": k} for m, r, k in [
    ...     ("a_single", 10, "single"), ("a_batched", 15, "batched"),
    ...     ("p_single", 8, "single"), ("p_batched", 12, "batched")]}
    >>> split = speedup_split(modes, ["a_single", "a_batched"],
    ...                       ["p_single", "p_batched"])
    >>> split["headline"], split["code_path"], split["batching"]
    (1.25, 1.25, 1.0)
    >>> split["batched_vs_best_peer_batched"], split["ours_batching_gain"]
    (1.25, 1.5)
    """
    singles = [m for m in ours if modes[m]["kind"] == "single"]
    batched = [m for m in ours if modes[m]["kind"] == "batched"]
    peer_singles = [m for m in peers if modes[m]["kind"] == "single"]
    peer_batched = [m for m in peers if modes[m]["kind"] == "batched"]
    best_ours, best_peer = _best(modes, ours), _best(modes, peers)
    headline = _rate(modes, best_ours) / _rate(modes, best_peer)
    split = {"ours": best_ours, "best_peer": best_peer, "headline": headline}
    if singles and peer_singles:
        best_single, best_peer_single = (
            _best(modes, singles),
            _best(modes, peer_singles),
        )
        code_path = _rate(modes, best_single) / _rate(modes, best_peer_single)
        split.update(
            best_peer_single=best_peer_single,
            code_path=code_path,
            batching=headline / code_path,
            code_path_share=_share(code_path, headline),
            batching_share=_share(headline / code_path, headline),
        )
    if batched and peer_batched:
        best_batched = _best(modes, batched)
        best_peer_batched = _best(modes, peer_batched)
        split.update(
            best_peer_batched=best_peer_batched,
            batched_vs_best_peer_batched=_rate(modes, best_batched)
            / _rate(modes, best_peer_batched),
        )
        if singles:
            split["ours_batching_gain"] = _rate(modes, best_batched) / _rate(
                modes, _best(modes, singles)
            )
        if peer_singles:
            split["best_peer_batching_gain"] = _rate(modes, best_peer_batched) / _rate(
                modes, _best(modes, peer_singles)
            )
    return split


def _share(factor, total):
    """Share of ``log(total)`` that ``log(factor)`` is, when ``total`` > 1
    and both ``factor`` and ``total / factor`` are >= 1 (else None).

    Example
    -------
    >>> round(_share(1.2, 1.44), 3), _share(0.9, 1.2)
    (0.5, None)
    """
    if total <= 1 + 1e-9 or factor < 1 or total / factor < 1:
        return None
    return math.log(factor) / math.log(total)


def setup(workdir, utterances, min_seconds, max_seconds, tiny, seed, log):
    """Files and the saved models: ``(paths, audio_seconds, config, hf_dir,
    sser_dir, head)``."""
    files = make_audio_files(
        Path(workdir) / "audio", utterances, min_seconds, max_seconds, seed
    )
    paths = [str(p) for p, _ in files]
    audio_seconds = sum(n for _, n in files) / SAMPLE_RATE
    config = base_config(tiny=tiny)
    hf_dir, sser_dir, head = build_models(workdir, config, seed, max_seconds)
    return paths, audio_seconds, config, hf_dir, sser_dir, head


def run_benchmark(
    utterances=48,
    min_seconds=1.2,
    max_seconds=4.2,
    threads=2,
    batch_size=8,
    repeats=5,
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
    machine = machine_info()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory())
        start = time.perf_counter()
        paths, audio_seconds, config, hf_dir, sser_dir, head = setup(
            workdir, utterances, min_seconds, max_seconds, tiny, seed, log
        )
        systems = Systems(hf_dir, sser_dir, head, batch_size, Path(workdir) / "sb")
        setup_seconds = time.perf_counter() - start
        params = sum(p.numel() for p in systems.recognizer.mods.model.parameters())
        log(
            f"{len(paths)} files, {audio_seconds:.1f} s of audio; model "
            f"{params / 1e6:.3g} M parameters (hidden {config.hidden_size}, "
            f"{config.num_hidden_layers} layers); {threads} threads; "
            f"set-up {setup_seconds:.1f} s; load {machine['load_average_1min']}"
        )
        times, outputs, meters = time_systems(systems, paths, repeats, log)
        # Counted on the stock HF model (eager attention: every product is
        # visible to the counter), the same function for every system.
        gflop = flops_per_audio_second(
            systems.pipe.model, (min_seconds + max_seconds) / 2
        )
        measured_peak = matmul_gflops(seconds=0.3 if tiny else 1.5)
    machine["load_average_1min_end"] = _load()

    modes = mode_table(systems, times, outputs, meters, audio_seconds, batch_size)
    peers = [m for m in modes if m not in OURS]
    split = speedup_split(modes, list(OURS), peers)
    ours_diff = max(modes[m]["max_abs_diff_vs_pipeline"] for m in OURS)
    ours_labels = min(modes[m]["same_label_as_pipeline"] for m in OURS)
    reference = outputs[REFERENCE]
    gflop_per_s = gflop / 1e9
    return {
        "figure": "fp32",
        "command": _command(),
        "machine": machine,
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
        "split": split,
        "ours": split["ours"],
        "best_peer": split["best_peer"],
        "speedup_vs_best_peer": split["headline"],
        "target_speedup": TARGET_SPEEDUP,
        "target_met": split["headline"] >= TARGET_SPEEDUP,
        "gflop_per_audio_second": gflop_per_s,
        "roofline": {
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


def _command():
    argv = [sys.argv[0], *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    if argv and argv[0].endswith(".py"):
        argv[0] = f"bench/{Path(argv[0]).name}"
        return "python " + shlex.join(argv)
    return None


# ---------------------------------------------------------------- report
def format_modes(report):
    """The per-system table, as text."""
    rows = [
        f"{'system':<58} {'utt/s':>7} {'audio-s/s':>10} {'vs peer':>8} "
        f"{'padding':>8} {'max|dp| vs pipe':>16}"
    ]
    best_peer = report["modes"][report["best_peer"]]["audio_seconds_per_second"]
    for mode in report["modes"].values():
        rows.append(
            f"{mode['description']:<58} {mode['utterances_per_second']:>7.2f} "
            f"{mode['audio_seconds_per_second']:>10.2f} "
            f"{mode['audio_seconds_per_second'] / best_peer:>7.2f}x "
            f"{100 * mode['padding_share']:>7.1f}% "
            f"{mode['max_abs_diff_vs_pipeline']:>16.2e}"
        )
    return rows


def format_split(split, label="sser", peer_label="the best peer configuration"):
    """The headline ratio and its split, as text lines."""
    lines = [
        f"headline: {label} ({split['ours']}) vs {peer_label} "
        f"({split['best_peer']}): {split['headline']:.2f}x"
    ]
    if "code_path" in split:
        lines.append(
            f"  code path (one file at a time, vs {split['best_peer_single']}): "
            f"{split['code_path']:.2f}x; batching (the rest): "
            f"{split['batching']:.2f}x"
            + (
                f"; shares of the gain (log): code path "
                f"{100 * split['code_path_share']:.0f} %, batching "
                f"{100 * split['batching_share']:.0f} %"
                if split.get("code_path_share") is not None
                else "; no shares: the factors pull in opposite directions"
            )
        )
    if "batched_vs_best_peer_batched" in split:
        lines.append(
            f"  batched vs the best batched peer ({split['best_peer_batched']}): "
            f"{split['batched_vs_best_peer_batched']:.2f}x; batching gains "
            f"{split.get('ours_batching_gain', float('nan')):.2f}x for {label}, "
            f"{split.get('best_peer_batching_gain', float('nan')):.2f}x for the "
            "best peer"
        )
    return lines


def format_report(report):
    """The results table and the summary lines, as text."""
    roof = report["roofline"]
    agreement = report["agreement"]
    low, high = agreement["probability_range"]
    machine = report["machine"]
    rows = format_modes(report) + [""] + format_split(report["split"])
    rows += [
        f"target {report['target_speedup']}x: "
        f"{'met' if report['target_met'] else 'NOT met'}",
        f"model FLOPs: {report['gflop_per_audio_second']:.2f} GFLOP per audio "
        f"second; fp32 roofline {roof['measured_audio_seconds_per_second']:.1f} "
        f"audio-s/s at the {roof['measured_peak_gflops']:.0f} GFLOP/s matmul rate "
        "measured now",
        f"agreement with {agreement['reference']}: max |dp| of sser "
        f"{agreement['max_abs_diff_ours']:.2e} (tolerance "
        f"{agreement['tolerance']:.0e}), same labels "
        f"{100 * agreement['same_labels_ours']:.0f}%, probabilities in "
        f"[{low:.3f}, {high:.3f}]: {'OK' if agreement['ok'] else 'FAILED'}",
        "the batched peers differ from the pipeline one at a time (max |dp| "
        + ", ".join(
            f"{m} {report['modes'][m]['max_abs_diff_vs_pipeline']:.1e}"
            for m in report["modes"]
            if report["modes"][m]["kind"] == "batched" and m not in OURS
        )
        + "): with a group-norm CNN (wavlm-base-plus) padding enters the first "
        "layer's norm, and SpeechBrain layer-normalises the padded waveform",
        f"machine: {machine['cpu']}, {machine['cores']} cores, load "
        f"{machine['load_average_1min']} -> {machine['load_average_1min_end']}, "
        f"{machine['date']}",
    ]
    return "\n".join(rows)


def machine_cell(machine):
    """``2-core <CPU> with AMX, load 0.94``: the machine column of the tables.

    Example
    -------
    >>> machine_cell({"cores": 2, "cpu": "Xeon", "cpu_flags": ["amx_int8"],
    ...               "load_average_1min": 0.94})
    '2-core Xeon with AMX, load 0.94'
    """
    amx = " with AMX" if "amx_int8" in machine.get("cpu_flags", ()) else ""
    return (
        f"{machine['cores']}-core {machine['cpu']}{amx}, load "
        f"{machine['load_average_1min']}"
    )


def markdown_row(report):
    """One row of the fp32 table of ``bench/README.md``.

    Columns: date, machine (load), threads, sser batched / single, the peers
    batched / single (audio-s/s), headline, code path, batching, max |dp|.
    """
    m, split, machine = report["modes"], report["split"], report["machine"]

    def rate(name):
        return f"{m[name]['audio_seconds_per_second']:.1f}"

    return (
        f"| {machine['date'][:10]} | {machine_cell(machine)} | "
        f"{report['settings']['threads']} | "
        f"{rate('sser_batched')} / {rate('sser_single')} | "
        f"{rate('pipeline_batched')} / {rate('pipeline_single')} | "
        f"{rate('speechbrain_batched')} / {rate('speechbrain_single')} | "
        f"**{split['headline']:.2f}x** vs {split['best_peer']} | "
        f"{split.get('code_path', float('nan')):.2f}x | "
        f"{split.get('batching', float('nan')):.2f}x | "
        f"{report['agreement']['max_abs_diff_ours']:.0e} |"
    )


def add_common_arguments(parser, repeats=5):
    """The options shared by the bench scripts."""
    parser.add_argument("--utterances", type=int, default=None, help="default 48")
    parser.add_argument("--min-seconds", type=float, default=1.2)
    parser.add_argument("--max-seconds", type=float, default=4.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"rounds, default {repeats}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="hidden 32, 2 layers, 4 utterances, 1 round: a smoke test",
    )


def print_outputs(report, text, row, json_path=None):
    """Print the text report, the JSON and the markdown row; write the JSON."""
    print(text)
    print(json.dumps(report, indent=2))
    print(row)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")


def common_options(args):
    """``run_benchmark`` keyword arguments of :func:`add_common_arguments`'
    options (``--tiny`` defaults: 4 utterances, 1 round)."""
    return dict(
        utterances=args.utterances or (4 if args.tiny else 48),
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        threads=args.threads,
        batch_size=args.batch_size,
        repeats=args.repeats or (1 if args.tiny else 5),
        tiny=args.tiny,
        seed=args.seed,
    )


def main(argv=None):
    """Command line; returns 0, or 1 when the outputs do not agree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args(argv)
    report = run_benchmark(**common_options(args), tolerance=args.tolerance)
    print_outputs(report, format_report(report), markdown_row(report), args.json)
    return 0 if report["agreement"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
