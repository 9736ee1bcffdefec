"""PyTorch -> ONNX with either torch.onnx exporter, dynamic batch and sequence axes.

Both exporters stay selectable because they produce different graphs for the same model
(TorchScript: a flat op-by-op trace; dynamo: torch.export + onnxscript's translation and its
graph optimizer), and the fusion optimizer has to fuse every one of them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from bert14.errors import ExportError, InputError
from bert14.family import family_for

EXPORTERS = ("torchscript", "dynamo")
OUTPUT_NAMES = ("logits",)
MIN_OPSET = 17  # LayerNormalization is a standard op from 17 on
MAX_OPSET = {"torchscript": 20, "dynamo": 23}
BATCH_AXIS, SEQUENCE_AXIS = "batch", "sequence"
# Example input shape for tracing; 0 and 1 would be specialised by torch.export.
_TRACE_BATCH, _TRACE_SEQUENCE = 2, 8
_MAX_BATCH = 4096
# What each input a family may name holds in the trace's example, (B, S) int64 (bert14/family.py).
_EXAMPLE_VALUES = {"input_ids": 100, "attention_mask": 1, "token_type_ids": 0}


@dataclass(frozen=True)
class ExportSettings:
    exporter: str = "dynamo"
    opset: int = 18

    def check(self) -> None:
        if self.exporter not in EXPORTERS:
            raise InputError(f"exporter: expected one of {EXPORTERS}, got {self.exporter!r}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET[self.exporter]:
            raise InputError(
                f"opset: expected {MIN_OPSET}..{MAX_OPSET[self.exporter]} for the {self.exporter} exporter, "
                f"got {self.opset}"
            )


class LogitsOnly(torch.nn.Module):
    """The family's inputs, positional and in its order (bert14/family.py) -> logits: the artifact's
    signature. The parameters are named, since the dynamo exporter names the graph's inputs after them;
    an input the family does not take stays None and out of the model's call."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        unknown = sorted(set(input_names) - set(_EXAMPLE_VALUES))
        if unknown or input_names != tuple(n for n in _EXAMPLE_VALUES if n in input_names):
            raise ExportError(f"inputs {input_names}: expected an ordered subset of {tuple(_EXAMPLE_VALUES)}")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(**{name: given[name] for name in self.input_names}).logits


def export_onnx(model: torch.nn.Module, path: Path, settings: ExportSettings, max_positions: int) -> dict[str, Any]:
    """Write `path` and return what the manifest records about the export."""
    settings.check()
    names = family_for(model.config.model_type).input_names
    wrapper = LogitsOnly(model, names).eval()
    sequence = min(_TRACE_SEQUENCE, max_positions)
    example = tuple(torch.full((_TRACE_BATCH, sequence), _EXAMPLE_VALUES[n], dtype=torch.long) for n in names)  # (B, S)
    noise = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(noise), _quiet_torch_logs():
            warnings.simplefilter("ignore")
            if settings.exporter == "torchscript":
                _export_torchscript(wrapper, example, path, settings.opset, names)
            else:
                _export_dynamo(wrapper, example, path, settings.opset, max_positions, names)
    except OSError:
        raise  # the disk, not the exporter: the CLI reports it as such (exit 10)
    except Exception as exc:  # the exporters raise many unrelated types; keep the first line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{settings.exporter} export to {path.name} failed: {detail}") from exc
    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        "exporter": settings.exporter,
        "opset": settings.opset,
        "inputs": {value.name: _describe(value) for value in graph.input},
        "outputs": {value.name: _describe(value) for value in graph.output},
        "dynamic_axes": {
            **{name: {"0": BATCH_AXIS, "1": SEQUENCE_AXIS} for name in names},
            "logits": {"0": BATCH_AXIS},
        },
        "sequence_range": [1, max_positions],
        "nodes": len(graph.node),
    }


def _export_torchscript(
    wrapper: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, opset: int, names: tuple[str, ...]
) -> None:
    axes = {name: {0: BATCH_AXIS, 1: SEQUENCE_AXIS} for name in names}
    torch.onnx.export(
        wrapper,
        example,
        str(path),
        dynamo=False,
        input_names=list(names),
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={**axes, "logits": {0: BATCH_AXIS}},
        opset_version=opset,
        do_constant_folding=True,
    )


def _export_dynamo(
    wrapper: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    max_positions: int,
    names: tuple[str, ...],
) -> None:
    from torch.export import Dim

    batch = Dim(BATCH_AXIS, min=1, max=_MAX_BATCH)
    sequence = Dim(SEQUENCE_AXIS, min=1, max=max_positions)
    shapes = {name: {0: batch, 1: sequence} for name in names}
    program = torch.onnx.export(
        wrapper,
        example,
        dynamo=True,
        input_names=list(names),
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=shapes,
        opset_version=opset,
        verbose=False,
    )
    if program is None:
        raise ExportError("dynamo export returned no program")
    program.save(str(path))


@contextlib.contextmanager
def _quiet_torch_logs():  # the exporters log per-op chatter at WARNING that says nothing to a user
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "torch._export", "onnxscript")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


def _describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = value.type.tensor_type
    dims = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
    return {"dtype": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(), "shape": dims}
