"""A dataset's records as a Dask DataFrame: one partition per datarange, one ranged GET each.

:func:`to_dask` lists the dataranges once (the current ones, or a version's) and builds a lazy
frame whose partition ``i`` reads the DATA region of datarange ``i`` (what :meth:`Store.read_lines`
reads) on whichever worker runs it, so a dataset larger than one machine's memory is processed in
parallel. The index is the datapoint key; the divisions are the dataranges' first keys, so
``df.loc[key]`` touches one partition.

Column types come from the first datarange (read once when the frame is built). Every partition
is checked against them: a column whose values another type holds exactly is cast (a safe cast,
never rounding or truncating); anything else (a field the first datarange lacks, values that do
not fit) is a :class:`StoreError` naming the datarange and field, never a silent conversion.
Values stay in Arrow types (``pd.ArrowDtype``): 64-bit integers with nulls are not turned into
floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs installed; only this module uses pandas
import pyarrow as pa

from connector.store import records
from connector.store.errors import StoreError
from connector.store.model import Datarange
from connector.store.tables import table_of

if TYPE_CHECKING:
    import dask.dataframe as dd
    import fsspec

    from connector.store.api import Store

#: The index of the frame: each record's datapoint key.
INDEX_NAME = "key"


@dataclass(frozen=True)
class _Source:
    """What a worker needs to read a partition: the root's filesystem (pickled by its options)
    and, for the rare container replaced by an ``aggregate`` after listing, how to open the store."""

    fs: fsspec.AbstractFileSystem
    root: str
    catalog: str
    storage_options: dict[str, Any]


def to_dask(store: Store, dataset: str, version: str | None = None,
            columns: Sequence[str] | None = None, latest_by: Sequence[str] | None = None) -> dd.DataFrame:
    """The records of ``dataset`` (as of ``version``) as a Dask DataFrame (see the module doc);
    ``columns`` keeps only those fields (in that order; absent ones are all null); ``latest_by``
    (top-level fields, e.g. an append_dedup stream's primary key) keeps only the last record (the
    highest key) of each distinct combination, as :meth:`Store.to_table` does (see :func:`latest`)."""
    frame = _frame_of(store, dataset, version, columns if latest_by is None or columns is None
                      else [*columns, *(f for f in latest_by if f not in columns)])
    if latest_by is None:
        return frame
    kept = latest(frame, dataset, latest_by)
    return kept if columns is None else kept[list(columns)]


def latest(frame: dd.DataFrame, dataset: str, fields: Sequence[str]) -> dd.DataFrame:
    """The rows of ``frame`` that are the last (highest key) of their combination of ``fields``.

    One pass computes the highest key per combination (a Dask group-by; nulls form a group of their
    own); only those keys, one integer per distinct combination, come back to this process, and a
    second, lazy pass keeps their rows partition by partition, in key order.
    """
    fields = list(fields)
    missing = [f for f in fields if f not in frame.columns]
    if missing and not (len(frame.columns) == 0 and len(frame) == 0):  # an empty dataset has no fields
        raise StoreError(f"dataset {dataset!r}: no field {missing[0]!r} to keep the latest record by "
                         f"(fields: {', '.join(frame.columns)})")
    if missing:
        return frame
    keyed = frame[fields].reset_index()
    last = keyed.groupby(fields, dropna=False)[INDEX_NAME].max().compute()
    keep = pd.Index(last.to_numpy(dtype="int64"))
    return frame.map_partitions(_rows_with_keys, keep)


def _rows_with_keys(part: pd.DataFrame, keys: pd.Index) -> pd.DataFrame:
    return part[part.index.isin(keys)]


def _frame_of(store: Store, dataset: str, version: str | None, columns: Sequence[str] | None) -> dd.DataFrame:
    import dask
    import dask.dataframe as dd

    ranges = store.reads.ranges_of(dataset, version)
    for d in ranges:
        if d.kind != "records":
            raise StoreError(f"datarange [{d.first}, {d.last}] of {dataset!r} holds files, not records; "
                             "a DataFrame has records only")
    wanted = None if columns is None else list(columns)
    if not ranges:
        empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in wanted or []},
                             index=pd.RangeIndex(0, name=INDEX_NAME))
        return dd.from_pandas(empty, npartitions=1)
    source = _Source(store.fs, store.storage.url(store.root), store.catalog_path, dict(store.fs.storage_options))
    schema = _read(source, dataset, ranges[0], version, wanted).schema
    meta = _frame(schema.empty_table(), ranges[0].first)
    read = dask.delayed(_partition)
    parts = [read(source, dataset, d, version, wanted, schema) for d in ranges]
    divisions = (*(d.first for d in ranges), ranges[-1].last)
    return dd.from_delayed(parts, meta=meta, divisions=divisions, verify_meta=False)


def _partition(source: _Source, dataset: str, d: Datarange, version: str | None, columns: list[str] | None,
               schema: pa.Schema) -> pd.DataFrame:
    """One datarange's records as a pandas frame of ``schema``'s columns, indexed by key."""
    table = _conform(_read(source, dataset, d, version, columns), schema, dataset, d)
    return _frame(table, d.first)


def _read(source: _Source, dataset: str, d: Datarange, version: str | None, columns: list[str] | None) -> pa.Table:
    """The records of datarange ``d``: one ranged GET of its DATA region."""
    try:
        data = records.data_region(source.fs, source.fs._strip_protocol(d.url), d.size, d.data_length)
        table = table_of([(d.first, data)])
    except FileNotFoundError:
        if version is not None:  # a version's containers are kept while it exists
            raise
        table = _read_through_store(source, dataset, d)  # replaced by an aggregate: same keys, merged
    if table.num_rows != d.count:
        raise StoreError(f"dataset {dataset!r}: datarange [{d.first}, {d.last}] holds {d.count} records "
                         f"but {table.num_rows} were read")
    if columns is None:
        return table
    return pa.table({c: table.column(c) if c in table.column_names else pa.nulls(table.num_rows) for c in columns})


def _read_through_store(source: _Source, dataset: str, d: Datarange) -> pa.Table:
    """Keys ``[d.first, d.last]`` read through the store (its catalog names the container that
    holds them now). Opened read-only: on a host without the catalog file, from storage."""
    from connector.store.api import Store

    with Store(source.root, source.catalog, storage_options=source.storage_options, read_only=True) as store:
        return store.read_range(dataset, d.first, d.last)


def _conform(table: pa.Table, schema: pa.Schema, dataset: str, d: Datarange) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (a safe cast, or StoreError)."""
    if table.schema.equals(schema):
        return table
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise StoreError(f"dataset {dataset!r}: datarange [{d.first}, {d.last}] has field {extra[0]!r}, which "
                         "the first datarange (the frame's columns) lacks; name the fields with columns=[...] "
                         "or read with to_table")
    out = []
    for field in schema:
        if field.name not in table.column_names:
            out.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)  # safe: raises instead of rounding or overflowing
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise StoreError(f"dataset {dataset!r}: field {field.name!r} is {column.type} in datarange "
                                 f"[{d.first}, {d.last}] but {field.type} in the first one, and does not convert "
                                 f"exactly ({exc}); read with to_table") from None
        out.append(column)
    return pa.Table.from_arrays(out, schema=schema)


def _frame(table: pa.Table, first: int) -> pd.DataFrame:
    """``table`` as pandas in Arrow dtypes, indexed by datapoint key from ``first``."""
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = pd.RangeIndex(first, first + table.num_rows, name=INDEX_NAME)
    return frame
