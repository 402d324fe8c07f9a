"""Arrow record batches -> Airbyte RECORD lines, vectorised.

Each column becomes an array of JSON value texts using Arrow compute kernels (casts, string
replacement, element-wise joins), then the columns are joined into whole message lines in one
kernel call. The result is one contiguous buffer per batch; no Python code runs per row or per
field except for nested/binary columns, which fall back to orjson per value.
"""

from __future__ import annotations

import functools

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc



@functools.cache
def _null() -> pa.Scalar:
    # Built on first use: converting a Python value makes pyarrow import pandas (~0.25 s), which
    # the destination's start-up, which never needs it, should not pay.
    return pa.scalar("null")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _escape(text: pa.Array) -> pa.Array:
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, raw, escaped)
    return text


def _per_value(column: pa.Array) -> pa.Array:
    """orjson per value: the slow path, for nested and unusual types only."""
    dumps = orjson.dumps
    out = [None if v is None else dumps(v, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
           for v in column.to_pylist()]
    return pa.array(out, pa.string())


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
        return pa.repeat(_null(), len(column))
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        texts = pc.cast(column, pa.string())
    elif pa.types.is_floating(t):
        # NaN and infinities are not JSON numbers: they become null.
        finite = pc.if_else(pc.is_finite(column), column, pa.scalar(None, t))
        texts = pc.cast(finite, pa.string())
    elif pa.types.is_boolean(t):
        texts = pc.if_else(column, "true", "false")
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        column = column.cast(pa.string()) if pa.types.is_large_string(t) else column
        if pc.any(pc.match_substring_regex(column, _CONTROL)).as_py():
            texts = _per_value(column)  # rare control characters need \\u00XX escapes: let orjson do it
        else:
            texts = _quoted(_escape(column))
    elif pa.types.is_timestamp(t):
        # Arrow stores UTC instants; dropping the zone is a free reinterpretation, while formatting
        # a zoned timestamp goes through the tz database per value (40x slower).
        naive = column.cast(pa.timestamp(t.unit)) if t.tz else column
        text = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
        texts = pc.binary_join_element_wise('"', text, 'Z"', "")
    elif pa.types.is_date(t):
        texts = _quoted(pc.cast(column, pa.string()))
    else:
        texts = _per_value(column)
    return pc.fill_null(texts, _null())


def record_lines(stream: str, batch: pa.RecordBatch, emitted_at: int) -> bytes:
    """Newline-terminated Airbyte RECORD messages for every row of ``batch``, as one bytes object."""
    n = batch.num_rows
    if n == 0:
        return b""
    head = b'{"type":"RECORD","record":{"stream":' + orjson.dumps(stream) + b',"emitted_at":' + str(
        emitted_at).encode() + b',"data":{'
    parts: list = []
    for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
        key = (b"" if i == 0 else b",") + orjson.dumps(name) + b":"
        parts.append(head.decode() + key.decode() if i == 0 else key.decode())
        parts.append(json_texts(column))
    if not parts:
        parts.append(head.decode())
    parts.append("}}}\n")
    lines = pc.binary_join_element_wise(*parts, "")
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
    parts: list = []
    for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
        parts.append(("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":")
        parts.append(json_texts(column))
    if not parts:
        parts.append("{")
    parts.append("}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[lines.offset: lines.offset + n + 1].astype(np.int64)
    return memoryview(data)[int(bounds[0]):int(bounds[-1])].tobytes(), np.diff(bounds)
