#!/usr/bin/env python3
"""Epoch time with and without the frozen-encoder feature cache.

    python bench/feature_cache.py [--utterances 32] [--epochs 3] [--threads 2]
        [--batch-size 4] [--dtype float32] [--json out.json] [--tiny]

One command, one model, one set of files, the same training batches in both
arms:

* a base-size WavLM with random weights (``WavLMConfig()``: hidden 768, 12
  layers, about 94 M parameters; nothing is downloaded), frozen, with the
  SUPERB weighted sum over all 13 hidden states, mean pooling and a linear
  head (the IEMOCAP recipe's model with ``--finetune=frozen
  --output_layer=weighted_sum``);
* ``--utterances`` seeded 16 kHz wav files whose durations are drawn from
  IEMOCAP's profile (:func:`sser_lobes.dataio.batching.iemocap_like_durations`);
* training as in the recipe: duration buckets of ``--batch-size``
  reshuffled every epoch, cross-entropy, Adam on the trainable parameters
  (the layer weights and the head).

Arm 1 trains ``--epochs`` epochs without the cache. Arm 2 starts again from
the same initial state and trains ``--epochs`` epochs with it: its first epoch
includes filling the cache
(:func:`sser_lobes.training.feature_cache.setup_feature_cache`,
which the recipes call), the later ones only read it. The script prints a JSON
record and a markdown row: the median epoch time of each arm, the speed-up of
the later cached epochs (target: at least 10x), the largest relative
difference of the per-epoch training losses between the arms (float32 cache:
float rounding only), and the cache's size on disk per hour of audio.
"""

import argparse
import json
import os
import platform
import shutil
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
TARGET_SPEEDUP = 10.0


def make_corpus(folder, count, seed=0):
    """Write ``count`` wav files with IEMOCAP-like durations; the manifest.

    Returns
    -------
    dict
        SpeechBrain manifest ``{id: {"wav", "duration", "emo"}}``.
    """
    from sser_lobes.dataio.batching import iemocap_like_durations

    durations = iemocap_like_durations(max(100, count), seed=seed)[:count]
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for index, seconds in enumerate(durations):
        n = int(round(seconds * SAMPLE_RATE))
        t = np.arange(n) / SAMPLE_RATE
        pitch = rng.uniform(100, 300) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t) ** 2
        signal = 0.1 * envelope * voiced + 0.01 * rng.standard_normal(n)
        path = folder / f"utt{index:03d}.wav"
        soundfile.write(path, signal.astype("float32"), SAMPLE_RATE, subtype="PCM_16")
        manifest[f"utt{index:03d}"] = {
            "wav": str(path),
            "duration": n / SAMPLE_RATE,
            "emo": LABELS[index % len(LABELS)],
        }
    return manifest


def build_model(tiny=False, seed=0):
    """Frozen WavLM (base size, random weights) + weighted sum + mean pooling
    + linear head."""
    from transformers import WavLMConfig

    from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    from sser_lobes.encoders.tiny_ssl import tiny_ssl_config

    config = tiny_ssl_config("wavlm", "group") if tiny else WavLMConfig()
    torch.manual_seed(seed)
    encoder = SSLEncoder(
        config=config,
        load_weights=False,
        finetune="frozen",
        output_layer="weighted_sum",
        output_norm="utterance",
        normalize_waveform="utterance",
    )
    model = EmotionModel(
        encoder,
        MeanPooling(encoder.output_size),
        LinearHead(encoder.output_size, len(LABELS), bias=False),
    )
    return model


def make_dataset(manifest):
    import speechbrain as sb

    from sser_lobes.dataio.pipelines import (
        audio_pipeline,
        categorical_label_encoder,
        label_pipeline,
    )

    return sb.dataio.dataset.DynamicItemDataset(
        manifest,
        dynamic_items=[
            audio_pipeline(SAMPLE_RATE, 400),
            label_pipeline(categorical_label_encoder(LABELS)),
        ],
        output_keys=["id", "sig", "emo_encoded"],
    )


def train_epoch(model, optimizer, dataset, sampler, epoch):
    """One epoch as the recipe's Brain runs it; returns (seconds, mean loss)."""
    from speechbrain.dataio.batch import PaddedBatch

    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=PaddedBatch, num_workers=0
    )
    model.train()
    start = time.perf_counter()
    losses = []
    for batch in loader:
        if hasattr(batch, "ssl_hidden"):
            hidden, hidden_lens = batch.ssl_hidden
            out = model(hidden=hidden, hidden_lens=hidden_lens)
        else:
            wavs, wav_lens = batch.sig
            out = model(wavs, wav_lens)
        loss = torch.nn.functional.cross_entropy(
            out["logits"], batch.emo_encoded.data.squeeze(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return time.perf_counter() - start, float(np.mean(losses))


def run(args):
    """Both arms on a fresh temporary corpus; the JSON record."""
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="sser_feature_cache_bench_"))
    try:
        return _run(args, work, load_before)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args, work, load_before):
    from sser_lobes.dataio.batching import DurationBucketBatchSampler
    from sser_lobes.training.feature_cache import disk_cost, setup_feature_cache

    manifest = make_corpus(work / "audio", args.utterances, seed=args.seed)
    audio_seconds = sum(entry["duration"] for entry in manifest.values())
    model = build_model(tiny=args.tiny, seed=args.seed)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    encoder = model.encoder

    def fresh_arm():
        model.load_state_dict(initial)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=1e-3)
        dataset = make_dataset(manifest)
        sampler = DurationBucketBatchSampler.from_dataset(
            dataset, args.batch_size, shuffle=True, seed=args.seed
        )
        return optimizer, dataset, sampler

    # Arm 1: no cache.
    optimizer, dataset, sampler = fresh_arm()
    plain = [
        train_epoch(model, optimizer, dataset, sampler, epoch)
        for epoch in range(1, args.epochs + 1)
    ]

    # Arm 2: the same with the cache (filled at the start of epoch 1).
    optimizer, dataset, sampler = fresh_arm()
    hparams = {
        "feature_cache": True,
        "feature_cache_folder": str(work / "cache"),
        "feature_cache_dtype": args.dtype,
        "finetune": "frozen",
        "ssl_encoder": encoder,
        "sample_rate": SAMPLE_RATE,
        "eval_batch_size": 8,
        "num_workers": 0,
    }
    start = time.perf_counter()
    setup_feature_cache(hparams, {"train": dataset}, brain=None)
    fill_seconds = time.perf_counter() - start
    cached = [
        train_epoch(model, optimizer, dataset, sampler, epoch)
        for epoch in range(1, args.epochs + 1)
    ]

    cache_bytes = sum(p.stat().st_size for p in (work / "cache").rglob("*.npy"))
    plain_epoch = statistics.median(s for s, _ in plain)
    later = [s for s, _ in cached[1:]] or [cached[0][0]]
    later_epoch = statistics.median(later)
    loss_diff = max(
        abs(a - b) / max(abs(a), 1e-12)
        for (_, a), (_, b) in zip(plain, cached, strict=True)
    )
    hours = audio_seconds / 3600
    config = encoder.config
    record = {
        "benchmark": "feature_cache",
        "model": (
            f"WavLM {'tiny' if args.tiny else 'base'}, random weights, frozen, "
            f"weighted sum of {len(encoder.selected_layers)} hidden states"
        ),
        "hidden_size": config.hidden_size,
        "hidden_states": len(encoder.selected_layers),
        "parameters": sum(p.numel() for p in encoder.model.parameters()),
        "utterances": len(manifest),
        "audio_seconds": round(audio_seconds, 2),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "dtype": args.dtype,
        "epoch_seconds_without_cache": [round(s, 3) for s, _ in plain],
        "fill_seconds": round(fill_seconds, 3),
        "first_epoch_seconds_with_fill": round(fill_seconds + cached[0][0], 3),
        "epoch_seconds_with_cache": [round(s, 3) for s, _ in cached],
        "median_epoch_seconds_without_cache": round(plain_epoch, 3),
        "median_later_epoch_seconds_with_cache": round(later_epoch, 3),
        "speedup_later_epochs": round(plain_epoch / later_epoch, 1),
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": plain_epoch / later_epoch >= TARGET_SPEEDUP,
        "train_loss_without_cache": [round(loss, 6) for _, loss in plain],
        "train_loss_with_cache": [round(loss, 6) for _, loss in cached],
        "train_loss_max_relative_difference": float(f"{loss_diff:.3g}"),
        "cache_bytes": cache_bytes,
        "cache_gb_per_audio_hour": round(cache_bytes / hours / 1e9, 3),
        "cache_gb_per_audio_hour_formula": round(
            disk_cost(config.hidden_size, len(encoder.selected_layers), args.dtype)
            / 1e9,
            3,
        ),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return record


def markdown_row(record):
    """One row of the README table (header: :data:`MARKDOWN_HEADER`)."""
    return (
        f"| {record['model']} "
        f"| {record['utterances']} ({record['audio_seconds']:.0f} s) "
        f"| {record['median_epoch_seconds_without_cache']:.2f} s "
        f"| {record['first_epoch_seconds_with_fill']:.2f} s "
        f"| {record['median_later_epoch_seconds_with_cache']:.3f} s "
        f"| {record['speedup_later_epochs']:.0f}x "
        f"| {record['cache_gb_per_audio_hour']:.2f} GB ({record['dtype']}) "
        f"| {record['load_average_before'][0]:.2f} |"
    )


MARKDOWN_HEADER = (
    "| model | utterances (audio) | epoch without cache | first epoch with cache "
    "(fill + epoch) | later epochs with cache | speed-up | cache per audio hour "
    "| load before |\n|---|---|---|---|---|---|---|---|"
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="per arm (>= 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the JSON record to this file")
    parser.add_argument("--tiny", action="store_true", help="tiny model (tests)")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.utterances < 1:
        parser.error("--epochs must be >= 2 and --utterances >= 1")
    record = run(args)
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print()
    print(MARKDOWN_HEADER)
    print(markdown_row(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
