from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from bert14.runtime import Classifier  # noqa: E402
from bert14.runtime.server import ServerOptions, create_app  # noqa: E402


@pytest.fixture(scope="module")
def clf(tiny_artifact: Path) -> Classifier:
    return Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)


def _client(clf: Classifier, **options):
    from fastapi.testclient import TestClient

    return TestClient(create_app(clf, ServerOptions(**options)))


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
    original = clf.predict

    def counting(texts, pairs=None):
        sizes.append(len(texts))
        return original(texts, pairs)

    monkeypatch.setattr(clf, "predict", counting)
    app = create_app(clf, ServerOptions(window_ms=50))

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
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
    original = clf.predict

    def slow(texts, pairs=None):
        sizes.append(len(texts))
        if len(sizes) == 1:
            time.sleep(2.5)  # the first batch is still running when the others arrive
        return original(texts, pairs)

    monkeypatch.setattr(clf, "predict", slow)
    app = create_app(clf, ServerOptions(window_ms=1000))

    async def scenario() -> tuple[list[int], float]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
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
