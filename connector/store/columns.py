"""Per-record metadata columns of a record container, kept beside the records, not in them.

A record datapoint's bytes are the record (compact JSON + ``\\n``); what a writer knows about each
record besides (when and where it was extracted, a row id...) goes into the META of the container's
first member, as columns over the container's records::

    "columns": {"<name>": [[value, count], ...]}     run-length encoded, in key order
    "row_ids": {"name": "<name>", "runs": [["<32 hex>", count], ...]}

Run-length encoding keeps a column that is constant over a container (the usual case) at a few
bytes. Row ids are UUIDs derived, not stored: the ``i``-th record of a run has the UUID whose 128
bits are the run's random base XOR ``i`` (a version-4 base keeps its version and variant bits, since
``i`` only touches the low 64). Every run gets a fresh base, so ids are unique within a container by
construction and across containers with the odds of random UUIDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from connector.store.errors import StoreError

ColumnRuns = list[list[Any]]  # [[value, count], ...]


class Constant:
    """A column value shared by every record of one write call."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _append_run(runs: ColumnRuns, value: Any, count: int) -> None:
    if runs and runs[-1][0] == value and type(runs[-1][0]) is type(value):
        runs[-1][1] += count
    else:
        runs.append([value, count])


def _append_values(runs: ColumnRuns, values: Sequence[Any]) -> None:
    """Run-length encode ``values`` onto ``runs``; integer columns in one NumPy pass."""
    if not len(values):
        return
    if set(map(type, values)) == {int}:  # not bool (an int subclass that must stay a bool)
        try:
            arr = np.asarray(values, dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            arr = None
        if arr is not None and arr.dtype == np.int64 and arr.ndim == 1:
            cuts = np.flatnonzero(arr[1:] != arr[:-1]) + 1
            starts = np.concatenate(([0], cuts))
            counts = np.diff(np.concatenate((starts, [len(arr)])))
            for start, count in zip(starts.tolist(), counts.tolist()):
                _append_run(runs, int(arr[start]), count)
            return
    for v in values:
        _append_run(runs, v, 1)


class ColumnsBuilder:
    """The columns of one open container, filled call by call."""

    def __init__(self, row_ids: str | None) -> None:
        self.row_ids = row_ids
        self.count = 0
        self.columns: dict[str, ColumnRuns] = {}

    def add(self, count: int, columns: Mapping[str, Sequence[Any] | Constant]) -> None:
        """Columns of the next ``count`` records; a name missing here that earlier records have (or
        the reverse) is an error: every column covers every record of the container."""
        if self.count and set(columns) != set(self.columns):
            raise StoreError(f"record columns {sorted(columns)} differ from the container's {sorted(self.columns)}")
        for name, values in columns.items():
            runs = self.columns.setdefault(name, [])
            if isinstance(values, Constant):
                _append_run(runs, values.value, count)
            elif len(values) != count:
                raise StoreError(f"record column {name!r} has {len(values)} values for {count} records")
            else:
                _append_values(runs, values)
        self.count += count

    def meta(self) -> dict[str, Any]:
        """What goes into the first member's META ({} when there is nothing to keep)."""
        out: dict[str, Any] = {}
        if self.columns:
            out["columns"] = self.columns
        if self.row_ids and self.count:
            out["row_ids"] = {"name": self.row_ids, "runs": [[uuid.uuid4().hex, self.count]]}
        return out


def concat(parts: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """The META columns of containers merged in order (``(record count, first member's META)``
    each); a part without a column has ``null`` for it (and no row id)."""
    names = {n for _, m in parts for n in (m.get("columns") or {})}
    id_names = {m["row_ids"]["name"] for _, m in parts if m.get("row_ids")}
    if len(id_names) > 1:
        raise StoreError(f"containers with different row id columns cannot be merged: {sorted(id_names)}")
    columns: dict[str, ColumnRuns] = {n: [] for n in sorted(names)}
    id_runs: list[list[Any]] = []
    for count, m in parts:
        own = m.get("columns") or {}
        for name, runs in columns.items():
            for value, n in own.get(name) or [[None, count]]:
                _append_run(runs, value, n)
        ids = m.get("row_ids")
        id_runs.extend([list(r) for r in ids["runs"]] if ids else [[None, count]])
    out: dict[str, Any] = {}
    if names:
        out["columns"] = columns
    if id_names:
        out["row_ids"] = {"name": id_names.pop(), "runs": id_runs}
    return out


def expand(meta: Mapping[str, Any], lo: int, hi: int) -> dict[str, list[Any]]:
    """Values of every column for the container's records ``lo .. hi-1`` (row ids as UUID text)."""
    out: dict[str, list[Any]] = {}
    ids = meta.get("row_ids")
    if ids:
        out[ids["name"]] = [_row_id(base, i) if base is not None else None for base, i in _positions(ids["runs"], lo, hi)]
    for name, runs in (meta.get("columns") or {}).items():
        out[name] = [value for value, _ in _positions(runs, lo, hi)]
    return out


def _positions(runs: Sequence[Sequence[Any]], lo: int, hi: int):
    """``(run value, index within the run)`` of positions ``lo .. hi-1``."""
    start = 0
    for value, count in runs:
        end = start + count
        for i in range(max(lo, start), min(hi, end)):
            yield value, i - start
        start = end
        if start >= hi:
            break


def _row_id(base: str, i: int) -> str:
    return str(uuid.UUID(int=int(base, 16) ^ i))


def expand_arrays(meta: Mapping[str, Any], lo: int, hi: int) -> dict[str, pa.Array]:
    """:func:`expand` as Arrow arrays, built from the runs without a Python step per record."""
    out: dict[str, pa.Array] = {}
    ids = meta.get("row_ids")
    if ids:
        parts = [pa.nulls(n, pa.string()) if base is None else _uuid_texts(base, start, n)
                 for base, start, n in _run_slices(ids["runs"], lo, hi)]
        out[ids["name"]] = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
    for name, runs in (meta.get("columns") or {}).items():
        pieces = list(_run_slices(runs, lo, hi))
        values = pa.array([value for value, _, _ in pieces])
        counts = np.array([n for _, _, n in pieces], dtype=np.int64)
        out[name] = values.take(pa.array(np.repeat(np.arange(len(pieces), dtype=np.int64), counts)))
    return out


def _run_slices(runs: Sequence[Sequence[Any]], lo: int, hi: int):
    """``(run value, first index within the run, count)`` of the runs' part within ``lo .. hi-1``."""
    start = 0
    for value, count in runs:
        end = start + count
        a, b = max(lo, start), min(hi, end)
        if a < b:
            yield value, a - start, b - a
        start = end
        if start >= hi:
            break


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_DASHES = (8, 13, 18, 23)


def _uuid_texts(base: str, first: int, count: int) -> pa.Array:
    """The UUID texts of positions ``first .. first+count-1`` of a run (see the module doc)."""
    value = int(base, 16)
    raw = np.empty((count, 16), np.uint8)
    raw[:, :8] = np.frombuffer((value >> 64).to_bytes(8, "big"), np.uint8)
    low = np.uint64(value & (2**64 - 1)) ^ np.arange(first, first + count, dtype=np.uint64)
    raw[:, 8:] = low.astype(">u8").view(np.uint8).reshape(count, 8)
    digits = np.empty((count, 32), np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    text = np.empty((count, 36), np.uint8)
    text[:, _DASHES] = ord("-")
    text[:, [i for i in range(36) if i not in _DASHES]] = digits
    offsets = np.arange(0, 36 * (count + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())])
