"""`bert14 serve`: the classifier behind a small HTTP API (FastAPI + uvicorn, the `serve` extra).

Only this module and listener.py import FastAPI/uvicorn; `bert14.runtime` itself does not, so
embedding the classifier needs neither.

    POST /v1/classify   {"texts": [...], "text_pairs": [...]?, "long_text": ...?} -> {"predictions": [...]}
                        long_text: a strategy ("windows") or {"strategy": ..., "stride": ...} (bert14/
                        long_text.py); what it leaves out is the server's --long-text default
    GET  /              -> with --ui, a page to try the model (runtime/page.html)
    GET  /healthz       -> {"status": "ok"}                         (never needs the API key)
    GET  /v1/model      -> labels, precision, provider, model shape and version digest
    GET  /metrics       -> Prometheus text: requests by status, texts, latency and batch-size
                           histograms, pending texts (runtime/metrics.py)
    /v2/...             -> the Open Inference Protocol (KServe v2 REST): runtime/open_inference.py

Every request is checked whole before it joins a batch, so one client's bad input never fails
another's: invalid JSON or nesting too deep (400), a body over the byte limit (413), a body that
arrives too slowly (408), more texts or tokens than one request may hold (413), wrong types, an
empty list or text that is not valid Unicode (422, naming the index). When more than
`max_pending_texts` texts are already waiting, a request gets 503 with Retry-After at once; a
request that could never fit gets 413 instead. Concurrent requests share model runs without
starving each other (runtime/scheduler.py). A 500 body carries an id to find in the server log,
never the exception's text. With an API key set, every route but /healthz needs
`Authorization: Bearer KEY`, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from bert14.encode import check_text
from bert14.errors import InputError
from bert14.long_text import LongText, OverBudget
from bert14.runtime.classifier import Classifier
from bert14.runtime.guard import Guard
from bert14.runtime.metrics import Metric, Metrics
from bert14.runtime.scheduler import BatchLimits, FairBatcher
from bert14.runtime.server_options import ServerOptions, check_api_key  # noqa: F401 - this module's API too

log = logging.getLogger("bert14.server")

# Requests up to this many characters are tokenized on the event loop (a few titles: tens of
# microseconds); larger ones in a thread of their own, so they hold up neither the loop nor the model.
INLINE_TOKENIZE_CHARS = 4096
# Routes that answer without the API key: liveness and readiness probes (Kubernetes, load balancers).
OPEN_ROUTES = frozenset({"/healthz", "/v2/health/live", "/v2/health/ready"})
# The --ui page and its script and style: open with an API key too (they hold no data; the page asks for the key).
PAGE_ROUTES = frozenset({"/", "/page.js", "/page.css"})


class HTTPFailure(Exception):
    """A request answered with a 4xx/503 and this message (either API)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse(body: bytes, options: ServerOptions, default: LongText) -> tuple[list[str], list[str] | None, LongText]:
    """The request's texts, every one checked, or the 4xx that says which and why."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except RecursionError:
        raise HTTPFailure(400, "expected a JSON body, found nesting too deep to parse") from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, an integer of 4,300+ digits
        raise HTTPFailure(400, f"expected a JSON body, could not parse it ({_reason(exc)})") from None
    if not isinstance(payload, dict) or "texts" not in payload:
        raise HTTPFailure(422, 'expected a JSON object {"texts": ["...", ...]}')
    texts, pairs = payload["texts"], payload.get("text_pairs")
    if not isinstance(texts, list):
        raise HTTPFailure(422, f"texts: expected a list of strings, got {type(texts).__name__}")
    if not texts:
        raise HTTPFailure(422, "texts: expected at least one text, got an empty list")
    if len(texts) > options.max_texts:
        raise HTTPFailure(413, f"texts: at most {options.max_texts} per request, got {len(texts)}; split the request")
    if pairs is not None and (not isinstance(pairs, list) or len(pairs) != len(texts)):
        raise HTTPFailure(422, f"text_pairs: expected a list of {len(texts)} strings, one per text")
    try:
        for index, text in enumerate(texts):
            check_text(f"texts[{index}]", text)
        for index, text in enumerate(pairs or []):
            check_text(f"text_pairs[{index}]", text)
        long_text = LongText.parse(payload.get("long_text"), default)
    except InputError as exc:
        raise HTTPFailure(422, str(exc)) from None
    return texts, pairs, long_text


class _Service:
    """What the routes share: the classifier, the batcher, the counters, the tokenizing thread."""

    def __init__(self, clf: Classifier, options: ServerOptions) -> None:
        self.clf = clf
        self.options = options
        info = {"precision": clf.precision, "provider": clf.provider, "score_function": clf.score_function}
        self.metrics = Metrics(info)
        limits = BatchLimits(options.window_ms, options.max_batch_texts, options.max_batch_tokens, options.microbatch)
        self.batcher = FairBatcher(clf.predict_buckets, limits, self.metrics.batches.observe)
        # Tokenizing a large request must not hold up the model's thread, nor the event loop.
        self.tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bert14-tokenize")
        # Rows accepted and not yet answered (a text until it is tokenized; then each of its windows);
        # only the event loop touches it.
        self.pending = 0

    async def classify(self, texts: list[str], pairs: list[str] | None, long_text: LongText | None = None) -> list:
        limit = self.options.max_pending_texts
        if len(texts) > limit:
            raise HTTPFailure(
                413, f"texts: {len(texts)} is more than the server ever holds at once ({limit}); split it"
            )
        if self.pending + len(texts) > limit:
            raise HTTPFailure(503, f"busy: {self.pending} texts are waiting (limit {limit}); retry shortly")
        held = len(texts)
        self.pending += held
        budget = self.options.max_request_tokens  # windows past it are refused before they are built
        try:
            try:
                if sum(len(t) for t in texts) + sum(len(t) for t in pairs or []) <= INLINE_TOKENIZE_CHARS:
                    docs = self.clf.documents(texts, pairs, long_text, budget)  # a thread hop would cost more
                else:
                    loop = asyncio.get_running_loop()
                    tokenize = self.clf.documents
                    docs = await loop.run_in_executor(self.tokenizer, tokenize, texts, pairs, long_text, budget)
            except OverBudget:
                raise HTTPFailure(413, f"request holds more than {budget} tokens, over the limit of {budget} per "
                                       "request; split it, or ask for fewer windows") from None  # fmt: skip
            # A text's windows are rows like any other: they count against the budget, the pending
            # limit (so windows cannot hold more memory than as many texts would) and share runs.
            rows = [row for doc in docs for row in doc.rows]
            tokens = sum(len(row.ids) for row in rows)
            if tokens > self.options.max_request_tokens:
                raise HTTPFailure(
                    413,
                    f"request holds {tokens} tokens, over the limit of {self.options.max_request_tokens} "
                    "per request; split it",
                )
            if len(rows) > limit:
                raise HTTPFailure(413, f"texts: their {len(rows)} windows are more rows than the server ever holds "
                                       f"at once ({limit}); split the request or lower max_windows")  # fmt: skip
            if self.pending - held + len(rows) > limit:
                raise HTTPFailure(503, f"busy: {self.pending - held} rows are waiting (limit {limit}); retry shortly")
            self.pending += len(rows) - held
            held = len(rows)
            return self.clf.pool(docs, await self.batcher.submit(rows))
        finally:
            self.pending -= held

    async def answer(self, respond, input_status: int = 422) -> tuple[Response, int]:  # noqa: ANN001
        """`await respond()` -> (response, texts answered); a refused request becomes its 4xx/503, a
        failure a 500 whose body holds an incident id to find in the log, never the exception."""
        try:
            return await respond()
        except HTTPFailure as exc:
            return error_response(exc.status, str(exc)), 0
        except InputError as exc:
            return error_response(input_status, str(exc)), 0
        except Exception:  # the request fails, the server stays up; the details stay in the log
            incident = uuid.uuid4().hex[:12]
            log.exception("classification failed (incident %s)", incident)
            return error_response(500, f"inference failed (incident {incident}; see the server log)"), 0

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        length = ascii_count(declared) if declared is not None else None
        if length is not None and length > self.options.max_body_bytes:
            raise HTTPFailure(413, f"body of {declared} bytes is over the limit of {self.options.max_body_bytes}")
        body = bytearray()

        async def read() -> None:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > self.options.max_body_bytes:
                    raise HTTPFailure(413, f"body is over the limit of {self.options.max_body_bytes} bytes")

        try:
            await asyncio.wait_for(read(), self.options.body_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPFailure(408, f"the body did not arrive within {self.options.body_timeout_s:g} s") from None
        return bytes(body)


def _reason(exc: BaseException) -> str:
    """Why a body did not parse, in one short line (Python's digit-limit message names a setting of its own)."""
    text = " ".join(str(exc).split())
    if "integer string conversion" in text:
        return "an integer of more than 4,300 digits"
    return text[:200]


def ascii_count(value: str) -> int | None:
    """A header's byte count: ASCII digits only (str.isdigit also takes '²' and other digits int() refuses),
    at most 18 of them (int() refuses over 4,300 and no body is that large); None when it is not one."""
    if not (0 < len(value) <= 18 and value.isascii() and value.isdigit()):
        return None
    return int(value)


def error_response(status: int, message: str) -> JSONResponse:
    """Both APIs' error body: {"error": message} (the Open Inference Protocol's form too)."""
    headers = {"Retry-After": "1"} if status == 503 else {}
    if status in (408, 413):  # the rest of the body may never be read: this connection is done
        headers["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _RequireKey:
    """ASGI middleware: every HTTP route but the health probes (OPEN_ROUTES) needs `Authorization:
    Bearer KEY`. Plain ASGI rather than FastAPI's @middleware, which wraps every request and response
    in extra tasks."""

    def __init__(self, app, key: str, open_routes: frozenset[str] = OPEN_ROUTES) -> None:  # noqa: ANN001
        self.app = app
        self.key = key.encode("utf-8")
        self.open_routes = open_routes  # and the --ui page, which holds no data: it asks for the key

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["path"] in self.open_routes or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "expected Authorization: Bearer <API key>")
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _authorized(self, scope) -> bool:  # noqa: ANN001
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        presented = token.strip() if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(presented, self.key)  # constant time for a key of the right length


@dataclass(frozen=True)
class Hooks:
    """What a host running several copies of the server (Ray Serve replicas) plugs in."""

    # Called about once a second with a snapshot of this server's metric families (to publish them).
    publish: Callable[[list[Metric]], Awaitable[None]] | None = None
    # GET /metrics answers this text instead of this server's own (every replica's series).
    metrics_text: Callable[[], Awaitable[str]] | None = None


def create_app(clf: Classifier, options: ServerOptions | None = None, hooks: Hooks | None = None) -> FastAPI:
    options = options or ServerOptions()
    hooks = hooks or Hooks()
    service = _Service(clf, options)

    async def publishing() -> None:
        while True:
            try:
                await hooks.publish(service.metrics.snapshot(service.pending))  # type: ignore[misc]
            except Exception:  # a metrics sink that is down must not take the server with it
                log.warning("publishing metrics failed", exc_info=True)
            await asyncio.sleep(1.0)

    @asynccontextmanager
    async def lifespan(app):  # noqa: ANN001
        service.batcher.start()
        publisher = asyncio.create_task(publishing()) if hooks.publish else None
        yield
        if publisher is not None:
            publisher.cancel()
        await service.batcher.stop()
        service.tokenizer.shutdown(wait=False, cancel_futures=True)

    # The schema and docs pages describe the API to anyone who asks: off unless the operator wants them.
    docs_url, openapi_url = ("/docs", "/openapi.json") if options.docs else (None, None)
    app = FastAPI(title="bert14", lifespan=lifespan, docs_url=docs_url, redoc_url=None, openapi_url=openapi_url)

    if options.api_key is not None:
        open_routes = OPEN_ROUTES | (PAGE_ROUTES if options.ui else set())
        app.add_middleware(_RequireKey, key=options.api_key, open_routes=open_routes)
    # Outermost: a request for another host name, from another origin or with a form body goes no further.
    app.add_middleware(Guard, bind=options.host, allow=options.allow_hosts, open_routes=OPEN_ROUTES)

    @app.api_route("/healthz", methods=["GET", "HEAD"])  # load balancers probe with HEAD
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict[str, object]:
        return clf.describe()

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        text = await hooks.metrics_text() if hooks.metrics_text else service.metrics.render(service.pending)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.post("/v1/classify")
    async def classify(request: Request) -> JSONResponse:
        started = time.perf_counter()
        response, texts = await _classify(request)
        service.metrics.request(response.status_code, time.perf_counter() - started, texts)
        return response

    async def _classify(request: Request) -> tuple[JSONResponse, int]:
        """The response and the number of texts it answers."""

        async def respond() -> tuple[JSONResponse, int]:
            texts, pairs, long_text = _parse(await service.read_body(request), options, clf.options.long_text)
            predictions = await service.classify(texts, pairs, long_text)
            payload = {
                "predictions": [p.to_dict() for p in predictions],
                "precision": clf.precision,
                "provider": clf.provider,
            }
            return JSONResponse(payload), len(predictions)

        return await service.answer(respond)

    if options.ui:
        from bert14.runtime.page import add_page

        add_page(app, auth=options.api_key is not None)

    from bert14.runtime.open_inference import add_routes

    add_routes(app, service, options.model_name)

    return app
