"""Reading a dataset's datapoints: one by one, as JSON Lines, or as Arrow tables, from the
current data or as of a version.

Record containers are read without their INDEX (see :mod:`connector.store.records`): a range of
records is one ranged GET of each container's DATA region.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.store import columns, records
from connector.store.datasets import Datasets
from connector.store.errors import RangeError, StoreError
from connector.store.history import Versions
from connector.store.model import Datarange
from connector.store.names import record_name
from connector.store.storage import Storage
from connector.store.tables import table_of

MAX_KEY = 2**63 - 1  # the largest key the catalog (SQLite INTEGER) holds
READ_ATTEMPTS = 10  # a read that finds a container gone (replaced by aggregate) lists again


class Reads:
    """Reads of the datasets of one store (the current dataranges from ``datasets``, those of a
    version from ``versions``)."""

    def __init__(self, storage: Storage, datasets: Datasets, versions: Versions) -> None:
        self.storage, self.datasets, self.versions = storage, datasets, versions

    def ranges_of(self, dataset: str, version: str | None) -> list[Datarange]:
        """The dataranges of ``dataset``: the current ones, or those of ``version``."""
        return list(self.versions.get_version(dataset, version).dataranges) if version else self.datasets.dataranges(dataset)

    def read(self, dataset: str, key: int, version: str | None = None) -> bytes:
        """The bytes of datapoint ``key`` (a record's JSON line, or a file's content), from the
        current data or as of ``version``."""
        check_key(dataset, key)
        for attempt in range(READ_ATTEMPTS):
            try:
                return self._read_one(dataset, key, version)
            except FileNotFoundError:
                # An aggregate replaced the container after we looked it up: look again.
                if version is not None or attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _read_one(self, dataset: str, key: int, version: str | None) -> bytes:
        if version is None:
            d = self.datasets.datarange_for(dataset, key)
        else:
            found = [r for r in self.ranges_of(dataset, version) if r.first <= key <= r.last]
            if not found:
                raise RangeError(f"dataset {dataset!r} version {version} has no datapoint {key}")
            d = found[0]
        if d.kind == "records":
            line = records.record_at(self.storage.fs, self.storage.path_of(d.url), d.size, key - d.first,
                                     record_name(key))
            if line is not None:
                return line
            return self.storage.reader(d).read(record_name(key))
        reader = self.storage.reader(d)
        return reader.read(reader.names()[key - d.first])

    def read_lines(self, dataset: str, first: int = 0, last: int | None = None,
                   version: str | None = None, *, whole: bool | None = None) -> Iterator[bytes]:
        """Records ``[first, last]`` as JSON Lines bytes, one chunk per container (one ranged GET
        of its DATA region each); ``last=None`` reads to the end.

        Keys are whole numbers from 0 to ``MAX_KEY``. A range asked for (``whole``, by default
        anything but ``0, None`` which means "every record there is") must hold every one of its
        keys: a missing key (past the end, in a gap) is a :class:`RangeError` raised before the
        first chunk.

        Atomic against a concurrent ``aggregate``: a container deleted after the dataranges were
        listed means a merged one replaced it, so the listing is read again and the read goes on
        from the first key not yet returned (every datapoint is returned once)."""
        for _, chunk in self._chunks(dataset, first, last, version, whole):
            yield chunk

    def _chunks(self, dataset: str, first: int, last: int | None, version: str | None,
                whole: bool | None = None) -> Iterator[tuple[int, bytes]]:
        """:meth:`read_lines` with the key of each chunk's first record."""
        check_key(dataset, first)
        if last is not None:
            check_key(dataset, last)
            if first > last:
                raise RangeError(f"dataset {dataset!r}: range [{first}, {last}] is empty (first > last)")
        next_key = first
        for attempt in range(READ_ATTEMPTS):
            try:
                ranges = self.ranges_of(dataset, version)
                if attempt == 0 and (whole if whole is not None else (first, last) != (0, None)):
                    _check_present(dataset, version, ranges, first, last)
                for d in ranges:
                    if d.last < next_key or (last is not None and d.first > last):
                        continue
                    if d.kind != "records":
                        raise StoreError(f"datarange [{d.first}, {d.last}] of {dataset!r} holds files, not "
                                         "records; read them one by one")
                    chunk = self._slice_lines(d, next_key, last)
                    start = max(next_key, d.first)
                    next_key = (d.last if last is None else min(d.last, last)) + 1
                    yield start, chunk
                return
            except FileNotFoundError:
                if version is not None or attempt == READ_ATTEMPTS - 1:
                    raise

    def _slice_lines(self, d: Datarange, first: int | None, last: int | None) -> bytes:
        data = records.data_region(self.storage.fs, self.storage.path_of(d.url), d.size, d.data_length)
        lo = 0 if first is None else max(first - d.first, 0)
        hi = d.count if last is None else min(last - d.first + 1, d.count)
        if (lo, hi) != (0, d.count):
            lines = data.split(b"\n")[lo:hi]
            data = b"\n".join(lines) + b"\n"
        return data

    def read_range(self, dataset: str, first: int, last: int, version: str | None = None, *,
                   meta: bool = False, latest_by: Sequence[str] | None = None) -> pa.Table:
        """Records ``[first, last]`` as a table: one ranged GET of the DATA region per container.
        ``meta=True`` adds the records' metadata columns (see :meth:`read_meta`) after theirs.
        ``latest_by`` (top-level field names, e.g. a primary key) keeps only the last record (the
        highest key) of each distinct combination of their values, in key order."""
        table = table_of(self._chunks(dataset, first, last, version))
        if meta:
            table = self._with_meta(dataset, table, first, last, version)
        return table.take(_latest_rows(dataset, table, latest_by)) if latest_by else table

    def latest_lines(self, dataset: str, fields: Sequence[str], version: str | None = None) -> bytes:
        """The JSON Lines of the latest record (highest key) of each distinct combination of the
        top-level ``fields`` (e.g. a primary key), in key order: each record's stored bytes."""
        chunks = list(self._chunks(dataset, 0, None, version))
        table = table_of(chunks)
        lines = [line for _, data in chunks for line in data.split(b"\n")[:-1]]
        if len(lines) != table.num_rows:
            raise StoreError(f"dataset {dataset!r}: {len(lines)} lines but {table.num_rows} records")
        return b"".join(lines[i] + b"\n" for i in _latest_rows(dataset, table, fields).to_pylist())

    def to_table(self, dataset: str, version: str | None = None, *, meta: bool = False,
                 latest_by: Sequence[str] | None = None) -> pa.Table:
        """Every record of ``dataset`` (as of ``version``, if given) as one table (``meta`` and
        ``latest_by``: see :meth:`read_range`)."""
        table = table_of(self._chunks(dataset, 0, None, version))
        if meta:
            table = self._with_meta(dataset, table, 0, None, version)
        return table.take(_latest_rows(dataset, table, latest_by)) if latest_by else table

    def read_meta(self, dataset: str, key: int, version: str | None = None) -> dict[str, Any]:
        """The metadata columns kept for record ``key`` beside its bytes (e.g. a destination's
        ``_airbyte_raw_id``, ``_airbyte_extracted_at``...); ``{}`` if its writer kept none."""
        check_key(dataset, key)
        found = [d for d in self.ranges_of(dataset, version) if d.first <= key <= d.last]
        if not found:
            where = f"dataset {dataset!r}" + (f" version {version}" if version else "")
            raise RangeError(f"{where} has no datapoint {key}")
        d = found[0]
        return {name: values[0] for name, values in columns.expand(self.columns_meta(d), key - d.first,
                                                                   key - d.first + 1).items()}

    def columns_meta(self, d: Datarange) -> dict[str, Any]:
        """The column part of the META of the first member of a record datarange."""
        if d.kind != "records":
            return {}
        meta = records.first_member_meta(self.storage.fs, self.storage.path_of(d.url), d.size)
        if meta is None:  # not laid out by our writer: the reader finds it
            reader = self.storage.reader(d)
            meta = reader.meta(reader.names()[0])
        return {k: meta[k] for k in ("columns", "row_ids") if k in meta}

    def _with_meta(self, dataset: str, table: pa.Table, first: int, last: int | None,
                   version: str | None) -> pa.Table:
        chunks: dict[str, list[pa.Array]] = {}
        done = 0
        for d in self.ranges_of(dataset, version):
            if d.last < first or (last is not None and d.first > last):
                continue
            lo, hi = max(first, d.first) - d.first, (d.last if last is None else min(last, d.last)) - d.first + 1
            got = columns.expand_arrays(self.columns_meta(d), lo, hi)
            for name in chunks.keys() - got.keys():
                chunks[name].append(pa.nulls(hi - lo))
            for name, column in got.items():
                chunks.setdefault(name, [pa.nulls(done)] if done else []).append(column)
            done += hi - lo
        if done != table.num_rows:
            raise StoreError(f"dataset {dataset!r}: {table.num_rows} records read but {done} keys listed "
                             "(the dataset changed during the read); read again")
        for name, parts in chunks.items():
            kept = name if name not in table.column_names else f"{name}_meta"  # a record field of that name stays
            table = table.append_column(kept, _concat(parts))
        return table



def check_key(dataset: str, key: Any) -> int:
    """``key`` if it can be a datapoint key (a whole number from 0 to MAX_KEY), else RangeError."""
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= MAX_KEY:
        raise RangeError(f"dataset {dataset!r}: {key!r} is not a datapoint key (keys are whole numbers "
                         f"from 0 to {MAX_KEY})")
    return key


def _check_present(dataset: str, version: str | None, ranges: Sequence[Datarange], first: int,
                   last: int | None) -> None:
    """RangeError naming the missing keys unless every key of ``[first, last]`` (``last=None``:
    up to the last key) is in ``ranges``."""
    end = max((d.last for d in ranges), default=-1)
    wanted_last = end if last is None else last
    missing, expected = [], first
    for d in ranges:
        if d.last < expected or d.first > wanted_last:
            continue
        if d.first > expected:
            missing.append((expected, d.first - 1))
        expected = d.last + 1
    if first > end:  # past the end: name the first key asked for (or the whole range)
        missing.append((first, max(first, wanted_last)))
    elif expected <= wanted_last:
        missing.append((expected, wanted_last))
    if missing:
        where = f"dataset {dataset!r}" + (f" version {version}" if version else "")
        holds = f"its last key is {end}" if end >= 0 else "it is empty"
        gaps = ", ".join(f"[{a}, {b}]" if a != b else str(a) for a, b in missing)
        raise RangeError(f"{where} has no datapoint {gaps} ({holds})")


def _concat(parts: list[pa.Array]) -> pa.Array:
    """One array of ``parts`` whose types may differ only by all-null parts (or else are unified
    through Python values: e.g. integer and fractional ``emitted_at`` in different containers)."""
    types = {p.type for p in parts if p.type != pa.null()}
    if len(types) <= 1:
        target = types.pop() if types else pa.null()
        return pa.concat_arrays([p.cast(target) if p.type != target else p for p in parts])
    return pa.array([v for p in parts for v in p.to_pylist()])


def _latest_rows(dataset: str, table: pa.Table, fields: Sequence[str]) -> pa.Array:
    """Indices of the last row of ``table`` for each distinct combination of ``fields``, ascending."""
    missing = [f for f in fields if f not in table.column_names]
    if missing and table.num_rows:
        raise StoreError(f"dataset {dataset!r}: no field {missing[0]!r} to keep the latest record by "
                         f"(fields: {', '.join(table.column_names)})")
    if not table.num_rows:
        return pa.array([], pa.int64())
    row = "__des_row__"
    while row in table.column_names:
        row += "_"
    keyed = pa.table({**{f"k{i}": table.column(f) for i, f in enumerate(fields)},
                      row: pa.array(range(table.num_rows), pa.int64())})
    try:
        last = keyed.group_by([f"k{i}" for i in range(len(fields))], use_threads=False).aggregate([(row, "max")])
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise StoreError(f"dataset {dataset!r}: cannot keep the latest record by {list(fields)}: {exc}") from None
    return pc.take(last.column(f"{row}_max"), pc.sort_indices(last.column(f"{row}_max")))


