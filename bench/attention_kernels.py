#!/usr/bin/env python3
"""sser's CPU training kernels against stock transformers and torch.

    python bench/attention_kernels.py [--seconds 14,15,16,17] [--rounds 5]
        [--threads 2] [--json out.json]

Where ``bench/train_throughput.py``'s code-path gain comes from, on the
same batch, weights and threads, in one process, interleaved over rounds
(median):

* **attention layer**: forward and backward of one WavLM attention layer
  (base size, random weights, training mode, attention dropout 0.1, the
  first layer, which computes the relative position bias) on a padded batch
  of utterances of ``--seconds`` (50 frames per second): transformers'
  ``WavLMAttention`` against sser's ``FastWavLMAttention`` (blocked attention
  on valid frames, :mod:`sser_lobes.encoders.fast_path.blocked_attention`);
* **dropout**: inverted dropout of a ``[batch, heads, time, time]`` tensor of
  the longest utterance: torch's ``F.dropout`` (``bernoulli_``) against
  :func:`sser_lobes.encoders.fast_path.cpu_dropout.dropout`, in ns per element, and the
  masks
  alone (``bernoulli_`` against
  :func:`sser_lobes.encoders.fast_path.cpu_dropout.drop_mask`).
"""

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

FRAMES_PER_SECOND = 50


def build(tiny=False, seed=0):
    """A stock WavLM attention layer and an sser copy of it (same weights)."""
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    from sser_lobes.encoders.fast_path.attention import FastWavLMAttention

    torch.manual_seed(seed)
    dim, heads = (32, 2) if tiny else (768, 12)
    stock = WavLMAttention(
        embed_dim=dim,
        num_heads=heads,
        dropout=0.1,
        num_buckets=320,
        max_distance=800,
        has_relative_position_bias=True,
    ).train()
    fast = copy.deepcopy(stock)
    fast.__class__ = FastWavLMAttention
    return stock, fast


def make_batch(seconds, dim, seed=0):
    """Hidden states ``[batch, frames, dim]``, a prefix attention mask and
    loss weights that are zero on padded frames."""
    gen = torch.Generator().manual_seed(seed)
    frames = [max(1, round(s * FRAMES_PER_SECOND)) for s in seconds]
    longest = max(frames)
    hidden = torch.randn(len(frames), longest, dim, generator=gen)
    mask = (torch.arange(longest)[None, :] < torch.tensor(frames)[:, None]).long()
    weights = torch.randn(hidden.shape, generator=gen) * mask[..., None]
    return hidden, mask, weights


def attention_step(layer, hidden, mask, weights):
    """Forward and backward of one attention layer; seconds."""
    x = hidden.clone().requires_grad_()
    start = time.perf_counter()
    out = layer(x, attention_mask=mask, index=0)[0]
    (out * weights).sum().backward()
    seconds = time.perf_counter() - start
    layer.zero_grad(set_to_none=True)
    return seconds


def dropout_seconds(drop, x):
    start = time.perf_counter()
    drop(x)
    return time.perf_counter() - start


def measure(args):
    from sser_lobes.encoders.fast_path.cpu_dropout import drop_mask, dropout

    torch.set_num_threads(args.threads)
    seconds = [float(s) for s in args.seconds.split(",")]
    stock, fast = build(args.tiny, args.seed)
    hidden, mask, weights = make_batch(seconds, stock.embed_dim, args.seed)
    longest = hidden.shape[1]
    scores = torch.randn(len(seconds), stock.num_heads, longest, longest)
    systems = {
        "attention: transformers WavLMAttention": lambda: attention_step(
            stock, hidden, mask, weights
        ),
        "attention: sser FastWavLMAttention": lambda: attention_step(
            fast, hidden, mask, weights
        ),
        "dropout: torch F.dropout": lambda: dropout_seconds(
            lambda x: F.dropout(x, 0.1, training=True), scores
        ),
        "dropout: sser cpu_dropout": lambda: dropout_seconds(
            lambda x: dropout(x, 0.1), scores
        ),
        "mask only: torch bernoulli_": lambda: dropout_seconds(
            lambda x: torch.empty_like(x).bernoulli_(0.9), scores
        ),
        "mask only: sser drop_mask": lambda: dropout_seconds(
            lambda x: drop_mask(tuple(x.shape), 0.1), scores
        ),
    }
    for run in systems.values():  # warm-up
        run()
    times = {name: [] for name in systems}
    names = list(systems)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(systems[name]())
    median = {name: statistics.median(values) for name, values in times.items()}
    elements = scores.numel()
    return {
        "benchmark": "attention_kernels",
        "seconds": seconds,
        "frames": longest,
        "tiny": args.tiny,
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg()[0],
        "median_seconds": median,
        "all_seconds": times,
        "dropout_ns_per_element": {
            name: 1e9 * value / elements
            for name, value in median.items()
            if name.startswith(("dropout", "mask"))
        },
        "ratios": {
            "attention layer, transformers / sser": median[names[0]] / median[names[1]],
            "dropout, torch / sser": median[names[2]] / median[names[3]],
            "mask only, torch / sser": median[names[4]] / median[names[5]],
        },
    }


def format_report(report):
    """The medians and ratios as a markdown table."""
    lines = [
        f"Utterances of {report['seconds']} s ({report['frames']} frames at most), "
        f"{report['threads']} threads, median of {report['rounds']} rounds, "
        f"load {report['load_average']:.1f}",
        "",
        "| system | median (ms) |",
        "|---|---:|",
    ]
    for name, value in report["median_seconds"].items():
        lines.append(f"| {name} | {1000 * value:.1f} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    for name, value in report["ratios"].items():
        lines.append(f"| {name} | {value:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", default="14,15,16,17")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--tiny", action="store_true", help="a tiny layer (tests)")
    args = parser.parse_args(argv)
    report = measure(args)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
