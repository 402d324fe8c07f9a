"""The two databases a catalog can live in: an SQLite file (the default) or a PostgreSQL server.

:class:`connector.store.catalog.Catalog` holds every query and every rule (non-overlap, locks,
checkpoints, migrations) once; a backend only supplies what differs between the two databases:
how to connect, how a write transaction starts, how the schema's types are spelled, how to tell
that another connection committed, and which clock lock leases are measured on.

Both run write transactions one at a time over the whole catalog: SQLite by ``BEGIN IMMEDIATE``,
PostgreSQL by a transaction-scoped advisory lock taken first thing in every write transaction.
The catalog's check-then-write steps (a datarange overlaps none, a lock is free or stale, a
dataset name is free) are therefore correct on both without per-statement isolation subtleties;
catalog transactions are short (no data passes through them), so one at a time costs little.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from typing import Any, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

from connector.storage import one_line
from connector.store.errors import StoreError

BUSY_SECONDS = 60.0  # how long a connection waits for another one's lock before giving up
POSTGRES_SCHEMES = ("postgresql", "postgres")
# The key of the advisory lock every PostgreSQL write transaction takes (any constant: advisory
# locks are per database, and a catalog is one database).
_WRITE_LOCK_KEY = 0x6465735F636174  # "des_cat"


class Cursor(Protocol):
    """What a statement returns: rows and the number of rows it changed."""

    rowcount: int

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


class Connection(Protocol):
    """One connection to the catalog's database, as :class:`Catalog` uses it (``?`` placeholders)."""

    @property
    def in_transaction(self) -> bool:
        """True inside a transaction."""
        ...

    def execute(self, sql: str, args: Any = ..., /) -> Any:
        """Run one statement with its arguments; a :class:`Cursor`."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


def is_catalog_url(location: str | os.PathLike[str]) -> bool:
    """True if ``location`` names a PostgreSQL database (``postgresql://...``), not an SQLite file."""
    return isinstance(location, str) and urlsplit(location).scheme.lower() in POSTGRES_SCHEMES


def redacted(location: str) -> str:
    """``location`` without a password, fit for messages and logs."""
    if not is_catalog_url(location):
        return location
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc[-1]}"))


def backend_for(location: str) -> Backend:
    """The backend of a catalog location: a PostgreSQL URL or an SQLite file path."""
    return PostgresBackend(location) if is_catalog_url(location) else SqliteBackend(location)


class Backend:
    """What differs between the catalog's databases (see the module docstring)."""

    #: The database's name, for messages.
    kind = ""
    #: The exceptions the database driver raises.
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, location: str) -> None:
        self.location = location

    def describe(self) -> str:
        """The catalog's location for messages (never with a password)."""
        return redacted(self.location)

    def connect(self) -> Connection:
        """A new connection to the catalog's database, set up for the catalog."""
        raise NotImplementedError

    def begin(self, db: Connection) -> None:
        """Start a write transaction that runs alone among the catalog's write transactions."""
        raise NotImplementedError

    def table_exists(self, db: Connection, table: str) -> bool:
        """True if the database has ``table``."""
        raise NotImplementedError

    def ddl(self, statement: str) -> list[str]:
        """``statement`` (written for SQLite) as this database's statements."""
        return [statement]

    def extra_schema(self) -> list[str]:
        """Statements run after the tables are created, on a new catalog only."""
        return []

    def data_version(self, db: Connection) -> int:
        """A number that changes whenever another connection commits a change to the catalog."""
        raise NotImplementedError

    def now(self, db: Connection) -> float:
        """Seconds since the epoch on the clock lock heartbeats and leases are measured with."""
        return time.time()


class SqliteBackend(Backend):
    """An SQLite file in WAL mode; writers serialise on ``BEGIN IMMEDIATE``."""

    kind = "SQLite"
    errors = (sqlite3.Error,)

    def __init__(self, location: str) -> None:
        super().__init__(os.fspath(location))
        os.makedirs(os.path.dirname(os.path.abspath(self.location)), exist_ok=True)

    def connect(self) -> Connection:
        db = sqlite3.connect(self.location, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        _set_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
        return db

    def begin(self, db: Connection) -> None:
        db.execute("BEGIN IMMEDIATE")

    def table_exists(self, db: Connection, table: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None

    def data_version(self, db: Connection) -> int:
        return db.execute("PRAGMA data_version").fetchone()[0]


def _set_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out other connections doing the same. Two processes opening a new
    catalog at once can get SQLITE_BUSY here without SQLite's busy handler being called (it would
    deadlock), so the wait is ours."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


# SQLite's REAL is a double and its INTEGER 64 bits; PostgreSQL's are 32-bit, which would round
# timestamps and refuse keys past 2^31.
_PG_TYPES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT"}
_PG_TYPE_WORDS = re.compile(r"\b(REAL|INTEGER)\b")

# Every commit that changes a table bumps one counter: PostgreSQL's stand-in for SQLite's
# ``PRAGMA data_version`` (restore compares it before and after reading storage).
_PG_CHANGES = [
    "CREATE TABLE IF NOT EXISTS catalog_changes (n BIGINT NOT NULL)",
    "INSERT INTO catalog_changes SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM catalog_changes)",
    ("CREATE OR REPLACE FUNCTION des_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS "
     "$$ BEGIN UPDATE catalog_changes SET n = n + 1; RETURN NULL; END $$"),
    *((f"CREATE OR REPLACE TRIGGER des_changed_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
       "FOR EACH STATEMENT EXECUTE FUNCTION des_catalog_changed()")
      for table in ("datasets", "dataranges", "versions", "locks")),
]


class PostgresBackend(Backend):
    """A PostgreSQL database (psycopg 3, PostgreSQL 14 or later), shared by every process and host
    using the store."""

    kind = "PostgreSQL"

    def __init__(self, location: str) -> None:
        super().__init__(location)
        try:
            import psycopg
        except ImportError:
            raise StoreError(f"catalog {self.describe()} is a PostgreSQL URL, but psycopg is not installed "
                             "(pip install 'des-connector[postgres]')") from None
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)

    def connect(self) -> Connection:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.location, autocommit=True, row_factory=_row_factory,
                                   connect_timeout=int(BUSY_SECONDS))
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to catalog {self.describe()}: {one_line(exc)}") from None
        # A write transaction waits for another one's advisory lock as long as SQLite's would.
        conn.execute(f"SET lock_timeout = '{int(BUSY_SECONDS * 1000)}ms'")
        return _PgConnection(conn)

    def begin(self, db: Connection) -> None:
        db.execute("BEGIN")
        db.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK_KEY,))

    def table_exists(self, db: Connection, table: str) -> bool:
        return db.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0]

    def ddl(self, statement: str) -> list[str]:
        return [_PG_TYPE_WORDS.sub(lambda m: _PG_TYPES[m.group(1)], statement)]

    def extra_schema(self) -> list[str]:
        return list(_PG_CHANGES)

    def data_version(self, db: Connection) -> int:
        return db.execute("SELECT n FROM catalog_changes").fetchone()[0]

    def now(self, db: Connection) -> float:
        # The server's clock: every host measures leases on the same one.
        return db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()[0]


class Row(tuple):
    """A result row read by position or by column name, as :class:`sqlite3.Row` is."""

    _names: dict[str, int]

    def __new__(cls, names: dict[str, int], values: Any) -> Self:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: Row(names, values)


class _PgConnection:
    """A psycopg connection speaking the catalog's SQL: ``?`` placeholders become ``%s``."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._sql: dict[str, str] = {}

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return bool(self._conn.broken or self._conn.closed)

    def execute(self, sql: str, args: tuple = (), /) -> Cursor:
        if not args:  # nothing to substitute: psycopg takes the text as it is
            return self._conn.execute(sql)
        query = self._sql.get(sql)
        if query is None:
            # The catalog's SQL has no '?' or '%' inside literals, so a plain replace is exact.
            query = self._sql[sql] = sql.replace("?", "%s")
        return self._conn.execute(query, args)

    def close(self) -> None:
        self._conn.close()
