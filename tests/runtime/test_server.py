from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bert14.runtime import Classifier  # noqa: E402
from bert14.runtime.server import ServerOptions, create_app  # noqa: E402


@pytest.fixture(scope="module")
def clf(tiny_artifact: Path) -> Classifier:
    return Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)


def _client(clf: Classifier, **options):
    from fastapi.testclient import TestClient

    return TestClient(create_app(clf, ServerOptions(**options)), base_url="http://localhost")


def test_classify_health_and_model(clf: Classifier) -> None:
    with _client(clf) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        model = client.get("/v1/model").json()
        assert model["labels"] == clf.labels and model["precision"] == "int8" and model["provider"] == "cpu"
        assert model["score_function"] == "softmax" and set(model["thresholds"].values()) == {0.5}
        response = client.post("/v1/classify", json={"texts": ["央行宣布降准", "湖人队获胜"]})
        assert response.status_code == 200
        predictions = response.json()["predictions"]
        assert [p["label"] for p in predictions] == [p.label for p in clf.predict(["央行宣布降准", "湖人队获胜"])]
        assert all(p["labels"] == [p["label"]] for p in predictions)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "expected a JSON body"),
        (b'{"texts": "one"}', 422, "expected a list of strings"),
        (b'{"texts": []}', 422, "at least one text"),
        (b'{"texts": ["a", 3]}', 422, "texts[1]: expected a string"),
        (b'{"text": ["a"]}', 422, "expected a JSON object"),
        (b'{"texts": ["a", "b", "c", "d"]}', 413, "at most 3 per request"),
        (b'{"texts": ["' + b"x" * 5000 + b'"]}', 413, "over the limit"),
    ],
    ids=["bad-json", "wrong-type", "empty", "number", "no-texts", "too-many", "too-big"],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(clf: Classifier, body, status, message) -> None:
    with _client(clf, max_texts=3, max_body_bytes=4096) as client:
        response = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status and message in response.json()["error"]
        assert client.post("/v1/classify", json={"texts": ["还在"]}).status_code == 200


def test_concurrent_requests_are_micro_batched(clf: Classifier, monkeypatch) -> None:
    sizes: list[int] = []
    original = clf.predict_buckets

    def counting(rows):
        sizes.append(len(rows))
        return original(rows)

    monkeypatch.setattr(clf, "predict_buckets", counting)
    app = create_app(clf, ServerOptions(window_ms=50))

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                responses = await asyncio.gather(
                    *(client.post("/v1/classify", json={"texts": [f"新闻{i}"]}) for i in range(8))
                )
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 8
    assert sum(sizes) == 8 and max(sizes) > 1, f"requests ran one by one: {sizes}"


def test_requests_queued_behind_a_batch_do_not_wait_another_window(clf: Classifier, monkeypatch) -> None:
    """The window counts from a request's arrival: whatever queued while a batch ran goes as soon
    as that batch is done, not one window later."""
    import time

    sizes: list[int] = []
    original = clf.predict_buckets

    def slow(rows):
        sizes.append(len(rows))
        if len(sizes) == 1:
            time.sleep(2.5)  # the first batch is still running when the others arrive
        return original(rows)

    monkeypatch.setattr(clf, "predict_buckets", slow)
    app = create_app(clf, ServerOptions(window_ms=1000))

    async def scenario() -> tuple[list[int], float]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30) as client:
                started = time.perf_counter()
                first = asyncio.create_task(client.post("/v1/classify", json={"texts": ["第一条"]}))
                await asyncio.sleep(1.5)  # the first request's window (1 s) has closed; its batch runs
                later = await asyncio.gather(
                    *(client.post("/v1/classify", json={"texts": [f"新闻{i}"]}) for i in range(4))
                )
                elapsed = time.perf_counter() - started
                return [r.status_code for r in [await first, *later]], elapsed

    codes, elapsed = asyncio.run(scenario())
    assert codes == [200] * 5 and sizes == [1, 4], sizes
    # done at about 1 + 2.5 s; waiting another window after the first batch would take 4.5 s
    assert elapsed < 4.0, f"the queued requests waited another window: {elapsed:.2f} s"


def test_metrics_count_requests_texts_and_batches_in_prometheus_format(clf: Classifier) -> None:
    import re

    with _client(clf) as client:
        assert client.post("/v1/classify", json={"texts": ["央行宣布降准", "湖人队获胜"]}).status_code == 200
        assert client.post("/v1/classify", json={"texts": ["北京"]}).status_code == 200
        assert client.post("/v1/classify", json={"texts": []}).status_code == 422
        text = client.get("/metrics").text
    sample = re.compile(r'^[a-z_0-9]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$')
    assert all(sample.match(line) for line in text.splitlines() if not line.startswith("#")), text
    assert 'bert14_requests_total{code="200"} 2.0' in text and 'bert14_requests_total{code="422"} 1.0' in text
    assert "bert14_texts_total 3.0" in text and "bert14_request_seconds_count 3.0" in text
    assert 'bert14_batch_texts_bucket{le="+Inf"} 2.0' in text and "bert14_batch_texts_sum 3.0" in text
    assert "bert14_pending_texts 0.0" in text
    assert 'bert14_model_info{precision="int8",provider="cpu",score_function="softmax"} 1.0' in text
    # What a Prometheus server reads: the client library's own parser takes every family.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"bert14_requests", "bert14_texts", "bert14_request_seconds", "bert14_batch_texts"} <= set(families)
    assert families["bert14_request_seconds"].type == "histogram"


def test_replica_snapshots_merge_under_one_header_each_with_a_replica_label() -> None:
    import pickle

    from bert14.runtime.metrics import Metrics, render_all

    parts = {}
    for name, texts in (("b", 5), ("a", 2)):
        metrics = Metrics({"precision": "int8"})
        metrics.request(200, 0.01, texts)
        metrics.batches.observe(texts)
        parts[name] = pickle.loads(pickle.dumps(metrics.snapshot(pending=texts)))  # as Ray ships it
    text = render_all(parts)
    assert text.count("# TYPE bert14_texts_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    texts = {s.labels["replica"]: s.value for s in families["bert14_texts"].samples if s.name.endswith("_total")}
    assert texts == {"a": 2.0, "b": 5.0}
    pending = {s.labels["replica"]: s.value for s in families["bert14_pending_texts"].samples}
    assert pending == {"a": 2.0, "b": 5.0}
    buckets = [s for s in families["bert14_batch_texts"].samples if s.name.endswith("_bucket")]
    assert {s.labels["replica"] for s in buckets} == {"a", "b"}


def test_a_full_queue_answers_503_at_once_and_recovers(clf: Classifier, monkeypatch) -> None:
    import threading

    release = threading.Event()
    original = clf.predict_buckets

    def held(rows):
        release.wait(10)  # the first batch holds the model until the test lets it go
        return original(rows)

    monkeypatch.setattr(clf, "predict_buckets", held)
    app = create_app(clf, ServerOptions(max_pending_texts=3, window_ms=1))

    async def scenario() -> dict[str, object]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30) as client:
                first = asyncio.create_task(client.post("/v1/classify", json={"texts": ["一", "二", "三"]}))
                await asyncio.sleep(0.2)  # the first request's texts are pending
                refused = await client.post("/v1/classify", json={"texts": ["四"]})
                metrics = (await client.get("/metrics")).text
                release.set()
                done = await first
                again = await client.post("/v1/classify", json={"texts": ["五"]})
        return {"codes": (done.status_code, refused.status_code, again.status_code), "refused": refused, "m": metrics}

    seen = asyncio.run(scenario())
    assert seen["codes"] == (200, 503, 200) and seen["refused"].headers.get("retry-after") == "1"
    text = seen["refused"].json()["error"] + seen["m"]
    assert "3 texts are waiting (limit 3)" in text and "bert14_pending_texts 3.0" in text
