#!/usr/bin/env python3
"""Speed of a whole emotion timeline against the naive way, like for like.

    python bench/timeline.py [--minutes 60] [--threads 2] [--repeats 3]
        [--window 3] [--batch-size 8] [--json out.json] [--tiny]

One process, one model, one recording, the same threads for every system
(the rules are in ``bench/README.md``). The model is
``benchmark_inference.py``'s base-size WavLM with random weights (94 M
parameters), written both as a transformers
``WavLMForSequenceClassification`` folder and as an sser model folder with
the same weights. The recording is a 16 kHz mono PCM16 WAV of ``--minutes``
minutes: speech-like formant voices (1.5 to 6 s) with pauses (0.3 to 2 s)
and faint background noise, seeded.

Systems, each timed on the whole recording, from the file on disk to the
labels:

* ``sser_fp32`` / ``sser_int8``:
  ``EmotionRecognizer.timeline(file)`` with its defaults: the file streamed
  in blocks, silero VAD, windows of ``--window`` seconds in each speech
  region, no overlap (hop = window), length-sorted batches of
  ``--batch-size`` through ``predict_batch``, median smoothing over 3
  windows, segments; ``quantize="int8"`` for the second.
* ``pipeline``: what a user does today: the whole file read with
  soundfile, cut into fixed windows of the same length (no overlap), and
  ``transformers.pipeline("audio-classification")`` on the list with
  ``batch_size=`` (the windows are all the same length: no padding), the
  top label per window.

Reported: each system's audio seconds per second (the recording's duration
over the wall time: the "x real time" factor), the medians over the
interleaved rounds, the ratios to the pipeline, the share of the recording
the VAD kept as speech, the windows each system classified, the VAD's own
time, and a check that the two model folders are the same function (the
pipeline's probabilities of a few windows against sser's ``predict_batch``
on them).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import benchmark_inference as base  # noqa: E402

RATE = base.SAMPLE_RATE
#: Issue 20's targets: the int8 timeline at least 25x real time, and at
#: least twice the pipeline's audio seconds per second.
TARGET_REAL_TIME, TARGET_RATIO = 25.0, 2.0


def make_recording(path, minutes, seed=0, tiny=False):
    """Formant voices and pauses with faint noise, written in blocks."""
    from sser_lobes.synthetic.formant_voice import formant_voice

    rng = np.random.default_rng(seed)
    emotions = ["neu", "hap", "sad", "ang"]
    total, target = 0, int(minutes * 60 * RATE)
    # a pool of utterances reused in a random order (synthesis is slow)
    pool = [
        formant_voice(emotions[i % 4], rng.uniform(1.5, 6.0), RATE, rng)
        for i in range(8 if tiny else 64)
    ]
    with soundfile.SoundFile(
        str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16"
    ) as handle:
        while total < target:
            gap = int(rng.uniform(0.3, 2.0) * RATE)
            speech = pool[rng.integers(len(pool))]
            piece = np.concatenate([np.zeros(gap), speech])
            piece = piece + 0.001 * rng.standard_normal(len(piece))
            handle.write(np.clip(piece, -1, 1).astype(np.float32))
            total += len(piece)
    return soundfile.info(str(path)).duration


class Systems:
    """The timeline systems on one recording."""

    def __init__(self, hf_dir, sser_dir, window, batch_size):
        from transformers import pipeline

        from sser_lobes.encoders.hf_utils import quiet_transformers
        from sser_lobes.inference.recognizer import EmotionRecognizer

        self.window, self.batch_size = window, batch_size
        self.fp32 = EmotionRecognizer.from_hparams(str(sser_dir))
        self.int8 = EmotionRecognizer.from_hparams(str(sser_dir), quantize="int8")
        with quiet_transformers():
            self.pipe = pipeline("audio-classification", model=str(hf_dir))
        self.labels = list(self.fp32.labels)
        self.modes = ["sser_int8", "sser_fp32", "pipeline"]

    def _timeline(self, recognizer, path):
        timeline = recognizer.timeline(
            path, window=self.window, batch_size=self.batch_size
        )
        speech = sum(s.duration for s in timeline.segments if s.is_speech)
        return {"windows": len(timeline.windows), "speech_seconds": speech}

    def run_sser_int8(self, path):
        return self._timeline(self.int8, path)

    def run_sser_fp32(self, path):
        return self._timeline(self.fp32, path)

    def pipeline_windows(self, path):
        audio, _ = soundfile.read(str(path), dtype="float32")
        size = int(round(self.window * RATE))
        return [audio[i : i + size] for i in range(0, len(audio), size)]

    def run_pipeline(self, path):
        windows = self.pipeline_windows(path)
        outputs = self.pipe(windows, batch_size=self.batch_size, top_k=1)
        labels = [out[0]["label"] for out in outputs]
        return {"windows": len(labels), "speech_seconds": None}

    def agreement(self, path, count=8):
        """Largest probability difference, pipeline vs sser, on windows."""
        windows = self.pipeline_windows(path)[:count]
        outputs = self.pipe(windows, batch_size=self.batch_size, top_k=None)
        piped = np.array(
            [
                [{o["label"]: o["score"] for o in out}[c] for c in self.labels]
                for out in outputs
            ]
        )
        ours = self.fp32.predict_batch(torch.from_numpy(np.stack(windows)))
        return float(np.abs(ours["probabilities"].numpy() - piped).max())


def vad_seconds(path):
    """Time of the silero VAD alone over the file (block reading included)."""
    from sser_lobes.dataio.stream import FileBlocks
    from sser_lobes.dataio.vad import SileroVAD

    vad = SileroVAD(RATE)
    start = time.perf_counter()
    for block in FileBlocks(path, RATE):
        vad.push(block.numpy())
    return time.perf_counter() - start


def run(args, log=print):
    torch.set_num_threads(args.threads)
    machine = base.machine_info()
    with tempfile.TemporaryDirectory(prefix="sser_timeline_bench_") as tmp:
        tmp = Path(tmp)
        config = base.base_config(tiny=args.tiny)
        hf_dir, sser_dir, _ = base.build_models(tmp / "models", config)
        recording = tmp / "recording.wav"
        duration = make_recording(recording, args.minutes, args.seed, args.tiny)
        log(f"recording: {duration:.0f} s; load {base._load()}")
        systems = Systems(hf_dir, sser_dir, args.window, args.batch_size)
        difference = systems.agreement(recording)
        if hasattr(os, "sync"):
            os.sync()
        times = {mode: [] for mode in systems.modes}
        details = {}
        for repeat in range(args.repeats):
            shift = repeat % len(systems.modes)
            order = systems.modes[shift:] + systems.modes[:shift]
            for mode in order:
                start = time.perf_counter()
                details[mode] = getattr(systems, f"run_{mode}")(recording)
                times[mode].append(time.perf_counter() - start)
            log(
                f"round {repeat + 1}/{args.repeats} (load {base._load()}): "
                + ", ".join(f"{m} {times[m][-1]:.1f} s" for m in systems.modes)
            )
        vad_time = vad_seconds(recording)
    median = {mode: statistics.median(t) for mode, t in times.items()}
    speed = {mode: duration / median[mode] for mode in median}
    report = {
        "machine": machine,
        "load_average_end": base._load(),
        "versions": base._versions(),
        "threads": args.threads,
        "minutes": args.minutes,
        "recording_seconds": round(duration, 1),
        "window_seconds": args.window,
        "batch_size": args.batch_size,
        "model": "tiny WavLM (smoke test)" if args.tiny else "WavLM base, random",
        "speech_share": round(details["sser_fp32"]["speech_seconds"] / duration, 3),
        "windows": {mode: d["windows"] for mode, d in details.items()},
        "all_seconds": {m: [round(t, 2) for t in v] for m, v in times.items()},
        "median_seconds": {m: round(v, 2) for m, v in median.items()},
        "real_time_factor": {m: round(v, 1) for m, v in speed.items()},
        "ratio_to_pipeline": {
            m: round(speed[m] / speed["pipeline"], 2)
            for m in ("sser_int8", "sser_fp32")
        },
        "vad_seconds": round(vad_time, 1),
        "vad_real_time_factor": round(duration / vad_time, 1),
        "max_probability_difference_fp32_vs_pipeline": difference,
        "targets": {"int8_real_time": TARGET_REAL_TIME, "ratio": TARGET_RATIO},
        "command": " ".join(["python", "bench/timeline.py", *sys.argv[1:]]),
    }
    return report


def markdown_row(report):
    """The row of bench/README.md's timeline table."""
    rtf, ratio = report["real_time_factor"], report["ratio_to_pipeline"]
    machine = report["machine"]
    return (
        f"| {machine['date']} (load {machine['load_average_1min']}) | "
        f"{report['recording_seconds'] / 60:.0f} min, speech "
        f"{100 * report['speech_share']:.0f} % | {rtf['sser_int8']}x | "
        f"{rtf['sser_fp32']}x | {rtf['pipeline']}x | **{ratio['sser_int8']}x** | "
        f"{ratio['sser_fp32']}x |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny WavLM, 0.5 min, 1 round: smoke test"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.minutes, args.repeats = min(args.minutes, 0.5), 1
    report = run(args)
    print(json.dumps(report, indent=2))
    print(markdown_row(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
