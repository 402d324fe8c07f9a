"""Maintenance of a dataset's containers: aggregate, verify, gc, and restore of the catalog.

Mixed into :class:`connector.store.Store`.
"""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any

from connector.des import DesReader, DesWriter
from connector.des.cache import invalidate
from connector.store import records
from connector.store import versions as vers
from connector.store.catalog import _stale
from connector.store.errors import DatasetLocked, RangeError, StoreError
from connector.store.layout import Layout, validate_dataset_name
from connector.store.model import STATUSES, Datarange
from connector.store.objects import remove_quietly, sha256_of
from connector.store.writer import record_name, record_names


class MaintenanceMixin:
    """aggregate, gc, verify, restore (needs the Store's catalog, layout, fs and dataset API)."""

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
                    remove_quietly(self.fs, p)
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
                        remove_quietly(self.fs, path)
                        deleted.append(path)
        if deleted:
            self.log(dataset, "gc", deleted=len(deleted))
        return deleted

    # -- verify ------------------------------------------------------------------------------------

    def verify(self, dataset: str, checked: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Re-hash every container of ``dataset`` and of its versions; the mismatches, each with
        ``code: DATA_LOSS``, the range, url, where it is used and the problem. ``checked``, if
        given, receives what was checked (``containers``: how many objects were hashed)."""
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
                    digests[d.url] = sha256_of(self.fs, self.fs._strip_protocol(d.url))
                except FileNotFoundError:
                    digests[d.url] = None
            digest = digests[d.url]
            if digest != d.sha256:
                problem = "object missing" if digest is None else f"sha256 {digest} != recorded {d.sha256}"
                bad.append({"first": d.first, "last": d.last, "url": d.url, "used_by": used_by,
                            "problem": problem, "code": "DATA_LOSS"})
        if checked is not None:
            checked.update(containers=len(digests), by="sha256 of each whole container object against the catalog")
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

    def restore(self, *, only_if_empty: bool = False) -> dict[str, int]:
        """Rebuild the catalog from storage alone, in one transaction.

        Per dataset: ``dataset.json`` (description, tags, metadata, status, frozen, key space),
        the containers of the current key space (object keys, footers; hashed by reading them),
        the writer checkpoint stored beside them and the version manifests. A container fully
        covered by a wider one is an aggregation's superseded input and is left out. Refuses
        while a live writer holds a lock. ``only_if_empty`` (used on open) does nothing if another
        process filled the catalog meanwhile.
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
            for first, last, path in not_superseded(containers, self.layout):
                reader = DesReader(path, fs=self.fs)
                if reader.duplicates():  # readable as the reference reads it, but not a datarange we wrote
                    raise StoreError(f"{path}: cannot restore a datarange whose container holds a member name "
                                     f"twice ({next(iter(reader.duplicates()))!r})")
                names = reader.names()
                kind = "records" if names and names[0] == record_name(first) else "files"
                ranges.append((first, last, path, reader.size, sha256_of(self.fs, path), len(names), kind,
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
            if only_if_empty and db.execute("SELECT 1 FROM datasets LIMIT 1").fetchone():
                return {"datasets": 0, "dataranges": 0, "versions": 0}
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


def not_superseded(paths: list[str], layout: Layout) -> list[tuple[int, int, str]]:
    """(first, last, path) of the containers to use: a container fully covered by a wider one is an
    aggregation's superseded input; a partial overlap cannot come from this store and is refused."""
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
