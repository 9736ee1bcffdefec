"""`classify_dataset`: a Ray Dataset of texts in, the same rows with their labels out.

    ds (rows with a text column)
      -> map_batches(_Worker, ActorPoolStrategy(size=workers), num_cpus=threads_per_worker)
           each actor loads the artifact once (ONNX Runtime sessions cannot be pickled) with as many
           intra-op threads as CPUs it reserved: ONNX Runtime would otherwise take every core of
           the node, whatever Ray reserved
      -> rows + label, score, labels, truncated, tokens, windows, [probs], error

Nothing here knows the model: the actor calls the runtime's public `Classifier`, and turns its
Predictions into columns. A row that cannot be classified (a null, a lone surrogate) gets `error`
and nulls; the rest of its batch is classified as usual.

On one machine the actors load the artifact from its directory. On a cluster, the files `load()`
reads go through Ray's object store once, and an actor on another node writes them to a private
temporary directory, where `load()` verifies them against the manifest's sha256 as always.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from bert14.errors import InputError
from bert14.runtime import Classifier, LoadOptions, Prediction
from bert14.runtime.classifier import positive_int
from bert14.scale.sources import ERROR, ROWS_PER_BLOCK, TEXT

RESULT_COLUMNS = ("label", "score", "labels", "truncated", "tokens", "windows", "probs", ERROR)


# A worker always runs on the CPU; its threads are the CPUs its actor reserves.
WORKER_LOAD = LoadOptions(provider="cpu", threads=1)


@dataclass(frozen=True)
class WorkerOptions:
    """How each actor loads and runs the classifier: `load` is the runtime's own LoadOptions
    (precision, engine, max_batch, thresholds, ...), so every runtime option reaches batch jobs."""

    load: LoadOptions = WORKER_LOAD
    probs: bool = False  # add every label's score as a struct column
    text_column: str = TEXT
    pair_column: str | None = None
    keep_text: bool = False  # keep the text (and pair) columns in the output
    node_column: str | None = None  # record the Ray node that classified each row in this column

    def __post_init__(self) -> None:
        if not isinstance(self.load, LoadOptions):
            raise InputError(f"WorkerOptions.load: expected a LoadOptions, got {type(self.load).__name__}")
        if self.load.provider != "cpu":
            raise InputError(f"batch workers run on the CPU: expected provider 'cpu', got {self.load.provider!r}")
        if self.load.threads is None:
            raise InputError("batch workers: expected load.threads, the CPUs each actor reserves")
        positive_int("threads_per_worker", self.load.threads, 1024)
        positive_int("batch_size", self.load.max_batch, 4096)

    @property
    def threads(self) -> int:
        return self.load.threads  # type: ignore[return-value]


@dataclass(frozen=True)
class ArtifactShipment:
    """How an actor finds the artifact: its directory on the driver's node, and (on a cluster of
    several nodes) an object-store reference to the bytes of the files load() reads."""

    directory: str
    driver_node: str
    files: object | None = None  # ray.ObjectRef -> dict[str, bytes]


def ship(artifact: str | Path, options: WorkerOptions, to_other_nodes: bool) -> ArtifactShipment:
    import ray

    directory = Path(artifact).resolve()
    # An InputError/ArtifactError before the job.
    names = Classifier.files(directory, options.load.precision, "cpu", options.load.engine)
    ref = ray.put({name: (directory / name).read_bytes() for name in names}) if to_other_nodes else None
    return ArtifactShipment(str(directory), ray.get_runtime_context().get_node_id(), ref)


class _Worker:
    """One Ray actor: the classifier, loaded once, applied to one batch (a pyarrow table) at a time."""

    def __init__(self, shipment: ArtifactShipment, options: WorkerOptions) -> None:
        import ray

        self.options = options
        self.node = ray.get_runtime_context().get_node_id()
        self._copy: str | None = None
        directory = shipment.directory
        if self.node != shipment.driver_node and shipment.files is not None:
            self._copy = directory = tempfile.mkdtemp(prefix="bert14-artifact-")
            for name, data in ray.get(shipment.files).items():
                (Path(directory) / name).write_bytes(data)
        self.clf = Classifier.load(directory, options.load)

    def __del__(self) -> None:
        if self._copy:
            shutil.rmtree(self._copy, ignore_errors=True)

    def __call__(self, table: pa.Table) -> pa.Table:
        o = self.options
        n = table.num_rows
        texts = table.column(o.text_column).to_pylist()
        pairs = table.column(o.pair_column).to_pylist() if o.pair_column else None
        errors: list[str | None] = table.column(ERROR).to_pylist() if ERROR in table.column_names else [None] * n
        for i in range(n):
            if errors[i] is None:
                errors[i] = _not_text(texts[i], o.text_column)
            if errors[i] is None and pairs is not None:
                errors[i] = _not_text(pairs[i], o.pair_column)
        good = [i for i in range(n) if errors[i] is None]
        predictions: list[Prediction | None] = [None] * n
        for i, prediction in zip(good, self._classify(good, texts, pairs, errors), strict=True):
            predictions[i] = prediction
        dropped = [c for c in (o.text_column, o.pair_column, ERROR) if c and (c == ERROR or not o.keep_text)]
        out = table.drop_columns([c for c in dropped if c in table.column_names])
        clash = sorted(set(out.column_names) & set(RESULT_COLUMNS + ((o.node_column,) if o.node_column else ())))
        if clash:
            raise InputError(f"the dataset already has column(s) {clash}, which the results would overwrite")
        for name, column in _result_columns(predictions, errors, self.clf.labels, o.probs).items():
            out = out.append_column(name, column)
        if o.node_column:
            out = out.append_column(o.node_column, pa.array([self.node] * n, pa.string()).dictionary_encode())
        return out

    def _classify(self, good: list[int], texts: list, pairs: list | None, errors: list) -> list[Prediction | None]:
        """Predictions for rows `good`; a row the classifier refuses gets its error and None."""
        batch = [texts[i] for i in good]
        batch_pairs = [pairs[i] for i in good] if pairs is not None else None
        try:
            return self._run(self.clf.documents(batch, batch_pairs))
        except InputError:
            pass  # one row is bad: find it, classify the others
        docs = []
        for i in good:
            try:
                docs.append(self.clf.documents([texts[i]], [pairs[i]] if pairs is not None else None)[0])
            except InputError as exc:
                errors[i] = str(exc).replace("texts[0]", repr(self.options.text_column))
                docs.append(None)
        ran = iter(self._run([d for d in docs if d is not None]))
        return [next(ran) if d is not None else None for d in docs]

    def _run(self, docs: list) -> list[Prediction]:
        """The documents' predictions: every row (a text's windows too) bucketed together, then pooled."""
        return self.clf.pool(docs, self.clf.predict_encoded([row for doc in docs for row in doc.rows]))


def _not_text(value: object, column: str | None) -> str | None:
    if isinstance(value, str):
        return None
    return f"expected a string in {column!r}, found {'null' if value is None else type(value).__name__}"


def _result_columns(
    predictions: list[Prediction | None], errors: list[str | None], labels: list[str], probs: bool
) -> dict[str, pa.Array]:
    ok = [p is not None for p in predictions]
    columns = {
        "label": pa.array([p.label if p else None for p in predictions], pa.string()),
        "score": pa.array([p.score if p else None for p in predictions], pa.float32()),
        "labels": pa.array([list(p.labels) if p else None for p in predictions], pa.list_(pa.string())),
        "truncated": pa.array([p.truncated if p else None for p in predictions], pa.bool_()),
        "tokens": pa.array([p.tokens if p else None for p in predictions], pa.int32()),
        "windows": pa.array([p.windows if p else None for p in predictions], pa.int32()),
    }
    if probs:
        struct = pa.struct([(label, pa.float32()) for label in labels])
        columns["probs"] = pa.array([p.probs if p else None for p in predictions], struct)
    columns[ERROR] = pa.array([None if good else e for good, e in zip(ok, errors, strict=True)], pa.string())
    return columns


def classify_dataset(
    ds: object,
    artifact: str | Path,
    options: WorkerOptions | None = None,
    workers: int = 1,
    shipment: ArtifactShipment | None = None,
) -> object:
    """`ds` (a ray.data.Dataset whose rows have `options.text_column`) with each row's label, score,
    labels, truncated, tokens (and probs) added, classified by `workers` actors that each reserve
    `options.threads` CPUs; lazy, like every Dataset transform. Ray must be initialised."""
    import ray

    options = options or WorkerOptions()
    positive_int("workers", workers, 100_000)
    if shipment is None:
        several_nodes = sum(1 for node in ray.nodes() if node.get("Alive")) > 1
        shipment = ship(artifact, options, several_nodes)
    return ds.map_batches(  # type: ignore[attr-defined]
        _Worker,
        fn_constructor_kwargs={"shipment": shipment, "options": options},
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=options.threads,
        batch_size=ROWS_PER_BLOCK,  # tokenized and sorted by length together; bounds an actor's memory
        batch_format="pyarrow",
        zero_copy_batch=True,
    )
