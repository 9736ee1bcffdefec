"""`bert14 serve`: the classifier behind a small HTTP API (FastAPI + uvicorn, the `serve` extra).

Only this module imports FastAPI; `bert14.runtime` itself does not, so embedding the classifier
needs neither.

    POST /v1/classify   {"texts": [...], "text_pairs": [...]?} -> {"predictions": [...]}
    GET  /healthz       -> {"status": "ok"}
    GET  /v1/model      -> labels, precision, provider, manifest summary
    GET  /metrics       -> Prometheus text: requests by status, texts, latency and batch-size
                           histograms, pending texts (runtime/metrics.py)

Bad requests get a 4xx and a message and the server keeps serving: invalid JSON (400), a body
over the byte limit (413), more texts than the per-request limit (413), wrong types or an empty
list (422). When more than `max_pending_texts` texts are already waiting, a request gets 503 with
Retry-After at once instead of joining an ever longer queue. Concurrent requests are
micro-batched: the first request opens a window of a few milliseconds, whatever else arrives in it
joins, and the lot runs as one length-bucketed batch, so throughput grows with load instead of
every request paying for its own small batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from bert14.errors import InputError
from bert14.runtime.classifier import Classifier, Prediction
from bert14.runtime.metrics import Metrics

log = logging.getLogger("bert14.server")


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"  # loopback unless the operator opens it up on purpose
    port: int = 8014
    max_texts: int = 256  # per request
    max_body_bytes: int = 1 << 20
    microbatch: bool = True
    window_ms: float = 5.0
    max_batch_texts: int = 256  # per micro-batch
    max_pending_texts: int = 4096  # accepted, not yet answered; beyond it new requests get 503


class MicroBatcher:
    """Collects concurrent requests for `window_ms` and runs them as one predict() call."""

    def __init__(self, clf: Classifier, options: ServerOptions, metrics: Metrics) -> None:
        self.clf = clf
        self.options = options
        self.metrics = metrics
        self.pending = 0  # texts accepted and not yet answered; only the event loop touches it
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bert14-infer")
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.options.microbatch:
            self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], pairs: list[str] | None) -> list[Prediction]:
        if self.pending + len(texts) > self.options.max_pending_texts:
            raise _HTTP(
                503,
                f"busy: {self.pending} texts are waiting (limit {self.options.max_pending_texts}); retry shortly",
            )
        self.pending += len(texts)
        try:
            loop = asyncio.get_running_loop()
            if not self.options.microbatch or pairs is not None:
                self.metrics.batches.observe(len(texts))
                return await loop.run_in_executor(self.executor, self.clf.predict, texts, pairs)
            future: asyncio.Future = loop.create_future()
            await self.queue.put((texts, future, loop.time()))
            return await future
        finally:
            self.pending -= len(texts)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            texts, future, arrived = await self.queue.get()
            waiting = [(texts, future)]
            count = len(texts)
            # The window runs from the oldest request's arrival: requests that queued while the
            # previous batch ran have waited already and go at once with whatever else is queued.
            deadline = arrived + self.options.window_ms / 1000
            while count < self.options.max_batch_texts:
                if not self.queue.empty():
                    more, fut, _ = self.queue.get_nowait()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        more, fut, _ = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                waiting.append((more, fut))
                count += len(more)
            joined = [text for texts, _ in waiting for text in texts]
            self.metrics.batches.observe(len(joined))
            try:
                predictions = await loop.run_in_executor(self.executor, self.clf.predict, joined)
            except Exception as exc:  # handed to every waiting request; the loop itself keeps going
                for _, fut in waiting:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for texts, fut in waiting:
                if not fut.done():
                    fut.set_result(predictions[start : start + len(texts)])
                start += len(texts)


def _parse(body: bytes, options: ServerOptions) -> tuple[list[str], list[str] | None]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _HTTP(400, f"expected a JSON body, could not parse it ({exc})") from exc
    if not isinstance(payload, dict) or "texts" not in payload:
        raise _HTTP(422, 'expected a JSON object {"texts": ["...", ...]}')
    texts, pairs = payload["texts"], payload.get("text_pairs")
    if not isinstance(texts, list):
        raise _HTTP(422, f"texts: expected a list of strings, got {type(texts).__name__}")
    if not texts:
        raise _HTTP(422, "texts: expected at least one text, got an empty list")
    if len(texts) > options.max_texts:
        raise _HTTP(413, f"texts: at most {options.max_texts} per request, got {len(texts)}; split the request")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise _HTTP(422, f"texts[{index}]: expected a string, got {type(text).__name__}")
    if pairs is not None and (
        not isinstance(pairs, list) or len(pairs) != len(texts) or not all(isinstance(p, str) for p in pairs)
    ):
        raise _HTTP(422, f"text_pairs: expected a list of {len(texts)} strings, one per text")
    return texts, pairs


class _HTTP(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(clf: Classifier, options: ServerOptions | None = None) -> FastAPI:
    options = options or ServerOptions()
    metrics = Metrics({"precision": clf.precision, "provider": clf.provider, "score_function": clf.score_function})
    batcher = MicroBatcher(clf, options, metrics)

    @asynccontextmanager
    async def lifespan(app):  # noqa: ANN001
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="bert14", lifespan=lifespan)

    def error(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict[str, object]:
        return clf.describe()

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(batcher.pending), media_type="text/plain; version=0.0.4")

    @app.post("/v1/classify")
    async def classify(request: Request) -> JSONResponse:
        started = time.perf_counter()
        response, texts = await _classify(request)
        metrics.request(response.status_code, time.perf_counter() - started, texts)
        return response

    async def _classify(request: Request) -> tuple[JSONResponse, int]:
        """The response and the number of texts it answers."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > options.max_body_bytes:
            return error(413, f"body of {declared} bytes is over the limit of {options.max_body_bytes}"), 0
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > options.max_body_bytes:
                return error(413, f"body is over the limit of {options.max_body_bytes} bytes"), 0
        try:
            texts, pairs = _parse(bytes(body), options)
            predictions = await batcher.submit(texts, pairs)
        except _HTTP as exc:
            return error(exc.status, str(exc)), 0
        except InputError as exc:
            return error(422, str(exc)), 0
        except Exception as exc:  # the request fails, the server stays up
            log.exception("classification failed")
            return error(500, f"inference failed: {exc}"), 0
        payload = {
            "predictions": [p.to_dict() for p in predictions],
            "precision": clf.precision,
            "provider": clf.provider,
        }
        return JSONResponse(payload), len(predictions)

    return app


def serve(clf: Classifier, options: ServerOptions) -> None:
    import uvicorn

    uvicorn.run(create_app(clf, options), host=options.host, port=options.port, log_level="warning")
