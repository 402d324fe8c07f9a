"""JSON: JSON Lines, a top-level array, or one object per file (auto-detected).

JSON Lines are parsed by Arrow's C++ reader in blocks of whole lines, with the stream's inferred
schema; a block Arrow rejects is re-parsed line by line (orjson) only to name the bad line, skip it,
or keep values that contradict the sampled type. Arrays and single objects are parsed whole.
Nested objects stay objects (Arrow structs).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.json as pajson

from connector.source.compression import decompressed
from connector.source.errors import BadDataError
from connector.source.formats import FileStats, FormatOptions, data_errors, open_raw, read_head, slices
from connector.source.infer import TIMESTAMP, merge_types, parse_timestamps
from connector.source.listing import FileRef

_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|z|[+-]\d\d:?\d\d)?$")


def value_type(value: Any) -> pa.DataType:
    """Arrow type of one decoded JSON value (ISO-8601 date-time strings become timestamps)."""
    if value is None:
        return pa.null()
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64() if -(2**63) <= value < 2**63 else pa.float64()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return TIMESTAMP if _ISO_TIME.match(value) else pa.string()
    if isinstance(value, dict):
        return pa.struct([pa.field(k, value_type(v)) for k, v in value.items()]) if value else pa.string()
    if isinstance(value, list):
        item: pa.DataType = pa.null()
        for v in value:
            item = merge_types(item, value_type(v))
        return pa.list_(item)
    return pa.string()


def schema_of(rows: list[Any]) -> pa.Schema:
    """Merged schema of sample rows (non-object rows are ignored here and rejected when read)."""
    fields: dict[str, pa.DataType] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        for k, v in row.items():
            t = value_type(v)
            fields[k] = merge_types(fields[k], t) if k in fields else t
    return pa.schema([pa.field(k, _no_null(t)) for k, t in fields.items()])


def _no_null(t: pa.DataType) -> pa.DataType:
    # A column only ever null in the sample is declared string, the type Arrow can read anything as.
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _no_null(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_no_null(t.value_type))
    return t


def _kind(head: bytes) -> str:
    """'lines', or 'whole' for an array / a (pretty-printed) single object / an empty file."""
    stripped = head.lstrip()
    if not stripped or stripped[:1] == b"[":
        return "whole"
    first = stripped.split(b"\n", 1)[0]
    try:
        return "lines" if isinstance(orjson.loads(first), dict) else "whole"
    except orjson.JSONDecodeError:
        return "whole"


def _whole(data: bytes, ref: FileRef, options: FormatOptions, stats: FileStats) -> list[dict]:
    if not data.strip():
        return []
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _lines_python(data, 1, ref, options, stats)  # JSON Lines whose first line is bad
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        rows = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                rows.append(item)
            elif options.on_bad_record == "skip":
                stats.skip(f"array item {i}")
            else:
                raise BadDataError(f"{ref.key}: array item {i} is not an object")
        return rows
    raise BadDataError(f"{ref.key}: top-level JSON value is a {type(value).__name__}, not an object or array")


def _lines_python(chunk: bytes, first_line: int, ref: FileRef, options: FormatOptions, stats: FileStats) -> list[dict]:
    """Line-by-line parse of one block: names the first bad line, or skips bad lines."""
    rows = []
    for n, line in enumerate(chunk.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
            problem = None if isinstance(value, dict) else f"not an object ({type(value).__name__})"
        except orjson.JSONDecodeError as exc:
            problem = f"invalid JSON ({exc})"
        if problem is None:
            rows.append(value)
        elif options.on_bad_record == "skip":
            stats.skip(f"line {n}")
        else:
            raise BadDataError(f"{ref.key}: line {n}: {problem}")
    return rows


def _rows_to_batch(rows: list[dict], schema: pa.Schema, stats: FileStats) -> pa.RecordBatch:
    """Rows -> a batch with ``schema`` where values fit; a column that does not fit is kept as JSON text."""
    names = list(schema.names) + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in schema.names]
    arrays, fields = [], []
    for name in names:
        values = [r.get(name) for r in rows]
        target = schema.field(name).type if name in schema.names else None
        try:
            if target is not None and pa.types.is_timestamp(target):
                array = parse_timestamps(pa.array(values, pa.string()))
            else:
                array = pa.array(values, type=target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            if target is not None and not pa.types.is_string(target):
                stats.type_conflicts.add(name)
            array = pa.array([v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values],
                             pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _chunks(stream, head: bytes, block_size: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, block of whole lines) over the decoded stream."""
    line = 1
    carry = head
    while True:
        data = stream.read(block_size)
        buf = carry + data if data else carry
        if not data:
            if buf.strip():
                yield line, buf
            return
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            continue
        block, carry = buf[: cut + 1], buf[cut + 1 :]
        yield line, block
        line += block.count(b"\n")


def _parse_block(block: bytes, first_line: int, ref: FileRef, schema: pa.Schema, options: FormatOptions,
                 stats: FileStats) -> pa.RecordBatch | None:
    try:
        table = pajson.read_json(
            io.BytesIO(block),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
            parse_options=pajson.ParseOptions(explicit_schema=_arrow_hint(schema), unexpected_field_behavior="infer"),
        )
        return _conform(table.combine_chunks().to_batches()[0], schema) if table.num_rows else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        rows = _lines_python(block, first_line, ref, options, stats)
        return _rows_to_batch(rows, schema, stats) if rows else None


def _arrow_hint(schema: pa.Schema) -> pa.Schema:
    """The schema handed to Arrow's reader: text columns are left out, because Arrow refuses a
    number where a string is declared; those are inferred per block and cast to text after."""
    return pa.schema([f for f in schema if not pa.types.is_string(f.type)])


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Stream columns first, in stream order and type (nulls where absent), then any new ones."""
    by_name = dict(zip(batch.schema.names, batch.columns))
    arrays, fields = [], []
    for f in schema:
        col = by_name.pop(f.name, None)
        if col is None:
            col = pa.nulls(batch.num_rows, f.type)
        elif col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # keep Arrow's own type for this block rather than lose values
        arrays.append(col)
        fields.append(pa.field(f.name, col.type))
    for name, col in by_name.items():
        arrays.append(col)
        fields.append(pa.field(name, col.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def infer(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, max_rows: int) -> pa.Schema:
    """Schema of the first ``max_rows`` objects (tolerant: unparsable lines are left to the read)."""
    with data_errors(ref), open_raw(fs, ref) as raw:
        stream = decompressed(raw, ref.compression)
        head = read_head(stream, max_rows)
        if _kind(head) == "whole":
            rows = _whole(head + stream.read(), ref, FormatOptions(on_bad_record="skip"), FileStats())
            return schema_of(rows[:max_rows])
        rows = []
        for line in head.split(b"\n")[:max_rows]:
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return schema_of(rows)


def batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
            stats: FileStats) -> Iterator[pa.RecordBatch]:
    """Every object of the file, in order."""
    with data_errors(ref), open_raw(fs, ref) as raw:
        stream = decompressed(raw, ref.compression)
        head = read_head(stream, 1)
        if _kind(head) == "whole":
            rows = _whole(head + stream.read(), ref, options, stats)
            if rows:
                yield from slices(_rows_to_batch(rows, schema, stats), options.batch_size)
            return
        for first_line, block in _chunks(stream, head, options.block_size):
            batch = _parse_block(block, first_line, ref, schema, options, stats)
            if batch is not None:
                yield from slices(batch, options.batch_size)
