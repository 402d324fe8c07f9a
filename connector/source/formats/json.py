"""JSON: JSON Lines, a top-level array, or one object per file (auto-detected).

JSON Lines are parsed by Arrow's C++ reader in blocks of whole lines, with the stream's inferred
schema; a block Arrow rejects is re-parsed line by line (orjson) only to name the bad line, skip it,
or keep values that contradict the sampled type. A top-level array is decoded item by item from
the byte stream (the stdlib's C scanner, one ``raw_decode`` per item), so its memory is bounded by
the block size and the largest item, not the file. A single object is parsed whole. Nested objects
stay objects (Arrow structs).
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.json as pajson

from connector.scalars import rows_without_columns
from connector.source.compression import decompressed
from connector.source.errors import BadDataError
from connector.source.formats import (READ_BLOCK, SAMPLE_BLOCK, FileStats, FormatOptions, data_errors, open_raw,
                                      read_head, slices)
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


# An array item may not grow past this while we wait for its end: a missing bracket or quote would
# otherwise pull the rest of the file into memory before the error is found.
MAX_ITEM_BYTES = 256 * 1024 * 1024
_WS = " \t\r\n"
_NUMBER_CHARS = "0123456789+-.eE"


def _kind(head: bytes) -> str:
    """'lines', 'array', or 'whole' for a (pretty-printed) single object / an empty file."""
    stripped = head.lstrip()
    if stripped[:1] == b"[":
        return "array"
    if not stripped:
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
    raise BadDataError(f"{ref.key}: top-level JSON value is a {type(value).__name__}, not an object or array")


def _array_items(stream, head: bytes, ref: FileRef, block_size: int) -> Iterator[tuple[int, Any]]:
    """(index, decoded item) of a top-level JSON array, read incrementally from ``stream``."""
    decode = codecs.getincrementaldecoder("utf-8")().decode
    scan = json.JSONDecoder().raw_decode
    consumed = 0  # characters dropped from the front of ``buf``, for error positions

    def fail(pos: int, why: str) -> BadDataError:
        return BadDataError(f"{ref.key}: character {consumed + pos + 1}: {why}")

    try:
        buf, eof = decode(head), False
    except UnicodeDecodeError as exc:
        raise BadDataError(f"{ref.key}: not UTF-8 ({exc.reason} at byte {exc.start})") from None

    def more(need_all: bool = False) -> bool:
        """Append the next block; False at the end of the stream."""
        nonlocal buf, eof
        if eof:
            return False
        data = stream.read(block_size)
        try:
            buf += decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise BadDataError(f"{ref.key}: not UTF-8 ({exc.reason})") from None
        eof = not data
        return bool(data)

    pos = buf.index("[") + 1
    index, expect_item = 0, True
    while True:
        while True:  # skip whitespace, fetching more when the buffer runs out
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            if pos < len(buf) or not more():
                break
        if pos >= len(buf):
            raise fail(pos, "the array is not closed (missing ']')")
        char = buf[pos]
        if char == "]" and (index == 0 or not expect_item):
            pos += 1
            break
        if not expect_item:
            if char != ",":
                raise fail(pos, f"expected ',' or ']' after array item {index - 1}, found {char!r}")
            pos += 1
            expect_item = True
            continue
        while True:  # decode one item, reading more while it is cut by the end of the buffer
            try:
                item, end = scan(buf, pos)
            except json.JSONDecodeError as exc:
                if len(buf) - pos > MAX_ITEM_BYTES:
                    raise fail(pos, f"array item {index} is invalid JSON or larger than "
                                    f"{MAX_ITEM_BYTES} bytes ({exc.msg})") from None
                if not more():
                    raise fail(exc.pos, f"array item {index}: invalid JSON ({exc.msg})") from None
                continue
            # A number whose text runs to the end of the buffer ("12", "0.", "1e") may go on in
            # the next block: decode it again once more text is there.
            if (isinstance(item, (dict, list, str)) or item is None or isinstance(item, bool)
                    or buf[end:].lstrip(_NUMBER_CHARS) or not more()):
                break
        yield index, item
        index, pos, expect_item = index + 1, end, False
        if pos > block_size:  # drop what is consumed so the buffer stays one block or one item
            consumed += pos
            buf, pos = buf[pos:], 0
    while True:
        rest = buf[pos:].strip(_WS)
        if rest:
            raise fail(pos, "data after the closing ']' of the top-level array")
        buf, pos = "", 0
        if not more():
            return


def _array_batches(stream, head: bytes, ref: FileRef, schema: pa.Schema, options: FormatOptions,
                   stats: FileStats) -> Iterator[pa.RecordBatch]:
    rows: list[dict] = []
    try:
        for i, item in _array_items(stream, head, ref, options.block_size):
            if isinstance(item, dict):
                rows.append(item)
                if len(rows) >= options.batch_size:
                    yield _rows_to_batch(rows, schema, stats)
                    rows = []
            elif options.on_bad_record == "skip":
                stats.skip(f"array item {i}")
            else:
                raise BadDataError(f"{ref.key}: array item {i} is not an object ({type(item).__name__})")
    except BadDataError as exc:
        if options.on_bad_record != "skip":
            raise
        stats.skip(f"the rest of the file ({exc})")
    if rows:
        yield _rows_to_batch(rows, schema, stats)


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
            array = pa.array([v if v is None or isinstance(v, str) else _json_text(v) for v in values], pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return _record_batch(arrays, fields, len(rows))


def _json_text(value: Any) -> str:
    """Compact JSON text of a decoded value; the stdlib's encoder for integers beyond 64 bits,
    which orjson refuses (top-level arrays are decoded by the stdlib, which keeps them exact)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chunks(stream, head: bytes, block_size: int, ref: FileRef,
            max_line: int = MAX_ITEM_BYTES) -> Iterator[tuple[int, bytes]]:
    """(first line number, block of whole lines) over the decoded stream. A line longer than
    ``max_line`` is an error: a file without newlines must not be pulled into memory whole."""
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
            if len(buf) > max_line:
                raise BadDataError(f"{ref.key}: line {line}: longer than {max_line} bytes")
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
    return _record_batch(arrays, fields, batch.num_rows)


def _record_batch(arrays: list[pa.Array], fields: list[pa.Field], num_rows: int) -> pa.RecordBatch:
    """``RecordBatch.from_arrays``, except that rows without any column (objects that are all
    ``{}``) stay ``num_rows`` rows."""
    if not arrays:
        return rows_without_columns(num_rows)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def infer(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, max_rows: int) -> pa.Schema:
    """Schema of the first ``max_rows`` objects (tolerant: unparsable lines are left to the read)."""
    with data_errors(ref), open_raw(fs, ref, block_size=SAMPLE_BLOCK) as raw:
        stream = decompressed(raw, ref.compression)
        head = read_head(stream, max_rows)
        kind = _kind(head)
        if kind == "array":
            rows = []
            try:
                for _, item in _array_items(stream, head, ref, options.block_size):
                    rows.append(item)
                    if len(rows) >= max_rows:
                        break
            except BadDataError:
                pass  # inference is tolerant: what parsed so far is the sample; the read names the error
            return schema_of(rows)
        if kind == "whole":
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
    with data_errors(ref), open_raw(fs, ref, block_size=READ_BLOCK) as raw:
        stream = decompressed(raw, ref.compression)
        head = read_head(stream, 1)
        kind = _kind(head)
        if kind == "array":
            for batch in _array_batches(stream, head, ref, schema, options, stats):
                yield from slices(batch, options.batch_size)
            return
        if kind == "whole":
            rows = _whole(head + stream.read(), ref, options, stats)
            if rows:
                yield from slices(_rows_to_batch(rows, schema, stats), options.batch_size)
            return
        for first_line, block in _chunks(stream, head, options.block_size, ref):
            batch = _parse_block(block, first_line, ref, schema, options, stats)
            if batch is not None:
                yield from slices(batch, options.batch_size)
