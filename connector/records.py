"""Arrow record batches -> JSON lines (Airbyte RECORD lines, or bare objects), vectorised.

Shared by the source (RECORD messages) and the store (record datapoints), which know nothing of
each other: this module depends on neither.

Each column becomes an array of JSON value texts using Arrow compute kernels (casts, string
replacement, element-wise joins), then the columns are joined into whole message lines in one
kernel call. The result is one contiguous buffer per batch; no Python code runs per row or per
field except for nested/binary columns, which fall back to orjson per value, or, when they hold
types orjson cannot render as the JSON Schema says (decimals, maps, times...), are assembled from
the vectorised texts of their leaves.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from connector.scalars import string_array, string_scalar

# Every literal handed to a kernel is a prebuilt scalar: a Python str argument would be converted
# per call (and the first conversion imports pandas).
_NULL, _TRUE, _FALSE = string_scalar("null"), string_scalar("true"), string_scalar("false")
_QUOTE, _ZULU_QUOTE, _EMPTY = string_scalar('"'), string_scalar('Z"'), string_scalar("")


def _utf8_bytes(column: pa.Array) -> np.ndarray:
    """Every byte of a string array's values, back to back, as a NumPy view (no copy). Null slots
    may add bytes of their own; that only sends the column down a slower, still exact, path."""
    _, offsets, data = column.buffers()
    if data is None or len(column) == 0:
        return np.zeros(0, np.uint8)
    bounds = np.frombuffer(offsets, np.int32)
    return np.frombuffer(data, np.uint8)[bounds[column.offset]:bounds[column.offset + len(column)]]


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(_QUOTE, text, _QUOTE, _EMPTY)


def _escape(text: pa.Array) -> pa.Array:
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, raw, escaped)
    return text


def _per_value(column: pa.Array) -> pa.Array:
    """JSON text per value, the slow path for nested and unusual types. orjson encodes what it
    renders as the top-level columns do (and faster); any other leaf type anywhere in the value is
    encoded by this module's own column encoder, so a nested value reads like a top-level one."""
    t = column.type
    if (pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
            or pa.types.is_fixed_size_list(t)) and not _orjson_safe(t):
        return string_array(_texts(column))
    dumps = orjson.dumps
    return string_array(["null" if v is None else dumps(v, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
                         for v in column.to_pylist()])


def _default(value):
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return str(value)  # intervals and other types without a JSON form: their text


#: Leaf types whose Python values orjson encodes as their JSON Schema says: exact integers up to
#: 64 bits, doubles (NaN as null), text, base64 bytes, dates, and UTC timestamps of at most
#: microseconds (``+00:00``). Not decimals (orjson has no exact number), maps (pairs), naive or
#: nanosecond timestamps, times, durations, half floats.
def _orjson_leaf(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t):
        return t.unit != "ns" and t.tz in ("UTC", "+00:00", "Z")
    return (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t) or pa.types.is_date(t)
            or t in (pa.float32(), pa.float64()) or pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))


def _orjson_safe(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return all(_orjson_safe(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _orjson_safe(t.value_type)
    if pa.types.is_dictionary(t):
        return _orjson_safe(t.value_type)
    return _orjson_leaf(t)


def _texts(column: pa.Array) -> list[str]:
    """JSON text of each value of ``column`` (``null`` for nulls), nested values built from the
    texts of their leaves, which the vectorised encoder makes."""
    t = column.type
    if pa.types.is_dictionary(t):
        return _texts(column.dictionary_decode())
    valid = column.is_valid().to_pylist() if column.null_count else None
    if pa.types.is_struct(t):
        children = [_texts(child) for child in column.flatten()]
        keys = [orjson.dumps(f.name).decode() + ":" for f in t]
        out = ["{" + ",".join(k + c[i] for k, c in zip(keys, children)) + "}" for i in range(len(column))]
    elif pa.types.is_map(t) or pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        out = _list_texts(column)
    else:
        return json_texts(column).to_pylist()
    return out if valid is None else [text if ok else "null" for text, ok in zip(out, valid)]


def _list_texts(column: pa.Array) -> list[str]:
    """Lists as JSON arrays; a map as a JSON object (keys as text, in order, duplicates kept)."""
    t = column.type
    if pa.types.is_fixed_size_list(t):  # not flatten(): it leaves out the slots of null lists
        values = column.values.slice(column.offset * t.list_size, len(column) * t.list_size)
        bounds = [i * t.list_size for i in range(len(column) + 1)]
    else:
        offsets = column.offsets.to_pylist()
        values = column.values.slice(offsets[0], offsets[-1] - offsets[0])
        bounds = [o - offsets[0] for o in offsets]
    if pa.types.is_map(t):
        keys, items = values.flatten()  # the entries' key and item arrays, slice offset applied
        names = keys.to_pylist() if pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type) \
            else _texts(keys)
        names = [orjson.dumps(n).decode() + ":" for n in names]
        items = _texts(items)
        return ["{" + ",".join(names[j] + items[j] for j in range(a, b)) + "}" for a, b in zip(bounds, bounds[1:])]
    items = _texts(values)
    return ["[" + ",".join(items[a:b]) + "]" for a, b in zip(bounds, bounds[1:])]


def _durations(column: pa.Array) -> pa.Array:
    """ISO 8601 durations (``PT90.5S``, ``-PT0.000000001S``), exact in the column's unit."""
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[column.type.unit]
    out = []
    for v in column.cast(pa.int64()).to_pylist():
        if v is None:
            out.append("null")
            continue
        whole, frac = divmod(abs(v), 10**digits)
        fraction = f".{frac:0{digits}d}".rstrip("0") if frac else ""
        out.append(f'"{"-" if v < 0 else ""}PT{whole}{fraction}S"')
    return string_array(out)


def json_texts(column: pa.Array) -> pa.Array:
    """A string array holding each value of ``column`` as JSON text (``null`` for nulls)."""
    prefix, texts, suffix = _text_parts(column)
    if prefix or suffix:
        texts = pc.binary_join_element_wise(string_scalar(prefix), texts, string_scalar(suffix), _EMPTY)
    return texts


def _text_parts(column: pa.Array) -> tuple[str, pa.Array, str]:
    """``(prefix, texts, suffix)``: each value's JSON text is prefix + its text + suffix.

    Quotes (and a timestamp's ``Z``) are returned apart when the column has no nulls, so the line
    builder folds them into its literal pieces instead of joining them onto every value first.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    bare = column.null_count == 0  # a null must become null, not "null": no bare quotes then
    if pa.types.is_null(t):
        return "", pa.repeat(_NULL, len(column)), ""
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        texts = pc.cast(column, pa.string())
    elif pa.types.is_floating(t):
        texts = pc.cast(column, pa.string())
        finite = pc.is_finite(column)
        if not pc.all(finite).as_py():  # NaN and infinities are not JSON numbers: they become null
            texts = pc.if_else(finite, texts, _NULL)
    elif pa.types.is_boolean(t):
        texts = pc.if_else(column, _TRUE, _FALSE)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        column = column.cast(pa.string()) if pa.types.is_large_string(t) else column
        raw = _utf8_bytes(column)
        if not np.any((raw < 0x20) | (raw == 0x22) | (raw == 0x5C)):  # no '"', '\\' or control character
            texts = column
        elif np.any((raw < 0x20) & (raw != 0x0A) & (raw != 0x0D) & (raw != 0x09)):
            return "", pc.fill_null(_per_value(column), _NULL), ""  # \\u00XX escapes: orjson's job
        else:
            texts = _escape(column)
        return ('"', texts, '"') if bare else ("", pc.fill_null(_quoted(texts), _NULL), "")
    elif pa.types.is_timestamp(t):
        # Arrow stores UTC instants; dropping the zone is a free reinterpretation, while formatting
        # a zoned timestamp goes through the tz database per value (40x slower).
        naive = column.cast(pa.timestamp(t.unit)) if t.tz else column
        text = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
        if bare:
            return '"', text, 'Z"'
        texts = pc.binary_join_element_wise(_QUOTE, text, _ZULU_QUOTE, _EMPTY)
    elif pa.types.is_date(t) or pa.types.is_time(t):
        if bare:
            return '"', pc.cast(column, pa.string()), '"'
        texts = _quoted(pc.cast(column, pa.string()))
    elif pa.types.is_duration(t):
        texts = _durations(column)
    else:
        texts = _per_value(column)
    return "", pc.fill_null(texts, _NULL), ""


def record_lines(stream: str, batch: pa.RecordBatch, emitted_at: int, constant: Collection[str] = ()) -> bytes:
    """Newline-terminated Airbyte RECORD messages for every row of ``batch``, as one bytes object.

    ``constant`` names columns known to hold one value throughout the batch (a file's ``_file``
    and ``_last_modified_time``): their text is computed once and joined as a literal.
    """
    if batch.num_rows == 0:
        return b""
    return bytes(_lines(batch, _record_head(stream, emitted_at), "}}}\n", constant)[0])


#: Bytes of RECORD lines :func:`record_chunks` encodes at a time: what one piece of a batch costs
#: in memory, however many rows the batch has (a batch of 65,536 rows of the bench is ~14 MiB).
CHUNK_BYTES = 4 << 20


def record_chunks(stream: str, batch: pa.RecordBatch, emitted_at: int, constant: Collection[str] = (),
                  budget: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """The bytes of :func:`record_lines` (same arguments) in consecutive pieces of whole lines, each
    about ``budget`` bytes (a line longer than that is a piece alone), as views of the Arrow
    buffers they were joined in: nothing is copied, and each piece is freed once dropped.

    The rows per piece follow the bytes per line of the piece before (the first guess: the batch's
    Arrow size per row, at least :data:`_LINE_GUESS`), so wide rows make short pieces."""
    n = batch.num_rows
    if n == 0:
        return
    head = _record_head(stream, emitted_at)
    per_row = max(_LINE_GUESS, batch.nbytes / n)
    start = 0
    while start < n:
        rows = min(n - start, max(1, int(budget / per_row)))
        view = _lines(batch.slice(start, rows), head, "}}}\n", constant)[0]
        per_row = max(1.0, view.nbytes / rows)
        start += rows
        yield view


#: Bytes per RECORD line assumed before one is encoded (the envelope alone is ~70).
_LINE_GUESS = 128


def _record_head(stream: str, emitted_at: int) -> str:
    return f'{{"type":"RECORD","record":{{"stream":{orjson.dumps(stream).decode()},"emitted_at":{emitted_at},"data":{{'


def object_lines(batch: pa.RecordBatch | pa.Table, constant: Collection[str] = ()) -> tuple[bytes, np.ndarray]:
    """Each row as a compact JSON object plus ``\n``, back to back: (the bytes, per-row lengths).
    ``constant`` as for :func:`record_lines`."""
    if batch.num_rows == 0:
        return b"", np.zeros(0, dtype=np.int64)
    data, bounds = _lines(batch, "{", "}\n", constant)
    return bytes(data), np.diff(bounds.astype(np.int64))


def _lines(batch: pa.RecordBatch | pa.Table, head: str, tail: str, constant: Collection[str]) -> tuple[memoryview, np.ndarray]:
    """``head`` + each row's fields + ``tail`` for every row, in one element-wise join whose
    literal pieces (keys, quotes, constant values) are merged between the per-row arrays.
    Returns the lines back to back (a view of the joined array's buffer) and their ``n + 1``
    boundaries (row i is ``[b[i], b[i+1])``)."""
    n = batch.num_rows
    pieces: list[str | pa.Array] = [head]
    for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
        pieces.append(("," if i else "") + orjson.dumps(name).decode() + ":")
        if name in constant:
            pieces.append(json_texts(column.slice(0, 1))[0].as_py())
        else:
            pieces.extend(_text_parts(column))
    pieces.append(tail)
    parts: list[str | pa.Array] = []
    for piece in pieces:
        if not isinstance(piece, str):
            parts.append(piece)
        elif parts and isinstance(parts[-1], str):
            parts[-1] += piece
        elif piece:
            parts.append(piece)
    if len(parts) == 1:  # no per-row text (no column, e.g. rows of {}, or only constant ones)
        line = parts[0].encode()
        return memoryview(line * n), np.arange(n + 1, dtype=np.int64) * len(line)
    lines = pc.binary_join_element_wise(*(string_scalar(p) if isinstance(p, str) else p for p in parts), _EMPTY)
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    # No nulls: the data buffer between the first and last offsets is exactly the joined lines.
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[lines.offset: lines.offset + n + 1]
    return memoryview(data)[int(bounds[0]):int(bounds[-1])], bounds
