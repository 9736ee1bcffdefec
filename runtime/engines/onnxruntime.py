"""The ONNX Runtime engine: every precision, on the CPU or CUDA provider. The one place that builds
ONNX Runtime's session options.

    precision "auto" -> fp16 on CUDA, INT8 on the CPU (fp32 fused if the artifact has no INT8)
INT8 on CUDA is refused: ONNX Runtime's CUDA provider has no kernels for the integer ops
(MatMulIntegerToFloat, QAttention, ...), so they would run on the CPU and every layer would copy
activations between host and device. The fp16 artifact is the GPU's fast path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from bert14.artifact import FP16_FILE, FP16_SEQLEN_FILE, FUSED_FILE, INT8_FILE, MODEL_FILE
from bert14.errors import ArtifactError, InputError
from bert14.runtime.engines.base import Resolved, SessionSettings

log = logging.getLogger("bert14.runtime")

NAME = "onnxruntime"
PRECISION_FILES = {
    "int8": (INT8_FILE,),
    "fp16": (FP16_FILE,),
    "fp32": (FUSED_FILE, MODEL_FILE),
}
INT8_ON_CUDA = (
    "INT8 on the CUDA provider is refused: ONNX Runtime's CUDA provider has no kernels for the "
    "integer ops (QAttention, DynamicQuantizeMatMul), so they would fall back to the CPU and copy "
    "activations between host and device at every layer. Use precision='fp16' (model.fp16.onnx) "
    "on CUDA, or provider='cpu' for INT8."
)


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


def session_options(settings: SessionSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.inter_op_num_threads = settings.inter_op_threads
    if settings.threads:
        options.intra_op_num_threads = settings.threads
    if not settings.optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if settings.spinning:
        # ONNX Runtime's default keeps spinning after Run() returns: 81% of a core burnt at 20
        # requests/s against 30% with this, for the same latency (docs/numbers.md).
        options.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def resolve(directory: Path, precision: str, provider: str, files: set[str]) -> Resolved:
    if provider == "cuda" and not cuda_in_onnxruntime():
        raise missing_cuda_provider()
    if provider == "auto":
        provider = "cuda" if cuda_in_onnxruntime() else "cpu"
    if precision == "int8" and provider == "cuda":
        raise InputError(INT8_ON_CUDA)
    if precision == "auto":
        order = ("fp16", "fp32") if provider == "cuda" else ("int8", "fp32")
        precision = next((p for p in order if any(f in files for f in PRECISION_FILES[p])), order[-1])
    candidates = PRECISION_FILES[precision]
    if precision == "fp16" and provider == "cuda":
        # Attention on sequence lengths runs ONNX Runtime's fused CUDA kernels; it assumes right
        # padding, which is the only padding this runtime produces (encode.py).
        candidates = (FP16_SEQLEN_FILE, *candidates)
    name = next((f for f in candidates if f in files), None)
    if name is None:
        raise ArtifactError(
            f"{directory}: no {precision} model ({' or '.join(PRECISION_FILES[precision])}) in the artifact; "
            "re-run `bert14 export` or choose another precision"
        )
    return Resolved(precision, provider, directory / name, NAME)


def open_session(path: Path, provider: str, settings: SessionSettings) -> tuple[ort.InferenceSession, str]:
    """The session and the provider it really runs on (CUDA may fail to start: then the CPU)."""
    if provider == "cuda" and not cuda_in_onnxruntime():
        raise missing_cuda_provider()
    cuda_options = {"enable_cuda_graph": "1" if settings.cuda_graph else "0"}
    providers: list = (
        [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
        if provider == "cuda"
        else ["CPUExecutionProvider"]
    )
    try:
        session = ort.InferenceSession(str(path), session_options(settings), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types for bad files
        raise load_error(Path(path), exc) from exc
    actual = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    if provider == "cuda" and actual != "cuda":
        log.warning("CUDA provider did not start (no usable GPU?); running %s on the CPU", Path(path).name)
    return session, actual
