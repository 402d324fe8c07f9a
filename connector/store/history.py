"""Versions and key spaces of a dataset: snapshots, chunks, rotate, truncate, overwrite.

Mixed into :class:`connector.store.Store`. A version is a manifest in storage naming the
containers it snapshotted; they stay until no version and no current datarange uses them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from connector.store import versions as vers
from connector.store.errors import DatasetFrozen, RangeError, VersionError
from connector.store.model import Datarange, Version
from connector.store.objects import remove_quietly
from connector.store.versions import OVERWRITE_VERSION_PREFIX

if TYPE_CHECKING:
    import fsspec

    from connector.store.api import Operation
    from connector.store.catalog import Catalog
    from connector.store.layout import Layout
    from connector.store.model import Dataset


class HistoryMixin:
    """Versions, chunks and key spaces (needs the Store's catalog, layout, fs and dataset API)."""

    if TYPE_CHECKING:  # what the mixin uses of the Store (mypy checks the Store's definitions against these)
        fs: fsspec.AbstractFileSystem
        layout: Layout
        catalog: Catalog

        def url(self, path: str) -> str: ...
        def get_dataset(self, name: str) -> Dataset: ...
        def dataranges(self, dataset: str) -> list[Datarange]: ...
        def list_range_objects(self, dataset: str, epoch: int = 0, *, checkpoints: bool = False,
                               temporaries: bool = False) -> list[str]: ...
        def checkpoint_files(self, objects: list[str], next_key: int) -> list[str]: ...
        def operation(self, name: str, op: str, **details: Any) -> AbstractContextManager[Operation]: ...
        def _datarange(self, row: Any) -> Datarange: ...
        def _save_metadata(self, name: str) -> None: ...
        def _write_json(self, path: str, value: Any) -> None: ...

    # -- versions --------------------------------------------------------------------------------

    def create_version(self, dataset: str, version: str, message: str = "") -> Version:
        """Snapshot the current dataranges as ``version`` (semver), manifest stored in storage.

        The snapshot is read and recorded in one catalog transaction, so a concurrent aggregate
        either ran before (the version holds the merged container) or sees the version and keeps
        the containers it references."""
        vers.check_semver(version)
        self.get_dataset(dataset)
        with self.operation(dataset, "version", version=version) as op:
            if self.catalog.has_version(dataset, version):
                raise VersionError(f"dataset {dataset!r} already has version {version}")
            ranges = tuple(self._datarange(r) for r in self.catalog.dataranges(dataset))
            v = self._snapshot(op, dataset, version, message, ranges)
            self._insert_version(op.db, v)
            op.details.update(sha256=v.sha256, dataranges=len(ranges))
        return v

    def _snapshot(self, op, dataset: str, version: str, message: str, ranges: Sequence[Datarange]) -> Version:
        """A version of ``ranges``, its manifest written to storage (and removed again if the
        operation ``op`` fails: a restore must not find a version the catalog never had)."""
        v = Version(dataset, version, message, time.time(), vers.content_hash(ranges), sum(d.size for d in ranges),
                    tuple(ranges))
        path = self.layout.version(dataset, version)
        self._write_json(path, self._version_doc(v))
        op.on_failure(lambda: remove_quietly(self.fs, path))
        return v

    def _version_doc(self, v: Version) -> dict[str, Any]:
        """The stored form of ``v``: container paths relative to the root."""
        return vers.manifest(v, lambda url: self.layout.relative(self.fs._strip_protocol(url)))

    def _version_from_doc(self, doc: dict[str, Any]) -> Version:
        """A stored version with its containers located under this root (whatever root, or
        absolute path, the document was written with)."""
        return vers.from_manifest(doc, lambda dataset, stored: self.url(self.layout.absolute(dataset, stored)))

    def _insert_version(self, db, v: Version) -> None:
        self.catalog.insert_version(db, v.dataset, v.version, v.message, v.created, v.sha256, v.size,
                                    json.dumps(self._version_doc(v)))

    def list_versions(self, dataset: str) -> list[Version]:
        """Versions of ``dataset`` in semver order."""
        self.get_dataset(dataset)
        found = [self._version_from_doc(json.loads(m)) for m in self.catalog.version_manifests(dataset)]
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
        with self.operation(dataset, "delete-version", version=v.version) as op:
            self.catalog.delete_version(op.db, dataset, v.version)
            # The manifest goes first: a restore never finds a version whose containers are gone
            # (a crash after this leaves unused containers, which gc deletes).
            path = self.layout.version(dataset, v.version)
            op.on_failure(lambda: self._write_json(path, self._version_doc(v)))
            remove_quietly(self.fs, path)
        keep = self._referenced_paths(dataset) | {self.fs._strip_protocol(d.url) for d in self.dataranges(dataset)}
        for d in v.dataranges:
            p = self.fs._strip_protocol(d.url)
            if p not in keep:
                remove_quietly(self.fs, p)

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
        self._refuse_frozen(dataset, "rotate")
        with self.catalog.lock(dataset, wait, "rotate") as lock:
            d = self._refuse_frozen(dataset, "rotate")
            version = vers.check_semver(version) if version is not None else self._next_major(dataset)
            with self.operation(dataset, "rotate", version=version, epoch=d.epoch + 1) as op:
                lock.check(op.db)
                self._refuse_frozen(dataset, "rotate")
                if self.catalog.has_version(dataset, version):
                    raise VersionError(f"dataset {dataset!r} already has version {version}")
                ranges = [self._datarange(r) for r in self.catalog.dataranges(dataset)]
                v = self._snapshot(op, dataset, version, message, ranges)
                self._insert_version(op.db, v)
                self.catalog.start_key_space(op.db, dataset, d.epoch + 1)
                op.details["dataranges"] = len(ranges)
            self._after_new_key_space(dataset, d.epoch, d.next_key)
        return v

    def truncate(self, dataset: str, *, wait: float = 30.0) -> int:
        """Drop the current dataranges and start an empty key space at 0; containers no version
        references are deleted. Returns how many dataranges were dropped."""
        self._refuse_frozen(dataset, "truncate")
        with self.catalog.lock(dataset, wait, "truncate") as lock:
            d = self._refuse_frozen(dataset, "truncate")
            dropped = self.dataranges(dataset)
            with self.operation(dataset, "truncate", dataranges=len(dropped), epoch=d.epoch + 1) as op:
                lock.check(op.db)
                self._refuse_frozen(dataset, "truncate")
                self.catalog.start_key_space(op.db, dataset, d.epoch + 1)
            self._after_new_key_space(dataset, d.epoch, d.next_key)
            referenced = self._referenced_paths(dataset)
            for r in dropped:
                p = self.fs._strip_protocol(r.url)
                if p not in referenced:
                    remove_quietly(self.fs, p)
        return len(dropped)

    def _refuse_frozen(self, dataset: str, what: str):
        """The dataset, or :class:`DatasetFrozen` if it is frozen (checked before ``what`` changes
        anything, and again inside its transaction)."""
        d = self.get_dataset(dataset)
        if d.frozen:
            raise DatasetFrozen(f"dataset {dataset!r} is frozen: unfreeze it to {what} it")
        return d

    def _after_new_key_space(self, dataset: str, old_epoch: int, old_next_key: int) -> None:
        # dataset.json carries the epoch so that restore starts the new (still empty) key space.
        self._save_metadata(dataset)
        old = self.list_range_objects(dataset, old_epoch, checkpoints=True)
        for path in self.checkpoint_files(old, old_next_key):
            remove_quietly(self.fs, path)

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
        self._refuse_frozen(dataset, "overwrite")
        pending = self.overwrite_versions(dataset)
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
