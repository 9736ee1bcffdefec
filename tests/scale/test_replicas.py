"""`bert14 serve --replicas 2` on Ray Serve: the same API as one process, metrics of every replica, a
replica killed under load costs only what was in flight on it, SIGTERM takes it all down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -r requirements/ray.txt)")
httpx = pytest.importorskip("httpx")
httpclient = pytest.importorskip("tritonclient.http")

from conftest import free_port, processes_with, serving  # noqa: E402

from bert14.runtime import Classifier  # noqa: E402

CLI = str(Path(sys.executable).parent / "bert14")
KEY = "r" * 32
REPLICA = b"ServeReplica:bert14:bert14"  # how Ray names a replica's process
TEXTS = ["湖人主场险胜勇士", "央行宣布降准0.5个百分点", "新款手机今日发布"]


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def replicas(tiny_artifact: Path):
    port = free_port()
    ready = "with 2 replicas x 1 thread(s) on Ray Serve"
    process = serving(str(tiny_artifact), "--replicas", "2", "--precision", "fp32", "--provider", "cpu",
                      "--port", str(port), "--api-key", KEY, ready=ready)  # fmt: skip
    yield f"127.0.0.1:{port}", process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=60)


def _classify(url: str, texts: list[str]) -> httpx.Response:
    return httpx.post(f"http://{url}/v1/classify", json={"texts": texts}, headers=_auth(), timeout=60)


def test_both_apis_answer_as_the_classifier_does(replicas, tiny_artifact: Path) -> None:
    url, _ = replicas
    expected = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1).predict(TEXTS)
    v1 = _classify(url, TEXTS).json()["predictions"]
    assert [p["label"] for p in v1] == [p.label for p in expected]
    np.testing.assert_allclose([p["score"] for p in v1], [p.score for p in expected], atol=1e-6)
    text = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    result = httpclient.InferenceServerClient(url).infer("bert14", [text], headers=_auth())
    assert [v.decode() for v in result.as_numpy("label")] == [p.label for p in expected]
    assert httpx.get(f"http://{url}/v1/classify", timeout=10).status_code in (401, 405)
    assert httpx.post(f"http://{url}/v1/classify", json={"texts": ["x"]}, timeout=10).status_code == 401


def test_metrics_show_every_replica(replicas) -> None:
    url, _ = replicas
    for _ in range(20):
        assert _classify(url, ["一条", "两条"]).status_code == 200
    time.sleep(2.5)  # replicas publish once a second
    text = httpx.get(f"http://{url}/metrics", headers=_auth(), timeout=10).text
    counts = {
        line.split('replica="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("bert14_texts_total{")
    }
    assert len(counts) == 2, text
    assert sum(counts.values()) >= 40


JSON = {"Content-Type": "application/json"}


def test_a_hostile_mix_gets_its_4xx_and_never_fails_a_good_request(replicas) -> None:
    """What the single-process server holds under hostile traffic holds behind Ray Serve's proxy too."""
    import json
    import struct
    from concurrent.futures import ThreadPoolExecutor

    url, _ = replicas
    base = f"http://{url}"
    raw = b"".join(struct.pack("<I", 0) for _ in range(262_000))
    head = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [262_000],
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()  # fmt: skip
    infer = f"{base}/v2/models/bert14/infer"
    hostile = [
        ("POST", f"{base}/v1/classify", {"content": b'{"texts": ["ok", "\\ud800"]}', "headers": JSON}, 422),
        ("POST", f"{base}/v1/classify", {"content": b"[" * 100_000, "headers": JSON}, 400),
        ("POST", f"{base}/v1/classify", {"content": b'{"texts": ["' + b"x" * (2 << 20) + b'"]}', "headers": JSON}, 413),
        ("POST", f"{base}/v1/classify", {"content": b'{"texts": ["a"]}', "headers": {"Content-Type": "text/plain"}},
         415),
        ("POST", f"{base}/v1/classify", {"json": {"texts": ["a"]}, "headers": {"Host": "evil.example"}}, 403),
        ("POST", f"{base}/v1/classify", {"json": {"texts": ["a"] * 300}}, 413),
        ("POST", infer, {"content": head + raw, "headers": {"Inference-Header-Content-Length": str(len(head))}}, 413),
        ("POST", infer, {"json": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"],
                                               "parameters": "x"}]}}, 400),  # fmt: skip
        ("POST", infer, {"content": b"{}", "headers": {"Inference-Header-Content-Length": "²".encode()}}, 400),
        ("POST", infer, {"json": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                                  "parameters": {"binary_data_output": "false"}}}, 400),  # fmt: skip
        ("POST", f"{base}/v2/models/other/infer", {"json": {"inputs": []}}, 404),
    ]

    def send(item):
        method, where, kwargs, _ = item
        headers = {**_auth(), **kwargs.pop("headers", {})}
        return httpx.request(method, where, headers=headers, timeout=60, **kwargs).status_code

    def good(i: int) -> int:
        return _classify(url, [f"新闻{i}", "体育"]).status_code

    with ThreadPoolExecutor(8) as pool:
        bad = [pool.submit(send, (m, w, dict(k), s)) for m, w, k, s in hostile * 3]
        fine = [pool.submit(good, i) for i in range(40)]
        assert [f.result() for f in fine] == [200] * 40
        assert [f.result() for f in bad] == [s for *_, s in hostile] * 3
    assert httpx.post(f"{base}/v1/classify", json={"texts": ["x"]}, headers={"Authorization": "Bearer " + "r" * 31},
                      timeout=10).status_code == 401  # fmt: skip
    assert httpx.head(f"{base}/healthz", timeout=10).status_code == 200
    assert _classify(url, TEXTS).status_code == 200


def test_a_killed_replica_loses_only_its_requests_in_flight_and_comes_back(replicas) -> None:
    url, _ = replicas
    before = processes_with(REPLICA)
    assert len(before) == 2
    statuses: list[tuple[float, int]] = []
    stop = time.monotonic() + 25

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while time.monotonic() < stop:
                try:
                    status = session.post(f"http://{url}/v1/classify", json={"texts": TEXTS}, headers=_auth())
                    statuses.append((time.monotonic(), status.status_code))
                except httpx.HTTPError:
                    statuses.append((time.monotonic(), 0))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(3)
    killed_at = time.monotonic()
    os.kill(before[0], signal.SIGKILL)
    for thread in clients:
        thread.join()
    failed = [t for t, code in statuses if code != 200]
    assert len(failed) <= 4, f"more failures than requests in flight: {Counter(c for _, c in statuses)}"
    assert all(t >= killed_at for t in failed), "nothing failed before the kill"
    late = [code for t, code in statuses if t > stop - 5]
    assert late and all(code == 200 for code in late), "served without errors once it recovered"
    deadline = time.monotonic() + 60
    while len(processes_with(REPLICA)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    after = processes_with(REPLICA)
    assert len(after) == 2 and before[0] not in after, "Ray Serve replaced the killed replica"


def test_sigterm_takes_every_replica_down_in_one_line(replicas) -> None:
    url, process = replicas
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    stderr = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr
    deadline = time.monotonic() + 30
    while processes_with(REPLICA) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(REPLICA) == []


def test_the_serve_run_builder_sets_replicas_threads_and_overload(tiny_artifact: Path) -> None:
    from bert14.errors import InputError
    from bert14.scale.replicas import build

    app = build({"artifact": str(tiny_artifact), "replicas": "3", "threads_per_replica": "2"})
    deployment = app._bound_deployment
    assert deployment.num_replicas == 3 and deployment.ray_actor_options["num_cpus"] == 2
    assert deployment.max_queued_requests == 512 and deployment.max_ongoing_requests == 128
    with pytest.raises(InputError, match="expected artifact=DIR"):
        build({"artifacts": str(tiny_artifact)})


def test_overload_is_answered_503_at_once(tiny_artifact: Path) -> None:
    """One replica that holds one request and queues one more: the rest of a burst get 503 at once."""
    import asyncio

    port = free_port()
    process = serving(str(tiny_artifact), "--replicas", "1", "--max-ongoing-requests", "1",
                      "--max-queued-requests", "1", "--provider", "cpu", "--port", str(port),
                      ready="on Ray Serve")  # fmt: skip
    try:
        body = {"texts": ["股市今日大涨" * 40] * 256}

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=120) as client:
                replies = await asyncio.gather(
                    *(client.post(f"http://127.0.0.1:{port}/v1/classify", json=body) for _ in range(12))
                )
            return [r.status_code for r in replies]

        statuses = Counter(asyncio.run(burst()))
        # How many get in besides the first depends on when the proxy sees the replica busy; the rest
        # must be 503, not a wait.
        assert statuses[200] >= 1 and statuses[503] >= 1 and set(statuses) <= {200, 503}, statuses
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_a_port_in_use_is_one_line_and_exit_8_before_ray_starts(tiny_artifact: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([CLI, "serve", str(tiny_artifact), "--replicas", "1", "--port", str(port)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 8
    assert done.stderr.strip().splitlines() == [
        f"bert14 serve: error: cannot listen on 127.0.0.1:{port}: the address is in use (another server?)"
    ]


def test_more_replicas_than_cores_is_refused_before_ray_starts(tiny_artifact: Path) -> None:
    done = subprocess.run([CLI, "serve", str(tiny_artifact), "--replicas", "1000", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"bert14 serve: error: --replicas 1000 x --threads-per-replica 1 need 1000 CPUs; this machine has "
        f"{os.cpu_count()}"
    ]
