"""An HTTP service for a model folder: ``sser-serve MODEL``.

    sser-serve MODEL [--host 127.0.0.1] [--port 8000] [--max-batch-size 8]
        [--max-wait-ms 10] [--no-batching] [--max-queue 64]
        [--max-upload-mb 20] [--max-audio-seconds 60] [--timeout-s 60]
        [--quantize int8] [--threads N]

Endpoints (FastAPI; the OpenAPI docs are at ``/docs`` and
``/openapi.json``):

* ``POST /v1/classify``: the audio as a multipart upload (field ``file``) or
  as the raw request body (any format libsndfile reads). Query options:
  ``min_confidence`` (in [0, 1]: the label is ``uncertain`` when the top
  probability is below it, :func:`sser_lobes.inference.abstention.decide`)
  and ``timeline=true`` (per-window results,
  :func:`sser_lobes.inference.timeline_view.classify_with_timeline`). The
  answer is the JSON of :meth:`EmotionRecognizer.predict_files` for one file;
  the header ``X-Batch-Size`` says how many requests ran in its batch.
* ``GET /healthz``: ``{"status": "ok", "waiting": N}``.
* ``GET /v1/model``: labels, task, sample rate, window, what the model is
  (the model card's facts) and the service's limits.

The model is loaded by :meth:`EmotionRecognizer.from_hparams` (data only, no
code of the folder runs). Concurrent requests are batched across clients by
a :class:`~sser_lobes.inference.dynamic_batching.DynamicBatcher` (at most
``--max-batch-size`` requests, waiting at most ``--max-wait-ms`` for more;
when more are waiting, the oldest with those closest to it in length)
whose one worker thread runs them through the recognizer's length-sorted
batch path (:meth:`EmotionRecognizer.predict_utterances`): padding never
changes a result, so a request gets the numbers it gets alone.

Limits, each answered with a JSON ``{"error": ..., "status": ...}`` and the
service goes on: a body over ``--max-upload-mb`` or audio over
``--max-audio-seconds`` (read from the header, before decoding) is 413; a
full queue (``--max-queue`` waiting requests) is 429 with ``Retry-After``;
a request not served within ``--timeout-s``, or a service shutting down, is
503; audio that cannot be used (corrupt, empty, silent, too short) or a bad
option is 422 naming the problem. Bad audio is refused before it is queued,
so it never fails the requests batched with it.
"""

import argparse
import asyncio
import functools
import sys

from sser_lobes.dataio.audio_bytes import audio_bytes_seconds, load_audio_bytes
from sser_lobes.errors import (
    AudioError,
    BatcherClosedError,
    ModelFormatError,
    QuantizationError,
    QueueFullError,
    UploadLimitError,
)
from sser_lobes.inference.abstention import decide
from sser_lobes.inference.dynamic_batching import DynamicBatcher
from sser_lobes.inference.recognizer import SILENCE_THRESHOLD, Utterance
from sser_lobes.inference.timeline_view import classify_with_timeline

#: Multipart field of the uploaded file.
FILE_FIELD = "file"


class Limits:
    """The service's limits and batching settings.

    Example
    -------
    >>> Limits(max_batch_size=1).batching
    False
    """

    def __init__(
        self,
        max_batch_size=8,
        max_wait_ms=10.0,
        max_queue=64,
        max_upload_bytes=20_000_000,
        max_audio_seconds=60.0,
        timeout_s=60.0,
    ):
        self.max_batch_size = int(max_batch_size)
        self.max_wait_ms = float(max_wait_ms)
        self.max_queue = int(max_queue)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_audio_seconds = float(max_audio_seconds)
        self.timeout_s = float(timeout_s)

    @property
    def batching(self):
        """Whether requests may share a batch."""
        return self.max_batch_size > 1

    def as_dict(self):
        """For ``GET /v1/model``."""
        return {
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
            "max_queue": self.max_queue,
            "max_upload_bytes": self.max_upload_bytes,
            "max_audio_seconds": self.max_audio_seconds,
            "timeout_s": self.timeout_s,
        }


class QueuedAudio:
    """One decoded request in the batcher's queue."""

    def __init__(self, name, wav, timeline=False):
        self.name = name
        self.wav = wav
        self.timeline = timeline


def run_requests(recognizer, requests, batch_size):
    """Results of a batch of requests (the batcher's ``process``).

    Plain requests go through the recognizer's length-sorted batch path
    together; timeline requests through :func:`classify_with_timeline`.
    """
    results = [None] * len(requests)
    plain = [i for i, r in enumerate(requests) if not r.timeline]
    if plain:
        utterances = [
            Utterance(
                name=requests[i].name,
                load=functools.partial(_same, requests[i].wav),
                seconds=len(requests[i].wav) / recognizer.sample_rate,
            )
            for i in plain
        ]
        for i, result in zip(
            plain, recognizer.predict_utterances(utterances, batch_size=batch_size)
        ):
            results[i] = result
    for i, request in enumerate(requests):
        if request.timeline:
            results[i] = classify_with_timeline(recognizer, request.wav, request.name)
    return results


def queued_samples(request):
    """The batcher's size of a request: its samples (close ones share a batch)."""
    return len(request.wav)


def _same(wav):
    """An Utterance's ``load`` of audio decoded already (in the handler)."""
    return wav


def model_summary(recognizer):
    """What ``GET /v1/model`` says about the model (no local path)."""
    description = getattr(recognizer.hparams, "description", None) or {}
    training = description.get("training") or {}
    architecture = description.get("architecture") or {}
    encoder = (architecture.get("encoder") or {}).get("config") or {}
    return {
        "task": recognizer.hparams.task,
        "labels": list(recognizer.labels),
        "sample_rate": recognizer.sample_rate,
        "window_seconds": float(recognizer.hparams.window_seconds),
        "card": {
            "experiment": description.get("experiment"),
            "encoder": training.get("ssl_source") or encoder.get("model_type"),
            "finetune": training.get("finetune"),
            "pooling": (architecture.get("pooling") or {}).get("type"),
            "head": (architecture.get("head") or {}).get("type"),
            "selection_metric": training.get("selection_metric"),
        },
    }


def create_app(recognizer, limits=None):
    """The FastAPI application serving ``recognizer``.

    The batcher starts with the application (its lifespan) and stops with
    it; use ``with fastapi.testclient.TestClient(app):`` in tests.
    """
    import contextlib

    from fastapi import FastAPI, Query
    from fastapi import Request as HTTPRequest
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    limits = limits or Limits()
    categorical = recognizer.hparams.task == "categorical"

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.batcher = DynamicBatcher(
            functools.partial(
                run_requests, recognizer, batch_size=limits.max_batch_size
            ),
            max_batch_size=limits.max_batch_size,
            max_wait_ms=limits.max_wait_ms,
            max_queue=limits.max_queue,
            size_of=queued_samples,
        )
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.batcher.close)

    app = FastAPI(
        title="sser emotion recognition",
        description="Speech emotion recognition with an exported sser model.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes)

    def error(status, message, headers=None):
        return JSONResponse(
            {"error": " ".join(str(message).split()), "status": status},
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
            for e in exc.errors()
        )
        return error(422, problems or "invalid request")

    def decode(name, data):
        """The waveform of an upload, checked, cropped as the model's recipe
        evaluated it."""
        seconds = audio_bytes_seconds(data, name)
        if seconds > limits.max_audio_seconds:
            raise UploadLimitError(
                f"{name}: {seconds:.1f} s of audio, over the limit of "
                f"{limits.max_audio_seconds:g} s (--max-audio-seconds)"
            )
        wav = load_audio_bytes(
            data,
            name,
            sample_rate=recognizer.sample_rate,
            min_samples=recognizer.min_samples,
            silence_threshold=SILENCE_THRESHOLD,
        )
        crop = getattr(recognizer.hparams, "eval_crop_seconds", None)
        if crop:
            wav = wav[: int(round(crop * recognizer.sample_rate))]
        return wav

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/healthz")
    async def healthz():
        """Liveness: the service answers, and how many requests wait."""
        return {"status": "ok", "waiting": app.state.batcher.waiting}

    @app.get("/v1/model")
    async def model_info():
        """The model's labels and card facts, and the service's limits."""
        return {**model_summary(recognizer), "limits": limits.as_dict()}

    @app.post(
        "/v1/classify",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                FILE_FIELD: {"type": "string", "format": "binary"}
                            },
                            "required": [FILE_FIELD],
                        }
                    },
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"}
                    },
                },
            }
        },
    )
    async def classify(
        request: HTTPRequest,
        min_confidence: float | None = Query(
            None, ge=0.0, le=1.0, description="label 'uncertain' below this"
        ),
        timeline: bool = Query(False, description="per-window results too"),
    ):
        """Classify one audio file (multipart field `file`, or the raw body)."""
        if min_confidence is not None and not categorical:
            return error(422, "min_confidence is for categorical models")
        if timeline and not categorical:
            return error(422, "timeline is for categorical models")
        name, data = await _read_audio(request)
        try:
            # decoding and resampling run off the event loop
            wav = await asyncio.to_thread(decode, name, data)
        except UploadLimitError as problem:
            return error(413, str(problem))
        except AudioError as problem:
            return error(422, str(problem))
        try:
            future = app.state.batcher.submit(QueuedAudio(name, wav, timeline))
        except QueueFullError as problem:
            return error(429, f"busy: {problem}; retry later", {"Retry-After": "1"})
        except BatcherClosedError:
            return error(503, "the service is shutting down")
        try:
            result = await asyncio.wait_for(
                asyncio.wrap_future(future), limits.timeout_s
            )
        except TimeoutError:
            future.cancel()
            return error(503, f"not served within {limits.timeout_s:g} s (--timeout-s)")
        except (AudioError, ValueError) as problem:
            return error(422, f"{name}: {problem}")
        if "error" in result:
            return error(422, result["error"])
        if categorical:
            result["label"] = decide(result["probabilities"], min_confidence)
        return JSONResponse(result, headers={"X-Batch-Size": str(_batch_of(future))})

    return app


def _batch_of(future):
    """How many requests ran in the batch of ``future``."""
    return getattr(future, "batch_size", 1)


async def _read_audio(request):
    """``(name, bytes)`` of the upload: a multipart field ``file`` or the
    raw body."""
    from starlette.exceptions import HTTPException

    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get(FILE_FIELD)
        if upload is None or isinstance(upload, str):
            raise HTTPException(
                422, f"multipart upload without a file field {FILE_FIELD!r}"
            )
        return upload.filename or "upload", await upload.read()
    # a raw body is named by the optional query parameter ``name``
    return request.query_params.get("name") or "body", await request.body()


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, from its
    ``Content-Length`` before anything is read, or while it streams."""

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self):
        from starlette.exceptions import HTTPException

        return HTTPException(
            413,
            f"the upload is over the limit of {self.max_bytes} bytes (--max-upload-mb)",
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            from fastapi.responses import JSONResponse

            exc = self._too_large()
            response = JSONResponse(
                {"error": exc.detail, "status": 413}, status_code=413
            )
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        return await self.app(scope, limited_receive, send)


def build_parser():
    """The command line's parser (the Dockerfile's ENTRYPOINT is checked
    against it)."""
    parser = argparse.ArgumentParser(
        prog="sser-serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", help="an exported sser model folder or Hub repo id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument(
        "--no-batching", action="store_true", help="one request per model call"
    )
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--max-upload-mb", type=float, default=20.0)
    parser.add_argument("--max-audio-seconds", type=float, default=60.0)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads"
    )
    return parser


def main(argv=None):
    """Command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("max_batch_size", "max_queue", "port"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    for option in ("max_upload_mb", "max_audio_seconds", "timeout_s"):
        if not getattr(args, option) > 0:
            parser.error(f"--{option.replace('_', '-')} must be > 0")
    if not args.max_wait_ms >= 0:
        parser.error("--max-wait-ms must be >= 0")
    import torch
    import uvicorn

    from sser_lobes.inference.recognizer import EmotionRecognizer

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        recognizer = EmotionRecognizer.from_hparams(args.model, quantize=args.quantize)
    except (ModelFormatError, QuantizationError, OSError) as problem:
        print(f"error: {' '.join(str(problem).split())}", file=sys.stderr)
        return 2
    limits = Limits(
        max_batch_size=1 if args.no_batching else args.max_batch_size,
        max_wait_ms=0.0 if args.no_batching else args.max_wait_ms,
        max_queue=args.max_queue,
        max_upload_bytes=int(args.max_upload_mb * 1_000_000),
        max_audio_seconds=args.max_audio_seconds,
        timeout_s=args.timeout_s,
    )
    uvicorn.run(create_app(recognizer, limits), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
