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
        ("label", "BYTES"), ("score", "FP32"), ("probs", "FP32"), ("labels", "BOOL"), ("windows", "INT32")
    ]  # fmt: skip
    labels = metadata["parameters"]["labels"]
    assert metadata["outputs"][2]["shape"] == metadata["outputs"][3]["shape"] == [-1, len(labels)]
    assert client.get_server_metadata(headers=_auth())["extensions"] == ["binary_tensor_data"]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope", headers=_auth())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_answers_what_v1_classify_answers(server: str, binary: bool) -> None:
    client = _client(server)
    labels = client.get_model_metadata("bert14", headers=_auth())["parameters"]["labels"]
    names = ("label", "score", "probs", "labels")
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
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
    applies = result.as_numpy("labels")  # (N, C) bool: /v1's labels, as a mask in the metadata's order
    assert applies.dtype == np.bool_ and applies.tolist() == [[k in p["labels"] for k in labels] for p in expected]
    assert result.get_response()["id"] == "r-1"


def test_infer_without_named_outputs_returns_all_five_and_pairs_work(server: str) -> None:
    pairs = ["体育", "财经", "科技", "教育"]
    result = _client(server).infer("bert14", _inputs(TEXTS, True, pairs), headers=_auth())
    assert {o["name"] for o in result.get_response()["outputs"]} == {"label", "score", "probs", "labels", "windows"}
    np.testing.assert_array_equal(result.as_numpy("windows"), np.int32([1] * len(TEXTS)))
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
    with TestClient(create_app(clf, ServerOptions(max_texts=4)), base_url="http://localhost") as client:
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


# ----- hardening, round two: never a 500, cheap rejection first ------------------------------------------

_ONE = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["体育"]}


@pytest.mark.parametrize("length", ["²", "1" * 4400, "-1", "+5", " 5", "", "5.0", "٣"])
def test_a_header_length_that_is_not_ascii_digits_is_400(app_client, length: str) -> None:
    content, _ = _binary_request([b"ok"])
    reply = app_client.post("/v2/models/bert14/infer", content=content,
                            headers={"Inference-Header-Content-Length": length.encode("utf-8")})  # fmt: skip
    assert reply.status_code == 400 and "Inference-Header-Content-Length" in reply.json()["error"], reply.text


@pytest.mark.parametrize("value", ["x", [1], 5, True, 0.5])
@pytest.mark.parametrize("where", ["tensor", "request", "output"])
def test_parameters_that_are_not_an_object_are_400(app_client, value, where: str) -> None:
    body: dict = {"inputs": [dict(_ONE)]}
    if where == "tensor":
        body["inputs"][0]["parameters"] = value
    elif where == "request":
        body["parameters"] = value
    else:
        body["outputs"] = [{"name": "label", "parameters": value}]
    reply = app_client.post("/v2/models/bert14/infer", json=body)
    assert reply.status_code == 400 and "parameters: expected a JSON object" in reply.json()["error"], reply.text


@pytest.mark.parametrize("value", ["false", "true", 0, 1, [], {}])
def test_binary_data_flags_must_be_booleans(app_client, value) -> None:
    url = "/v2/models/bert14/infer"
    reply = app_client.post(url, json={"inputs": [_ONE], "parameters": {"binary_data_output": value}})
    assert reply.status_code == 400 and "binary_data_output: expected true or false" in reply.json()["error"]
    outputs = [{"name": "score", "parameters": {"binary_data": value}}]
    reply = app_client.post("/v2/models/bert14/infer", json={"inputs": [_ONE], "outputs": outputs})
    assert reply.status_code == 400 and "binary_data: expected true or false" in reply.json()["error"]
    reply = app_client.post(url, json={"inputs": [_ONE], "parameters": {"binary_data_output": False}})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"


def test_a_huge_element_count_is_refused_before_any_element_is_decoded(app_client, monkeypatch) -> None:
    from bert14.runtime import open_inference

    decoded: list[int] = []
    original = open_inference.check_text
    monkeypatch.setattr(open_inference, "check_text", lambda what, text: decoded.append(1) or original(what, text))
    many, headers = _binary_request([b""] * 262_000)  # about 1 MB: within the body limit
    reply = app_client.post("/v2/models/bert14/infer", content=many, headers=headers)
    assert reply.status_code == 413 and "at most 4 per request" in reply.json()["error"]
    # a shape that understates the binary data: refused once the framing runs past it, nothing decoded
    raw = b"".join(struct.pack("<I", 0) for _ in range(262_000))
    head = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                   "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    reply = app_client.post("/v2/models/bert14/infer", content=head.encode() + raw,
                            headers={"Inference-Header-Content-Length": str(len(head))})  # fmt: skip
    assert reply.status_code == 400 and "the binary data holds more" in reply.json()["error"]
    assert decoded == []


def test_a_large_body_is_parsed_off_the_event_loop(app_client, monkeypatch) -> None:
    import threading

    from bert14.runtime import open_inference

    threads: list[str] = []
    original = open_inference.parse_infer
    monkeypatch.setattr(open_inference, "parse_infer", lambda *a: threads.append(threading.current_thread().name)
                        or original(*a))  # fmt: skip
    small = {"inputs": [_ONE]}
    large = {"inputs": [{**_ONE, "data": ["体" * 40_000]}]}  # 120 KB of text
    assert app_client.post("/v2/models/bert14/infer", json=small).status_code == 200
    assert app_client.post("/v2/models/bert14/infer", json=large).status_code == 200
    loop_thread = threads[0]
    assert threads[1] != loop_thread, "the large body was parsed on the event loop's thread"


def test_a_pair_for_a_one_segment_model_names_v2s_input(tiny_artifact: Path, monkeypatch) -> None:
    import dataclasses

    from fastapi.testclient import TestClient

    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1)
    model = dataclasses.replace(clf.manifest.model, type_vocab_size=1)
    monkeypatch.setattr(clf, "manifest", dataclasses.replace(clf.manifest, model=model))
    pair = {**_ONE, "name": "text_pair"}
    with TestClient(create_app(clf, ServerOptions()), base_url="http://localhost") as client:
        reply = client.post("/v2/models/bert14/infer", json={"inputs": [_ONE, pair]})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("text_pair: this model has one token type"), reply.text


def test_metadata_names_the_engine_and_healthz_answers_head(tiny_artifact: Path, app_client) -> None:
    from fastapi.testclient import TestClient

    assert app_client.get("/v2/models/bert14").json()["platform"] == "bert14_onnxruntime"
    assert app_client.head("/healthz").status_code == 200
    clf = Classifier.load(tiny_artifact, engine="openvino", threads=1)
    with TestClient(create_app(clf, ServerOptions()), base_url="http://localhost") as client:
        assert client.get("/v2/models/bert14").json()["platform"] == "bert14_openvino"


def _fuzz_bodies():
    from hypothesis import strategies as st

    numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6),
                          inner, max_size=3), max_leaves=8)  # fmt: skip

    def near(*choices):
        return st.sampled_from(choices) | values

    texts = st.lists(st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=2) | values, max_size=6)
    parameters = st.fixed_dictionaries(
        {}, optional={"binary_data_size": st.integers(-2, 40) | values, "binary_data": values}
    ) | values
    tensor = st.fixed_dictionaries({}, optional={
        "name": near("text", "text_pair", "texts"),
        "datatype": near("BYTES", "FP32"),
        "shape": st.lists(st.integers(-2, 7) | values, max_size=3) | values,
        "data": texts | values,
        "parameters": parameters,
    })  # fmt: skip
    # well-formed tensors with one field perhaps replaced, so the fuzz also reaches the model and the limits
    well_formed = st.lists(st.text(max_size=6), max_size=6).flatmap(lambda data: st.fixed_dictionaries({
        "name": st.sampled_from(["text", "text_pair"]), "datatype": st.just("BYTES"),
        "shape": st.sampled_from([[len(data)], [len(data), 1], [len(data) + 1]]), "data": st.just(data),
    }))  # fmt: skip
    mutated = st.tuples(well_formed, st.sampled_from(["name", "datatype", "shape", "data", "parameters"]), values).map(
        lambda t: {**t[0], t[1]: t[2]}
    )
    tensor = well_formed | well_formed | mutated | tensor
    output = st.fixed_dictionaries({}, optional={
        "name": near(*OUTPUT_NAMES, "logits"),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data": st.booleans() | values}) | values,
    })  # fmt: skip
    request = st.fixed_dictionaries({}, optional={
        "inputs": st.lists(tensor, max_size=3) | values,
        "outputs": st.lists(output, max_size=4) | values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans() | values}) | values,
        "id": values,
    })  # fmt: skip
    binary = st.lists(st.binary(max_size=6), max_size=4).map(lambda els: b"".join(struct.pack("<I", len(e)) + e
                                                                              for e in els))  # fmt: skip
    framings = st.sampled_from(["exact", "none", "short", "long"])
    framed = st.tuples(request | request | request | values, binary, framings)
    # a quarter of the cases are plain JSON requests of well-formed (or one-field-mutated) tensors
    plain = st.tuples(st.lists(well_formed | mutated, min_size=1, max_size=2).map(lambda ts: {"inputs": ts}),
                      st.just(b""), st.just("none"))  # fmt: skip
    return plain | framed | framed | framed


OUTPUT_NAMES = ("label", "score", "probs", "labels")


# Reached by every run, whatever the generator draws (a clean CI checkout once drew no well-formed body)
_GOOD_JSON = ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}, b"", "none")
_GOOD_BINARY = (
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]},
    struct.pack("<I", 2) + b"ab",
    "exact",
)


def test_fuzzed_v2_bodies_never_get_a_500(app_client) -> None:
    from hypothesis import HealthCheck, example, given, settings

    seen: set[int] = set()
    ok: list[bool] = []

    @settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_fuzz_bodies())
    @example(_GOOD_JSON)
    @example(_GOOD_BINARY)
    def one(case) -> None:
        payload, binary, framing = case
        head = json.dumps(payload).encode()
        headers = {}
        if framing != "none":
            headers["Inference-Header-Content-Length"] = str(len(head) + {"exact": 0, "short": -1, "long": 1}[framing])
        reply = app_client.post("/v2/models/bert14/infer", content=head + (binary if framing != "none" else b""),
                                headers=headers)  # fmt: skip
        seen.add(reply.status_code)
        ok.append(reply.status_code == 200)
        assert reply.status_code in (200, 400, 413), (payload, reply.status_code, reply.text)
        if reply.status_code != 200:
            assert set(reply.json()) == {"error"}

    one()
    assert {200, 400} <= seen, f"the fuzz reached only statuses {seen}"  # 413: the tests above
    assert sum(ok) >= 25, f"only {sum(ok)} of {len(ok)} bodies reached the model"
