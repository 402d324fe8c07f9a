"""Avro object container files (``.avro``), read with fastavro.

The schema comes from the file header alone (the first block of the file, one ranged GET). Avro
types map to Arrow as follows; a value is never rounded or re-encoded on the way:

- primitives: boolean, int (int32), long (int64), float (float32), double (float64), bytes
  (binary), string; enum -> string; fixed -> fixed_size_binary;
- logical types: decimal -> decimal128/decimal256 (exact digits), date -> date32, time-millis ->
  time32[ms], time-micros -> time64[us], timestamp-millis/-micros/-nanos -> timestamp UTC,
  uuid -> string; local-timestamp-* (no zone) -> ISO-8601 text without a zone, since a UTC
  timestamp would claim a zone the value does not have;
- record -> struct, array -> list, map -> map<string, T>;
- ``avro.double_as_string`` (Airbyte's option): float and double as text (``repr``: the shortest
  text that reads back as the same value);
- a union of null and one type -> that type (every column is nullable); a union of several
  types -> string holding each value as text (JSON for nested values), so nothing is dropped.

A flat record schema (primitives, enum, fixed, nullable unions of one type, the logical types
above but local timestamps and fixed uuids) is decoded column by column from runs of blocks
(:mod:`connector.source.formats.avro_columns`; on the bench's rows about an eighth of the CPU of
fastavro's dicts turned into Arrow). Anything else, and any run of blocks that decoder does not
vouch for, is decoded by fastavro record by record, with the same values and errors. Either way
memory is bounded by a batch, a run of blocks (:data:`RUN_ROWS` records or :data:`RUN_BYTES`
decompressed bytes, whichever comes first, or one bigger block) and the read-ahead block, not by
the file.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Generator, Iterator
from typing import Any, Literal

import fastavro
import fsspec
import pyarrow as pa

from connector.source.errors import BadDataError
from connector.source.formats import FileStats, FormatOptions, avro_columns, data_errors, open_raw
from connector.source.listing import FileRef

#: Read-ahead while reading the header (schema) only.
HEADER_BLOCK = 64 << 10
#: Read-ahead while reading data blocks.
DATA_BLOCK = 8 << 20
#: Records decoded together by the column decoder: its per-run cost walks the longest block
#: once, so a longer run spreads it over more records...
RUN_ROWS = 1 << 17
#: ...but no more decompressed bytes than this in a run (plus the block that passes it): the
#: decoder peaks at ~13 bytes per byte on the bench's rows (wide records reach it before RUN_ROWS).
RUN_BYTES = 16 << 20
#: Column name for the values of a file whose top-level schema is not a record.
VALUE_COLUMN = "value"

Convert = Callable[[Any], Any] | None
_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(), "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
    "double": pa.float64(), "bytes": pa.binary(), "string": pa.string(),
}
_TIME_TYPES: dict[str, pa.DataType] = {
    "date": pa.date32(), "time-millis": pa.time32("ms"), "time-micros": pa.time64("us"),
    "timestamp-millis": pa.timestamp("ms", tz="UTC"), "timestamp-micros": pa.timestamp("us", tz="UTC"),
    "timestamp-nanos": pa.timestamp("ns", tz="UTC"),
}
_LOCAL_TIMESTAMPS = frozenset({"local-timestamp-millis", "local-timestamp-micros", "local-timestamp-nanos"})


class AvroTypeError(ValueError):
    """The header declares a schema this reader cannot map (a reference to an undefined name...)."""


def arrow_type(schema: Any, names: dict[str, Any]) -> tuple[pa.DataType, Convert]:
    """The Arrow type of Avro ``schema`` and the function making fastavro's values fit it (None:
    they already do). ``names`` collects named types (record, enum, fixed) as they are defined."""
    if isinstance(schema, str):
        if schema in ("float", "double") and getattr(names, "doubles_as_text", False):
            return pa.string(), repr  # Airbyte's double_as_string: the shortest exact text
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema], None
        if schema not in names:
            raise AvroTypeError(f"undefined Avro type name {schema!r}")
        return names[schema]
    if isinstance(schema, list):
        return _union(schema, names)
    if not isinstance(schema, dict):
        raise AvroTypeError(f"unexpected Avro schema {schema!r}")
    logical = _logical(schema)
    if logical is not None:
        if "name" in schema:  # a named fixed (decimal, uuid, duration) may be referenced again
            names[schema["name"]] = logical
        return logical
    kind = schema.get("type")
    if kind == "record" or kind == "error":
        return _record(schema, names)
    if kind == "enum":
        names[schema["name"]] = (pa.string(), None)
        return pa.string(), None
    if kind == "fixed":
        names[schema["name"]] = (pa.binary(int(schema["size"])), None)
        return names[schema["name"]]
    if kind == "array":
        item, convert = arrow_type(schema["items"], names)
        if convert is None:
            return pa.list_(item), None
        return pa.list_(item), lambda v: [None if x is None else convert(x) for x in v]
    if kind == "map":
        value, convert = arrow_type(schema["values"], names)
        if convert is None:
            return pa.map_(pa.string(), value), lambda v: list(v.items())
        return pa.map_(pa.string(), value), lambda v: [(k, None if x is None else convert(x)) for k, x in v.items()]
    return arrow_type(kind, names)  # {"type": "long"} and friends


def _logical(schema: dict[str, Any]) -> tuple[pa.DataType, Convert] | None:
    logical = schema.get("logicalType")
    if logical == "decimal" and schema.get("type") in ("bytes", "fixed"):
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        if precision <= 38:
            return pa.decimal128(precision, scale), None
        if precision <= 76:
            return pa.decimal256(precision, scale), None
        return pa.string(), str  # beyond Arrow's decimals: exact digits as text
    if logical in _TIME_TYPES and schema.get("type") in ("int", "long"):
        return _TIME_TYPES[logical], None
    if logical in _LOCAL_TIMESTAMPS and schema.get("type") == "long":
        # fastavro decodes millis/micros to naive datetimes; nanos stay an integer count.
        return pa.string(), lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)
    if logical == "uuid" and schema.get("type") in ("string", "fixed"):
        return pa.string(), str
    return None


def _record(schema: dict[str, Any], names: dict[str, Any]) -> tuple[pa.DataType, Convert]:
    # Registered before the fields: a recursive record refers to itself by name. Arrow has no
    # recursive types, so a self-reference is read as JSON text.
    names[schema["name"]] = (pa.string(), _as_text)
    fields, converters = [], {}
    for f in schema.get("fields", []):
        t, convert = arrow_type(f["type"], names)
        fields.append(pa.field(f["name"], t))
        if convert is not None:
            converters[f["name"]] = convert
    struct = pa.struct(fields)
    convert_record: Convert = None
    if converters:
        def convert_record(value: dict[str, Any]) -> dict[str, Any]:
            out = dict(value)
            for name, fn in converters.items():
                if out.get(name) is not None:
                    out[name] = fn(out[name])
            return out
    names[schema["name"]] = (struct, convert_record)
    return struct, convert_record


def _union(branches: list[Any], names: dict[str, Any]) -> tuple[pa.DataType, Convert]:
    typed = [arrow_type(b, names) for b in branches]
    present = [(t, c) for t, c in typed if not pa.types.is_null(t)]
    if not present:
        return pa.null(), None
    if len(present) == 1:
        return present[0]
    if all(pa.types.is_integer(t) for t, _ in present):
        return pa.int64(), None  # int and long: every value fits a long
    return pa.string(), _as_text


def _as_text(value: Any) -> str:
    """A value of a multi-type union as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)  # Decimal (exact digits), UUID


class TypeNames(dict):
    """Named types defined so far, and how floating-point values are mapped."""

    def __init__(self, doubles_as_text: bool = False) -> None:
        super().__init__()
        self.doubles_as_text = doubles_as_text


def file_schema(writer_schema: Any, doubles_as_text: bool = False) -> tuple[pa.Schema, Convert, bool]:
    """``(arrow schema, row converter, is_record)`` of a file's writer schema; ``doubles_as_text``
    maps float and double to strings (``avro.double_as_string``)."""
    names = TypeNames(doubles_as_text)
    t, convert = arrow_type(writer_schema, names)
    if pa.types.is_struct(t) and not isinstance(writer_schema, list):
        return pa.schema(list(t)), convert, True
    return pa.schema([pa.field(VALUE_COLUMN, t)]), convert, False


def infer(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, max_rows: int) -> pa.Schema:
    """The Arrow schema of the file header's writer schema (no data block is decoded)."""
    if ref.size == 0:
        return pa.schema([])
    with data_errors(ref, "header"), _Reading(), open_raw(fs, ref, block_size=HEADER_BLOCK, cache_type="readahead") as raw:
        return file_schema(fastavro.reader(raw).writer_schema, options.avro.double_as_string)[0]


def batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
            stats: FileStats) -> Iterator[pa.RecordBatch]:
    """Every record, in batches of at most ``options.batch_size`` rows, typed as the stream's
    ``schema`` where the file's type differs (columns the stream does not know keep their own).

    A flat record schema is decoded column by column (:mod:`avro_columns`); from the first blocks
    that decoder does not vouch for (and for every other schema), fastavro decodes record by record."""
    if ref.size == 0:
        return
    with open_raw(fs, ref, block_size=DATA_BLOCK, cache_type="readahead") as raw:
        with data_errors(ref, "header"), _Reading():
            reader = fastavro.block_reader(raw)
            own, _, _ = file_schema(reader.writer_schema, options.avro.double_as_string)
        target = pa.schema([schema.field(f.name) if f.name in schema.names else f for f in own])
        # Columns the stream types otherwise are converted from fastavro's values, as before.
        columns = avro_columns.plan(reader.writer_schema, own) if target.types == own.types else None
        done: int | None = 0
        if columns is not None:
            done = yield from _column_batches(reader, columns, own, options.batch_size)
    if done is not None:
        yield from _record_batches(fs, ref, schema, options, stats, done)


def _column_batches(blocks: Iterator[Any], columns: list[avro_columns.Column], own: pa.Schema,
                    batch_size: int) -> Generator[pa.RecordBatch, None, int | None]:
    """Batches of exactly ``batch_size`` rows (the last one shorter) cut from the runs of blocks
    decoded by columns; returns None at the end of the file, or the number of records yielded
    when fastavro must decode the rest (it also names any error there as before)."""
    yielded = 0
    pending: list[pa.RecordBatch] = []
    held = 0
    chunks: list[memoryview] = []
    counts: list[int] = []
    rows = size = 0
    while True:
        try:
            block = next(blocks, None)
        except Exception:  # noqa: BLE001 - a corrupt or truncated block: fastavro's path reports it
            return yielded
        if block is not None:
            if block.num_records < 0:
                return yielded
            if block.num_records:
                chunks.append(block.bytes_.getbuffer())
                counts.append(block.num_records)
                rows += block.num_records
                size += len(chunks[-1])
            if rows < RUN_ROWS and size < RUN_BYTES:
                continue
        if chunks:
            try:
                pending.append(avro_columns.decode(columns, avro_columns.Blocks(chunks, counts), own))
            except avro_columns.Fallback:
                return yielded
            held += pending[-1].num_rows
            chunks, counts, rows, size = [], [], 0, 0
        while held >= batch_size or (block is None and held):
            if pending[0].num_rows >= batch_size or len(pending) == 1:
                out = pending[0].slice(0, batch_size)  # no copy: a view of the decoded run
            else:  # straddles two runs
                out = pa.Table.from_batches(pending).slice(0, batch_size).combine_chunks().to_batches()[0]
            yield out
            yielded += out.num_rows
            rest = pa.Table.from_batches(pending).slice(out.num_rows)
            pending, held = [b for b in rest.to_batches() if b.num_rows], rest.num_rows
        if block is None:
            return None


def _record_batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
                    stats: FileStats, skip: int) -> Iterator[pa.RecordBatch]:
    """The records after the first ``skip``, decoded by fastavro one at a time."""
    with open_raw(fs, ref, block_size=DATA_BLOCK, cache_type="readahead") as raw:
        with data_errors(ref, "header"), _Reading():
            reader = fastavro.reader(raw)
            own, convert, is_record = file_schema(reader.writer_schema, options.avro.double_as_string)
        target = pa.schema([schema.field(f.name) if f.name in schema.names else f for f in own])
        records = iter(reader)
        start = skip
        if skip:
            # Yielded already by the column decoder; should fastavro fail on them all the same, the
            # error names them.
            with data_errors(ref, f"records 1-{skip}"), _Reading():
                for _ in itertools.islice(records, skip):
                    pass
        while True:
            rows, failure = _take(records, options.batch_size)
            if rows:
                if convert is not None:
                    rows = [None if row is None else convert(row) for row in rows]
                if not is_record:
                    rows = [{VALUE_COLUMN: row} for row in rows]
                # The records before a corrupt block are good: they go out before its error.
                with data_errors(ref, f"records {start + 1}-{start + len(rows)}"):
                    batch = build_batch(rows, own, target, stats)
                yield batch
                start += len(rows)
            if failure is not None:
                with data_errors(ref, f"record {start + 1}"), _Reading():
                    raise failure
            if len(rows) < options.batch_size:
                return


def _take(records: Iterator[Any], n: int) -> tuple[list[Any], BaseException | None]:
    """Up to ``n`` records, and the error that stopped the decoding early, if any (one try for a
    whole batch: a context manager per record would cost more than decoding it)."""
    rows: list[Any] = []
    append = rows.append
    try:
        for row in records:
            append(row)
            if len(rows) >= n:
                break
    except Exception as exc:  # noqa: BLE001 - classified by the caller, after the good rows
        return rows, exc
    return rows, None


def build_batch(rows: list[dict[str, Any]], own: pa.Schema, target: pa.Schema, stats: FileStats) -> pa.RecordBatch:
    """Rows (already converted to ``own``) as a batch typed ``target`` where the stream types a
    column differently (another file disagreed): int -> double, a record with fields added, text.
    A column whose values do not fit the stream's type stays text (noted in ``stats``), as in CSV."""
    batch = pa.RecordBatch.from_pylist(rows, schema=own)  # one pass in C++, 4x faster than per column
    columns, fields = list(batch.columns), list(own)
    for i, (mine, wanted) in enumerate(zip(own, target)):
        if wanted.type == mine.type:
            continue
        values = [row.get(mine.name) for row in rows]
        column = _to_stream_type(values, wanted.type)
        if column is None:
            stats.type_conflicts.add(mine.name)
            column = pa.array([None if v is None else _as_text(v) for v in values], pa.string())
        columns[i], fields[i] = column, pa.field(mine.name, column.type)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _to_stream_type(values: list[Any], wanted: pa.DataType) -> pa.Array | None:
    if pa.types.is_string(wanted):
        return pa.array([None if v is None else _as_text(v) for v in values], pa.string())
    try:
        array = pa.array(values, type=wanted)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return None
    # Arrow converts int -> double silently even past 2**53; a value that changed is not kept so.
    if pa.types.is_floating(wanted) and any(isinstance(v, int) and float(v) != v for v in values):
        return None
    return array


class _Reading:
    """fastavro's own failures (schema errors, bad sync markers...) as ValueError, which
    :func:`data_errors` reports as bad data naming the file."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> Literal[False]:
        if exc is None or isinstance(exc, (ValueError, OSError, EOFError, BadDataError, StopIteration)):
            return False
        if type(exc).__module__.startswith("fastavro") or isinstance(exc, (KeyError, TypeError, IndexError)):
            raise ValueError(f"not a readable Avro file: {type(exc).__name__}: {exc}") from exc
        return False
