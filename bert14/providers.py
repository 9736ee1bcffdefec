"""What the runtime and the parity runners both say about the engines: which there are, ONNX
Runtime's CUDA provider, and a model file it could not load. onnxruntime only (both sides have it
installed); the OpenVINO engine is bert14/openvino_engine.py."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from bert14.errors import ArtifactError, InputError

# What runs the model: ONNX Runtime (every precision, CPU or CUDA), OpenVINO (the artifact's
# OpenVINO INT8 model, CPU), or auto (OpenVINO for INT8 on the CPU when it can; runtime/session.py).
ENGINES = ("onnxruntime", "openvino", "auto")
DEFAULT_ENGINE = "onnxruntime"


def cuda_in_onnxruntime() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def missing_cuda_provider() -> InputError:
    return InputError(
        "provider 'cuda': this onnxruntime has no CUDA provider; install onnxruntime-gpu "
        "(requirements/runtime-gpu.txt) instead of onnxruntime, on a machine with an NVIDIA GPU"
    )


def load_error(path: Path, exc: Exception) -> ArtifactError:
    """One line for a file ONNX Runtime rejected (truncated, corrupt, not ONNX)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArtifactError(f"{path}: ONNX Runtime could not load it ({detail}); re-run `bert14 export`")
