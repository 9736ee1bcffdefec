"""A stand-in for triton_python_backend_utils, so that tests run a repository's Python models as
Triton's Python backend would: tensors, responses, input lookup (tritonserver itself ships only in
NVIDIA's containers)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class Response:
    def __init__(self, output_tensors: list | None = None, error: object = None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors or []}
        self.error = error


def install_pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Put the stand-in where a model.py imports it from, for the monkeypatch's lifetime."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = Tensor
    module.InferenceResponse = Response
    module.TritonError = lambda message: message
    module.get_input_tensor_by_name = lambda request, name: request.get(name)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def load_model(path: Path) -> object:
    """A repository's model.py, imported and initialised as Triton does."""
    spec = importlib.util.spec_from_file_location(f"triton_model_{path.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    model = module.TritonPythonModel()
    model.initialize({})
    return model
