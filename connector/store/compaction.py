"""Compaction of superseded records: an append_dedup dataset keeps only the latest record per key.

Opt-in maintenance (``compact_superseded``, ``des datasets aggregate NAME --compact``). The latest
record of a primary key is the one with the highest cursor value (nulls lowest), the highest key
among equal cursors (or without a cursor). The kept records, with their stored bytes and the
metadata kept beside them (row ids included: each keeps its ``_airbyte_raw_id``), are written as
new containers of a new key space (keys from 0, in their old order) and swapped in by one catalog
transaction: readers see the old data or the compacted data, never a mix; a crash before the swap
leaves the old data. Containers that a version still references stay in storage.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.des import DesReader, DesWriter
from connector.des.cache import invalidate
from connector.store import columns, records
from connector.store.errors import DatasetFrozen, StoreError
from connector.store.model import Datarange
from connector.store.names import record_names
from connector.store.objects import remove_quietly

if TYPE_CHECKING:
    from connector.store.api import Store


def compact_superseded(store: Store, dataset: str, primary_key: Sequence[str] | None = None,
                       cursor: str | None = None, *, wait: float = 30.0) -> dict[str, int]:
    """Keep only the latest record per ``primary_key`` (default: the dataset's metadata
    ``primary_key``, which des-destination records for append_dedup streams) by ``cursor`` (default:
    metadata ``cursor_field``; none: the highest key wins). Returns ``{"kept": n, "dropped": m}``."""
    meta = store.get_dataset(dataset).metadata
    fields = list(primary_key or meta.get("primary_key") or [])
    if not fields:
        raise StoreError(f"dataset {dataset!r} has no primary key to compact by: give one, or write it with "
                         "des-destination's append_dedup (which records metadata primary_key)")
    cursor = cursor or meta.get("cursor_field")
    with store.catalog.lock(dataset, wait, "compact") as lock:
        d = store.get_dataset(dataset)
        if d.frozen:
            raise DatasetFrozen(f"dataset {dataset!r} is frozen: unfreeze it to compact it")
        ranges = store.dataranges(dataset)
        if any(r.kind != "records" for r in ranges):
            raise StoreError(f"dataset {dataset!r} holds files: only records can be compacted")
        total = sum(r.count for r in ranges)
        if not ranges or ranges[0].first != 0 or ranges[-1].last + 1 != total:
            raise StoreError(f"dataset {dataset!r}: its key space has gaps (see `des datasets missing`); "
                             "restore it before compacting")
        keep = latest_rows(dataset, store.to_table(dataset), fields, cursor)
        if len(keep) == total:
            return {"kept": total, "dropped": 0}
        lines, kept_meta = _kept(store, ranges, keep)
        epoch = d.epoch + 1
        checkpoint = store.catalog.dataset(dataset)["checkpoint"]  # read under the lock
        written = _write(store, dataset, lines, kept_meta, epoch, lock.tag)
        # Beside the containers, as a writer leaves it, so restore finds the checkpoint too.
        checkpoint_path = store.layout.checkpoint(dataset, epoch, len(keep), lock.tag) if checkpoint else None
        try:
            if checkpoint_path is not None:
                store.storage.write_bytes(checkpoint_path, checkpoint.encode())
            with store.oplog.operation(dataset, "compact", kept=len(keep), dropped=total - len(keep),
                                 key=fields, cursor=cursor, epoch=epoch) as op:
                lock.check(op.db)
                store.catalog.start_key_space(op.db, dataset, epoch)
                for first, last, path, out, data_length in written:
                    store.catalog.insert_datarange(op.db, dataset, first, last, store.layout.relative(path), out.size,
                                                   out.sha256, last - first + 1, "records", data_length)
                # The writer's checkpoint (a destination's exactly-once state) describes the same input.
                store.catalog.record_commit(op.db, dataset, len(keep), checkpoint)
        except BaseException:
            for path in [w[2] for w in written] + ([checkpoint_path] if checkpoint_path else []):
                remove_quietly(store.fs, path)
            raise
        store.versions.after_new_key_space(dataset, d.epoch, d.next_key)  # dataset.json: restore finds the new epoch
        referenced = store.versions.referenced_paths(dataset)
        for r in ranges:
            p = store.fs._strip_protocol(r.url)
            invalidate(store.fs, p)
            if p not in referenced:
                remove_quietly(store.fs, p)
    return {"kept": len(keep), "dropped": total - len(keep)}


def latest_rows(dataset: str, table: pa.Table, fields: Sequence[str], cursor: str | None) -> list[int]:
    """Row numbers (ascending) of the latest row per combination of ``fields``: highest ``cursor``
    (nulls lowest), then highest row number."""
    missing = [f for f in [*fields, *([cursor] if cursor else [])] if f not in table.column_names]
    if missing and table.num_rows:
        raise StoreError(f"dataset {dataset!r}: no field {missing[0]!r} to compact by "
                         f"(fields: {', '.join(table.column_names)})")
    n = table.num_rows
    rows = pa.array(np.arange(n, dtype=np.int64))
    if cursor:
        column = table.column(cursor)
        # Nulls lowest: ordered by "has a value" first (no null_placement: its form changed in pyarrow 25).
        order = pc.sort_indices(pa.table({"v": pc.is_valid(column), "c": column, "r": rows}),
                                sort_keys=[("v", "ascending"), ("c", "ascending"), ("r", "ascending")])
    else:
        order = rows
    rank = np.empty(n, dtype=np.int64)
    rank[np.asarray(order)] = np.arange(n, dtype=np.int64)  # each row's place in the cursor order
    keyed = pa.table({**{f"k{i}": table.column(f) for i, f in enumerate(fields)}, "rank": pa.array(rank)})
    try:
        best = keyed.group_by([f"k{i}" for i in range(len(fields))], use_threads=False).aggregate([("rank", "max")])
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise StoreError(f"dataset {dataset!r}: cannot compact by {list(fields)}: {exc}") from None
    return sorted(np.asarray(order)[np.asarray(best.column("rank_max"))].tolist())


def _kept(store: Store, ranges: list[Datarange], keep: list[int]) -> tuple[list[bytes], dict[str, Any]]:
    """The stored lines of the kept records and their metadata columns (``row_ids`` as runs of one)."""
    lines: list[bytes] = []
    values: dict[str, list[Any]] = {}
    id_name: str | None = None
    for r in ranges:
        path = store.fs._strip_protocol(r.url)
        data = records.data_region(store.fs, path, r.size, r.data_length)
        lines.extend(data.split(b"\n")[:-1])
        meta = records.first_member_meta(store.fs, path, r.size)
        if meta is None:
            reader = DesReader(path, fs=store.fs)
            meta = reader.meta(reader.names()[0])
        if meta.get("row_ids"):
            id_name = meta["row_ids"]["name"]
        done = len(lines) - r.count
        for name, column in columns.expand(meta, 0, r.count).items():
            values.setdefault(name, [None] * done).extend(column)
        for column in values.values():
            column.extend([None] * (len(lines) - len(column)))
    if len(lines) != ranges[-1].last + 1:
        raise StoreError(f"dataset {ranges[0].dataset!r}: {len(lines)} record lines for {ranges[-1].last + 1} keys")
    kept = {name: [column[i] for i in keep] for name, column in values.items()}
    return [lines[i] for i in keep], {"id_name": id_name, "columns": kept}


def _write(store: Store, dataset: str, lines: list[bytes], meta: dict[str, Any], epoch: int,
           tag: str) -> list[tuple[int, int, str, DesWriter, int]]:
    """The kept records in containers of at most ``max_datapoints``, published (not yet recorded)."""
    out: list[tuple[int, int, str, DesWriter, int]] = []
    id_name = meta["id_name"]
    try:
        for first in range(0, len(lines), store.max_datapoints):
            piece = lines[first:first + store.max_datapoints]
            last = first + len(piece) - 1
            builder = columns.ColumnsBuilder(None)
            builder.add(len(piece), {n: v[first:last + 1] for n, v in meta["columns"].items() if n != id_name})
            first_meta = builder.meta()
            if id_name is not None:
                # A run of one per record: its base is the record's own id (id XOR 0), kept exactly.
                ids = meta["columns"][id_name][first:last + 1]
                first_meta["row_ids"] = {"name": id_name,
                                         "runs": [[uuid.UUID(i).hex if i else None, 1] for i in ids]}
            path = store.layout.datarange(dataset, first, last, epoch, tag)
            data = b"".join(line + b"\n" for line in piece)
            out.append((first, last, path, *_container(store, dataset, path, data, first, first_meta)))
    except BaseException:
        for _, _, path, _, _ in out:
            remove_quietly(store.fs, path)
        raise
    return out


def _container(store: Store, dataset: str, path: str, data: bytes, first: int,
               first_meta: dict[str, Any]) -> tuple[DesWriter, int]:
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    lengths = np.diff(ends, prepend=-1)
    with store.storage.spooled(dataset, path) as spool:
        with DesWriter(spool, overwrite=True, big_file_threshold=None) as des:
            des.add_many(record_names(first, len(lengths)), data, lengths, check_names=False)
            data_length = des.data_length  # (once closed, the length of everything written)
            if first_meta:
                des.set_first_meta(first_meta)
    return des, data_length
