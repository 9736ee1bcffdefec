"""Runners: an artifact file on an engine, cases in, logits out.

The verification runner is ONNX Runtime with its graph optimizations off (`optimized=False`), so
what runs is the graph as written and ORT's own session fusions cannot hide a missed one; the
INT8 fallback measures candidates as they will be served (`optimized=True`). On "cuda" the
session runs on ONNX Runtime's CUDA provider (onnxruntime-gpu); asking for it where the wheel has
no CUDA provider is an InputError, not a silent CPU run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from bert14.artifact import OUTPUT_NAME
from bert14.encode import ModelInputs
from bert14.errors import InputError

PROVIDERS = ("cpu", "cuda")


def cuda_in_onnxruntime() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


class OrtRunner:
    """One ONNX Runtime session over a model file; `runner(inputs)` returns its logits (B, C)."""

    def __init__(self, path: Path, provider: str = "cpu", optimized: bool = False, threads: int = 0) -> None:
        if provider not in PROVIDERS:
            raise InputError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
        if provider == "cuda" and not cuda_in_onnxruntime():
            raise InputError(
                "provider 'cuda': this onnxruntime has no CUDA provider; install onnxruntime-gpu "
                "(requirements/runtime-gpu.txt) on a machine with an NVIDIA GPU"
            )
        options = ort.SessionOptions()
        if not optimized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = ["CUDAExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
        self.path = Path(path)
        self.provider = provider
        self.session = ort.InferenceSession(str(path), options, providers=providers)

    def __call__(self, inputs: ModelInputs) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], inputs.feeds())[0]

    def feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for raw feeds (name -> (B, S) int64 array)."""
        return self.session.run([OUTPUT_NAME], feeds)[0]
