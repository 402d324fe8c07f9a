"""Avro data blocks of flat record schemas decoded straight into Arrow columns, with NumPy.

fastavro builds a Python dict per record (about 4 us) and Arrow converts the dicts back (2 us
more): 6 us of the 7 a record cost. Here a run of blocks is decoded column by column instead:

1. The blocks' decompressed bytes (fastavro's ``block_reader`` does the codecs and sync markers)
   are put back to back: records follow each other across block boundaries, and each block
   starts a chain of ``num_records`` records whose lengths are not known in advance.
2. The chains are walked all at once, one field of one record position at a time, with NumPy
   operations over the blocks (a varint ends at the next byte below 0x80, looked up in a table
   made for every byte in three passes): Python runs per field per record *position in a block*,
   not per record. A run of few, big blocks is walked by a plain loop instead (no object per value).
3. Every field is then gathered for all records at once: varints decoded byte column by byte
   column, fixed-width values viewed in place, strings and bytes cut out of the buffer by one
   Arrow ``take`` over an offsets array that alternates value and gap.

Arrays are built from buffers, never converted from Python objects: the first such conversion makes
pyarrow import pandas (0.3-0.6 s, most of a small file's read).

The values are the ones fastavro's path emits, never re-rounded: Arrow arrays typed as
:func:`connector.source.formats.avro.arrow_type` types the column. Whatever this module cannot
vouch for raises :class:`Fallback` and the caller decodes those records with fastavro, which
yields the same values or raises the same error as before: a varint of more than 64 bits, a
boolean byte other than 0/1, a union branch or enum index out of range, invalid UTF-8, uuid text
that is not canonical (fastavro rewrites it), a date, time or timestamp a Python ``datetime``
cannot hold, a decimal wider than its precision, a chain not ending where its block ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from connector.scalars import string_array

#: Encodings of a value in the record: a zigzag varint, a fixed number of bytes, or a varint
#: length followed by that many bytes.
VARINT, FIXED, LENGTH = "varint", "fixed", "length"
#: Bytes of zeros after the buffer, so a gather a few bytes past its end stays in bounds.
PAD = 16
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: Ranges Python's date, time and datetime (what fastavro converts to) can hold.
_DAYS = (-719162, 2932896)
_TIME_MS, _TIME_US = (0, 86_400_000 - 1), (0, 86_400_000_000 - 1)
_TS_MS = (-62_135_596_800_000, 253_402_300_799_999)
_TS_US = (_TS_MS[0] * 1000, _TS_MS[1] * 1000 + 999)
_INT32 = (-(1 << 31), (1 << 31) - 1)


class Fallback(Exception):
    """These blocks hold something only fastavro's path decodes (or fails on) as before."""


@dataclass(frozen=True)
class Column:
    """How one top-level field is laid out and turned into an Arrow array."""

    name: str
    encoding: str
    size: int  # bytes of a FIXED value
    #: For a ``["null", T]`` union: the branch index of T (the other one is null); None: no union.
    branch: int | None
    build: Callable[[Any, np.ndarray, Any], pa.Array]  # (raw values, buffer, mask) -> array


def plan(writer_schema: Any, own: pa.Schema) -> list[Column] | None:
    """The columns of a flat record schema, or None when a field needs fastavro (nested types,
    unions of several types, text conversions...). Each column's array type is checked against
    ``own`` (the file's Arrow schema), so the two mappings cannot drift apart."""
    if not isinstance(writer_schema, dict) or writer_schema.get("type") not in ("record", "error"):
        return None
    fields = writer_schema.get("fields") or []
    if not fields or len(fields) != len(own):
        return None
    names: dict[str, Any] = {}
    columns = []
    for f, want in zip(fields, own):
        column = _column(f["name"], f["type"], names)
        if column is None or want.name != f["name"]:
            return None
        if column[1] != want.type:
            return None
        columns.append(column[0])
    return columns


def _column(name: str, schema: Any, names: dict[str, Any]) -> tuple[Column, pa.DataType] | None:
    branch = None
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            return None
        branch = 1 - schema.index("null")
        schema = schema[branch]
    found = _leaf(schema, names)
    if found is None:
        return None
    encoding, size, arrow, build = found
    return Column(name, encoding, size, branch, build), arrow


def _leaf(schema: Any, names: dict[str, Any]) -> tuple[str, int, pa.DataType, Any] | None:
    """(encoding, size, arrow type, builder) of one non-union type; None: not handled here."""
    if isinstance(schema, str):
        if schema in names:
            return names[schema]
        schema = {"type": schema}
    if not isinstance(schema, dict):
        return None
    kind, logical = schema.get("type"), schema.get("logicalType")
    if isinstance(kind, dict | list):
        return None
    if kind in ("enum", "fixed"):
        found = _named(schema)
        if found is not None:
            full = schema["name"] if "." in schema["name"] or not schema.get("namespace") else \
                f"{schema['namespace']}.{schema['name']}"
            names[schema["name"]] = names[full] = found
        return found
    if kind in names and len(schema) == 1:
        return names[kind]
    if logical == "decimal" and kind == "bytes":
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        if precision > 38:
            return None
        t = pa.decimal128(precision, scale)
        return LENGTH, 0, t, lambda raw, buf, mask, t=t: _decimal(raw, buf, mask, t)
    if logical == "uuid" and kind == "string":
        return LENGTH, 0, pa.string(), _uuid
    if logical in _RANGES and kind in ("int", "long"):
        t, bounds = _RANGES[logical]
        return VARINT, 0, t, lambda raw, buf, mask, t=t, b=bounds: _ints(raw, mask, t, b)
    if logical in _LOCAL_OR_TEXT and kind in ("int", "long", "string", "fixed", "bytes"):
        return None
    return _SIMPLE.get(kind) if isinstance(kind, str) else None


def _named(schema: dict[str, Any]) -> tuple[str, int, pa.DataType, Any] | None:
    logical = schema.get("logicalType")
    if schema["type"] == "enum":
        symbols = string_array(list(schema["symbols"]))
        return VARINT, 0, pa.string(), lambda raw, buf, mask, s=symbols: _enum(raw, mask, s)
    size = int(schema["size"])
    if logical == "decimal":
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        if precision > 38 or size > 16:
            return None
        t = pa.decimal128(precision, scale)
        return FIXED, size, t, lambda raw, buf, mask, t=t: _decimal_fixed(raw, mask, t)
    if logical in ("uuid", "duration"):
        return None  # fastavro converts them (a UUID object, a tuple)
    t = pa.binary(size)
    return FIXED, size, t, lambda raw, buf, mask, t=t: _from_buffers(t, len(raw), [None, pa.py_buffer(raw)], mask)


def _from_buffers(t: pa.DataType, n: int, buffers: list[Any], mask: np.ndarray | None) -> pa.Array:
    """An array over ``buffers``; ``mask`` (True: null) becomes its validity bitmap."""
    nulls = 0
    if mask is not None and mask.any():
        buffers = [pa.py_buffer(np.packbits(~mask, bitorder="little")), *buffers[1:]]
        nulls = int(mask.sum())
    else:
        buffers = [None, *buffers[1:]]
    return pa.Array.from_buffers(t, n, buffers, null_count=nulls)


def _ints(raw: np.ndarray, mask: np.ndarray | None, t: pa.DataType, bounds: tuple[int, int] | None) -> pa.Array:
    values = raw if mask is None else np.where(mask, 0, raw)
    if bounds is not None and len(values) and (values.min() < bounds[0] or values.max() > bounds[1]):
        raise Fallback(f"{t} value out of range")
    width = t.bit_width // 8
    values = values.astype(np.int32) if width == 4 else values
    return _from_buffers(t, len(values), [None, pa.py_buffer(np.ascontiguousarray(values))], mask)


def _enum(raw: np.ndarray, mask: np.ndarray | None, symbols: pa.Array) -> pa.Array:
    index = raw if mask is None else np.where(mask, 0, raw)
    if len(index) and (index.min() < 0 or index.max() >= len(symbols)):
        raise Fallback("enum index out of range")
    return symbols.take(_from_buffers(pa.int64(), len(index), [None, pa.py_buffer(np.ascontiguousarray(index))], mask))


def _fixed_view(dtype: str, t: pa.DataType) -> Callable[..., pa.Array]:
    def build(raw: np.ndarray, buf: np.ndarray, mask: np.ndarray | None) -> pa.Array:
        values = np.ascontiguousarray(raw).view(dtype).reshape(-1)
        if mask is not None:
            values = np.where(mask, 0, values).astype(dtype)
        return _from_buffers(t, len(values), [None, pa.py_buffer(values)], mask)
    return build


def _boolean(raw: np.ndarray, buf: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    values = raw.reshape(-1) if mask is None else np.where(mask, 0, raw.reshape(-1))
    if len(values) and values.max() > 1:
        raise Fallback("boolean byte other than 0 or 1")
    return _from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values.astype(bool), bitorder="little"))],
                         mask)


def _cut(raw: tuple[np.ndarray, np.ndarray], buf: np.ndarray, mask: np.ndarray | None, t: pa.DataType) -> pa.Array:
    """The ``[start, end)`` slices of ``buf`` as a binary/string array: one array over the whole
    buffer whose elements alternate gap and value (the slices of one field are in order), then
    every value taken out of it in one call."""
    start, end = raw
    n = len(start)
    if len(buf) >= 1 << 31:
        raise Fallback("buffer too big for 32-bit offsets")
    offsets = np.empty(2 * n + 1, np.int32)
    offsets[0] = 0
    offsets[1::2] = start
    offsets[2::2] = end
    whole = pa.Array.from_buffers(pa.binary(), 2 * n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    values = whole.take(_from_buffers(pa.int32(), n, [None, pa.py_buffer(np.arange(1, 2 * n, 2, dtype=np.int32))], None))
    out = _from_buffers(t, n, [None, *values.buffers()[1:]], mask)
    if pa.types.is_string(t):
        try:
            out.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise Fallback(f"invalid UTF-8: {exc}") from None
    return out


def _uuid(raw: Any, buf: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    import pyarrow.compute as pc

    out = _cut(raw, buf, mask, pa.string())
    canonical = pc.match_substring_regex(out, _UUID)
    if canonical.false_count:
        raise Fallback("uuid text that fastavro would rewrite")
    return out


def _decimal(raw: tuple[np.ndarray, np.ndarray], buf: np.ndarray, mask: np.ndarray | None, t: pa.DataType) -> pa.Array:
    start, end = raw
    length = end - start
    if len(length) and length.max() > 16:
        raise Fallback("decimal of more than 16 bytes")
    # Big-endian two's complement of 0-16 bytes, right-aligned in 16 and sign-extended.
    offset = np.arange(16)[None, :] - (16 - length)[:, None]
    inside = offset >= 0
    big = buf[np.where(inside, start[:, None] + offset, 0)]
    negative = (length > 0) & (buf[start] >= 0x80)
    big = np.where(inside, big, np.where(negative, 0xFF, 0)[:, None]).astype(np.uint8)
    return _decimal_array(big, mask, t)


def _decimal_fixed(raw: np.ndarray, mask: np.ndarray | None, t: pa.DataType) -> pa.Array:
    n, size = raw.shape
    big = np.zeros((n, 16), np.uint8)
    big[:, 16 - size:] = raw
    if size:
        big[:, :16 - size] = np.where(raw[:, 0] >= 0x80, 0xFF, 0)[:, None]
    return _decimal_array(big, mask, t)


def _decimal_array(big: np.ndarray, mask: np.ndarray | None, t: pa.DataType) -> pa.Array:
    if mask is not None:
        big[mask] = 0
    little = np.ascontiguousarray(big[:, ::-1])
    out = _from_buffers(t, len(big), [None, pa.py_buffer(little)], mask)
    try:
        out.validate(full=True)  # fastavro would round a value wider than the precision
    except pa.ArrowInvalid as exc:
        raise Fallback(str(exc)) from None
    return out


def _binary(t: pa.DataType) -> Callable[..., pa.Array]:
    return lambda raw, buf, mask: _cut(raw, buf, mask, t)


_RANGES: dict[str, tuple[pa.DataType, tuple[int, int]]] = {
    "date": (pa.date32(), _DAYS), "time-millis": (pa.time32("ms"), _TIME_MS),
    "time-micros": (pa.time64("us"), _TIME_US), "timestamp-millis": (pa.timestamp("ms", tz="UTC"), _TS_MS),
    "timestamp-micros": (pa.timestamp("us", tz="UTC"), _TS_US),
    "timestamp-nanos": (pa.timestamp("ns", tz="UTC"), (-(1 << 63), (1 << 63) - 1)),
}
_LOCAL_OR_TEXT = frozenset({"local-timestamp-millis", "local-timestamp-micros", "local-timestamp-nanos", "uuid",
                            "decimal"})
_SIMPLE: dict[str, tuple[str, int, pa.DataType, Any]] = {
    "boolean": (FIXED, 1, pa.bool_(), _boolean),
    "int": (VARINT, 0, pa.int32(), lambda raw, buf, mask: _ints(raw, mask, pa.int32(), _INT32)),
    "long": (VARINT, 0, pa.int64(), lambda raw, buf, mask: _ints(raw, mask, pa.int64(), None)),
    "float": (FIXED, 4, pa.float32(), _fixed_view("<f4", pa.float32())),
    "double": (FIXED, 8, pa.float64(), _fixed_view("<f8", pa.float64())),
    "string": (LENGTH, 0, pa.string(), _binary(pa.string())),
    "bytes": (LENGTH, 0, pa.binary(), _binary(pa.binary())),
}


class Blocks:
    """Decompressed blocks put back to back, with where each varint ends."""

    def __init__(self, chunks: Sequence[bytes | memoryview], counts: Sequence[int]) -> None:
        sizes = np.array([len(c) for c in chunks], np.int64)
        self.bounds = np.concatenate([[0], np.cumsum(sizes)])
        self.size = int(self.bounds[-1])
        self.buf = np.frombuffer(b"".join([*chunks, bytes(PAD)]), np.uint8)
        self.counts = np.asarray(counts, np.int64)
        # Where a varint starting at each byte ends: one past the next byte below 0x80. The table
        # costs three passes over the bytes; a binary search per lookup cost ten times more.
        stop = self.buf < 0x80
        stops = np.flatnonzero(stop).astype(np.int32 if len(self.buf) < 1 << 31 else np.int64)
        self.ends = stops[np.cumsum(stop, dtype=stops.dtype) - stop] + 1

    def varint_end(self, pos: np.ndarray) -> np.ndarray:
        """Where the varint at each position ends (one past its last byte)."""
        return self.ends[pos]

    def varints(self, pos: np.ndarray, end: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """The zigzag-decoded varints at ``pos`` (ending at ``end``), as int64; only the ``present``
        ones (default all) must be valid, the others are garbage."""
        length = np.minimum(end - pos, 11)
        if present is not None:
            length = np.where(present, length, 1)
        longest = int(length.max()) if len(length) else 0
        if longest > 10:
            raise Fallback("varint of more than 10 bytes")
        value = np.zeros(len(pos), np.uint64)
        for k in range(longest):
            byte = self.buf[np.minimum(pos + k, len(self.buf) - 1)].astype(np.uint64)
            if k == 9 and (byte[length == 10] > 1).any():
                raise Fallback("varint of more than 64 bits")
            value |= np.where(k < length, (byte & np.uint64(0x7F)) << np.uint64(7 * k), np.uint64(0))
        return ((value >> np.uint64(1)) ^ (np.uint64(0) - (value & np.uint64(1)))).view(np.int64)


def decode(columns: list[Column], blocks: Blocks, schema: pa.Schema) -> pa.RecordBatch:
    """The records of ``blocks`` as one batch typed ``schema``; :class:`Fallback` when fastavro
    must decode them."""
    total = int(blocks.counts.sum())
    starts, nulls = _walk(columns, blocks, total)
    arrays = []
    for i, column in enumerate(columns):
        pos, mask = starts[i], nulls[i]
        if mask is not None and not mask.any():
            mask = None
        present = None if mask is None else ~mask
        raw: Any
        if column.encoding == FIXED:
            safe = pos if mask is None else np.where(mask, 0, pos)
            raw = blocks.buf[safe[:, None] + np.arange(column.size)[None, :]]
        else:
            end = blocks.varint_end(pos)
            value = blocks.varints(pos, end, present)
            if mask is not None:
                value = np.where(mask, 0, value)
            if column.encoding == VARINT:
                raw = value
            else:
                start = end if mask is None else np.where(mask, pos, end)
                raw = (start, start + value)
        arrays.append(column.build(raw, blocks.buf, mask))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _walk(columns: list[Column], blocks: Blocks, total: int) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Where each field of each record starts (after its union branch), and which are null."""
    counts = blocks.counts
    longest = int(counts.max()) if len(counts) else 0
    # Measured on 7 columns: a record position of the chains costs ~80 us, a record of the loop ~4 us.
    if longest * 20 > total:
        starts = [np.empty(total, np.int64) for _ in columns]
        nulls: list[np.ndarray | None] = [np.zeros(total, bool) if c.branch is not None else None for c in columns]
        ends = _walk_loop(columns, blocks, starts, nulls)
    else:
        starts, nulls, ends = _walk_chains(columns, blocks)
    if not np.array_equal(ends, blocks.bounds[1:]):
        raise Fallback("records do not end where their block ends")
    return starts, nulls


def _walk_chains(columns: list[Column], blocks: Blocks) -> tuple[list[np.ndarray], list[np.ndarray | None], np.ndarray]:
    """Every block's chain walked at once (NumPy over the blocks), a record position at a time.

    Positions only grow (a negative length jumps past the blocks) and are capped just past the
    blocks, so a chain that ends exactly at its block's end never left it; :func:`_walk` checks that.
    Returns the starts and null flags in record order, and where each chain ended."""
    counts = blocks.counts
    order = np.argsort(-counts, kind="stable")  # longest chains first: the live ones are a prefix
    live_counts = counts[order]
    descending = -live_counts
    longest = int(live_counts[0])
    pos = blocks.bounds[:-1][order].copy()
    cap = blocks.size + 1
    buf, ends = blocks.buf, blocks.ends
    # Filled a record position (row) at a time, one column per chain; put in record order at the end.
    grid = [np.zeros((longest, len(counts)), np.int64) for _ in columns]
    absent_grid = [np.zeros((longest, len(counts)), bool) if c.branch is not None else None for c in columns]
    steps = [(c.encoding, c.size, c.branch, grid[i], absent_grid[i]) for i, c in enumerate(columns)]
    for k in range(longest):
        live = int(np.searchsorted(descending, -k, side="left"))  # the chains of more than k records
        p = pos[:live]
        for encoding, size, branch, start, null in steps:
            absent = None
            if branch is not None:
                index = buf[p]
                if (index & 0xFD).any():  # zigzag 0 and 1 are the bytes 0 and 2
                    raise Fallback("union branch index out of range")
                absent = index != 2 * branch
                null[k, :live] = absent  # type: ignore[index]  # a union's column has its null flags
                p = p + 1
            start[k, :live] = p
            if encoding == VARINT:
                nxt = ends[p]
            elif encoding == FIXED:
                nxt = np.minimum(p + size, cap)
            else:
                end = ends[p]
                first_byte = buf[p]
                if (first_byte >= 0x80).any():
                    length = blocks.varints(p, end, None if absent is None else ~absent)
                else:
                    length = (first_byte >> 1).view(np.int8)
                    length[first_byte & 1 == 1] = -1
                nxt = np.where(length < 0, cap, np.minimum(end + length, cap))
            p = nxt if absent is None else np.where(absent, p, nxt)
        pos[:live] = p
    out = np.empty(len(counts), np.int64)
    out[order] = pos
    # Cell (k, c) is record k of chain c: in record order, chains (blocks) first, k within.
    filled = np.arange(longest)[:, None] < live_counts[None, :]
    first = (np.cumsum(counts) - counts)[order]
    rows = (first[None, :] + np.arange(longest)[:, None])[filled]
    inverse = np.empty(len(rows), np.int64)
    inverse[rows] = np.arange(len(rows))
    starts = [g[filled][inverse] for g in grid]
    nulls = [None if a is None else a[filled][inverse] for a in absent_grid]
    return starts, nulls, out


def _walk_loop(columns: list[Column], blocks: Blocks, starts: list[np.ndarray],
               nulls: list[np.ndarray | None]) -> np.ndarray:
    data = blocks.buf.tobytes()
    limit = blocks.size
    plan_ = [(c.encoding, c.size, c.branch) for c in columns]
    ends = np.empty(len(blocks.counts), np.int64)
    row = 0
    for b, count in enumerate(blocks.counts.tolist()):
        p = int(blocks.bounds[b])
        for _ in range(count):
            for i, (encoding, size, branch) in enumerate(plan_):
                if branch is not None:
                    index = data[p]
                    if index != 0 and index != 2:
                        raise Fallback("union branch index out of range")
                    p += 1
                    if index != 2 * branch:
                        nulls[i][row] = True  # type: ignore[index]
                        starts[i][row] = p
                        continue
                starts[i][row] = p
                if encoding == FIXED:
                    p += size
                    if p > limit:
                        raise Fallback("a record runs past the blocks")
                    continue
                value = shift = 0
                while True:
                    byte = data[p]
                    p += 1
                    value |= (byte & 0x7F) << shift
                    shift += 7
                    if byte < 0x80:
                        break
                    if shift > 63 or p > limit:
                        raise Fallback("varint too long")
                if encoding == LENGTH:
                    length = (value >> 1) ^ -(value & 1)
                    if length < 0:
                        raise Fallback("negative length")
                    p += length
                if p > limit:
                    raise Fallback("a record runs past the blocks")
            row += 1
        ends[b] = p
    return ends
