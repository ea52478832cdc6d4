#!/usr/bin/env python3
"""Fine-tuning on a budget: top-k layers from a cache, and LoRA, against
partial fine-tuning.

    python bench/finetune_budget.py [--utterances 48] [--rounds 2] [--steps 0]
        [--threads 2] [--trainable-layers 3] [--rank 16] [--json out.json]
        [--tiny]

One process, one set of utterances, one base model, the same batches and
optimizer steps for every system (the rules of ``bench/README.md``): a
base-size WavLM with random weights (the architecture of
``microsoft/wavlm-base-plus``, layerdrop 0), the IEMOCAP recipe's model on
top (utterance output norm, mean pooling, ``Linear(768 -> 4, bias=False)``,
cross-entropy, Adam 1e-4 for the head and 1e-5 for the encoder, clipping at
5 per optimiser), batch size 4, duration buckets, 2 threads, ``--utterances``
seeded utterances drawn from IEMOCAP's duration profile. The systems:

* **partial**: ``--finetune=partial`` (CNN frozen, the 12 layers trained),
  the recipes' default;
* **top-3 from audio**: ``--finetune=top --trainable_layers=3``: the CNN and
  the 9 lower layers run in eval mode without gradients at every step;
* **top-3 from the cache**: the same with ``--feature_cache=True``, from the
  second epoch on: each step reads the stored input of layer 10
  (:class:`~sser_lobes.training.feature_cache.FeatureCache`, float32 ``.npy``
  files), pads it as the recipes' loader does and runs the 3 top layers;
  filling the cache (the first epoch's extra work) is timed apart;
* **LoRA r=16 on all layers**: ``--finetune=lora`` (alpha 32, attention and
  feed-forward), every step through the whole model;
* **LoRA r=16 on the top 3 from the cache**: ``--finetune=lora
  --trainable_layers=3 --feature_cache=True`` (the same cache entries: the
  frozen part is the same).

Every system trains one epoch per round (or its first ``--steps`` batches),
on the same batches, in a rotated order; the figure is the median over the
rounds. Reported per system: audio-seconds trained per second
(valid audio; padding excluded), the trained parameters, the optimiser's
state (Adam's moments, measured on its tensors after the epochs), and the
memory autograd keeps for the backward pass of one step on a fixed batch
(``bench/memory.py``'s method: every saved tensor once per storage,
parameters left out). Targets (issue 23): top-3 from the cache at least 4x
partial's throughput; LoRA's optimiser state at most 5 % of partial's.

The half-precision storage of the cache (``--feature_cache_dtype=float16``
or ``bfloat16``) is measured against float32 on the same batch: the stored
state's relative error, and what reaches the features, the loss and the
gradients of the top-3 model.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from memory import saved_for_backward  # noqa: E402
from train_throughput import (  # noqa: E402
    BATCH_SIZE,
    SAMPLE_RATE,
    bucketed_batches,
    durations_for,
    make_waveforms,
    pad,
    recipe_model,
    recipe_update,
    write_model,
)

TARGET_CACHE_SPEEDUP = 4.0
TARGET_LORA_OPTIMIZER_SHARE = 0.05


class Step:
    """One system: the recipe's model in a fine-tuning mode, its two
    optimisers, and one optimizer step on a batch of utterance indices."""

    def __init__(self, name, folder, finetune, cache=None, **options):
        self.name = name
        torch.manual_seed(0)  # the same head (and adapters) in every round
        self.model, self.optimizers, self.trained = recipe_model(
            folder, finetune, **options
        )
        self.cache = cache  # (FeatureCache, names) or None: from audio

    def forward(self, waveforms, indices):
        if self.cache is None:
            wavs, lens, _ = pad(waveforms)
            return self.model(wavs, lens)["logits"]
        from speechbrain.dataio.batch import PaddedBatch

        cache, names = self.cache
        rows = [{"hidden": torch.from_numpy(cache.load(names[i]))} for i in indices]
        hidden, lens = PaddedBatch(rows).hidden
        return self.model(hidden=hidden, hidden_lens=lens)["logits"]

    def step(self, waveforms, labels, indices):
        logits = self.forward(waveforms, indices)
        return recipe_update(logits, labels, self.optimizers)

    def optimizer_bytes(self):
        """Bytes of the optimisers' state tensors (Adam's two moments)."""
        return sum(
            value.numel() * value.element_size()
            for optimizer in self.optimizers
            for state in optimizer.state.values()
            for value in state.values()
            if torch.is_tensor(value)
        )

    def kept_for_backward(self, waveforms, labels, indices):
        """Bytes autograd keeps between forward and backward for one step."""
        with saved_for_backward(self.model) as saved:
            logits = self.forward(waveforms, indices)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        return saved["bytes"]


def fill_cache(folder, encoder, wavs, dtype="float32"):
    """Store the input of the first trained layer of every utterance (longest
    first, batches of 8, as the recipes fill); returns (cache, names,
    seconds)."""
    from sser_lobes.encoders.ssl_encoder import relative_to_absolute
    from sser_lobes.training.feature_cache import FeatureCache, fill_batches

    cache = FeatureCache(folder, encoder, dtype)
    cache.create()
    names = {i: f"{i:04d}-bench" for i in range(len(wavs))}
    missing = cache.missing(names)
    start = time.perf_counter()
    durations = [len(wavs[i]) / SAMPLE_RATE for i in missing]
    with torch.no_grad():
        for batch in fill_batches(durations, 8):
            ids = [missing[b] for b in batch]
            padded, lens, _ = pad([wavs[i] for i in ids])
            hidden, hidden_lens = encoder.hidden_states(padded, lens)
            frames = relative_to_absolute(hidden_lens, hidden.shape[1]).tolist()
            for row, i in enumerate(ids):
                cache.store(names[i], hidden[row, : frames[row]].numpy())
    return cache, names, time.perf_counter() - start


def storage_error(system, wavs, labels, batch, tmp):
    """float16 / bfloat16 cache storage against float32 on one batch: the
    relative errors of the stored state, the features, the loss and the
    gradients (dropout masks replayed)."""
    from sser_lobes.training.feature_cache import _from_storage, _to_storage

    encoder = system.model.encoder
    padded, lens, _ = pad([wavs[i] for i in batch])
    with torch.no_grad():
        hidden, hidden_lens = encoder.hidden_states(padded, lens)

    def run(state):
        system.model.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        out = system.model(hidden=state, hidden_lens=hidden_lens)
        loss = torch.nn.functional.cross_entropy(out["logits"], labels[batch])
        loss.backward()
        grads = torch.cat(
            [p.grad.flatten() for p in system.model.parameters() if p.grad is not None]
        )
        with torch.no_grad():
            feats, _ = encoder.features_from_hidden(state, hidden_lens)
        return feats, float(loss.detach()), grads

    reference = run(hidden)
    report = {}
    for dtype in ("float16", "bfloat16"):
        stored = _from_storage(_to_storage(hidden.numpy(), dtype), dtype)
        stored = torch.from_numpy(stored)
        feats, loss, grads = run(stored)
        report[dtype] = {
            "stored_state": float((stored - hidden).norm() / hidden.norm()),
            "features": float((feats - reference[0]).norm() / reference[0].norm()),
            "loss": abs(loss - reference[1]) / abs(reference[1]),
            "gradients": float((grads - reference[2]).norm() / reference[2].norm()),
        }
    system.model.zero_grad(set_to_none=True)
    return report


def measure(args):
    torch.set_num_threads(args.threads)
    durations = durations_for("iemocap", args.utterances, args.seed)
    wavs, labels = make_waveforms(durations, args.seed)
    tmp = Path(tempfile.mkdtemp())
    folder = write_model(tmp / "wavlm_random", args.seed, tiny=args.tiny)
    k, rank = args.trainable_layers, args.rank
    load_start = os.getloadavg()[0]
    systems = {
        "partial": Step("partial", folder, "partial"),
        f"top-{k} from audio": Step("top", folder, "top", trainable_layers=k),
    }
    cached_top = Step("top cached", folder, "top", trainable_layers=k)
    cache, names, fill_seconds = fill_cache(
        tmp / "cache", cached_top.model.encoder, wavs
    )
    cached_top.cache = (cache, names)
    systems[f"top-{k} from the cache"] = cached_top
    systems[f"LoRA r={rank}, all layers"] = Step(
        "lora", folder, "lora", lora_rank=rank, lora_alpha=2 * rank
    )
    cached_lora = Step(
        "lora top",
        folder,
        "lora",
        trainable_layers=k,
        lora_rank=rank,
        lora_alpha=2 * rank,
    )
    lora_cache, lora_names, lora_fill = fill_cache(
        tmp / "cache", cached_lora.model.encoder, wavs
    )
    cached_lora.cache = (lora_cache, lora_names)
    systems[f"LoRA r={rank}, top {k} from the cache"] = cached_lora

    # One warm-up step each (allocator, oneDNN primitives).
    for system in systems.values():
        system.step([wavs[0], wavs[1]], labels[:2], [0, 1])
    results = {name: [] for name in systems}
    rates = {name: [] for name in systems}
    names_order = list(systems)
    audio_seconds = []
    for round_index in range(args.rounds):
        shift = round_index % len(names_order)
        order = names_order[shift:] + names_order[:shift]
        batches = bucketed_batches(durations, round_index + 1, args.seed)
        if args.steps:
            batches = batches[: args.steps]
        valid = sum(len(wavs[i]) for batch in batches for i in batch)
        audio_seconds.append(valid / SAMPLE_RATE)
        for name in order:
            system = systems[name]
            start = time.perf_counter()
            for batch in batches:
                system.step([wavs[i] for i in batch], labels[batch], batch)
            seconds = time.perf_counter() - start
            results[name].append(seconds)
            rates[name].append(valid / SAMPLE_RATE / seconds)
            print(
                f"round {round_index + 1}: {name}: {seconds:.1f} s, "
                f"{valid / SAMPLE_RATE / seconds:.2f} audio-s/s",
                file=sys.stderr,
                flush=True,
            )
    # Memory kept for backward, on the batch of the median duration.
    order = np.argsort(durations)
    middle = len(order) // 2
    fixed = sorted(int(i) for i in order[middle - 2 : middle + 2])
    rows = {}
    for name, system in systems.items():
        seconds = float(np.median(results[name]))
        kept = system.kept_for_backward([wavs[i] for i in fixed], labels[fixed], fixed)
        rows[name] = {
            "audio_seconds_per_second": float(np.median(rates[name])),
            "audio_seconds_per_second_all": rates[name],
            "epoch_seconds": seconds,
            "epoch_seconds_all": results[name],
            "trained_parameters": system.trained,
            "optimizer_state_bytes": system.optimizer_bytes(),
            "kept_for_backward_bytes": kept,
        }
    base = rows["partial"]
    for row in rows.values():
        row["speed_vs_partial"] = (
            row["audio_seconds_per_second"] / base["audio_seconds_per_second"]
        )
        row["optimizer_state_vs_partial"] = (
            row["optimizer_state_bytes"] / base["optimizer_state_bytes"]
        )
        row["kept_for_backward_vs_partial"] = (
            row["kept_for_backward_bytes"] / base["kept_for_backward_bytes"]
        )
    top_cached = rows[f"top-{k} from the cache"]["speed_vs_partial"]
    lora_share = rows[f"LoRA r={rank}, all layers"]["optimizer_state_vs_partial"]
    errors = storage_error(cached_top, wavs, labels, fixed, tmp)
    return {
        "benchmark": "finetune_budget",
        "model": "tiny WavLM" if args.tiny else "base-size WavLM, random weights",
        "utterances": args.utterances,
        "steps_per_epoch": len(batches),
        "audio_seconds_per_epoch": audio_seconds,
        "durations": {
            "mean": float(np.mean(durations)),
            "sd": float(np.std(durations)),
            "min": float(np.min(durations)),
            "max": float(np.max(durations)),
        },
        "memory_batch_seconds": [len(wavs[i]) / SAMPLE_RATE for i in fixed],
        "rounds": args.rounds,
        "threads": args.threads,
        "trainable_layers": k,
        "rank": rank,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "utterances_audio_seconds": float(np.sum(durations)),
        "cache_fill_seconds": fill_seconds,
        "cache_fill_second_system_seconds": lora_fill,
        "cache_bytes_per_audio_hour": cache.bytes_per_second() * 3600,
        "systems": rows,
        "storage_error": errors,
        "targets": {
            f"top-{k} from the cache >= {TARGET_CACHE_SPEEDUP:g}x partial": {
                "measured": top_cached,
                "met": top_cached >= TARGET_CACHE_SPEEDUP,
            },
            "LoRA optimizer state <= 5 % of partial's": {
                "measured": lora_share,
                "met": lora_share <= TARGET_LORA_OPTIMIZER_SHARE,
            },
        },
    }


def format_report(report):
    """Markdown tables: the systems, the targets, the storage error."""
    lines = [
        f"{report['model']}, {report['utterances']} IEMOCAP-like utterances "
        f"({report['durations']['mean']:.1f} +/- {report['durations']['sd']:.1f} s), "
        f"batch {BATCH_SIZE}, {report['steps_per_epoch']} steps per epoch, "
        f"{report['threads']} threads, median of {report['rounds']} rounds, "
        f"load {report['load_average_start']:.1f} -> "
        f"{report['load_average_end']:.1f}",
        "",
        "| system | audio-s trained / s | vs partial | trained parameters "
        "| optimiser state | vs partial | kept for backward (4 utt.) | vs partial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["systems"].items():
        lines.append(
            f"| {name} | {row['audio_seconds_per_second']:.2f} | "
            f"{row['speed_vs_partial']:.2f}x | "
            f"{row['trained_parameters'] / 1e6:.2f} M | "
            f"{row['optimizer_state_bytes'] / 1e6:.1f} MB | "
            f"{100 * row['optimizer_state_vs_partial']:.1f} % | "
            f"{row['kept_for_backward_bytes'] / 1e6:.0f} MB | "
            f"{100 * row['kept_for_backward_vs_partial']:.0f} % |"
        )
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for name, target in report["targets"].items():
        value = target["measured"]
        shown = f"{value:.2f}x" if "x partial" in name else f"{100 * value:.1f} %"
        lines.append(f"| {name} | {shown} | {'yes' if target['met'] else 'no'} |")
    lines += [
        "",
        f"Filling the cache (the first epoch's extra work): "
        f"{report['cache_fill_seconds']:.1f} s for "
        f"{report['utterances_audio_seconds']:.0f} s of audio; "
        f"{report['cache_bytes_per_audio_hour'] / 1e9:.2f} GB per audio hour "
        "(float32).",
        "",
        "| cache storage | stored state | features | loss | gradients |",
        "|---|---:|---:|---:|---:|",
    ]
    for dtype, errors in report["storage_error"].items():
        lines.append(
            f"| {dtype} | {errors['stored_state']:.1e} | {errors['features']:.1e} | "
            f"{errors['loss']:.1e} | {errors['gradients']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=0, help="steps per epoch (0: the whole epoch)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trainable-layers", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report here")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model (tests), not base size"
    )
    args = parser.parse_args(argv)
    if args.utterances < 2 * BATCH_SIZE or args.rounds < 1 or args.threads < 1:
        parser.error("--utterances >= 8, --rounds >= 1, --threads >= 1")
    report = measure(args)
    print(json.dumps(report, indent=2))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
