#!/usr/bin/env python3
"""Training memory per second of audio, and what fits on a GPU (computed).

    python bench/memory.py [--models base large] [--seconds 4 12] [--json out.json]

For each configuration (WavLM base and large architectures, random weights,
partial fine-tuning as the recipes, with and without
``gradient_checkpointing``) one training step (forward, backward) runs in a
fresh subprocess on CPU in fp32, and the peak RSS increase during the step is
sampled every 2 ms: that is the memory of the activations kept for the
backward pass plus the gradients. The per-utterance activation memory is
fitted as ``a * L + c * L**2`` (L in seconds: linear layers and the
position-bias mask, quadratic attention) from two crop lengths, and checked
for linearity in the batch size.

The GPU table is **computed** from those measurements, not measured: weights
in fp32 (AMP keeps fp32 master weights), fp32 gradients and Adam's two fp32
states for the trained parameters, 1 GB for the CUDA context and allocator
slack, 10 % headroom, and half-precision activations taken as half the fp32
measurement. PyTorch's CPU attention keeps the attention probabilities for
the backward pass; CUDA's memory-efficient kernel does not, so the quadratic
term is an upper bound there.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

GPU_GB = (24, 40, 80)
CROPS = (4.0, 12.0, 30.0)
CONTEXT_GB = 1.0
HEADROOM = 0.9


def config_for(name):
    """WavLM base (microsoft/wavlm-base-plus) or large (microsoft/wavlm-large)."""
    from transformers import WavLMConfig

    if name == "base":
        return WavLMConfig(layerdrop=0.0)
    if name == "large":
        return WavLMConfig(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            conv_bias=True,
            layerdrop=0.0,
        )
    if name == "tiny":  # for tests
        from sser_lobes.tiny_ssl import tiny_ssl_config

        return tiny_ssl_config("wavlm", "layer", hidden_size=32, num_layers=2)
    raise ValueError(f"unknown model {name!r}")


def one_step(name, seconds, batch, checkpointing, threads):
    """Run in a subprocess: peak RSS increase (bytes) of one training step."""
    import torch
    from train_throughput import peak_rss

    from sser_lobes import EmotionModel, LinearHead, SSLEncoder, make_pooling

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = SSLEncoder(
        config=config_for(name).to_dict(),
        load_weights=False,
        finetune="partial",
        apply_spec_augment=False,
        gradient_checkpointing=checkpointing,
    )
    pooling = make_pooling("mean", encoder.output_size)
    model = EmotionModel(encoder, pooling, LinearHead(pooling.output_size, 4)).train()
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    wavs = 0.1 * torch.randn(batch, int(seconds * 16000))
    with peak_rss() as rss:
        out = model(wavs, torch.ones(batch))["logits"]
        out.float().pow(2).mean().backward()
    return {"peak_increase": rss["increase"], "trained": trained, "params": total}


def measure(name, seconds, batch, checkpointing, threads):
    """``one_step`` in a fresh interpreter (a clean RSS baseline)."""
    request = json.dumps([name, seconds, batch, checkpointing, threads])
    proc = subprocess.run(
        [sys.executable, str(HERE / "memory.py"), "--one-step", request],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit(points):
    """``(a, c)`` of ``mem = a * L + c * L**2`` through two (L, mem) points."""
    (l1, m1), (l2, m2) = points
    c = (m2 / l2 - m1 / l1) / (l2 - l1)
    a = m1 / l1 - c * l1
    return a, max(c, 0.0)


def largest_batch(gb, static, a, c, crop, half=True):
    """Largest batch of ``crop``-second utterances that fits in ``gb``."""
    per_utterance = (a * crop + c * crop**2) * (0.5 if half else 1.0)
    free = gb * 1e9 * HEADROOM - CONTEXT_GB * 1e9 - static
    return max(0, math.floor(free / per_utterance))


def run(args):
    rows = {}
    for name in args.models:
        for checkpointing in (False, True):
            key = f"{name}, {'checkpointing' if checkpointing else 'no checkpointing'}"
            points, extra = [], None
            for seconds in args.seconds:
                result = measure(name, seconds, 1, checkpointing, args.threads)
                points.append((seconds, result["peak_increase"]))
                print(
                    f"{key}: {seconds:g} s -> {result['peak_increase'] / 1e6:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
            extra = measure(name, args.seconds[0], 2, checkpointing, args.threads)
            a, c = fit(points)
            params, trained = extra["params"], extra["trained"]
            # fp32 weights + fp32 grads and Adam's two states for trained ones
            static = 4 * params + 12 * trained
            rows[key] = {
                "model": name,
                "checkpointing": checkpointing,
                "params": params,
                "trained_params": trained,
                "measured_bytes": {f"{s:g}": m for s, m in points},
                "batch2_bytes_at_first_length": extra["peak_increase"],
                "linearity_batch2_over_2x_batch1": extra["peak_increase"]
                / (2 * points[0][1]),
                "fp32_mb_per_second": {f"{s:g}": m / s / 1e6 for s, m in points},
                "fit_a_bytes_per_s": a,
                "fit_c_bytes_per_s2": c,
                "static_gb": static / 1e9,
                "largest_batch": {
                    f"{crop:g}s": {
                        f"{gb}GB": largest_batch(gb, static, a, c, crop)
                        for gb in GPU_GB
                    }
                    for crop in CROPS
                },
            }
    return {
        "benchmark": "memory",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "threads": args.threads,
        "assumptions": (
            f"computed: fp32 weights + fp32 grads + Adam states, {CONTEXT_GB:g} GB "
            f"CUDA context, {100 * (1 - HEADROOM):g} % headroom, fp16/bf16 "
            "activations = half the fp32 CPU measurement"
        ),
        "rows": rows,
    }


def format_report(report):
    lines = [
        "| configuration | training memory per s of audio (fp32, measured) | "
        + " | ".join(
            f"largest batch of {c:g} s, {g} GB" for c in CROPS[1:2] for g in GPU_GB
        )
        + " |",
        "|---|---|" + "---:|" * len(GPU_GB),
    ]
    for key, row in report["rows"].items():
        per_s = ", ".join(
            f"{v:.0f} MB at {s} s" for s, v in row["fp32_mb_per_second"].items()
        )
        cells = [str(row["largest_batch"][f"{CROPS[1]:g}s"][f"{g}GB"]) for g in GPU_GB]
        lines.append(f"| {key} | {per_s} | " + " | ".join(cells) + " |")
    lines += ["", "Largest batch (computed, fp16/bf16) by crop length:", ""]
    lines += [
        "| configuration | crop | 24 GB | 40 GB | 80 GB |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, row in report["rows"].items():
        for crop, sizes in row["largest_batch"].items():
            lines.append(
                f"| {key} | {crop} | "
                + " | ".join(str(sizes[f"{g}GB"]) for g in GPU_GB)
                + " |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["base", "large"])
    parser.add_argument("--seconds", nargs=2, type=float, default=[4.0, 12.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--one-step", help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args(argv)
    if args.one_step:
        sys.path.insert(0, str(HERE))
        print(json.dumps(one_step(*json.loads(args.one_step))))
        return None
    report = run(args)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
