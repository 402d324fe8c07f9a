"""``write``: RECORD and STATE messages from stdin into datasets, exactly once across re-runs.

Guarantees
----------
- A STATE message is echoed only when every RECORD before it (of every stream) is in a committed
  container and in the catalog. States are held, not forced (one tiny container per STATE would
  ruin the store): a held state is echoed after the next commit that covers it, and commits happen
  when a container is full (``max_datapoints`` / ``max_bytes``), when the oldest held state has
  waited ``flush_seconds`` (also while stdin is silent), and at the end of input.
- Each commit stores, atomically with the datarange, a checkpoint of the stream's input: how many
  of its RECORD lines this input had delivered, a SHA-256 over them, and a hash of the first one.
  Re-running after a crash with the same input skips exactly the committed records: the records up
  to the checkpoint are spooled to a temporary file while their hash is checked; if it matches they
  were committed and are dropped, otherwise (different input) the spool is written as new records.
  A different first record is recognised at once, without spooling. A run that reaches the end of
  its input stores its checkpoint marked ``complete``: the next run is then a new sync, whose
  records are all appended (even if identical), not compared. A run that stops at a bad line does
  not write the records it was still spooling (they may be committed already).
- ``overwrite``: the old data is moved aside as version ``0.0.0-overwrite.<ms>`` (a new key space
  starts at 0) and that version is deleted only when the sync succeeds. A re-run after a failed
  overwrite finds that version and resumes the new key space exactly like an append resume; if its
  input turns out to be different, the failed run's partial data is dropped first.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import IO, Any, Union

import msgspec
import orjson

from connector.des.names import safe_member_name
from connector.destination.config import DestinationConfig, StreamPlan
from connector.destination.files import file_item, file_meta, file_ref, identity, open_staged, parse_item
from connector.destination.messages import (DECODE_ERRORS, NO_META, InputError, Message, Record, blocks, classify,
                                            decode_line, decode_starting_checks, first_duplicate, has_meta, state_scope,
                                            with_destination_count)
from connector.jsontext import valid_utf8
from connector.errors import ConnectorError
from connector.store import Store
from connector.store.columns import Constant
from connector.store.writer import DatasetWriter

log = logging.getLogger("connector.destination")

CHUNK_RECORDS = 4096
# Airbyte's metadata columns, kept per record beside its bytes (connector.store.columns).
RAW_ID, EXTRACTED_AT, GENERATION_ID, META = ("_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_generation_id",
                                             "_airbyte_meta")

__all__ = ["InputError", "write_messages"]

#: Decoded blocks (of messages.BLOCK_BYTES of input each) held before the oldest is taken: enough
#: for the checker thread to fall behind by a few blocks without stopping the decoding.
LOOK_AHEAD = 4

#: A record's data: its bytes, or a msgspec.Raw view of the input line holding them (bytes-like).
RecordData = Union[bytes, msgspec.Raw]  # noqa: UP007 - a runtime alias
StreamKey = tuple[Union[str, None], str]  # (namespace, name)  # noqa: UP007 - a runtime alias


@dataclass
class _Pending:
    """Records received but not yet handed to the writer, each with its emitted_at and its RECORD
    meta (raw JSON; ``NO_META`` when the RECORD has none)."""

    datas: list[RecordData] = field(default_factory=list)
    ats: list[int | float | None] = field(default_factory=list)
    metas: list[msgspec.Raw] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.datas)

    def append(self, data: RecordData, emitted_at: int | float | None, meta: msgspec.Raw) -> None:
        self.datas.append(data)
        self.ats.append(emitted_at)
        self.metas.append(meta)

    def extend(self, datas: list[RecordData], ats: list[int | float | None], metas: list[msgspec.Raw]) -> None:
        self.datas.extend(datas)
        self.ats.extend(ats)
        self.metas.extend(metas)


class _StreamSink:
    """One stream's records on their way into one dataset: ``kind`` ``records`` (each RECORD's data
    is a record datapoint) or ``files`` (each RECORD carries a file, stored as a file datapoint)."""

    def __init__(self, store: Store, stream: str, dataset: str, plan: StreamPlan, kind: str = "records") -> None:
        mode = "overwrite" if plan.truncate else "append"
        self.stream, self.dataset, self.store, self.mode, self.plan = stream, dataset, store, mode, plan
        self.kind = kind
        store.ensure_dataset(dataset)
        dedup = {"primary_key": list(plan.primary_key), "cursor_field": plan.cursor_field}
        if plan.primary_key and {k: store.get_dataset(dataset).metadata.get(k) for k in dedup} != dedup:
            # Readers deduplicate with them: Store.to_table(dataset, latest_by=metadata["primary_key"]),
            # and compaction (des datasets aggregate NAME --compact) keeps the latest by the cursor.
            store.update_dataset(dataset, metadata=dedup)
        # Versions to delete once this sync succeeds: the data an overwrite replaces.
        self.replaced: list[str] = []
        resuming = mode != "overwrite"
        if mode == "overwrite":
            resuming = self._begin_overwrite()
        self.writer: DatasetWriter = self._open_writer()
        # Read under the writer lock, so a concurrent writer's last commit is seen.
        resume = store.checkpoint(dataset) if resuming else None
        self._seen = 0  # RECORD lines of this stream in this input, counted while not plain
        self.committed = 0  # ... of which committed (in this run or, when resuming, before)
        self.written = 0
        # Records handed to the writer at once; a file goes at once (its bytes are streamed from disk).
        self.chunk = min(CHUNK_RECORDS, store.max_datapoints) if kind == "records" else 1
        self._hash = hashlib.sha256()  # over the records handed to the writer (or found committed)
        self._fed = 0
        self._spool_hash = hashlib.sha256()
        self._first: str | None = None
        self._pending = _Pending()
        # A run that reached the end of its input marked its checkpoint complete: the next input is a
        # new sync (appended even if identical), not a re-run of an interrupted one.
        self._resume = resume if isinstance(resume, dict) and resume.get("records") and not _complete(resume) else None
        self._spool: IO[bytes] | None = None

    def _begin_overwrite(self) -> bool:
        """Set the dataset's old data aside (or find it set aside by a failed run); True if this
        run resumes the new key space a failed overwrite left."""
        store, dataset = self.store, self.dataset
        self.replaced = store.overwrite_versions(dataset)
        if self.replaced and _complete(store.checkpoint(dataset)):
            # That overwrite succeeded; only deleting the data it replaced was cut short.
            store.finish_overwrite(dataset)
            self.replaced = []
        if self.replaced and not self._same_generation(store.checkpoint(dataset)):
            # A refresh of an older generation failed: its partial data is older than this
            # refresh's minimum generation, so it goes (the data it replaced stays kept aside).
            store.truncate(dataset)
        elif self.replaced:
            # An overwrite failed: its key space holds what it committed, kept (not dropped, as
            # begin_overwrite would) until this input proves different (_not_resumed).
            return True
        else:
            kept = store.begin_overwrite(dataset)
            self.replaced = [kept] if kept is not None else []
        return False

    def _open_writer(self) -> DatasetWriter:
        other = {d.kind for d in self.store.dataranges(self.dataset)} - {self.kind}
        if other:
            raise ConnectorError(f"stream {self.stream!r}: dataset {self.dataset!r} holds {other.pop()}, this stream "
                                 f"sends {self.kind}; give it a dataset of its own with 'dataset_name' "
                                 f"(e.g. \"{{stream}}_{self.kind}\")")
        return self.store.writer(self.dataset, self.kind, on_commit=self._on_commit,
                                 row_ids=RAW_ID if self.kind == "records" else None)

    def use(self, kind: str, lineno: int) -> None:
        """Take ``kind`` (``records`` or ``files``) from now on: a sink opened before its first
        record (an overwrite's) follows what the stream sends; later a change is bad input."""
        if kind == self.kind:
            return
        if self._seen or self._first is not None:
            raise InputError(f"stdin line {lineno}: stream {self.stream!r} sent {self.kind} before and now "
                             f"{'a RECORD with a file' if kind == 'files' else 'a RECORD without a file'}; "
                             "a stream sends either files or records")
        self.writer.close()
        self.kind = kind
        self.chunk = min(CHUNK_RECORDS, self.store.max_datapoints) if kind == "records" else 1
        self.writer = self._open_writer()

    def _same_generation(self, checkpoint: Any) -> bool:
        """True unless ``checkpoint`` (of a failed refresh) is of another generation than this sync."""
        theirs = checkpoint.get("generation") if isinstance(checkpoint, dict) else None
        return theirs is None or self.plan.generation_id is None or theirs == self.plan.generation_id

    def _not_resumed(self) -> None:
        """This input is not the one whose records are committed. For an overwrite, those records
        (a failed run's partial data) must not stay: they go, before anything of this input. With
        Airbyte generations they stay when they are of this sync's generation: a retried attempt
        resumes after the last state, so its input differs and adds to what the failed one committed."""
        if self.plan.generation_id is not None:
            return  # a failed run of another generation was dropped when this sink opened
        if self.mode == "overwrite" and self.store.dataranges(self.dataset):
            self.writer.close()  # nothing pending (records were only spooled so far); frees the lock
            self.store.truncate(self.dataset)
            self.writer = self._open_writer()

    # -- records ---------------------------------------------------------------------------------

    @property
    def plain(self) -> bool:
        """True once records go straight to the pending list (first record seen, not resuming)."""
        return self._first is not None and self._resume is None

    def seen(self) -> int:
        """RECORD lines of this stream in this input so far."""
        return self._seen if not self.plain else self._fed + len(self._pending)

    def add(self, data: bytes, emitted_at: int | float | None = None, meta: msgspec.Raw = NO_META) -> None:
        """Take one RECORD's data (compact JSON), emitted_at and meta."""
        self._seen += 1
        if self._seen == 1:
            self._first = hashlib.sha256(self._key(data)).hexdigest()
        if self._resume is not None:
            self._resuming(data, emitted_at, meta)
            return
        self._take(data, emitted_at, meta)

    def extend(self, datas: list[RecordData], ats: list[int | float | None], metas: list[msgspec.Raw] | None) -> None:
        """Take a run of this stream's RECORDs at once (``metas`` None: none has a meta)."""
        if not self.plain:
            for data, at, meta in zip(datas, ats, metas or [NO_META] * len(datas)):
                self.add(bytes(data), at, meta)
            return
        self._pending.extend(datas, ats, metas if metas is not None else [NO_META] * len(datas))
        if len(self._pending) >= self.chunk:
            self.feed()

    def _take(self, data: bytes, emitted_at: int | float | None, meta: msgspec.Raw) -> None:
        self._pending.append(data, emitted_at, meta)
        if len(self._pending) >= self.chunk:
            self.feed()

    def _resuming(self, data: bytes, emitted_at: int | float | None, meta: msgspec.Raw) -> None:
        resume = self._resume
        assert resume is not None
        if self._seen == 1 and resume.get("first") != self._first:
            self._resume = None  # new input: nothing of it can be committed yet
            self._not_resumed()
            self._pending.append(data, emitted_at, meta)
            return
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="des-destination-spool-")
        # data (compact: no raw tab), a tab, then its emitted_at and meta as a JSON array.
        self._spool.write(data + b"\t" + msgspec.json.encode([emitted_at, meta if has_meta(meta) else None]) + b"\n")
        self._spool_hash.update(self._key(data) + b"\n")
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

    def _key(self, data: bytes) -> bytes:
        """What the exactly-once checkpoint hashes of one record: its stored bytes (a file record:
        its data, path and size, not where it was staged)."""
        return data if self.kind == "records" else identity(data)

    def _release_spool(self) -> None:
        """The spooled records were not committed before (different input): write them."""
        self._resume = None
        self._not_resumed()
        spool, self._spool = self._spool, None
        if spool is None:
            return
        spool.seek(0)
        held, self._pending = self._pending, _Pending()
        for line in spool:
            data, extra = line[:-1].split(b"\t", 1)
            self._take(data, *_decode_spooled(extra))
        for data, emitted_at, meta in zip(held.datas, held.ats, held.metas):
            self._take(data, emitted_at, meta)
        spool.close()

    def feed(self) -> None:
        """Hand pending records to the writer with the checkpoint they complete: the number of this
        stream's input records up to the last of them and the SHA-256 over all those records."""
        if not self._pending:
            return
        pending, self._pending = self._pending, _Pending()
        if self.kind == "files":
            self._feed_files(pending)
            return
        batch, ats, metas = pending.datas, pending.ats, pending.metas
        limit = self.store.max_datapoints
        start = 0
        while start < len(batch):
            # Pieces end where a container is cut, so every commit carries an exact checkpoint.
            room = limit - self.writer.pending
            end = start + (room if room > 0 else limit)
            piece = batch[start:end]
            text = b"\n".join([*piece, b""])  # hashed and stored: joined once
            self._hash.update(text)
            self._fed += len(piece)
            self.written += len(piece)
            self.writer.write_json_lines(piece, checkpoint=self._checkpoint(),
                                         columns=self._columns(ats[start:end], metas[start:end]), text=text)
            start = end

    def _feed_files(self, pending: _Pending) -> None:
        """Write each pending file record's file, streamed from where it is staged, with the
        checkpoint it completes."""
        for item, emitted_at, meta in zip(pending.datas, pending.ats, pending.metas):
            ref, data = parse_item(item)
            staged, size, mtime = open_staged(ref, self.stream)
            with staged:
                self._hash.update(self._key(item) + b"\n")
                self._fed += 1
                self.written += 1
                airbyte = {EXTRACTED_AT: emitted_at, GENERATION_ID: self.plan.generation_id,
                           META: _airbyte_meta(meta, self.plan.sync_id)}
                self.writer.write_file(safe_member_name(ref.path), staged, file_meta(ref, data, size, mtime, airbyte),
                                       size=size, checkpoint=self._checkpoint())

    def _columns(self, ats: list[int | float | None], metas: list[msgspec.Raw]) -> dict[str, Any]:
        """Airbyte's metadata of a piece of records, kept beside them in the store."""
        sync_id = self.plan.sync_id
        # list.count compares by identity first: a C-speed pass when no record had a meta.
        if metas.count(NO_META) == len(metas) or not any(has_meta(m) for m in metas):
            meta: Any = Constant({"sync_id": sync_id, "changes": []})
        else:
            meta = [_airbyte_meta(m, sync_id) for m in metas]
        return {EXTRACTED_AT: ats, GENERATION_ID: Constant(self.plan.generation_id), META: meta}

    def _checkpoint(self) -> dict[str, Any]:
        return {"records": self._fed, "sha256": self._hash.hexdigest(), "first": self._first,
                "generation": self.plan.generation_id}

    def flush(self, final: bool = False) -> None:
        """Commit everything received so far. Records being spooled while a resume is checked stay
        spooled unless ``final`` (the input ended before the committed count: different input)."""
        if final and self._resume is not None:
            self._release_spool()
        self.feed()
        self.writer.commit()

    def _on_commit(self, _datarange: Any) -> None:
        cp = self.writer.committed_checkpoint
        if cp:
            self.committed = max(self.committed, int(cp["records"]))

    def finish(self) -> None:
        """End of input: commit the rest; an overwrite's replaced data goes now that all is in."""
        self.flush(final=True)
        if self._first is not None:
            self.writer.set_checkpoint({**self._checkpoint(), "complete": True})
        self.writer.close()
        if self.replaced:
            self.store.finish_overwrite(self.dataset)

    def close(self) -> None:
        """Stop after bad input: what was flushed stays committed, the writer's lock is freed."""
        self.writer.close()

    def abort(self) -> None:
        """Stop on a failure: drop what is not committed."""
        if self._spool is not None:
            self._spool.close()
        self.writer.abort()


class _StateCounter:
    """``destinationStats.recordCount`` of each STATE: the records of its scope (its stream, or every
    stream for a GLOBAL or LEGACY state) between the previous STATE of that scope and this one. A
    STATE is echoed only once all records before it are committed, so that is what was committed."""

    def __init__(self) -> None:
        self._at: dict[StreamKey | None, int] = {}  # scope -> records seen at its last STATE

    def stamp(self, line: bytes, lineno: int, seen: Mapping[StreamKey, int]) -> bytes:
        """``line`` with its count; ``seen`` holds the records of each stream in this input so far."""
        scope = state_scope(line, lineno)
        total = sum(seen.values()) if scope is None else seen.get(scope, 0)
        count, self._at[scope] = total - self._at.get(scope, 0), total
        return with_destination_count(line, count)


@dataclass
class HeldState:
    """A STATE line waiting until the records before it are committed."""

    needed: dict[StreamKey, int]  # per stream: how many of its records came before the STATE
    line: bytes  # the line to echo (with destinationStats)
    since: float  # when it arrived (clock seconds)


class _States:
    """STATE lines held in input order and echoed once what they cover is committed."""

    def __init__(self, emit: Callable[[bytes], None], clock: Callable[[], float], flush_seconds: float) -> None:
        self._emit, self._clock, self._flush_seconds = emit, clock, flush_seconds
        self._held: deque[HeldState] = deque()
        self._counter = _StateCounter()

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, line: bytes, lineno: int, seen: dict[StreamKey, int]) -> None:
        """Hold the STATE ``line`` (stdin line ``lineno``); ``seen``: each stream's records so far."""
        self._held.append(HeldState(seen, self._counter.stamp(line, lineno, seen), self._clock()))

    def release(self, committed: Callable[[StreamKey], int]) -> None:
        """Echo the held states whose records are all committed (``committed(stream)`` counts them)."""
        held = self._held
        while held and all(committed(k) >= n for k, n in held[0].needed.items()):
            self._emit(held.popleft().line)

    def overdue(self) -> bool:
        """True if the oldest held state has waited ``flush_seconds``."""
        return bool(self._held) and self._clock() - self._held[0].since >= self._flush_seconds

    def idle(self) -> float | None:
        """How long stdin may stay silent before held states are flushed (None: no state held)."""
        if not self._held:
            return None
        return max(0.0, self._flush_seconds - (self._clock() - self._held[0].since))


class _Sinks:
    """The sink of each stream, opened at its first record (an overwrite's at the start)."""

    def __init__(self, config: DestinationConfig, catalog: Mapping[str, Any]) -> None:
        self._config = config
        self._configured = _configured_streams(catalog)
        self._plans = {key: StreamPlan.from_entry(key[1], entry) for key, entry in self._configured.items()}
        _check_distinct_datasets(config, self._configured)
        self._store: Store | None = None
        self._sinks: dict[StreamKey, _StreamSink] = {}

    def open(self) -> None:
        """Open the store and the sinks of streams that replace data: an overwrite replaces the data
        even when its stream sends no record at all."""
        self._store = self._config.open_store()
        for key, plan in self._plans.items():
            if plan.truncate:
                self.get(key[0], key[1], 0)

    def get(self, namespace: str | None, stream: str, lineno: int, kind: str | None = None) -> _StreamSink:
        """The sink of a stream, taking ``kind`` (``records``/``files``; None: as configured);
        :class:`InputError` for a stream not in the configured catalog."""
        sink = self._sinks.get((namespace, stream))
        if sink is None:
            sink = self._sinks[(namespace, stream)] = self._new(namespace, stream, lineno, kind)
        elif kind is not None:
            sink.use(kind, lineno)
        return sink

    def _new(self, namespace: str | None, stream: str, lineno: int, kind: str | None) -> _StreamSink:
        key: StreamKey = (namespace, stream)
        if key not in self._configured and namespace is not None:
            key = (None, stream)  # a stream configured without namespace takes every namespace's records
        if key not in self._configured:
            raise InputError(f"stdin line {lineno}: RECORD for stream {stream!r} which is not in the "
                             f"configured catalog (streams: {', '.join(s for _, s in self._configured) or 'none'})")
        dataset = self._config.dataset_for(stream, namespace)
        clash = [s.stream for s in self._sinks.values() if s.dataset == dataset]
        if clash:
            # One writer per dataset, and its exactly-once checkpoint counts one stream's records.
            raise ConnectorError(f"streams {clash[0]!r} and {stream!r} both map to dataset {dataset!r}: "
                                 f"make 'dataset_name' tell them apart (e.g. with {{stream}})")
        assert self._store is not None
        if kind is None:  # Airbyte's include_files: the stream's records carry files
            kind = "files" if self._configured[key].get("include_files") is True else "records"
        return _StreamSink(self._store, stream, dataset, self._plans[key], kind)

    def seen(self) -> dict[StreamKey, int]:
        """Each stream's RECORD lines in this input so far."""
        return {k: s.seen() for k, s in self._sinks.items()}

    def committed(self, key: StreamKey) -> int:
        return self._sinks[key].committed

    def flush(self, final: bool = False) -> None:
        for sink in self._sinks.values():
            sink.flush(final)

    def finish(self) -> dict[str, int]:
        """End of input: everything committed; per dataset, the records written."""
        self.flush(final=True)
        for sink in self._sinks.values():
            sink.finish()
        return {s.dataset: s.written for s in self._sinks.values()}

    def close_after_bad_input(self) -> None:
        """Commit what came before a bad line and stop (dropping everything if that fails)."""
        try:
            self.flush()
            for sink in self._sinks.values():
                sink.close()
        except Exception:  # noqa: BLE001 - the input error is the one to report
            self.abort()

    def abort(self) -> None:
        for sink in self._sinks.values():
            sink.abort()

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()


def _check_distinct_datasets(config: DestinationConfig, configured: Mapping[StreamKey, Any]) -> None:
    """Refuse a configured catalog whose streams map to one dataset."""
    targets: dict[str, str] = {}
    for namespace, name in configured:
        dataset = config.dataset_for(name, namespace)
        if dataset in targets:
            raise ConnectorError(f"streams {targets[dataset]!r} and {name!r} both map to dataset {dataset!r}: "
                                 f"make 'dataset_name' tell them apart (e.g. with {{stream}})")
        targets[dataset] = name


@dataclass
class _Block:
    """A block of stdin lines, decoded."""

    lines: list[bytes]
    base: int  # stdin line number before its first line
    msgs: list[Message | None]  # up to the first bad line (None: a line to skip)
    error: InputError | None  # the bad line's error, raised once the lines before it are taken
    loose: bool  # whitespace somewhere: record data is compacted (else its bytes are kept)
    #: The duplicate-key check of its RECORD data, running (None: the slow path, checked exactly).
    checks: list[Future[bool]] | None
    #: Set by :meth:`settled`: every RECORD's data is known to be an object (the check proved it).
    objects: bool = False

    def settled(self) -> _Block:
        """The block once its duplicate-key check has ended: its messages up to the first RECORD
        whose data holds a key twice, with that error (see :func:`_refuse_duplicates`)."""
        verdicts = [check.result() for check in self.checks] if self.checks is not None else [False]
        if all(verdicts):
            return replace(self, checks=[], objects=True)
        msgs, error = _refuse_duplicates(self.msgs, self.error, self.base)
        return replace(self, msgs=msgs, error=error, checks=[])


def _decode(raw: bytes, lines: list[bytes], base: int, checker: ThreadPoolExecutor) -> _Block:
    """Decode a block (``raw``: its ``lines`` joined); the duplicate-key check of its RECORDs' data
    is left running in ``checker`` (without the GIL) until :meth:`_Block.settled`."""
    msgs: list[Message | None]
    checks: list[Future[bool]] | None
    try:
        raw.decode("utf-8")  # msgspec.Raw does not check UTF-8 (orjson, on the slow path, does)
        msgs, checks = decode_starting_checks(lines, checker)  # the common case: all good
        error = None
    except (*DECODE_ERRORS, UnicodeError):
        msgs, error = _decode_block(lines, base)
        # A line the decoder refused may nest deeper than pyarrow's parser survives (a crash, not an
        # error): the exact check of settled() looks only at the records that decoded.
        checks = None
    loose = b" " in raw or b"\t" in raw or b"\r" in raw
    return _Block(lines, base, msgs, error, loose, checks)


def _runs(msgs: list[Message | None]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive RECORDs of one stream, and ``(i, i)`` for each
    other message (whose index is ``i``), in order. Whole-list passes: per message only C work."""
    if msgs and None not in msgs:
        records = [m.record for m in msgs]  # type: ignore[union-attr]
        if None not in records and _one_stream(records) and _all_equal([m.type for m in msgs], "RECORD"):  # type: ignore[union-attr,arg-type]
            return [(0, len(msgs))]  # the common block: only RECORDs of one stream
    others = [i for i, m in enumerate(msgs) if m is None or m.type != "RECORD" or m.record is None]
    out: list[tuple[int, int]] = []
    start = 0
    for stop in [*others, len(msgs)]:
        if stop > start:
            out.extend(_stream_runs(msgs, start, stop))
        if stop < len(msgs):
            out.append((stop, stop))
        start = stop + 1
    return out


def _all_equal(values: list[Any], value: Any) -> bool:
    """True if every item equals ``value``. list.count compares without hashing: each decoded
    string is a new object whose hash would be computed just for a set."""
    return values.count(value) == len(values)


def _one_stream(records: list[Record]) -> bool:
    """True if every record (at least one) is of the first one's stream and namespace."""
    first = records[0]
    return (_all_equal([r.stream for r in records], first.stream)
            and _all_equal([r.namespace for r in records], first.namespace))


def _stream_runs(msgs: list[Message | None], start: int, stop: int) -> list[tuple[int, int]]:
    """RECORDs ``start:stop`` cut where the stream changes."""
    records = [m.record for m in msgs[start:stop]]  # type: ignore[union-attr]
    if _one_stream(records):  # type: ignore[arg-type]
        return [(start, stop)]
    keys = [(r.namespace, r.stream) for r in records]  # type: ignore[union-attr]
    cuts = [start + i for i in range(1, len(keys)) if keys[i] != keys[i - 1]]
    return list(zip([start, *cuts], [*cuts, stop]))


class _Session:
    """One ``write`` run: stdin blocks -> sinks, STATE lines -> ``emit`` once safe."""

    def __init__(self, config: DestinationConfig, catalog: Mapping[str, Any], emit: Callable[[bytes], None],
                 clock: Callable[[], float]) -> None:
        self.sinks = _Sinks(config, catalog)
        self.states = _States(emit, clock, config.flush_seconds)
        #: Decoded blocks whose duplicate-key checks may still run, oldest first (the look-ahead).
        self.waiting: deque[_Block] = deque()

    def run(self, source: IO[bytes] | Iterable[bytes]) -> dict[str, int]:
        checker = ThreadPoolExecutor(1, thread_name_prefix="des-destination-check")
        # Look-ahead of up to LOOK_AHEAD blocks: later blocks are decoded (their checks queued)
        # before an earlier block's check is waited for, so the main thread keeps decoding while
        # the checker thread catches up, instead of the two taking turns. Only input already
        # there is looked ahead at: with a block waiting, stdin is polled, not waited on, and a
        # silent stdin takes the waiting blocks at once. Blocks are taken in input order.
        lines_before = 0
        try:
            self.sinks.open()
            for read in blocks(source, idle=self._idle):
                if read is None:
                    if self.waiting:  # nothing more at hand: take the blocks that wait
                        self._take_waiting()
                    else:  # stdin silent for flush_seconds while a state waits
                        self._flush()
                    continue
                text, lines = read
                block = _decode(text, lines, lines_before, checker)
                lines_before += len(lines)
                self.waiting.append(block)
                if len(self.waiting) > LOOK_AHEAD:
                    self._take_oldest()
            self._take_waiting()
            written = self.sinks.finish()
            self.states.release(self.sinks.committed)
            return written
        except InputError:
            self.sinks.close_after_bad_input()  # everything before the bad line is good
            self.states.release(self.sinks.committed)
            raise
        except BaseException:
            self.sinks.abort()
            raise
        finally:
            checker.shutdown(wait=True)
            self.sinks.close_store()

    def _idle(self) -> float | None:
        """How long stdin may stay silent: not at all while a block waits (poll), else until the
        oldest held state is due (None: wait for input)."""
        return 0.0 if self.waiting else self.states.idle()

    def _take_oldest(self) -> None:
        self._take(self.waiting.popleft().settled())

    def _take_waiting(self) -> None:
        while self.waiting:
            self._take_oldest()

    def _flush(self) -> None:
        self.sinks.flush()
        self.states.release(self.sinks.committed)

    def _take(self, block: _Block) -> None:
        """Every message of a decoded block, in order; then its error, if it had a bad line."""
        msgs = block.msgs
        for start, stop in _runs(msgs):
            if stop > start:
                self._records(block, start, stop)
                continue
            msg = msgs[start]
            if msg is not None and msg.type == "STATE":
                self.states.hold(block.lines[start], block.base + start + 1, self.sinks.seen())
            elif msg is not None and msg.type == "RECORD":  # without a record object
                classify(block.lines[start], block.base + start + 1)  # raises the precise InputError
            # Other message types (LOG, TRACE, ...) are not for the destination to store.
        if block.error is not None:
            raise block.error
        if self.states:
            self.states.release(self.sinks.committed)  # containers cut inside this block may have covered some
            if self.states.overdue():
                self._flush()

    def _records(self, block: _Block, start: int, stop: int) -> None:
        """RECORDs ``start:stop`` of ``block``, all of one stream: checked and taken in whole-list
        passes; at a bad one, those before it are taken and its error raised."""
        records: list[Record] = [m.record for m in block.msgs[start:stop]]  # type: ignore[union-attr,misc]
        # The data stay msgspec.Raw views of the input lines (no copy per record): joins, CRC-32
        # and SHA-256 take any bytes-like object, and every other use converts its one record.
        datas: list[RecordData] = ([msgspec.json.format(r.data, indent=-1) for r in records] if block.loose
                                   else [r.data for r in records])
        # Whole-list passes (list.count compares by identity first): absent fields are NO_META.
        metas = [r.meta for r in records]
        with_meta = metas.count(NO_META) != len(metas)
        bad = _first_bad(datas, records, with_meta, objects=block.objects)
        if bad is not None:
            datas, records, metas = datas[:bad], records[:bad], metas[:bad]
        if records:
            if _carry_files(records):
                self._files(block, start, records, datas)
            else:
                first = records[0]
                sink = self.sinks.get(first.namespace, first.stream, block.base + start + 1, "records")
                sink.extend(datas, list(map(_EMITTED_AT, records)), metas if with_meta else None)
        if bad is not None:
            lineno = block.base + start + bad + 1
            classify(block.lines[start + bad], lineno)  # raises the precise InputError
            raise InputError(f"stdin line {lineno}: RECORD data is not an object")

    def _files(self, block: _Block, start: int, records: list[Record], datas: list[RecordData]) -> None:
        """RECORDs of one stream from ``start`` of which some carry a file, one by one."""
        for i, (record, raw) in enumerate(zip(records, datas)):
            lineno = block.base + start + i + 1
            data = bytes(raw)
            if record.has_file:
                sink = self.sinks.get(record.namespace, record.stream, lineno, "files")
                data = file_item(data, file_ref(record, lineno))
            else:
                sink = self.sinks.get(record.namespace, record.stream, lineno, "records")
            sink.add(data, record.emitted_at, record.meta)


def _carry_files(records: list[Record]) -> bool:
    """True if some record carries a file (``file_reference`` or ``file``)."""
    n = len(records)
    return ([r.file_reference for r in records].count(NO_META) != n
            or [r.file for r in records].count(NO_META) != n) and any(r.has_file for r in records)


def _first_bad(datas: list[RecordData], records: list[Record], metas: bool, *, objects: bool) -> int | None:
    """Index of the first record whose data is not an object (``objects``: known to be objects)
    or whose meta is not one."""
    bad = None if objects else next((i for i, d in enumerate(datas) if memoryview(d)[0] != 123), None)  # b"{"
    if metas:
        meta_bad = next((i for i, r in enumerate(records)
                         if has_meta(r.meta) and bytes(r.meta).lstrip()[:1] != b"{"), None)
        if meta_bad is not None and (bad is None or meta_bad < bad):
            bad = meta_bad
    return bad


def _airbyte_meta(raw: msgspec.Raw, sync_id: int | None) -> dict[str, Any]:
    """``_airbyte_meta`` of one record: the sync id and the RECORD meta's ``changes`` (any other
    field of that meta is kept too)."""
    meta = orjson.loads(bytes(raw)) if has_meta(raw) else {}
    return {**meta, "sync_id": sync_id, "changes": meta.get("changes", [])}


_EMITTED_AT = operator.attrgetter("emitted_at")
_decode_extra = msgspec.json.Decoder(tuple[Union[int, float, None], msgspec.Raw]).decode  # noqa: UP007


def _decode_spooled(extra: bytes) -> tuple[int | float | None, msgspec.Raw]:
    """emitted_at and meta of a spooled record (msgspec takes no ``Raw`` inside a union)."""
    emitted_at, meta = _decode_extra(extra)
    return emitted_at, meta if has_meta(meta) else NO_META


def _complete(checkpoint: Any) -> bool:
    return isinstance(checkpoint, dict) and checkpoint.get("complete") is True


def _configured_streams(catalog: Mapping[str, Any]) -> dict[StreamKey, dict[str, Any]]:
    streams = {}
    for entry in catalog.get("streams") or []:
        stream = entry.get("stream") or {} if isinstance(entry, dict) else {}
        name = stream.get("name") if isinstance(stream, dict) else None
        if not isinstance(name, str):
            raise ConnectorError("configured catalog: every stream needs stream.name")
        streams[(stream.get("namespace"), name)] = entry
    return streams


def _decode_block(block: list[bytes], base: int) -> tuple[list[Message | None], InputError | None]:
    """The messages of a block the fast decoder refused, line by line, up to the first bad line."""
    out: list[Message | None] = []
    utf8 = valid_utf8(block)
    for i, line in enumerate(block, start=base + 1):
        try:
            # Checked per line: a bad line elsewhere in the block must not send the good ones down
            # the explanatory path (msgspec.Raw does not check UTF-8; orjson, in classify, does).
            if not utf8 and not valid_utf8([line]):
                raise UnicodeError
            out.append(decode_line(line))
        except (*DECODE_ERRORS, UnicodeError):
            try:
                out.append(classify(line, i))
            except InputError as exc:
                return out, exc
    return out, None


def _refuse_duplicates(msgs: list[Message | None], error: InputError | None,
                       base: int) -> tuple[list[Message | None], InputError | None]:
    """The block's messages up to the first RECORD whose data holds a key twice, and the error
    naming it: such a record could be stored byte for byte but never read back as a table row."""
    found = first_duplicate(msgs)
    if found is None:
        return msgs, error
    i, key = found
    return msgs[:i], InputError(f"stdin line {base + i + 1}: RECORD data holds key {key!r} twice; a record with "
                                "duplicate keys has no exact table form and is refused")


def write_messages(config: DestinationConfig, catalog: Mapping[str, Any], source: IO[bytes] | Iterable[bytes],
                   emit: Callable[[bytes], None], *, clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """Consume Airbyte messages from ``source`` (a binary stream or an iterable of lines); ``emit``
    receives each STATE line once it is safe.

    Returns per-dataset counts of records written. Raises :class:`InputError` naming the line on
    bad input, after committing and acknowledging everything before it.
    """
    return _Session(config, catalog, emit, clock).run(source)
