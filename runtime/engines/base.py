"""What every engine shares: the request it resolves, the settings it opens a session with, and the
session's shape (ONNX Runtime's `run(output_names, feeds) -> [arrays]`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

PRECISIONS = ("auto", "int8", "fp16", "fp32")
PROVIDERS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class SessionSettings:
    threads: int | None = None  # intra-op threads; None or 0: the engine's default (all cores)
    inter_op_threads: int = 1
    # True: pool threads spin between the ops of a run and stop when it returns (no CPU burnt
    # between requests); False: they never spin (when the cores are shared with other work).
    spinning: bool = True
    cuda_graph: bool = False  # CUDA only: capture one graph per fixed bucket (runtime/cuda.py)
    # False: the graph as written, no engine-side fusion (ONNX Runtime's ORT_DISABLE_ALL), so parity
    # runs see a missed fusion; OpenVINO has no such mode and always runs what it serves.
    optimized: bool = True


class Resolved(NamedTuple):
    precision: str
    provider: str
    path: Path
    engine: str = "onnxruntime"


class Session(Protocol):
    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class Engine(Protocol):
    """One engine: which of an artifact's files answers a request, and a session over that file."""

    name: str

    def resolve(self, directory: Path, precision: str, provider: str, files: set[str]) -> Resolved:
        """(precision, provider, file, engine) for a request, or an InputError/ArtifactError saying why not."""
        ...

    def open_session(self, path: Path, provider: str, settings: SessionSettings) -> tuple[Session, str]:
        """A session over `path` and the provider it really runs on."""
        ...
