"""Runners: an artifact file on an engine, cases in, logits out.

A runner is a session of the runtime's engines (bert14/runtime/engines/), so what is checked is
opened exactly as what is served, with one difference: the verification runner runs ONNX Runtime
with its graph optimizations off (`optimized=False`), so what runs is the graph as written and
ORT's own session fusions cannot hide a missed one; the INT8 fallback and the invariance check
measure files as they will be served (`optimized=True`). On "cuda" the session runs on ONNX
Runtime's CUDA provider (onnxruntime-gpu); asking for it where the wheel has no CUDA provider, or
where it does not start, is an InputError, not a silent CPU run.

OpenVINO has no "graph as written" mode: its runner runs the IR as the runtime serves it.
`runner_for` picks the engine an artifact file needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bert14.artifact import OPENVINO_INT8_FILE, OUTPUT_NAME
from bert14.encode import ModelInputs
from bert14.errors import InputError
from bert14.runtime.engines import Engine, SessionSettings, onnxruntime, openvino

PROVIDERS = ("cpu", "cuda")


class Runner:
    """One session over a model file; `runner(inputs)` returns its logits (B, C)."""

    def __init__(
        self, path: Path, engine: Engine, provider: str = "cpu", optimized: bool = False, threads: int = 0
    ) -> None:
        if provider not in PROVIDERS:
            raise InputError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
        self.path = Path(path)
        self.provider = provider
        self.session, actual = engine.open_session(self.path, provider, SessionSettings(threads, optimized=optimized))
        if actual != provider:
            raise InputError(f"{self.path.name}: the {provider} provider did not start (it ran on {actual})")
        self.inputs = input_names(self.session)  # the family's (bert14/family.py), in the file's order

    def __call__(self, inputs: ModelInputs) -> np.ndarray:
        return self.feeds(inputs.feeds(self.inputs))

    def feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for raw feeds (name -> (B, S) int64 array); arrays the model does not take are left out."""
        return self.session.run([OUTPUT_NAME], {name: feeds[name] for name in self.inputs})[0]


def input_names(session: object) -> tuple[str, ...]:
    """The model's inputs: an onnxruntime session's get_inputs(), an OpenVINO session's input_names()."""
    if hasattr(session, "get_inputs"):
        return tuple(value.name for value in session.get_inputs())
    return tuple(session.input_names())  # type: ignore[attr-defined]


class OrtRunner(Runner):
    """A model file on ONNX Runtime."""

    def __init__(self, path: Path, provider: str = "cpu", optimized: bool = False, threads: int = 0) -> None:
        super().__init__(path, onnxruntime, provider, optimized, threads)  # type: ignore[arg-type]


class OpenVinoRunner(Runner):
    """An OpenVINO IR compiled for the CPU, as served."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        super().__init__(path, openvino, "cpu", True, threads)  # type: ignore[arg-type]


def runner_for(path: Path, provider: str = "cpu", optimized: bool = False) -> Runner:
    """The runner a model file needs: OpenVINO for the OpenVINO IR (CPU only), ONNX Runtime otherwise."""
    if Path(path).name == OPENVINO_INT8_FILE:
        if provider != "cpu":
            raise InputError(f"{OPENVINO_INT8_FILE} runs on the CPU (OpenVINO), not on {provider}")
        return OpenVinoRunner(path)
    return OrtRunner(path, provider, optimized)
