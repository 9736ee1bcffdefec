"""Beyond one process, on top of the runtime's public API; no model logic of its own.

    bert14.scale.classify_dataset / run_batch   a corpus on Ray Data (`bert14 batch`, the ray extra)
    bert14.scale.triton.write_repo              a Triton model repository (`bert14 triton-repo`)

    from bert14.runtime import LoadOptions
    from bert14.scale import WorkerOptions, classify_dataset
    ds = ray.data.read_parquet("news/")                       # any Dataset with a "text" column
    options = WorkerOptions(LoadOptions(provider="cpu", threads=2))  # the runtime's options, per actor
    labelled = classify_dataset(ds, "artifacts/bert14", options, workers=4)
    labelled.write_parquet("labels/")

`bert14 batch` (run_batch) adds what a whole job needs: input files checked before it starts, ids
checked unique, every row written exactly once, and the output published only when complete.
Names are imported on first use, so that the Triton writer needs no Ray.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "BatchOptions": "job",
    "BatchReport": "job",
    "run_batch": "job",
    "WorkerOptions": "workers",
    "classify_dataset": "workers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'bert14.scale' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bert14.scale.{_WHERE[name]}"), name)
