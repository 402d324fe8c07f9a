"""Arrow record batches -> Airbyte RECORD lines, vectorised.

Each column becomes an array of JSON value texts using Arrow compute kernels (casts, string
replacement, element-wise joins), then the columns are joined into whole message lines in one
kernel call. The result is one contiguous buffer per batch; no Python code runs per row or per
field except for nested/binary columns, which fall back to orjson per value.
"""

from __future__ import annotations

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
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if pa.types.is_null(t):
        return pa.repeat(_NULL, len(column))
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        texts = pc.cast(column, pa.string())
    elif pa.types.is_floating(t):
        # NaN and infinities are not JSON numbers: they become null.
        texts = pc.if_else(pc.is_finite(column), pc.cast(column, pa.string()), _NULL)
    elif pa.types.is_boolean(t):
        texts = pc.if_else(column, _TRUE, _FALSE)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        column = column.cast(pa.string()) if pa.types.is_large_string(t) else column
        raw = _utf8_bytes(column)
        if not np.any((raw < 0x20) | (raw == 0x22) | (raw == 0x5C)):  # no '"', '\\' or control character
            texts = _quoted(column)
        elif np.any((raw < 0x20) & (raw != 0x0A) & (raw != 0x0D) & (raw != 0x09)):
            texts = _per_value(column)  # rare control characters need \\u00XX escapes: let orjson do it
        else:
            texts = _quoted(_escape(column))
    elif pa.types.is_timestamp(t):
        # Arrow stores UTC instants; dropping the zone is a free reinterpretation, while formatting
        # a zoned timestamp goes through the tz database per value (40x slower).
        naive = column.cast(pa.timestamp(t.unit)) if t.tz else column
        text = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
        texts = pc.binary_join_element_wise(_QUOTE, text, _ZULU_QUOTE, _EMPTY)
    elif pa.types.is_date(t):
        texts = _quoted(pc.cast(column, pa.string()))
    else:
        texts = _per_value(column)
    return pc.fill_null(texts, _NULL)


def record_lines(stream: str, batch: pa.RecordBatch, emitted_at: int) -> bytes:
    """Newline-terminated Airbyte RECORD messages for every row of ``batch``, as one bytes object."""
    n = batch.num_rows
    if n == 0:
        return b""
    head = b'{"type":"RECORD","record":{"stream":' + orjson.dumps(stream) + b',"emitted_at":' + str(
        emitted_at).encode() + b',"data":{'
    if batch.num_columns == 0:  # rows of {}: a join of scalars alone would give one scalar
        return (head + b"}}}\n") * n
    parts: list = []
    for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
        key = (b"" if i == 0 else b",") + orjson.dumps(name) + b":"
        parts.append(string_scalar(head.decode() + key.decode() if i == 0 else key.decode()))
        parts.append(json_texts(column))
    parts.append(string_scalar("}}}\n"))
    lines = pc.binary_join_element_wise(*parts, _EMPTY)
    # No nulls: the data buffer between the first and last offsets is exactly the joined lines.
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)
    start, end = int(bounds[lines.offset]), int(bounds[lines.offset + n])
    return memoryview(data)[start:end].tobytes()


def object_lines(batch: pa.RecordBatch | pa.Table) -> tuple[bytes, np.ndarray]:
    """Each row as a compact JSON object plus ``\n``, back to back: (the bytes, per-row lengths)."""
    n = batch.num_rows
    if n == 0:
        return b"", np.zeros(0, dtype=np.int64)
    if batch.num_columns == 0:  # rows of {}: a join of scalars alone would give one scalar
        return b"{}\n" * n, np.full(n, 3, dtype=np.int64)
    parts: list = []
    for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
        parts.append(string_scalar(("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":"))
        parts.append(json_texts(column))
    parts.append(string_scalar("}\n"))
    lines = pc.binary_join_element_wise(*parts, _EMPTY)
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[lines.offset: lines.offset + n + 1].astype(np.int64)
    return memoryview(data)[int(bounds[0]):int(bounds[-1])].tobytes(), np.diff(bounds)
