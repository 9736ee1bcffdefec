"""The Open Inference Protocol (KServe v2 REST) on `bert14 serve`, beside its own /v1 routes.

One client then works against bert14, Triton, KServe and Seldon MLServer alike (tritonclient.http is
the one the tests use). The model takes text and answers labels:

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     200 when live / ready (never need the API key)
    GET  /v2/models/{name}[/versions/{v}]      model metadata: inputs and outputs below
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
         inputs   text       BYTES [N] (or [N, 1])   UTF-8 texts
                  text_pair  BYTES [N], optional      second segments (sentence-pair models)
         outputs  label      BYTES [N]                the top label
                  score      FP32  [N]                its score
                  probs      FP32  [N, C]             every label's score, in /v2/models/{name}'s label order
                  labels     BOOL  [N, C]             which labels apply (Prediction.labels: the top one, or
                                                      for a multi-label model each at its threshold)
                  windows    INT32 [N]                rows each text took (1 unless long_text is windows)
         parameters  long_text (truncate | head_tail | windows), head_tokens, stride, pool, max_windows:
                     this request's long-text strategy (bert14/long_text.py); the server's for what is left out

Requests and responses may carry tensors in JSON or in the binary tensor extension (the body is the
JSON header, `Inference-Header-Content-Length` bytes long, then each binary tensor in order; BYTES
elements as a 4-byte little-endian length and the bytes). Errors are the protocol's `{"error": msg}`
with 400 for a malformed request, 404 for an unknown model, and the /v1 statuses for the limits the
two APIs share (413, 408, 503). Both APIs feed the same micro-batcher, limits and metrics.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bert14.encode import check_text
from bert14.errors import InputError, shown
from bert14.long_text import LongText
from bert14.runtime.server import HTTPFailure, _reason, ascii_count, error_response

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUTS = ("text", "text_pair")
OUTPUTS = ("label", "score", "probs", "labels", "windows")  # labels: (N, C) bool, label j applies to text i
EXTENSIONS = ("binary_tensor_data",)
LONG_TEXT_PARAMETERS = ("long_text", "head_tokens", "stride", "pool", "max_windows")  # LongText's, by name
INLINE_PARSE_BYTES = 64 << 10  # bodies up to this are parsed on the event loop; a thread hop costs more


@dataclass(frozen=True)
class InferRequest:
    texts: list[str]
    pairs: list[str] | None
    id: str | None
    outputs: dict[str, bool]  # requested output -> as binary data
    long_text: LongText


def _split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(the JSON header, the binary tensors that follow it)."""
    if header_length is None:
        head, rest = body, b""
    else:
        length = ascii_count(header_length)
        if length is None or length > len(body):
            raise HTTPFailure(400, f"{HEADER_LENGTH}: expected the JSON header's length in digits 0-9, at most "
                                   f"{len(body)}, got {header_length[:40]!r}")  # fmt: skip
        head, rest = body[:length], body[length:]
    try:
        payload = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: an integer of 4,300+ digits
        raise HTTPFailure(400, f"expected a JSON inference request, could not parse it ({_reason(exc)})") from None
    if not isinstance(payload, dict):
        raise HTTPFailure(400, 'expected a JSON object {"inputs": [...]}')
    return payload, rest


def _object(value: object, what: str) -> dict:
    """A JSON object the protocol allows to be absent: {} when it is, a 400 when it is not an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HTTPFailure(400, f"{what}: expected a JSON object, got {_json_type(value)}")
    return value


def _flag(value: object, what: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):  # "false" is a non-empty string, which bool() would read as true
        raise HTTPFailure(400, f"{what}: expected true or false, got {_json_type(value)} {str(value)[:40]!r}")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _bytes_elements(raw: bytes, name: str, count: int) -> list[bytes]:
    """`count` BYTES tensor elements from the binary extension: each a 4-byte little-endian length, then
    bytes. The framing is walked first, so that a count that does not match costs no decoding."""
    bounds, at = [], 0
    while at < len(raw):
        if len(bounds) == count:
            raise HTTPFailure(400, f"{name}: shape says {count} elements, the binary data holds more")
        if at + 4 > len(raw):
            raise HTTPFailure(400, f"{name}: binary BYTES data ends inside an element's length")
        (size,) = struct.unpack_from("<I", raw, at)
        if at + 4 + size > len(raw):
            raise HTTPFailure(400, f"{name}: binary BYTES element of {size} bytes runs past the data")
        bounds.append((at + 4, at + 4 + size))
        at += 4 + size
    if len(bounds) != count:
        raise HTTPFailure(400, f"{name}: shape says {count} elements, the data holds {len(bounds)}")
    return [raw[start:end] for start, end in bounds]


def _texts(tensor: object, binary: bytes, at: int, max_texts: int) -> tuple[list[str], int]:
    """One input tensor's texts, checked, and where the next binary tensor starts. The element count is
    checked against the shape and the request limit before any element is decoded."""
    if not isinstance(tensor, dict) or tensor.get("name") not in INPUTS:
        found = tensor.get("name") if isinstance(tensor, dict) else tensor
        raise HTTPFailure(400, f"expected inputs named {' and '.join(map(repr, INPUTS))}, got {str(found)[:80]!r}")
    name = tensor["name"]
    if tensor.get("datatype") != "BYTES":
        raise HTTPFailure(400, f"{name}: expected datatype BYTES, got {str(tensor.get('datatype'))[:40]!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 2
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            and (len(shape) == 1 or shape[1] == 1)):  # fmt: skip
        raise HTTPFailure(400, f"{name}: expected shape [N] or [N, 1], got {str(shape)[:80]}")
    count = shape[0]
    if count > max_texts:
        raise HTTPFailure(413, f"{name}: at most {max_texts} per request, got {shown(count)}; split the request")
    size = _object(tensor.get("parameters"), f"{name}: parameters").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or at + size > len(binary):
            raise HTTPFailure(400, f"{name}: binary_data_size {str(size)[:40]} runs past the request's binary data")
        values: list = _bytes_elements(binary[at : at + size], name, count)
        at += size
    else:
        values = tensor.get("data")
        if not isinstance(values, list):
            raise HTTPFailure(400, f"{name}: expected 'data' (a list of strings) or binary data")
        if len(values) != count:
            raise HTTPFailure(400, f"{name}: shape says {count} elements, the data holds {len(values)}")
        if values and isinstance(values[0], list):  # [N, 1] written nested
            values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
    texts = []
    for index, value in enumerate(values):
        try:
            text = value.decode("utf-8") if isinstance(value, bytes) else value
            texts.append(check_text(f"{name}[{index}]", text))
        except UnicodeDecodeError as exc:
            raise HTTPFailure(
                400, f"{name}[{index}]: expected UTF-8 text, found invalid bytes ({exc.reason})"
            ) from None
        except InputError as exc:
            raise HTTPFailure(400, str(exc)) from None
    return texts, at


def parse_infer(
    body: bytes, header_length: str | None, max_texts: int, long_text: LongText | None = None
) -> InferRequest:
    """A v2 inference request's texts and requested outputs, every one checked, or the 4xx."""
    payload, binary = _split_body(body, header_length)
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HTTPFailure(400, "inputs: expected a list holding the input 'text'")
    if len(inputs) > len(INPUTS):
        raise HTTPFailure(400, f"inputs: expected at most {len(INPUTS)} ('text' and 'text_pair'), got {len(inputs)}")
    found: dict[str, list[str]] = {}
    at = 0
    for tensor in inputs:
        texts, at = _texts(tensor, binary, at, max_texts)
        if tensor["name"] in found:
            raise HTTPFailure(400, f"{tensor['name']}: given twice")
        found[tensor["name"]] = texts
    if "text" not in found:
        raise HTTPFailure(400, "inputs: expected the input 'text'")
    texts, pairs = found["text"], found.get("text_pair")
    if not texts:
        raise HTTPFailure(400, "text: expected at least one text, got none")
    if pairs is not None and len(pairs) != len(texts):
        raise HTTPFailure(400, f"text_pair: expected {len(texts)} elements, one per text, got {len(pairs)}")
    parameters = _object(payload.get("parameters"), "parameters")
    binary_default = _flag(parameters.get("binary_data_output"), "parameters.binary_data_output", False)
    chosen = {"strategy" if k == "long_text" else k: v for k, v in parameters.items() if k in LONG_TEXT_PARAMETERS}
    try:
        long_text = LongText.parse(chosen, long_text or LongText())
    except InputError as exc:
        raise HTTPFailure(400, f"parameters.{exc}") from None
    requested = payload.get("outputs")
    outputs: dict[str, bool] = {}
    if requested is None:
        outputs = dict.fromkeys(OUTPUTS, binary_default)
    elif not isinstance(requested, list):
        raise HTTPFailure(400, 'outputs: expected a list of {"name": ...}')
    for item in requested or []:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in OUTPUTS:
            raise HTTPFailure(400, f"outputs: expected names among {list(OUTPUTS)}, got {str(name)[:40]!r}")
        options = _object(item.get("parameters"), f"outputs[{name}].parameters")
        outputs[name] = _flag(options.get("binary_data"), f"outputs[{name}].parameters.binary_data", binary_default)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise HTTPFailure(400, f"id: expected a string, got {_json_type(request_id)}")
    return InferRequest(texts, pairs, request_id, outputs, long_text)


def _tensor(name: str, values: object, binary: bool) -> tuple[dict, bytes]:
    """(the output's JSON entry, its binary data or b"")."""
    if name == "label":
        labels: list[str] = values  # type: ignore[assignment]
        entry = {"name": name, "datatype": "BYTES", "shape": [len(labels)]}
        if not binary:
            return entry | {"data": labels}, b""
        raw = b"".join(struct.pack("<I", len(b)) + b for b in (label.encode("utf-8") for label in labels))
    elif name == "windows":
        array = np.ascontiguousarray(values, dtype="<i4")
        entry = {"name": name, "datatype": "INT32", "shape": list(array.shape)}
        if not binary:
            return entry | {"data": array.ravel().tolist()}, b""
        raw = array.tobytes()
    elif name == "labels":
        array = np.ascontiguousarray(values, dtype=np.bool_)  # (N, C)
        entry = {"name": name, "datatype": "BOOL", "shape": list(array.shape)}
        if not binary:
            return entry | {"data": array.ravel().tolist()}, b""
        raw = array.tobytes()  # one byte per element, as the protocol's BOOL is
    else:
        array = np.ascontiguousarray(values, dtype="<f4")
        entry = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if not binary:
            return entry | {"data": array.ravel().tolist()}, b""
        raw = array.tobytes()
    return entry | {"parameters": {"binary_data_size": len(raw)}}, raw


def infer_response(request: InferRequest, predictions: list, labels: list[str], model: str, version: str) -> Response:
    values = {
        "label": [p.label for p in predictions],
        "score": [p.score for p in predictions],
        "probs": [[p.probs[label] for label in labels] for p in predictions],
        "labels": np.array([[label in p.labels for label in labels] for p in predictions], dtype=np.bool_).reshape(
            len(predictions), len(labels)
        ),
        "windows": [p.windows for p in predictions],
    }
    head: dict[str, object] = {"model_name": model, "model_version": version, "outputs": []}
    if request.id is not None:
        head["id"] = request.id
    blobs = []
    for name, binary in request.outputs.items():
        entry, raw = _tensor(name, values[name], binary)
        head["outputs"].append(entry)  # type: ignore[attr-defined]
        blobs.append(raw)
    header = json.dumps(head, ensure_ascii=False).encode("utf-8")
    if not any(blobs):
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})  # fmt: skip


def add_routes(app: FastAPI, service: object, model: str) -> None:
    """The v2 routes on `app`, answered by the server's shared `service` (runtime/server.py)."""
    from bert14 import __version__

    clf = service.clf  # type: ignore[attr-defined]
    version = clf.describe()["version"]
    metadata = {
        "name": model,
        "versions": [version],
        "platform": f"bert14_{clf.engine}",
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
            {"name": "text_pair", "datatype": "BYTES", "shape": [-1], "optional": True},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "probs", "datatype": "FP32", "shape": [-1, len(clf.labels)]},
            {"name": "labels", "datatype": "BOOL", "shape": [-1, len(clf.labels)]},
            {"name": "windows", "datatype": "INT32", "shape": [-1]},
        ],
        "parameters": {"labels": clf.labels, "score_function": clf.score_function, "precision": clf.precision},
    }

    def known(name: str, ver: str | None = None) -> None:
        if name != model or ver not in (None, version):
            what = f"model {name!r}" + (f" version {ver!r}" if ver is not None else "")
            raise HTTPFailure(404, f"unknown {what}; this server serves {model!r} version {version!r}")

    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "bert14", "version": __version__, "extensions": list(EXTENSIONS)}

    @app.api_route("/v2/health/live", methods=["GET", "HEAD"])
    async def live() -> Response:
        return Response(status_code=200)

    @app.api_route("/v2/health/ready", methods=["GET", "HEAD"])
    async def ready() -> Response:
        return Response(status_code=200)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{ver}")
    async def model_metadata(name: str, ver: str | None = None) -> Response:
        return _or_404(name, ver) or JSONResponse(metadata)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{ver}/ready")
    async def model_ready(name: str, ver: str | None = None) -> Response:
        return _or_404(name, ver) or Response(status_code=200)

    def _or_404(name: str, ver: str | None) -> Response | None:
        try:
            known(name, ver)
        except HTTPFailure as exc:
            return error_response(exc.status, str(exc))
        return None

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{ver}/infer")
    async def infer(name: str, request: Request, ver: str | None = None) -> Response:
        started = time.perf_counter()

        async def answer() -> tuple[Response, int]:
            known(name, ver)
            body = await service.read_body(request)  # type: ignore[attr-defined]
            limit = service.options.max_texts  # type: ignore[attr-defined]
            args = (body, request.headers.get(HEADER_LENGTH), limit, clf.options.long_text)
            # Parsing a large body takes milliseconds that other requests would wait for on the loop.
            inline = len(body) <= INLINE_PARSE_BYTES
            parsed = parse_infer(*args) if inline else await asyncio.to_thread(parse_infer, *args)
            model_info = clf.manifest.model
            if parsed.pairs is not None and model_info.family.segments and model_info.type_vocab_size < 2:
                raise HTTPFailure(400, "text_pair: this model has one token type (type_vocab_size 1), so it cannot "
                                       "tell a second segment from the first; expected 'text' alone")  # fmt: skip
            predictions = await service.classify(parsed.texts, parsed.pairs, parsed.long_text)  # type: ignore[attr-defined]
            return infer_response(parsed, predictions, clf.labels, model, version), len(predictions)

        response, texts = await service.answer(answer, input_status=400)  # type: ignore[attr-defined]
        service.metrics.request(response.status_code, time.perf_counter() - started, texts)  # type: ignore[attr-defined]
        return response
