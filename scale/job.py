"""`bert14 batch`: classify a corpus on Ray Data and publish the labels, every input row exactly once.

    open_input + id pass   files, format, columns and ids checked; (N,) sorted id hashes kept
    preflight(OUT)         OUT must be absent, empty or an earlier batch output (never the user's files)
    connect                an embedded local Ray cluster, or an existing one (--address)
    plan                   workers x threads that fit the nodes (refused with the numbers if not)
    read -> classify       read tasks on this machine (they reserve no CPU, so actors holding every
                           CPU cannot starve them); actors anywhere in the cluster
    write (driver)         rows stream back to this process, which writes part files into a stage
                           inside OUT and hashes every id it writes
    verify                 written ids == input ids, as multisets: else nothing is published, and
                           the message names missing or repeated ids
    publish                the part files, then _bert14_batch.json; an earlier output's own files go

Input and output live on the machine that runs the command; a cluster only computes. The driver
keeps 8 bytes per row (the id hashes) and a few blocks in flight, whatever the corpus size.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from bert14 import errors
from bert14.errors import BatchError, Bert14Error, InputError
from bert14.publish import Layout, preflight, staging
from bert14.runtime import Classifier, LoadOptions
from bert14.runtime.classifier import positive_int
from bert14.scale.cluster import join
from bert14.scale.sources import ID, PAIR, TEXT, InputSpec, hash_ids, id_hashes, ids_of, open_input, read_blocks
from bert14.scale.workers import WorkerOptions, classify_dataset, ship

log = logging.getLogger("bert14.scale")

# Every Ray node carries its id as this label (ray.util.placement_group.NODE_ID_LABEL_KEY).
NODE_ID_LABEL = "ray.io/node-id"

OUTPUT_FORMATS = ("parquet", "jsonl")
MANIFEST = "_bert14_batch.json"
FORMAT = "bert14-batch-output"
PART = re.compile(r"part-\d{5,}\.(parquet|jsonl)")
RAISED = re.compile(r"bert14\.errors\.(\w+Error): (.+)")  # how a worker's error reads in Ray's text
NODE = "_bert14_node"  # internal column: which node classified a row (counted, never written)
# A batch output directory: the part files and the manifest that lists them (bert14/publish.py).
OUTPUT = Layout(
    "batch output",
    "batch",
    "--output",
    MANIFEST,
    lambda raw: isinstance(raw, dict) and raw.get("format") == FORMAT and isinstance(raw.get("files"), dict),
    lambda name: name == MANIFEST or PART.fullmatch(name) is not None,
)


@dataclass(frozen=True)
class BatchOptions:
    artifact: Path
    input: str  # a file, a directory or a glob
    output: Path
    format: str | None = None  # txt | jsonl | csv | parquet; None: from the files' suffix
    text_column: str = TEXT
    pair_column: str | None = None
    id_column: str | None = None  # None: "id" when the input has it, else generated row numbers
    output_format: str = "parquet"
    # The runtime's options (precision, engine, max_batch = rows per model run, thresholds, ...); each
    # worker runs them on the CPU with threads_per_worker threads.
    load: LoadOptions = field(default_factory=LoadOptions)
    workers: int | None = None  # None: see plan()
    threads_per_worker: int | None = None
    probs: bool = False
    address: str | None = None  # None: an embedded local cluster; "auto" or "ray://host:port": an existing one
    progress: bool = True
    rows_per_file: int = 1_000_000

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError(f"--output-format: expected one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        for name in ("workers", "threads_per_worker"):
            if getattr(self, name) is not None:
                positive_int(name.replace("_", "-"), getattr(self, name), 100_000)
        if not isinstance(self.load, LoadOptions):
            raise InputError(f"BatchOptions.load: expected a LoadOptions, got {type(self.load).__name__}")
        positive_int("batch-size", self.load.max_batch, 4096)
        positive_int("rows_per_file", self.rows_per_file, 1 << 40)


@dataclass
class BatchReport:
    output: Path
    rows: int
    errors: int
    seconds: float
    files: dict[str, int]  # part file -> rows
    model_file: str
    workers: int
    threads: int
    rows_by_node: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        nodes = len(self.rows_by_node)
        return (
            f"classified {self.rows} rows ({self.errors} with an error) in {self.seconds:.1f} s, {rate:.1f} rows/s, "
            f"{self.workers} worker(s) x {self.threads} thread(s) on {nodes} node(s); "
            f"wrote {self.output}/ ({len(self.files)} file(s) and {MANIFEST})"
        )


def run_batch(options: BatchOptions) -> BatchReport:
    """Classify every row of options.input into options.output (see the module's docstring)."""
    spec = open_input(options.input, options.format, options.text_column, options.pair_column, options.id_column)
    model_file = Classifier.files(options.artifact, options.load.precision, "cpu", options.load.engine)[1]  # before Ray
    # A long-text setting the model cannot take is one line now, not a worker's traceback after Ray started.
    long_text = Classifier.fit_long_text(options.artifact, options.load.long_text, spec.pair_column is not None)
    options = replace(options, load=replace(options.load, long_text=long_text))
    preflight(options.output, OUTPUT)
    _apart(spec, options.output)
    expected = id_hashes(spec)
    started = time.perf_counter()
    owned = _connect(options.address, options.progress)
    try:
        workers, threads, nodes = plan(options.workers, options.threads_per_worker, options.address is None)
        log.info("%d worker(s) x %d thread(s) on %d node(s)", workers, threads, nodes)
        worker_options = WorkerOptions(
            replace(options.load, provider="cpu", threads=threads),
            options.probs,
            TEXT,
            PAIR if spec.pair_column else None,
            node_column=NODE,
        )
        shipment = ship(options.artifact, worker_options, to_other_nodes=nodes > 1)
        ds = ray.data.read_datasource(
            _Source(spec),
            num_cpus=0,
            label_selector={NODE_ID_LABEL: shipment.driver_node},  # on this machine, where the input files are
        )
        ds = classify_dataset(ds, options.artifact, worker_options, workers, shipment)
        with staging(options.output, OUTPUT) as stage:
            writer = _Writer(stage, options.output_format, spec.id_name, options.rows_per_file)
            try:
                for block in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                    writer.write(block)
            except Exception as exc:  # Ctrl-C and SIGTERM go on as they are; the stage goes with them
                raise _failed(exc, spec, expected, writer, options.output) from None
            finally:
                writer.close()
            _verify(spec, expected, writer, options.output)
            report = BatchReport(
                options.output, writer.rows, writer.errors, time.perf_counter() - started, dict(writer.files),
                model_file, workers, threads, dict(writer.rows_by_node),
            )  # fmt: skip
            _write_manifest(stage, options, spec, report)
        return report
    finally:
        if owned:
            ray.shutdown()


def _apart(spec: InputSpec, output: Path) -> None:
    """An input file inside the output directory would be read while a publish may replace it."""
    out = Path(output).resolve()
    inside = [p for p in spec.paths if p.resolve().is_relative_to(out)]
    if inside:
        raise InputError(
            f"--input {inside[0]} lies inside --output {output}, which the job replaces when it publishes; "
            "write the output elsewhere"
        )


def _connect(address: str | None, progress: bool) -> bool:
    """Whether this call started Ray: an embedded local cluster sized to this machine, or the cluster
    at `address`. A Ray already initialised in this process (the Python API) is used as is."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # progress bars on a terminal, not log lines
    ray.data.DataContext.get_current().enable_progress_bars = progress
    if ray.is_initialized():
        return False
    join(address, BatchError)
    return True


def plan(workers: int | None, threads: int | None, local: bool) -> tuple[int, int, int]:
    """(workers, threads per worker, nodes) for the running cluster. Defaults: on the embedded local
    cluster one worker per core with one thread each (measured fastest, docs/batch.md); on a
    cluster one worker per node with all its CPUs, unless told otherwise. A layout whose actors
    cannot all be placed is refused: Ray Data would wait for them forever."""
    cpus = sorted(int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive"))
    cpus = [c for c in cpus if c > 0]
    if not cpus:
        raise BatchError("the Ray cluster has no node with a CPU to run a worker on")
    if threads is None:
        threads = 1 if local or workers is not None and workers > len(cpus) else cpus[0]
    if workers is None:
        workers = sum(c // threads for c in cpus)
    fits = sum(c // threads for c in cpus)
    if threads > cpus[-1] or workers > fits:
        raise InputError(
            f"--workers {workers} x --threads-per-worker {threads}: each worker reserves {threads} CPU(s), and "
            f"the cluster's nodes have {cpus} CPUs, room for {fits} such worker(s); ask for fewer"
        )
    return workers, threads, len(cpus)


class _Source(Datasource):
    """The input files as Ray Data read tasks: one per file, each streaming blocks of rows."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(p.stat().st_size for p in self.spec.paths)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: object = None):
        return [
            ReadTask(
                functools.partial(read_blocks, self.spec, i),
                BlockMetadata(num_rows=None, size_bytes=path.stat().st_size, input_files=[str(path)], exec_stats=None),
            )
            for i, path in enumerate(self.spec.paths)
        ]


class _Writer:
    """Part files in the stage, filled as rows stream back; hashes every id it writes."""

    def __init__(self, stage: Path, fmt: str, id_name: str, rows_per_file: int) -> None:
        self.stage, self.fmt, self.id_name, self.rows_per_file = stage, fmt, id_name, rows_per_file
        self.files: dict[str, int] = {}  # name -> rows
        self.hashes: list[np.ndarray] = []
        self.rows = self.errors = 0
        self.rows_by_node: dict[str, int] = {}
        self._handle: object | None = None
        self._schema: pa.Schema | None = None
        self._in_file = 0

    def write(self, table: pa.Table) -> None:
        if NODE in table.column_names:
            for node, count in _counts(table.column(NODE)).items():
                self.rows_by_node[node] = self.rows_by_node.get(node, 0) + count
            table = table.drop_columns([NODE])
        table = table.rename_columns([self.id_name if c == ID else c for c in table.column_names])
        if self._schema is None:
            self._schema = table.schema
        table = table.cast(self._schema)
        self.hashes.append(hash_ids(table.column(self.id_name)))
        self.rows += table.num_rows
        self.errors += table.num_rows - table.column("error").null_count
        start = 0
        while start < table.num_rows:
            if self._handle is None or self._in_file >= self.rows_per_file:
                self._open()
            take = min(table.num_rows - start, self.rows_per_file - self._in_file)
            self._append(table.slice(start, take))
            self._in_file += take
            self.files[next(reversed(self.files))] += take
            start += take

    def _open(self) -> None:
        self._close_file()
        name = f"part-{len(self.files):05d}.{self.fmt}"
        self.files[name] = 0
        path = self.stage / name
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._handle = pq.ParquetWriter(path, self._schema)
        else:
            self._handle = path.open("w", encoding="utf-8")
        self._in_file = 0

    def _append(self, table: pa.Table) -> None:
        if self.fmt == "parquet":
            self._handle.write_table(table)  # type: ignore[attr-defined]
        else:
            lines = (json.dumps(row, ensure_ascii=False) for row in table.to_pylist())
            self._handle.write("".join(line + "\n" for line in lines))  # type: ignore[attr-defined]

    def _close_file(self) -> None:
        if self._handle is not None:
            self._handle.close()  # type: ignore[attr-defined]
            self._handle = None

    def close(self) -> None:
        self._close_file()

    def written(self) -> np.ndarray:
        return np.sort(np.concatenate(self.hashes)) if self.hashes else np.zeros(0, np.uint64)


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    values = column.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    counts = values.value_counts()
    return {str(item["values"]): int(item["counts"]) for item in counts.to_pylist()}


def _verify(spec: InputSpec, expected: np.ndarray, writer: _Writer, output: Path) -> None:
    """Written ids == input ids, each once; else a BatchError naming ids, and nothing is published."""
    written = writer.written()
    if np.array_equal(written, expected):
        return
    missing = np.setdiff1d(expected, written)
    repeated = np.unique(written[1:][written[1:] == written[:-1]])
    raise BatchError(
        f"the output would not hold every input row exactly once ({len(expected)} rows in, {len(written)} out; "
        f"missing e.g. {ids_of(spec, missing) if len(missing) else 'none'}, repeated e.g. "
        f"{ids_of(spec, repeated) if len(repeated) else 'none'}); nothing was published, {output} is unchanged"
    )


def _failed(exc: BaseException, spec: InputSpec, expected: np.ndarray, writer: _Writer, output: Path) -> Bert14Error:
    """The job died (a worker failed beyond Ray's retries, a cluster went away): one line that says
    why, how far it got, and which rows were not classified."""
    cause = _root(exc)
    missing = np.setdiff1d(expected, writer.written())
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    error = BatchError if not isinstance(cause, Bert14Error) else type(cause)
    return error(
        f"the job failed after {writer.rows} of {len(expected)} rows: {detail}; not classified: "
        f"{len(missing)} rows, e.g. ids {ids_of(spec, missing, 5)}; nothing was published, {output} is unchanged"
    )


def _root(exc: BaseException) -> BaseException:
    """The user-level cause inside Ray's wrappers. A task's exception comes back as its `cause`; an
    actor whose constructor raised (an artifact that fails its sha256 check) comes back only as text
    (ActorDiedError), whose last `bert14.errors.X: message` line is the error bert14 raised."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for item in chain:
        if isinstance(item, Bert14Error):
            return item
    for item in chain:
        found = RAISED.findall(str(getattr(item, "error_msg", "")) or str(item))
        if found and isinstance(getattr(errors, found[-1][0], None), type):
            return getattr(errors, found[-1][0])(found[-1][1])
    return chain[0]


def _write_manifest(stage: Path, options: BatchOptions, spec: InputSpec, report: BatchReport) -> None:
    from bert14 import __version__
    from bert14.artifact import read_manifest

    manifest = read_manifest(options.artifact)
    raw = {
        "format": FORMAT,
        "schema_version": 1,
        "bert14_version": __version__,
        "files": report.files,
        "rows": report.rows,
        "errors": report.errors,
        "id_column": spec.id_name,
        "ids": "column" if spec.id_column else "generated",
        "input": [str(p) for p in spec.paths],
        "model": {
            "file": report.model_file,
            "version": manifest.files[report.model_file][:16],
            "labels": manifest.model.labels,
            "threshold": options.load.threshold,
            "label_thresholds": dict(options.load.label_thresholds or {}),
        },
        "seconds": round(report.seconds, 3),
    }
    (stage / MANIFEST).write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
