"""DatasetWriter: append datapoints to a dataset, cutting and committing DES containers.

Commit protocol of one container (its object key holds its last key, known only when it is cut):

1. the container is built in a local spool file (never visible under the dataset);
2. when the dataset carries a checkpoint, ``checkpoint-<next key>.<tag>.json`` is written beside
   the containers, so that a catalog rebuilt from storage gets the checkpoint back;
3. the container is published under its final key ``<first>-<last>.<tag>.des`` in one step (a
   rename on a local root, one upload on an object store, which makes an object visible only
   when complete). ``<tag>`` is the lock session's own (see :mod:`connector.store.layout`): a
   writer stalled past its lease and taken over publishes, and on failure deletes, only objects
   no other session uses;
4. ONE catalog transaction records the datarange, the dataset's next key and the checkpoint,
   after checking the lock is still held and the dataset is not frozen. This is the commit point.

Steps 2-4 of a container cut because it reached the size limits run in a background thread while
the next container fills (the upload overlaps the encoding); at most one container is in flight,
so commits stay in key order. An explicit :meth:`DatasetWriter.commit` (and ``close``) returns
only once everything written is committed.

A crash between 3 and 4 leaves a container in storage that the catalog does not know, starting at
the dataset's next key: an uncommitted leftover, which the next writer of the dataset deletes when
it opens (with checkpoint files past the next key and spool files of dead processes).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import pickle
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa

from connector.des import DesWriter
from connector.des.cache import invalidate
from connector.des.writer import line_crcs, member_crcs
from connector.files import is_temp_name
from connector.records import object_lines
from connector.storage import open_filesystem
from connector.store.catalog import Catalog
from connector.store.columns import ColumnsBuilder, Constant
from connector.store.datasets import Datasets
from connector.store.errors import DatasetFrozen, StoreError
from connector.store.layout import validate_dataset_name
from connector.store.model import Datarange, WriteResult
from connector.store.names import record_names
from connector.store.objects import remove_best_effort
from connector.store.oplog import OperationLog
from connector.store.storage import Storage

OnCommit = Callable[[Datarange], None]
_log = logging.getLogger(__name__)
LOG_SEGMENTS = 100  # a writer merges the operation log into one object when it has more segments
DEFAULT_MAX_DATAPOINTS = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How containers are cut and encoded: a container is cut when it holds ``max_datapoints`` or
    its DATA region reaches ``max_bytes``; ``compression`` (``None``, ``"zstd"`` or ``"gzip"``)
    applies to file datapoints."""

    max_datapoints: int = DEFAULT_MAX_DATAPOINTS
    max_bytes: int = DEFAULT_MAX_BYTES
    compression: str | None = None

    def __post_init__(self) -> None:
        if self.max_datapoints < 1 or self.max_bytes < 1:
            raise ValueError("max_datapoints and max_bytes must be positive")


class Writers:
    """Writing to the datasets of one store: writer sessions, and whole writes of records or files."""

    def __init__(self, storage: Storage, catalog: Catalog, oplog: OperationLog, datasets: Datasets,
                 limits: Limits) -> None:
        self.storage, self.catalog, self.oplog, self.datasets = storage, catalog, oplog, datasets
        self.limits = limits

    def writer(self, dataset: str, kind: str = "records", *, wait: float = 30.0,
               on_commit: OnCommit | None = None, row_ids: str | None = None) -> DatasetWriter:
        """A writer appending ``kind`` ("records" or "files") to ``dataset`` (which must exist); one
        per dataset at a time (waits ``wait`` seconds for another to finish, then
        :class:`DatasetLocked`). ``on_commit``: see :class:`DatasetWriter`. ``row_ids`` names a
        UUID column every record written gets (see :mod:`connector.store.columns`)."""
        validate_dataset_name(dataset)
        return DatasetWriter(self.storage, self.catalog, self.oplog, self.limits, dataset, kind, wait=wait,
                             on_commit=on_commit, row_ids=row_ids)

    def write_records(self, dataset: str,
                      batches: Iterable[pa.RecordBatch | pa.Table | Sequence[Mapping]]) -> WriteResult:
        """Append records (Arrow batches or lists of dicts) to ``dataset`` (created if missing)."""
        self.datasets.ensure_dataset(dataset)
        with self.writer(dataset, "records") as w:
            for batch in batches:
                if isinstance(batch, (pa.RecordBatch, pa.Table)):
                    w.write_batch(batch)
                else:
                    w.write_json_lines([orjson.dumps(dict(r)) for r in batch])
        return _result(w.committed)

    def write_files(self, dataset: str, urls: Iterable[str], storage_options: Mapping[str, Any] | None = None,
                    *, relative_to: str | None = None) -> WriteResult:
        """Pack the files at ``urls`` (opened with ``storage_options``) as datapoints of ``dataset``
        (created if missing); a member is named by its path relative to ``relative_to``, or else its
        base name."""
        self.datasets.ensure_dataset(dataset)
        with self.writer(dataset, "files") as w:
            for url in urls:
                fs, path = open_filesystem(url, dict(storage_options or {}))
                info = fs.info(path)
                base = fs._strip_protocol(relative_to).rstrip("/") + "/" if relative_to else None
                name = path[len(base):] if base and path.startswith(base) else path.rsplit("/", 1)[-1]
                meta = {"last_modified": _iso(info), "etag": info.get("ETag") or info.get("etag"),
                        "content_type": info.get("ContentType") or mimetypes.guess_type(name)[0]}
                w.write_file(name, fs.cat_file(path), {k: v for k, v in meta.items() if v is not None})
        return _result(w.committed)


@dataclass(frozen=True)
class _Sealed:
    """A finished container in its spool file, waiting to be published and recorded."""

    first: int
    last: int
    spool: str
    size: int
    sha256: str
    count: int
    data_length: int
    checkpoint: str | None  # JSON text stored with this commit
    carries_checkpoint: bool  # the checkpoint was set by the writer's caller (not just kept)


class DatasetWriter:
    """Appends records or files to one dataset, holding its writer lock; use :meth:`Writers.writer`
    (or :meth:`Store.writer`) to get one.

    ``write_json_lines`` and ``write_file`` calls are never split across containers, so the
    ``checkpoint`` given with a call is stored (with the commit that contains the call's last
    datapoint) exactly when everything of that call is committed. ``write_batch`` (and
    ``write_encoded``) fills containers to the limits and may split a batch.

    ``on_commit(datarange)`` is called once per committed container, in key order; for containers
    cut at the size limits it runs in the writer's commit thread. An error of a background commit
    is raised by the first writer call after it ends (at the latest by ``commit`` or ``close``);
    the writer then takes no more data.
    """

    def __init__(self, storage: Storage, catalog: Catalog, oplog: OperationLog, limits: Limits, dataset: str,
                 kind: str, *, wait: float = 30.0, on_commit: OnCommit | None = None,
                 row_ids: str | None = None) -> None:
        if kind not in ("records", "files"):
            raise ValueError(f"kind must be 'records' or 'files', not {kind!r}")
        self.storage, self.catalog, self.oplog, self.limits = storage, catalog, oplog, limits
        self.dataset, self.kind = dataset, kind
        self.on_commit = on_commit
        _check_writable(catalog.dataset(dataset))
        self._lock = catalog.lock(dataset, wait)
        try:
            row = catalog.dataset(dataset)  # re-read under the lock
            _check_writable(row)
            self.next_key, self.epoch = int(row["next_key"]), int(row["epoch"])
            # The checkpoint in effect: rewritten beside every container so restore finds it.
            self._in_effect: str | None = row["checkpoint"]
            # Checkpoint files valid at the next key, deleted once a commit writes a newer one.
            self._checkpoint_files: list[str] = []
            self._remove_leftovers()
            storage.remove_stale_spools(dataset)
        except BaseException:
            self._lock.release()
            raise
        self.committed: list[Datarange] = []
        self.committed_checkpoint: Any = None  # the checkpoint stored by the latest commit
        self._committer: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self._failed: BaseException | None = None
        self._des: DesWriter | None = None
        self._row_ids = row_ids  # name of the derived row id column, if records get one
        self._columns: ColumnsBuilder | None = None  # per-record columns of the open container
        self._spool: str | None = None
        self._count = 0
        self._file_names: set[str] = set()  # member names of the open container (files)
        self._checkpoint: Any = None
        self._has_checkpoint = False
        self._closed = False
        self._started = time.time()

    # -- writing ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Datapoints in the open container (its first key is :attr:`next_key`)."""
        return self._count

    def write_batch(self, batch: pa.RecordBatch | pa.Table, constant: Collection[str] = ()) -> None:
        """Append every row of an Arrow batch as one record datapoint (compact JSON + ``\\n``).
        ``constant`` names columns that hold one value throughout ``batch`` (encoded once)."""
        self._need("records")
        _check_unique_names(batch.schema, self.dataset)
        data, lengths = object_lines(batch, constant)
        self._write_records(data, lengths, None)

    def write_encoded(self, records: EncodedRecords) -> None:
        """Append records encoded elsewhere by :func:`encode_records` (e.g. on a Dask worker), as
        :meth:`write_batch` of the same batch would: same containers, same bytes. Only keys, META,
        INDEX and the commit are made here; the record bytes and their CRC-32s are taken as given."""
        self._need("records")
        _check_unique_names(records.schema, self.dataset)
        self._write_records(records.data, records.lengths, records.crcs)

    def _write_records(self, data: bytes | memoryview, lengths: np.ndarray, crcs: np.ndarray | None) -> None:
        """Fill containers to the limits with the back-to-back records of ``data`` (a batch may be
        split); ``crcs`` their CRC-32s, or ``None`` to compute them."""
        view, start, done = memoryview(data), 0, 0
        while len(lengths):
            room = self.limits.max_datapoints - self._count
            byte_room = self.limits.max_bytes - self._data_length()
            fits = int(np.searchsorted(np.cumsum(lengths), byte_room, side="right"))
            n = min(room, fits, len(lengths))
            if n == 0:
                if self._count:
                    self._cut()
                    continue
                n = 1  # one record larger than max_bytes gets a container of its own
            size = int(lengths[:n].sum())
            self._add_records(view[start:start + size], lengths[:n],
                              crcs=None if crcs is None else crcs[done:done + n])
            start, done = start + size, done + n
            lengths = lengths[n:]
            if self._count >= self.limits.max_datapoints or self._data_length() >= self.limits.max_bytes:
                self._cut()

    def write_json_lines(self, lines: Sequence[bytes], checkpoint: Any = None,
                         columns: Mapping[str, Sequence[Any] | Constant] | None = None, *,
                         text: bytes | None = None) -> None:
        """Append records given as compact JSON objects (no trailing newline), all in one container.
        Each may be any bytes-like object (e.g. a ``msgspec.Raw``): only joined and checksummed here.

        ``columns`` are metadata of these records (one value each, or a :class:`Constant`) kept in the
        container beside them (see :mod:`connector.store.columns`); the record bytes stay as given.
        ``text``: the lines joined, each ending with ``\\n``, when the caller has it already."""
        self._need("records")
        if not lines:
            return
        data = b"\n".join([*lines, b""]) if text is None else text
        # Member boundaries are the newlines: found by one vectorised scan, which also proves that
        # no line holds a raw newline of its own (it would split a record in two).
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        if len(ends) != len(lines):
            bad = next(i for i, line in enumerate(lines) if b"\n" in bytes(line))
            raise StoreError(f"dataset {self.dataset!r}: record {bad} of this call contains a raw newline; "
                             "records must be compact JSON on one line")
        lengths = np.diff(ends, prepend=-1)
        if self._count and (self._count + len(lines) > self.limits.max_datapoints
                            or self._data_length() + len(data) > self.limits.max_bytes):
            self._cut()
        self._add_records(data, lengths, columns, crcs=line_crcs(lines))
        self._set_checkpoint(checkpoint)
        if self._count >= self.limits.max_datapoints or self._data_length() >= self.limits.max_bytes:
            self._cut()

    def write_file(self, name: str, data: bytes | IO[bytes], meta: dict[str, Any] | None = None, *,
                   size: int | None = None, checkpoint: Any = None) -> int:
        """Append one file datapoint: member ``name``, bytes unchanged. Returns its key.

        A name written again (a changed file packed again) is a new datapoint that supersedes the
        earlier one; a container holds each name once, so the open container is cut first, and
        the result is the same whether or not a cut fell between the two anyway."""
        self._need("files")
        length = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else size
        if self._count and (name in self._file_names or self._count + 1 > self.limits.max_datapoints
                            or (length or 0) + self._data_length() > self.limits.max_bytes):
            self._cut()
        des = self._open()
        if isinstance(data, (bytes, bytearray, memoryview)):
            des.add(name, data, meta)
        else:
            des.add_stream(name, data, meta, size=size)
        key = self.next_key + self._count
        self._count += 1
        self._file_names.add(name)
        self._set_checkpoint(checkpoint)
        if self._count >= self.limits.max_datapoints or des.data_length >= self.limits.max_bytes:
            self._cut()
        return key

    def set_checkpoint(self, checkpoint: Any) -> None:
        """Store ``checkpoint`` with the next commit (every datapoint written so far is in it).

        A callable is kept and called at every commit with the committed next key (the last key
        in committed containers + 1); its result is stored. Callers whose unit of progress (a
        source file) can be split across containers use it to record partial progress exactly.
        """
        self._set_checkpoint(checkpoint)

    def commit(self) -> Datarange | None:
        """Seal the open container and return once it, and any container still in flight, is
        committed; the open container's datarange, or ``None`` if nothing was open."""
        self._join()
        sealed = self._seal()
        if sealed is None:
            return None
        try:
            return self._record(sealed)
        except BaseException as exc:
            self._failed = exc  # its keys are spent: later data must not leave a gap before it
            raise

    def close(self) -> None:
        """Commit what is pending, log the session, release the lock."""
        if self._closed:
            return
        try:
            self.commit()
            if self._has_checkpoint:  # progress made after the last datapoint (e.g. an empty file)
                text = self._checkpoint_text(self.next_key)
                assert text is not None
                path = self.storage.layout.checkpoint(self.dataset, self.epoch, self.next_key, self._lock.tag)
                self.storage.write_bytes(path, text.encode())
                try:
                    with self.catalog.transaction() as db:
                        self._lock.check(db)
                        self.catalog.set_checkpoint(db, self.dataset, text)
                except BaseException:
                    remove_best_effort(self.storage.fs, path)
                    raise
                self._replace_checkpoint_files(path)
                self._in_effect = text
                self.committed_checkpoint, self._has_checkpoint = _loads(text), False
        except BaseException:
            self.abort()
            raise
        self._finish()

    def abort(self) -> None:
        """Drop the open container (nothing of it becomes visible); committed ones stay, and so
        does a container already handed to the commit thread once its commit ends."""
        if self._closed:
            return
        try:
            self._join()
        except Exception as exc:  # noqa: BLE001 - aborting anyway; the caller has its own error
            _log.warning("dataset %r: a background commit failed: %s", self.dataset, exc)
        if self._des is not None:
            self._des.abort()
            if self._spool and os.path.exists(self._spool):
                os.unlink(self._spool)
            self._des, self._spool, self._count, self._columns = None, None, 0, None
            self._file_names = set()
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
        if self._in_flight is not None and self._in_flight.done():
            self._join()  # surface a background commit's error at the first call after it
        self._raise_if_failed()
        if self.kind != kind:
            raise StoreError(f"dataset {self.dataset!r}: this writer takes {self.kind}, not {kind}")

    def _set_checkpoint(self, checkpoint: Any) -> None:
        if checkpoint is not None:
            self._checkpoint, self._has_checkpoint = checkpoint, True

    def _cut(self) -> None:
        """The open container reached a limit: seal it and commit it in the commit thread while
        the next one fills (after the previous one in flight is committed: commits stay in order)."""
        self._join()
        sealed = self._seal()
        if sealed is not None:
            if self._committer is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"des-commit-{self.dataset}")
            self._in_flight = self._committer.submit(self._record, sealed)

    def _join(self) -> None:
        """Wait for the container in flight; re-raise its commit's error."""
        future, self._in_flight = self._in_flight, None
        if future is None:
            return
        try:
            future.result()
        except BaseException as exc:
            self._failed = exc
            raise

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise StoreError(f"dataset {self.dataset!r}: an earlier commit failed ({self._failed}); "
                             "this writer takes no more data") from self._failed

    def _seal(self) -> _Sealed | None:
        """Finish the open container in its spool file; the keys after it go to the next one."""
        self._raise_if_failed()
        if self._des is None or self._count == 0:
            return None
        des, spool = self._des, self._spool
        assert spool is not None
        self._des, self._spool = None, None
        self._file_names = set()
        first, last = self.next_key, self.next_key + self._count - 1
        data_length = des.data_length  # before close() adds META, INDEX and footer
        columns, self._columns = self._columns, None
        try:
            extra = columns.meta() if columns is not None else None
            if extra:
                des.set_first_meta(extra)
            des.close()
            checkpoint = self._checkpoint_text(last + 1)
        except BaseException:
            if os.path.exists(spool):
                os.unlink(spool)
            self._count = 0
            raise
        sealed = _Sealed(first, last, spool, des.size, des.sha256, self._count, data_length, checkpoint,
                         self._has_checkpoint)
        self._in_effect = checkpoint
        self.next_key, self._count = last + 1, 0
        self._has_checkpoint = callable(self._checkpoint) and self._has_checkpoint
        return sealed

    def _record(self, s: _Sealed) -> Datarange:
        """Publish a sealed container and record it in the catalog (steps 2-4 of the protocol)."""
        storage, catalog, layout = self.storage, self.catalog, self.storage.layout
        tag = self._lock.tag
        path = layout.datarange(self.dataset, s.first, s.last, self.epoch, tag)
        checkpoint_path = layout.checkpoint(self.dataset, self.epoch, s.last + 1, tag)
        try:
            if s.checkpoint is not None:
                storage.write_bytes(checkpoint_path, s.checkpoint.encode())
            storage.publish(s.spool, path)
        finally:
            if os.path.exists(s.spool):
                os.unlink(s.spool)
        datarange = Datarange(self.dataset, s.first, s.last, storage.url(path), s.size, s.sha256, s.count,
                              self.kind, s.data_length)
        try:
            with catalog.transaction() as db:
                self._lock.check(db)
                _check_writable(catalog.find_dataset(self.dataset))
                catalog.insert_datarange(db, self.dataset, s.first, s.last, layout.relative(path), s.size,
                                               s.sha256, s.count, self.kind, s.data_length)
                catalog.record_commit(db, self.dataset, s.last + 1, s.checkpoint)
        except BaseException:
            # Never recorded: remove it now rather than leave it to the next writer. Both objects
            # carry this session's tag, so they are ours even if the lock was taken over.
            remove_best_effort(storage.fs, path)
            if s.checkpoint is not None:
                remove_best_effort(storage.fs, checkpoint_path)
            raise
        self._replace_checkpoint_files(checkpoint_path if s.checkpoint is not None else None)
        if s.carries_checkpoint:
            self.committed_checkpoint = _loads(s.checkpoint)
        invalidate(storage.fs, path)
        self.committed.append(datarange)
        if self.on_commit is not None:
            self.on_commit(datarange)
        return datarange

    def _data_length(self) -> int:
        """Bytes of DATA in the open container (0: none open)."""
        return self._des.data_length if self._des is not None else 0

    def _open(self) -> DesWriter:
        if self._des is None:
            self._spool = self.storage.new_spool(self.dataset)
            self._des = DesWriter(self._spool, overwrite=True, big_file_threshold=None,
                                  compression=self.limits.compression)
        return self._des

    def _add_records(self, data: bytes | memoryview, lengths: np.ndarray,
                     columns: Mapping[str, Sequence[Any] | Constant] | None = None, *,
                     crcs: np.ndarray | None = None) -> None:
        des = self._open()
        if columns or self._row_ids:
            if self._columns is None:
                self._columns = ColumnsBuilder(self._row_ids)
            self._columns.add(len(lengths), columns or {})
        names = record_names(self.next_key + self._count, len(lengths))
        des.add_many(names, data, lengths, check_names=False, crcs=crcs)  # generated: unique digits + ".json"
        self._count += len(lengths)

    def _checkpoint_text(self, next_key: int) -> str | None:
        """The checkpoint to store with a commit reaching ``next_key`` (JSON text), or the one in
        effect when this commit brings none."""
        if not self._has_checkpoint:
            return self._in_effect
        value = self._checkpoint(next_key) if callable(self._checkpoint) else self._checkpoint
        return orjson.dumps(value).decode()

    def _replace_checkpoint_files(self, new: str | None) -> None:
        """A commit stored the checkpoint file ``new`` (or none): the files it replaces go."""
        if new is None:
            return
        for old in self._checkpoint_files:
            if old != new:
                remove_best_effort(self.storage.fs, old)
        self._checkpoint_files = [new]

    def _remove_leftovers(self) -> None:
        """Delete containers at or after the next key that the catalog does not know (a crash
        between publishing and recording them, or a stale session's: never committed), and
        checkpoint files past it. Runs under the lock, before this session publishes anything; an
        object of a later session is left alone (this one may have stalled and been taken over)."""
        storage, catalog, layout = self.storage, self.catalog, self.storage.layout
        known = {layout.absolute(self.dataset, r["path"]) for r in catalog.dataranges(self.dataset)}
        objects = storage.list_range_objects(self.dataset, self.epoch, checkpoints=True, temporaries=True)
        for path in [p for p in objects if is_temp_name(p.rsplit("/", 1)[-1])]:
            # An atomic write a killed session never renamed: every writer and maintenance step of
            # the dataset holds this lock, so no live process is writing it.
            remove_best_effort(storage.fs, path)
            objects.remove(path)
        for path in objects:
            base = path.rsplit("/", 1)[-1]
            if layout.tag_of(base) > self._lock.tag:
                continue
            first_last = layout.parse_range(base)
            if first_last is not None:
                if first_last[0] >= self.next_key and path not in known:
                    storage.fs.rm_file(path)
            elif (layout.parse_checkpoint(base) or 0) > self.next_key:
                storage.fs.rm_file(path)
        self._checkpoint_files = storage.checkpoint_files(objects, self.next_key)

    def _finish(self) -> None:
        self._closed = True
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        try:
            if self.committed:
                first, last = self.committed[0].first, self.committed[-1].last
                self.oplog.log(self.dataset, "write", kind=self.kind, first=first, last=last,
                               datapoints=last - first + 1, dataranges=len(self.committed),
                               bytes=sum(d.size for d in self.committed),
                               seconds=round(time.time() - self._started, 3))
                self.oplog.compact(self.dataset, keep_segments=LOG_SEGMENTS)
        except (OSError, ValueError) as exc:  # the data is committed; a lost log line must not undo that
            _log.warning("dataset %r: could not append to the operation log: %s", self.dataset, exc)
        finally:
            self._lock.release()


@dataclass(frozen=True)
class EncodedRecords:
    """Rows of a batch encoded as record datapoints, without keys (member names live only in a
    container's INDEX, so keys are given when :meth:`DatasetWriter.write_encoded` writes them):
    the compact JSON lines back to back, each line's length and CRC-32, and the batch's schema
    (for the writer's column-name check). Pickled with protocol 5 (Dask's), the record bytes and
    both arrays travel out of band (see :meth:`__reduce_ex__`); ``data`` is then a read-only
    ``memoryview`` of the received buffer, which the writer takes as it takes ``bytes``."""

    data: bytes | memoryview
    lengths: np.ndarray  # int64, bytes of each line (its newline included)
    crcs: np.ndarray  # int64, zlib CRC-32 of each line, as DesWriter.add_many stores it
    schema: pa.Schema

    @property
    def num_rows(self) -> int:
        """How many records (as ``pa.RecordBatch.num_rows``)."""
        return len(self.lengths)

    def slice(self, start: int) -> EncodedRecords:
        """The records from ``start`` on (those of a file already committed are dropped on resume)."""
        skip = int(self.lengths[:start].sum())
        return EncodedRecords(self.data[skip:], self.lengths[start:], self.crcs[start:], self.schema)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # In band, pickle copies the record bytes into its stream, and distributed's pickle then
        # scans that whole stream for b"__main__"; out of band they are a frame of their own,
        # sent and received without a copy (numpy already sends the two arrays that way).
        if isinstance(protocol, int) and protocol >= 5:
            return _encoded_records, (pickle.PickleBuffer(self.data), self.lengths, self.crcs, self.schema)
        return _encoded_records, (bytes(self.data), self.lengths, self.crcs, self.schema)


def _encoded_records(data: Any, lengths: np.ndarray, crcs: np.ndarray, schema: pa.Schema) -> EncodedRecords:
    """Unpickle :class:`EncodedRecords`: ``data`` is bytes (in band) or the buffer it travelled in."""
    return EncodedRecords(data if isinstance(data, bytes) else memoryview(data).cast("B"), lengths, crcs, schema)


def encode_records(batch: pa.RecordBatch | pa.Table, constant: Collection[str] = ()) -> EncodedRecords:
    """Encode ``batch`` for :meth:`DatasetWriter.write_encoded` exactly as :meth:`DatasetWriter.write_batch`
    encodes it (``constant`` as there)."""
    data, lengths = object_lines(batch, constant)
    return EncodedRecords(data, lengths, member_crcs(data, lengths), batch.schema)


def _check_unique_names(fields: pa.Schema | pa.StructType, dataset: str) -> None:
    """Two columns (or struct fields) of one name would be one JSON key twice: no table reads it back."""
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        dup = next(n for i, n in enumerate(names) if n in names[:i])
        raise StoreError(f"dataset {dataset!r}: the batch has two columns (or struct fields) named {dup!r}; "
                         "rename one, a record cannot hold a key twice")
    for f in fields:
        t = f.type
        while pa.types.is_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        if pa.types.is_struct(t):
            _check_unique_names(t, dataset)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _iso(info: Mapping[str, Any]) -> str | None:
    """An object's modification time (from its fsspec ``info``) as ISO 8601 text, if it has one."""
    value = info.get("LastModified") or info.get("mtime") or info.get("created")
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _result(ranges: list[Datarange]) -> WriteResult:
    if not ranges:
        return WriteResult(None, None, 0, 0, 0)
    return WriteResult(ranges[0].first, ranges[-1].last, sum(d.count for d in ranges),
                       sum(d.size for d in ranges), len(ranges))


def _check_writable(row) -> None:
    if row is None:
        raise StoreError("dataset was deleted while being written")
    if row["frozen"]:
        raise DatasetFrozen(f"dataset {row['name']!r} is frozen: unfreeze it to write")
