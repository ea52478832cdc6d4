#!/usr/bin/env python3
"""Training throughput of the IEMOCAP recipe's step against two peers.

    python bench/train_throughput.py [--profile iemocap|narrow] [--utterances 48]
        [--rounds 2] [--threads 2] [--json out.json]

Same utterances, same weights (a base-size WavLM with random weights, the
architecture of microsoft/wavlm-base-plus), same number of optimizer steps,
batch size 4, partial fine-tuning (CNN frozen), 2 threads, in one process;
the systems run interleaved, one epoch each per round, in a rotated order,
and the median epoch of each system is reported:

* **sser**: the IEMOCAP recipe's path: ``SSLEncoder`` (reference settings of
  ``train_wavlm_large.yaml``: SpecAugment off, utterance output norm), mean
  pooling, ``Linear(768 -> 4, bias=False)``, cross-entropy, Adam 1e-4 (head)
  and 1e-5 (encoder), gradients clipped at 5 per optimiser, duration-bucketed
  batches (``DurationBucketBatchSampler``, jitter 0.05);
* **SpeechBrain** (peer 1), as its IEMOCAP emotion recipe builds the model:
  its HuggingFace WavLM wrapper (``output_norm=True``,
  ``freeze_feature_extractor=True``), ``StatisticsPooling(return_std=False)``,
  ``Linear(bias=False)``, log-softmax + NLL, the two Adam optimisers, clipping
  at 5, random batches of 4 (``shuffle: True``);
* **transformers** (peer 2), as ``run_audio_classification.py`` trains:
  ``WavLMForSequenceClassification`` with ``freeze_feature_encoder()``,
  inputs normalised by the feature extractor, padded with an attention mask,
  AdamW, clipping at 1.0 (the Trainer's default), and the Trainer's
  ``group_by_length`` batches (``LengthGroupedSampler``).

sser also runs on each peer's batches, which splits each ratio into what the
encoder code path gives (same batches) and what the batching gives.
Reported per system: audio-seconds trained per second (valid audio only,
padding excluded), the padded share of the computed samples, and the peak RSS
increase during its epochs (sampled every 5 ms). Layerdrop is set to 0 in the
shared config so that every system computes every layer (with layerdrop the
work per step is random and the systems would draw different layers).
"""

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

LABELS = 4
BATCH_SIZE = 4
SAMPLE_RATE = 16000


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


def durations_for(profile, count, seed):
    """Utterance durations (s): a seeded sample of the IEMOCAP-like profile
    (4.5 +/- 3.1 s, 0.6-34 s) or a narrow one (uniform 1-8 s)."""
    rng = np.random.default_rng(seed)
    if profile == "iemocap":
        from sser_lobes.dataio.batching import iemocap_like_durations

        pool = iemocap_like_durations(seed=seed)
        return rng.choice(pool, size=count, replace=False)
    if profile == "narrow":
        return rng.uniform(1.0, 8.0, size=count)
    raise ValueError(f"unknown profile {profile!r}")


def make_waveforms(durations, seed):
    """Speech-like noise (an amplitude envelope over white noise) per duration."""
    gen = torch.Generator().manual_seed(seed)
    wavs = []
    for seconds in durations:
        n = int(round(seconds * SAMPLE_RATE))
        envelope = 0.5 + 0.5 * torch.sin(
            torch.arange(n) * (2 * math.pi * 4 / SAMPLE_RATE)
        )
        wavs.append(0.1 * envelope * torch.randn(n, generator=gen))
    labels = torch.randint(0, LABELS, (len(wavs),), generator=gen)
    return wavs, labels


def random_batches(n, epoch, seed):
    """Shuffled batches of 4, as SpeechBrain's shuffled loader (seed + epoch)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    return [order[i : i + BATCH_SIZE].tolist() for i in range(0, n, BATCH_SIZE)]


def bucketed_batches(durations, epoch, seed):
    """sser's duration buckets (the recipe's sampler and settings)."""
    from sser_lobes.dataio.batching import DurationBucketBatchSampler

    sampler = DurationBucketBatchSampler(
        list(durations), BATCH_SIZE, shuffle=True, seed=seed, jitter=0.05
    )
    sampler.set_epoch(epoch)
    return [list(batch) for batch in sampler]


def length_grouped_batches(lengths, epoch, seed):
    """transformers Trainer's ``group_by_length`` batches, as on the whole corpus.

    The Trainer's ``LengthGroupedSampler`` sorts random mega-batches of
    ``min(n // 16, 50) * 4`` utterances: on IEMOCAP's 5,531 utterances, 200.
    On a subset of a few dozen utterances its default would sort only 12 at a
    time and leave 28 % padding instead of the 3.9 % it has on the corpus, so
    the peer gets its corpus-scale mega-batches (``mega_batch_mult=50``).
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed + epoch)
    order = get_length_grouped_indices(
        list(lengths), BATCH_SIZE, mega_batch_mult=50, generator=generator
    )
    return [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]


def corpus_padding_shares(seed=0, epochs=3):
    """Padded share of each batching on the whole IEMOCAP-like profile
    (5,531 durations), mean over epochs: what the systems pad on the corpus."""
    from sser_lobes.dataio.batching import iemocap_like_durations

    durations = iemocap_like_durations(seed=seed)
    lengths = np.round(durations * SAMPLE_RATE).astype(int)

    def share(batches):
        valid = sum(int(lengths[b].sum()) for b in map(np.asarray, batches))
        computed = sum(len(b) * int(lengths[b].max()) for b in map(np.asarray, batches))
        return 1 - valid / computed

    makers = {
        "duration buckets (sser)": lambda e: bucketed_batches(durations, e, seed),
        "random batches (SpeechBrain recipe)": lambda e: random_batches(
            len(durations), e, seed
        ),
        "group_by_length (transformers Trainer)": lambda e: length_grouped_batches(
            lengths, e, seed
        ),
    }
    return {
        name: float(np.mean([share(make(e)) for e in range(1, epochs + 1)]))
        for name, make in makers.items()
    }


def pad(waveforms):
    """``[batch, max]`` zero-padded batch, relative lengths and a mask."""
    longest = max(len(w) for w in waveforms)
    batch = torch.zeros(len(waveforms), longest)
    mask = torch.zeros(len(waveforms), longest, dtype=torch.long)
    for row, wav in enumerate(waveforms):
        batch[row, : len(wav)] = wav
        mask[row, : len(wav)] = 1
    lens = torch.tensor([len(w) / longest for w in waveforms])
    return batch, lens, mask


# ----------------------------------------------------------------------------
# the systems: one optimizer step on a list of waveforms and their labels
# ----------------------------------------------------------------------------


def base_config(tiny=False):
    """microsoft/wavlm-base-plus's architecture, random weights, no layerdrop
    (``tiny``: hidden size 32 and 2 layers, for tests)."""
    from transformers import WavLMConfig

    if tiny:
        from sser_lobes.encoders.tiny_ssl import tiny_ssl_config

        config = tiny_ssl_config("wavlm", "group", hidden_size=32, num_layers=2)
        config.layerdrop = 0.0
        config.num_labels = LABELS
        return config
    return WavLMConfig(layerdrop=0.0, num_labels=LABELS)


def write_model(folder, seed=0, tiny=False):
    """A random WavLM folder (weights + feature-extractor config)."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMModel

    torch.manual_seed(seed)
    model = WavLMModel(base_config(tiny))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(folder)
    return folder


def recipe_model(folder, finetune="partial", **options):
    """The IEMOCAP recipe's model on ``folder`` and its two Adam optimisers
    (1e-4 for the head, 1e-5 for the encoder's trained parameters).

    Returns
    -------
    (EmotionModel, list of torch.optim.Optimizer, int)
        The model in training mode, the optimisers, the trained parameters.
    """
    from sser_lobes import EmotionModel, LinearHead, SSLEncoder, make_pooling

    encoder = SSLEncoder(
        folder,
        finetune=finetune,
        output_norm="utterance",
        apply_spec_augment=False,
        **options,
    )
    pooling = make_pooling("mean", encoder.output_size)
    head = LinearHead(pooling.output_size, LABELS, bias=False)
    model = EmotionModel(encoder, pooling, head).train()
    encoder_params = [p for p in encoder.model.parameters() if p.requires_grad]
    ids = {id(p) for p in encoder_params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    optimizers = [
        torch.optim.Adam(rest, lr=1e-4),
        torch.optim.Adam(encoder_params, lr=1e-5),
    ]
    return model, optimizers, sum(p.numel() for p in encoder_params + rest)


def recipe_update(logits, labels, optimizers):
    """The recipe's loss on ``logits``, its backward and one step of each
    optimiser with the gradient norm clipped at 5; returns the loss."""
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    for optimizer in optimizers:
        params = optimizer.param_groups[0]["params"]
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


class SserStep:
    """The IEMOCAP recipe's model, loss and optimisers (see the module doc)."""

    name = "sser"

    def __init__(self, folder):
        self.model, self.optimizers, _ = recipe_model(folder)

    def step(self, waveforms, labels):
        wavs, lens, _ = pad(waveforms)
        return recipe_update(self.model(wavs, lens)["logits"], labels, self.optimizers)


class SpeechBrainStep:
    """SpeechBrain's IEMOCAP emotion recipe (train_with_wav2vec2.yaml), WavLM."""

    name = "speechbrain"

    def __init__(self, folder):
        from speechbrain.integrations.huggingface.wavlm import WavLM
        from speechbrain.nnet.linear import Linear
        from speechbrain.nnet.pooling import StatisticsPooling

        self.save = tempfile.mkdtemp()
        self.wavlm = WavLM(
            source=str(folder),
            save_path=self.save,
            output_norm=True,
            freeze=False,
            freeze_feature_extractor=True,
        ).train()
        self.pool = StatisticsPooling(return_std=False)
        size = self.wavlm.model.config.hidden_size
        self.linear = Linear(input_size=size, n_neurons=LABELS, bias=False).train()
        trainable = [p for p in self.wavlm.parameters() if p.requires_grad]
        self.optimizers = [
            torch.optim.Adam(self.linear.parameters(), lr=1e-4),
            torch.optim.Adam(trainable, lr=1e-5),
        ]

    def step(self, waveforms, labels):
        import speechbrain as sb

        wavs, lens, _ = pad(waveforms)
        out = self.wavlm(wavs, lens)
        out = self.pool(out, lens).view(out.shape[0], -1)
        out = sb.nnet.activations.Softmax(apply_log=True)(self.linear(out))
        loss = sb.nnet.losses.nll_loss(out, labels)
        loss.backward()
        for optimizer in self.optimizers:  # Brain clips per optimiser
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], 5.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(loss)


class TransformersStep:
    """transformers' run_audio_classification.py: Trainer defaults."""

    name = "transformers"

    def __init__(self, folder):
        from transformers import (
            Wav2Vec2FeatureExtractor,
            WavLMForSequenceClassification,
        )

        from sser_lobes.encoders.hf_utils import quiet_transformers

        with quiet_transformers():
            self.model = WavLMForSequenceClassification.from_pretrained(
                str(folder), num_labels=LABELS
            )
        self.model.freeze_feature_encoder()
        self.model.train()
        self.extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=3e-5)
        self.params = params

    def prepare(self, wav):
        """What the script's dataset transform gives: normalised input values."""
        values = self.extractor(wav.numpy(), sampling_rate=SAMPLE_RATE)["input_values"]
        return torch.as_tensor(np.asarray(values[0]), dtype=torch.float32)

    def step(self, waveforms, labels):
        wavs, _, mask = pad(waveforms)
        loss = self.model(input_values=wavs, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss)


# ----------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------


def _rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss():
    """Yield a dict whose ``"increase"`` is the peak RSS growth (bytes)."""
    result = {"base": _rss_bytes(), "peak": _rss_bytes()}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            result["peak"] = max(result["peak"], _rss_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["increase"] = result["peak"] - result["base"]


def run_epoch(system, batches, inputs, labels):
    """Train one epoch; return (seconds, valid samples, computed samples)."""
    valid = computed = 0
    start = time.perf_counter()
    for batch in batches:
        waveforms = [inputs[i] for i in batch]
        system.step(waveforms, labels[batch])
        valid += sum(len(w) for w in waveforms)
        computed += len(waveforms) * max(len(w) for w in waveforms)
    return time.perf_counter() - start, valid, computed


def measure(args):
    torch.set_num_threads(args.threads)
    durations = durations_for(args.profile, args.utterances, args.seed)
    wavs, labels = make_waveforms(durations, args.seed)
    folder = write_model(
        Path(tempfile.mkdtemp()) / "wavlm_random", args.seed, tiny=args.tiny
    )
    systems = {
        "sser": SserStep(folder),
        "speechbrain": SpeechBrainStep(folder),
        "transformers": TransformersStep(folder),
    }
    hf_inputs = [systems["transformers"].prepare(w) for w in wavs]
    configs = {
        # name: (system, batching, inputs)
        "sser, duration buckets": ("sser", "buckets", wavs),
        "sser, random batches": ("sser", "random", wavs),
        "sser, length-grouped batches": ("sser", "grouped", wavs),
        "SpeechBrain recipe, random batches": ("speechbrain", "random", wavs),
        "transformers Trainer, group_by_length": ("transformers", "grouped", hf_inputs),
    }

    def batches_for(batching, epoch):
        if batching == "buckets":
            return bucketed_batches(durations, epoch, args.seed)
        if batching == "random":
            return random_batches(len(wavs), epoch, args.seed)
        return length_grouped_batches([len(w) for w in wavs], epoch, args.seed)

    # One warm-up step per system (allocator, oneDNN primitives).
    for system in systems.values():
        system.step([wavs[0], wavs[1]], labels[:2])
    results = {name: {"seconds": [], "rss": []} for name in configs}
    names = list(configs)
    for round_index in range(args.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            system, batching, inputs = configs[name]
            batches = batches_for(batching, round_index + 1)
            with peak_rss() as rss:
                seconds, valid, computed = run_epoch(
                    systems[system], batches, inputs, labels
                )
            results[name]["seconds"].append(seconds)
            results[name]["rss"].append(rss["increase"])
            results[name]["valid"] = valid
            results[name]["computed"] = computed
            print(
                f"round {round_index + 1}: {name}: {seconds:.1f} s, "
                f"{valid / SAMPLE_RATE / seconds:.2f} audio-s/s",
                file=sys.stderr,
                flush=True,
            )
    rows = {}
    for name, r in results.items():
        seconds = float(np.median(r["seconds"]))
        rows[name] = {
            "audio_seconds_per_second": r["valid"] / SAMPLE_RATE / seconds,
            "epoch_seconds": seconds,
            "epoch_seconds_all": r["seconds"],
            "padded_share": 1 - r["valid"] / r["computed"],
            "peak_rss_increase_mb": max(r["rss"]) / 1e6,
        }
    speed = {k: v["audio_seconds_per_second"] for k, v in rows.items()}
    ours = speed["sser, duration buckets"]
    ratios = {
        "vs SpeechBrain recipe": {
            "total": ours / speed["SpeechBrain recipe, random batches"],
            "code path (same random batches)": speed["sser, random batches"]
            / speed["SpeechBrain recipe, random batches"],
            "batching (buckets vs random, sser)": ours / speed["sser, random batches"],
        },
        "vs transformers Trainer": {
            "total": ours / speed["transformers Trainer, group_by_length"],
            "code path (same length-grouped batches)": speed[
                "sser, length-grouped batches"
            ]
            / speed["transformers Trainer, group_by_length"],
            "batching (buckets vs length-grouped, sser)": ours
            / speed["sser, length-grouped batches"],
        },
    }
    return {
        "benchmark": "train_throughput",
        "model": "tiny WavLM" if args.tiny else "base-size WavLM, random weights",
        "profile": args.profile,
        "utterances": args.utterances,
        "audio_seconds": float(np.sum(durations)),
        "durations": {
            "mean": float(np.mean(durations)),
            "sd": float(np.std(durations)),
            "min": float(np.min(durations)),
            "max": float(np.max(durations)),
        },
        "steps_per_epoch": math.ceil(args.utterances / BATCH_SIZE),
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "load_average": os.getloadavg()[0],
        "systems": rows,
        "ratios": ratios,
        "corpus_padding_shares": corpus_padding_shares(args.seed),
    }


def format_report(report):
    """A markdown table of the systems and the ratios."""
    lines = [
        f"Training throughput, {report['profile']} profile: "
        f"{report['utterances']} utterances, "
        f"{report['durations']['mean']:.1f} +/- {report['durations']['sd']:.1f} s "
        f"({report['durations']['min']:.1f}-{report['durations']['max']:.1f} s), "
        f"batch {BATCH_SIZE}, {report['steps_per_epoch']} steps per epoch, "
        f"{report['threads']} threads, median of {report['rounds']} rounds",
        "",
        "| system | audio-s trained / s | padded share | peak RSS increase |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report["systems"].items():
        lines.append(
            f"| {name} | {row['audio_seconds_per_second']:.2f} | "
            f"{100 * row['padded_share']:.1f} % | "
            f"{row['peak_rss_increase_mb']:.0f} MB |"
        )
    lines += ["", "| batching on the whole IEMOCAP-like profile | padded share |"]
    lines += ["|---|---:|"]
    for name, value in report["corpus_padding_shares"].items():
        lines.append(f"| {name} | {100 * value:.1f} % |")
    lines += ["", "| ratio | total | code path | batching |", "|---|---:|---:|---:|"]
    for peer, parts in report["ratios"].items():
        values = list(parts.values())
        lines.append(
            f"| sser {peer} | {values[0]:.2f}x | {values[1]:.2f}x | {values[2]:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=("iemocap", "narrow"), default="iemocap")
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report here")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model (tests), not base size"
    )
    args = parser.parse_args(argv)
    if args.utterances < BATCH_SIZE or args.rounds < 1 or args.threads < 1:
        parser.error("--utterances >= 4, --rounds >= 1, --threads >= 1")
    report = measure(args)
    text = format_report(report)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
