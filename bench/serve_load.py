"""Load test of ``sser-serve``: dynamic batching on and off, fp32 and int8.

    python bench/serve_load.py [--clients 1,4,16,64] [--rounds 3]
        [--requests-per-client 2] [--min-requests 16] [--threads 2]
        [--max-batch-size 8] [--max-wait-ms 10] [--soak-seconds 600]
        [--json out.json] [--tiny]

A base-size WavLM with random weights (``WavLMConfig()``: hidden 768, 12
layers, 94 M parameters; nothing is downloaded) is written as an sser model
folder with a 4-class mean-pooling linear head. Four servers run it, each
its own ``python -m sser_lobes.inference.server`` process on a free
localhost port with the same torch threads: batching on (``--max-batch-size``,
``--max-wait-ms``) and off (``--no-batching``: the same queue and worker, one
request per model call), in fp32 and int8 (``--quantize int8``). Only one
server is under load at a time; the others sit idle.

Clients are threads of this process, each with its own HTTP connection,
sending the raw bytes of seeded wav files (1.2 to 4.2 s, 16 kHz) to
``POST /v1/classify`` one request after the other. At each concurrency level
a run sends ``max(min_requests, clients * requests_per_client)`` requests
(bounded count; every request has a 120 s timeout). Rounds are interleaved:
in round ``r``, for each level, the four servers run in an order rotated by
``r``; each figure is the median over the rounds. Reported per server and
level: requests per second, p50 / p95 / p99 latency (client side, request
sent to answer read) and errors (any answer but 200). The headline is
batching on / off in requests per second at 16 clients, for fp32 and int8
(target: >= 1.3x at no errors).

The soak (``--soak-seconds``, 0 to skip) then keeps 16 clients on the fp32
batching server for that long and samples the server's resident memory
(``VmRSS`` of ``/proc/PID/status``) every 5 s: the first sample after the
warm-up, the peak and the last are reported, with the requests served.

Everything runs on localhost; the servers are stopped at the end. The output
ends with the JSON report and the markdown rows of ``bench/README.md``.
"""

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000
LABELS = ["neu", "hap", "sad", "ang"]
#: server name -> (batching, quantize)
SERVERS = {
    "fp32_batching": (True, None),
    "fp32_no_batching": (False, None),
    "int8_batching": (True, "int8"),
    "int8_no_batching": (False, "int8"),
}
TARGET = 1.3
HEADLINE_CLIENTS = 16


def write_model(folder, tiny=False, seed=0):
    """An sser model folder: base-size (or tiny) WavLM, random weights."""
    import torch
    from transformers import WavLMConfig

    from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    from sser_lobes.encoders.tiny_ssl import tiny_ssl_config
    from sser_lobes.inference.export import write_model_folder
    from sser_lobes.nnet.description import describe_run

    config = tiny_ssl_config("wavlm", "group") if tiny else WavLMConfig()
    torch.manual_seed(seed)
    encoder = SSLEncoder(
        config=config.to_dict(),
        load_weights=False,
        finetune="frozen",
        output_norm=None,
        normalize_waveform="utterance",
    )
    head = LinearHead(config.hidden_size, len(LABELS), bias=True)
    model = EmotionModel(encoder, MeanPooling(config.hidden_size), head).eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hparams = {
        "model": model,
        "emotions": LABELS,
        "sample_rate": SAMPLE_RATE,
        "experiment_name": "serve_load_random_wavlm",
    }
    write_model_folder(folder, describe_run(hparams, 10.0), model)
    return folder


def make_audio(count, min_seconds=1.2, max_seconds=4.2, seed=0):
    """``count`` seeded wav files (bytes): harmonic tones with noise.

    Example
    -------
    >>> files = make_audio(2, seed=1)
    >>> len(files), files[0][:4]
    (2, b'RIFF')
    """
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        n = int(rng.uniform(min_seconds, max_seconds) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.uniform(100, 300)
        wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
        wav = 0.3 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(n)
        buffer = io.BytesIO()
        soundfile.write(buffer, wav.astype(np.float32), SAMPLE_RATE, format="WAV")
        files.append(buffer.getvalue())
    return files


def percentile(values, q):
    """The ``q``-th percentile (nearest rank) of ``values``.

    Example
    -------
    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99)
    (2, 4)
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One ``sser-serve`` process on a free localhost port."""

    def __init__(self, model, batching, quantize, threads, batch_size, wait_ms):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "sser_lobes.inference.server",
            str(model),
            "--port",
            str(self.port),
            "--threads",
            str(threads),
            "--max-queue",
            "256",
            "--timeout-s",
            "120",
        ]
        if batching:
            command += [
                "--max-batch-size",
                str(batch_size),
                "--max-wait-ms",
                str(wait_ms),
            ]
        else:
            command.append("--no-batching")
        if quantize:
            command += ["--quantize", quantize]
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.command = command
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def wait_ready(self, timeout=300):
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.process.stderr.read().decode()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"server on {self.url} did not start in {timeout} s")

    def rss_mb(self):
        """Resident memory of the server process, MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_load(url, files, clients, requests, stop_at=None):
    """``requests`` requests from ``clients`` threads (or until ``stop_at``).

    Returns
    -------
    dict
        ``seconds``, ``ok``, ``errors``, ``latencies`` (s, of the 200s),
        ``statuses`` (counts by status code), ``batch_sizes``.
    """
    import httpx

    lock = threading.Lock()
    counter = iter(range(requests))
    latencies, statuses, batch_sizes = [], {}, []

    def client(index):
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    number = next(counter, None)
                if number is None or (stop_at and time.monotonic() > stop_at):
                    return
                data = files[(number * 7 + index) % len(files)]
                started = time.perf_counter()
                try:
                    response = http.post(f"{url}/v1/classify", content=data)
                    status = response.status_code
                except httpx.HTTPError:
                    status = "transport error"
                took = time.perf_counter() - started
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(took)
                        batch_sizes.append(int(response.headers["x-batch-size"]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "seconds": seconds,
        "ok": ok,
        "errors": sum(statuses.values()) - ok,
        "latencies": latencies,
        "statuses": {str(k): v for k, v in statuses.items()},
        "batch_sizes": batch_sizes,
    }


def summary(run):
    """Requests per second, latency percentiles (ms), errors of one run."""
    lat = run["latencies"]
    return {
        "rps": run["ok"] / run["seconds"],
        "p50_ms": 1000 * percentile(lat, 50),
        "p95_ms": 1000 * percentile(lat, 95),
        "p99_ms": 1000 * percentile(lat, 99),
        "errors": run["errors"],
        "mean_batch": statistics.fmean(run["batch_sizes"] or [math.nan]),
        "seconds": run["seconds"],
        "requests": run["ok"] + run["errors"],
    }


def machine():
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def soak(server, files, clients, seconds, log):
    """16 clients for ``seconds`` with RSS samples every 5 s."""
    samples = []
    stop_at = time.monotonic() + seconds
    result = {}

    def load():
        result.update(run_load(server.url, files, clients, 10**9, stop_at=stop_at))

    worker = threading.Thread(target=load)
    worker.start()
    start = time.monotonic()
    while worker.is_alive():
        samples.append((round(time.monotonic() - start, 1), server.rss_mb()))
        worker.join(5)
    rss = [mb for _, mb in samples]
    third = max(1, len(rss) // 3)
    report = {
        "seconds": seconds,
        "clients": clients,
        "served": result.get("ok", 0),
        "errors": result.get("errors", 0),
        "rss_first_mb": rss[0],
        "rss_peak_mb": max(rss),
        "rss_last_mb": rss[-1],
        "rss_peak_first_third_mb": max(rss[:third]),
        "rss_peak_last_third_mb": max(rss[-third:]),
        "rss_samples": samples,
    }
    log(
        f"soak {seconds:.0f} s: {report['served']} served, {report['errors']} "
        f"errors; RSS first {rss[0]:.0f} MB, peak {max(rss):.0f} MB, last "
        f"{rss[-1]:.0f} MB"
    )
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=16)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (tests)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    names = [n for n in args.servers.split(",") if n]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown:
        parser.error(f"--servers: unknown {unknown}; known {sorted(SERVERS)}")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    info = {"machine_start": machine(), "command": shlex.join(sys.argv)}
    log(f"machine: {info['machine_start']}")
    files = make_audio(args.files)
    audio_seconds = sum(soundfile.info(io.BytesIO(f)).duration for f in files)
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model(Path(tmp) / "model", tiny=args.tiny)
        servers = {}
        try:
            for name in names:
                batching, quantize = SERVERS[name]
                servers[name] = Server(
                    model,
                    batching,
                    quantize,
                    args.threads,
                    args.max_batch_size,
                    args.max_wait_ms,
                )
            for name, server in servers.items():
                server.wait_ready()
                run_load(server.url, files, 2, 4)  # warm-up
                log(f"{name} ready on {server.url}, RSS {server.rss_mb():.0f} MB")
            runs = {name: {c: [] for c in levels} for name in names}
            for round_index in range(args.rounds):
                for clients in levels:
                    per_client = clients * args.requests_per_client
                    requests = max(args.min_requests, per_client)
                    order = names[round_index % len(names) :]
                    order += names[: round_index % len(names)]
                    for name in order:
                        run = summary(
                            run_load(servers[name].url, files, clients, requests)
                        )
                        runs[name][clients].append(run)
                        log(
                            f"round {round_index} {name:18s} {clients:3d} clients: "
                            f"{run['rps']:.2f} req/s, p50 {run['p50_ms']:.0f} ms, "
                            f"p99 {run['p99_ms']:.0f} ms, errors {run['errors']}, "
                            f"mean batch {run['mean_batch']:.1f}"
                        )
            soak_report = None
            if args.soak_seconds > 0 and "fp32_batching" in servers:
                soak_report = soak(
                    servers["fp32_batching"],
                    files,
                    HEADLINE_CLIENTS,
                    args.soak_seconds,
                    log,
                )
        finally:
            for server in servers.values():
                server.stop()
    medians = {
        name: {
            clients: {
                key: statistics.median(run[key] for run in rounds)
                for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "mean_batch")
            }
            | {"errors": sum(run["errors"] for run in rounds)}
            for clients, rounds in per.items()
        }
        for name, per in runs.items()
    }
    headline = {}
    for precision in ("fp32", "int8"):
        on, off = f"{precision}_batching", f"{precision}_no_batching"
        if on in medians and off in medians and HEADLINE_CLIENTS in levels:
            a, b = medians[on][HEADLINE_CLIENTS], medians[off][HEADLINE_CLIENTS]
            ratio = a["rps"] / b["rps"]
            headline[precision] = {
                "ratio": ratio,
                "met": ratio >= TARGET and a["errors"] == 0,
                "p99_ms_batching": a["p99_ms"],
            }
    info["machine_end"] = machine()
    report = {
        **info,
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "audio_files": len(files),
        "audio_seconds": audio_seconds,
        "medians": {n: {str(c): v for c, v in m.items()} for n, m in medians.items()},
        "rounds": {n: {str(c): rs for c, rs in per.items()} for n, per in runs.items()},
        "headline": headline,
        "soak": soak_report,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    print()
    print(markdown(report, levels))
    return 0


def markdown(report, levels):
    """The rows of bench/README.md's tables."""
    start = report["machine_start"]
    lines = [
        "| server | clients | req/s | p50 ms | p95 ms | p99 ms | errors | mean batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per in report["medians"].items():
        for clients in levels:
            m = per[str(clients)]
            lines.append(
                f"| {name} | {clients} | {m['rps']:.2f} | {m['p50_ms']:.0f} | "
                f"{m['p95_ms']:.0f} | {m['p99_ms']:.0f} | {m['errors']} | "
                f"{m['mean_batch']:.1f} |"
            )
    for precision, h in report["headline"].items():
        lines.append(
            f"\n{start['date']}, {start['cpu']}, load {start['load_average_1min']} "
            f"at start, {report['machine_end']['load_average_1min']} at end: "
            f"{precision} batching on / off at {HEADLINE_CLIENTS} clients "
            f"**{h['ratio']:.2f}x** ({'met' if h['met'] else 'not met'}), p99 "
            f"{h['p99_ms_batching']:.0f} ms"
        )
    soak_report = report.get("soak")
    if soak_report:
        lines.append(
            f"\nsoak {soak_report['seconds']:.0f} s at {soak_report['clients']} "
            f"clients: {soak_report['served']} served, {soak_report['errors']} "
            f"errors, RSS first {soak_report['rss_first_mb']:.0f} MB, peak in "
            f"the first third {soak_report['rss_peak_first_third_mb']:.0f} MB, in "
            f"the last third {soak_report['rss_peak_last_third_mb']:.0f} MB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
