"""Maintenance of a dataset's containers: aggregate, verify, gc, and restore of the catalog."""

from __future__ import annotations

from typing import Any

from connector.des import DesReader, DesWriter
from connector.des.cache import invalidate
from connector.errors import DesFormatError
from connector.store import columns, records
from connector.store.backends import Connection
from connector.store.catalog import Catalog
from connector.store.datasets import Datasets
from connector.store.errors import DatasetLocked, RangeError, StoreError
from connector.store.history import Versions
from connector.store.layout import Layout
from connector.store.model import STATUSES, Datarange
from connector.store.names import record_name, record_names
from connector.store.objects import sha256_of
from connector.store.oplog import OperationLog
from connector.store.reading import Reads
from connector.store.storage import Storage

RESTORE_ATTEMPTS = 3  # storage re-read this often when writers commit while restore reads it


class Maintenance:
    """aggregate, gc, verify and restore over the parts of one store."""

    def __init__(self, storage: Storage, catalog: Catalog, oplog: OperationLog, datasets: Datasets,
                 versions: Versions, reads: Reads) -> None:
        self.storage, self.catalog, self.oplog = storage, catalog, oplog
        self.datasets, self.versions, self.reads = datasets, versions, reads

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
            epoch = self.datasets.get_dataset(dataset).epoch
            ranges = [d for d in self.datasets.dataranges(dataset) if d.last >= first and d.first <= last]
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
            path = self.storage.layout.datarange(dataset, first, last, epoch, lock.tag)
            try:
                out, data_length = self._merge(dataset, ranges, path)
            except (DesFormatError, ValueError) as exc:
                raise StoreError(f"dataset {dataset!r}: cannot aggregate [{first}, {last}]: {exc}") from exc
            with self.oplog.operation(dataset, "aggregate", first=first, last=last, merged=len(ranges)) as op:
                op.on_failure(lambda: self.storage.remove(path))  # this session's own object: never recorded
                lock.check(op.db)
                self.catalog.delete_dataranges_within(op.db, dataset, first, last)
                self.catalog.insert_datarange(op.db, dataset, first, last, self.storage.layout.relative(path), out.size,
                                              out.sha256, sum(d.count for d in ranges), ranges[0].kind, data_length)
            invalidate(self.storage.fs, path)
            referenced = self.versions.referenced_paths(dataset)
            for d in ranges:
                p = self.storage.path_of(d.url)
                if p not in referenced and p != path:
                    self.storage.remove(p)
        return self.datasets.datarange_for(dataset, first)

    def _merge(self, dataset: str, ranges: list[Datarange], path: str) -> tuple[DesWriter, int]:
        """Write the members of ``ranges`` in order into one container published under ``path``;
        returns the (closed) writer and the length of its DATA region."""
        newest = self._newest_keys(ranges)
        with self.storage.spooled(dataset, path) as spool:
            with DesWriter(spool, overwrite=True, big_file_threshold=None) as out:
                kept = [(d.count, self.reads.columns_meta(d)) for d in ranges if d.kind == "records"]
                # Per-record columns of the parts (connector.store.columns), concatenated in key order.
                out_meta = columns.concat(kept) if any(m for _, m in kept) else None
                for d in ranges:
                    if d.kind == "records":
                        data = records.data_region(self.storage.fs, self.storage.path_of(d.url), d.size, d.data_length)
                        out.add_many(record_names(d.first, d.count), data, records.line_lengths(data, d),
                                     check_names=False)
                    else:
                        reader = self.storage.reader(d)
                        for key, name in enumerate(reader.names(), d.first):
                            meta = {k: v for k, v in reader.meta(name).items() if k not in ("size", "sha256", "codec")}
                            member = name
                            if newest[name] != key:
                                member = _superseded_name(name, key)
                                meta.setdefault("name", name)
                            out.add(member, reader.read(name), meta)
                data_length = out.data_length
                if out_meta:
                    out.set_first_meta(out_meta)
        return out, data_length

    def _newest_keys(self, ranges: list[Datarange]) -> dict[str, int]:
        """Member name -> key of its newest datapoint, over file dataranges. A file packed again
        (a changed source object) is a new datapoint superseding the older ones of its name: in a
        merged container the newest keeps the name, the older ones become ``<name>@<key:020d>``
        (META ``name`` keeps the original); every datapoint keeps its key and bytes."""
        newest: dict[str, int] = {}
        for d in ranges:
            if d.kind != "records":
                for key, name in enumerate(self.storage.reader(d).names(), d.first):
                    newest[name] = key
        return newest

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
        Runs under the writer lock, and never deletes an object of a later session (should this
        one stall past its lease and be taken over, the new holder's objects are not its to judge).
        Returns the deleted paths."""
        with self.catalog.lock(dataset, wait, "gc") as lock:
            d = self.datasets.get_dataset(dataset)
            used = self.versions.referenced_paths(dataset) | {self.storage.path_of(r.url) for r in self.datasets.dataranges(dataset)}
            current = self.storage.list_range_objects(dataset, d.epoch, checkpoints=True)
            used.update(self.storage.checkpoint_files(current, d.next_key)[-1:])  # the one in effect
            deleted = []
            for epoch in sorted(set(self.storage.epochs(dataset)) | {d.epoch}):
                for path in self.storage.list_range_objects(dataset, epoch, checkpoints=True):
                    if path not in used and self.storage.layout.tag_of(path.rsplit("/", 1)[-1]) < lock.tag:
                        self.storage.remove(path)
                        deleted.append(path)
        if deleted:
            self.oplog.log(dataset, "gc", deleted=len(deleted))
        return deleted

    # -- verify ------------------------------------------------------------------------------------

    def verify(self, dataset: str, checked: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Re-hash every container of ``dataset`` and of its versions; the mismatches, each with
        ``code: DATA_LOSS``, the range, url, where it is used and the problem. ``checked``, if
        given, receives what was checked (``containers``: how many objects were hashed)."""
        digests: dict[str, str | None] = {}
        bad, seen = [], set()
        uses = [("current", d) for d in self.datasets.dataranges(dataset)]
        uses += [(f"version {v.version}", d) for v in self.versions.list_versions(dataset) for d in v.dataranges]
        for used_by, d in uses:
            if (d.url, d.sha256) in seen:
                continue
            seen.add((d.url, d.sha256))
            if d.url not in digests:
                try:
                    digests[d.url] = sha256_of(self.storage.fs, self.storage.path_of(d.url))
                except FileNotFoundError:
                    digests[d.url] = None
            digest = digests[d.url]
            if digest != d.sha256:
                problem = "object missing" if digest is None else f"sha256 {digest} != recorded {d.sha256}"
                bad.append({"first": d.first, "last": d.last, "url": d.url, "used_by": used_by,
                            "problem": problem, "code": "DATA_LOSS"})
        if checked is not None:
            checked.update(containers=len(digests), by="sha256 of each whole container object against the catalog")
        self.oplog.log(dataset, "verify", containers=len(digests), mismatches=len(bad))
        return bad

    # -- restore ---------------------------------------------------------------------------------

    def restore(self, *, only_if_empty: bool = False) -> dict[str, int]:
        """Rebuild the catalog from storage alone, in one transaction.

        Per dataset: ``dataset.json`` (description, tags, metadata, status, frozen, key space),
        the containers of the current key space (object keys, footers; hashed by reading them),
        the writer checkpoint stored beside them and the version manifests. A container fully
        covered by a wider one is an aggregation's superseded input and is left out.

        Sees every commit made before its transaction: the catalog's SQLite ``data_version`` is
        read before storage is, and if anything was committed to the catalog meanwhile (a writer
        that took a lock, committed and released it while storage was being read) storage is read
        again, up to ``RESTORE_ATTEMPTS`` times, then :class:`DatasetLocked` is raised. Refuses
        while a live writer holds a lock. ``only_if_empty`` (used on open) does nothing if another
        process filled the catalog meanwhile.
        """
        nothing = {"datasets": 0, "dataranges": 0, "versions": 0}
        for _ in range(RESTORE_ATTEMPTS):
            if only_if_empty and self._filled_elsewhere():
                return nothing
            self._refuse_live_locks()
            seen = self.catalog.data_version()
            plan = [self._restore_plan(name) for name in self.storage.dataset_names()]
            with self.catalog.transaction() as db:
                if only_if_empty and self._filled_elsewhere():
                    return nothing
                self._refuse_live_locks()
                if self.catalog.data_version() != seen:
                    continue  # something was committed while storage was read: read it again
                self._replace_catalog(db, plan)
            return {"datasets": len(plan), "dataranges": sum(len(p[5]) for p in plan),
                    "versions": sum(len(p[6]) for p in plan)}
        raise DatasetLocked(f"cannot restore: the catalog changed while storage was read, {RESTORE_ATTEMPTS} times "
                            "in a row (writers at work); restore again when they are idle")

    def _filled_elsewhere(self) -> bool:
        """On open: another process has filled the catalog, or holds a writer lock in it (it opened
        the store, so restored it first, and is writing its first dataset: a shared catalog seen
        between its lock and its first row)."""
        return not self.catalog.is_empty() or bool(self.catalog.live_locks())

    def _refuse_live_locks(self) -> None:
        live = self.catalog.live_locks()  # inside the caller's transaction, if any
        if live:
            r = live[0]
            raise DatasetLocked(f"cannot restore while dataset {r['dataset']!r} is being written "
                                f"(pid {r['pid']} on {r['host']})")

    def _restore_plan(self, name: str) -> tuple:
        """What storage says of dataset ``name``: (name, meta, epoch, next key, checkpoint text,
        dataranges, versions)."""
        try:
            meta = self.storage.read_json(self.storage.layout.dataset_json(name))
        except FileNotFoundError:
            meta = {}
        epoch = max([int(meta.get("epoch") or 0), *self.storage.epochs(name)])
        objects = self.storage.list_range_objects(name, epoch, checkpoints=True)
        ranges = []
        containers = [p for p in objects if self.storage.layout.parse_range(p.rsplit("/", 1)[-1])]
        for first, last, path in not_superseded(containers, self.storage.layout):
            reader = DesReader(path, fs=self.storage.fs)
            if reader.duplicates():  # readable as the reference reads it, but not a datarange we wrote
                raise StoreError(f"{path}: cannot restore a datarange whose container holds a member name "
                                 f"twice ({next(iter(reader.duplicates()))!r})")
            names = reader.names()
            kind = "records" if names and names[0] == record_name(first) else "files"
            ranges.append((first, last, self.storage.layout.relative(path), reader.size, sha256_of(self.storage.fs, path),
                           len(names), kind, reader.footer.data_length))
        next_key = max((r[1] for r in ranges), default=-1) + 1
        checkpoints = self.storage.checkpoint_files(objects, next_key)
        checkpoint = self.storage.fs.cat_file(checkpoints[-1]).decode() if checkpoints else None
        manifests = [self.versions.from_manifest(doc) for doc in self.storage.version_documents(name)]
        return name, meta, epoch, next_key, checkpoint, ranges, manifests

    def _replace_catalog(self, db: Connection, plan: list[tuple]) -> None:
        self.catalog.clear(db)
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
                self.versions.insert_version(db, v)

    def dump_catalog(self) -> dict[str, Any]:
        """The catalog's content without timestamps of catalog operations (for comparisons)."""
        out = {}
        for d in self.datasets.list_datasets(limit=1 << 30):
            out[d.name] = {"meta": {k: v for k, v in d.to_dict().items() if k not in ("updated", "last_write")},
                           "checkpoint": self.datasets.checkpoint(d.name),
                           "dataranges": [r.to_dict() for r in self.datasets.dataranges(d.name)],
                           "versions": [v.to_dict() for v in self.versions.list_versions(d.name)]}
        return out


def not_superseded(paths: list[str], layout: Layout) -> list[tuple[int, int, str]]:
    """(first, last, path) of the containers to use: a container fully covered by a wider one is an
    aggregation's superseded input, and of two containers of the same range the newest session's
    wins (the other is a stale session's leftover); a partial overlap cannot come from this store
    and is refused."""
    parsed = []
    for p in paths:
        base = p.rsplit("/", 1)[-1]
        parsed_range = layout.parse_range(base)
        if parsed_range is None:
            raise StoreError(f"{p}: not a datarange container name")
        first, last = parsed_range
        parsed.append((first, -last, _Descending(layout.tag_of(base)), p))
    kept: list[tuple[int, int, str]] = []
    for first, neg_last, _, path in sorted(parsed):
        last = -neg_last
        if kept and first <= kept[-1][1]:
            if last <= kept[-1][1]:
                continue  # fully covered by a wider container: an aggregation's old input
            raise RangeError(f"{path}: datarange [{first}, {last}] overlaps [{kept[-1][0]}, {kept[-1][1]}] "
                             "without being covered by it; remove one of the two objects and restore again")
        kept.append((first, last, path))
    return kept


def _superseded_name(name: str, key: int) -> str:
    """The member name of file datapoint ``key`` once a newer datapoint of ``name`` shares its container."""
    return f"{name}@{key:020d}"


class _Descending(str):
    """A string that sorts in reverse order (newest session tag first)."""

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)
