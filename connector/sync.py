"""``des sync``: source -> store in one process, Arrow batches straight into datarange writers.

The source state of a stream lives with its data: each datarange commit stores, in the same
catalog transaction, the state after the last file whose records are all inside committed
containers. A crashed sync therefore resumes exactly where its data ends (no file is read twice
into the dataset, none is skipped). The ``--state`` file is a copy written after every commit, in
Olake's shape ``{stream: {"_last_modified_time": ..., "_files_at_cursor": [...], ...}}`` (the
source's state, :mod:`connector.source.state`), for tools that want it; when the catalog holds a
newer state, the catalog wins.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from connector.des.names import safe_member_name
from connector.destination.config import DestinationConfig
from connector.errors import ConnectorError
from connector.files import write_atomically
from connector.source import FileBatch, FileDone, FileRef, Source
from connector.source.read import FILE_COLUMNS, check_vanished
from connector.source.state import StreamState
from connector.storage import describe, is_s3fs
from connector.store import Store
from connector.store.writer import EncodedRecords, encode_records
from connector.sync_dask import EncodedBatch, read_on_dask

FETCH_BATCH_FILES = 256
#: Batches encoded ahead of the one being written (each holds its rows twice: Arrow and JSON).
ENCODE_AHEAD = 2
FETCH_BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class StreamSummary:
    """What ``des sync`` did for one stream: files, datapoints, bytes, dataranges, seconds and the
    state it ended with."""
    stream: str
    dataset: str
    files: int = 0
    records: int = 0
    bytes: int = 0
    dataranges: int = 0
    seconds: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)

    note: str = ""  # e.g. why a state was not used

    def line(self) -> str:
        """The one-line summary ``des sync`` prints for the stream."""
        return (f"{self.stream} -> {self.dataset}: {self.files} files, {self.records} datapoints, "
                f"{self.bytes} bytes in {self.dataranges} dataranges, {self.seconds:.2f} s"
                + (f" ({self.note})" if self.note else ""))


@dataclass(frozen=True)
class StreamMode:
    """How one stream is synced: ``full_refresh`` reads every file again (no state),
    ``overwrite`` replaces the dataset's data once the new data is complete."""

    sync_mode: str = "incremental"
    destination_sync_mode: str = "append"

    def __post_init__(self) -> None:
        if self.sync_mode not in ("incremental", "full_refresh"):
            raise ConnectorError(f"sync_mode must be 'incremental' or 'full_refresh', not {self.sync_mode!r}")
        if self.destination_sync_mode not in ("append", "overwrite"):
            raise ConnectorError("destination_sync_mode must be 'append' or 'overwrite', not "
                                 f"{self.destination_sync_mode!r}")


# Beside each stream's state in the state file: the dataset it describes. A state whose dataset
# was deleted, truncated or rotated since (another created time or key space) describes no data.
DATASET_MARK = "_des_dataset"


def default_state_path(destination: DestinationConfig) -> str:
    """Where ``des sync`` keeps its state file without ``--state``: beside a local root
    (``out/store`` -> ``out/store.state.json``), under the user cache directory for a remote one."""
    root = destination.root_url
    if "://" not in root or root.startswith("file://"):
        return os.path.abspath(root.removeprefix("file://")).rstrip("/") + ".state.json"
    import hashlib

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "des-connector", "state", hashlib.sha256(root.encode()).hexdigest()[:16] + ".json")


def load_state(path: str | None) -> dict[str, Any]:
    """The state saved at ``path`` ({stream: state}); ``{}`` if there is no file. A file that is not
    a JSON object is a :class:`ConnectorError`."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, "rb") as f:
            state = json.load(f)
    except ValueError as exc:
        raise ConnectorError(f"state file {path} is not valid JSON: {exc}") from None
    if not isinstance(state, dict):
        raise ConnectorError(f"state file {path} must hold a JSON object {{stream: state}}")
    return state


def save_state(path: str, state: Mapping[str, Any]) -> None:
    """Write atomically and durably: a reader sees the old file or the new one, never half of one."""
    write_atomically(path, json.dumps(state, indent=2, sort_keys=True).encode())


class Sync:
    """One run of source -> store. ``progress(stream, n_records_or_files)`` is called as work advances."""

    def __init__(self, source_config: Mapping[str, Any], destination: DestinationConfig, *,
                 state_path: str | None = None, mode: str = "records",
                 progress: Callable[[str, int], None] | None = None, dask: Any = None) -> None:
        if mode not in ("records", "files"):
            raise ConnectorError(f"mode must be 'records' or 'files', not {mode!r}")
        if dask is not None and mode != "records":
            raise ConnectorError("dask: only records mode reads files on Dask workers (not --mode files)")
        self.dask = dask  # a distributed.Client or a scheduler address: files read by its workers
        self._client: Any = None  # the connected Client, during run()
        self.source = Source(source_config)
        self.destination = destination
        self.mode = mode
        self.state_path = state_path
        self.state = load_state(state_path)
        self.modes: dict[str, StreamMode] = {}
        self.full_refresh = False
        self.progress = progress or (lambda stream, n: None)

    def run(self, streams: Iterable[str] | None = None, modes: Mapping[str, StreamMode] | None = None, *,
            full_refresh: bool = False) -> list[StreamSummary]:
        """Sync ``streams`` (default: all); ``modes`` per stream (default: incremental, append);
        ``full_refresh`` reads every file of every stream again."""
        self.modes = dict(modes or {})
        self.full_refresh = full_refresh
        available = self.source.streams()
        if not available:
            raise ConnectorError(self.source.no_streams_message())
        chosen = list(streams) if streams else available
        unknown = [s for s in chosen if s not in available]
        if unknown:
            raise ConnectorError(f"unknown stream(s) {', '.join(unknown)} (streams: {', '.join(available) or 'none'})")
        targets: dict[str, str] = {}
        for stream in chosen:
            dataset = self.destination.dataset_for(stream, None)
            if dataset in targets:  # each dataset's checkpoint holds one stream's source state
                raise ConnectorError(f"streams {targets[dataset]!r} and {stream!r} both map to dataset {dataset!r}: "
                                     f"make 'dataset_name' tell them apart (e.g. with {{stream}})")
            targets[dataset] = stream
        client = None
        if self.dask is not None:
            from connector.sync_dask import client_for

            client = self._client = client_for(self.dask)
        try:
            with self.destination.open_store() as store:
                return [self._stream(store, s) for s in chosen]
        finally:
            if client is not None and client is not self.dask:
                client.close()  # connected here: closed here

    # -- one stream -------------------------------------------------------------------------------

    def _stream(self, store: Store, stream: str) -> StreamSummary:
        dataset = self.destination.dataset_for(stream, None)
        mode = self.modes.get(stream, StreamMode())
        store.ensure_dataset(dataset)
        overwrite = mode.destination_sync_mode == "overwrite"
        if overwrite:
            store.begin_overwrite(dataset)  # the old data stays readable until the new is complete
        mark = _dataset_mark(store, dataset)
        summary = StreamSummary(stream, dataset)
        started = time.monotonic()

        def on_commit(datarange) -> None:
            summary.dataranges += 1
            summary.bytes += datarange.size
            committed = writer.committed_checkpoint
            if committed and self.state_path:
                self.state[stream] = {**(committed["source_state"] or {}), DATASET_MARK: mark}
                save_state(self.state_path, self.state)

        kind = "records" if self.mode == "records" else "files"
        other = {d.kind for d in store.dataranges(dataset)} - {kind}
        if other:
            raise ConnectorError(f"dataset {dataset!r} holds {', '.join(sorted(other))} datapoints; --mode {self.mode} "
                                 f"needs a dataset of its own: set 'dataset_name' in the destination config "
                                 f"(e.g. \"{{stream}}_{kind}\")")
        writer = store.writer(dataset, kind, on_commit=on_commit)
        with writer:
            # Read under the writer lock: a concurrent sync that held it has moved the state on.
            checkpoint = store.checkpoint(dataset)
            ours = (isinstance(checkpoint, dict) and "source_state" in checkpoint
                    and checkpoint.get("mode", "records") == self.mode)
            state = checkpoint["source_state"] if ours else self._file_state(stream, mark, summary)
            partial = checkpoint.get("partial") if ours else None
            if mode.sync_mode == "full_refresh" or self.full_refresh:
                state, partial = None, None  # every file again
            if self.mode == "records":
                self._records(stream, state, partial, writer, summary)
            else:
                self._files(stream, state, writer, summary)
        if overwrite:
            store.finish_overwrite(dataset)
        summary.seconds = time.monotonic() - started
        summary.state = {k: v for k, v in (self.state.get(stream) or {}).items() if k != DATASET_MARK}
        if writer.committed_checkpoint:
            summary.state = writer.committed_checkpoint["source_state"]
        if self.state_path:
            self.state[stream] = {**(summary.state or {}), DATASET_MARK: mark}
            save_state(self.state_path, self.state)
        return summary

    def _file_state(self, stream: str, mark: dict[str, Any], summary: StreamSummary) -> Any:
        """The state file's entry for ``stream`` when the dataset has no checkpoint of ours: used
        if it carries no dataset mark (a state from elsewhere) or this dataset's; a state written
        for an earlier dataset of that name (deleted, truncated, rotated) describes no data here."""
        entry = self.state.get(stream)
        if not isinstance(entry, dict) or DATASET_MARK not in entry:
            return entry
        if entry[DATASET_MARK] != mark:
            summary.note = (f"state file entry ignored: it was written for an earlier dataset {mark['name']!r} "
                            "(deleted, truncated or rotated since), so every file is read")
            return None
        return {k: v for k, v in entry.items() if k != DATASET_MARK}

    def _records(self, stream: str, state: Any, partial: dict | None, writer, summary: StreamSummary) -> None:
        """Containers may be cut inside a file, so the checkpoint stored with each commit holds the
        state after the last whole file plus how many rows of the file in progress are committed;
        a resumed sync drops those rows when it reads that same file (same key, time and size).

        Batches are encoded in a thread (Arrow's kernels run without the GIL) up to
        ``ENCODE_AHEAD`` batches ahead of the one being written; everything that touches the
        writer or the checkpoint happens here, in event order."""
        progress = _FileProgress(state, partial)
        writer.set_checkpoint(lambda next_key: progress.checkpoint(next_key))
        events: Iterator[FileBatch | EncodedBatch | FileDone]
        if self.dask is not None:
            events = read_on_dask(self.source, stream, state, self._client)
        else:
            events = self.source.read(stream, state)
        encoder = ThreadPoolExecutor(1, thread_name_prefix="des-sync-encode") if self.dask is None else None
        ahead: deque[tuple[FileBatch | EncodedBatch | FileDone, Future[EncodedRecords] | None]] = deque()

        def take(event: FileBatch | EncodedBatch | FileDone, encoded: Future[EncodedRecords] | None) -> None:
            if isinstance(event, (FileBatch, EncodedBatch)):
                batch = progress.batch(event.file, event.batch, writer.next_key + writer.pending)
                if batch.num_rows and isinstance(event, EncodedBatch):
                    writer.write_encoded(batch)  # encoded by a Dask worker: keys, INDEX and commit here
                elif batch.num_rows and encoded is not None and batch is event.batch:
                    writer.write_encoded(encoded.result())  # the same bytes write_batch would make
                elif batch.num_rows:  # rows dropped on resume: the rest encoded here
                    writer.write_batch(batch, FILE_COLUMNS)
                summary.records += batch.num_rows
                self.progress(stream, batch.num_rows)
            elif isinstance(event, FileDone):
                summary.files += 1
                progress.done(event.file, event.stream_state)

        try:
            for event in events:
                encoded = None
                if encoder is not None and isinstance(event, FileBatch) and event.batch.num_rows:
                    encoded = encoder.submit(encode_records, event.batch, FILE_COLUMNS)
                ahead.append((event, encoded))
                if len(ahead) > ENCODE_AHEAD:
                    take(*ahead.popleft())
            while ahead:
                take(*ahead.popleft())
        finally:
            # On an error too: the reader threads stop (one blocked on a full read-ahead queue
            # would otherwise keep the process from exiting while the traceback holds the generator).
            getattr(events, "close", lambda: None)()
            if encoder is not None:
                encoder.shutdown(wait=True, cancel_futures=True)

    def _files(self, stream: str, state: Any, writer, summary: StreamSummary) -> None:
        progress = _FilesProgress(self.source.state(state))
        writer.set_checkpoint(progress.checkpoint)
        refs = self.source.files(stream, state)
        fs = self.source.fs
        options = _fetch_options(fs, self.source.config.max_threads)
        start = 0
        while start < len(refs):
            # Fetch a batch, max_threads GETs at a time (fsspec gathers them), then write in order.
            batch: list[FileRef] = []
            size = 0
            while start + len(batch) < len(refs) and len(batch) < FETCH_BATCH_FILES and size < FETCH_BATCH_BYTES:
                ref = refs[start + len(batch)]
                batch.append(ref)
                size += ref.size
            # cat_ranges issues only the GETs (fs.cat would first HEAD every path to expand it), and
            # s3fs's max_concurrency=1 stops its cat_file from a HEAD per object to plan chunked GETs.
            plain = [r for r in batch if r.member is None]
            fetched = iter(fs.cat_ranges([r.path for r in plain], [None] * len(plain), [None] * len(plain),
                                         on_error="return", **options) if plain else [])
            # A member of a zip archive is its own file: its bytes, not the archive's path.
            blobs = [next(fetched) if ref.member is None else self._member(ref) for ref in batch]
            for ref, data in zip(batch, blobs):
                if isinstance(data, FileNotFoundError):
                    check_vanished(fs, ref, data)
                    continue  # deleted since listing: not synced, picked up if it comes back
                if isinstance(data, BaseException):
                    data = self._refetch(ref, data)
                    if data is None:
                        continue
                meta = {"last_modified": ref.last_modified.isoformat().replace("+00:00", "Z"), "etag": ref.etag,
                        "source_url": ref.url}
                # A legal object key may not be a member name ('//', '\', a control character):
                # packed under a reversible safe name, with the key itself in META.
                name = safe_member_name(ref.key)
                if name != ref.key:
                    meta["source_key"] = ref.key
                progress.add(ref, writer.next_key + writer.pending)
                writer.write_file(name, data, {k: v for k, v in meta.items() if v is not None})
                summary.files += 1
                summary.records += 1
                self.progress(stream, 1)
            start += len(batch)

    def _fetch_one(self, ref) -> bytes:
        """One object's bytes; a zip member's are read from inside its archive."""
        if ref.member is None:
            return self.source.fs.cat_file(ref.path)
        from connector.source.formats import open_raw

        with open_raw(self.source.fs, ref) as member:
            return member.read()

    def _member(self, ref) -> bytes | BaseException:
        """The bytes of zip member ``ref`` (read by range), or the error, as ``cat_ranges`` gives."""
        try:
            return self._fetch_one(ref)
        except Exception as exc:  # noqa: BLE001 - vanished: skipped; else retried by _refetch
            return exc

    def _refetch(self, ref, first_error: BaseException) -> bytes | None:
        """One object whose batched GET failed: retried with backoff like the source's reads;
        ``None`` if it vanished since the listing (it is not counted as synced)."""
        from connector.source.retry import call_with_retry

        try:
            return call_with_retry(lambda: self._fetch_one(ref), self.source.config.retry_count)
        except FileNotFoundError as exc:
            check_vanished(self.source.fs, ref, exc)
            return None
        except Exception as exc:  # reported with the object's name
            raise ConnectorError(f"cannot read {ref.url} after {self.source.config.retry_count} retries: "
                                 f"{describe(exc)}") from exc


def _dataset_mark(store: Store, dataset: str) -> dict[str, Any]:
    """What identifies the data a state describes: the dataset's name, creation time and key space."""
    d = store.get_dataset(dataset)
    return {"name": d.name, "created": d.created, "epoch": d.epoch}


class _FileProgress:
    """Which rows of the file being read are committed, for exact checkpoints mid-file."""

    def __init__(self, state: Any, partial: dict | None) -> None:
        self.state = state  # as given (a dict) until a file is done, then that file's StreamState
        self.partial = partial  # from the previous run: rows of one file already committed
        self.ref = None
        self.start_key = 0  # key of this run's first row of ``ref``
        self.skipped = 0  # rows of ``ref`` committed by a previous run (dropped here)
        self.dropped = 0  # ... of which dropped so far

    @staticmethod
    def _identity(ref) -> dict[str, Any]:
        return {"key": ref.key, "last_modified": ref.last_modified.isoformat(), "size": ref.size}

    def batch(self, ref, batch, next_key: int):
        if self.ref is None or self.ref.key != ref.key:
            self.ref, self.start_key, self.skipped, self.dropped = ref, next_key, 0, 0
            p = self.partial
            if p and {k: p.get(k) for k in ("key", "last_modified", "size")} == self._identity(ref):
                self.skipped = int(p["rows"])
                self.partial = None
        if self.dropped < self.skipped:
            cut = min(self.skipped - self.dropped, batch.num_rows)
            self.dropped += cut
            batch = batch.slice(cut)
        return batch

    def done(self, ref, state: Any) -> None:
        self.state, self.ref = state, None

    def checkpoint(self, next_key: int) -> dict[str, Any]:
        state = self.state.to_dict() if isinstance(self.state, StreamState) else self.state
        cp: dict[str, Any] = {"source_state": state, "mode": "records"}
        if self.ref is not None:
            rows = self.skipped + max(0, next_key - self.start_key)
            if rows:
                cp["partial"] = {**self._identity(self.ref), "rows": rows}
        return cp


class _FilesProgress:
    """The source state of files mode, built only when a commit asks for it: many objects often
    share one LastModified second, and rebuilding the state per object would be quadratic in their
    number. Each build advances the last one by the objects committed since."""

    def __init__(self, state: StreamState) -> None:
        self.state = state  # covers the first ``self.covered`` objects added
        self.covered = 0
        self.added: list[tuple[int, Any]] = []  # (datapoint key, ref) in write order

    def add(self, ref, key: int) -> None:
        """``ref`` is about to be written as datapoint ``key``."""
        self.added.append((key, ref))

    def checkpoint(self, next_key: int) -> dict[str, Any]:
        """The state once every datapoint below ``next_key`` is committed."""
        upto = bisect.bisect_left(self.added, next_key, key=lambda item: item[0])
        if upto > self.covered:
            self.state = self.state.advance_all(ref for _, ref in self.added[self.covered:upto])
            self.covered = upto
        return {"source_state": self.state.to_dict(), "mode": "files"}


def _fetch_options(fs, concurrency: int) -> dict[str, Any]:
    """cat_ranges options: at most ``concurrency`` GETs at once (async filesystems gather them),
    one plain GET per object (s3fs >= 2024.12 HEADs first otherwise)."""
    from fsspec.asyn import AsyncFileSystem

    options: dict[str, Any] = {}
    if isinstance(fs, AsyncFileSystem):
        options["batch_size"] = concurrency
    if is_s3fs(fs):
        import inspect

        if "max_concurrency" in inspect.signature(fs._cat_file).parameters:
            options["max_concurrency"] = 1
    return options


def tqdm_progress(enabled: bool) -> tuple[Callable[[str, int], None], Callable[[], None]]:
    """A per-stream tqdm bar on a terminal; no-ops otherwise. Returns (update, close_all)."""
    if not enabled:
        return (lambda stream, n: None), (lambda: None)
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stream: str, n: int) -> None:
        bar = bars.get(stream)
        if bar is None:
            bar = bars[stream] = tqdm(desc=stream, unit=" dp", file=sys.stderr, leave=False, position=len(bars))
        bar.update(n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close
