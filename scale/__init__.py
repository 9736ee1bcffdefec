"""Scale-out on Ray Data, on top of the runtime's public API (the `ray` extra).

    from bert14.scale import WorkerOptions, classify_dataset
    ds = ray.data.read_parquet("news/")                       # any Dataset with a "text" column
    labelled = classify_dataset(ds, "artifacts/bert14", WorkerOptions(threads=2), workers=4)
    labelled.write_parquet("labels/")

`bert14 batch` (run_batch) adds what a whole job needs: input files checked before it starts, ids
checked unique, every row written exactly once, and the output published only when complete.
"""

from __future__ import annotations

from bert14.scale.job import BatchOptions, BatchReport, run_batch
from bert14.scale.workers import WorkerOptions, classify_dataset

__all__ = ["BatchOptions", "BatchReport", "WorkerOptions", "classify_dataset", "run_batch"]
