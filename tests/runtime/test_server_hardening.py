"""The server under hostile and unlucky traffic: one request never fails another, limits answer
with the right status, nothing internal leaks, slow clients are cut off while others are served."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from conftest import free_port, serving  # noqa: E402

from bert14.runtime import Classifier  # noqa: E402
from bert14.runtime.server import ServerOptions, create_app  # noqa: E402

KEY = "k" * 32
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def clf(tiny_artifact: Path) -> Classifier:
    return Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1)


async def _with_client(app, scenario):
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as client:
            return await scenario(client)


def test_a_poisoned_request_never_fails_the_good_ones_batched_with_it(clf: Classifier) -> None:
    app = create_app(clf, ServerOptions(window_ms=20))
    good = [{"texts": [f"新闻{i}", "体育"]} for i in range(8)]
    poisoned = b'{"texts": ["ok", "\\ud800 lone surrogate"]}'

    async def scenario(client):
        for _ in range(20):
            requests = [client.post("/v1/classify", json=body) for body in good]
            requests.insert(3, client.post("/v1/classify", content=poisoned, headers=JSON))
            responses = await asyncio.gather(*requests)
            bad = responses.pop(3)
            assert bad.status_code == 422 and "texts[1]" in bad.json()["error"]
            assert [r.status_code for r in responses] == [200] * 8

    asyncio.run(_with_client(app, scenario))


def test_a_run_that_fails_is_retried_without_the_request_that_broke_it(clf: Classifier, monkeypatch) -> None:
    original = clf.predict_buckets
    runs: list[int] = []

    def breaks_on_one_text(rows):
        runs.append(len(rows))
        if any(row.ids == clf.encode(["毒"])[0].ids for row in rows):
            raise RuntimeError("secret internal detail /home/build/model.onnx")
        return original(rows)

    monkeypatch.setattr(clf, "predict_buckets", breaks_on_one_text)
    app = create_app(clf, ServerOptions(window_ms=50))

    async def scenario(client):
        bodies = [{"texts": ["好"]}, {"texts": ["毒"]}, {"texts": ["也好", "还好"]}]
        return await asyncio.gather(*(client.post("/v1/classify", json=b) for b in bodies))

    ok, broken, ok2 = asyncio.run(_with_client(app, scenario))
    assert (ok.status_code, broken.status_code, ok2.status_code) == (200, 500, 200)
    assert runs[0] == 4, "the three requests first ran as one batch"
    error = broken.json()["error"]
    assert "incident" in error and "secret" not in error and "/home" not in error


def test_a_request_larger_than_the_queue_gets_413_not_a_retry(clf: Classifier) -> None:
    app = create_app(clf, ServerOptions(max_pending_texts=4, max_texts=100))

    async def scenario(client):
        return await client.post("/v1/classify", json={"texts": ["一"] * 5})

    response = asyncio.run(_with_client(app, scenario))
    assert response.status_code == 413 and "retry-after" not in response.headers
    assert "more than the server ever holds at once (4)" in response.json()["error"]


def test_a_request_over_the_token_budget_gets_413(clf: Classifier) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf, ServerOptions(max_request_tokens=100)), base_url="http://localhost") as client:
        response = client.post("/v1/classify", json={"texts": ["长" * 60, "文" * 60]})
        assert response.status_code == 413 and "124 tokens, over the limit of 100" in response.json()["error"]
        assert client.post("/v1/classify", json={"texts": ["短"]}).status_code == 200


def test_deeply_nested_json_is_a_400(clf: Classifier) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf), base_url="http://localhost") as client:
        response = client.post("/v1/classify", content=b"[" * 100_000 + b"]" * 100_000, headers=JSON)
        assert response.status_code == 400 and "nesting too deep" in response.json()["error"]


def test_model_route_leaks_no_paths_or_hashes_and_docs_are_off(clf: Classifier, tiny_artifact: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf), base_url="http://localhost") as client:
        text = client.get("/v1/model").text
        model = json.loads(text)
        assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
    assert str(tiny_artifact) not in text and "/tmp" not in text and "source" not in model
    files = json.loads((tiny_artifact / "manifest.json").read_text())["files"]
    assert not any(h in text for h in files.values()), "full file hashes are the manifest's business"
    assert model["labels"] == clf.labels and len(model["version"]) == 16
    assert files[clf.model_file].startswith(model["version"]), "the version is the served file's digest"
    with TestClient(create_app(clf, ServerOptions(docs=True)), base_url="http://localhost") as client:
        assert client.get("/openapi.json").status_code == 200


def test_api_key_is_required_everywhere_but_healthz(clf: Classifier) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf, ServerOptions(api_key=KEY)), base_url="http://localhost") as client:
        assert client.get("/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
            response = client.post("/v1/classify", json={"texts": ["a"]}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert client.get("/metrics", headers=headers).status_code == 401
            assert client.get("/v1/model", headers=headers).status_code == 401
        good = {"Authorization": f"Bearer {KEY}"}
        assert client.post("/v1/classify", json={"texts": ["a"]}, headers=good).status_code == 200


def test_server_options_are_validated() -> None:
    from bert14.errors import InputError

    for bad in ({"port": 70000}, {"port": 0}, {"window_ms": -1}, {"body_timeout_s": 0}, {"api_key": "short"}):
        with pytest.raises(InputError):
            ServerOptions(**bad)


def test_a_small_request_is_not_stuck_behind_a_large_one(clf: Classifier, monkeypatch) -> None:
    original = clf.predict_buckets

    def slow(rows):
        time.sleep(0.05)  # each model run takes a while, as a full-size model's does
        return original(rows)

    monkeypatch.setattr(clf, "predict_buckets", slow)
    app = create_app(clf, ServerOptions(max_batch_texts=4, window_ms=1))

    async def scenario(client):
        done: dict[str, float] = {}

        async def timed(name, body):
            response = await client.post("/v1/classify", json=body)
            done[name] = time.perf_counter()
            return response

        started = time.perf_counter()
        big = asyncio.create_task(timed("big", {"texts": [f"长请求{i}" for i in range(64)]}))  # 16 runs
        await asyncio.sleep(0.15)
        small_started = time.perf_counter()
        small = await timed("small", {"texts": ["短"]})
        big_response = await big
        return small, big_response, done, small_started, started

    small, big, done, small_started, started = asyncio.run(_with_client(app, scenario))
    assert small.status_code == 200 and big.status_code == 200 and len(big.json()["predictions"]) == 64
    assert done["small"] < done["big"], "the small request waited for the whole large one"
    assert done["small"] - small_started < 0.5, "a small request waits about one run, not the large request"


def test_slow_clients_are_cut_off_while_others_are_served(tiny_artifact: Path) -> None:
    """Loopback only, bounded: 10 slow-header and 5 slow-body connections, one byte every 0.5 s."""
    port = free_port()
    server = serving(str(tiny_artifact), "--provider", "cpu", "--threads", "1", "--port", str(port),
                     "--header-timeout", "2", "--body-timeout", "2")  # fmt: skip
    try:
        slow: list[socket.socket] = []
        for i in range(15):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i < 10:
                conn.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: localhost\r\n")  # headers never finish
            else:
                conn.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{")
            slow.append(conn)
        started = time.monotonic()
        served = 0
        closed: dict[int, bytes] = {}
        while time.monotonic() - started < 6 and len(closed) < len(slow):
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": ["新闻"]}, timeout=5)
            served += reply.status_code == 200
            for index, conn in enumerate(slow):
                if index in closed:
                    continue
                try:
                    conn.sendall(b"x")
                    conn.settimeout(0.01)
                    data = conn.recv(4096)
                    if data == b"" or data.startswith(b"HTTP/1.1 408"):
                        closed[index] = data
                except (TimeoutError, BlockingIOError):
                    pass
                except OSError:
                    closed[index] = b""
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        for conn in slow:
            conn.close()
        assert len(closed) == 15, f"still open after {elapsed:.1f} s: {sorted(set(range(15)) - set(closed))}"
        assert all(closed[i].startswith(b"HTTP/1.1 408") for i in range(10, 15)), "a slow body gets 408"
        assert served >= 4, "the server kept answering other clients meanwhile"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_non_loopback_bind_without_a_key_warns(clf: Classifier, monkeypatch, capsys) -> None:
    import uvicorn

    from bert14.runtime import listener

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    listener.serve(clf, ServerOptions(host="0.0.0.0", port=free_port()))
    assert "no authentication" in capsys.readouterr().err
    listener.serve(clf, ServerOptions(host="127.0.0.1", port=free_port()))
    listener.serve(clf, ServerOptions(host="0.0.0.0", port=free_port(), api_key=KEY))
    assert "no authentication" not in capsys.readouterr().err


def test_a_title_sharing_a_run_with_long_texts_is_answered_before_them(clf: Classifier, monkeypatch) -> None:
    original = clf._forward

    def long_rows_are_slow(batch):
        if batch.input_ids.shape[1] > 100:
            time.sleep(1.0)  # the long bucket of the run
        return original(batch)

    monkeypatch.setattr(clf, "_forward", long_rows_are_slow)
    app = create_app(clf, ServerOptions(window_ms=300))

    async def scenario(client):
        done: dict[str, float] = {}

        async def timed(name, body):
            response = await client.post("/v1/classify", json=body)
            done[name] = time.perf_counter()
            return response.status_code

        codes = await asyncio.gather(
            timed("long", {"texts": ["长文本" * 100] * 4}), timed("title", {"texts": ["短标题"]})
        )
        return codes, done

    codes, done = asyncio.run(_with_client(app, scenario))
    assert codes == [200, 200]
    assert done["long"] - done["title"] > 0.8, "the title waited for the long rows of its run"


def test_connections_beyond_the_limit_get_503(tiny_artifact: Path) -> None:
    port = free_port()
    server = serving(str(tiny_artifact), "--provider", "cpu", "--threads", "1", "--port", str(port),
                     "--max-connections", "4")  # fmt: skip
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        time.sleep(0.2)
        refused = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": ["新闻"]}, timeout=5)
        for conn in idle:
            conn.close()
        time.sleep(0.2)
        accepted = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": ["新闻"]}, timeout=5)
        assert (refused.status_code, accepted.status_code) == (503, 200)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("key", ["", " ", " " * 40, "\t\n", "k" * 15, "k" * 20 + " " + "k" * 20, "k" * 20 + "\x00"])
def test_an_empty_blank_or_malformed_api_key_is_refused_never_read_as_no_key(key: str) -> None:
    from bert14.errors import InputError

    with pytest.raises(InputError, match="api_key: expected"):
        ServerOptions(api_key=key)


def test_a_key_set_to_empty_in_the_environment_is_not_no_key(tiny_artifact: Path, monkeypatch, capsys) -> None:
    from bert14.commands.cli import main
    from bert14.runtime.listener import API_KEY_ENV, api_key_from

    assert api_key_from(None, {}) is None
    assert api_key_from(None, {API_KEY_ENV: ""}) == ""
    assert api_key_from("", {API_KEY_ENV: KEY}) == "", "a flag given as empty is not replaced by the environment"
    monkeypatch.setenv(API_KEY_ENV, "")
    assert main(["serve", str(tiny_artifact), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty key" in err
    monkeypatch.delenv(API_KEY_ENV)
    assert main(["serve", str(tiny_artifact), "--api-key", "", "--port", str(free_port())]) == 2
    assert "empty key" in capsys.readouterr().err


def test_the_start_line_says_whether_auth_is_on(clf: Classifier, monkeypatch) -> None:
    import uvicorn

    from bert14.runtime import listener

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    lines: list[str] = []
    listener.serve(clf, ServerOptions(port=free_port(), api_key=KEY), announce=lines.append)
    listener.serve(clf, ServerOptions(port=free_port()), announce=lines.append)
    assert "API key required" in lines[0] and "no authentication" in lines[1]


BIG = "9" * 5000  # past Python's 4,300-digit limit for int(): json.loads raises ValueError, not JSONDecodeError


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/classify", f'{{"texts": ["a"], "x": {BIG}}}'),
        ("/v1/classify", f'{{"texts": ["a"], "long_text": {{"stride": {BIG}}}}}'),
        ("/v1/classify", f'{{"texts": [{BIG}]}}'),
        ("/v2/models/bert14/infer", f'{{"inputs": [{{"name": "text", "shape": [{BIG}], "datatype": "BYTES", '
                                    '"data": ["a"]}]}'),  # fmt: skip
        ("/v2/models/bert14/infer", f'{{"id": {BIG}, "inputs": []}}'),
    ],
)
def test_a_5000_digit_integer_anywhere_is_a_400_not_a_500(clf: Classifier, path: str, body: str) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf), base_url="http://localhost") as client:
        response = client.post(path, content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert "an integer of more than 4,300 digits" in response.json()["error"]
        assert 'bert14_requests_total{status="500"}' not in client.get("/metrics").text


def test_a_huge_value_is_not_echoed_whole(clf: Classifier) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf), base_url="http://localhost") as client:
        for long_text in ("w" * 900_000, {"stride": int("9" * 4000)}, {"x" * 900_000: 1}):
            response = client.post("/v1/classify", json={"texts": ["a"], "long_text": long_text})
            assert response.status_code == 422 and len(response.text) < 400, response.text[:200]


# Requests a web page the user visits could make to a server on 127.0.0.1: by DNS rebinding (its own
# Host), cross-origin (its Origin), or with a body a page may send anywhere without a preflight.
HOSTILE_REQUESTS = [
    ({"Host": "evil.example", "Content-Type": "application/json"}, 403, "Host 'evil.example' is not a name"),
    ({"Host": "evil.example:8014", "Content-Type": "application/json"}, 403, "is not a name this server answers"),
    ({"Host": "127.0.0.1.evil.example", "Content-Type": "application/json"}, 403, "is not a name"),
    ({"Host": "localhost@evil.example", "Content-Type": "application/json"}, 403, "is not a name"),
    ({"Host": "localhost:80x", "Content-Type": "application/json"}, 403, "is not a name"),
    ({"Origin": "http://evil.example", "Content-Type": "application/json"}, 403, "a cross-origin request"),
    ({"Origin": "null", "Content-Type": "application/json"}, 403, "a cross-origin request"),
    ({"Origin": "http://localhost:9999", "Content-Type": "application/json"}, 403, "a cross-origin request"),
    ({"Content-Type": "text/plain"}, 415, "expected Content-Type: application/json, got 'text/plain'"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "expected Content-Type: application/json"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "expected Content-Type: application/json"),
    ({}, 415, "expected Content-Type: application/json, got None"),
]


@pytest.mark.parametrize(("headers", "status", "message"), HOSTILE_REQUESTS)
def test_requests_a_foreign_page_could_send_are_refused(
    clf: Classifier, headers: dict, status: int, message: str
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(clf), base_url="http://localhost") as client:
        response = client.post("/v1/classify", content=b'{"texts": ["a"]}', headers=headers)
        assert response.status_code == status and message in response.json()["error"], response.text
        infer = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}'
        v2 = client.post("/v2/models/bert14/infer", headers=headers, content=infer)
        # /v2 takes a body with no Content-Type (tritonclient sends none); a browser sends Origin with it anyway
        assert v2.status_code == (200 if not headers else status), v2.text
        if status == 403:
            assert client.get("/v1/model", headers=headers).status_code == 403
        assert client.get("/healthz", headers=headers).status_code == 200, "probes name the pod's address"


@pytest.mark.parametrize(
    ("host", "origin"),
    [("localhost:8014", "http://localhost:8014"), ("127.0.0.1:8014", None), ("127.0.0.5", None),
     ("[::1]:8014", "http://[::1]:8014"), ("LOCALHOST.", None), ("api.localhost", None)],
)  # fmt: skip
def test_the_servers_own_names_and_page_are_answered(clf: Classifier, host: str, origin: str | None) -> None:
    from fastapi.testclient import TestClient

    headers = {"Host": host, **JSON} | ({"Origin": origin} if origin else {})
    with TestClient(create_app(clf), base_url="http://localhost") as client:
        assert client.post("/v1/classify", json={"texts": ["a"]}, headers=headers).status_code == 200


def test_allow_host_and_the_bind_address_add_names(clf: Classifier) -> None:
    from fastapi.testclient import TestClient

    from bert14.errors import InputError

    options = ServerOptions(host="10.1.2.3", allow_hosts=("Models.Example.",), api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}", **JSON}
    with TestClient(create_app(clf, options), base_url="http://localhost") as client:
        for host, status in (("models.example", 200), ("10.1.2.3:8014", 200), ("other.example", 403)):
            reply = client.post("/v1/classify", json={"texts": ["a"]}, headers={**auth, "Host": host})
            assert reply.status_code == status, (host, reply.text)
    with TestClient(create_app(clf, ServerOptions(allow_hosts=("*",))), base_url="http://localhost") as client:
        assert client.post("/v1/classify", json={"texts": ["a"]}, headers={"Host": "any.example"}).status_code == 200
    for bad in (("a b",), ("x/y",), "localhost", ("",)):
        with pytest.raises(InputError, match="allow"):
            ServerOptions(allow_hosts=bad)  # type: ignore[arg-type]


def test_a_foreign_host_is_refused_by_a_real_server(tiny_artifact: Path) -> None:
    port = free_port()
    server = serving(str(tiny_artifact), "--provider", "cpu", "--threads", "1", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}/v1/classify"
        evil = {"Host": "evil.example", "Origin": "http://evil.example", "Content-Type": "text/plain"}
        assert httpx.post(url, content=b'{"texts": ["a"]}', headers=evil, timeout=30).status_code == 403
        assert httpx.post(url, json={"texts": ["a"]}, timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
