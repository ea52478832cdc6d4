"""CPU inference with int8 sser against fp32 sser, the PyTorch peers and
ONNX Runtime, like for like.

    python bench/benchmark_int8.py [--utterances 48] [--threads 2]
        [--batch-size 8] [--repeats 5] [--json out.json] [--tiny]

The set-up of ``bench/benchmark_inference.py`` (the same random base-size
WavLM, files, threads, interleaved rounds and medians; see the rules in
``bench/README.md``), with four more systems on the same weights:

* ``sser_int8_single`` / ``sser_int8_batched``: ``EmotionRecognizer.
  from_hparams(..., quantize="int8")`` (:mod:`sser_lobes.encoders.quantize`), one
  file at a time and ``predict_files``;
* ``onnxruntime_single`` / ``onnxruntime_batched``: ONNX Runtime (fp32, CPU
  provider, ``--threads`` intra-op threads) on the sser model exported with
  :func:`sser_lobes.inference.onnx_export.export_onnx` (``torch.onnx.export``; the
  stock transformers graph with sser's masking), one file at a time and on
  length-sorted batches
  (:class:`sser_lobes.inference.onnx_export.OnnxEmotionRecognizer`).

Ratios reported, each against the best configuration of the other side:
int8 sser vs the best PyTorch fp32 peer (targets: >= 1.8x), int8 sser vs the
best ONNX Runtime fp32 configuration (>= 1.4x), fp32 sser vs the best
PyTorch peer (>= 1.15x); each split into code path and batching as in
``benchmark_inference.py``. Agreement: int8 against fp32 sser (top-1
agreement and largest probability difference; random weights, so this is a
check of the plumbing, not of accuracy: ``bench/int8_agreement.py``
measures a trained model) and ONNX Runtime against the pipeline.
"""

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_inference as base  # noqa: E402

TARGETS = {
    "int8_vs_best_pytorch_peer": 1.8,
    "int8_vs_best_onnxruntime": 1.4,
    "fp32_vs_best_pytorch_peer": 1.15,
}
INT8_MODES = {
    "sser_int8_batched": (
        "sser int8 predict_files (sorted, batch_size)",
        "sser_int8",
        "batched",
    ),
    "sser_int8_single": (
        "sser int8 classify_file (1 file at a time)",
        "sser_int8",
        "single",
    ),
    "onnxruntime_batched": (
        "ONNX Runtime fp32, sser graph (sorted, batch_size)",
        "onnxruntime",
        "batched",
    ),
    "onnxruntime_single": (
        "ONNX Runtime fp32, sser graph (1 at a time)",
        "onnxruntime",
        "single",
    ),
}
FP32_OURS = ("sser_batched", "sser_single")
INT8_OURS = ("sser_int8_batched", "sser_int8_single")
ONNXRUNTIME = ("onnxruntime_batched", "onnxruntime_single")
PYTORCH_PEERS = tuple(m for m in base.MODES if m not in base.OURS)


class Int8Systems(base.Systems):
    """:class:`benchmark_inference.Systems` plus int8 sser and ONNX Runtime."""

    modes = {**base.MODES, **INT8_MODES}

    def __init__(self, hf_dir, sser_dir, head, batch_size, save_dir, threads):
        from sser_lobes.inference.onnx_export import export_onnx
        from sser_lobes.inference.recognizer import EmotionRecognizer

        super().__init__(hf_dir, sser_dir, head, batch_size, save_dir)
        self.int8 = EmotionRecognizer.from_hparams(str(sser_dir), quantize="int8")
        hparams = self.recognizer.hparams
        onnx_path = Path(sser_dir) / "model.onnx"  # next to its sser_model.json
        metadata = {
            "task": "categorical",
            "labels": self.labels,
            "sample_rate": int(hparams.sample_rate),
            "window_seconds": float(hparams.window_seconds),
            "chunk_hop_seconds": float(hparams.chunk_hop_seconds),
            "eval_crop_seconds": None,
            "min_samples": int(self.recognizer.min_samples),
        }
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        self.onnx_check = export_onnx(self.recognizer.mods.model, onnx_path, metadata)
        self.onnx_export_seconds = time.perf_counter() - start
        self.onnx = _metered_onnx_recognizer(onnx_path, threads)

    def run_sser_int8_batched(self, paths):
        return self._recognizer_batched(self.int8, paths)

    def run_sser_int8_single(self, paths):
        return self._recognizer_single(self.int8, paths)

    def run_onnxruntime_batched(self, paths):
        self.onnx.meter = meter = base.PaddingMeter()
        results = self.onnx.predict_files(paths, batch_size=self.batch_size)
        probs = [[r["probabilities"][c] for c in self.labels] for r in results]
        return np.array(probs), meter

    def run_onnxruntime_single(self, paths):
        self.onnx.meter = meter = base.PaddingMeter()
        probs = []
        for path in paths:
            wav = self.onnx.load_audio(path).numpy()[None]
            probs.append(self.onnx.predict_batch(wav, np.ones(1, np.float32))[0])
        return np.array(probs), meter


def _metered_onnx_recognizer(path, threads):
    """An OnnxEmotionRecognizer whose ``run`` counts padding in ``.meter``."""
    from sser_lobes.inference.onnx_export import OnnxEmotionRecognizer

    class MeteredOnnxEmotionRecognizer(OnnxEmotionRecognizer):
        meter = None

        def run(self, waveforms, wav_lens, calibrated=True):
            if self.meter is not None:
                valid = int(np.round(wav_lens * waveforms.shape[1]).sum())
                self.meter.add(torch.from_numpy(waveforms), valid)
            return super().run(waveforms, wav_lens, calibrated)

    return MeteredOnnxEmotionRecognizer(path, threads=threads)


def run_benchmark(
    utterances=48,
    min_seconds=1.2,
    max_seconds=4.2,
    threads=2,
    batch_size=8,
    repeats=5,
    tiny=False,
    seed=0,
    workdir=None,
    log=print,
):
    """Build everything, time every system; the JSON report."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    machine = base.machine_info()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory())
        start = time.perf_counter()
        paths, audio_seconds, config, hf_dir, sser_dir, head = base.setup(
            workdir, utterances, min_seconds, max_seconds, tiny, seed, log
        )
        systems = Int8Systems(
            hf_dir, sser_dir, head, batch_size, Path(workdir) / "sb", threads
        )
        setup_seconds = time.perf_counter() - start
        log(
            f"{len(paths)} files, {audio_seconds:.1f} s of audio; hidden "
            f"{config.hidden_size}, {config.num_hidden_layers} layers; {threads} "
            f"threads; set-up {setup_seconds:.1f} s (ONNX export and check "
            f"{systems.onnx_export_seconds:.1f} s); load "
            f"{machine['load_average_1min']}"
        )
        times, outputs, meters = base.time_systems(systems, paths, repeats, log)
    machine["load_average_1min_end"] = base._load()

    modes = base.mode_table(systems, times, outputs, meters, audio_seconds, batch_size)
    splits = {
        "int8_vs_best_pytorch_peer": base.speedup_split(
            modes, list(INT8_OURS), list(PYTORCH_PEERS)
        ),
        "int8_vs_best_onnxruntime": base.speedup_split(
            modes, list(INT8_OURS), list(ONNXRUNTIME)
        ),
        "fp32_vs_best_pytorch_peer": base.speedup_split(
            modes, list(FP32_OURS), list(PYTORCH_PEERS)
        ),
        "onnxruntime_vs_best_pytorch_peer": base.speedup_split(
            modes, list(ONNXRUNTIME), list(PYTORCH_PEERS)
        ),
        "int8_vs_fp32_sser": base.speedup_split(
            modes, list(INT8_OURS), list(FP32_OURS)
        ),
    }
    targets = {
        name: {
            "target": target,
            "ratio": splits[name]["headline"],
            "met": splits[name]["headline"] >= target,
        }
        for name, target in TARGETS.items()
    }
    fp32, int8 = outputs["sser_batched"], outputs["sser_int8_batched"]
    fp32_single, int8_single = outputs["sser_single"], outputs["sser_int8_single"]
    agreement = {
        "int8_vs_fp32_sser": {
            "top1_agreement_batched": float(np.mean(fp32.argmax(1) == int8.argmax(1))),
            "top1_agreement_single": float(
                np.mean(fp32_single.argmax(1) == int8_single.argmax(1))
            ),
            "max_abs_probability_diff": float(
                max(np.abs(fp32 - int8).max(), np.abs(fp32_single - int8_single).max())
            ),
            "int8_single_vs_batched_max_abs_diff": float(
                np.abs(int8 - int8_single).max()
            ),
            "note": "random weights: a plumbing check, see bench/int8_agreement.py",
        },
        "onnxruntime_vs_pipeline_max_abs_diff": max(
            modes[m]["max_abs_diff_vs_pipeline"] for m in ONNXRUNTIME
        ),
        "fp32_sser_vs_pipeline_max_abs_diff": max(
            modes[m]["max_abs_diff_vs_pipeline"] for m in FP32_OURS
        ),
        "onnx_export_check_max_abs_diff": systems.onnx_check,
        "probability_range": [float(fp32.min()), float(fp32.max())],
    }
    return {
        "figure": "int8",
        "command": base._command(),
        "machine": machine,
        "settings": {
            "utterances": utterances,
            "min_seconds": min_seconds,
            "max_seconds": max_seconds,
            "threads": threads,
            "batch_size": batch_size,
            "repeats": repeats,
            "tiny": tiny,
            "seed": seed,
            "int8_engine": _int8_engine(),
        },
        "model": {
            "hidden_size": config.hidden_size,
            "num_layers": config.num_hidden_layers,
            "feat_extract_norm": config.feat_extract_norm,
        },
        "versions": base._versions(),
        "audio_seconds": audio_seconds,
        "setup_seconds": setup_seconds,
        "modes": modes,
        "splits": splits,
        "targets": targets,
        "best_peer": splits["fp32_vs_best_pytorch_peer"]["best_peer"],
        "agreement": agreement,
    }


def _int8_engine():
    from sser_lobes.encoders.quantize import default_engine

    return default_engine()


def format_report(report):
    """The results table and the summary lines, as text."""
    rows = base.format_modes(report) + [""]
    labels = {
        "int8_vs_best_pytorch_peer": ("int8 sser", "the best PyTorch peer"),
        "int8_vs_best_onnxruntime": ("int8 sser", "the best ONNX Runtime"),
        "fp32_vs_best_pytorch_peer": ("fp32 sser", "the best PyTorch peer"),
        "onnxruntime_vs_best_pytorch_peer": ("ONNX Runtime", "the best PyTorch peer"),
        "int8_vs_fp32_sser": ("int8 sser", "the best fp32 sser"),
    }
    for name, split in report["splits"].items():
        rows.append(f"[{name}]")
        rows += base.format_split(split, *labels[name])
        if name in report["targets"]:
            target = report["targets"][name]
            rows.append(
                f"  target {target['target']}x: {'met' if target['met'] else 'NOT met'}"
            )
    agreement = report["agreement"]
    int8 = agreement["int8_vs_fp32_sser"]
    machine = report["machine"]
    rows += [
        "",
        f"int8 vs fp32 sser (random weights): top-1 agreement "
        f"{100 * int8['top1_agreement_batched']:.1f} % batched, "
        f"{100 * int8['top1_agreement_single']:.1f} % single; max |dp| "
        f"{int8['max_abs_probability_diff']:.3f} (probabilities in "
        f"[{agreement['probability_range'][0]:.3f}, "
        f"{agreement['probability_range'][1]:.3f}]); int8 alone vs batched "
        f"{int8['int8_single_vs_batched_max_abs_diff']:.1e}",
        f"ONNX Runtime vs the pipeline: max |dp| "
        f"{agreement['onnxruntime_vs_pipeline_max_abs_diff']:.1e}; fp32 sser "
        f"{agreement['fp32_sser_vs_pipeline_max_abs_diff']:.1e}",
        f"int8 engine {report['settings']['int8_engine']}; machine: "
        f"{machine['cpu']}, {machine['cores']} cores, load "
        f"{machine['load_average_1min']} -> {machine['load_average_1min_end']}, "
        f"{machine['date']}",
    ]
    return "\n".join(rows)


def markdown_row(report):
    """One row of the int8 table of ``bench/README.md``.

    Columns: date, machine (load), threads, int8 sser batched / single, fp32
    sser batched / single, best PyTorch peer, ONNX Runtime batched / single
    (audio-s/s), int8 vs best PyTorch peer, int8 vs best ONNX Runtime, fp32
    vs best PyTorch peer, int8-vs-fp32 max |dp| (random weights).
    """
    m, machine = report["modes"], report["machine"]
    splits, targets = report["splits"], report["targets"]

    def rate(name):
        return f"{m[name]['audio_seconds_per_second']:.1f}"

    def ratio(name):
        flag = " (met)" if targets[name]["met"] else " (not met)"
        return f"**{splits[name]['headline']:.2f}x**{flag}"

    peer = splits["fp32_vs_best_pytorch_peer"]["best_peer"]
    return (
        f"| {machine['date'][:10]} | {base.machine_cell(machine)} | "
        f"{report['settings']['threads']} | "
        f"{rate('sser_int8_batched')} / {rate('sser_int8_single')} | "
        f"{rate('sser_batched')} / {rate('sser_single')} | "
        f"{rate(peer)} ({peer}) | "
        f"{rate('onnxruntime_batched')} / {rate('onnxruntime_single')} | "
        f"{ratio('int8_vs_best_pytorch_peer')} | "
        f"{ratio('int8_vs_best_onnxruntime')} | "
        f"{ratio('fp32_vs_best_pytorch_peer')} | "
        f"{report['agreement']['int8_vs_fp32_sser']['max_abs_probability_diff']:.3f} |"
    )


def main(argv=None):
    """Command line; returns 0, or 1 when ONNX Runtime or fp32 sser disagree
    with the pipeline beyond 1e-4."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    base.add_common_arguments(parser)
    args = parser.parse_args(argv)
    report = run_benchmark(**base.common_options(args))
    base.print_outputs(report, format_report(report), markdown_row(report), args.json)
    agreement = report["agreement"]
    worst = max(
        agreement["onnxruntime_vs_pipeline_max_abs_diff"],
        agreement["fp32_sser_vs_pipeline_max_abs_diff"],
    )
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
