"""ONNX Runtime sessions for an artifact: which file, which provider, which options.

Precision and provider resolve together:
    provider "auto"  -> CUDA when onnxruntime-gpu sees a GPU, else the CPU (with a logged warning
                        when CUDA was available in the wheel but could not start)
    precision "auto" -> fp16 on CUDA, INT8 on the CPU (fp32 fused if the artifact has no INT8)
The engine resolves with them (bert14/providers.py, bert14/openvino_engine.py):
    engine "onnxruntime" -> ONNX Runtime, every precision above
    engine "openvino"    -> OpenVINO on the CPU, the artifact's OpenVINO INT8 model only
    engine "auto"        -> OpenVINO when the request resolves to INT8 on the CPU, the artifact has
                            the OpenVINO model and `openvino` is installed; else ONNX Runtime
INT8 on CUDA is refused: ONNX Runtime's CUDA provider has no kernels for the integer ops
(QAttention, DynamicQuantizeMatMul, ...), so they would run on the CPU and every layer would copy
activations between host and device. The fp16 artifact is the GPU's fast path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import onnxruntime as ort

from bert14 import openvino_engine as ov_engine
from bert14.artifact import FP16_FILE, FP16_SEQLEN_FILE, FUSED_FILE, INT8_FILE, MODEL_FILE, OPENVINO_INT8_FILE
from bert14.errors import ArtifactError, InputError
from bert14.providers import DEFAULT_ENGINE, ENGINES, cuda_in_onnxruntime, load_error, missing_cuda_provider

log = logging.getLogger("bert14.runtime")

PRECISION_FILES = {
    "int8": (INT8_FILE,),
    "fp16": (FP16_FILE,),
    "fp32": (FUSED_FILE, MODEL_FILE),
}
PRECISIONS = ("auto", *PRECISION_FILES)
PROVIDERS = ("auto", "cpu", "cuda")
INT8_ON_CUDA = (
    "INT8 on the CUDA provider is refused: ONNX Runtime's CUDA provider has no kernels for the "
    "integer ops (QAttention, DynamicQuantizeMatMul), so they would fall back to the CPU and copy "
    "activations between host and device at every layer. Use precision='fp16' (model.fp16.onnx) "
    "on CUDA, or provider='cpu' for INT8."
)


@dataclass(frozen=True)
class SessionSettings:
    threads: int | None = None  # intra-op threads; None: ONNX Runtime's default (all cores)
    inter_op_threads: int = 1
    # True: pool threads spin between the ops of a run and stop when it returns (no CPU burnt
    # between requests); False: they never spin (when the cores are shared with other work).
    spinning: bool = True
    cuda_graph: bool = False  # CUDA only: capture one graph per fixed bucket (cuda.py)


def cuda_present() -> bool:
    return cuda_in_onnxruntime()


class Resolved(NamedTuple):
    precision: str
    provider: str
    path: Path
    engine: str = "onnxruntime"


def resolve(
    directory: Path, precision: str, provider: str, available: set[str], engine: str = DEFAULT_ENGINE
) -> Resolved:
    """(precision, provider, model file, engine) for a request, or an InputError saying why not."""
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if provider not in PROVIDERS:
        raise InputError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
    if engine not in ENGINES:
        raise InputError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if engine == "openvino":
        return _resolve_openvino(directory, precision, provider, available)
    if provider == "cuda" and not cuda_present():
        raise missing_cuda_provider()
    if provider == "auto":
        provider = "cuda" if cuda_present() else "cpu"
    if precision == "int8" and provider == "cuda":
        raise InputError(INT8_ON_CUDA)
    if precision == "auto":
        order = ("fp16", "fp32") if provider == "cuda" else ("int8", "fp32")
        precision = next((p for p in order if any(f in available for f in PRECISION_FILES[p])), order[-1])
    if engine == "auto" and provider == "cpu" and precision == "int8" and OPENVINO_INT8_FILE in available:
        if ov_engine.available():
            return Resolved("int8", "cpu", directory / OPENVINO_INT8_FILE, "openvino")
        log.info("%s has an OpenVINO INT8 model; running ONNX Runtime's (%s)", directory, ov_engine.INSTALL_HINT)
    files = PRECISION_FILES[precision]
    if precision == "fp16" and provider == "cuda":
        # Attention on sequence lengths runs ONNX Runtime's fused CUDA kernels; it assumes right
        # padding, which is the only padding this runtime produces (encode.py).
        files = (FP16_SEQLEN_FILE, *files)
    name = next((f for f in files if f in available), None)
    if name is None:
        raise ArtifactError(
            f"{directory}: no {precision} model ({' or '.join(PRECISION_FILES[precision])}) in the artifact; "
            "re-run `bert14 export` or choose another precision"
        )
    return Resolved(precision, provider, directory / name)


def _resolve_openvino(directory: Path, precision: str, provider: str, available: set[str]) -> Resolved:
    if provider == "cuda":
        raise InputError("engine 'openvino' runs on the CPU; for CUDA use engine='onnxruntime' (fp16)")
    if precision not in ("auto", "int8"):
        raise InputError(
            f"engine 'openvino' runs the artifact's INT8 model ({OPENVINO_INT8_FILE}), not {precision}; "
            "use engine='onnxruntime' for fp32 or fp16"
        )
    if not ov_engine.available():
        raise ov_engine.missing()
    if OPENVINO_INT8_FILE not in available:
        raise ArtifactError(
            f"{directory}: no OpenVINO INT8 model ({OPENVINO_INT8_FILE}) in the artifact (a checkpoint exported "
            "without --calibration FILE, or with --no-openvino); re-run `bert14 export` with --calibration, "
            "or use engine='onnxruntime'"
        )
    return Resolved("int8", "cpu", directory / OPENVINO_INT8_FILE, "openvino")


def create(path: Path, provider: str, settings: SessionSettings, engine: str = "onnxruntime") -> tuple[object, str]:
    """The session and the provider it really runs on (CUDA may fail to start: then the CPU)."""
    if engine == "openvino":
        return ov_engine.OpenVinoSession(path, settings.threads), "cpu"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.inter_op_num_threads = settings.inter_op_threads
    if settings.threads:
        options.intra_op_num_threads = settings.threads
    if settings.spinning:
        # ONNX Runtime's default keeps spinning after Run() returns: 81% of a core burnt at 20
        # requests/s against 30% with this, for the same latency (docs/numbers.md).
        options.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    cuda_options = {"enable_cuda_graph": "1" if settings.cuda_graph else "0"}
    providers: list = (
        [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
        if provider == "cuda"
        else ["CPUExecutionProvider"]
    )
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types for bad files
        raise load_error(path, exc) from exc
    actual = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    if provider == "cuda" and actual != "cuda":
        log.warning("CUDA provider did not start (no usable GPU?); running %s on the CPU", path.name)
    return session, actual
