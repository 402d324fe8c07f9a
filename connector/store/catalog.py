"""The catalog: the tables indexing datasets, dataranges, versions and writer locks.

They live in an SQLite file (the default) or a PostgreSQL database shared by several hosts; this
module holds every query and rule for both, :mod:`connector.store.backends` what differs between
the two. Storage is the source of truth; the catalog is an index that :meth:`Store.restore`
rebuilds from it. Write transactions run one at a time over the whole catalog (see the backends),
and the non-overlap of dataranges is checked inside the same transaction that inserts one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from connector.store.backends import BUSY_SECONDS, Connection, backend_for
from connector.store.errors import DatasetLocked, DatasetNotFound, RangeError, StoreError
from connector.store.layout import new_tag

log = logging.getLogger("connector.store")

SCHEMA_VERSION = 3
# Changes from one schema version to the next, applied in order to older catalogs on open.
_MIGRATIONS = {
    2: ["ALTER TABLE datasets ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0"],
    3: ["ALTER TABLE dataranges ADD COLUMN data_length INTEGER"],
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',
    metadata    TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
    frozen      INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    updated     REAL NOT NULL,
    last_write  REAL,
    next_key    INTEGER NOT NULL DEFAULT 0,
    checkpoint  TEXT,
    epoch       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dataranges (
    dataset  TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    first    INTEGER NOT NULL,
    last     INTEGER NOT NULL CHECK (last >= first),
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    count    INTEGER NOT NULL,
    kind     TEXT NOT NULL DEFAULT 'records',
    created  REAL NOT NULL,
    data_length INTEGER,
    PRIMARY KEY (dataset, first)
);
CREATE TABLE IF NOT EXISTS versions (
    dataset  TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    version  TEXT NOT NULL,
    message  TEXT NOT NULL DEFAULT '',
    created  REAL NOT NULL,
    sha256   TEXT NOT NULL,
    size     INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS locks (
    dataset   TEXT PRIMARY KEY,
    token     TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    host      TEXT NOT NULL,
    since     REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""

__all__ = ["BUSY_SECONDS", "Catalog", "DatasetLock", "process_alive"]

# A lock whose holder has not refreshed it for this long is taken over even from another host;
# holders refresh it every LOCK_HEARTBEAT_SECONDS from a background thread.
LOCK_LEASE_SECONDS = 120.0
LOCK_HEARTBEAT_SECONDS = 15.0


class Catalog:
    """Typed access to the catalog's tables. One connection per thread (and per process: a
    connection is never used across a fork).

    ``location`` is an SQLite file path or a ``postgresql://`` URL (see
    :mod:`connector.store.backends`)."""

    def __init__(self, location: str) -> None:
        self.path = location
        self._backend = backend_for(location)
        self.where = self._backend.describe()
        self.errors = self._backend.errors
        self._local = threading.local()
        try:
            with self.transaction() as db:
                self._create_or_migrate(db)
        except self.errors as exc:
            raise StoreError(f"catalog {self.where} is not a usable {self._backend.kind} database: {exc}") from None

    def _create_or_migrate(self, db: Connection) -> None:
        """Create the schema in a new catalog, or bring an older one to :data:`SCHEMA_VERSION`."""
        backend = self._backend
        found = backend.table_exists(db, "schema_version")
        version = db.execute("SELECT version FROM schema_version").fetchone() if found else None
        if version is None:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    for sql in backend.ddl(statement):
                        db.execute(sql)
            for sql in backend.extra_schema():
                db.execute(sql)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif version[0] > SCHEMA_VERSION:
            raise StoreError(f"catalog {self.where} has schema version {version[0]}; this des-connector "
                             f"knows up to {SCHEMA_VERSION} (upgrade des-connector)")
        else:
            for step in range(version[0] + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    for sql in backend.ddl(statement):
                        db.execute(sql)
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # -- plumbing --------------------------------------------------------------------------------

    def _db(self) -> Connection:
        db = getattr(self._local, "db", None)
        if db is not None and (self._local.pid != os.getpid() or getattr(db, "broken", False)):
            db = None  # inherited over a fork (the parent's), or lost with its server: a new one
        if db is None:
            db = self._backend.connect()
            self._local.db, self._local.pid = db, os.getpid()
        return db

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, alone among the catalog's writers, committed at the end (rolled
        back on any exception)."""
        db = self._db()
        if db.in_transaction:  # nested: part of the outer transaction
            yield db
            return
        try:
            self._backend.begin(db)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[Any]:
        """Rows of one statement, outside any named operation (for diagnostics and tests; the
        store itself uses the named methods below)."""
        return self._db().execute(sql, args).fetchall()

    def close(self) -> None:
        """Close this thread's connection (another call opens a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            if self._local.pid == os.getpid():
                db.close()
            self._local.db = None

    def data_version(self) -> int:
        """A number that changes whenever another connection (any thread, process or host)
        commits to the catalog (SQLite's ``PRAGMA data_version``). Read outside a transaction."""
        return self._backend.data_version(self._db())

    def now(self, db: Connection) -> float:
        """The time lock heartbeats and leases are measured on (the server's, for PostgreSQL)."""
        return self._backend.now(db)

    def is_empty(self) -> bool:
        """True if the catalog holds no dataset (read inside the caller's transaction, if any)."""
        return not self.query("SELECT 1 FROM datasets LIMIT 1")

    def clear(self, db: Connection) -> None:
        """Delete every row of every table (inside ``db``'s transaction; restore refills them)."""
        for table in ("dataranges", "versions", "datasets", "locks"):
            db.execute(f"DELETE FROM {table}")

    # -- datasets --------------------------------------------------------------------------------

    def dataset(self, name: str) -> Any:
        """The row of dataset ``name``; :class:`DatasetNotFound` if there is none."""
        rows = self.query("SELECT * FROM datasets WHERE name = ?", (name,))
        if not rows:
            raise DatasetNotFound(f"dataset {name!r} not found")
        return rows[0]

    def find_dataset(self, name: str) -> Any | None:
        """The row of dataset ``name``, or None if there is none."""
        rows = self.query("SELECT * FROM datasets WHERE name = ?", (name,))
        return rows[0] if rows else None

    def has_dataset(self, name: str) -> bool:
        """True if the catalog holds dataset ``name``."""
        return bool(self.query("SELECT 1 FROM datasets WHERE name = ?", (name,)))

    def datasets(self) -> list[Any]:
        """Every dataset row, by name."""
        return self.query("SELECT * FROM datasets ORDER BY name")

    def insert_dataset(self, db: Connection, name: str, *, description: str = "", tags=(),
                       metadata: dict | None = None, status: str = "draft", frozen: bool = False,
                       created: float | None = None, next_key: int = 0, epoch: int = 0,
                       checkpoint: str | None = None) -> None:
        """Insert the row of a new dataset, inside ``db``'s transaction (``created`` defaults to now)."""
        now = time.time()
        db.execute(
            "INSERT INTO datasets (name, description, tags, metadata, status, frozen, created, updated, next_key,"
            " epoch, checkpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, description, json.dumps(list(tags)), json.dumps(metadata or {}), status, int(frozen),
             created or now, now, next_key, epoch, checkpoint))

    #: Columns of ``datasets`` that :meth:`update_dataset` may set.
    UPDATABLE = frozenset({"description", "tags", "metadata", "status", "frozen"})

    def update_dataset(self, db: Connection, name: str, **fields: Any) -> None:
        """Set the given columns (of :attr:`UPDATABLE`, values as stored) and ``updated``, inside
        ``db``'s transaction."""
        unknown = set(fields) - self.UPDATABLE
        if unknown:
            raise ValueError(f"not an updatable dataset column: {', '.join(sorted(unknown))}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE datasets SET {sets}, updated = ? WHERE name = ?", (*fields.values(), time.time(), name))

    def delete_dataset(self, name: str) -> None:
        """Delete the rows of dataset ``name``: its dataranges, versions and itself."""
        with self.transaction() as db:
            for table in ("dataranges", "versions"):
                db.execute(f"DELETE FROM {table} WHERE dataset = ?", (name,))
            db.execute("DELETE FROM datasets WHERE name = ?", (name,))

    def set_checkpoint(self, db: Connection, dataset: str, checkpoint: str | None) -> None:
        """Store ``checkpoint`` (JSON text) as the dataset's, inside ``db``'s transaction."""
        db.execute("UPDATE datasets SET checkpoint = ?, updated = ? WHERE name = ?",
                   (checkpoint, time.time(), dataset))

    def record_commit(self, db: Connection, dataset: str, next_key: int, checkpoint: str | None) -> None:
        """A writer's commit: the dataset's next key, checkpoint and write time (inside ``db``'s
        transaction, with the datarange it commits)."""
        now = time.time()
        db.execute("UPDATE datasets SET next_key = ?, last_write = ?, updated = ?, checkpoint = ? WHERE name = ?",
                   (next_key, now, now, checkpoint, dataset))

    def start_key_space(self, db: Connection, dataset: str, epoch: int) -> None:
        """Drop the dataset's dataranges and start key space ``epoch`` empty at key 0, without a
        checkpoint (inside ``db``'s transaction)."""
        db.execute("DELETE FROM dataranges WHERE dataset = ?", (dataset,))
        db.execute("UPDATE datasets SET next_key = 0, epoch = ?, checkpoint = NULL, updated = ? WHERE name = ?",
                   (epoch, time.time(), dataset))

    # -- dataranges ------------------------------------------------------------------------------

    def dataranges(self, dataset: str) -> list[Any]:
        """The dataset's datarange rows by first key (inside the caller's transaction, if any)."""
        return self.query("SELECT * FROM dataranges WHERE dataset = ? ORDER BY first", (dataset,))

    def datarange_at(self, dataset: str, key: int) -> Any | None:
        """The datarange row holding ``key``, or None."""
        # Dataranges never overlap, so the one holding ``key`` is the last starting at or before it:
        # one step down the (dataset, first) key, not a scan of every datarange below ``key``.
        rows = self.query("SELECT * FROM dataranges WHERE dataset = ? AND first <= ? ORDER BY first DESC LIMIT 1",
                          (dataset, key))
        return rows[0] if rows and rows[0]["last"] >= key else None

    def delete_dataranges_within(self, db: Connection, dataset: str, first: int, last: int) -> None:
        """Delete the dataranges lying inside ``[first, last]`` (inside ``db``'s transaction)."""
        db.execute("DELETE FROM dataranges WHERE dataset = ? AND first >= ? AND last <= ?", (dataset, first, last))

    def insert_datarange(self, db: Connection, dataset: str, first: int, last: int, path: str,
                         size: int, sha256: str, count: int, kind: str, data_length: int | None = None) -> None:
        """Insert one datarange, refusing any overlap with an existing one (same transaction)."""
        # Dataranges never overlap, so the lowest one [first, last] could overlap is the last starting
        # at or before ``first``, else the next one after it: two steps down the (dataset, first) key,
        # not a scan of every datarange below ``last``.
        clash = db.execute(
            "SELECT first, last FROM dataranges WHERE dataset = ? AND first <= ? ORDER BY first DESC LIMIT 1",
            (dataset, first)).fetchone()
        if not clash or clash["last"] < first:
            clash = db.execute(
                "SELECT first, last FROM dataranges WHERE dataset = ? AND first > ? ORDER BY first LIMIT 1",
                (dataset, first)).fetchone()
            clash = clash if clash and clash["first"] <= last else None
        if clash:
            raise RangeError(f"dataset {dataset!r}: datarange [{first}, {last}] overlaps "
                             f"[{clash['first']}, {clash['last']}]")
        db.execute("INSERT INTO dataranges (dataset, first, last, path, size, sha256, count, kind, created, data_length)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (dataset, first, last, path, size, sha256, count, kind, time.time(), data_length))

    # -- versions --------------------------------------------------------------------------------

    def has_version(self, dataset: str, version: str) -> bool:
        """True if ``dataset`` has ``version`` (inside the caller's transaction, if any)."""
        return bool(self.query("SELECT 1 FROM versions WHERE dataset = ? AND version = ?", (dataset, version)))

    def version_manifests(self, dataset: str) -> list[str]:
        """The manifests (JSON text) of the dataset's versions, in no particular order."""
        return [r["manifest"] for r in self.query("SELECT manifest FROM versions WHERE dataset = ?", (dataset,))]

    def count_versions(self, dataset: str) -> int:
        """How many versions ``dataset`` has."""
        return self.query("SELECT COUNT(*) FROM versions WHERE dataset = ?", (dataset,))[0][0]

    def insert_version(self, db: Connection, dataset: str, version: str, message: str, created: float,
                       sha256: str, size: int, manifest: str) -> None:
        """Record (or replace) one version, inside ``db``'s transaction."""
        db.execute("INSERT INTO versions (dataset, version, message, created, sha256, size, manifest)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dataset, version) DO UPDATE SET"
                   " message = excluded.message, created = excluded.created, sha256 = excluded.sha256,"
                   " size = excluded.size, manifest = excluded.manifest",
                   (dataset, version, message, created, sha256, size, manifest))

    def delete_version(self, db: Connection, dataset: str, version: str) -> None:
        """Forget one version, inside ``db``'s transaction."""
        db.execute("DELETE FROM versions WHERE dataset = ? AND version = ?", (dataset, version))

    # -- locks -----------------------------------------------------------------------------------

    def live_locks(self) -> list[Any]:
        """The lock rows whose holder is alive (not stale; inside the caller's transaction, if any)."""
        host, now = socket.gethostname(), self.now(self._db())
        return [r for r in self.query("SELECT * FROM locks") if not _stale(r, host, now)]

    def acquire_lock(self, dataset: str, token: str, wait: float) -> None:
        """Take the writer lock of ``dataset`` or raise :class:`DatasetLocked` after ``wait`` s."""
        deadline = time.monotonic() + max(wait, 0.0)
        host, pid = socket.gethostname(), os.getpid()
        told = None
        while True:
            with self.transaction() as db:
                row = db.execute("SELECT * FROM locks WHERE dataset = ?", (dataset,)).fetchone()
                now = self.now(db)
                if row is None or _stale(row, host, now):
                    db.execute("INSERT INTO locks (dataset, token, pid, host, since, heartbeat)"
                               " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset) DO UPDATE SET"
                               " token = excluded.token, pid = excluded.pid, host = excluded.host,"
                               " since = excluded.since, heartbeat = excluded.heartbeat",
                               (dataset, token, pid, host, now, now))
                    return
            holder = _holder(dataset, row)
            if time.monotonic() >= deadline:
                raise DatasetLocked(f"{holder}; waited {wait:g} s")
            if holder != told:  # a wait is said once per holder, not in silence
                log.warning("%s; waiting for it (up to %g s)", holder, wait)
                told = holder
            time.sleep(0.1)

    def lock(self, dataset: str, wait: float, purpose: str = "writer") -> DatasetLock:
        """Take the writer lock of ``dataset`` (see :class:`DatasetLock`)."""
        return DatasetLock(self, dataset, wait, purpose)

    def touch_lock(self, db: Connection, dataset: str, token: str) -> bool:
        """Refresh the heartbeat of the lock ``token`` holds; False if it no longer holds it."""
        return bool(db.execute("UPDATE locks SET heartbeat = ? WHERE dataset = ? AND token = ?",
                               (self.now(db), dataset, token)).rowcount)

    def heartbeat(self, db: Connection, dataset: str, token: str) -> None:
        """Refresh the lock inside ``db``'s transaction; :class:`DatasetLocked` if it was lost."""
        if not self.touch_lock(db, dataset, token):
            raise DatasetLocked(f"dataset {dataset!r}: this writer lost its lock (taken over as stale)")

    def release_lock(self, dataset: str, token: str) -> None:
        """Give up the lock ``token`` holds (nothing if it was taken over)."""
        with self.transaction() as db:
            db.execute("DELETE FROM locks WHERE dataset = ? AND token = ?", (dataset, token))


class DatasetLock:
    """The writer lock of one dataset, held until :meth:`release`.

    A lock row (token, pid, host, heartbeat) in the catalog; a background thread refreshes the
    heartbeat so that a long but live holder is never taken for dead. Other processes take the
    lock over when its holder's pid is gone (same host) or its heartbeat is older than
    ``LOCK_LEASE_SECONDS`` (a stalled or remote holder).

    :attr:`tag` names every object this session publishes (see :mod:`connector.store.layout`):
    a holder that was stalled past its lease and taken over can then only ever publish or delete
    objects of its own, which no other session uses.
    """

    def __init__(self, catalog: Catalog, dataset: str, wait: float, purpose: str = "writer") -> None:
        self.catalog, self.dataset = catalog, dataset
        self.token = f"{purpose}-{uuid.uuid4().hex}"
        catalog.acquire_lock(dataset, self.token, wait)
        self.tag = new_tag()  # after the lock is ours: later than any earlier holder's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"des-lock-{dataset}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(LOCK_HEARTBEAT_SECONDS):
            try:
                with self.catalog.transaction() as db:
                    self.catalog.touch_lock(db, self.dataset, self.token)
            except self.catalog.errors:
                pass  # the next beat (or the holder's own commit) tries again
        self.catalog.close()  # this thread's connection

    def check(self, db: Connection) -> None:
        """Refresh the heartbeat inside ``db``'s transaction; :class:`DatasetLocked` if lost."""
        self.catalog.heartbeat(db, self.dataset, self.token)

    def release(self) -> None:
        """Stop the heartbeat and give the lock up (nothing if already released)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self.catalog.release_lock(self.dataset, self.token)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(dataset: str, row: Any) -> str:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["since"]))
    return f"dataset {dataset!r} is being written by another writer (pid {row['pid']} on {row['host']}, since {since})"


def _stale(row: Any, host: str, now: float) -> bool:
    if row["host"] == host and not process_alive(row["pid"]):
        return True
    return now - row["heartbeat"] > LOCK_LEASE_SECONDS


def process_alive(pid: int) -> bool:
    """True unless process ``pid`` (of this host) is gone or a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) holds nothing any more.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except OSError:
        return True
