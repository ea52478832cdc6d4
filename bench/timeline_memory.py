#!/usr/bin/env python3
"""Peak memory of an emotion timeline against the recording's length.

    python bench/timeline_memory.py [--minutes 10 60 120] [--model tiny|base]
        [--vad silero] [--json out.json]

For each length a 44.1 kHz stereo PCM16 WAV file is written to a temporary
folder in blocks (a 60 s pattern of speech-like formant voices and pauses,
repeated), then a fresh process runs
``EmotionRecognizer.timeline(file)`` (silero VAD, default options) and
reports its peak resident memory (``VmHWM`` of ``/proc/self/status``),
also right after loading the model, before the timeline. A second fresh
process per file measures the way a recording is read today for one label:
``load_audio_any`` of the whole file (no model). Files are deleted at the
end.

The model (``--model``): ``tiny`` (a 2-layer WavLM, the default: the
pipeline's own memory is what grows or not with the length; a bigger model
adds a constant) or ``base`` (94 M parameters, slow: about 15x real time on
2 threads). Weights are random; nothing is downloaded.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 44100


def peak_rss_mb():
    """This process's peak resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pattern(seconds=60.0, seed=0):
    """``seconds`` of speech-like voices (four classes) and pauses, mono."""
    from sser_lobes.synthetic.formant_voice import formant_voice

    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    emotions = ["neu", "hap", "sad", "ang"]
    while total < seconds * RATE:
        gap = np.zeros(int(rng.uniform(0.3, 2.0) * RATE))
        speech = formant_voice(
            emotions[len(pieces) % 4], rng.uniform(1.5, 6), RATE, rng
        )
        pieces += [gap, speech]
        total += len(gap) + len(speech)
    return np.concatenate(pieces)[: int(seconds * RATE)].astype(np.float32)


def write_file(path, minutes, loop):
    """A ``minutes`` long 44.1 kHz stereo PCM16 file, written in blocks."""
    with soundfile.SoundFile(
        str(path), "w", samplerate=RATE, channels=2, subtype="PCM_16"
    ) as handle:
        for _ in range(int(round(minutes * 60 / (len(loop) / RATE)))):
            handle.write(np.stack([loop, 0.8 * loop], axis=1))
    return path


def child_timeline(model, path, vad):
    """Run in a fresh process: the timeline's peak memory."""
    from sser_lobes.inference.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.from_hparams(model)
    loaded = peak_rss_mb()
    start = time.perf_counter()
    timeline = recognizer.timeline(path, vad=vad)
    seconds = time.perf_counter() - start
    return {
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "after_loading_mb": round(loaded, 1),
        "seconds": round(seconds, 1),
        "duration": round(timeline.duration, 1),
        "segments": sum(s.is_speech for s in timeline.segments),
    }


def child_whole(path):
    """Run in a fresh process: reading the whole file as ``classify_file``
    does."""
    import torch  # noqa: F401  (the same imports as the timeline's process)

    from sser_lobes.dataio.audio import load_audio_any

    before = peak_rss_mb()
    wav = load_audio_any(path, 16000)
    return {
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "after_imports_mb": round(before, 1),
        "samples": int(wav.numel()),
    }


def run_child(*args):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120])
    parser.add_argument("--model", choices=["tiny", "base"], default="tiny")
    parser.add_argument("--vad", default="silero")
    parser.add_argument("--json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = child_timeline(*rest) if kind == "timeline" else child_whole(*rest)
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(HERE))
    from benchmark_inference import base_config, build_models

    rows = []
    with tempfile.TemporaryDirectory(prefix="sser_timeline_memory_") as tmp:
        tmp = Path(tmp)
        _, model, _ = build_models(
            tmp / "model", base_config(tiny=args.model == "tiny")
        )
        loop = pattern()
        for minutes in args.minutes:
            path = write_file(tmp / f"rec_{minutes:g}min.wav", minutes, loop)
            size = path.stat().st_size / 2**20
            timeline = run_child("timeline", model, path, args.vad)
            whole = run_child("whole", path)
            rows.append(
                {
                    "minutes": minutes,
                    "file_mb": round(size),
                    "timeline": timeline,
                    "whole_file_read": whole,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            path.unlink()
    first = rows[0]["timeline"]["peak_rss_mb"]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
        "machine": platform.processor() or platform.machine(),
        "model": args.model,
        "vad": args.vad,
        "rows": rows,
    }
    print()
    print(
        "| recording (44.1 kHz stereo PCM16) | file | timeline peak RSS | ratio to "
        "the first | after loading the model | reading the whole file "
        "(`load_audio_any`) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        t, w = row["timeline"], row["whole_file_read"]
        print(
            f"| {row['minutes']:g} min | {row['file_mb']:,} MB | "
            f"{t['peak_rss_mb']:,.0f} MB | {t['peak_rss_mb'] / first:.2f}x | "
            f"{t['after_loading_mb']:,.0f} MB | {w['peak_rss_mb']:,.0f} MB |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
