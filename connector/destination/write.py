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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Union, cast

import msgspec
import orjson

from connector.destination.config import DestinationConfig, StreamPlan
from connector.destination.messages import (DECODE_ERRORS, NO_META, InputError, Message, Record, blocks, classify,
                                            decode_line, first_duplicate, has_meta, state_scope, tables_cleanly,
                                            valid_utf8, with_destination_count)
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


class _StreamSink:
    """One stream's records on their way into one dataset."""

    def __init__(self, store: Store, stream: str, dataset: str, plan: StreamPlan) -> None:
        mode = "overwrite" if plan.truncate else "append"
        self.stream, self.dataset, self.store, self.mode, self.plan = stream, dataset, store, mode, plan
        store.ensure_dataset(dataset)
        if plan.primary_key and store.get_dataset(dataset).metadata.get("primary_key") != list(plan.primary_key):
            # Readers deduplicate with it: Store.to_table(dataset, latest_by=metadata["primary_key"]).
            store.update_dataset(dataset, metadata={"primary_key": list(plan.primary_key)})
        # Versions to delete once this sync succeeds: the data an overwrite replaces.
        self.replaced: list[str] = []
        resuming = mode != "overwrite"
        if mode == "overwrite":
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
                resuming = True
            else:
                kept = store.begin_overwrite(dataset)
                self.replaced = [kept] if kept is not None else []
        self.writer: DatasetWriter = self._open_writer()
        # Read under the writer lock, so a concurrent writer's last commit is seen.
        resume = store.checkpoint(dataset) if resuming else None
        self._seen = 0  # RECORD lines of this stream in this input, counted while not plain
        self.committed = 0  # ... of which committed (in this run or, when resuming, before)
        self.written = 0
        self.chunk = min(CHUNK_RECORDS, store.max_datapoints)  # records handed to the writer at once
        self._hash = hashlib.sha256()  # over the records handed to the writer (or found committed)
        self._fed = 0
        self._spool_hash = hashlib.sha256()
        self._first: str | None = None
        self._pending: list[bytes] = []
        # Beside each pending record: its emitted_at and its RECORD meta (raw JSON or None).
        self._pending_at: list[int | float | None] = []
        self._pending_meta: list[msgspec.Raw] = []  # NO_META when the RECORD has none
        # A run that reached the end of its input marked its checkpoint complete: the next input is a
        # new sync (appended even if identical), not a re-run of an interrupted one.
        self._resume = resume if isinstance(resume, dict) and resume.get("records") and not _complete(resume) else None
        self._spool: IO[bytes] | None = None

    def _open_writer(self) -> DatasetWriter:
        return self.store.writer(self.dataset, "records", on_commit=self._on_commit, row_ids=RAW_ID)

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
        """True once records can go straight to ``_pending`` (first record seen, not resuming)."""
        return self._first is not None and self._resume is None

    def seen(self) -> int:
        """RECORD lines of this stream in this input so far."""
        return self._seen if not self.plain else self._fed + len(self._pending)

    def add(self, data: bytes, emitted_at: int | float | None = None, meta: msgspec.Raw = NO_META) -> None:
        self._seen += 1
        if self._seen == 1:
            self._first = hashlib.sha256(data).hexdigest()
        if self._resume is not None:
            self._resuming(data, emitted_at, meta)
            return
        self._pending.append(data)
        self._pending_at.append(emitted_at)
        self._pending_meta.append(meta)
        if len(self._pending) >= self.chunk:
            self.feed()

    def extend(self, datas: list[bytes], records: list[Record]) -> None:
        """Take a block of this stream's RECORDs at once (only while :attr:`plain`), none with a meta."""
        self._pending.extend(datas)
        self._pending_at.extend(map(_EMITTED_AT, records))
        self._pending_meta.extend([NO_META] * len(datas))
        if len(self._pending) >= self.chunk:
            self.feed()

    def _resuming(self, data: bytes, emitted_at: int | float | None, meta: msgspec.Raw) -> None:
        resume = self._resume
        assert resume is not None
        if self._seen == 1 and resume.get("first") != self._first:
            self._resume = None  # new input: nothing of it can be committed yet
            self._not_resumed()
            self._pending.append(data)
            self._pending_at.append(emitted_at)
            self._pending_meta.append(meta)
            return
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="des-destination-spool-")
        # data (compact: no raw tab), a tab, then its emitted_at and meta as a JSON array.
        self._spool.write(data + b"\t" + msgspec.json.encode([emitted_at, meta if has_meta(meta) else None]) + b"\n")
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
        self._not_resumed()
        spool, self._spool = self._spool, None
        if spool is None:
            return
        spool.seek(0)
        held = self._pending, self._pending_at, self._pending_meta
        self._pending, self._pending_at, self._pending_meta = [], [], []
        for line in spool:
            data, extra = line[:-1].split(b"\t", 1)
            emitted_at, meta = _decode_spooled(extra)
            self.add_pending(data, emitted_at, meta)
        for data, emitted_at, meta in zip(*held):
            self.add_pending(data, emitted_at, meta)
        spool.close()

    def pending_lists(self) -> tuple[list[bytes], list[int | float | None], list[msgspec.Raw]]:
        """The lists records are appended to while :attr:`plain` (replaced by :meth:`feed`)."""
        return self._pending, self._pending_at, self._pending_meta

    def add_pending(self, data: bytes, emitted_at: int | float | None, meta: msgspec.Raw) -> None:
        self._pending.append(data)
        self._pending_at.append(emitted_at)
        self._pending_meta.append(meta)
        if len(self._pending) >= self.chunk:
            self.feed()

    def feed(self) -> None:
        """Hand pending records to the writer with the checkpoint they complete: the number of this
        stream's input records up to the last of them and the SHA-256 over all those records."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        ats, self._pending_at = self._pending_at, []
        metas, self._pending_meta = self._pending_meta, []
        limit = self.store.max_datapoints
        start = 0
        while start < len(batch):
            # Pieces end where a container is cut, so every commit carries an exact checkpoint.
            room = limit - self.writer.pending
            end = start + (room if room > 0 else limit)
            piece = batch[start:end]
            self._hash.update(b"\n".join(piece) + b"\n")
            self._fed += len(piece)
            self.written += len(piece)
            self.writer.write_json_lines(piece, checkpoint=self._checkpoint(),
                                         columns=self._columns(ats[start:end], metas[start:end]))
            start = end

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

    def _on_commit(self, _datarange) -> None:
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

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
        self.writer.abort()


class _StateCounter:
    """``destinationStats.recordCount`` of each STATE: the records of its scope (its stream, or every
    stream for a GLOBAL or LEGACY state) between the previous STATE of that scope and this one. A
    STATE is echoed only once all records before it are committed, so that is what was committed."""

    def __init__(self) -> None:
        self._at: dict[tuple[str | None, str] | None, int] = {}  # scope -> records seen at its last STATE

    def stamp(self, line: bytes, lineno: int, seen: Mapping[tuple[str | None, str], int]) -> bytes:
        """``line`` with its count; ``seen`` holds the records of each stream in this input so far."""
        scope = state_scope(line, lineno)
        total = sum(seen.values()) if scope is None else seen.get(scope, 0)
        count, self._at[scope] = total - self._at.get(scope, 0), total
        return with_destination_count(line, count)


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


def _configured_streams(catalog: Mapping[str, Any]) -> dict[tuple[str | None, str], dict[str, Any]]:
    streams = {}
    for entry in catalog.get("streams") or []:
        stream = entry.get("stream") or {} if isinstance(entry, dict) else {}
        name = stream.get("name") if isinstance(stream, dict) else None
        if not isinstance(name, str):
            raise ConnectorError("configured catalog: every stream needs stream.name")
        streams[(stream.get("namespace"), name)] = entry
    return streams


def _same_stream_records(msgs: list[Message | None], stream: str | None,
                         namespace: str | None) -> list[Record] | None:
    """The records of ``msgs`` if every message is a RECORD of ``(stream, namespace)``, else None
    (checked with whole-list passes)."""
    if not msgs or None in msgs:
        return None
    present = cast("list[Message]", msgs)  # no None: checked above
    if {m.type for m in present} != {"RECORD"}:
        return None
    found = [m.record for m in present]
    if None in found:
        return None
    records = cast("list[Record]", found)  # no None: checked above
    if {r.stream for r in records} == {stream} and {r.namespace for r in records} == {namespace}:
        return records
    return None


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
    configured = _configured_streams(catalog)
    plans = {key: StreamPlan.from_entry(key[1], entry) for key, entry in configured.items()}
    targets: dict[str, str] = {}
    for namespace, name in configured:
        dataset = config.dataset_for(name, namespace)
        if dataset in targets:
            raise ConnectorError(f"streams {targets[dataset]!r} and {name!r} both map to dataset {dataset!r}: "
                                 f"make 'dataset_name' tell them apart (e.g. with {{stream}})")
        targets[dataset] = name
    store = config.open_store()
    sinks: dict[tuple[str | None, str], _StreamSink] = {}
    held: list[tuple[dict[tuple[str | None, str], int], bytes, float]] = []
    compact = msgspec.json.format

    def sink_for(namespace: str | None, stream: str, lineno: int) -> _StreamSink:
        key = (namespace, stream)
        sink = sinks.get(key)
        if sink is None:
            entry = configured.get(key) or (configured.get((None, stream)) if namespace else None)
            if entry is None:
                raise InputError(f"stdin line {lineno}: RECORD for stream {stream!r} which is not in the "
                                 f"configured catalog (streams: {', '.join(s for _, s in configured) or 'none'})")
            plan = plans[(namespace, stream) if (namespace, stream) in configured else (None, stream)]
            dataset = config.dataset_for(stream, namespace)
            clash = [s.stream for s in sinks.values() if s.dataset == dataset]
            if clash:
                # One writer per dataset, and its exactly-once checkpoint counts one stream's records.
                raise ConnectorError(f"streams {clash[0]!r} and {stream!r} both map to dataset {dataset!r}: "
                                     f"make 'dataset_name' tell them apart (e.g. with {{stream}})")
            sink = sinks[key] = _StreamSink(store, stream, dataset, plan)
        return sink

    def release_states() -> None:
        while held and all(sinks[k].committed >= n for k, n in held[0][0].items()):
            emit(held.pop(0)[1])

    def flush_all(final: bool = False) -> None:
        for sink in sinks.values():
            sink.flush(final)
        release_states()

    def idle() -> float | None:
        """How long stdin may stay silent before held states are flushed."""
        return max(0.0, config.flush_seconds - (clock() - held[0][2])) if held else None

    checker = ThreadPoolExecutor(1, thread_name_prefix="des-destination-check")
    counter = _StateCounter()
    last_stream: str | None = None
    last_ns: str | None = None
    sink: _StreamSink | None = None
    plain = False
    pending: list[bytes] = []
    pending_at: list[int | float | None] = []
    pending_meta: list[msgspec.Raw] = []
    lineno = 0
    try:
        # An overwrite replaces the data even when its stream sends no record at all.
        for namespace, name in configured:
            if plans[(namespace, name)].truncate:
                sink_for(namespace, name, 0)
        for block in blocks(source, idle=idle):
            if block is None:  # stdin silent for flush_seconds while a state waits
                flush_all()
                continue
            raw = b"\n".join(block)
            clean = checker.submit(tables_cleanly, raw)  # runs (without the GIL) while the block is decoded
            try:
                raw.decode("utf-8")  # msgspec.Raw does not check UTF-8 (orjson, on the slow path, does)
                msgs: list[Message | None] = [decode_line(line) for line in block]  # the common case: all good
                error = None
            except (*DECODE_ERRORS, UnicodeError):
                msgs, error = _decode_block(block, lineno)
            if not clean.result():
                msgs, error = _refuse_duplicates(msgs, error, lineno)
            # Whitespace anywhere in the block: compact each record (in C); none: keep the bytes.
            loose = b" " in raw or b"\t" in raw or b"\r" in raw
            metas = b'"meta"' in raw  # a RECORD meta (rare) is checked record by record below
            if sink is not None:  # a flush between blocks may have replaced its pending lists
                plain = sink.plain
                pending, pending_at, pending_meta = sink.pending_lists()
            base = lineno
            records = (_same_stream_records(msgs, last_stream, last_ns)
                       if sink is not None and plain and error is None and not metas else None)
            if sink is not None and records is not None:
                # The common block: only RECORDs of the current stream. Whole-block passes in C.
                datas = ([compact(r.data, indent=-1) for r in records] if loose
                         else [bytes(r.data) for r in records])
                if not any(d[0] != 123 for d in datas):  # every data is an object (b"{")
                    sink.extend(datas, records)
                    msgs = []  # all taken: only the end-of-block work (held states, flush timer) is left
            for i, msg in enumerate(msgs):
                if msg is None:
                    continue
                if msg.type == "RECORD":
                    # The hot path: no Python objects for the data, only its bytes.
                    rec = msg.record
                    if rec is None:
                        classify(block[i], base + i + 1)  # raises the precise InputError
                        raise InputError(f"stdin line {base + i + 1}: RECORD without a record")  # classify raised
                    if rec.stream != last_stream or rec.namespace != last_ns or sink is None:
                        last_stream, last_ns = rec.stream, rec.namespace
                        sink = sink_for(rec.namespace, rec.stream, base + i + 1)
                        plain = sink.plain
                        pending, pending_at, pending_meta = sink.pending_lists()
                    data = compact(rec.data, indent=-1) if loose else bytes(rec.data)
                    if data[0] != 123:  # b"{"
                        classify(block[i], base + i + 1)
                        raise InputError(f"stdin line {base + i + 1}: RECORD data is not an object")
                    if metas and has_meta(rec.meta) and bytes(rec.meta).lstrip()[:1] != b"{":
                        classify(block[i], base + i + 1)  # raises: meta must be an object
                    if plain:  # add_pending, inlined: blocks with states or several streams take this path
                        pending.append(data)
                        pending_at.append(rec.emitted_at)
                        pending_meta.append(rec.meta)
                        if len(pending) >= sink.chunk:
                            sink.feed()
                            pending, pending_at, pending_meta = sink.pending_lists()
                    else:
                        sink.add(data, rec.emitted_at, rec.meta)
                        plain = sink.plain
                        pending, pending_at, pending_meta = sink.pending_lists()
                elif msg.type == "STATE":
                    needed = {k: s.seen() for k, s in sinks.items()}
                    line = counter.stamp(block[i], base + i + 1, needed)
                    held.append((needed, line, clock()))
                # Other message types (LOG, TRACE, ...) are not for the destination to store.
            lineno = base + len(block)
            if error is not None:
                raise error
            if held:
                release_states()  # containers cut inside this block may have covered some
                if held and clock() - held[0][2] >= config.flush_seconds:
                    flush_all()
        flush_all(final=True)
        for s in sinks.values():
            s.finish()
        release_states()
        return {s.dataset: s.written for s in sinks.values()}
    except InputError:
        try:
            flush_all()  # everything before the bad line is good: commit and acknowledge it
            for s in sinks.values():
                s.writer.close()
        except Exception:  # noqa: BLE001 - the input error is the one to report
            for s in sinks.values():
                s.abort()
        raise
    except BaseException:
        for s in sinks.values():
            s.abort()
        raise
    finally:
        checker.shutdown(wait=True)
        store.close()
