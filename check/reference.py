"""The loader of the reference: the PyTorch source an artifact was built from, and its logits.

Parity is always checked against PyTorch, never only ONNX against ONNX. The source is the one the
manifest records (the default model rebuilt from its seed, a checkpoint read again, or found
with `model_dir` if it moved); on CUDA it runs in fp32 with TF32 off, so the reference is the
model's arithmetic and not the GPU's shortcut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bert14.artifact import Manifest
from bert14.check.cases import Case
from bert14.check.compare import FP32_LOGIT_ATOL, CaseResult, validate
from bert14.check.runners import runner_for
from bert14.export.model import SourceModel, model_score_function, rebuild
from bert14.family import family_for


def torch_logits(model: torch.nn.Module, case: Case, device: str = "cpu") -> np.ndarray:
    with torch.inference_mode():
        inputs = family_for(model.config.model_type).input_names  # what the model takes (bert14/family.py)
        out = model(**{name: torch.from_numpy(array).to(device) for name, array in case.feeds(inputs).items()})
    return out.logits.float().cpu().numpy()  # (B, C)


class TorchReference:
    """PyTorch's logits per case, computed once and shared by every artifact's check."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu") -> None:
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.model = model.to(device)
        self.device = device
        self.function = model_score_function(model)  # how the head's logits are read
        self._logits: dict[str, np.ndarray] = {}

    def __call__(self, case: Case) -> np.ndarray:
        if case.name not in self._logits:
            self._logits[case.name] = torch_logits(self.model, case, self.device)
        return self._logits[case.name]


def source_of(manifest: Manifest, model_dir: Path | None = None) -> SourceModel:
    """The PyTorch source the manifest records, rebuilt or read again."""
    return rebuild(manifest.source, manifest.source.get("attn_implementation", "sdpa"), model_dir)


def validate_onnx(
    model: torch.nn.Module | TorchReference,
    path: Path,
    cases: list[Case],
    atol: float = FP32_LOGIT_ATOL,
    strict_argmax: bool = True,
) -> list[CaseResult]:
    """A model file on its verification runner (ONNX Runtime on the CPU, graph as written; an OpenVINO
    IR as served) against PyTorch, case by case."""
    reference = model if isinstance(model, TorchReference) else TorchReference(model)
    return validate(reference, runner_for(path), cases, atol, strict_argmax, reference.function)
