"""Arrow record batches -> Airbyte RECORD lines, vectorised.

Each column becomes an array of JSON value texts using Arrow compute kernels (casts, string
replacement, element-wise joins), then the columns are joined into whole message lines in one
kernel call. The result is one contiguous buffer per batch; no Python code runs per row or per
field except for nested/binary columns, which fall back to orjson per value.
"""

from __future__ import annotations

from collections.abc import Collection

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
    """orjson per value: the slow path, for nested and unusual types only."""
    dumps = orjson.dumps
    return string_array(["null" if v is None else dumps(v, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
                         for v in column.to_pylist()])


def _default(value):
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return str(value)


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
    elif pa.types.is_date(t):
        if bare:
            return '"', pc.cast(column, pa.string()), '"'
        texts = _quoted(pc.cast(column, pa.string()))
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
    head = f'{{"type":"RECORD","record":{{"stream":{orjson.dumps(stream).decode()},"emitted_at":{emitted_at},"data":{{'
    return _lines(batch, head, "}}}\n", constant)[0]


def object_lines(batch: pa.RecordBatch | pa.Table, constant: Collection[str] = ()) -> tuple[bytes, np.ndarray]:
    """Each row as a compact JSON object plus ``\n``, back to back: (the bytes, per-row lengths).
    ``constant`` as for :func:`record_lines`."""
    if batch.num_rows == 0:
        return b"", np.zeros(0, dtype=np.int64)
    data, bounds = _lines(batch, "{", "}\n", constant)
    return data, np.diff(bounds.astype(np.int64))


def _lines(batch: pa.RecordBatch | pa.Table, head: str, tail: str, constant: Collection[str]) -> tuple[bytes, np.ndarray]:
    """``head`` + each row's fields + ``tail`` for every row, in one element-wise join whose
    literal pieces (keys, quotes, constant values) are merged between the per-row arrays.
    Returns the lines back to back and their ``n + 1`` boundaries (row i is ``[b[i], b[i+1])``)."""
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
        line = parts[0].encode()  # type: ignore[union-attr]
        return line * n, np.arange(n + 1, dtype=np.int64) * len(line)
    lines = pc.binary_join_element_wise(*(string_scalar(p) if isinstance(p, str) else p for p in parts), _EMPTY)
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    # No nulls: the data buffer between the first and last offsets is exactly the joined lines.
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[lines.offset: lines.offset + n + 1]
    return memoryview(data)[int(bounds[0]):int(bounds[-1])].tobytes(), bounds
