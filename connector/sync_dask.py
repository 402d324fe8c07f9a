"""``des sync --dask``: the files of a stream read, parsed and encoded on Dask workers.

The coordinator (the ``des sync`` process) lists the pending files as the single-process sync
does and submits one task per file; a worker reads and parses its file into Arrow batches (with
the same retries, the same file columns) and encodes each batch into record datapoints
(:func:`~connector.store.writer.encode_records`: the JSON lines, their lengths and CRC-32s),
without keys. The coordinator takes the results in file order, straight from the workers (not
relayed by the scheduler; the record bytes travel out of band, see
:class:`~connector.store.writer.EncodedRecords`), and hands them to the same writer
as the single-process sync (:meth:`~connector.store.writer.DatasetWriter.write_encoded`), which
assigns keys in that order (member names live only in a container's INDEX), writes META and
INDEX and commits: the dataset is the one a single-process sync writes (same bytes, same keys,
same checkpoints). A task is a pure function of its file, so a worker that dies mid-task only
makes Dask run the task again elsewhere; nothing reaches the store twice.

At most ``in_flight`` files (default: two per worker thread) are read ahead, so memory stays
bounded by a few files' records whatever the number of files.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connector.source import FileDone, FileRef, Source
from connector.source.config import SourceConfig
from connector.source.errors import FileChangedError, FileVanishedError
from connector.source.formats import FileStats
from connector.source.read import FILE_COLUMNS, check_changed, check_vanished, file_batches
from connector.store.writer import EncodedRecords, encode_records

log = logging.getLogger("connector.sync")


@dataclass(frozen=True)
class EncodedBatch:
    """Rows of one file, in file order, encoded on a worker (what a ``FileBatch`` is in-process)."""

    stream: str
    file: FileRef
    batch: EncodedRecords


def client_for(scheduler: Any) -> Any:
    """A ``distributed.Client``: ``scheduler`` itself if it is one, else connected to its address."""
    from distributed import Client

    return scheduler if isinstance(scheduler, Client) else Client(scheduler)


def read_on_dask(source: Source, stream: str, state: Mapping[str, Any] | None, client: Any,
                 in_flight: int | None = None) -> Iterator[EncodedBatch | FileDone]:
    """The events :meth:`Source.read` yields for ``stream`` (incremental from ``state``), with each
    file read, and its batches encoded for :meth:`DatasetWriter.write_encoded`, by a Dask worker."""
    all_files = source._stream_files(stream)
    current = source.state(state)
    pending = current.pending(all_files)
    if not pending:
        return
    schema = source._data_schema(stream, all_files)
    options = source._options(stream)
    retries, retry_base = source.config.retry_count, source._retry_base
    if in_flight is None:
        in_flight = max(2, 2 * sum(client.nthreads().values()))
    # A result is fetched straight from the worker that holds it: relayed by the scheduler (a
    # Client's default outside a worker), every record byte would cross the network twice and
    # keep the scheduler's process busy. A client made with direct_to_workers=False keeps the relay.
    direct = getattr(client, "direct_to_workers", None) is not False
    files = iter(pending)
    futures: deque = deque()

    def submit() -> None:
        ref = next(files, None)
        if ref is not None:
            futures.append((ref, client.submit(read_file, source.config, ref, schema, options, retries,
                                               retry_base, pure=False)))

    try:
        for _ in range(in_flight):
            submit()
        while futures:
            ref, future = futures.popleft()
            kind, payload, stats = client.gather(future, direct=direct)
            future.release()
            submit()
            if kind == "vanished":
                check_vanished(source.fs, ref, payload)
                log.warning("%s: skipped, not counted as synced", payload)
                continue
            if kind == "changed":
                check_changed(source.fs, ref, payload)
                log.warning("%s: skipped, not counted as synced; its new version is read next time", payload)
                continue
            for batch in payload:
                yield EncodedBatch(stream, ref, batch)
            current = current.advance(ref)
            if stats.skipped:
                log.warning("%s: skipped %d bad record(s), e.g. %s", ref.key, stats.skipped,
                            "; ".join(stats.skipped_examples))
            yield FileDone(stream, ref, sum(b.num_rows for b in payload), current, stats.skipped,
                           tuple(sorted(stats.type_conflicts)))
    finally:
        for _, future in futures:
            future.cancel()


_filesystems: dict[str, Any] = {}  # per worker process: one filesystem per source config


def _filesystem(config: SourceConfig) -> Any:
    """The source's filesystem, built on the worker from its config (a filesystem object itself
    does not always pickle: the source's literal-key S3 class is made at run time)."""
    key = repr(config)
    if key not in _filesystems:
        _filesystems[key] = config.filesystem()[0]
    return _filesystems[key]


def read_file(config: SourceConfig, ref: Any, schema: pa.Schema, options: Any, retries: int,
              retry_base: float) -> tuple[str, Any, FileStats]:
    """On a worker: ``("done", encoded batches, stats)`` for one file, or ``("vanished"|"changed",
    error, stats)`` for the coordinator to check against a fresh listing (other errors raise)."""
    stats = FileStats()
    try:
        batches = [encode_records(batch, FILE_COLUMNS)
                   for batch in file_batches(_filesystem(config), ref, schema, options, retries, stats, retry_base)
                   if batch.num_rows]
    except FileVanishedError as exc:
        return "vanished", exc, stats
    except FileChangedError as exc:
        return "changed", exc, stats
    return "done", batches, stats
