#!/usr/bin/env python3
"""Training memory per second of audio, and what fits on a GPU (computed).

    python bench/memory.py [--models base large] [--seconds 4 8 12] [--json out.json]

For each configuration (WavLM base and large architectures, random weights,
partial fine-tuning as the recipes, with and without
``gradient_checkpointing``) one training step (forward, backward) runs in a
fresh subprocess on CPU in fp32. Two things are measured: the bytes of the
activations autograd keeps for the backward pass (``saved_for_backward``:
every saved tensor, once per storage, parameters left out; what a GPU must
hold between forward and backward), and the peak RSS increase of the step
(sampled every 2 ms; it also holds what the CPU allocator keeps after a free,
so it is reported but not used). The saved bytes are fitted through three
crop lengths as ``g + a * L + c * L**2`` (L in seconds): ``g`` per step,
``a * L`` the per-utterance activations of the linear layers, convolutions
and norms, ``c * L**2`` those of attention. A batch of two checks that the
per-utterance part grows with the batch.

The GPU table is **computed** from those measurements, not measured: weights
in fp32 (AMP keeps fp32 master weights), fp32 gradients and Adam's two fp32
states for the trained parameters, 1 GB for the CUDA context and allocator
slack, 10 % headroom, and half-precision activations taken as half the fp32
measurement. PyTorch's CPU attention keeps the attention probabilities for
the backward pass; CUDA's memory-efficient kernel does not, so the quadratic
term is an upper bound there.
"""

import argparse
import contextlib
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
        from sser_lobes.encoders.tiny_ssl import tiny_ssl_config

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
        with saved_for_backward(model) as saved:
            out = model(wavs, torch.ones(batch))["logits"]
        out.float().pow(2).mean().backward()
    return {
        "peak_increase": rss["increase"],
        "saved_bytes": saved["bytes"],
        "trained": trained,
        "params": total,
    }


@contextlib.contextmanager
def saved_for_backward(model):
    """Bytes of the activations autograd keeps for the backward pass.

    Counted with ``torch.autograd.graph.saved_tensors_hooks`` on every tensor
    saved during the forward pass, once per storage, leaving out the model's
    parameters. Under non-reentrant gradient checkpointing, the layers' own
    saved tensors go to the checkpoint's hooks and only what it keeps (the
    layer inputs) is counted, which is what stays in memory. This is the
    memory a GPU must hold between forward and backward, independent of the
    allocator (the CPU's peak RSS also holds freed memory the allocator keeps).

    Example
    -------
    >>> import torch
    >>> layer = torch.nn.Linear(4, 3)
    >>> with saved_for_backward(layer) as saved:
    ...     y = layer(torch.randn(10, 4, requires_grad=True))
    >>> saved["bytes"]  # the input (10 x 4 floats); the weight is not counted
    160
    """
    import torch

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = set()
    result = {"bytes": 0}

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in parameters and key not in seen and storage.nbytes():
            seen.add(key)
            result["bytes"] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield result


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
    """``(g, a, c)`` of ``mem = g + a * L + c * L**2`` through (L, mem) points.

    Exact through three points (least squares through more); with a negative
    curvature (measurement noise) the line ``g + a * L`` is fitted instead.

    Example
    -------
    >>> points = [(L, 10 + 2 * L + L**2) for L in (4, 8, 12)]
    >>> [round(v, 6) for v in fit(points)]
    [10.0, 2.0, 1.0]
    """
    import numpy as np

    lengths = np.array([p[0] for p in points], dtype=float)
    memory = np.array([p[1] for p in points], dtype=float)
    if len(points) >= 3:
        c, a, g = np.polyfit(lengths, memory, 2)
        if c >= 0:
            return float(g), float(a), float(c)
    a, g = np.polyfit(lengths, memory, 1)
    return float(g), float(a), 0.0


def per_utterance(a, c, layer, crop):
    """fp32 bytes one ``crop``-second utterance needs: what autograd keeps,
    plus, with checkpointing, the layer being recomputed (``layer``)."""
    return (a + layer[0]) * crop + (c + layer[1]) * crop**2


def largest_batch(gb, static, step, a, c, crop, half=True, layer=(0.0, 0.0)):
    """Largest batch of ``crop``-second utterances that fits in ``gb``.

    ``static``: weights, gradients and Adam states; ``step``: the measured
    per-step saved memory; ``a``, ``c``: per-utterance terms; ``layer``: the
    ``(a, c)`` of one transformer layer's activations, which a checkpointed
    layer holds while it is recomputed in the backward pass.
    """
    needed = per_utterance(a, c, layer, crop) * (0.5 if half else 1.0)
    free = gb * 1e9 * HEADROOM - CONTEXT_GB * 1e9 - static - step
    return max(0, math.floor(free / needed))


def run(args):
    rows = {}
    for name in args.models:
        for checkpointing in (False, True):
            key = f"{name}, {'checkpointing' if checkpointing else 'no checkpointing'}"
            points, peaks, extra = [], [], None
            for seconds in args.seconds:
                result = measure(name, seconds, 1, checkpointing, args.threads)
                points.append((seconds, result["saved_bytes"]))
                peaks.append((seconds, result["peak_increase"]))
                saved_mb = result["saved_bytes"] / 1e6
                peak_mb = result["peak_increase"] / 1e6
                print(
                    f"{key}: {seconds:g} s -> {saved_mb:.0f} MB saved for backward, "
                    f"peak RSS +{peak_mb:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
            extra = measure(name, args.seconds[0], 2, checkpointing, args.threads)
            g, a, c = fit(points)
            if not checkpointing:
                # One layer's share of the activations: what a checkpointed
                # layer holds again while it is recomputed.
                layers = config_for(name).num_hidden_layers
                one_layer = (a / layers, c / layers)
            layer = one_layer if checkpointing else (0.0, 0.0)
            params, trained = extra["params"], extra["trained"]
            # fp32 weights + fp32 grads and Adam's two states for trained ones
            static = 4 * params + 12 * trained
            # Saved activations do not include the gradients (in static).
            step = max(0.0, g)
            first = points[0][0]
            predicted2 = g + 2 * (a * first + c * first**2)
            rows[key] = {
                "model": name,
                "checkpointing": checkpointing,
                "params": params,
                "trained_params": trained,
                "measured_bytes": {f"{s:g}": m for s, m in points},
                "peak_rss_increase_bytes": {f"{s:g}": m for s, m in peaks},
                "batch2_bytes_at_first_length": extra["saved_bytes"],
                "batch2_measured_over_predicted": extra["saved_bytes"] / predicted2,
                "fp32_mb_per_second": {f"{s:g}": m / s / 1e6 for s, m in points},
                "fit_step_bytes": g,
                "fit_a_bytes_per_s": a,
                "fit_c_bytes_per_s2": c,
                "per_utterance_mb_per_second": {
                    f"{crop:g}": per_utterance(a, c, layer, crop) / crop / 1e6
                    for crop in CROPS
                },
                "static_gb": static / 1e9,
                "largest_batch": {
                    f"{crop:g}s": {
                        f"{gb}GB": largest_batch(
                            gb, static, step, a, c, crop, layer=layer
                        )
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
            f"computed: fp32 weights + fp32 grads + Adam states, the measured "
            f"per-step buffers, {CONTEXT_GB:g} GB CUDA context, "
            f"{100 * (1 - HEADROOM):g} % headroom, fp16/bf16 activations = half "
            "the fp32 CPU measurement"
        ),
        "rows": rows,
    }


def format_report(report):
    lines = [
        "| configuration | kept for backward, one utterance (fp32, measured) "
        "| per s of audio, plus the layer being recomputed (fitted; 4 / 12 / 30 s) | "
        + " | ".join(
            f"largest batch of {c:g} s, {g} GB" for c in CROPS[1:2] for g in GPU_GB
        )
        + " |",
        "|---|---|---|" + "---:|" * len(GPU_GB),
    ]
    for key, row in report["rows"].items():
        peaks = ", ".join(
            f"{m / 1e6:.0f} MB at {s} s" for s, m in row["measured_bytes"].items()
        )
        per_s = " / ".join(
            f"{v:.0f}" for v in row["per_utterance_mb_per_second"].values()
        )
        cells = [str(row["largest_batch"][f"{CROPS[1]:g}s"][f"{g}GB"]) for g in GPU_GB]
        lines.append(f"| {key} | {peaks} | {per_s} MB | " + " | ".join(cells) + " |")
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
    parser.add_argument("--seconds", nargs="+", type=float, default=[4.0, 8.0, 12.0])
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
