"""The operation log of each dataset, and operations that change the catalog and log together.

Object stores have no append, so the log is one small JSON Lines object (a segment) per entry
under ``<dataset>/log/``, merged from time to time (:meth:`OperationLog.compact`); reading the
segments in name order gives it back in time order.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count as counter
from typing import Any

import orjson

from connector.store.backends import Connection
from connector.store.catalog import Catalog
from connector.store.layout import validate_dataset_name
from connector.store.storage import Storage

_log_seq = counter()
_log = logging.getLogger(__name__)


@dataclass
class Operation:
    """What the body of :meth:`OperationLog.operation` works with: the transaction's connection,
    the log entry's details (the body may add to them) and undo callbacks for its storage writes."""

    db: Connection
    details: dict[str, Any]
    undo: list[Callable[[], None]] = field(default_factory=list)

    def on_failure(self, undo: Callable[[], None]) -> None:
        """Call ``undo`` if the operation fails (after the rollback)."""
        self.undo.append(undo)


class OperationLog:
    """The operation logs of the datasets in ``storage``; :meth:`operation` ties an entry to a
    transaction of ``catalog``."""

    def __init__(self, storage: Storage, catalog: Catalog) -> None:
        self.storage, self.catalog = storage, catalog

    @contextmanager
    def operation(self, name: str, op: str, **details: Any) -> Iterator[Operation]:
        """One catalog transaction and the log entry of ``op`` on dataset ``name``: both happen or
        neither.

        The entry is encoded before the body runs (a value it cannot hold fails before anything
        changes) and again, with what the body added to ``details``, as the transaction's last
        step. On any failure the transaction rolls back, the entry is removed and the body's
        ``on_failure`` callbacks undo what it wrote to storage, newest first."""
        _entry(op, **details)
        logged: str | None = None
        change: Operation | None = None
        try:
            with self.catalog.transaction() as db:
                change = Operation(db, dict(details))
                yield change
                logged = self._append(name, _entry(op, **change.details))
        except BaseException:
            if logged is not None:
                self.storage.remove(logged)
            for undo in reversed(change.undo if change else []):
                try:
                    undo()
                except Exception as exc:  # noqa: BLE001 - the original error is the one to raise
                    _log.warning("dataset %r: could not undo part of a failed %s: %s", name, op, exc)
            raise

    def log(self, name: str, op: str, **details: Any) -> None:
        """Append one entry (``op`` and ``details``) to the log of dataset ``name``."""
        self._append(name, _entry(op, **details))

    def entries(self, name: str) -> list[dict[str, Any]]:
        """The log of dataset ``name``, oldest first."""
        validate_dataset_name(name)
        return [e for _, e in self._segments(name)[1]]

    def compact(self, name: str, keep_segments: int = 1) -> int:
        """Merge the log's segments into one JSON Lines object unless there are at most
        ``keep_segments``; returns how many were merged.

        The merged segment is written (named after the newest entry, so later segments sort after
        it) before the inputs are deleted; entries carry ids, so a crash in between duplicates
        nothing for readers."""
        if len(self._paths(name)) <= keep_segments:
            return 0
        paths, ordered = self._segments(name)
        target = f"{self.storage.layout.log_dir(name)}/{ordered[-1][0]}-compacted.jsonl"
        self.storage.write_bytes(target, b"".join(orjson.dumps(e) + b"\n" for _, e in ordered))
        for p in paths:
            if p != target:
                self.storage.remove(p)
        return len(paths)

    def _append(self, name: str, entry: tuple[str, bytes]) -> str:
        """Write one encoded entry as a log segment; its path."""
        path = f"{self.storage.layout.log_dir(name)}/{entry[0]}.jsonl"
        self.storage.write_bytes(path, entry[1])
        return path

    def _segments(self, name: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        """(segment paths, [(id, entry)] in time order, each entry once)."""
        paths = self._paths(name)
        entries: dict[str, dict[str, Any]] = {}
        blobs = self.storage.fs.cat(paths) if paths else {}
        for path in paths:
            for n, line in enumerate(blobs[path].splitlines()):
                if line.strip():
                    entry = json.loads(line)
                    # A compaction that died before deleting its inputs leaves entries twice.
                    entries.setdefault(entry.get("id") or f"{path}#{n}", entry)
        ordered = sorted(entries.items(), key=lambda kv: (kv[1].get("time", ""), kv[0]))
        return paths, ordered

    def _paths(self, name: str) -> list[str]:
        try:
            return sorted(p for p in self.storage.fs.ls(self.storage.layout.log_dir(name), detail=False, refresh=True)
                          if p.endswith((".jsonl", ".json")))
        except FileNotFoundError:
            return []


def _entry(op: str, **details: Any) -> tuple[str, bytes]:
    """(id, encoded line) of a log entry; encoding fails here, before anything is changed."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    entry_id = f"{stamp}-{os.getpid()}-{next(_log_seq):06d}"
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z",
             "op": op, "pid": os.getpid(), "id": entry_id, **details}
    try:
        line = orjson.dumps(entry)
    except TypeError:  # integers beyond 64 bits (valid JSON, kept exactly by the stdlib encoder)
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return entry_id, line + b"\n"
