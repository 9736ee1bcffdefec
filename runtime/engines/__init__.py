"""Engines: what runs an artifact's model file. Each is one module with the same two functions
(base.Engine), registered by one line in ENGINES:

    resolve(directory, precision, provider, files) -> Resolved     which file answers a request
    open_session(path, provider, settings) -> (session, provider)  a session with run(names, feeds)

    onnxruntime.py  every precision, on the CPU or CUDA provider (the default)
    openvino.py     the artifact's OpenVINO INT8 model, on the CPU (the `bert14[openvino]` extra)

`engine="auto"` takes OpenVINO when the request resolves to INT8 on the CPU, the artifact has the
OpenVINO model and `openvino` is installed; ONNX Runtime otherwise. The runtime (classifier.py),
`bert14 check`'s runners, the INT8 fallback and the benchmarks open their sessions here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bert14.artifact import OPENVINO_INT8_FILE
from bert14.errors import InputError
from bert14.runtime.engines import onnxruntime, openvino
from bert14.runtime.engines.base import PRECISIONS, PROVIDERS, Engine, Resolved, Session, SessionSettings

log = logging.getLogger("bert14.runtime")

ENGINES: dict[str, Engine] = {module.NAME: module for module in (onnxruntime, openvino)}  # type: ignore[misc]
ENGINE_CHOICES = (*ENGINES, "auto")
DEFAULT_ENGINE = onnxruntime.NAME

__all__ = [
    "DEFAULT_ENGINE", "ENGINES", "ENGINE_CHOICES", "PRECISIONS", "PROVIDERS",
    "Engine", "Resolved", "Session", "SessionSettings", "open_session", "resolve",
]  # fmt: skip


def resolve(directory: Path, precision: str, provider: str, files: set[str], engine: str = DEFAULT_ENGINE) -> Resolved:
    """(precision, provider, model file, engine) for a request, or an InputError saying why not."""
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if provider not in PROVIDERS:
        raise InputError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
    if engine not in ENGINE_CHOICES:
        raise InputError(f"engine: expected one of {ENGINE_CHOICES}, got {engine!r}")
    if engine != "auto":
        return ENGINES[engine].resolve(directory, precision, provider, files)
    resolved = onnxruntime.resolve(directory, precision, provider, files)
    if resolved.provider == "cpu" and resolved.precision == "int8" and OPENVINO_INT8_FILE in files:
        if openvino.available():
            return openvino.resolve(directory, "int8", "cpu", files)
        log.info("%s has an OpenVINO INT8 model; running ONNX Runtime's (%s)", directory, openvino.INSTALL_HINT)
    return resolved


def open_session(resolved: Resolved, settings: SessionSettings) -> tuple[Session, str]:
    """A session over the resolved file on its engine, and the provider it really runs on."""
    return ENGINES[resolved.engine].open_session(resolved.path, resolved.provider, settings)
