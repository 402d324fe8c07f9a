"""Store: datasets of numbered datapoints in DES dataranges, over any fsspec root, with a SQLite catalog."""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import count as counter
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.json as pajson

from connector.des import DesReader, DesWriter
from connector.des.cache import invalidate
from connector.des.target import is_local, resolve, url_of
from connector.store import records
from connector.store import versions as vers
from connector.store.catalog import Catalog, _stale
from connector.store.errors import (DatasetExists, DatasetLocked, DatasetNotFound, RangeError, StoreError,
                                    VersionError)
from connector.store.layout import Layout, validate_dataset_name
from connector.store.model import Dataset, Datarange, Version, WriteResult
from connector.store.writer import DatasetWriter, OnCommit, record_name, record_names

STATUSES = ("draft", "active", "archived")
DEFAULT_MAX_DATAPOINTS = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
CATALOG_NAME = ".des-catalog.sqlite"
OVERWRITE_VERSION_PREFIX = "0.0.0-overwrite."  # versions kept by begin_overwrite until finish_overwrite
SPOOL_DIR = ".spool"  # containers being built, on the root's own disk so publishing is a rename
_log_seq = counter()
# Big blocks: a container's DATA region is parsed in few, large, multi-threaded pieces.
_JSON_READ = pajson.ReadOptions(block_size=16 * 1024 * 1024)


def default_catalog(fs: fsspec.AbstractFileSystem, root: str) -> str:
    """Beside the data for a local root (``<root>/.des-catalog.sqlite``); under the user cache
    directory for a remote one, one file per root URL."""
    if is_local(fs):
        return os.path.join(root, CATALOG_NAME)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url_of(fs, root).encode()).hexdigest()[:16]
    return os.path.join(base, "des-connector", "catalogs", f"{digest}.sqlite")


class Store:
    """Datasets, dataranges and versions under ``root``.

    Parameters
    ----------
    root:
        A local folder or any fsspec URL (``s3://bucket/prefix``).
    catalog:
        Path of the SQLite catalog (see :func:`default_catalog`). An empty catalog over a
        non-empty root is rebuilt from storage on open.
    storage_options:
        Options for the root's filesystem (credentials, ``client_kwargs={"endpoint_url": ...}``).
    max_datapoints, max_bytes:
        A datarange container is cut when it reaches either.
    compression:
        ``None``, ``"zstd"`` or ``"gzip"`` for file datapoints (record containers stay plain so
        their DATA region is JSON Lines).
    """

    def __init__(self, root: str | os.PathLike[str], catalog: str | None = None, *,
                 storage_options: Mapping[str, Any] | None = None, max_datapoints: int = DEFAULT_MAX_DATAPOINTS,
                 max_bytes: int = DEFAULT_MAX_BYTES, compression: str | None = None) -> None:
        if max_datapoints < 1 or max_bytes < 1:
            raise ValueError("max_datapoints and max_bytes must be positive")
        self.fs, path = resolve(root, None, dict(storage_options or {}))
        self.root = path.rstrip("/")
        if is_local(self.fs):
            self.fs.makedirs(self.root, exist_ok=True)
        self.layout = Layout(self.root)
        self.max_datapoints, self.max_bytes, self.compression = max_datapoints, max_bytes, compression
        self.catalog_path = catalog or default_catalog(self.fs, self.root)
        self.catalog = Catalog(self.catalog_path)
        if self.catalog.is_empty() and self._storage_datasets():
            self.restore()

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url(self.root)!r}, catalog={self.catalog_path!r})"

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

    def spool_prefix(self, dataset: str) -> str:
        """Spool files are named ``<dataset>.<pid>.<random>.des`` so stale ones can be recognised."""
        return f"{dataset}.{os.getpid()}."

    def remove_stale_spools(self, dataset: str) -> None:
        """Delete spool files of ``dataset`` left by processes that died (a crash mid-container)."""
        from connector.store.catalog import _alive

        folder = self.spool_dir(dataset)
        for name in os.listdir(folder):
            # "<dataset>.<pid>.<random>.des", or DesWriter's hidden ".<that>.<hex>.partial".
            head, _, rest = name.lstrip(".").partition(f"{dataset}.")
            pid = rest.split(".", 1)[0]
            if head == "" and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass

    def publish(self, local_file: str, path: str) -> None:
        """Make a finished container visible under ``path`` in one step."""
        if is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(local_file, path)
        else:
            self.fs.put_file(local_file, path)

    def list_range_objects(self, dataset: str, epoch: int = 0, *, checkpoints: bool = False) -> list[str]:
        """Container objects (and with ``checkpoints``, checkpoint files) of one key space."""
        try:
            paths = self.fs.ls(self.layout.ranges_dir(dataset, epoch), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        layout = self.layout
        return sorted(p for p in paths if layout.parse_range(p.rsplit("/", 1)[-1])
                      or (checkpoints and layout.parse_checkpoint(p.rsplit("/", 1)[-1]) is not None))

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
        """Replace the object ``path`` with ``data`` in one step (never seen half-written)."""
        if is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
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
        with self.catalog.transaction() as db:
            if self.catalog.has_dataset(name):
                raise DatasetExists(f"dataset {name!r} already exists")
            self.catalog.insert_dataset(db, name, description=description, tags=tags,
                                        metadata=dict(metadata or {}), status=status)
        self._save_metadata(name)
        self.log(name, "create", description=description, tags=list(tags), status=status)
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
        rows = self.catalog.query("SELECT * FROM datasets ORDER BY name")
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
            self._update(name, **fields)
            self.log(name, "update", **{k: (json.loads(v) if k in ("tags", "metadata") else v)
                                        for k, v in fields.items()})
        return self.get_dataset(name)

    def _update(self, name: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.catalog.transaction() as db:
            db.execute(f"UPDATE datasets SET {sets}, updated = ? WHERE name = ?",
                       (*fields.values(), time.time(), name))
        self._save_metadata(name)

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
            with self.catalog.transaction() as db:
                for table in ("dataranges", "versions"):
                    db.execute(f"DELETE FROM {table} WHERE dataset = ?", (name,))
                db.execute("DELETE FROM datasets WHERE name = ?", (name,))
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
        self._update(name, frozen=1)
        self.log(name, "freeze")
        return self.get_dataset(name)

    def unfreeze(self, name: str) -> Dataset:
        self.get_dataset(name)
        self._update(name, frozen=0)
        self.log(name, "unfreeze")
        return self.get_dataset(name)

    def stats(self, name: str) -> dict[str, Any]:
        d = self.get_dataset(name)
        ranges = self.dataranges(name)
        nversions = self.catalog.query("SELECT COUNT(*) FROM versions WHERE dataset = ?", (name,))[0][0]
        return {"dataset": name, "datapoints": sum(r.count for r in ranges), "bytes": sum(r.size for r in ranges),
                "dataranges": len(ranges), "versions": nversions, "next_key": d.next_key,
                "missing": self.missing_ranges(name), "frozen": d.frozen, "status": d.status,
                "last_write": d.last_write}

    def log(self, name: str, op: str, **details: Any) -> None:
        """Append one entry to the dataset's operation log in storage (a JSON Lines segment)."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
        entry_id = f"{stamp}-{os.getpid()}-{next(_log_seq):06d}"
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z",
                 "op": op, "pid": os.getpid(), "id": entry_id, **details}
        self.write_bytes(f"{self.layout.log_dir(name)}/{entry_id}.jsonl", orjson.dumps(entry) + b"\n")

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
                _remove(self.fs, p)
        return len(paths)

    # -- writing ---------------------------------------------------------------------------------

    def writer(self, dataset: str, kind: str = "records", *, wait: float = 30.0,
               on_commit: OnCommit | None = None) -> DatasetWriter:
        """A writer appending to ``dataset`` (which must exist); one per dataset at a time."""
        validate_dataset_name(dataset)
        return DatasetWriter(self, dataset, kind, wait=wait, on_commit=on_commit)

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
            self.write_bytes(self.layout.checkpoint(dataset, d.epoch, d.next_key), text.encode())
            with self.catalog.transaction() as db:
                lock.check(db)
                db.execute("UPDATE datasets SET checkpoint = ?, updated = ? WHERE name = ?", (text, time.time(), dataset))

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
                fs, path = resolve(url, None, dict(storage_options or {}))
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
        return Datarange(row["dataset"], row["first"], row["last"], self.url(row["path"]), row["size"],
                         row["sha256"], row["count"], row["kind"], row["data_length"])

    def datarange_for(self, dataset: str, key: int) -> Datarange:
        """The datarange holding ``key``."""
        rows = self.catalog.query("SELECT * FROM dataranges WHERE dataset = ? AND first <= ? AND last >= ?",
                                  (dataset, key, key))
        if not rows:
            self.get_dataset(dataset)
            raise RangeError(f"dataset {dataset!r} has no datapoint {key}")
        return self._datarange(rows[0])

    def _reader(self, datarange: Datarange) -> DesReader:
        return DesReader(self.fs._strip_protocol(datarange.url), fs=self.fs, size=datarange.size)

    def _ranges_of(self, dataset: str, version: str | None) -> list[Datarange]:
        return list(self.get_version(dataset, version).dataranges) if version else self.dataranges(dataset)

    def read(self, dataset: str, key: int, version: str | None = None) -> bytes:
        """The bytes of datapoint ``key`` (a record's JSON line, or a file's content), from the
        current data or as of ``version``."""
        if version is None:
            d = self.datarange_for(dataset, key)
        else:
            found = [r for r in self._ranges_of(dataset, version) if r.first <= key <= r.last]
            if not found:
                raise RangeError(f"dataset {dataset!r} version {version} has no datapoint {key}")
            d = found[0]
        if d.kind == "records":
            found = records.record_at(self.fs, self.fs._strip_protocol(d.url), d.size, key - d.first, record_name(key))
            if found is not None:
                return found
            return self._reader(d).read(record_name(key))
        reader = self._reader(d)
        return reader.read(reader.names()[key - d.first])

    def read_lines(self, dataset: str, first: int = 0, last: int | None = None,
                   version: str | None = None) -> Iterator[bytes]:
        """Records ``[first, last]`` as JSON Lines bytes, one chunk per container (one ranged GET
        of its DATA region each); ``last=None`` reads to the end."""
        if last is not None and first > last:
            raise RangeError(f"range [{first}, {last}] is empty (first > last)")
        for d in self._ranges_of(dataset, version):
            if d.last < first or (last is not None and d.first > last):
                continue
            if d.kind != "records":
                raise StoreError(f"datarange [{d.first}, {d.last}] of {dataset!r} holds files, not records; "
                                 "read them one by one")
            yield self._slice_lines(d, first, last)

    def _slice_lines(self, d: Datarange, first: int | None, last: int | None) -> bytes:
        data = records.data_region(self.fs, self.fs._strip_protocol(d.url), d.size, d.data_length)
        lo = 0 if first is None else max(first - d.first, 0)
        hi = d.count if last is None else min(last - d.first + 1, d.count)
        if (lo, hi) != (0, d.count):
            lines = data.split(b"\n")[lo:hi]
            data = b"\n".join(lines) + b"\n"
        return data

    def read_range(self, dataset: str, first: int, last: int, version: str | None = None) -> pa.Table:
        """Records ``[first, last]`` as a table: one ranged GET of the DATA region per container."""
        if first > last:
            raise RangeError(f"range [{first}, {last}] is empty (first > last)")
        ranges = [d for d in self._ranges_of(dataset, version) if d.last >= first and d.first <= last]
        return self._records_table(ranges, first, last)

    def to_table(self, dataset: str, version: str | None = None) -> pa.Table:
        """Every record of ``dataset`` (as of ``version``, if given) as one table."""
        ranges = self.get_version(dataset, version).dataranges if version else self.dataranges(dataset)
        return self._records_table(list(ranges), None, None)

    def _records_table(self, ranges: list[Datarange], first: int | None, last: int | None) -> pa.Table:
        tables = []
        for d in ranges:
            if d.kind != "records":
                raise StoreError(f"datarange [{d.first}, {d.last}] of {d.dataset!r} holds files, not records")
            data = self._slice_lines(d, first, last)
            if data.strip():
                tables.append(pajson.read_json(io.BytesIO(data), read_options=_JSON_READ))
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="permissive")

    def missing_ranges(self, dataset: str) -> list[tuple[int, int]]:
        """Gaps in the key space from 0 to the largest key, as ``(first, last)`` pairs."""
        gaps, expected = [], 0
        for d in self.dataranges(dataset):
            if d.first > expected:
                gaps.append((expected, d.first - 1))
            expected = max(expected, d.last + 1)
        return gaps

    # -- aggregate -------------------------------------------------------------------------------

    def aggregate(self, dataset: str, first: int, last: int, *, wait: float = 30.0) -> Datarange:
        """Merge the dataranges inside ``[first, last]`` into one container.

        The range must be covered without gaps by whole dataranges. Holds the dataset's writer
        lock (waits ``wait`` seconds for a running writer). The new container is committed
        (storage, then catalog) before the old ones are deleted, so readers always find every
        datapoint exactly once; containers a version still references are kept in storage. A
        crash after the new container is in storage but before the catalog knows it leaves the
        old ones in use; restore then prefers the wider container (the old ones are superseded).
        """
        with self.catalog.lock(dataset, wait, "aggregate") as lock:
            epoch = self.get_dataset(dataset).epoch
            ranges = [d for d in self.dataranges(dataset) if d.last >= first and d.first <= last]
            if first > last:
                raise RangeError(f"dataset {dataset!r}: range [{first}, {last}] is empty (first > last)")
            if not ranges:
                raise RangeError(f"dataset {dataset!r}: no datarange inside [{first}, {last}]")
            for d in ranges:
                if d.first < first or d.last > last:
                    raise RangeError(f"dataset {dataset!r}: [{first}, {last}] cuts datarange [{d.first}, {d.last}]; "
                                     "aggregate whole dataranges only (see `des datasets ranges`)")
            if ranges[0].first != first or ranges[-1].last != last or any(
                    a.last + 1 != b.first for a, b in zip(ranges, ranges[1:])):
                raise RangeError(f"dataset {dataset!r}: [{first}, {last}] has gaps "
                                 f"(missing: {self._gaps(ranges, first, last)})")
            if len(ranges) == 1:
                return ranges[0]
            if len({d.kind for d in ranges}) > 1:
                raise RangeError(f"dataset {dataset!r}: cannot aggregate records and files together")
            path = self.layout.datarange(dataset, first, last, epoch)
            out, data_length = self._merge(dataset, ranges, path)
            with self.catalog.transaction() as db:
                lock.check(db)
                db.execute("DELETE FROM dataranges WHERE dataset = ? AND first >= ? AND last <= ?",
                           (dataset, first, last))
                self.catalog.insert_datarange(db, dataset, first, last, path, out.size, out.sha256,
                                              sum(d.count for d in ranges), ranges[0].kind, data_length)
            invalidate(self.fs, path)
            referenced = self._referenced_paths(dataset)
            for d in ranges:
                p = self.fs._strip_protocol(d.url)
                if p not in referenced and p != path:
                    _remove(self.fs, p)
        self.log(dataset, "aggregate", first=first, last=last, merged=len(ranges))
        return self.datarange_for(dataset, first)

    def _merge(self, dataset: str, ranges: list[Datarange], path: str) -> tuple[DesWriter, int]:
        """Write the members of ``ranges`` in order into one container published under ``path``;
        returns the (closed) writer and the length of its DATA region."""
        fd, spool = tempfile.mkstemp(suffix=".des", dir=self.spool_dir(dataset), prefix=self.spool_prefix(dataset))
        os.close(fd)
        try:
            with DesWriter(spool, overwrite=True, big_file_threshold=None) as out:
                for d in ranges:
                    if d.kind == "records":
                        data = records.data_region(self.fs, self.fs._strip_protocol(d.url), d.size, d.data_length)
                        out.add_many(record_names(d.first, d.count), data, records.line_lengths(data, d),
                                     check_names=False)
                    else:
                        reader = self._reader(d)
                        for name in reader.names():
                            out.add(name, reader.read(name), {k: v for k, v in reader.meta(name).items()
                                                              if k not in ("size", "sha256", "codec")})
                data_length = out.data_length
            self.publish(spool, path)
        finally:
            if os.path.exists(spool):
                os.unlink(spool)
        return out, data_length

    @staticmethod
    def _gaps(ranges: list[Datarange], first: int, last: int) -> list[tuple[int, int]]:
        gaps, expected = [], first
        for d in ranges:
            if d.first > expected:
                gaps.append((expected, d.first - 1))
            expected = d.last + 1
        if expected <= last:
            gaps.append((expected, last))
        return gaps

    # -- versions --------------------------------------------------------------------------------

    def create_version(self, dataset: str, version: str, message: str = "") -> Version:
        """Snapshot the current dataranges as ``version`` (semver), manifest stored in storage.

        The snapshot is read and recorded in one catalog transaction, so a concurrent aggregate
        either ran before (the version holds the merged container) or sees the version and keeps
        the containers it references."""
        vers.check_semver(version)
        self.get_dataset(dataset)
        with self.catalog.transaction() as db:
            if db.execute("SELECT 1 FROM versions WHERE dataset = ? AND version = ?", (dataset, version)).fetchone():
                raise VersionError(f"dataset {dataset!r} already has version {version}")
            ranges = tuple(self._datarange(r) for r in db.execute(
                "SELECT * FROM dataranges WHERE dataset = ? ORDER BY first", (dataset,)).fetchall())
            v = self._snapshot(dataset, version, message, ranges)
            self._insert_version(db, v)
        self.log(dataset, "version", version=version, sha256=v.sha256, dataranges=len(ranges))
        return v

    def _snapshot(self, dataset: str, version: str, message: str, ranges: Sequence[Datarange]) -> Version:
        """A version of ``ranges``, its manifest written to storage."""
        v = Version(dataset, version, message, time.time(), vers.content_hash(ranges), sum(d.size for d in ranges),
                    tuple(ranges))
        self._write_json(self.layout.version(dataset, version), vers.manifest(v))
        return v

    @staticmethod
    def _insert_version(db, v: Version) -> None:
        db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (v.dataset, v.version, v.message, v.created, v.sha256, v.size, json.dumps(v.to_dict())))

    def list_versions(self, dataset: str) -> list[Version]:
        """Versions of ``dataset`` in semver order."""
        self.get_dataset(dataset)
        rows = self.catalog.query("SELECT manifest FROM versions WHERE dataset = ?", (dataset,))
        found = [vers.from_manifest(json.loads(r["manifest"])) for r in rows]
        return sorted(found, key=lambda v: vers.semver_key(v.version))

    def get_version(self, dataset: str, version: str = "latest") -> Version:
        """One version, or the highest (semver order) for ``"latest"``."""
        found = self.list_versions(dataset)
        if version == "latest":
            found = [v for v in found if not v.version.startswith(OVERWRITE_VERSION_PREFIX)] or found
            if not found:
                raise VersionError(f"dataset {dataset!r} has no versions")
            return found[-1]
        vers.check_semver(version)
        for v in found:
            if v.version == version:
                return v
        raise VersionError(f"dataset {dataset!r} has no version {version} "
                           f"(versions: {', '.join(v.version for v in found) or 'none'})")

    def delete_version(self, dataset: str, version: str) -> None:
        """Forget ``version`` and delete the containers that neither the current dataranges nor
        another version reference."""
        v = self.get_version(dataset, version)
        with self.catalog.transaction() as db:
            db.execute("DELETE FROM versions WHERE dataset = ? AND version = ?", (dataset, v.version))
        keep = self._referenced_paths(dataset) | {self.fs._strip_protocol(d.url) for d in self.dataranges(dataset)}
        for d in v.dataranges:
            p = self.fs._strip_protocol(d.url)
            if p not in keep:
                _remove(self.fs, p)
        _remove(self.fs, self.layout.version(dataset, v.version))
        self.log(dataset, "delete-version", version=v.version)

    def chunks(self, dataset: str, version: str = "latest") -> list[dict[str, Any]]:
        """A version's dataranges as numbered chunks: index, first, last, sha256, size, url."""
        return [{"index": i, **d.to_dict()} for i, d in enumerate(self.get_version(dataset, version).dataranges)]

    def chunk(self, dataset: str, version: str = "latest", *, index: int | None = None,
              sha256: str | None = None) -> dict[str, Any]:
        """One chunk by index or by hash."""
        if (index is None) == (sha256 is None):
            raise ValueError("give exactly one of index and sha256")
        found = self.chunks(dataset, version)
        for c in found:
            if c["index"] == index or c["sha256"] == sha256:
                return c
        raise RangeError(f"dataset {dataset!r} version {version}: no chunk with "
                         + (f"index {index} (it has {len(found)})" if index is not None else f"sha256 {sha256}"))

    def _referenced_paths(self, dataset: str) -> set[str]:
        return {self.fs._strip_protocol(d.url) for v in self.list_versions(dataset) for d in v.dataranges}

    # -- key spaces: rotate, truncate, overwrite -------------------------------------------------

    def rotate(self, dataset: str, version: str | None = None, message: str = "rotate", *,
               wait: float = 30.0) -> Version:
        """Snapshot the current data as ``version``, then start an empty key space at 0.

        ``version`` defaults to the next major version (``1.0.0`` first). Nothing is copied: the
        containers stay where they are, referenced by the version, and the new key space writes
        under ``dataranges/epoch-<n>/`` so its keys never reuse their object keys.
        """
        with self.catalog.lock(dataset, wait, "rotate") as lock:
            d = self.get_dataset(dataset)
            version = vers.check_semver(version) if version is not None else self._next_major(dataset)
            with self.catalog.transaction() as db:
                lock.check(db)
                if db.execute("SELECT 1 FROM versions WHERE dataset = ? AND version = ?",
                              (dataset, version)).fetchone():
                    raise VersionError(f"dataset {dataset!r} already has version {version}")
                ranges = [self._datarange(r) for r in db.execute(
                    "SELECT * FROM dataranges WHERE dataset = ? ORDER BY first", (dataset,)).fetchall()]
                v = self._snapshot(dataset, version, message, ranges)
                self._insert_version(db, v)
                self._start_key_space(db, dataset, d.epoch + 1)
            self._after_new_key_space(dataset, d.epoch, d.next_key)
        self.log(dataset, "rotate", version=version, dataranges=len(ranges), epoch=d.epoch + 1)
        return v

    def truncate(self, dataset: str, *, wait: float = 30.0) -> int:
        """Drop the current dataranges and start an empty key space at 0; containers no version
        references are deleted. Returns how many dataranges were dropped."""
        with self.catalog.lock(dataset, wait, "truncate") as lock:
            d = self.get_dataset(dataset)
            dropped = self.dataranges(dataset)
            with self.catalog.transaction() as db:
                lock.check(db)
                self._start_key_space(db, dataset, d.epoch + 1)
            self._after_new_key_space(dataset, d.epoch, d.next_key)
            referenced = self._referenced_paths(dataset)
            for r in dropped:
                p = self.fs._strip_protocol(r.url)
                if p not in referenced:
                    _remove(self.fs, p)
        self.log(dataset, "truncate", dataranges=len(dropped), epoch=d.epoch + 1)
        return len(dropped)

    @staticmethod
    def _start_key_space(db, dataset: str, epoch: int) -> None:
        db.execute("DELETE FROM dataranges WHERE dataset = ?", (dataset,))
        db.execute("UPDATE datasets SET next_key = 0, epoch = ?, checkpoint = NULL, updated = ? WHERE name = ?",
                   (epoch, time.time(), dataset))

    def _after_new_key_space(self, dataset: str, old_epoch: int, old_next_key: int) -> None:
        # dataset.json carries the epoch so that restore starts the new (still empty) key space.
        self._save_metadata(dataset)
        _remove(self.fs, self.layout.checkpoint(dataset, old_epoch, old_next_key))

    def _next_major(self, dataset: str) -> str:
        released = [v for v in self.list_versions(dataset) if not v.version.startswith(OVERWRITE_VERSION_PREFIX)]
        return f"{int(released[-1].version.split('.')[0]) + 1}.0.0" if released else "1.0.0"

    def begin_overwrite(self, dataset: str, *, wait: float = 30.0) -> str | None:
        """Start replacing the data of ``dataset`` (the destination's overwrite mode).

        The current data becomes a version ``0.0.0-overwrite.<ms>`` (kept, readable) and an empty
        key space starts. If an earlier overwrite did not finish (its version is still there),
        the current data is that run's partial output: it is dropped, and the data it was
        replacing stays kept. Returns the kept version (None when there was nothing to keep);
        call :meth:`finish_overwrite` once the new data is complete.
        """
        self.get_dataset(dataset)
        pending = [v.version for v in self.list_versions(dataset) if v.version.startswith(OVERWRITE_VERSION_PREFIX)]
        if pending:
            self.truncate(dataset, wait=wait)
            return pending[-1]
        d = self.get_dataset(dataset)
        if not self.dataranges(dataset):
            if d.next_key:
                self.truncate(dataset, wait=wait)
            return None
        return self.rotate(dataset, f"{OVERWRITE_VERSION_PREFIX}{int(time.time() * 1000)}",
                           "kept while an overwrite runs", wait=wait).version

    def finish_overwrite(self, dataset: str) -> list[str]:
        """The overwrite succeeded: delete the kept old data (every overwrite version)."""
        done = [v.version for v in self.list_versions(dataset) if v.version.startswith(OVERWRITE_VERSION_PREFIX)]
        for version in done:
            self.delete_version(dataset, version)
        return done

    def gc(self, dataset: str, *, wait: float = 30.0) -> list[str]:
        """Delete the objects under the dataset's ``dataranges/`` folders (every key space) that
        nothing uses: containers that are neither current dataranges nor kept by a version (an
        aggregation or a rotation cut short, a crash's leftover) and stale checkpoint files.
        Runs under the writer lock. Returns the deleted paths."""
        with self.catalog.lock(dataset, wait, "gc"):
            d = self.get_dataset(dataset)
            used = self._referenced_paths(dataset) | {self.fs._strip_protocol(r.url) for r in self.dataranges(dataset)}
            used.add(self.layout.checkpoint(dataset, d.epoch, d.next_key))
            deleted = []
            for epoch in sorted(set(self._epochs(dataset)) | {d.epoch}):
                for path in self.list_range_objects(dataset, epoch, checkpoints=True):
                    if path not in used:
                        _remove(self.fs, path)
                        deleted.append(path)
        if deleted:
            self.log(dataset, "gc", deleted=len(deleted))
        return deleted

    # -- verify ------------------------------------------------------------------------------------

    def verify(self, dataset: str) -> list[dict[str, Any]]:
        """Re-hash every container of ``dataset`` and of its versions; the mismatches, each with
        ``code: DATA_LOSS``, the range, url, where it is used and the problem."""
        digests: dict[str, str | None] = {}
        bad, seen = [], set()
        uses = [("current", d) for d in self.dataranges(dataset)]
        uses += [(f"version {v.version}", d) for v in self.list_versions(dataset) for d in v.dataranges]
        for used_by, d in uses:
            if (d.url, d.sha256) in seen:
                continue
            seen.add((d.url, d.sha256))
            if d.url not in digests:
                try:
                    digests[d.url] = _sha256_of(self.fs, self.fs._strip_protocol(d.url))
                except FileNotFoundError:
                    digests[d.url] = None
            digest = digests[d.url]
            if digest != d.sha256:
                problem = "object missing" if digest is None else f"sha256 {digest} != recorded {d.sha256}"
                bad.append({"first": d.first, "last": d.last, "url": d.url, "used_by": used_by,
                            "problem": problem, "code": "DATA_LOSS"})
        self.log(dataset, "verify", containers=len(digests), mismatches=len(bad))
        return bad

    # -- restore ---------------------------------------------------------------------------------

    def _storage_datasets(self) -> list[str]:
        try:
            entries = self.fs.ls(self.root, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        names = []
        for e in entries:
            base = e["name"].rstrip("/").rsplit("/", 1)[-1]
            if e["type"] == "directory" and not base.startswith("."):
                try:
                    validate_dataset_name(base)
                except StoreError:
                    continue
                names.append(base)
        return sorted(names)

    def restore(self) -> dict[str, int]:
        """Rebuild the catalog from storage alone, in one transaction.

        Per dataset: ``dataset.json`` (description, tags, metadata, status, frozen, key space),
        the containers of the current key space (object keys, footers; hashed by reading them),
        the writer checkpoint stored beside them and the version manifests. A container fully
        covered by a wider one is an aggregation's superseded input and is left out. Refuses
        while a live writer holds a lock.
        """
        plan = []
        for name in self._storage_datasets():
            try:
                meta = self._read_json(self.layout.dataset_json(name))
            except FileNotFoundError:
                meta = {}
            epoch = max([int(meta.get("epoch") or 0), *self._epochs(name)])
            objects = self.list_range_objects(name, epoch, checkpoints=True)
            ranges = []
            containers = [p for p in objects if self.layout.parse_range(p.rsplit("/", 1)[-1])]
            for first, last, path in _not_superseded(containers, self.layout):
                reader = DesReader(path, fs=self.fs)
                names = reader.names()
                kind = "records" if names and names[0] == record_name(first) else "files"
                ranges.append((first, last, path, reader.size, _sha256_of(self.fs, path), len(names), kind,
                               reader.footer.data_length))
            next_key = max((r[1] for r in ranges), default=-1) + 1
            checkpoint_path = self.layout.checkpoint(name, epoch, next_key)
            checkpoint = self.fs.cat_file(checkpoint_path).decode() if checkpoint_path in objects else None
            manifests = []
            try:
                for p in self.fs.ls(self.layout.versions_dir(name), detail=False, refresh=True):
                    if p.endswith(".json"):
                        manifests.append(vers.from_manifest(self._read_json(p)))
            except FileNotFoundError:
                pass
            plan.append((name, meta, epoch, next_key, checkpoint, ranges, manifests))
        with self.catalog.transaction() as db:
            live = [r for r in db.execute("SELECT * FROM locks").fetchall() if not _stale(r, socket.gethostname())]
            if live:
                r = live[0]
                raise DatasetLocked(f"cannot restore while dataset {r['dataset']!r} is being written "
                                    f"(pid {r['pid']} on {r['host']})")
            for table in ("dataranges", "versions", "datasets", "locks"):
                db.execute(f"DELETE FROM {table}")
            for name, meta, epoch, next_key, checkpoint, ranges, manifests in plan:
                status = meta.get("status", "draft")
                self.catalog.insert_dataset(
                    db, name, description=meta.get("description", ""), tags=meta.get("tags", []),
                    metadata=meta.get("metadata", {}), status=status if status in STATUSES else "draft",
                    frozen=bool(meta.get("frozen")), created=meta.get("created"), next_key=next_key,
                    epoch=epoch, checkpoint=checkpoint)
                for first, last, path, size, sha, n, kind, data_length in ranges:
                    self.catalog.insert_datarange(db, name, first, last, path, size, sha, n, kind, data_length)
                for v in manifests:
                    self._insert_version(db, v)
        return {"datasets": len(plan), "dataranges": sum(len(p[5]) for p in plan),
                "versions": sum(len(p[6]) for p in plan)}

    def dump_catalog(self) -> dict[str, Any]:
        """The catalog's content without timestamps of catalog operations (for comparisons)."""
        out = {}
        for d in self.list_datasets(limit=1 << 30):
            out[d.name] = {"meta": {k: v for k, v in d.to_dict().items() if k not in ("updated", "last_write")},
                           "checkpoint": self.checkpoint(d.name),
                           "dataranges": [r.to_dict() for r in self.dataranges(d.name)],
                           "versions": [v.to_dict() for v in self.list_versions(d.name)]}
        return out


def _not_superseded(paths: list[str], layout: Layout) -> list[tuple[int, int, str]]:
    parsed = sorted(((*layout.parse_range(p.rsplit("/", 1)[-1]), p) for p in paths), key=lambda t: (t[0], -t[1]))
    kept: list[tuple[int, int, str]] = []
    for first, last, path in parsed:
        if kept and first <= kept[-1][1]:
            if last <= kept[-1][1]:
                continue  # fully covered by a wider container: an aggregation's old input
            raise RangeError(f"{path}: datarange [{first}, {last}] overlaps [{kept[-1][0]}, {kept[-1][1]}] "
                             "without being covered by it; remove one of the two objects and restore again")
        kept.append((first, last, path))
    return kept


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def _sha256_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb", block_size=8 * 1024 * 1024) as f:
        while chunk := f.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


def _check_metadata(metadata: Any) -> None:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise StoreError(f"metadata must be a JSON object (a map of keys to values), not {type(metadata).__name__}")
    try:
        json.dumps(dict(metadata or {}))
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
