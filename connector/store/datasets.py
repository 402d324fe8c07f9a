"""Datasets: their catalog rows and ``dataset.json``, their current dataranges and checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from connector.store.catalog import Catalog
from connector.store.errors import DatasetExists, DatasetFrozen, DatasetNotFound, RangeError, StoreError
from connector.store.layout import validate_dataset_name
from connector.store.model import STATUSES, Datarange, Dataset
from connector.store.oplog import OperationLog
from connector.store.storage import Storage


class Datasets:
    """The datasets of one store: ``catalog`` rows mirrored in ``storage``, every change logged."""

    def __init__(self, storage: Storage, catalog: Catalog, oplog: OperationLog) -> None:
        self.storage, self.catalog, self.oplog = storage, catalog, oplog

    # -- the dataset ---------------------------------------------------------------------------------

    def create_dataset(self, name: str, description: str = "", tags: Iterable[str] = (),
                       metadata: Mapping[str, Any] | None = None, status: str = "draft") -> Dataset:
        """Create a dataset; :class:`DatasetExists` if the name is taken, :class:`StoreError` for a
        bad status, tag or metadata (not a JSON object)."""
        validate_dataset_name(name)
        _check_status(status)
        tags = _check_tags(tags)
        _check_metadata(metadata)
        # All or nothing: the row, dataset.json and the log entry (see OperationLog.operation).
        with self.oplog.operation(name, "create", description=description, tags=list(tags), status=status) as op:
            if self.catalog.has_dataset(name):
                raise DatasetExists(f"dataset {name!r} already exists")
            self.catalog.insert_dataset(op.db, name, description=description, tags=tags,
                                        metadata=dict(metadata or {}), status=status)
            op.on_failure(lambda: self.storage.remove(self.storage.layout.dataset_json(name)))
            self.save_metadata(name)
        return self.get_dataset(name)

    def ensure_dataset(self, name: str, **kwargs: Any) -> Dataset:
        """The dataset ``name``, created with ``kwargs`` (see :meth:`create_dataset`) if it does
        not exist."""
        try:
            return self.get_dataset(name)
        except DatasetNotFound:
            try:
                return self.create_dataset(name, **kwargs)
            except DatasetExists:  # created by a concurrent process in between
                return self.get_dataset(name)

    def get_dataset(self, name: str) -> Dataset:
        """The dataset ``name``; :class:`DatasetNotFound` if there is none."""
        validate_dataset_name(name)
        return Dataset.from_row(self.catalog.dataset(name))

    def list_datasets(self, status: str | None = None, tags: Iterable[str] | None = None,
                      limit: int = 100, offset: int = 0) -> list[Dataset]:
        """Datasets by name; ``status`` keeps those of that status, ``tags`` those carrying every
        given tag; ``offset`` and ``limit`` page through the result."""
        if status is not None:
            _check_status(status)
        wanted = set(tags or ())
        out = [Dataset.from_row(r) for r in self.catalog.datasets()]
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

    def freeze(self, name: str) -> Dataset:
        """Refuse every write to ``name`` until :meth:`unfreeze`."""
        self.get_dataset(name)
        self._update(name, "freeze", {"frozen": 1})
        return self.get_dataset(name)

    def unfreeze(self, name: str) -> Dataset:
        """Allow writes to ``name`` again."""
        self.get_dataset(name)
        self._update(name, "unfreeze", {"frozen": 0})
        return self.get_dataset(name)

    def writable(self, name: str, what: str) -> Dataset:
        """The dataset, or :class:`DatasetFrozen` if it is frozen (``what``, e.g. "rotate", is the
        change refused, named in the error)."""
        d = self.get_dataset(name)
        if d.frozen:
            raise DatasetFrozen(f"dataset {name!r} is frozen: unfreeze it to {what} it")
        return d

    def delete_dataset(self, name: str, *, wait: float = 30.0) -> None:
        """Delete a dataset and everything under it: objects first, then catalog rows.

        Takes the writer lock (waits ``wait`` seconds for a running writer). A crash part-way
        leaves the catalog rows (and whatever objects remain), so running ``delete`` again
        finishes the job; a dataset known only to storage (catalog lost) is deleted as well.
        """
        validate_dataset_name(name)
        known = self.catalog.has_dataset(name)
        folder = self.storage.layout.dataset_dir(name)
        exists = self.storage.fs.exists(folder)
        if not known and not exists:
            raise DatasetNotFound(f"dataset {name!r} not found")
        lock = self.catalog.lock(name, wait, "delete") if known else None
        try:
            if exists:
                self.storage.fs.rm(folder, recursive=True)
            self.catalog.delete_dataset(name)
        finally:
            if lock is not None:
                lock.release()

    def save_metadata(self, name: str) -> None:
        """Write ``dataset.json`` from the catalog row (what restore reads back)."""
        d = self.get_dataset(name)
        self.storage.write_json(self.storage.layout.dataset_json(name), {
            "format": "des-connector/dataset/1", "name": d.name, "description": d.description,
            "tags": list(d.tags), "metadata": d.metadata, "status": d.status, "frozen": d.frozen,
            "created": d.created, "epoch": d.epoch})

    def stats(self, name: str) -> dict[str, Any]:
        """Counts of ``name``: datapoints, bytes, dataranges, versions, next key, gaps
        (``missing``), frozen, status, last write time."""
        d = self.get_dataset(name)
        ranges = self.dataranges(name)
        return {"dataset": name, "datapoints": sum(r.count for r in ranges), "bytes": sum(r.size for r in ranges),
                "dataranges": len(ranges), "versions": self.catalog.count_versions(name), "next_key": d.next_key,
                "missing": self.missing_ranges(name), "frozen": d.frozen, "status": d.status,
                "last_write": d.last_write}

    def _update(self, name: str, op: str, fields: Mapping[str, Any], **details: Any) -> None:
        """Change catalog ``fields`` of ``name``, its ``dataset.json`` and log ``op``, all or nothing
        (see :meth:`OperationLog.operation`); after a failure dataset.json is rewritten from the
        unchanged row."""
        with self.oplog.operation(name, op, **details) as change:
            self.catalog.update_dataset(change.db, name, **fields)
            change.on_failure(lambda: self.save_metadata(name))  # from the row as rolled back
            self.save_metadata(name)

    # -- dataranges and checkpoint -------------------------------------------------------------------

    def dataranges(self, name: str) -> list[Datarange]:
        """The current dataranges of ``name`` by first key."""
        self.get_dataset(name)
        return [self.datarange_of(r) for r in self.catalog.dataranges(name)]

    def datarange_of(self, row: Any) -> Datarange:
        """The datarange of a catalog row (columns by name), its container located under this root."""
        # Paths are kept relative to the root (absolute ones of older catalogs resolve the same).
        path = self.storage.layout.absolute(row["dataset"], row["path"])
        return Datarange(row["dataset"], row["first"], row["last"], self.storage.url(path), row["size"],
                         row["sha256"], row["count"], row["kind"], row["data_length"])

    def datarange_for(self, name: str, key: int) -> Datarange:
        """The datarange holding ``key``; :class:`RangeError` if none does."""
        row = self.catalog.datarange_at(name, key)
        if row is None:
            self.get_dataset(name)
            raise RangeError(f"dataset {name!r} has no datapoint {key}")
        return self.datarange_of(row)

    def missing_ranges(self, name: str) -> list[tuple[int, int]]:
        """Gaps in the key space from 0 to the largest key, as ``(first, last)`` pairs."""
        gaps, expected = [], 0
        for d in self.dataranges(name):
            if d.first > expected:
                gaps.append((expected, d.first - 1))
            expected = max(expected, d.last + 1)
        return gaps

    def checkpoint(self, name: str) -> Any:
        """The checkpoint stored with the dataset's last commit that carried one (None if none)."""
        raw = self.catalog.dataset(name)["checkpoint"]
        return None if raw is None else json.loads(raw)

    def set_checkpoint(self, name: str, value: Any, *, wait: float = 30.0) -> None:
        """Store ``value`` as the dataset's checkpoint without writing data (under the writer lock;
        kept beside the containers too, so it survives a lost catalog)."""
        storage = self.storage
        with self.catalog.lock(name, wait, "checkpoint") as lock:
            d = self.get_dataset(name)
            text = orjson.dumps(value).decode()
            old = storage.checkpoint_files(storage.list_range_objects(name, d.epoch, checkpoints=True), d.next_key)
            path = storage.layout.checkpoint(name, d.epoch, d.next_key, lock.tag)
            storage.write_bytes(path, text.encode())
            try:
                with self.catalog.transaction() as db:
                    lock.check(db)
                    self.catalog.set_checkpoint(db, name, text)
            except BaseException:
                storage.remove(path)
                raise
            for p in old:
                storage.remove(p)


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


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
