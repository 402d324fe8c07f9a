"""Store: datasets of numbered datapoints in DES dataranges, over any fsspec root, with a SQLite catalog.

This module holds the core (datasets, writing, reading, the operation log); versions and key
spaces live in :mod:`connector.store.history`, aggregate/verify/gc/restore in
:mod:`connector.store.maintenance`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count as counter
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from connector.des import DesReader
from connector.des.target import is_local, url_of
from connector.files import is_temp_name, replace_durably, write_atomically
from connector.storage import open_filesystem
from connector.store import columns, records
from connector.store.backends import Connection, is_catalog_url, redacted
from connector.store.catalog import Catalog, process_alive
from connector.store.errors import DatasetExists, DatasetNotFound, RangeError, StoreError
from connector.store.history import HistoryMixin
from connector.store.layout import Layout, validate_dataset_name
from connector.store.maintenance import MaintenanceMixin
from connector.store.model import STATUSES, Dataset, Datarange, WriteResult
from connector.store.names import record_name
from connector.store.objects import remove_quietly
from connector.store.tables import table_of
from connector.store.writer import DatasetWriter, OnCommit

DEFAULT_MAX_DATAPOINTS = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_KEY = 2**63 - 1  # the largest key the catalog (SQLite INTEGER) holds
READ_ATTEMPTS = 10  # a read that finds a container gone (replaced by aggregate) lists again
CATALOG_NAME = ".des-catalog.sqlite"
SPOOL_DIR = ".spool"  # containers being built, on the root's own disk so publishing is a rename
_log_seq = counter()
_log = logging.getLogger(__name__)


def default_catalog(fs: fsspec.AbstractFileSystem, root: str) -> str:
    """Beside the data for a local root (``<root>/.des-catalog.sqlite``); under the user cache
    directory for a remote one, one file per root URL."""
    if is_local(fs):
        return os.path.join(root, CATALOG_NAME)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url_of(fs, root).encode()).hexdigest()[:16]
    return os.path.join(base, "des-connector", "catalogs", f"{digest}.sqlite")


class Store(HistoryMixin, MaintenanceMixin):
    """Datasets, dataranges and versions under ``root``.

    Parameters
    ----------
    root:
        A local folder or any fsspec URL (``s3://bucket/prefix``).
    catalog:
        Path of the SQLite catalog (see :func:`default_catalog`), or a ``postgresql://`` URL of a
        PostgreSQL database that several hosts share. An empty catalog over a non-empty root is
        rebuilt from storage on open.
    storage_options:
        Options for the root's filesystem (credentials, ``client_kwargs={"endpoint_url": ...}``).
    max_datapoints, max_bytes:
        A datarange container is cut when it reaches either.
    compression:
        ``None``, ``"zstd"`` or ``"gzip"`` for file datapoints (record containers stay plain so
        their DATA region is JSON Lines).
    read_only:
        Create nothing: the root must exist (:class:`StoreError` otherwise), and a root without a
        catalog file is read through a private catalog rebuilt from storage and removed on
        :meth:`close` (a remote root's default catalog, a cache under the user's cache directory,
        is rebuilt in place). For commands that only look.
    """

    def __init__(self, root: str | os.PathLike[str], catalog: str | None = None, *,
                 storage_options: Mapping[str, Any] | None = None, max_datapoints: int = DEFAULT_MAX_DATAPOINTS,
                 max_bytes: int = DEFAULT_MAX_BYTES, compression: str | None = None,
                 read_only: bool = False) -> None:
        if max_datapoints < 1 or max_bytes < 1:
            raise ValueError("max_datapoints and max_bytes must be positive")
        # Opened by the storage policy: with bounded botocore retries, s3fs does one attempt per call.
        self.fs, path = open_filesystem(root, dict(storage_options or {}))
        self.root = path.rstrip("/")
        self.layout = Layout(self.root)
        self.max_datapoints, self.max_bytes, self.compression = max_datapoints, max_bytes, compression
        self.catalog_path = catalog or default_catalog(self.fs, self.root)
        self._private_catalog_dir: str | None = None
        if read_only:
            self._open_read_only(cache_catalog=catalog is None and not is_local(self.fs))
        elif is_local(self.fs):
            self.fs.makedirs(self.root, exist_ok=True)
        self.catalog = Catalog(self.catalog_path)
        if self.catalog.is_empty() and self._storage_datasets():
            self.restore(only_if_empty=True)

    def _open_read_only(self, cache_catalog: bool) -> None:
        """Refuse a root that does not exist; stand in a throw-away catalog for a missing one.

        A remote root's default catalog is a cache in the user's cache directory, outside the root
        and outside anything the user named: it is rebuilt there (as any open would) so the next
        command does not list the root again.
        """
        if not self.fs.isdir(self.root):
            raise StoreError(f"store root {self.url(self.root)} does not exist")
        if not cache_catalog and not is_catalog_url(self.catalog_path) and not os.path.exists(self.catalog_path):
            self._private_catalog_dir = tempfile.mkdtemp(prefix="des-catalog-")
            self.catalog_path = os.path.join(self._private_catalog_dir, CATALOG_NAME)

    def close(self) -> None:
        self.catalog.close()
        if self._private_catalog_dir is not None:
            shutil.rmtree(self._private_catalog_dir, ignore_errors=True)
            self._private_catalog_dir = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url(self.root)!r}, catalog={redacted(self.catalog_path)!r})"

    # -- plumbing used by the writer ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return url_of(self.fs, path)

    @staticmethod
    def dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    def spool_dir(self, dataset: str) -> str:
        """Where containers are built before they are published: beside their final place on a
        local root (so publishing is a rename), a temporary folder otherwise."""
        if is_local(self.fs):
            os.makedirs(self.layout.ranges_dir(dataset), exist_ok=True)
            path = os.path.join(self.root, SPOOL_DIR)
        else:
            import tempfile

            path = os.path.join(tempfile.gettempdir(), "des-connector-spool")
        os.makedirs(path, exist_ok=True)
        return path

    @staticmethod
    def _spool_id(dataset: str) -> str:
        # A digest, not the name: a name of up to 255 bytes plus a suffix would not fit in a file name.
        return hashlib.sha256(dataset.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def spool_prefix(self, dataset: str) -> str:
        """Spool files are named ``<sha256(dataset)[:16]>.<pid>.<random>.des`` so stale ones can
        be recognised."""
        return f"{self._spool_id(dataset)}.{os.getpid()}."

    def remove_stale_spools(self, dataset: str) -> None:
        """Delete spool files of ``dataset`` left by processes that died (a crash mid-container)."""
        folder = self.spool_dir(dataset)
        for name in os.listdir(folder):
            # "<id>.<pid>.<random>.des", or DesWriter's hidden ".<that>.<hex>.partial".
            head, _, rest = name.lstrip(".").partition(f"{self._spool_id(dataset)}.")
            pid = rest.split(".", 1)[0]
            if head == "" and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass

    def publish(self, local_file: str, path: str) -> None:
        """Make a finished container visible under ``path`` in one step."""
        if is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            replace_durably(local_file, path)  # the spool file was fsynced when its container was
        else:
            self.fs.put_file(local_file, path)

    def list_range_objects(self, dataset: str, epoch: int = 0, *, checkpoints: bool = False,
                           temporaries: bool = False) -> list[str]:
        """Container objects (and with ``checkpoints``, checkpoint files; with ``temporaries``,
        unfinished atomic writes, see :func:`connector.files.temp_name`) of one key space."""
        try:
            paths = self.fs.ls(self.layout.ranges_dir(dataset, epoch), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        layout = self.layout
        return sorted(p for p in paths if layout.parse_range(p.rsplit("/", 1)[-1])
                      or (checkpoints and layout.parse_checkpoint(p.rsplit("/", 1)[-1]) is not None)
                      or (temporaries and is_temp_name(p.rsplit("/", 1)[-1])))

    def _epochs(self, dataset: str) -> list[int]:
        """Key spaces with a folder in storage (0 when ``dataranges/`` holds containers)."""
        try:
            entries = self.fs.ls(self.layout.ranges_dir(dataset), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in entries]
        found = {e for e in map(self.layout.parse_epoch, names) if e is not None}
        if any(self.layout.parse_range(n) for n in names):
            found.add(0)
        return sorted(found)

    def _write_json(self, path: str, value: Any) -> None:
        self.write_bytes(path, json.dumps(value, indent=2, sort_keys=True).encode())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace the object ``path`` with ``data`` in one step (never seen half-written; durable
        once this returns on a local root)."""
        if is_local(self.fs):
            write_atomically(path, data)
        else:
            self.fs.pipe_file(path, data)

    def _read_json(self, path: str) -> Any:
        return json.loads(self.fs.cat_file(path))

    # -- datasets --------------------------------------------------------------------------------

    def create_dataset(self, name: str, description: str = "", tags: Iterable[str] = (),
                       metadata: Mapping[str, Any] | None = None, status: str = "draft") -> Dataset:
        """Create a dataset; :class:`DatasetExists` if the name is taken."""
        validate_dataset_name(name)
        _check_status(status)
        tags = _check_tags(tags)
        _check_metadata(metadata)
        # All or nothing: the row, dataset.json and the log entry (see :meth:`operation`).
        with self.operation(name, "create", description=description, tags=list(tags), status=status) as op:
            if self.catalog.has_dataset(name):
                raise DatasetExists(f"dataset {name!r} already exists")
            self.catalog.insert_dataset(op.db, name, description=description, tags=tags,
                                        metadata=dict(metadata or {}), status=status)
            op.on_failure(lambda: remove_quietly(self.fs, self.layout.dataset_json(name)))
            self._save_metadata(name)
        return self.get_dataset(name)

    def ensure_dataset(self, name: str, **kwargs: Any) -> Dataset:
        """The dataset ``name``, created with ``kwargs`` if it does not exist."""
        try:
            return self.get_dataset(name)
        except DatasetNotFound:
            try:
                return self.create_dataset(name, **kwargs)
            except DatasetExists:  # created by a concurrent process in between
                return self.get_dataset(name)

    def get_dataset(self, name: str) -> Dataset:
        validate_dataset_name(name)
        return Dataset.from_row(self.catalog.dataset(name))

    def list_datasets(self, status: str | None = None, tags: Iterable[str] | None = None,
                      limit: int = 100, offset: int = 0) -> list[Dataset]:
        """Datasets by name; ``tags`` keeps those carrying every given tag."""
        if status is not None:
            _check_status(status)
        wanted = set(tags or ())
        rows = self.catalog.datasets()
        out = [Dataset.from_row(r) for r in rows]
        out = [d for d in out if (status is None or d.status == status) and wanted <= set(d.tags)]
        return out[offset: offset + limit]

    def update_dataset(self, name: str, description: str | None = None, tags: Iterable[str] | None = None,
                       metadata: Mapping[str, Any] | None = None, status: str | None = None) -> Dataset:
        """Change the given fields; ``metadata`` keys are merged (a ``None`` value removes a key)."""
        current = self.get_dataset(name)
        fields: dict[str, Any] = {}
        if description is not None:
            fields["description"] = description
        if tags is not None:
            fields["tags"] = json.dumps(_check_tags(tags))
        if metadata is not None:
            _check_metadata(metadata)
            merged = dict(current.metadata)
            for k, v in metadata.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            fields["metadata"] = json.dumps(merged)
        if status is not None:
            fields["status"] = _check_status(status)
        if fields:
            self._update(name, "update", fields, **{k: (json.loads(v) if k in ("tags", "metadata") else v)
                                                    for k, v in fields.items()})
        return self.get_dataset(name)

    def _update(self, name: str, op: str, fields: Mapping[str, Any], **details: Any) -> None:
        """Change catalog ``fields`` of ``name``, its ``dataset.json`` and log ``op``, all or nothing
        (see :meth:`operation`); after a failure dataset.json is rewritten from the unchanged row."""
        with self.operation(name, op, **details) as change:
            self.catalog.update_dataset(change.db, name, **fields)
            change.on_failure(lambda: self._save_metadata(name))  # from the row as rolled back
            self._save_metadata(name)

    @contextmanager
    def operation(self, name: str, op: str, **details: Any) -> Iterator[Operation]:
        """One catalog transaction and the log entry of ``op``: both happen or neither.

        The entry is encoded before the body runs (a value it cannot hold fails before anything
        changes) and again, with what the body added to ``details``, as the transaction's last
        step. On any failure the transaction rolls back, the entry is removed and the body's
        ``on_failure`` callbacks undo what it wrote to storage, newest first."""
        self._log_entry(op, **details)
        logged: str | None = None
        change: Operation | None = None
        try:
            with self.catalog.transaction() as db:
                change = Operation(db, dict(details))
                yield change
                logged = self._append_log(name, self._log_entry(op, **change.details))
        except BaseException:
            if logged is not None:
                remove_quietly(self.fs, logged)
            for undo in reversed(change.undo if change else []):
                try:
                    undo()
                except Exception as exc:  # noqa: BLE001 - the original error is the one to raise
                    _log.warning("dataset %r: could not undo part of a failed %s: %s", name, op, exc)
            raise

    def delete_dataset(self, name: str, *, wait: float = 30.0) -> None:
        """Delete a dataset and everything under it: objects first, then catalog rows.

        Takes the writer lock (waits ``wait`` seconds for a running writer). A crash part-way
        leaves the catalog rows (and whatever objects remain), so running ``delete`` again
        finishes the job; a dataset known only to storage (catalog lost) is deleted as well.
        """
        validate_dataset_name(name)
        known = self.catalog.has_dataset(name)
        folder = self.layout.dataset_dir(name)
        exists = self.fs.exists(folder)
        if not known and not exists:
            raise DatasetNotFound(f"dataset {name!r} not found")
        lock = self.catalog.lock(name, wait, "delete") if known else None
        try:
            if exists:
                self.fs.rm(folder, recursive=True)
            self.catalog.delete_dataset(name)
        finally:
            if lock is not None:
                lock.release()

    def _save_metadata(self, name: str) -> None:
        d = self.get_dataset(name)
        self._write_json(self.layout.dataset_json(name), {
            "format": "des-connector/dataset/1", "name": d.name, "description": d.description,
            "tags": list(d.tags), "metadata": d.metadata, "status": d.status, "frozen": d.frozen,
            "created": d.created, "epoch": d.epoch})

    # -- freeze / stats / log ----------------------------------------------------------------------

    def freeze(self, name: str) -> Dataset:
        """Refuse every write to ``name`` until :meth:`unfreeze`."""
        self.get_dataset(name)
        self._update(name, "freeze", {"frozen": 1})
        return self.get_dataset(name)

    def unfreeze(self, name: str) -> Dataset:
        self.get_dataset(name)
        self._update(name, "unfreeze", {"frozen": 0})
        return self.get_dataset(name)

    def stats(self, name: str) -> dict[str, Any]:
        d = self.get_dataset(name)
        ranges = self.dataranges(name)
        nversions = self.catalog.count_versions(name)
        return {"dataset": name, "datapoints": sum(r.count for r in ranges), "bytes": sum(r.size for r in ranges),
                "dataranges": len(ranges), "versions": nversions, "next_key": d.next_key,
                "missing": self.missing_ranges(name), "frozen": d.frozen, "status": d.status,
                "last_write": d.last_write}

    def log(self, name: str, op: str, **details: Any) -> None:
        """Append one entry to the dataset's operation log in storage (a JSON Lines segment)."""
        self._append_log(name, self._log_entry(op, **details))

    @staticmethod
    def _log_entry(op: str, **details: Any) -> tuple[str, bytes]:
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

    def _append_log(self, name: str, entry: tuple[str, bytes]) -> str:
        """Write one encoded entry as a log segment; its path."""
        path = f"{self.layout.log_dir(name)}/{entry[0]}.jsonl"
        self.write_bytes(path, entry[1])
        return path

    def log_entries(self, name: str) -> list[dict[str, Any]]:
        """The dataset's operation log, oldest first."""
        validate_dataset_name(name)
        return [e for _, e in self._log_segments(name)[1]]

    def _log_segments(self, name: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        """(segment paths, [(id, entry)] in time order, each entry once)."""
        paths = self._log_paths(name)
        entries: dict[str, dict[str, Any]] = {}
        blobs = self.fs.cat(paths) if paths else {}
        for path in paths:
            for n, line in enumerate(blobs[path].splitlines()):
                if line.strip():
                    entry = json.loads(line)
                    # A compaction that died before deleting its inputs leaves entries twice.
                    entries.setdefault(entry.get("id") or f"{path}#{n}", entry)
        ordered = sorted(entries.items(), key=lambda kv: (kv[1].get("time", ""), kv[0]))
        return paths, ordered

    def _log_paths(self, name: str) -> list[str]:
        try:
            return sorted(p for p in self.fs.ls(self.layout.log_dir(name), detail=False, refresh=True)
                          if p.endswith((".jsonl", ".json")))
        except FileNotFoundError:
            return []

    def compact_log(self, name: str, keep_segments: int = 1) -> int:
        """Merge the log's segments into one JSON Lines object; returns how many were merged.

        The merged segment is written (named after the newest entry, so later segments sort after
        it) before the inputs are deleted; entries carry ids, so a crash in between duplicates
        nothing for readers."""
        if len(self._log_paths(name)) <= keep_segments:
            return 0
        paths, ordered = self._log_segments(name)
        target = f"{self.layout.log_dir(name)}/{ordered[-1][0]}-compacted.jsonl"
        self.write_bytes(target, b"".join(orjson.dumps(e) + b"\n" for _, e in ordered))
        for p in paths:
            if p != target:
                remove_quietly(self.fs, p)
        return len(paths)

    # -- writing ---------------------------------------------------------------------------------

    def writer(self, dataset: str, kind: str = "records", *, wait: float = 30.0,
               on_commit: OnCommit | None = None, row_ids: str | None = None) -> DatasetWriter:
        """A writer appending to ``dataset`` (which must exist); one per dataset at a time.
        ``row_ids`` names a UUID column every record written gets (see :mod:`connector.store.columns`)."""
        validate_dataset_name(dataset)
        return DatasetWriter(self, dataset, kind, wait=wait, on_commit=on_commit, row_ids=row_ids)

    def checkpoint(self, dataset: str) -> Any:
        """The checkpoint stored with the dataset's last commit that carried one."""
        raw = self.catalog.dataset(dataset)["checkpoint"]
        return None if raw is None else json.loads(raw)

    def set_checkpoint(self, dataset: str, value: Any, *, wait: float = 30.0) -> None:
        """Store ``value`` as the dataset's checkpoint without writing data (under the writer lock;
        kept beside the containers too, so it survives a lost catalog)."""
        with self.catalog.lock(dataset, wait, "checkpoint") as lock:
            d = self.get_dataset(dataset)
            text = self.dumps(value)
            old = self.checkpoint_files(self.list_range_objects(dataset, d.epoch, checkpoints=True), d.next_key)
            path = self.layout.checkpoint(dataset, d.epoch, d.next_key, lock.tag)
            self.write_bytes(path, text.encode())
            try:
                with self.catalog.transaction() as db:
                    lock.check(db)
                    self.catalog.set_checkpoint(db, dataset, text)
            except BaseException:
                remove_quietly(self.fs, path)
                raise
            for p in old:
                remove_quietly(self.fs, p)

    def write_records(self, dataset: str, batches: Iterable[pa.RecordBatch | pa.Table | Sequence[Mapping]]) -> WriteResult:
        """Append records (Arrow batches or lists of dicts) to ``dataset`` (created if missing)."""
        self.ensure_dataset(dataset)
        with self.writer(dataset, "records") as w:
            for batch in batches:
                if isinstance(batch, (pa.RecordBatch, pa.Table)):
                    w.write_batch(batch)
                else:
                    w.write_json_lines([orjson.dumps(dict(r)) for r in batch])
        return _result(w.committed)

    def write_files(self, dataset: str, urls: Iterable[str], storage_options: Mapping[str, Any] | None = None,
                    *, relative_to: str | None = None) -> WriteResult:
        """Pack files as datapoints (member = path relative to ``relative_to`` or the base name)."""
        self.ensure_dataset(dataset)
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

    # -- reading ---------------------------------------------------------------------------------

    def dataranges(self, dataset: str) -> list[Datarange]:
        self.get_dataset(dataset)
        return [self._datarange(r) for r in self.catalog.dataranges(dataset)]

    def _datarange(self, row) -> Datarange:
        # Paths are kept relative to the root (absolute ones of older catalogs resolve the same).
        path = self.layout.absolute(row["dataset"], row["path"])
        return Datarange(row["dataset"], row["first"], row["last"], self.url(path), row["size"],
                         row["sha256"], row["count"], row["kind"], row["data_length"])

    def datarange_for(self, dataset: str, key: int) -> Datarange:
        """The datarange holding ``key``."""
        row = self.catalog.datarange_at(dataset, key)
        if row is None:
            self.get_dataset(dataset)
            raise RangeError(f"dataset {dataset!r} has no datapoint {key}")
        return self._datarange(row)

    def _reader(self, datarange: Datarange) -> DesReader:
        return DesReader(self.fs._strip_protocol(datarange.url), fs=self.fs, size=datarange.size)

    def _ranges_of(self, dataset: str, version: str | None) -> list[Datarange]:
        return list(self.get_version(dataset, version).dataranges) if version else self.dataranges(dataset)

    def read(self, dataset: str, key: int, version: str | None = None) -> bytes:
        """The bytes of datapoint ``key`` (a record's JSON line, or a file's content), from the
        current data or as of ``version``."""
        check_key(dataset, key)
        for attempt in range(READ_ATTEMPTS):
            try:
                return self._read_one(dataset, key, version)
            except FileNotFoundError:
                # An aggregate replaced the container after we looked it up: look again.
                if version is not None or attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _read_one(self, dataset: str, key: int, version: str | None) -> bytes:
        if version is None:
            d = self.datarange_for(dataset, key)
        else:
            found = [r for r in self._ranges_of(dataset, version) if r.first <= key <= r.last]
            if not found:
                raise RangeError(f"dataset {dataset!r} version {version} has no datapoint {key}")
            d = found[0]
        if d.kind == "records":
            line = records.record_at(self.fs, self.fs._strip_protocol(d.url), d.size, key - d.first, record_name(key))
            if line is not None:
                return line
            return self._reader(d).read(record_name(key))
        reader = self._reader(d)
        return reader.read(reader.names()[key - d.first])

    def read_lines(self, dataset: str, first: int = 0, last: int | None = None,
                   version: str | None = None, *, whole: bool | None = None) -> Iterator[bytes]:
        """Records ``[first, last]`` as JSON Lines bytes, one chunk per container (one ranged GET
        of its DATA region each); ``last=None`` reads to the end.

        Keys are whole numbers from 0 to ``MAX_KEY``. A range asked for (``whole``, by default
        anything but ``0, None`` which means "every record there is") must hold every one of its
        keys: a missing key (past the end, in a gap) is a :class:`RangeError` raised before the
        first chunk.

        Atomic against a concurrent ``aggregate``: a container deleted after the dataranges were
        listed means a merged one replaced it, so the listing is read again and the read goes on
        from the first key not yet returned (every datapoint is returned once)."""
        for _, chunk in self._chunks(dataset, first, last, version, whole):
            yield chunk

    def _chunks(self, dataset: str, first: int, last: int | None, version: str | None,
                whole: bool | None = None) -> Iterator[tuple[int, bytes]]:
        """:meth:`read_lines` with the key of each chunk's first record."""
        check_key(dataset, first)
        if last is not None:
            check_key(dataset, last)
            if first > last:
                raise RangeError(f"dataset {dataset!r}: range [{first}, {last}] is empty (first > last)")
        next_key = first
        for attempt in range(READ_ATTEMPTS):
            try:
                ranges = self._ranges_of(dataset, version)
                if attempt == 0 and (whole if whole is not None else (first, last) != (0, None)):
                    _check_present(dataset, version, ranges, first, last)
                for d in ranges:
                    if d.last < next_key or (last is not None and d.first > last):
                        continue
                    if d.kind != "records":
                        raise StoreError(f"datarange [{d.first}, {d.last}] of {dataset!r} holds files, not "
                                         "records; read them one by one")
                    chunk = self._slice_lines(d, next_key, last)
                    start = max(next_key, d.first)
                    next_key = (d.last if last is None else min(d.last, last)) + 1
                    yield start, chunk
                return
            except FileNotFoundError:
                if version is not None or attempt == READ_ATTEMPTS - 1:
                    raise

    def _slice_lines(self, d: Datarange, first: int | None, last: int | None) -> bytes:
        data = records.data_region(self.fs, self.fs._strip_protocol(d.url), d.size, d.data_length)
        lo = 0 if first is None else max(first - d.first, 0)
        hi = d.count if last is None else min(last - d.first + 1, d.count)
        if (lo, hi) != (0, d.count):
            lines = data.split(b"\n")[lo:hi]
            data = b"\n".join(lines) + b"\n"
        return data

    def read_range(self, dataset: str, first: int, last: int, version: str | None = None, *,
                   meta: bool = False, latest_by: Sequence[str] | None = None) -> pa.Table:
        """Records ``[first, last]`` as a table: one ranged GET of the DATA region per container.
        ``meta=True`` adds the records' metadata columns (see :meth:`read_meta`) after theirs.
        ``latest_by`` (top-level field names, e.g. a primary key) keeps only the last record (the
        highest key) of each distinct combination of their values, in key order."""
        table = table_of(self._chunks(dataset, first, last, version))
        if meta:
            table = self._with_meta(dataset, table, first, last, version)
        return table.take(_latest_rows(dataset, table, latest_by)) if latest_by else table

    def latest_lines(self, dataset: str, fields: Sequence[str], version: str | None = None) -> bytes:
        """The JSON Lines of the latest record (highest key) of each distinct combination of the
        top-level ``fields`` (e.g. a primary key), in key order: each record's stored bytes."""
        chunks = list(self._chunks(dataset, 0, None, version))
        table = table_of(chunks)
        lines = [line for _, data in chunks for line in data.split(b"\n")[:-1]]
        if len(lines) != table.num_rows:
            raise StoreError(f"dataset {dataset!r}: {len(lines)} lines but {table.num_rows} records")
        return b"".join(lines[i] + b"\n" for i in _latest_rows(dataset, table, fields).to_pylist())

    def to_table(self, dataset: str, version: str | None = None, *, meta: bool = False,
                 latest_by: Sequence[str] | None = None) -> pa.Table:
        """Every record of ``dataset`` (as of ``version``, if given) as one table (``meta`` and
        ``latest_by``: see :meth:`read_range`)."""
        table = table_of(self._chunks(dataset, 0, None, version))
        if meta:
            table = self._with_meta(dataset, table, 0, None, version)
        return table.take(_latest_rows(dataset, table, latest_by)) if latest_by else table

    def to_dask(self, dataset: str, version: str | None = None, columns: Sequence[str] | None = None,
                latest_by: Sequence[str] | None = None) -> Any:
        """Every record of ``dataset`` (as of ``version``) as a lazy Dask DataFrame: one partition
        per datarange, each one ranged GET, indexed by key (see :mod:`connector.store.dask`);
        ``latest_by``: the last record per combination of those fields (see :meth:`read_range`)."""
        from connector.store.dask import to_dask

        return to_dask(self, dataset, version, columns, latest_by)

    def read_meta(self, dataset: str, key: int, version: str | None = None) -> dict[str, Any]:
        """The metadata columns kept for record ``key`` beside its bytes (e.g. a destination's
        ``_airbyte_raw_id``, ``_airbyte_extracted_at``...); ``{}`` if its writer kept none."""
        check_key(dataset, key)
        found = [d for d in self._ranges_of(dataset, version) if d.first <= key <= d.last]
        if not found:
            where = f"dataset {dataset!r}" + (f" version {version}" if version else "")
            raise RangeError(f"{where} has no datapoint {key}")
        d = found[0]
        return {name: values[0] for name, values in columns.expand(self._columns_meta(d), key - d.first,
                                                                   key - d.first + 1).items()}

    def _columns_meta(self, d: Datarange) -> dict[str, Any]:
        """The column part of the META of the first member of a record datarange."""
        if d.kind != "records":
            return {}
        meta = records.first_member_meta(self.fs, self.fs._strip_protocol(d.url), d.size)
        if meta is None:  # not laid out by our writer: the reader finds it
            reader = self._reader(d)
            meta = reader.meta(reader.names()[0])
        return {k: meta[k] for k in ("columns", "row_ids") if k in meta}

    def _with_meta(self, dataset: str, table: pa.Table, first: int, last: int | None,
                   version: str | None) -> pa.Table:
        chunks: dict[str, list[pa.Array]] = {}
        done = 0
        for d in self._ranges_of(dataset, version):
            if d.last < first or (last is not None and d.first > last):
                continue
            lo, hi = max(first, d.first) - d.first, (d.last if last is None else min(last, d.last)) - d.first + 1
            got = columns.expand_arrays(self._columns_meta(d), lo, hi)
            for name in chunks.keys() - got.keys():
                chunks[name].append(pa.nulls(hi - lo))
            for name, column in got.items():
                chunks.setdefault(name, [pa.nulls(done)] if done else []).append(column)
            done += hi - lo
        if done != table.num_rows:
            raise StoreError(f"dataset {dataset!r}: {table.num_rows} records read but {done} keys listed "
                             "(the dataset changed during the read); read again")
        for name, parts in chunks.items():
            kept = name if name not in table.column_names else f"{name}_meta"  # a record field of that name stays
            table = table.append_column(kept, _concat(parts))
        return table

    def missing_ranges(self, dataset: str) -> list[tuple[int, int]]:
        """Gaps in the key space from 0 to the largest key, as ``(first, last)`` pairs."""
        gaps, expected = [], 0
        for d in self.dataranges(dataset):
            if d.first > expected:
                gaps.append((expected, d.first - 1))
            expected = max(expected, d.last + 1)
        return gaps


@dataclass
class Operation:
    """What the body of :meth:`Store.operation` works with: the transaction's connection, the log
    entry's details (the body may add to them) and undo callbacks for its storage writes."""

    db: Connection
    details: dict[str, Any]
    undo: list[Callable[[], None]] = field(default_factory=list)

    def on_failure(self, undo: Callable[[], None]) -> None:
        """Call ``undo`` if the operation fails (after the rollback)."""
        self.undo.append(undo)


def check_key(dataset: str, key: Any) -> int:
    """``key`` if it can be a datapoint key (a whole number from 0 to MAX_KEY), else RangeError."""
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= MAX_KEY:
        raise RangeError(f"dataset {dataset!r}: {key!r} is not a datapoint key (keys are whole numbers "
                         f"from 0 to {MAX_KEY})")
    return key


def _check_present(dataset: str, version: str | None, ranges: Sequence[Datarange], first: int,
                   last: int | None) -> None:
    """RangeError naming the missing keys unless every key of ``[first, last]`` (``last=None``:
    up to the last key) is in ``ranges``."""
    end = max((d.last for d in ranges), default=-1)
    wanted_last = end if last is None else last
    missing, expected = [], first
    for d in ranges:
        if d.last < expected or d.first > wanted_last:
            continue
        if d.first > expected:
            missing.append((expected, d.first - 1))
        expected = d.last + 1
    if first > end:  # past the end: name the first key asked for (or the whole range)
        missing.append((first, max(first, wanted_last)))
    elif expected <= wanted_last:
        missing.append((expected, wanted_last))
    if missing:
        where = f"dataset {dataset!r}" + (f" version {version}" if version else "")
        holds = f"its last key is {end}" if end >= 0 else "it is empty"
        gaps = ", ".join(f"[{a}, {b}]" if a != b else str(a) for a, b in missing)
        raise RangeError(f"{where} has no datapoint {gaps} ({holds})")


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


def _concat(parts: list[pa.Array]) -> pa.Array:
    """One array of ``parts`` whose types may differ only by all-null parts (or else are unified
    through Python values: e.g. integer and fractional ``emitted_at`` in different containers)."""
    types = {p.type for p in parts if p.type != pa.null()}
    if len(types) <= 1:
        target = types.pop() if types else pa.null()
        return pa.concat_arrays([p.cast(target) if p.type != target else p for p in parts])
    return pa.array([v for p in parts for v in p.to_pylist()])


def _latest_rows(dataset: str, table: pa.Table, fields: Sequence[str]) -> pa.Array:
    """Indices of the last row of ``table`` for each distinct combination of ``fields``, ascending."""
    missing = [f for f in fields if f not in table.column_names]
    if missing and table.num_rows:
        raise StoreError(f"dataset {dataset!r}: no field {missing[0]!r} to keep the latest record by "
                         f"(fields: {', '.join(table.column_names)})")
    if not table.num_rows:
        return pa.array([], pa.int64())
    row = "__des_row__"
    while row in table.column_names:
        row += "_"
    keyed = pa.table({**{f"k{i}": table.column(f) for i, f in enumerate(fields)},
                      row: pa.array(range(table.num_rows), pa.int64())})
    try:
        last = keyed.group_by([f"k{i}" for i in range(len(fields))], use_threads=False).aggregate([(row, "max")])
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise StoreError(f"dataset {dataset!r}: cannot keep the latest record by {list(fields)}: {exc}") from None
    return pc.take(last.column(f"{row}_max"), pc.sort_indices(last.column(f"{row}_max")))


def _check_metadata(metadata: Any) -> None:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise StoreError(f"metadata must be a JSON object (a map of keys to values), not {type(metadata).__name__}")
    try:
        json.dumps(dict(metadata or {}), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"metadata must be JSON-serialisable: {exc}") from None


def _check_tags(tags: Iterable[str]) -> list[str]:
    tags = list(tags)
    for t in tags:
        if not isinstance(t, str) or not t or len(t) > 100:
            raise StoreError(f"tag {t!r} must be a non-empty string of at most 100 characters")
    return sorted(set(tags))


def _iso(info: Mapping[str, Any]) -> str | None:
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
