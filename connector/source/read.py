"""Reading a stream's files into record batches: concurrent across files, ordered in output.

Up to ``max_threads`` files are read at once, each by a worker feeding its own queue, bounded in
bytes; the consumer drains the queues in (last_modified, key) order. So records keep file order,
memory is bounded by ``max_threads`` × (:data:`QUEUE_BYTES` + one batch), and :class:`FileDone` (carrying the state
that is safe to persist) only follows a file once all of its batches have been yielded.
"""

from __future__ import annotations

import logging
import posixpath
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from connector.source import formats
from connector.source.errors import BadDataError, FileChangedError, FileVanishedError, SourceError, TransientError
from connector.source.formats import FileStats, FormatOptions
from connector.source.listing import FileRef
from connector.source.retry import BASE_DELAY, backoff_delays
from connector.storage import describe, is_transient
from connector.scalars import string_scalar, timestamp_us_utc
from connector.source.state import StreamState
from connector.source.formats.parquet import as_text
from connector.source.validate import Column, Validation

log = logging.getLogger("connector.source")

#: Bytes of batches (Arrow size) a worker may read ahead of the consumer, per file; one batch is
#: always let through, however large. A budget in bytes, not batches: small blocks make small
#: batches, and two of them (the old bound) may not cover one S3 request, so the encoder waits
#: (issue 17: JSON Lines on 1 MiB blocks took 4.2 s instead of 2.7 s by wall clock, for 13% more
#: CPU). 4 MiB is ~40,000 bench rows, ~0.1 s of encoding.
QUEUE_BYTES = 4 << 20
#: Files of at least this many bytes are read at most BIG_IN_FLIGHT at a time (the one being
#: emitted and the next), whatever ``max_threads``: each holds blocks and batches (tens of MiB),
#: while the consumer emits one file at a time. Smaller files still overlap up to ``max_threads``
#: (for them the requests' latency, not memory, is what concurrency is for). 1M rows in 4 files
#: of 7-32 MB: 2 instead of 4 at a time cost 40-60 MiB less peak RSS, measured on local files.
BIG_FILE = 4 << 20
BIG_IN_FLIGHT = 2


@dataclass(frozen=True)
class FileBatch:
    """Rows of one file, in file order."""

    stream: str
    file: FileRef
    batch: pa.RecordBatch


@dataclass(frozen=True)
class FileDone:
    """Follows the last batch of a file. ``state`` may be persisted once everything yielded before
    it is durably written."""

    stream: str
    file: FileRef
    records: int
    stream_state: StreamState
    skipped: int = 0
    type_conflicts: tuple[str, ...] = field(default=())
    #: Records dropped by validation_policy skip_record.
    invalid: int = 0

    @property
    def state(self) -> dict[str, Any]:
        """The state's JSON form (built on demand: with a long history it is not small)."""
        return self.stream_state.to_dict()


#: The column ``row_column`` adds: each record's number within its file.
ROW_COLUMN = "_row"

FILE_COLUMNS = ("_last_modified_time", "_file")
"""The columns every record gets from its file: one value throughout a :class:`FileBatch`."""


def reserved_renames(names: Sequence[str]) -> dict[str, str]:
    """Source columns that carry one of our :data:`FILE_COLUMNS` names -> the name they take
    instead, so neither value is overwritten: ``_file`` -> ``_file_2`` (the first of ``_2``,
    ``_3``... not taken by another column), as duplicate CSV header names are made unique.
    The one rule for every format, applied to the stream schema and to each batch alike."""
    taken = set(names) | set(FILE_COLUMNS)
    renames = {}
    for reserved in FILE_COLUMNS:
        if reserved in names:
            n = 2
            while f"{reserved}_{n}" in taken:
                n += 1
            renames[reserved] = f"{reserved}_{n}"
            taken.add(renames[reserved])
    return renames


def add_file_columns(batch: pa.RecordBatch, ref: FileRef, stream_names: Sequence[str] = ()) -> pa.RecordBatch:
    """``batch`` plus ``_last_modified_time`` (timestamp UTC) and ``_file`` (the key) columns; a
    source column of either name is renamed (:func:`reserved_renames` over ``stream_names``, the
    stream schema's columns, then the batch's: the same new name in every batch of a stream)."""
    n = batch.num_rows
    modified = pa.repeat(timestamp_us_utc(ref.last_modified), n)
    key = pa.repeat(string_scalar(ref.key), n)
    names = batch.schema.names
    if any(name in FILE_COLUMNS for name in names):
        renames = reserved_renames([*stream_names, *names])
        names = [renames.get(name, name) for name in names]
        if len(set(names)) != len(names):
            raise BadDataError(f"{ref.key}: columns {', '.join(batch.schema.names)} collide once "
                               f"{', '.join(f'{a} is renamed {b}' for a, b in renames.items())}")
    return pa.RecordBatch.from_arrays(batch.columns + [modified, key], names=names + list(FILE_COLUMNS))


#: Formats whose readers parse each file into the stream schema's types (or text where a value does
#: not fit): their batches never carry a type of the file's own.
READ_AS_SCHEMA_TYPES = frozenset({"csv", "json"})


@dataclass(frozen=True)
class Shape:
    """What a stream does to each batch a format reads, before the file columns are added."""

    #: Records that do not fit the stream's schema are dropped or stop the stream (validation_policy).
    validation: Validation | None = None
    #: Every record's columns go into one object column, ``data`` (Airbyte's schemaless streams).
    schemaless: bool = False
    #: emit_record with a declared schema: its columns; a column whose values the file gives in
    #: another type (a double where an integer is declared) is emitted as text, and said so.
    declared: dict[str, Column] | None = None
    #: emit_record with an inferred schema: its columns, for the formats that read a file with the
    #: file's own types (Parquet, Avro, Excel); CSV and JSON read every file as the schema's types
    #: already, keeping what does not fit as text.
    inferred: dict[str, Column] | None = None

    #: Add ``_row``: each record's number in its file (1-based, in the order the format read them).
    row_column: bool = False

    def apply(self, batch: pa.RecordBatch, ref: FileRef, before: int, stats: FileStats) -> pa.RecordBatch:
        """``batch`` (the file's records ``before + 1``...) shaped for the stream."""
        kept = None
        if self.declared is not None:
            batch = _declared_or_text(batch, self.declared, stats)
        elif self.inferred is not None and ref.format not in READ_AS_SCHEMA_TYPES:
            batch = _declared_or_text(batch, self.inferred, stats)
        if self.validation is not None:
            read = batch.num_rows
            batch, kept, example = self.validation.apply(batch, ref, before)
            stats.invalid += read - batch.num_rows
            if example is not None and len(stats.invalid_examples) < 3:
                stats.invalid_examples.append(example)
        if self.row_column and not self.schemaless and ROW_COLUMN in batch.schema.names:
            raise BadDataError(f"{ref.key}: has a column {ROW_COLUMN!r}, the name row_column gives each record's "
                               "number: rename it, or leave row_column off")
        if self.schemaless:
            data = pa.StructArray.from_arrays(batch.columns, fields=list(batch.schema)) if batch.num_columns else \
                pa.array([{}] * batch.num_rows, pa.struct([]))
            batch = pa.RecordBatch.from_arrays([data], names=["data"])
        if self.row_column:
            numbers = np.arange(before + 1, before + 1 + (len(kept) if kept is not None else batch.num_rows))
            rows = pa.array(numbers if kept is None else numbers[kept], pa.int64())
            batch = pa.RecordBatch.from_arrays([*batch.columns, rows], names=[*batch.schema.names, ROW_COLUMN])
        return batch


def _declared_or_text(batch: pa.RecordBatch, declared: dict[str, Column], stats: FileStats) -> pa.RecordBatch:
    """``batch`` with each column whose type its declared column does not admit as exact text."""
    columns = list(batch.columns)
    for i, name in enumerate(batch.schema.names):
        rule = declared.get(name)
        if rule is None or rule.admits(columns[i].type):
            continue
        if not pa.types.is_string(columns[i].type):
            columns[i] = as_text(columns[i])
        stats.type_conflicts.add(name)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def file_batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
                 retries: int, stats: FileStats, retry_base: float = BASE_DELAY,
                 shape: Shape = Shape()) -> Iterator[pa.RecordBatch]:
    """One file's batches, retrying transient errors; a retry re-opens the file and skips the rows
    already yielded (parsing is deterministic), so nothing is duplicated or lost. ``shape``
    validates or wraps each batch (rows are counted as the format read them)."""
    fmt = formats.get(ref.format)
    delays = backoff_delays(retries, retry_base)
    emitted = 0
    attempt = 0
    while True:
        attempt_stats = FileStats()
        seen = 0
        try:
            for batch in fmt.batches(fs, ref, schema, options, attempt_stats):
                if seen + batch.num_rows <= emitted:
                    seen += batch.num_rows
                    continue
                if seen < emitted:
                    batch = batch.slice(emitted - seen)
                    seen = emitted
                seen += batch.num_rows
                before, emitted = emitted, emitted + batch.num_rows
                # Into the file's stats, not the attempt's: a retry does not read these rows again.
                batch = shape.apply(batch, ref, before, stats)
                if not before and any(name in FILE_COLUMNS for name in batch.schema.names):
                    renames = reserved_renames([*schema.names, *batch.schema.names])
                    log.warning("%s: source column(s) %s renamed %s (the names of the columns every record gets)",
                                ref.key, ", ".join(renames), ", ".join(renames.values()))
                if batch.num_rows:
                    yield add_file_columns(batch, ref, schema.names)
            stats.skipped = attempt_stats.skipped
            stats.skipped_examples = attempt_stats.skipped_examples
            stats.type_conflicts |= attempt_stats.type_conflicts
            return
        except BadDataError as exc:
            if options.on_bad_record != "skip":
                raise
            # The file is unreadable from here on (bad compression, corrupt footer...): keep what
            # was read, count the rest as skipped, and let the sync go on.
            stats.skipped = attempt_stats.skipped + 1
            stats.skipped_examples = attempt_stats.skipped_examples + [f"rest of file: {exc}"]
            return
        except (FileVanishedError, FileChangedError):
            raise
        except Exception as exc:
            if not (isinstance(exc, TransientError) or is_transient(exc)):
                raise
            if attempt >= len(delays):
                raise TransientError(f"{ref.key}: giving up after {retries} retries: {describe(exc)}") from exc
            log.warning("%s: transient error (%s), retry %d/%d in %.2fs", ref.key, describe(exc), attempt + 1,
                        retries, delays[attempt])
            time.sleep(delays[attempt])
            attempt += 1


class _Job:
    """One file being read by a worker thread into a bounded queue."""

    def __init__(self, ref: FileRef, cancel: threading.Event) -> None:
        self.ref = ref
        self.queue: queue.Queue = queue.Queue()  # bounded in bytes by put()
        self.cancel = cancel
        self.stats = FileStats()
        self._held = 0  # bytes of the batches in the queue
        self._room = threading.Condition()

    def put(self, item: tuple[str, Any]) -> bool:
        """Queue ``item`` once the batches queued leave room for it (:data:`QUEUE_BYTES`); False
        when the read was cancelled meanwhile."""
        size = item[1].nbytes if item[0] == "batch" else 0
        with self._room:
            while self._held and self._held + size > QUEUE_BYTES and not self.cancel.is_set():
                self._room.wait(0.05)
            if self.cancel.is_set():
                return False
            self._held += size
        self.queue.put((*item, size))
        return True

    def take(self) -> tuple[str, Any]:
        """The next item (waits for it), making room for the worker."""
        kind, payload, size = self.queue.get()
        with self._room:
            self._held -= size
            self._room.notify()
        return kind, payload

    def run(self, fs, schema, options, retries, retry_base, shape) -> None:
        try:
            for batch in file_batches(fs, self.ref, schema, options, retries, self.stats, retry_base, shape):
                if not self.put(("batch", batch)):
                    return
            self.put(("done", None))
        except FileVanishedError as exc:
            self.put(("vanished", exc))
        except FileChangedError as exc:
            self.put(("changed", exc))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which re-raises it
            self.put(("error", exc))


def _listed_now(fs: fsspec.AbstractFileSystem, ref: FileRef, error: BaseException) -> dict[str, Any] | None:
    """A fresh listing's entry for ``ref`` (None: not listed any more)."""
    parent = posixpath.dirname(ref.path.rstrip("/"))
    try:
        fs.invalidate_cache(parent)
        entries = fs.ls(parent, detail=True)
    except FileNotFoundError:
        return None  # its folder is gone too
    except Exception as exc:  # reported with the file's name
        raise SourceError(f"{ref.key}: could not be opened as listed ({error}) and listing its folder again "
                          f"failed: {describe(exc)}") from exc
    return next((e for e in entries if e.get("name", "").rstrip("/") == ref.path.rstrip("/")), None)


def check_vanished(fs: fsspec.AbstractFileSystem, ref: FileRef, error: BaseException) -> None:
    """Raise :class:`SourceError` unless ``ref``, which failed to open as missing, is really gone.

    A file the listing still shows but that cannot be opened (a key the filesystem does not take
    literally, a broken link...) must not be skipped as "deleted after listing": later files would
    move the cursor past it and it would never be read.
    """
    if _listed_now(fs, ref, error) is not None:
        raise SourceError(f"{ref.key}: listed but cannot be opened ({describe(error)}); "
                          f"not skipped, or the cursor would pass it")


def check_changed(fs: fsspec.AbstractFileSystem, ref: FileRef, error: BaseException) -> None:
    """Raise :class:`SourceError` unless ``ref``, opened with another ETag than listed, really was
    replaced: if the listing still shows the listed ETag, opening the path reads another object."""
    entry = _listed_now(fs, ref, error)
    etag = entry.get("ETag") if entry else None
    if isinstance(etag, str) and etag.strip('"') == ref.etag:
        raise SourceError(f"{ref.key}: opening it reads another object than the one listed ({error}); "
                          f"is the key taken literally by this filesystem?")


def read_files(stream: str, fs: fsspec.AbstractFileSystem, files: list[FileRef], schema: pa.Schema,
               state: StreamState, options: FormatOptions, *, max_threads: int = 1, retries: int = 3,
               retry_base: float = BASE_DELAY, validation: Validation | None = None,
               schemaless: bool = False, declared: dict[str, Column] | None = None,
               inferred: dict[str, Column] | None = None, row_column: bool = False) -> Iterator[FileBatch | FileDone]:
    """Batches of ``files`` (already filtered and ordered), a :class:`FileDone` after each file.
    ``validation``: the stream's validation_policy (records not fitting its schema are dropped,
    counted in a LOG per file, or stop the stream); ``schemaless``: records as ``{"data": {...}}``;
    ``declared``: under emit_record, the declared columns (values of another type become text);
    ``inferred``: under emit_record, the inferred columns (a file's column of another type becomes text);
    ``row_column``: each record gets ``_row``, its number in its file."""
    shape = Shape(validation, schemaless, declared, inferred, row_column)
    cancel = threading.Event()
    pending = deque(files)
    jobs: deque[_Job] = deque()
    workers = max(1, max_threads)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"read-{stream}")

    head: list[_Job] = []  # the job being emitted (taken off ``jobs``), still reading

    def may_start(ref: FileRef) -> bool:
        running = [*head, *jobs]
        if len(running) >= workers:
            return False
        return ref.size < BIG_FILE or sum(job.ref.size >= BIG_FILE for job in running) < BIG_IN_FLIGHT

    def submit() -> None:
        while pending and may_start(pending[0]):
            job = _Job(pending.popleft(), cancel)
            pool.submit(job.run, fs, schema, options, retries, retry_base, shape)
            jobs.append(job)

    try:
        submit()
        while jobs:
            job = jobs.popleft()
            head[:] = [job]
            records = 0
            while True:
                kind, payload = job.take()
                if kind == "batch":
                    records += payload.num_rows
                    yield FileBatch(stream, job.ref, payload)
                    continue
                if kind == "done":
                    state = state.advance(job.ref)
                    if job.stats.skipped:
                        log.warning("%s: skipped %d bad record(s), e.g. %s", job.ref.key, job.stats.skipped,
                                    "; ".join(job.stats.skipped_examples))
                    if validation is not None:
                        # Under skip_record / wait_for_discover no value is kept as text against its type.
                        job.stats.type_conflicts.clear()
                    if job.stats.type_conflicts:
                        log.warning("%s: values not matching the stream's type kept as text in column(s) %s",
                                    job.ref.key, ", ".join(sorted(job.stats.type_conflicts)))
                    if job.stats.invalid:
                        # Worded as Airbyte's file-based streams word it, with the first examples.
                        log.warning("Records in file did not pass validation policy. stream=%s file=%s n_skipped=%d "
                                    "validation_policy=skip_record (e.g. %s)", stream, job.ref.key, job.stats.invalid,
                                    "; ".join(job.stats.invalid_examples))
                    yield FileDone(stream, job.ref, records, state, job.stats.skipped,
                                   tuple(sorted(job.stats.type_conflicts)), job.stats.invalid)
                elif kind == "vanished":
                    check_vanished(fs, job.ref, payload)
                    log.warning("%s: skipped, not counted as synced", payload)
                elif kind == "changed":
                    check_changed(fs, job.ref, payload)
                    log.warning("%s: skipped, not counted as synced; its new version is read next time", payload)
                else:
                    raise payload
                break
            head.clear()
            submit()
    finally:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
