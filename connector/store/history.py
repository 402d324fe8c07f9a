"""Versions and key spaces of a dataset: snapshots, chunks, rotate, truncate, overwrite.

A version is a manifest in storage naming the containers it snapshotted; they stay until no
version and no current datarange uses them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from connector.store import versions as vers
from connector.store.backends import Connection
from connector.store.catalog import Catalog
from connector.store.datasets import Datasets
from connector.store.errors import RangeError, VersionError
from connector.store.model import Datarange, Version
from connector.store.oplog import Operation, OperationLog
from connector.store.storage import Storage
from connector.store.versions import OVERWRITE_VERSION_PREFIX


class Versions:
    """Versions and key spaces of the datasets of one store."""

    def __init__(self, storage: Storage, catalog: Catalog, oplog: OperationLog, datasets: Datasets) -> None:
        self.storage, self.catalog, self.oplog, self.datasets = storage, catalog, oplog, datasets

    # -- versions --------------------------------------------------------------------------------

    def create_version(self, dataset: str, version: str, message: str = "") -> Version:
        """Snapshot the current dataranges as ``version`` (semver), manifest stored in storage.

        The snapshot is read and recorded in one catalog transaction, so a concurrent aggregate
        either ran before (the version holds the merged container) or sees the version and keeps
        the containers it references."""
        vers.check_semver(version)
        self.datasets.get_dataset(dataset)
        with self.oplog.operation(dataset, "version", version=version) as op:
            if self.catalog.has_version(dataset, version):
                raise VersionError(f"dataset {dataset!r} already has version {version}")
            ranges = tuple(self.datasets.datarange_of(r) for r in self.catalog.dataranges(dataset))
            v = self._snapshot(op, dataset, version, message, ranges)
            self.insert_version(op.db, v)
            op.details.update(sha256=v.sha256, dataranges=len(ranges))
        return v

    def _snapshot(self, op: Operation, dataset: str, version: str, message: str, ranges: Sequence[Datarange]) -> Version:
        """A version of ``ranges``, its manifest written to storage (and removed again if the
        operation ``op`` fails: a restore must not find a version the catalog never had)."""
        v = Version(dataset, version, message, time.time(), vers.content_hash(ranges), sum(d.size for d in ranges),
                    tuple(ranges))
        path = self.storage.layout.version(dataset, version)
        self.storage.write_json(path, self.manifest(v))
        op.on_failure(lambda: self.storage.remove(path))
        return v

    def manifest(self, v: Version) -> dict[str, Any]:
        """The stored form of ``v``: container paths relative to the root."""
        return vers.manifest(v, lambda url: self.storage.layout.relative(self.storage.path_of(url)))

    def from_manifest(self, doc: dict[str, Any]) -> Version:
        """A stored version with its containers located under this root (whatever root, or
        absolute path, the document was written with)."""
        return vers.from_manifest(doc, lambda dataset, stored: self.storage.url(self.storage.layout.absolute(dataset, stored)))

    def insert_version(self, db: Connection, v: Version) -> None:
        """Record ``v`` in the catalog, inside ``db``'s transaction (its manifest is in storage)."""
        self.catalog.insert_version(db, v.dataset, v.version, v.message, v.created, v.sha256, v.size,
                                    json.dumps(self.manifest(v)))

    def list_versions(self, dataset: str) -> list[Version]:
        """Versions of ``dataset`` in semver order."""
        self.datasets.get_dataset(dataset)
        found = [self.from_manifest(json.loads(m)) for m in self.catalog.version_manifests(dataset)]
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
        with self.oplog.operation(dataset, "delete-version", version=v.version) as op:
            self.catalog.delete_version(op.db, dataset, v.version)
            # The manifest goes first: a restore never finds a version whose containers are gone
            # (a crash after this leaves unused containers, which gc deletes).
            path = self.storage.layout.version(dataset, v.version)
            op.on_failure(lambda: self.storage.write_json(path, self.manifest(v)))
            self.storage.remove(path)
        keep = self.referenced_paths(dataset) | {self.storage.path_of(d.url) for d in self.datasets.dataranges(dataset)}
        for d in v.dataranges:
            p = self.storage.path_of(d.url)
            if p not in keep:
                self.storage.remove(p)

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

    def referenced_paths(self, dataset: str) -> set[str]:
        """Paths of the containers the versions of ``dataset`` keep (never to be deleted)."""
        return {self.storage.path_of(d.url) for v in self.list_versions(dataset) for d in v.dataranges}

    # -- key spaces: rotate, truncate, overwrite -------------------------------------------------

    def rotate(self, dataset: str, version: str | None = None, message: str = "rotate", *,
               wait: float = 30.0) -> Version:
        """Snapshot the current data as ``version``, then start an empty key space at 0.

        ``version`` defaults to the next major version (``1.0.0`` first). Nothing is copied: the
        containers stay where they are, referenced by the version, and the new key space writes
        under ``dataranges/epoch-<n>/`` so its keys never reuse their object keys.
        """
        self.datasets.writable(dataset, "rotate")
        with self.catalog.lock(dataset, wait, "rotate") as lock:
            d = self.datasets.writable(dataset, "rotate")
            version = vers.check_semver(version) if version is not None else self._next_major(dataset)
            with self.oplog.operation(dataset, "rotate", version=version, epoch=d.epoch + 1) as op:
                lock.check(op.db)
                self.datasets.writable(dataset, "rotate")
                if self.catalog.has_version(dataset, version):
                    raise VersionError(f"dataset {dataset!r} already has version {version}")
                ranges = [self.datasets.datarange_of(r) for r in self.catalog.dataranges(dataset)]
                v = self._snapshot(op, dataset, version, message, ranges)
                self.insert_version(op.db, v)
                self.catalog.start_key_space(op.db, dataset, d.epoch + 1)
                op.details["dataranges"] = len(ranges)
            self.after_new_key_space(dataset, d.epoch, d.next_key)
        return v

    def truncate(self, dataset: str, *, wait: float = 30.0) -> int:
        """Drop the current dataranges and start an empty key space at 0; containers no version
        references are deleted. Returns how many dataranges were dropped."""
        self.datasets.writable(dataset, "truncate")
        with self.catalog.lock(dataset, wait, "truncate") as lock:
            d = self.datasets.writable(dataset, "truncate")
            dropped = self.datasets.dataranges(dataset)
            with self.oplog.operation(dataset, "truncate", dataranges=len(dropped), epoch=d.epoch + 1) as op:
                lock.check(op.db)
                self.datasets.writable(dataset, "truncate")
                self.catalog.start_key_space(op.db, dataset, d.epoch + 1)
            self.after_new_key_space(dataset, d.epoch, d.next_key)
            referenced = self.referenced_paths(dataset)
            for r in dropped:
                p = self.storage.path_of(r.url)
                if p not in referenced:
                    self.storage.remove(p)
        return len(dropped)

    def after_new_key_space(self, dataset: str, old_epoch: int, old_next_key: int) -> None:
        """After ``dataset`` started a new key space: ``dataset.json`` records its epoch (so that
        restore starts it, still empty), and the checkpoint files of the old key space go."""
        # dataset.json carries the epoch so that restore starts the new (still empty) key space.
        self.datasets.save_metadata(dataset)
        old = self.storage.list_range_objects(dataset, old_epoch, checkpoints=True)
        for path in self.storage.checkpoint_files(old, old_next_key):
            self.storage.remove(path)

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
        self.datasets.writable(dataset, "overwrite")
        pending = self.overwrite_versions(dataset)
        if pending:
            self.truncate(dataset, wait=wait)
            return pending[-1]
        d = self.datasets.get_dataset(dataset)
        if not self.datasets.dataranges(dataset):
            if d.next_key:
                self.truncate(dataset, wait=wait)
            return None
        return self.rotate(dataset, f"{OVERWRITE_VERSION_PREFIX}{int(time.time() * 1000)}",
                           "kept while an overwrite runs", wait=wait).version

    def overwrite_versions(self, dataset: str) -> list[str]:
        """The versions kept by overwrites not finished yet (oldest first): non-empty means the
        current data is an unfinished overwrite's output."""
        return [v.version for v in self.list_versions(dataset) if v.version.startswith(OVERWRITE_VERSION_PREFIX)]

    def finish_overwrite(self, dataset: str) -> list[str]:
        """The overwrite succeeded: delete the kept old data (every overwrite version)."""
        done = self.overwrite_versions(dataset)
        for version in done:
            self.delete_version(dataset, version)
        return done
