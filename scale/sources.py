"""What `bert14 batch` reads: files named by a path, a directory or a glob, as blocks of rows.

    input files (txt | jsonl | csv | parquet)
        -> open_input(): every check that can fail before the job starts (paths, format, columns)
        -> read_blocks(spec, i): file i as pyarrow tables of at most ROWS_PER_BLOCK rows
               id      the id column's value, or the row's number (1-based) when ids are generated
               text    the text, or null when it cannot be read
               pair    the second segment (only with a pair column)
               error   why the row cannot be classified (undecodable, not a string), else null

A row whose text cannot be read still gets a row (with `error`): the job never dies of one bad row.
A row whose *id* cannot be read (a broken JSON line, a missing id) is an InputError, found by the
id pass (`id_hashes`) before any model loads: without an id, "every row exactly once" means nothing.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bert14.encode import check_text
from bert14.errors import InputError

ROWS_PER_BLOCK = 1024
FORMATS = ("txt", "jsonl", "csv", "parquet")
SUFFIXES = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
ID, TEXT, PAIR, ERROR = "id", "text", "pair", "error"
DEFAULT_ID_COLUMN = "id"


@dataclass(frozen=True)
class InputSpec:
    """Checked input: what read_blocks() reads. Picklable: Ray ships it to the read tasks."""

    paths: tuple[Path, ...]
    format: str
    text_column: str
    pair_column: str | None
    id_column: str | None  # None: ids are generated (row numbers; "file:row" over several files)
    names: tuple[str, ...]  # how a generated id names each file
    block_bytes: tuple[int, ...] = ()  # csv: pyarrow's block size for each file (holds its longest line)

    @property
    def id_name(self) -> str:
        """The id column's name in the output."""
        return self.id_column or DEFAULT_ID_COLUMN


def open_input(
    pattern: str,
    format: str | None = None,
    text_column: str = TEXT,
    pair_column: str | None = None,
    id_column: str | None = None,
) -> InputSpec:
    """The files `pattern` names, their format and columns, checked; InputError says what is wrong."""
    paths = _resolve(pattern)
    fmt = format or _format_of(paths)
    if fmt not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "txt" and (id_column or pair_column or text_column != TEXT):
        raise InputError("--format txt: one text a line, its line number as id; columns apply to jsonl, csv, parquet")
    explicit_id = id_column is not None
    blocks = tuple(_csv_block_bytes(path) for path in paths) if fmt == "csv" else ()
    if fmt != "txt":
        columns = [_columns(path, fmt, (text_column, pair_column), blocks[i] if blocks else 0)
                   for i, path in enumerate(paths)]  # fmt: skip
        for path, found in zip(paths, columns, strict=True):
            if found is None:
                continue  # JSON lines: checked row by row
            wanted = [c for c in (text_column, pair_column, id_column) if c]
            missing = [c for c in wanted if c not in found]
            if missing:
                raise InputError(f"{path}: expected column(s) {missing}, found {sorted(found)}")
        if not explicit_id and all(c is not None and DEFAULT_ID_COLUMN in c for c in columns):
            id_column = DEFAULT_ID_COLUMN
        if not explicit_id and fmt == "jsonl":
            id_column = DEFAULT_ID_COLUMN if _jsonl_has(paths[0], DEFAULT_ID_COLUMN) else None
    if fmt == "parquet" and id_column:
        for path in paths:  # a list or struct id would get past the id pass only to fail inside Ray
            kind = pq.ParquetFile(path).schema_arrow.field(id_column).type
            if not (pa.types.is_integer(kind) or kind in TEXT_TYPES[:2]):
                raise InputError(f"{path}: expected ids in {id_column!r} as strings or integers, found {kind}")
    named = [c for c in (text_column, pair_column, id_column) if c]
    if len(set(named)) != len(named):
        raise InputError("--text-column, --pair-column and --id-column must name different columns")
    return InputSpec(tuple(paths), fmt, text_column, pair_column, id_column, _short_names(paths), blocks)


def _resolve(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        where = f"in the directory {path}"
    elif glob.has_magic(pattern):
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        where = f"matching {pattern!r}"
    else:
        raise InputError(f"--input {pattern}: expected a file, a directory or a glob, found nothing there")
    if not found:
        raise InputError(f"--input: expected input files ({', '.join(SUFFIXES)}) {where}, found none")
    return found


def _format_of(paths: list[Path]) -> str:
    formats = {SUFFIXES.get(p.suffix.lower()) for p in paths}
    if None in formats:
        odd = next(p for p in paths if p.suffix.lower() not in SUFFIXES)
        raise InputError(f"{odd}: cannot tell its format from the suffix ({', '.join(SUFFIXES)}); pass --format")
    if len(formats) > 1:
        raise InputError(f"--input: expected files of one format, found {sorted(formats)}; pass one kind at a time")
    return formats.pop()  # type: ignore[return-value]


TEXT_TYPES = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


def _columns(
    path: Path, fmt: str, texts: tuple[str | None, ...] = (), block_bytes: int = 0
) -> set[str] | None:
    try:
        if fmt == "parquet":
            schema = pq.ParquetFile(path).schema_arrow
            odd = [f"{c!r} holds {schema.field(c).type}" for c in texts if c in schema.names
                   and schema.field(c).type not in TEXT_TYPES]  # fmt: skip
            if odd:
                raise InputError(f"{path}: expected string columns of texts, but {', '.join(odd)}")
            return set(schema.names)
        if fmt == "csv":
            with pacsv.open_csv(path, read_options=_csv_read_options(block_bytes)) as reader:
                return set(reader.schema.names)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: expected a readable {fmt} file, got: {_arrow_reason(exc)}") from exc
    return None


CSV_MIN_BLOCK = 1 << 20  # pyarrow's default: rows are parsed a block at a time
CSV_MAX_BLOCK = 1 << 30  # a row past this is refused (see _arrow_reason) rather than held whole


def _csv_block_bytes(path: Path) -> int:
    """A block size that holds the file's longest line twice over (a block must hold a whole row;
    pyarrow's default of 1 MB refuses a longer cell), found in one pass of 16 MB reads."""
    longest, run = 0, 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(16 << 20):
                ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
                if len(ends) == 0:
                    run += len(chunk)
                    continue
                gaps = np.diff(ends) if len(ends) > 1 else np.zeros(0, np.int64)
                longest = max(longest, run + int(ends[0]) + 1, int(gaps.max(initial=0)))
                run = len(chunk) - int(ends[-1]) - 1
    except OSError as exc:
        raise InputError(f"{path}: could not read it: {exc.strerror or exc}") from exc
    longest = max(longest, run)
    return int(min(max(CSV_MIN_BLOCK, 2 * longest + 1), CSV_MAX_BLOCK))


def _csv_read_options(block_bytes: int) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(block_size=block_bytes or CSV_MIN_BLOCK)


def _arrow_reason(exc: BaseException) -> str:
    reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "straddling" in reason:  # a quoted cell that spans lines and outgrows the block
        return (f"a row is longer than {CSV_MAX_BLOCK >> 20} MB or holds line breaks that span blocks; split it, "
                "or convert the file to jsonl or parquet")  # fmt: skip
    return reason


def _jsonl_has(path: Path, column: str) -> bool:
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                try:
                    row = json.loads(raw)
                except ValueError:
                    return False
                return isinstance(row, dict) and column in row
    return False


def _short_names(paths: list[Path]) -> tuple[str, ...]:
    """Each file's name as a generated id shows it: its name, or its path below the common folder."""
    if len({p.name for p in paths}) == len(paths):
        return tuple(p.name for p in paths)
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([r.parent for r in resolved]))
    return tuple(str(r.relative_to(common)) for r in resolved)


# ----- reading --------------------------------------------------------------------------------------------


def _kind_name(kind: type) -> str:
    return "an integer" if kind is int else "a string"


class _Rows:
    """Rows collected into blocks of ROWS_PER_BLOCK."""

    def __init__(self, spec: InputSpec, index: int) -> None:
        self.spec, self.index = spec, index
        self.count = 0  # rows added so far
        self.kind: type | None = None  # the id column's Python type, once a row shows it (int or str)
        self.ids: list[object] = []
        self.texts: list[str | None] = []
        self.pairs: list[str | None] = []
        self.errors: list[str | None] = []

    def generated_id(self, row: int) -> object:
        return row if len(self.spec.paths) == 1 else f"{self.spec.names[self.index]}:{row}"

    def add(self, id_: object, text: str | None, pair: str | None, error: str | None) -> pa.Table | None:
        self.count += 1
        if self.spec.id_column is not None:
            self._check_id(id_)
        self.ids.append(id_)
        self.texts.append(text)
        self.pairs.append(pair)
        self.errors.append(error)
        return self.flush() if len(self.ids) >= ROWS_PER_BLOCK else None

    def _check_id(self, id_: object) -> None:
        """Ids are strings or 64-bit integers, one type for the whole input: Ray's blocks hold one type
        a column, and a 1 that is also a "1" would make "every row exactly once" ambiguous."""
        where = f"{self.spec.paths[self.index]}: row {self.count}"
        column = self.spec.id_column
        if isinstance(id_, bool) or not isinstance(id_, int | str):
            shown = "null" if id_ is None else f"{type(id_).__name__} {str(id_)[:40]}"
            raise InputError(f"{where}: expected a string or integer id in {column!r}, found {shown}")
        if isinstance(id_, int) and not -(1 << 63) <= id_ < 1 << 63:
            raise InputError(f"{where}: id {id_} in {column!r} does not fit 64 bits; write ids this large as strings")
        if self.kind is None:
            self.kind = type(id_)
        elif type(id_) is not self.kind:
            raise InputError(
                f"{where}: id {id_!r} in {column!r} is {_kind_name(type(id_))}, earlier rows' ids are "
                f"{_kind_name(self.kind)}; expected one id type throughout the input"
            )

    def flush(self) -> pa.Table | None:
        if not self.ids:
            return None
        kind = None if self.spec.id_column is None else pa.int64() if self.kind is int else pa.string()
        columns = {ID: pa.array(self.ids, kind), TEXT: pa.array(self.texts, pa.string())}
        if self.spec.pair_column:
            columns[PAIR] = pa.array(self.pairs, pa.string())
        columns[ERROR] = pa.array(self.errors, pa.string())
        table = pa.table(columns)
        self.ids, self.texts, self.pairs, self.errors = [], [], [], []
        return table


def read_blocks(spec: InputSpec, index: int, ids_only: bool = False) -> Iterator[pa.Table]:
    """File `index` of `spec` as blocks (see the module's docstring); `ids_only` skips the texts."""
    path = spec.paths[index]
    rows = _Rows(spec, index)
    reader = {"txt": _txt_rows, "jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[spec.format]
    try:
        for id_, text, pair, error in reader(spec, path, rows, ids_only):
            block = rows.add(id_, text, pair, error)
            if block is not None:
                yield block
        block = rows.flush()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: could not read it as {spec.format}: {_arrow_reason(exc)}") from exc
    if block is not None:
        yield block


Row = tuple[object, "str | None", "str | None", "str | None"]


def _decode(raw: bytes | None, what: str) -> tuple[str | None, str | None]:
    if raw is None:
        return None, f"expected a string in {what}, found null"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"expected UTF-8 text in {what}, found invalid bytes ({exc.reason})"


def _txt_rows(spec: InputSpec, path: Path, rows: _Rows, ids_only: bool) -> Iterator[Row]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text, error = (None, None) if ids_only else _decode(raw.rstrip(b"\r\n"), f"line {number}")
            yield rows.generated_id(number), text, None, error


def _json_text(row: dict, column: str | None) -> tuple[str | None, str | None]:
    if column is None:
        return None, None
    value = row.get(column)
    if isinstance(value, str):
        try:  # JSON's "\ud800" makes a str that no UTF-8 column (and no tokenizer) can hold
            return check_text(repr(column), value), None
        except InputError as exc:
            return None, str(exc)
    found = "no such key" if column not in row else "null" if value is None else type(value).__name__
    return None, f"expected a string in {column!r}, found {found}"


def _jsonl_rows(spec: InputSpec, path: Path, rows: _Rows, ids_only: bool) -> Iterator[Row]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                row = json.loads(raw)
                problem = None if isinstance(row, dict) else f"expected a JSON object, found {type(row).__name__}"
            except ValueError as exc:
                row, problem = {}, f"expected a JSON object, found invalid JSON ({exc})"
            if spec.id_column is None:
                id_ = rows.generated_id(number)
            elif problem is not None:
                raise InputError(f"{path}:{number}: {problem}, so the row has no id; fix the line")
            else:
                id_ = row.get(spec.id_column)  # its type is checked as the row is added
            if ids_only:
                yield id_, None, None, None
                continue
            text, error = (None, f"line {number}: {problem}") if problem else _json_text(row, spec.text_column)
            pair, pair_error = _json_text(row, spec.pair_column) if not problem else (None, None)
            yield id_, text, pair, error or pair_error


def _csv_rows(spec: InputSpec, path: Path, rows: _Rows, ids_only: bool) -> Iterator[Row]:
    # Texts as bytes, decoded row by row, so that one undecodable cell is that row's error, not the file's.
    texts = [] if ids_only else [c for c in (spec.text_column, spec.pair_column) if c]
    columns = texts + ([spec.id_column] if spec.id_column else [])
    types = {c: pa.binary() for c in texts} | ({spec.id_column: pa.string()} if spec.id_column else {})
    options = pacsv.ConvertOptions(column_types=types, include_columns=columns or [spec.text_column])
    number = 0
    block_bytes = spec.block_bytes[rows.index] if spec.block_bytes else 0
    with pacsv.open_csv(path, convert_options=options, read_options=_csv_read_options(block_bytes)) as reader:
        for batch in reader:
            yield from _table_rows(spec, batch, rows, number, ids_only, path)
            number += batch.num_rows


def _parquet_rows(spec: InputSpec, path: Path, rows: _Rows, ids_only: bool) -> Iterator[Row]:
    texts = [] if ids_only else [c for c in (spec.text_column, spec.pair_column) if c]
    columns = texts + ([spec.id_column] if spec.id_column else [])
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_BLOCK, columns=columns or [spec.text_column]):
        yield from _table_rows(spec, batch, rows, number, ids_only, path)
        number += batch.num_rows


def _as_bytes(column: pa.Array | pa.ChunkedArray | None, n: int) -> list[bytes | None]:
    if column is None:
        return [None] * n
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.large_binary())
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise InputError(f"expected a string column of texts, found {column.type}")
    return column.to_pylist()


def _table_rows(
    spec: InputSpec, batch: pa.RecordBatch, rows: _Rows, start: int, ids_only: bool, path: Path
) -> Iterator[Row]:
    n = batch.num_rows
    if spec.id_column:
        ids = batch.column(spec.id_column).to_pylist()
        if None in ids:
            raise InputError(
                f"{path}: row {start + ids.index(None) + 1} has no {spec.id_column!r}; every row needs an id"
            )
    else:
        ids = [rows.generated_id(start + i + 1) for i in range(n)]
    if ids_only:
        for id_ in ids:
            yield id_, None, None, None
        return
    try:
        texts = _as_bytes(batch.column(spec.text_column), n)
        pairs = _as_bytes(batch.column(spec.pair_column) if spec.pair_column else None, n)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    for i in range(n):
        text, error = _decode(texts[i], f"{spec.text_column!r}")
        pair, pair_error = _decode(pairs[i], f"{spec.pair_column!r}") if spec.pair_column else (None, None)
        yield ids[i], text, pair, error or pair_error


# ----- ids ------------------------------------------------------------------------------------------------


def hash_ids(ids: pa.Array | pa.ChunkedArray | list) -> np.ndarray:
    """(N,) uint64: one 64-bit hash per id; equal ids, equal hashes. Exactly-once is checked on these:
    8 bytes a row whatever the ids, so millions of rows fit in the driver."""
    from pandas.util import hash_array

    values = ids.to_numpy(zero_copy_only=False) if not isinstance(ids, list) else np.asarray(ids, dtype=object)
    if values.dtype.kind not in "iu":
        values = values.astype(object)
    return hash_array(values, categorize=False)


def id_hashes(spec: InputSpec) -> np.ndarray:
    """(N,) uint64, sorted: the hashes of every input row's id, read before the job starts. Duplicate
    ids are an InputError that names one."""
    parts, first = [], None
    for i in range(len(spec.paths)):
        for block in read_blocks(spec, i, True):
            kind = block.column(ID).type
            first = first or (kind, spec.paths[i])
            if spec.id_column is not None and kind != first[0]:
                raise InputError(
                    f"{spec.paths[i]}: ids in {spec.id_column!r} are {_arrow_kind(kind)}, {first[1]}'s are "
                    f"{_arrow_kind(first[0])}; expected one id type throughout the input"
                )
            parts.append(hash_ids(block.column(ID)))
    hashes = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
    repeated = hashes[1:][hashes[1:] == hashes[:-1]]
    if len(repeated):
        raise InputError(
            f"--input: expected every id in {spec.id_name!r} once, found {len(repeated)} repeated, e.g. "
            f"{ids_of(spec, repeated[:1])[0]!r}; make the ids unique (or drop --id-column to number rows)"
        )
    return hashes


def _arrow_kind(kind: pa.DataType) -> str:
    return "integers" if pa.types.is_integer(kind) else "strings"


def ids_of(spec: InputSpec, wanted: np.ndarray, limit: int = 10) -> list[object]:
    """Input ids whose hash is in `wanted` (at most `limit`): turns a hash mismatch back into ids."""
    found: list[object] = []
    for i in range(len(spec.paths)):
        for block in read_blocks(spec, i, True):
            ids = block.column(ID)
            hit = np.isin(hash_ids(ids), wanted)
            found += [ids[int(j)].as_py() for j in np.flatnonzero(hit)]
            if len(found) >= limit:
                return found[:limit]
    return found
