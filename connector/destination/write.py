"""``write``: RECORD and STATE messages from stdin into datasets, exactly once across re-runs.

Guarantees
----------
- A STATE message is echoed only when every RECORD before it (of every stream) is in a committed
  container and in the catalog. States are held, not forced: records are committed when a
  container is full, when a state has waited ``flush_seconds``, and at the end of input.
- Each commit stores, atomically with the datarange, a checkpoint of the stream's input: how many
  of its RECORD lines this input had delivered, a SHA-256 over them, and a hash of the first one.
  Re-running after a crash with the same input skips exactly the committed records: the records up
  to the checkpoint are spooled to a temporary file while their hash is checked; if it matches they
  were committed and are dropped, otherwise (different input) the spool is written as new records.
  A different first record is recognised at once, without spooling.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import orjson

from connector.destination.config import DestinationConfig
from connector.errors import ConnectorError
from connector.store import Store
from connector.store.writer import DatasetWriter

log = logging.getLogger("connector.destination")

CHUNK_RECORDS = 4096
OVERWRITE_VERSION = "0.0.0-overwrite.{stamp}"


class InputError(ConnectorError):
    """A bad message on stdin (the text names the line)."""


class _StreamSink:
    """One stream's records on their way into one dataset."""

    def __init__(self, store: Store, stream: str, dataset: str, mode: str) -> None:
        self.stream, self.dataset, self.store = stream, dataset, store
        store.ensure_dataset(dataset)
        self.replaced_version: str | None = None
        if mode == "overwrite" and store.dataranges(dataset):
            # The old data stays readable as a version until this sync succeeds.
            self.replaced_version = OVERWRITE_VERSION.format(stamp=int(time.time() * 1000))
            store.rotate(dataset, self.replaced_version, message="kept while an overwrite sync runs")
        resume = store.checkpoint(dataset) if mode != "overwrite" else None
        self.writer: DatasetWriter = store.writer(dataset, "records", on_commit=self._on_commit)
        self._seen = 0  # RECORD lines of this stream in this input, counted while not plain
        self.committed = 0  # ... of which committed (in this run or, when resuming, before)
        self.written = 0
        self.chunk = min(CHUNK_RECORDS, store.max_datapoints)  # records handed to the writer at once
        self._hash = hashlib.sha256()  # over the records handed to the writer (or found committed)
        self._fed = 0
        self._spool_hash = hashlib.sha256()
        self._first: str | None = None
        self._pending: list[bytes] = []
        self._resume = resume if isinstance(resume, dict) and resume.get("records") else None
        self._spool: IO[bytes] | None = None

    # -- records ---------------------------------------------------------------------------------

    @property
    def plain(self) -> bool:
        """True once records can go straight to ``_pending`` (first record seen, not resuming)."""
        return self._first is not None and self._resume is None

    def seen(self) -> int:
        """RECORD lines of this stream in this input so far."""
        return self._seen if not self.plain else self._fed + len(self._pending)

    def add(self, data: bytes) -> None:
        self._seen += 1
        if self._seen == 1:
            self._first = hashlib.sha256(data).hexdigest()
        if self._resume is not None:
            self._resuming(data)
            return
        self._pending.append(data)
        if len(self._pending) >= self.chunk:
            self.feed()

    def _resuming(self, data: bytes) -> None:
        resume = self._resume
        assert resume is not None
        if self._seen == 1 and resume.get("first") != self._first:
            self._resume = None  # new input: nothing of it can be committed yet
            self._pending.append(data)
            return
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="des-destination-spool-")
        self._spool.write(data + b"\n")
        self._spool_hash.update(data + b"\n")
        if self._seen == resume["records"]:
            if self._spool_hash.hexdigest() == resume["sha256"]:
                log.info("%s: the first %d records of this input are already committed; skipped",
                         self.stream, self._seen)
                self.committed = self._fed = self._seen
                self._hash = self._spool_hash
                self._spool.close()
                self._spool, self._resume = None, None
            else:
                self._release_spool()

    def _release_spool(self) -> None:
        """The spooled records were not committed before (different input): write them."""
        self._resume = None
        spool, self._spool = self._spool, None
        if spool is None:
            return
        spool.seek(0)
        held, self._pending = self._pending, []
        for line in spool:
            self._pending.append(line[:-1])
            if len(self._pending) >= self.chunk:
                self.feed()
        self._pending.extend(held)
        spool.close()

    def feed(self) -> None:
        """Hand pending records to the writer with the checkpoint they complete: the number of this
        stream's input records up to the last of them and the SHA-256 over all those records."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        limit = self.store.max_datapoints
        while batch:
            # Pieces end where a container is cut, so every commit carries an exact checkpoint.
            room = limit - self.writer.pending
            piece, batch = batch[:room if room > 0 else limit], batch[room if room > 0 else limit:]
            self._hash.update(b"\n".join(piece) + b"\n")
            self._fed += len(piece)
            self.written += len(piece)
            self.writer.write_json_lines(piece, checkpoint={"records": self._fed, "sha256": self._hash.hexdigest(),
                                                            "first": self._first})

    def flush(self) -> None:
        """Commit everything received so far."""
        if self._resume is not None:
            self._release_spool()
        self.feed()
        self.writer.commit()

    def _on_commit(self, _datarange) -> None:
        cp = self.writer.committed_checkpoint
        if cp:
            self.committed = max(self.committed, int(cp["records"]))

    def finish(self) -> None:
        self.flush()
        self.writer.close()
        if self.replaced_version:
            self.store.delete_version(self.dataset, self.replaced_version)

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
        self.writer.abort()


def _configured_streams(catalog: Mapping[str, Any]) -> dict[tuple[str | None, str], dict[str, Any]]:
    streams = {}
    for entry in catalog.get("streams") or []:
        stream = entry.get("stream") or {}
        name = stream.get("name")
        if not isinstance(name, str):
            raise ConnectorError("configured catalog: every stream needs stream.name")
        streams[(stream.get("namespace"), name)] = entry
    return streams


def write_messages(config: DestinationConfig, catalog: Mapping[str, Any], lines: Iterable[bytes],
                   emit: Callable[[bytes], None], *, clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """Consume Airbyte messages from ``lines``; ``emit`` receives each STATE line once it is safe.

    Returns per-dataset counts of records written. Raises :class:`InputError` naming the line on
    bad input, after committing and acknowledging everything before it.
    """
    configured = _configured_streams(catalog)
    store = config.open_store()
    sinks: dict[tuple[str | None, str], _StreamSink] = {}
    held: list[tuple[dict[tuple[str | None, str], int], bytes, float]] = []
    loads, dumps = orjson.loads, orjson.dumps

    def sink_for(namespace: str | None, stream: str, lineno: int) -> _StreamSink:
        key = (namespace, stream)
        sink = sinks.get(key)
        if sink is None:
            entry = configured.get(key) or (configured.get((None, stream)) if namespace else None)
            if entry is None:
                raise InputError(f"stdin line {lineno}: RECORD for stream {stream!r} which is not in the "
                                 f"configured catalog (streams: {', '.join(s for _, s in configured) or 'none'})")
            mode = entry.get("destination_sync_mode", "append")
            if mode not in ("append", "overwrite", "append_dedup"):
                raise ConnectorError(f"stream {stream!r}: destination_sync_mode {mode!r} is not supported")
            sink = sinks[key] = _StreamSink(store, stream, config.dataset_for(stream, namespace), mode)
        return sink

    def release_states() -> None:
        while held and all(sinks[k].committed >= n for k, n in held[0][0].items()):
            emit(held.pop(0)[1])

    def flush_all() -> None:
        for sink in sinks.values():
            sink.flush()
        release_states()

    last_key: tuple[str | None, str] | None = None
    last_sink: _StreamSink | None = None
    try:
        lineno = 0
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                msg = loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"stdin line {lineno}: not JSON ({exc})") from None
            if not isinstance(msg, dict):
                raise InputError(f"stdin line {lineno}: a message must be a JSON object")
            kind = msg.get("type")
            if kind == "RECORD":
                # The hot path: a handful of dict lookups and one orjson.dumps per record.
                record = msg.get("record")
                if type(record) is not dict or type(record.get("stream")) is not str:
                    raise InputError(f"stdin line {lineno}: RECORD without record.stream")
                data = record.get("data")
                if type(data) is not dict:
                    raise InputError(f"stdin line {lineno}: RECORD data of stream {record['stream']!r} is "
                                     f"{type(data).__name__}, not an object")
                key = (record.get("namespace"), record["stream"])
                if key != last_key:
                    last_key, last_sink = key, sink_for(key[0], key[1], lineno)
                if last_sink.plain:
                    pending = last_sink._pending
                    pending.append(dumps(data))
                    if len(pending) >= last_sink.chunk:
                        last_sink.feed()
                else:
                    last_sink.add(dumps(data))
            elif kind == "STATE":
                needed = {k: s.seen() for k, s in sinks.items()}
                held.append((needed, dumps(msg) + b"\n", clock()))
                release_states()
                if held and clock() - held[0][2] >= config.flush_seconds:
                    flush_all()
            # Other message types (LOG, TRACE, ...) are not for the destination to store.
        flush_all()
        for sink in sinks.values():
            sink.finish()
        release_states()
        return {s.dataset: s.written for s in sinks.values()}
    except InputError:
        try:
            flush_all()  # everything before the bad line is good: commit and acknowledge it
            for sink in sinks.values():
                sink.writer.close()
        except Exception:  # noqa: BLE001 - the input error is the one to report
            for sink in sinks.values():
                sink.abort()
        raise
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise
    finally:
        store.close()
