"""DatasetWriter: append datapoints to a dataset, cutting and committing DES containers.

A container is built in a local spool file (its object key holds its last key, known only when it
is cut), then published under its final key (a rename on a local root, one upload on an object
store, which makes it visible only when complete), and only then recorded in the catalog, in one
transaction with the dataset's next key and the caller's checkpoint. The catalog row is the commit
point: a container published but not recorded (a crash in between) is a leftover that the next
writer of the dataset deletes before it starts.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from connector.des import DesWriter
from connector.des.cache import invalidate
from connector.source.records import object_lines
from connector.store.errors import DatasetFrozen, StoreError
from connector.store.model import Datarange

if TYPE_CHECKING:
    from connector.store.api import Store

OnCommit = Callable[[Datarange], None]


def record_name(key: int) -> str:
    """Member name of record datapoint ``key``."""
    return f"{key:020d}.json"


_POWERS = np.array([10 ** p for p in range(19, -1, -1)], dtype=np.uint64)
_SUFFIX = np.frombuffer(b".json", np.uint8)


def record_names(first: int, count: int) -> np.ndarray:
    """Member names of record datapoints ``first .. first+count-1`` as a NumPy ``S25`` array,
    built without a Python loop (the writer's hot path)."""
    keys = np.arange(first, first + count, dtype=np.uint64)
    out = np.empty((count, 25), np.uint8)
    out[:, :20] = (keys[:, None] // _POWERS[None, :]) % 10 + 48
    out[:, 20:] = _SUFFIX
    return out.view("S25").ravel()


class DatasetWriter:
    """Appends records or files to one dataset; use :meth:`Store.writer` to get one.

    ``write_json_lines`` and ``write_file`` calls are never split across containers, so the
    ``checkpoint`` given with a call is stored (with the commit that contains the call's last
    datapoint) exactly when everything of that call is committed. ``write_batch`` fills containers
    to the limits and may split a batch.
    """

    def __init__(self, store: Store, dataset: str, kind: str, *, wait: float = 30.0,
                 on_commit: OnCommit | None = None) -> None:
        if kind not in ("records", "files"):
            raise ValueError(f"kind must be 'records' or 'files', not {kind!r}")
        self.store, self.dataset, self.kind = store, dataset, kind
        self.on_commit = on_commit
        self._token = uuid.uuid4().hex
        catalog = store.catalog
        row = catalog.dataset(dataset)
        if row["frozen"]:
            raise DatasetFrozen(f"dataset {dataset!r} is frozen: unfreeze it to write")
        catalog.acquire_lock(dataset, self._token, wait)
        try:
            row = catalog.dataset(dataset)  # re-read under the lock
            if row["frozen"]:
                raise DatasetFrozen(f"dataset {dataset!r} is frozen: unfreeze it to write")
            self.next_key = int(row["next_key"])
            self._remove_leftovers()
            store.remove_stale_spools(dataset)
        except BaseException:
            catalog.release_lock(dataset, self._token)
            raise
        self.committed: list[Datarange] = []
        self.committed_checkpoint: Any = None  # the checkpoint stored by the latest commit
        self._des: DesWriter | None = None
        self._spool: str | None = None
        self._first = self.next_key
        self._count = 0
        self._checkpoint: Any = None
        self._has_checkpoint = False
        self._closed = False
        self._started = time.time()

    # -- writing ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Datapoints written but not yet committed."""
        return self._count

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append every row of an Arrow batch as one record datapoint (compact JSON + ``\\n``)."""
        self._need("records")
        data, lengths = object_lines(batch)
        view, start = memoryview(data), 0
        while len(lengths):
            room = self.store.max_datapoints - self._count
            byte_room = self.store.max_bytes - (self._des.data_length if self._des else 0)
            fits = int(np.searchsorted(np.cumsum(lengths), byte_room, side="right"))
            n = min(room, fits, len(lengths))
            if n == 0:
                if self._count:
                    self.commit()
                    continue
                n = 1  # one record larger than max_bytes gets a container of its own
            size = int(lengths[:n].sum())
            self._add_records(view[start:start + size], lengths[:n])
            start += size
            lengths = lengths[n:]
            if self._count >= self.store.max_datapoints or self._des.data_length >= self.store.max_bytes:
                self.commit()

    def write_json_lines(self, lines: Sequence[bytes], checkpoint: Any = None) -> None:
        """Append records given as compact JSON objects (no trailing newline), all in one container."""
        self._need("records")
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        # Member boundaries are the newlines: found by one vectorised scan, which also proves that
        # no line holds a raw newline of its own (it would split a record in two).
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        if len(ends) != len(lines):
            bad = next(i for i, line in enumerate(lines) if b"\n" in line)
            raise StoreError(f"dataset {self.dataset!r}: record {bad} of this call contains a raw newline; "
                             "records must be compact JSON on one line")
        lengths = np.diff(ends, prepend=-1)
        if self._count and (self._count + len(lines) > self.store.max_datapoints
                            or self._des.data_length + len(data) > self.store.max_bytes):
            self.commit()
        self._add_records(data, lengths)
        self._set_checkpoint(checkpoint)
        if self._count >= self.store.max_datapoints or self._des.data_length >= self.store.max_bytes:
            self.commit()

    def write_file(self, name: str, data: bytes | IO[bytes], meta: dict[str, Any] | None = None, *,
                   size: int | None = None, checkpoint: Any = None) -> int:
        """Append one file datapoint: member ``name``, bytes unchanged. Returns its key."""
        self._need("files")
        length = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else size
        if self._count and (self._count + 1 > self.store.max_datapoints
                            or (length or 0) + self._des.data_length > self.store.max_bytes):
            self.commit()
        des = self._open()
        if isinstance(data, (bytes, bytearray, memoryview)):
            des.add(name, data, meta)
        else:
            des.add_stream(name, data, meta, size=size)
        key = self.next_key + self._count
        self._count += 1
        self._set_checkpoint(checkpoint)
        if self._count >= self.store.max_datapoints or des.data_length >= self.store.max_bytes:
            self.commit()
        return key

    def set_checkpoint(self, checkpoint: Any) -> None:
        """Store ``checkpoint`` with the next commit (every datapoint written so far is in it).

        A callable is kept and called at every commit with the committed next key (the last key
        in committed containers + 1); its result is stored. Callers whose unit of progress (a
        source file) can be split across containers use it to record partial progress exactly.
        """
        self._set_checkpoint(checkpoint)

    def commit(self) -> Datarange | None:
        """Seal the open container, publish it, record it; ``None`` if nothing is pending."""
        if self._des is None or self._count == 0:
            return None
        des, spool = self._des, self._spool
        assert spool is not None
        first, last = self.next_key, self.next_key + self._count - 1
        des.close()
        store, layout = self.store, self.store.layout
        path = layout.datarange(self.dataset, first, last)
        try:
            store.publish(spool, path)
        finally:
            if os.path.exists(spool):
                os.unlink(spool)
        self._des, self._spool = None, None
        datarange = Datarange(self.dataset, first, last, store.url(path), des.size, des.sha256, self._count,
                              self.kind)
        with store.catalog.transaction() as db:
            store.catalog.heartbeat(db, self.dataset, self._token)
            store.catalog.insert_datarange(db, self.dataset, first, last, path, des.size, des.sha256,
                                           self._count, self.kind)
            db.execute("UPDATE datasets SET next_key = ?, last_write = ?, updated = ? WHERE name = ?",
                       (last + 1, time.time(), time.time(), self.dataset))
            if self._has_checkpoint:
                value = self._checkpoint(last + 1) if callable(self._checkpoint) else self._checkpoint
                db.execute("UPDATE datasets SET checkpoint = ? WHERE name = ?", (store.dumps(value), self.dataset))
                self.committed_checkpoint = value
        invalidate(store.fs, path)
        self.next_key, self._count = last + 1, 0
        self._has_checkpoint = callable(self._checkpoint) and self._has_checkpoint
        self.committed.append(datarange)
        if self.on_commit is not None:
            self.on_commit(datarange)
        return datarange

    def close(self) -> None:
        """Commit what is pending, log the session, release the lock."""
        if self._closed:
            return
        try:
            self.commit()
            if self._has_checkpoint:  # progress made after the last datapoint (e.g. an empty file)
                value = self._checkpoint(self.next_key) if callable(self._checkpoint) else self._checkpoint
                with self.store.catalog.transaction() as db:
                    self.store.catalog.heartbeat(db, self.dataset, self._token)
                    db.execute("UPDATE datasets SET checkpoint = ? WHERE name = ?",
                               (self.store.dumps(value), self.dataset))
                self.committed_checkpoint, self._has_checkpoint = value, False
        except BaseException:
            self.abort()
            raise
        self._finish()

    def abort(self) -> None:
        """Drop the open container (nothing of it becomes visible); committed ones stay."""
        if self._closed:
            return
        if self._des is not None:
            self._des.abort()
            if self._spool and os.path.exists(self._spool):
                os.unlink(self._spool)
            self._des, self._spool, self._count = None, None, 0
        self._finish()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals -------------------------------------------------------------------------------

    def _need(self, kind: str) -> None:
        if self._closed:
            raise StoreError(f"dataset {self.dataset!r}: writer is closed")
        if self.kind != kind:
            raise StoreError(f"dataset {self.dataset!r}: this writer takes {self.kind}, not {kind}")

    def _set_checkpoint(self, checkpoint: Any) -> None:
        if checkpoint is not None:
            self._checkpoint, self._has_checkpoint = checkpoint, True

    def _open(self) -> DesWriter:
        if self._des is None:
            spool_dir = self.store.spool_dir(self.dataset)
            fd, self._spool = tempfile.mkstemp(prefix=self.store.spool_prefix(self.dataset), suffix=".des",
                                               dir=spool_dir)
            os.close(fd)
            self._des = DesWriter(self._spool, overwrite=True, big_file_threshold=None,
                                  compression=self.store.compression)
        return self._des

    def _add_records(self, data: bytes | memoryview, lengths: np.ndarray) -> None:
        des = self._open()
        names = record_names(self.next_key + self._count, len(lengths))
        des.add_many(names, data, lengths, check_names=False)  # generated: unique digits + ".json"
        self._count += len(lengths)

    def _remove_leftovers(self) -> None:
        """Delete containers at or after the next key that the catalog does not know (a crash
        between publishing and recording them): they were never committed."""
        store = self.store
        known = {r["path"] for r in store.catalog.dataranges(self.dataset)}
        for path in store.list_range_objects(self.dataset):
            first_last = store.layout.parse_range(path.rsplit("/", 1)[-1])
            if first_last and first_last[0] >= self.next_key and path not in known:
                store.fs.rm_file(path)

    def _finish(self) -> None:
        self._closed = True
        try:
            if self.committed:
                first, last = self.committed[0].first, self.committed[-1].last
                self.store.log(self.dataset, "write", kind=self.kind, first=first, last=last,
                               datapoints=last - first + 1, dataranges=len(self.committed),
                               bytes=sum(d.size for d in self.committed),
                               seconds=round(time.time() - self._started, 3))
        finally:
            self.store.catalog.release_lock(self.dataset, self._token)
