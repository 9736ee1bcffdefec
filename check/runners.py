"""Runners: an artifact file on an engine, cases in, logits out.

The verification runner is ONNX Runtime with its graph optimizations off (`optimized=False`), so
what runs is the graph as written and ORT's own session fusions cannot hide a missed one; the
INT8 fallback measures candidates as they will be served (`optimized=True`). On "cuda" the
session runs on ONNX Runtime's CUDA provider (onnxruntime-gpu); asking for it where the wheel has
no CUDA provider is an InputError, not a silent CPU run.

The OpenVINO runner runs an OpenVINO IR exactly as the runtime serves it (bert14/openvino_engine.py):
OpenVINO has no "graph as written" mode, and what is checked must be what answers requests.
`runner_for` picks the runner an artifact file needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from bert14.artifact import OPENVINO_INT8_FILE, OUTPUT_NAME
from bert14.encode import ModelInputs
from bert14.errors import InputError
from bert14.providers import cuda_in_onnxruntime, load_error, missing_cuda_provider

PROVIDERS = ("cpu", "cuda")


class OrtRunner:
    """One ONNX Runtime session over a model file; `runner(inputs)` returns its logits (B, C)."""

    def __init__(self, path: Path, provider: str = "cpu", optimized: bool = False, threads: int = 0) -> None:
        if provider not in PROVIDERS:
            raise InputError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
        if provider == "cuda" and not cuda_in_onnxruntime():
            raise missing_cuda_provider()
        options = ort.SessionOptions()
        if not optimized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = ["CUDAExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
        self.path = Path(path)
        self.provider = provider
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types for bad files
            raise load_error(self.path, exc) from exc

    def __call__(self, inputs: ModelInputs) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], inputs.feeds())[0]

    def feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for raw feeds (name -> (B, S) int64 array)."""
        return self.session.run([OUTPUT_NAME], feeds)[0]


class OpenVinoRunner:
    """An OpenVINO IR compiled for the CPU, as served; `runner(inputs)` returns its logits (B, C)."""

    provider = "cpu"

    def __init__(self, path: Path, threads: int = 0) -> None:
        from bert14.openvino_engine import OpenVinoSession

        self.path = Path(path)
        self.session = OpenVinoSession(self.path, threads or None)

    def __call__(self, inputs: ModelInputs) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], inputs.feeds())[0]

    def feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], feeds)[0]


def runner_for(path: Path, provider: str = "cpu", optimized: bool = False) -> OrtRunner | OpenVinoRunner:
    """The runner a model file needs: OpenVINO for the OpenVINO IR (CPU only), ONNX Runtime otherwise."""
    if Path(path).name == OPENVINO_INT8_FILE:
        if provider != "cpu":
            raise InputError(f"{OPENVINO_INT8_FILE} runs on the CPU (OpenVINO), not on {provider}")
        return OpenVinoRunner(path)
    return OrtRunner(path, provider, optimized)
