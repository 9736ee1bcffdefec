"""The Open Inference Protocol (KServe v2 REST) on `bert14 serve`, driven by the real client,
tritonclient.http, against a real server; and the protocol's edge cases in process."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is in requirements/dev.txt")
from conftest import free_port, serving  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from bert14.runtime import Classifier  # noqa: E402
from bert14.runtime.server import ServerOptions, create_app  # noqa: E402

KEY = "k" * 32
TEXTS = ["湖人主场险胜勇士", "央行宣布降准0.5个百分点", "新款手机今日发布", "高考作文题目公布" * 30]


@pytest.fixture(scope="module")
def server(tiny_artifact: Path):
    """A real `bert14 serve` (fp32, so both APIs' numbers are comparable exactly), with an API key."""
    port = free_port()
    process = serving(str(tiny_artifact), "--precision", "fp32", "--provider", "cpu", "--threads", "1",
                      "--port", str(port), "--api-key", KEY)  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _client(url: str) -> object:
    return httpclient.InferenceServerClient(url)


def _auth() -> dict[str, str]:
    """A fresh dict each call: tritonclient writes its own headers into the dict it is given."""
    return {"Authorization": f"Bearer {KEY}"}


def _inputs(texts: list[str], binary: bool, pairs: list[str] | None = None) -> list:
    tensors = []
    for name, values in (("text", texts), ("text_pair", pairs)):
        if values is None:
            continue
        tensor = httpclient.InferInput(name, [len(values)], "BYTES")
        tensor.set_data_from_numpy(np.array([v.encode("utf-8") for v in values], dtype=object), binary_data=binary)
        tensors.append(tensor)
    return tensors


def _v1(url: str, texts: list[str], pairs: list[str] | None = None) -> list[dict]:
    body = {"texts": texts} | ({"text_pairs": pairs} if pairs else {})
    reply = httpx.post(f"http://{url}/v1/classify", json=body, headers=_auth(), timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


def test_health_and_metadata_through_tritonclient(server: str) -> None:
    client = _client(server)
    assert client.is_server_live() and client.is_server_ready()  # the probes need no key
    assert client.is_model_ready("bert14", headers=_auth())
    assert not client.is_model_ready("bert14", headers={})  # everything else does (401)
    metadata = client.get_model_metadata("bert14", headers=_auth())
    assert [t["name"] for t in metadata["inputs"]] == ["text", "text_pair"]
    assert [(t["name"], t["datatype"]) for t in metadata["outputs"]] == [
        ("label", "BYTES"), ("score", "FP32"), ("probs", "FP32")
    ]  # fmt: skip
    labels = metadata["parameters"]["labels"]
    assert metadata["outputs"][2]["shape"] == [-1, len(labels)]
    assert client.get_server_metadata(headers=_auth())["extensions"] == ["binary_tensor_data"]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope", headers=_auth())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_answers_what_v1_classify_answers(server: str, binary: bool) -> None:
    client = _client(server)
    labels = client.get_model_metadata("bert14", headers=_auth())["parameters"]["labels"]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label", "score", "probs")]
    result = client.infer("bert14", _inputs(TEXTS, binary), outputs=outputs, headers=_auth(), request_id="r-1")
    expected = _v1(server, TEXTS)
    # JSON BYTES come back as str, binary ones as bytes: both are the same labels
    got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
    assert got == [p["label"] for p in expected]
    assert result.as_numpy("score").dtype == np.float32 and result.as_numpy("probs").shape == (len(TEXTS), 14)
    np.testing.assert_array_equal(result.as_numpy("score"), np.float32([p["score"] for p in expected]))
    np.testing.assert_array_equal(
        result.as_numpy("probs"), np.float32([[p["probs"][label] for label in labels] for p in expected])
    )
    assert result.get_response()["id"] == "r-1"


def test_infer_without_named_outputs_returns_all_three_and_pairs_work(server: str) -> None:
    pairs = ["体育", "财经", "科技", "教育"]
    result = _client(server).infer("bert14", _inputs(TEXTS, True, pairs), headers=_auth())
    assert {o["name"] for o in result.get_response()["outputs"]} == {"label", "score", "probs"}
    expected = _v1(server, TEXTS, pairs)
    np.testing.assert_array_equal(result.as_numpy("score"), np.float32([p["score"] for p in expected]))


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([("texts", "BYTES", ["a"])], "expected inputs named 'text' and 'text_pair', got 'texts'"),
        ([("text", "FP32", [1.0])], "text: expected datatype BYTES, got 'FP32'"),
        ([("text", "BYTES", [])], "text: expected at least one text"),
        ([("text", "BYTES", ["a", "b"]), ("text_pair", "BYTES", ["c"])], "text_pair: expected 2 elements"),
    ],
)
def test_malformed_requests_get_400_in_the_protocols_error_form(server: str, inputs, message: str) -> None:
    body = {"inputs": [{"name": n, "datatype": d, "shape": [len(v)], "data": v} for n, d, v in inputs]}
    reply = httpx.post(f"http://{server}/v2/models/bert14/infer", json=body, headers=_auth(), timeout=30)
    assert reply.status_code == 400 and message in reply.json()["error"], reply.text
    assert _v1(server, ["still serving"])


def test_an_unknown_model_is_404_and_metrics_count_both_apis(server: str) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'other'") as caught:
        _client(server).infer("other", _inputs(["x"], False), headers=_auth())
    assert caught.value.status() == "404"
    before = _texts_counted(server)
    _client(server).infer("bert14", _inputs(["a", "b", "c"], True), headers=_auth())
    _v1(server, ["d"])
    assert _texts_counted(server) == before + 4


def _texts_counted(url: str) -> float:
    text = httpx.get(f"http://{url}/metrics", headers=_auth(), timeout=10).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("bert14_texts_total")))


# ----- in process: what no client library sends ----------------------------------------------------------


@pytest.fixture(scope="module")
def app_client(tiny_artifact: Path):
    from fastapi.testclient import TestClient

    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1)
    with TestClient(create_app(clf, ServerOptions(max_texts=4))) as client:
        yield client


def _binary_request(texts: list[bytes], size: int | None = None, header_length: str | None = None):
    raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    parameters = {"binary_data_size": len(raw) if size is None else size}
    head = json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "parameters": parameters}]}
    )
    return head.encode() + raw, {"Inference-Header-Content-Length": header_length or str(len(head))}


@pytest.mark.parametrize(
    "body, status, message",
    [
        (_binary_request([b"ok", b"\xff\xfe"]), 400, "text[1]: expected UTF-8 text"),
        (_binary_request([b"ok"], size=99), 400, "binary_data_size 99 runs past"),
        (_binary_request([b"ok"], header_length="999999"), 400, "Inference-Header-Content-Length"),
        (
            (
                json.dumps(
                    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [5], "data": list("abcde")}]}
                ).encode(),
                {},
            ),
            413,
            "at most 4 per request",
        ),
        (
            (b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}', {}),
            400,
            "expected Unicode text",
        ),
        ((b"[" * 100_000, {}), 400, "could not parse"),
    ],
    ids=["bad-utf8", "short-binary", "bad-header-length", "too-many", "surrogate", "deep-json"],
)
def test_what_a_client_library_would_not_send_is_refused(app_client, body, status: int, message: str) -> None:
    content, headers = body
    reply = app_client.post("/v2/models/bert14/infer", content=content, headers=headers)
    assert reply.status_code == status and message in reply.json()["error"], reply.text


def test_a_nested_n_by_1_tensor_is_read_as_n_texts(app_client) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": [["体育"], ["财经"]]}]}
    reply = app_client.post("/v2/models/bert14/infer", json=body)
    assert reply.status_code == 200
    assert next(o for o in reply.json()["outputs"] if o["name"] == "label")["shape"] == [2]
