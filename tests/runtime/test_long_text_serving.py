"""Long texts on the server: a default per server, a choice per request on /v1 and /v2, windows as rows
under the same token budget, and one-line refusals; triton-repo refuses what its models cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")

from bert14.long_text import LongText  # noqa: E402
from bert14.runtime import Classifier  # noqa: E402
from bert14.runtime.server import ServerOptions, create_app  # noqa: E402

ARTICLE = "记者从市交通委获悉，" + "地铁新线将于年底开通运营，沿线居民出行将更加便利。" * 60  # about 1,510 tokens


def _client(clf: Classifier, **options):
    from fastapi.testclient import TestClient

    return TestClient(create_app(clf, ServerOptions(**options)), base_url="http://localhost")


@pytest.fixture(scope="module")
def clf(tiny_artifact: Path) -> Classifier:
    return Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)


def test_v1_takes_a_strategy_per_request_and_answers_as_predict(clf: Classifier) -> None:
    texts = ["湖人主场险胜勇士", ARTICLE]
    with _client(clf) as client:
        for long_text, spec in (
            (None, LongText()),
            ("head_tail", LongText("head_tail")),
            ({"strategy": "windows", "pool": "max", "stride": 300}, LongText("windows", stride=300, pool="max")),
        ):
            body = {"texts": texts} | ({"long_text": long_text} if long_text is not None else {})
            reply = client.post("/v1/classify", json=body)
            assert reply.status_code == 200, reply.text
            assert reply.json()["predictions"] == [p.to_dict() for p in clf.predict(texts, long_text=spec)]
        assert reply.json()["predictions"][1]["windows"] == 5  # starts 0, 300, 600, 900 and 1,000 of 1,510 tokens
        assert client.get("/v1/model").json()["long_text"] == LongText().fitted(510).__dict__


def test_the_servers_default_comes_from_its_load_options(tiny_artifact: Path) -> None:
    served = Classifier.load(tiny_artifact, provider="cpu", threads=1, long_text=LongText("windows", max_windows=3))
    with _client(served) as client:
        answer = client.post("/v1/classify", json={"texts": [ARTICLE]}).json()["predictions"][0]
        assert answer["windows"] == 3 and answer["truncated"] is True
        chosen = client.post("/v1/classify", json={"texts": [ARTICLE], "long_text": {"max_windows": 2}}).json()
        assert chosen["predictions"][0]["windows"] == 2  # the request's field, the server's strategy
        assert client.get("/v1/model").json()["long_text"]["strategy"] == "windows"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"texts": ["a"], "long_text": "window"}, "long_text: expected one of truncate, head_tail, windows"),
        ({"texts": ["a"], "long_text": {"strategy": "windows", "max_windows": 0}}, "max_windows: expected a whole"),
        ({"texts": ["a"], "long_text": {"strategy": "head_tail", "head_tokens": -1}}, "head_tokens: expected a whole"),
        ({"texts": ["a"], "long_text": {"strategy": "head_tail", "head_tokens": 600}}, "expected 0 to 510"),
        ({"texts": ["a"], "long_text": {"stride": "8"}}, "stride: expected a whole number"),
        ({"texts": ["a"], "long_text": {"windows": True}}, "long_text: unknown field(s) ['windows']"),
        ({"texts": ["a"], "long_text": 3}, "long_text: expected a strategy's name or an object"),
        ({"texts": ["a"], "text_pairs": ["b"], "long_text": "windows"}, "takes single texts; sentence pairs"),
    ],
)
def test_bad_long_text_requests_get_422_and_others_are_served(clf: Classifier, body: dict, message: str) -> None:
    with _client(clf) as client:
        reply = client.post("/v1/classify", json=body)
        assert reply.status_code == 422 and message in reply.json()["error"], reply.text
        assert client.post("/v1/classify", json={"texts": ["湖人"]}).status_code == 200


def test_windows_count_against_the_request_token_budget(clf: Classifier) -> None:
    with _client(clf, max_request_tokens=2048) as client:
        assert client.post("/v1/classify", json={"texts": [ARTICLE]}).status_code == 200  # 512 tokens
        reply = client.post("/v1/classify", json={"texts": [ARTICLE], "long_text": "windows"})
        assert reply.status_code == 413 and "request holds 2048" not in reply.text and "over the limit" in reply.text


def test_v2_takes_the_strategy_as_parameters_and_reports_windows(clf: Classifier) -> None:
    body = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["湖人", ARTICLE]}],
        "parameters": {"long_text": "windows", "pool": "max"},
    }
    with _client(clf) as client:
        reply = client.post("/v2/models/bert14/infer", json=body)
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
        want = clf.predict(["湖人", ARTICLE], long_text=LongText("windows", pool="max"))
        assert outputs["windows"] == [1, 5] and outputs["label"] == [p.label for p in want]
        body["parameters"] = {"long_text": "windows", "max_windows": 0}
        reply = client.post("/v2/models/bert14/infer", json=body)
        assert reply.status_code == 400 and "parameters.long_text max_windows" in reply.json()["error"]


def test_triton_repo_refuses_a_strategy_its_models_do_not_run(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    from bert14.commands.cli import main

    out = tmp_path / "repo"
    assert main(["triton-repo", str(tiny_artifact), str(out), "--long-text", "windows"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--long-text windows: the repository's tokenize model truncates" in err and len(err.splitlines()) == 1
    assert not out.exists(), "nothing is written"


def test_windows_count_against_the_pending_limit_as_rows(clf: Classifier, monkeypatch) -> None:
    """A text in 5 windows holds 5 rows' memory: it counts 5 against --max-pending-texts, and a server
    already holding rows answers 503 for windows it would have taken as one truncated text."""
    import asyncio
    import threading

    import httpx

    release = threading.Event()
    original = clf.predict_buckets

    def held(rows):  # noqa: ANN001, ANN202
        release.wait(10)  # the first run holds the model until the test lets it go
        return original(rows)

    monkeypatch.setattr(clf, "predict_buckets", held)
    app = create_app(clf, ServerOptions(max_pending_texts=6, window_ms=1))

    async def scenario() -> tuple[int, ...]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30) as client:
                too_many = await client.post("/v1/classify", json={"texts": [ARTICLE, ARTICLE], "long_text": "windows"})
                assert "10 windows are more rows than the server ever holds at once (6)" in too_many.json()["error"]
                first = asyncio.create_task(client.post("/v1/classify", json={"texts": ["一", "二"]}))
                await asyncio.sleep(0.2)  # two rows pending
                busy = await client.post("/v1/classify", json={"texts": [ARTICLE], "long_text": "windows"})
                assert "2 rows are waiting (limit 6)" in busy.json()["error"]
                fits = asyncio.create_task(client.post("/v1/classify", json={"texts": [ARTICLE]}))
                await asyncio.sleep(0.2)
                release.set()
                done, ok = await first, await fits
                after = await client.post("/v1/classify", json={"texts": [ARTICLE], "long_text": "windows"})
        return too_many.status_code, busy.status_code, done.status_code, ok.status_code, after.status_code

    assert asyncio.run(scenario()) == (413, 503, 200, 200, 200)


def test_a_hostile_window_setting_is_refused_before_its_rows_are_built(clf: Classifier, monkeypatch) -> None:
    """Stride 1 and thousands of windows on every text of a request would build hundreds of millions of
    ids; the server's token budget stops it before a row of the text past it exists, answers 413, and
    the pending count comes back to zero after every refusal (422s included)."""
    from bert14 import long_text

    built: list[int] = []
    wrap = long_text._Template.wrap
    monkeypatch.setattr(long_text._Template, "wrap", lambda self, ids: built.append(1) or wrap(self, ids))
    hostile = {"strategy": "windows", "stride": 1, "max_windows": 4096}
    with _client(clf) as client:
        reply = client.post("/v1/classify", json={"texts": [ARTICLE] * 64, "long_text": hostile})
        assert reply.status_code == 413 and "more than 65536 tokens" in reply.json()["error"], reply.text
        assert built == [], "no window of a text past the budget was built"
        bad = client.post("/v1/classify", json={"texts": ["a"], "text_pairs": ["b"], "long_text": "windows"})
        assert bad.status_code == 422
        metrics = client.get("/metrics").text
        assert "bert14_pending_texts 0.0" in metrics, metrics
        assert client.post("/v1/classify", json={"texts": [ARTICLE], "long_text": "windows"}).status_code == 200
