"""The OpenVINO engine: the artifact's OpenVINO INT8 model (model.int8.ov.xml + .bin) on the CPU.
Shared by the runtime (runtime/classifier.py) and the parity runners (check/runners.py).

`openvino` is the `bert14[openvino]` extra, not part of the runtime-only install, so this module
imports it only when a session is made; `available()` says whether it can be.

The session has ONNX Runtime's shape (`run(output_names, feeds) -> [arrays]`), so the classifier,
the server and the checks drive both engines the same way. OpenVINO's infer requests are not
thread-safe, so each calling thread gets its own; they share the compiled model.

Settings, measured on BERT-14 (docs/numbers.md):
- INFERENCE_PRECISION_HINT f32: what the INT8 kernels leave in floating point (LayerNorm,
  softmax, element-wise work) runs in fp32, as exported and as checked. OpenVINO's default on a
  CPU with bf16 instructions is bf16, which was no faster here (1 x 128 and 1 x 512).
- PERFORMANCE_HINT LATENCY: one stream whose threads all work on each request, as the runtime's
  micro-batcher hands the engine one batch at a time.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from bert14.artifact import OPENVINO_INT8_FILE
from bert14.errors import ArtifactError, InputError
from bert14.runtime.engines.base import Resolved, SessionSettings

NAME = "openvino"
INSTALL_HINT = (
    "install the OpenVINO engine: pip install -r requirements/openvino.txt (or -e '.[openvino]' in the checkout)"
)
PRECISION_HINT = "f32"


def available() -> bool:
    """Whether the `openvino` package can be imported here."""
    return importlib.util.find_spec("openvino") is not None


def missing() -> InputError:
    return InputError(f"engine 'openvino': the openvino package is not installed; {INSTALL_HINT}")


def config(threads: int | None) -> dict[str, object]:
    """compile_model's settings for `threads` intra-op threads (None: OpenVINO's default, every core)."""
    settings: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION_HINT}
    if threads:
        settings["INFERENCE_NUM_THREADS"] = threads
    return settings


class OpenVinoSession:
    """An OpenVINO IR compiled for the CPU, run like an onnxruntime.InferenceSession."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        if not available():
            raise missing()
        import openvino as ov

        self.path = Path(path)
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config(threads))
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for unreadable or inconsistent IR
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{path}: OpenVINO could not load it ({reason}); re-run `bert14 export`") from exc
        self._local = threading.local()

    def input_names(self) -> list[str]:
        return [port.get_any_name() for port in self.compiled.inputs]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        names = output_names or [port.get_any_name() for port in self.compiled.outputs]
        # The request reuses its output buffers at the next call: hand back copies.
        return [np.array(result[self.compiled.output(name)], copy=True) for name in names]


# The advice, in both spellings: the CLI's flag and the Python keyword.
USE_ORT = "--engine onnxruntime; engine='onnxruntime' in Python"


def resolve(directory: Path, precision: str, provider: str, files: set[str]) -> Resolved:
    if provider == "cuda":
        raise InputError(f"engine 'openvino' runs on the CPU; for CUDA use the onnxruntime engine (fp16; {USE_ORT})")
    if precision not in ("auto", "int8"):
        raise InputError(
            f"engine 'openvino' runs the artifact's INT8 model ({OPENVINO_INT8_FILE}), not {precision}; "
            f"use the onnxruntime engine for fp32 or fp16 ({USE_ORT})"
        )
    if not available():
        raise missing()
    if OPENVINO_INT8_FILE not in files:
        raise ArtifactError(
            f"{directory}: no OpenVINO INT8 model ({OPENVINO_INT8_FILE}) in the artifact (a checkpoint exported "
            "without --calibration FILE, or with --no-openvino); re-run `bert14 export` with --calibration, "
            f"or use the onnxruntime engine ({USE_ORT})"
        )
    return Resolved("int8", "cpu", directory / OPENVINO_INT8_FILE, NAME)


def open_session(path: Path, provider: str, settings: SessionSettings) -> tuple[OpenVinoSession, str]:
    if provider != "cpu":
        raise InputError(f"{OPENVINO_INT8_FILE} runs on the CPU (OpenVINO), not on {provider}")
    return OpenVinoSession(path, settings.threads or None), "cpu"
