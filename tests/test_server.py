"""The HTTP service (``sser-serve``): answers, limits, batching across
requests, and that it keeps serving after every refusal.

The model is the session fixture ``exported`` (a trained tiny wav2vec2).
Most tests use FastAPI's TestClient; the concurrency tests run a real
uvicorn on a free localhost port and send requests from threads.
"""

import contextlib
import functools
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from sser_lobes.inference import server  # noqa: E402
from sser_lobes.inference.dynamic_batching import DynamicBatcher  # noqa: E402
from sser_lobes.inference.recognizer import EmotionRecognizer  # noqa: E402


def wait_until(condition, what, polls=3000, fail=True):
    """Poll ``condition`` (every 20 ms, at most ``polls`` times): a hang
    guard, not a timing; a loaded machine only makes it poll longer."""
    for _ in range(polls):
        if condition():
            return True
        time.sleep(0.02)
    if fail:
        pytest.fail(f"gave up waiting for {what}")
    return False


@pytest.fixture(scope="module")
def recognizer(exported):
    return EmotionRecognizer.from_hparams(str(exported[1]))


@pytest.fixture(scope="module")
def files(exported):
    manifest = json.loads((exported[0] / "manifests" / "test.json").read_text())
    return [manifest[u]["wav"] for u in sorted(manifest)][:6]


def wav_bytes(samples, rate=16000, format="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format)
    return buffer.getvalue()


def probabilities_of(result, labels):
    return torch.tensor([result["probabilities"][label] for label in labels])


@pytest.fixture()
def client(recognizer):
    limits = server.Limits(max_upload_bytes=2_000_000, max_audio_seconds=30)
    with TestClient(server.create_app(recognizer, limits)) as test_client:
        yield test_client


def test_health_model_and_docs(client, recognizer):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["labels"] == recognizer.labels and info["task"] == "categorical"
    assert info["limits"]["max_audio_seconds"] == 30
    assert "/" not in (info["card"]["encoder"] or "").lstrip("`")[:1]
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(body)
    assert client.get("/docs").status_code == 200


def test_upload_and_raw_body_give_sser_numbers(client, recognizer, files):
    for path in files[:3]:
        expected, _, _, label = recognizer.classify_file(path)
        data = open(path, "rb").read()
        upload = client.post("/v1/classify", files={"file": ("a.wav", data)})
        raw = client.post(
            "/v1/classify",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        for response in (upload, raw):
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["label"] == label
            got = probabilities_of(result, recognizer.labels)
            assert torch.allclose(got, expected, atol=1e-5)
        assert upload.json()["file"] == "a.wav"


def test_min_confidence_and_bad_options(client, files):
    data = open(files[0], "rb").read()
    sure = client.post("/v1/classify?min_confidence=0", content=data).json()
    assert sure["label"] != "uncertain"
    unsure = client.post("/v1/classify?min_confidence=1", content=data).json()
    assert unsure["label"] == "uncertain"
    assert unsure["probabilities"] == sure["probabilities"]
    for query in ("min_confidence=1.5", "min_confidence=abc", "timeline=maybe"):
        response = client.post(f"/v1/classify?{query}", content=data)
        assert response.status_code == 422
        assert response.json()["status"] == 422 and response.json()["error"]


def test_timeline_of_long_audio(recognizer, files, tmp_path):
    """``timeline=true``: one row per window, as classify_file gives them."""
    rec = EmotionRecognizer.from_hparams(
        recognizer.hparams.folder,
        overrides={"window_seconds": 1.0, "chunk_hop_seconds": 0.5},
    )
    samples = np.concatenate([soundfile.read(f, dtype="float32")[0] for f in files])
    data = wav_bytes(samples)
    (tmp_path / "long.wav").write_bytes(data)
    expected = rec.classify_file(tmp_path / "long.wav", return_timeline=True)
    with TestClient(server.create_app(rec)) as client:
        result = client.post("/v1/classify?timeline=true", content=data).json()
    rows = result["timeline"]
    assert len(rows) == len(expected[4]) > 2
    for row, want in zip(rows, expected[4]):
        assert (row["start"], row["end"], row["label"]) == (
            want["start"],
            want["end"],
            want["label"],
        )
    assert torch.allclose(probabilities_of(result, rec.labels), expected[0], atol=1e-5)


def test_limits_are_json_errors_and_the_service_goes_on(client):
    big = b"\0" * 2_100_000
    response = client.post("/v1/classify", content=big)
    assert response.status_code == 413 and "--max-upload-mb" in response.json()["error"]

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(30):
            yield b"\0" * 100_000

    response = client.post("/v1/classify", content=chunks())
    assert response.status_code == 413

    long = wav_bytes(np.full(16000 * 31, 0.1, dtype=np.float32))
    response = client.post("/v1/classify", content=long)
    assert response.status_code == 413 and "31.0 s" in response.json()["error"]

    for data, problem in (
        (b"not audio at all", "cannot read the audio"),
        (b"", "empty upload"),
        (wav_bytes(np.zeros(16000, dtype=np.float32)), "silent"),
        (wav_bytes(np.full(100, 0.1, dtype=np.float32)), "too short"),
    ):
        response = client.post("/v1/classify", files={"file": ("bad.ogg", data)})
        assert response.status_code == 422, response.text
        message = response.json()["error"]
        assert message.startswith("bad.ogg: ") and problem in message
    response = client.post("/v1/classify", files={"other": ("x.wav", b"1")})
    assert response.status_code == 422 and "'file'" in response.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_batcher_runs_items_together_and_isolates_failures():
    seen = []

    def process(items):
        seen.append(len(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    batcher = DynamicBatcher(process, max_batch_size=4, max_wait_ms=300)
    futures = [batcher.submit(x) for x in ("a", "b", "bad", "c")]
    assert [f.exception(timeout=10) is None for f in futures] == [1, 1, 0, 1]
    assert [futures[i].result() for i in (0, 1, 3)] == ["A", "B", "C"]
    assert seen[0] == 4 and futures[0].batch_size == 4  # one batch, then alone
    batcher.close()
    with pytest.raises(ValueError, match="stopped"):
        batcher.submit("d")


def test_batcher_queue_is_bounded():
    from sser_lobes.errors import QueueFullError

    release = threading.Event()
    batcher = DynamicBatcher(
        lambda items: [release.wait(10) for _ in items], max_batch_size=1, max_queue=2
    )
    first = batcher.submit(1)
    deadline = time.monotonic() + 10
    while batcher.waiting and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker took the first item
    queued = [batcher.submit(2), batcher.submit(3)]
    with pytest.raises(QueueFullError, match="2 waiting"):
        batcher.submit(4)
    release.set()
    assert all(f.result(timeout=10) for f in [first, *queued])
    batcher.close()


@pytest.mark.parametrize(
    "size_of, expected",
    [(lambda item: item[1], [[1], [10]]), (None, [[1, 10], [1, 10]])],
    ids=["by_size", "first_come"],
)
def test_batcher_groups_close_sizes_and_serves_the_oldest_first(size_of, expected):
    """Under load the worker runs the oldest waiting item with those closest
    to it in size, so padded batches waste less; without ``size_of`` the
    batches are first come, first batched."""
    gate, batches = threading.Event(), []

    def process(items):
        gate.wait(10)
        batches.append(list(items))
        return items

    batcher = DynamicBatcher(process, max_batch_size=4, size_of=size_of)
    first = batcher.submit((0, 5))
    wait_until(lambda: batcher.waiting == 0, "the worker to take the first")
    sizes = [1, 10, 10, 1, 10, 1, 1, 10]
    futures = [batcher.submit((i + 1, s)) for i, s in enumerate(sizes)]
    assert batcher.waiting == 8
    gate.set()
    assert [f.result(timeout=10) for f in [first, *futures]]
    batcher.close()
    assert batches[0] == [(0, 5)]
    assert [sorted({s for _, s in b}) for b in batches[1:]] == expected
    assert batches[1][0] == (1, 1)  # the oldest waiting item goes first
    assert all(b == sorted(b) for b in batches)  # arrival order kept


@contextlib.contextmanager
def running_server(app):
    """A real uvicorn on a free localhost port, in a thread."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_until(lambda: uv.started, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(30)


def test_concurrent_requests_are_batched_with_bad_audio_isolated(recognizer, files):
    """Eight clients at once: requests share batches (X-Batch-Size > 1), each
    result equals the file's result alone, and a corrupt upload among them is
    a 422 while the others succeed."""
    limits = server.Limits(max_batch_size=8, max_wait_ms=300)
    expected = {f: recognizer.classify_file(f)[0] for f in files}
    uploads = [(f, open(f, "rb").read()) for f in files] + [
        ("corrupt.wav", b"RIFF....WAVEfmt garbage")
    ]
    with running_server(server.create_app(recognizer, limits)) as url:

        def send(item):
            name, data = item
            with httpx.Client(timeout=60) as http:
                return name, http.post(
                    f"{url}/v1/classify", files={"file": (name, data)}
                )

        with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
            answers = list(pool.map(send, uploads * 2))
    sizes = []
    for name, response in answers:
        if name == "corrupt.wav":
            assert response.status_code == 422
            assert response.json()["error"].startswith("corrupt.wav: ")
            continue
        assert response.status_code == 200, response.text
        sizes.append(int(response.headers["x-batch-size"]))
        got = probabilities_of(response.json(), recognizer.labels)
        assert torch.allclose(got, expected[name], atol=1e-5), name
    assert max(sizes) > 1, sizes


def test_full_queue_is_429_and_slow_service_503(recognizer, files, monkeypatch):
    """A blocked worker: one request runs, one waits (queue of 1), the next
    is a 429 at once; with a short timeout the waiting one is a 503. Once
    released, the service answers again."""
    release = threading.Event()
    real = server.run_requests

    def blocked(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(server, "run_requests", blocked)
    limits = server.Limits(max_batch_size=1, max_queue=1, timeout_s=1.5)
    data = open(files[0], "rb").read()
    with running_server(server.create_app(recognizer, limits)) as url:
        post = functools.partial(httpx.post, f"{url}/v1/classify", timeout=60)
        with httpx.Client(timeout=60) as http, ThreadPoolExecutor(2) as pool:
            running = pool.submit(post, content=data)
            wait_until(
                lambda: not http.get(f"{url}/healthz").json()["waiting"],
                "the queue to empty",
                fail=False,
            )
            time.sleep(0.2)  # the worker holds the first request
            waiting = pool.submit(post, content=data)
            wait_until(
                lambda: http.get(f"{url}/healthz").json()["waiting"],
                "the second request to wait",
            )
            refused = http.post(f"{url}/v1/classify", content=data)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert "queue is full" in refused.json()["error"]
            assert waiting.result().status_code == 503
            assert running.result().status_code == 503
            release.set()
            wait_until(  # the given-up one is skipped
                lambda: not http.get(f"{url}/healthz").json()["waiting"],
                "the given-up request to be skipped",
            )
            again = http.post(f"{url}/v1/classify", content=data)
            assert again.status_code == 200, again.text


def test_command_line_refuses_a_bad_model_in_one_line(tmp_path, capsys):
    assert server.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "sser_model.json" in err[0]
