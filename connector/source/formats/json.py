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
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from connector.scalars import rows_without_columns
from connector.source.compression import decompressed
from connector.source.errors import BadDataError
from connector.source.formats import (READ_BLOCK, SAMPLE_BLOCK, FileStats, FormatOptions, data_errors, open_raw,
                                      read_head, slices)
from connector.source.infer import TIMESTAMP, merge_types, parse_timestamps
from connector.source.listing import FileRef

# orjson turns an integer beyond 64 bits into a (rounded) float without a word: a line holding a run
# of 19+ digits is decoded again by the stdlib, which keeps every integer exact.
_LONG_DIGITS = re.compile(rb"\d{19}")
# Timestamps are microseconds: text with a finer fraction stays text (exact) rather than fail the cast.
_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?\s*(Z|z|[+-]\d\d:?\d\d)?$")


def _loads(text: bytes) -> Any:
    """One JSON value, integers exact whatever their size."""
    value = orjson.loads(text)
    if _LONG_DIGITS.search(text):
        value = json.loads(text)
    return value


def _no_constant(name: str) -> Any:
    # The stdlib decoder takes NaN and Infinity, which are not JSON (orjson refuses them too).
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    # The stdlib reads 1e400 as infinity, which would become null; orjson and Arrow refuse it.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is too large for a double")
    return value


def value_type(value: Any) -> pa.DataType:
    """Arrow type of one decoded JSON value (ISO-8601 date-time strings become timestamps)."""
    if value is None:
        return pa.null()
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return _int_type(value)
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return TIMESTAMP if _ISO_TIME.match(value) else pa.string()
    if isinstance(value, dict):
        return pa.struct([pa.field(k, value_type(v)) for k, v in value.items()])
    if isinstance(value, list):
        item: pa.DataType = pa.null()
        for v in value:
            item = merge_types(item, value_type(v))
        return pa.list_(item)
    return pa.string()


#: Sample type of an integer a double cannot hold exactly (beyond 2^53) that still fits int64: it
#: merges with int64 into int64 (see :func:`_no_null`) but with a double into text, never a double.
_WIDE_INT = pa.decimal128(19, 0)


def _int_type(value: int) -> pa.DataType:
    """int64; the exact decimal (or text, past 76 digits) an integer beyond 64 bits needs."""
    if -(2**53) <= value <= 2**53:
        return pa.int64()
    if -(2**63) <= value < 2**63:
        return _WIDE_INT
    digits = len(str(abs(value)))
    if digits <= 38:
        return pa.decimal128(38, 0)
    return pa.decimal256(76, 0) if digits <= 76 else pa.string()


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


def _map_leaves(t: pa.DataType, leaf: Callable[[pa.DataType], pa.DataType]) -> pa.DataType:
    """``t`` with ``leaf`` applied to every type inside it that is not a struct or a list."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _map_leaves(f.type, leaf)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_map_leaves(t.value_type, leaf))
    return leaf(t)


def _no_null(t: pa.DataType) -> pa.DataType:
    # A column only ever null in the sample is declared string, the type Arrow can read anything as.
    return _map_leaves(t, lambda leaf: pa.string() if pa.types.is_null(leaf) else
                       pa.int64() if leaf == _WIDE_INT else leaf)


# An array item may not grow past this while we wait for its end: a missing bracket or quote would
# otherwise pull the rest of the file into memory before the error is found.
MAX_ITEM_BYTES = 256 * 1024 * 1024
_WS = " \t\r\n"
_NUMBER_CHARS = "0123456789+-.eE"


#: A file whose first line is not a JSON object is parsed as one (pretty-printed) document when it
#: is at most this large; a larger one is read as JSON Lines, block by block.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


def _head(stream, lines: int) -> bytes:
    """The first bytes of ``stream``: ``lines`` lines or 1 MiB (:func:`read_head`), and in any case
    the whole first line (up to :data:`MAX_ITEM_BYTES`), which decides the file's kind."""
    head = read_head(stream, lines)
    start = len(head) - len(head.lstrip())
    if b"\n" in head[start:] or len(head) < (1 << 20):
        return head
    parts = [head]
    size = len(head)
    while size <= MAX_ITEM_BYTES:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            break
    return b"".join(parts)


def _kind(head: bytes) -> str:
    """'lines', 'array', or 'whole' for a (pretty-printed) single object / an empty file."""
    stripped = head.lstrip()
    if stripped[:1] == b"[":
        return "array"
    if not stripped:
        return "whole"
    first = stripped.split(b"\n", 1)[0]
    try:
        return "lines" if isinstance(_loads(first), dict) else "whole"
    except orjson.JSONDecodeError:
        return "whole"


def _document(stream, head: bytes) -> tuple[bytes, bool]:
    """(the file from ``head`` on, True) when it is at most :data:`MAX_DOCUMENT_BYTES`; else
    (what was read, False): too large to be parsed in one piece."""
    parts, size = [head], len(head)
    while size <= MAX_DOCUMENT_BYTES:
        chunk = stream.read(4 << 20)
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), False


def _whole(data: bytes, ref: FileRef, options: FormatOptions, stats: FileStats) -> list[dict]:
    if not data.strip():
        return []
    try:
        value = _loads(data)
    except orjson.JSONDecodeError:
        return _lines_python(data, 1, ref, options, stats)  # JSON Lines whose first line is bad
    if isinstance(value, dict):
        return [value]
    raise BadDataError(f"{ref.key}: top-level JSON value is a {type(value).__name__}, not an object or array")


def _array_items(stream, head: bytes, ref: FileRef, block_size: int) -> Iterator[tuple[int, Any]]:
    """(index, decoded item) of a top-level JSON array, read incrementally from ``stream``."""
    decode = codecs.getincrementaldecoder("utf-8")().decode
    scan = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float).raw_decode
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
            except ValueError as exc:
                if not isinstance(exc, json.JSONDecodeError):
                    raise fail(pos, f"array item {index}: {exc}") from None
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
            value = _loads(line)
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
    """Rows -> a batch with ``schema`` where values fit; a column that does not fit is kept as JSON
    text. Object keys the schema does not have are added (never dropped), as new columns or struct
    fields: the same columns and types the Arrow path (:func:`_parse_block`) gives the same rows."""
    names = list(schema.names) + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in schema.names]
    arrays, fields = [], []
    for name in names:
        values = [r.get(name) for r in rows]
        declared = schema.field(name).type if name in schema.names else None
        try:
            array = _column(values, declared)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            if declared is not None and not pa.types.is_string(declared):
                stats.type_conflicts.add(name)
            array = pa.array([v if v is None or isinstance(v, str) else _json_text(v) for v in values], pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return _record_batch(arrays, fields, len(rows))


def _column(values: list[Any], declared: pa.DataType | None) -> pa.Array:
    """``values`` as an array of the declared type, widened by the struct fields they add; raises
    when a value does not fit."""
    if declared is None or _is_nested(declared):
        observed: pa.DataType = pa.null()
        for v in values:
            observed = merge_types(observed, value_type(v))
        # Strings are only parsed as timestamps where the sample said so (as Arrow's path does).
        observed = _no_null(_untimed(observed))
        if declared is not None and _lossy(declared, observed):
            raise TypeError(f"{observed} values do not fit {declared}")
        declared = observed if declared is None else _widened(declared, observed)
        if _has_text(declared):
            values = [_fit(v, declared) for v in values]
    elif pa.types.is_floating(declared) and any(isinstance(v, bool) for v in values):
        raise TypeError("a boolean is not a number")  # pyarrow would store true as 1.0
    elif pa.types.is_integer(declared) and any(isinstance(v, float) for v in values):
        raise TypeError("a number with a fraction is not an integer")  # pyarrow would store 0.5 as 0
    if not _has_timestamp(declared):
        return pa.array(values, type=declared)
    return _timestamps_parsed(pa.array(values, type=_untimed(declared)), declared)


def _lossy(declared: pa.DataType, observed: pa.DataType) -> bool:
    """Values of type ``observed`` would change if built as ``declared`` (pyarrow truncates a
    double to an integer, and takes a boolean for 1.0), at any depth."""
    if pa.types.is_struct(declared) and pa.types.is_struct(observed):
        return any(_lossy(declared.field(f.name).type, f.type) for f in observed
                   if declared.get_field_index(f.name) >= 0)
    if pa.types.is_list(declared) and pa.types.is_list(observed):
        return _lossy(declared.value_type, observed.value_type)
    return ((pa.types.is_integer(declared) and pa.types.is_floating(observed))
            or (pa.types.is_floating(declared) and pa.types.is_boolean(observed)))


def _has_text(t: pa.DataType) -> bool:
    """A string field or item anywhere inside nested type ``t``."""
    if pa.types.is_struct(t):
        return any(pa.types.is_string(f.type) or _has_text(f.type) for f in t)
    return pa.types.is_list(t) and (pa.types.is_string(t.value_type) or _has_text(t.value_type))


def _fit(value: Any, t: pa.DataType) -> Any:
    """``value`` with whatever sits where ``t`` has text as its JSON text: a nested field whose
    samples disagreed (1 and "a", or {} and 1) is text, as a top-level column is."""
    if value is None:
        return None
    if pa.types.is_string(t):
        return value if isinstance(value, str) else _json_text(value)
    if pa.types.is_struct(t) and isinstance(value, dict):
        return {k: (_fit(v, t.field(k).type) if t.get_field_index(k) >= 0 else v) for k, v in value.items()}
    if pa.types.is_list(t) and isinstance(value, list):
        return [_fit(v, t.value_type) for v in value]
    return value


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) or pa.types.is_list(t)


def _has_timestamp(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_timestamp(f.type) for f in t)
    return pa.types.is_list(t) and _has_timestamp(t.value_type)


def _untimed(t: pa.DataType) -> pa.DataType:
    """``t`` with string in place of every timestamp."""
    return _map_leaves(t, lambda leaf: pa.string() if pa.types.is_timestamp(leaf) else leaf)


def _timestamps_parsed(array: pa.Array, target: pa.DataType) -> pa.Array:
    """``array`` (of ``_untimed(target)``) with its timestamp strings parsed: type ``target``."""
    if pa.types.is_timestamp(target):
        return parse_timestamps(array)
    if pa.types.is_struct(target) and _has_timestamp(target):
        children = [_timestamps_parsed(array.field(i), f.type) for i, f in enumerate(target)]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=array.is_null())
    if pa.types.is_list(target) and _has_timestamp(target):
        return pa.ListArray.from_arrays(array.offsets, _timestamps_parsed(array.values, target.value_type),
                                        type=target, mask=array.is_null())
    return array


def _widened(declared: pa.DataType, observed: pa.DataType) -> pa.DataType:
    """``declared`` plus the struct fields ``observed`` has and it lacks, at any depth (a field's
    declared type otherwise stands: a value that does not fit it is a conflict, not a new type)."""
    if pa.types.is_struct(declared) and pa.types.is_struct(observed):
        seen = {f.name: f.type for f in observed}
        known = [pa.field(f.name, _widened(f.type, seen[f.name]) if f.name in seen else f.type) for f in declared]
        added = [pa.field(f.name, f.type) for f in observed if declared.get_field_index(f.name) < 0]
        return pa.struct(known + added) if added or known != list(declared) else declared
    if pa.types.is_list(declared) and (pa.types.is_list(observed) or pa.types.is_large_list(observed)):
        widened = _widened(declared.value_type, observed.value_type)
        return declared if widened == declared.value_type else pa.list_(widened)
    return declared


def _json_text(value: Any) -> str:
    """Compact JSON text of a decoded value; the stdlib's encoder for integers beyond 64 bits,
    which orjson refuses (top-level arrays are decoded by the stdlib, which keeps them exact)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chunks(stream, head: bytes, block_size: int, ref: FileRef,
            max_line: int = MAX_ITEM_BYTES) -> Iterator[tuple[int, bytes]]:
    """(first line number, block of whole lines) over the decoded stream: about ``block_size``
    bytes each, or one line when it is longer. A line longer than ``max_line`` is an error: a file
    without newlines must not be pulled into memory whole."""
    line, buf, eof = 1, head, False
    while True:
        if not eof and len(buf) < block_size:
            parts, size = [buf], len(buf)
            while not eof and size < block_size:
                data = stream.read(block_size)
                eof = not data
                parts.append(data)
                size += len(data)
            buf = b"".join(parts)
        if eof and len(buf) <= block_size:
            if buf.strip():
                yield line, buf
            return
        cut = buf.rfind(b"\n", 0, block_size)
        if cut < 0:
            buf, eof = _through_newline(stream, buf, block_size, eof, ref, line, max_line)
            cut = buf.find(b"\n")
            if cut < 0:  # the last line, without a newline
                yield line, buf
                return
        block, buf = buf[: cut + 1], buf[cut + 1 :]
        yield line, block
        line += block.count(b"\n")


def _through_newline(stream, buf: bytes, block_size: int, eof: bool, ref: FileRef, line: int,
                     max_line: int) -> tuple[bytes, bool]:
    """``buf`` extended until it holds a newline (or the stream ends): one long line, read in
    pieces joined once."""
    parts, size = [buf], len(buf)
    while not eof and b"\n" not in parts[-1]:
        if size > max_line:
            raise BadDataError(f"{ref.key}: line {line}: longer than {max_line} bytes")
        data = stream.read(block_size)
        eof = not data
        parts.append(data)
        size += len(data)
    buf = b"".join(parts)
    if buf.find(b"\n") > max_line or (buf.find(b"\n") < 0 and len(buf) > max_line):
        raise BadDataError(f"{ref.key}: line {line}: longer than {max_line} bytes")
    return buf, eof


def _parse_block(block: bytes, first_line: int, ref: FileRef, schema: pa.Schema, options: FormatOptions,
                 stats: FileStats) -> pa.RecordBatch | None:
    """Arrow's reader on a block of lines; the line-by-line path when Arrow rejects it, or when its
    result may differ from the values (see :func:`_conform`)."""
    batch = None
    # Text columns are declared text first (Arrow keeps '2024-01-02' as written then); a block where
    # one holds a number or an object is read again with them inferred (Arrow refuses those).
    for text in (True, False):
        try:
            table = pajson.read_json(
                io.BytesIO(block),
                read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
                parse_options=pajson.ParseOptions(explicit_schema=_arrow_hint(schema, text),
                                                  unexpected_field_behavior="infer"),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if not text or not any(pa.types.is_string(f.type) for f in schema):
                break
            continue
        if not table.num_rows:
            return None
        try:
            batch = _conform(table.combine_chunks().to_batches()[0], schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            batch = None
        break
    if batch is not None:
        return batch
    rows = _lines_python(block, first_line, ref, options, stats)
    return _rows_to_batch(rows, schema, stats) if rows else None


def _arrow_hint(schema: pa.Schema, text: bool) -> pa.Schema:
    """The schema handed to Arrow's reader. Decimal columns are left out, because Arrow takes "12"
    for 12 there, and (``text`` false) text columns, because Arrow refuses a number where a string
    is declared; those are inferred per block and checked and cast after (:func:`_conform`)."""
    return pa.schema([f for f in schema if not (pa.types.is_decimal(f.type) or
                                                (not text and pa.types.is_string(f.type)))])


#: A double at least this large may be an integer Arrow rounded (2^53 + 1 parses as 2^53).
_EXACT_DOUBLE = float(2**53)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch | None:
    """Stream columns first, in stream order and type (nulls where absent, struct fields added at
    any depth), then any new ones. None when Arrow's values cannot be trusted to be the file's:
    the line-by-line path decides those blocks (rare: conflicts, huge integers)."""
    by_name = dict(zip(batch.schema.names, batch.columns))
    arrays, fields = [], []
    for f in schema:
        col = by_name.pop(f.name, None)
        if col is None:
            col = pa.nulls(batch.num_rows, f.type)
        elif _untrusted(col, f.type):
            return None
        else:
            target = _widened(f.type, col.type)
            if col.type != target:
                col = col.cast(target)  # raises when a value does not fit: the caller goes line by line
        arrays.append(col)
        fields.append(pa.field(f.name, col.type))
    for name, col in by_name.items():
        if _untrusted(col, None):
            return None
        arrays.append(col)
        fields.append(pa.field(name, col.type))
    return _record_batch(arrays, fields, batch.num_rows)


# Types Arrow's own inference gives that mean what the line-by-line path means by them.
_INFERRED_OK = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string, pa.types.is_null)


def _untrusted(array: pa.Array, declared: pa.DataType | None) -> bool:
    """True when ``array`` (Arrow's reading of values declared ``declared``, None for a new key) may
    not be the file's values: a double that may be a rounded integer, a timestamp Arrow inferred
    from a string, or a non-text value where text is declared (its text would be Arrow's)."""
    t = array.type
    if pa.types.is_struct(t):
        for i, f in enumerate(t):
            sub = declared.field(f.name).type if (declared is not None and pa.types.is_struct(declared)
                                                  and declared.get_field_index(f.name) >= 0) else None
            if _untrusted(array.field(i), sub):
                return True
        return declared is not None and not pa.types.is_struct(declared)
    if pa.types.is_list(t):
        sub = declared.value_type if declared is not None and pa.types.is_list(declared) else None
        return _untrusted(array.values, sub) or (declared is not None and not pa.types.is_list(declared))
    if pa.types.is_floating(t):
        top = pc.max(pc.abs(array)).as_py()
        if top is not None and top >= _EXACT_DOUBLE:
            return True
    if declared is None or declared == t:
        return pa.types.is_timestamp(t) and declared is None
    if pa.types.is_string(declared):
        return not any(ok(t) for ok in _INFERRED_OK)
    if pa.types.is_decimal(declared):
        return not (pa.types.is_integer(t) or pa.types.is_null(t))
    return False


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
        head = _head(stream, max_rows)
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
            head, complete = _document(stream, head)
            if complete:
                rows = _whole(head, ref, FormatOptions(on_bad_record="skip"), FileStats())
                return schema_of(rows[:max_rows])
        return schema_of(_sample_lines(head, max_rows))


def _sample_lines(head: bytes, max_rows: int) -> list[Any]:
    """The objects of the first ``max_rows`` whole lines of ``head`` (bad ones left out)."""
    rows = []
    for line in head.split(b"\n")[:max_rows]:
        try:
            rows.append(_loads(line))
        except orjson.JSONDecodeError:
            continue
    return rows


def batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
            stats: FileStats) -> Iterator[pa.RecordBatch]:
    """Every object of the file, in order."""
    with data_errors(ref), open_raw(fs, ref, block_size=READ_BLOCK) as raw:
        stream = decompressed(raw, ref.compression)
        head = _head(stream, 1)
        kind = _kind(head)
        if kind == "array":
            for batch in _array_batches(stream, head, ref, schema, options, stats):
                yield from slices(batch, options.batch_size)
            return
        if kind == "whole":
            head, complete = _document(stream, head)
            if complete:
                rows = _whole(head, ref, options, stats)
                if rows:
                    yield from slices(_rows_to_batch(rows, schema, stats), options.batch_size)
                return
        for first_line, block in _chunks(stream, head, options.block_size, ref):
            batch = _parse_block(block, first_line, ref, schema, options, stats)
            if batch is not None:
                yield from slices(batch, options.batch_size)
