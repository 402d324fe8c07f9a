"""Store: datasets of numbered datapoints in DES dataranges, over any fsspec root, with a SQLite catalog.

:class:`Store` is a facade over parts with one job each, usable on their own (by a server, a
client, or a catalog of another kind):

- :class:`~connector.store.storage.Storage`: the objects of the root (paths, atomic writes,
  publishing containers, listings);
- :class:`~connector.store.catalog.Catalog`: the index of datasets, dataranges, versions, locks;
- :class:`~connector.store.oplog.OperationLog`: each dataset's operation log, and operations
  that change the catalog and the log together;
- :class:`~connector.store.datasets.Datasets`: datasets, their current dataranges and checkpoint;
- :class:`~connector.store.history.Versions`: versions and key spaces (rotate, truncate, overwrite);
- :class:`~connector.store.reading.Reads`: reading datapoints, JSON Lines and Arrow tables;
- :class:`~connector.store.writer.Writers`: writer sessions (:class:`~connector.store.writer.DatasetWriter`);
- :class:`~connector.store.maintenance.Maintenance`: aggregate, gc, verify, restore.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import fsspec

from connector.des.target import is_local, url_of
from connector.storage import open_filesystem
from connector.store.backends import is_catalog_url, redacted
from connector.store.catalog import Catalog
from connector.store.datasets import Datasets
from connector.store.errors import StoreError
from connector.store.history import Versions
from connector.store.maintenance import Maintenance
from connector.store.oplog import OperationLog
from connector.store.reading import MAX_KEY, Reads
from connector.store.storage import Storage
from connector.store.writer import DEFAULT_MAX_BYTES, DEFAULT_MAX_DATAPOINTS, Limits, Writers

CATALOG_NAME = ".des-catalog.sqlite"

# MAX_KEY lives with the reads (connector.store.reading); importable from here as it always was.
__all__ = ["CATALOG_NAME", "MAX_KEY", "Store", "default_catalog"]

P = ParamSpec("P")
R = TypeVar("R")
Part = TypeVar("Part")


def default_catalog(fs: fsspec.AbstractFileSystem, root: str) -> str:
    """Beside the data for a local root (``<root>/.des-catalog.sqlite``); under the user cache
    directory for a remote one, one file per root URL."""
    if is_local(fs):
        return os.path.join(root, CATALOG_NAME)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url_of(fs, root).encode()).hexdigest()[:16]
    return os.path.join(base, "des-connector", "catalogs", f"{digest}.sqlite")


def _forward(part: str, method: Callable[Concatenate[Part, P], R]) -> Callable[Concatenate[Store, P], R]:
    """A Store method calling ``method`` of the part held in attribute ``part`` (same signature
    and docstring)."""
    @functools.wraps(method)
    def call(self: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(getattr(self, part), *args, **kwargs)
    return call


class Store:
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

    The parts it is made of are its attributes, for code that needs one job only: ``storage``,
    ``catalog``, ``oplog``, ``datasets``, ``versions``, ``reads``, ``writers``, ``maintenance``
    (see :mod:`connector.store.api`). Its methods are theirs, under the same names (``log_entries``
    is ``oplog.entries``).
    """

    def __init__(self, root: str | os.PathLike[str], catalog: str | None = None, *,
                 storage_options: Mapping[str, Any] | None = None, max_datapoints: int = DEFAULT_MAX_DATAPOINTS,
                 max_bytes: int = DEFAULT_MAX_BYTES, compression: str | None = None,
                 read_only: bool = False) -> None:
        self.limits = Limits(max_datapoints, max_bytes, compression)
        # Opened by the storage policy: with bounded botocore retries, s3fs does one attempt per call.
        fs, path = open_filesystem(root, dict(storage_options or {}))
        self.storage = Storage(fs, path)
        self.fs, self.root, self.layout = fs, self.storage.root, self.storage.layout
        self.catalog_path = catalog or default_catalog(self.fs, self.root)
        self._private_catalog_dir: str | None = None
        if read_only:
            self._open_read_only(cache_catalog=catalog is None and not is_local(self.fs))
        elif is_local(self.fs):
            self.fs.makedirs(self.root, exist_ok=True)
        self.catalog = Catalog(self.catalog_path)
        self.oplog = OperationLog(self.storage, self.catalog)
        self.datasets = Datasets(self.storage, self.catalog, self.oplog)
        self.versions = Versions(self.storage, self.catalog, self.oplog, self.datasets)
        self.reads = Reads(self.storage, self.datasets, self.versions)
        self.writers = Writers(self.storage, self.catalog, self.oplog, self.datasets, self.limits)
        self.maintenance = Maintenance(self.storage, self.catalog, self.oplog, self.datasets, self.versions,
                                       self.reads)
        if self.catalog.is_empty() and self.storage.dataset_names():
            self.restore(only_if_empty=True)

    @property
    def max_datapoints(self) -> int:
        """A container is cut when it holds this many datapoints."""
        return self.limits.max_datapoints

    @property
    def max_bytes(self) -> int:
        """A container is cut when its DATA region reaches this many bytes."""
        return self.limits.max_bytes

    @property
    def compression(self) -> str | None:
        """The codec of file datapoints (``None``, ``"zstd"`` or ``"gzip"``)."""
        return self.limits.compression

    def _open_read_only(self, cache_catalog: bool) -> None:
        """Refuse a root that does not exist; stand in a throw-away catalog for a missing one.

        A remote root's default catalog is a cache in the user's cache directory, outside the root
        and outside anything the user named: it is rebuilt there (as any open would) so the next
        command does not list the root again.
        """
        if not self.fs.isdir(self.root):
            raise StoreError(f"store root {self.storage.url(self.root)} does not exist")
        if not cache_catalog and not is_catalog_url(self.catalog_path) and not os.path.exists(self.catalog_path):
            self._private_catalog_dir = tempfile.mkdtemp(prefix="des-catalog-")
            self.catalog_path = os.path.join(self._private_catalog_dir, CATALOG_NAME)

    def close(self) -> None:
        """Close the catalog (and remove a private one, see ``read_only``)."""
        self.catalog.close()
        if self._private_catalog_dir is not None:
            shutil.rmtree(self._private_catalog_dir, ignore_errors=True)
            self._private_catalog_dir = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.storage.url(self.root)!r}, catalog={redacted(self.catalog_path)!r})"

    # -- datasets (connector.store.datasets) -------------------------------------------------------

    create_dataset = _forward("datasets", Datasets.create_dataset)
    ensure_dataset = _forward("datasets", Datasets.ensure_dataset)
    get_dataset = _forward("datasets", Datasets.get_dataset)
    list_datasets = _forward("datasets", Datasets.list_datasets)
    update_dataset = _forward("datasets", Datasets.update_dataset)
    delete_dataset = _forward("datasets", Datasets.delete_dataset)
    freeze = _forward("datasets", Datasets.freeze)
    unfreeze = _forward("datasets", Datasets.unfreeze)
    stats = _forward("datasets", Datasets.stats)
    dataranges = _forward("datasets", Datasets.dataranges)
    datarange_for = _forward("datasets", Datasets.datarange_for)
    missing_ranges = _forward("datasets", Datasets.missing_ranges)
    checkpoint = _forward("datasets", Datasets.checkpoint)
    set_checkpoint = _forward("datasets", Datasets.set_checkpoint)
    log_entries = _forward("oplog", OperationLog.entries)

    # -- writing (connector.store.writer) ----------------------------------------------------------

    writer = _forward("writers", Writers.writer)
    write_records = _forward("writers", Writers.write_records)
    write_files = _forward("writers", Writers.write_files)

    # -- reading (connector.store.reading) ---------------------------------------------------------

    read = _forward("reads", Reads.read)
    read_lines = _forward("reads", Reads.read_lines)
    read_range = _forward("reads", Reads.read_range)
    read_meta = _forward("reads", Reads.read_meta)
    latest_lines = _forward("reads", Reads.latest_lines)
    to_table = _forward("reads", Reads.to_table)

    def to_dask(self, dataset: str, version: str | None = None, columns: Sequence[str] | None = None,
                latest_by: Sequence[str] | None = None) -> Any:
        """Every record of ``dataset`` (as of ``version``) as a lazy Dask DataFrame: one partition
        per datarange, each one ranged GET, indexed by key (see :mod:`connector.store.dask`; its
        workers open the store again from its root and catalog, hence a method of the whole);
        ``latest_by``: the last record per combination of those fields (see :meth:`read_range`)."""
        from connector.store.dask import to_dask

        return to_dask(self, dataset, version, columns, latest_by)

    # -- versions and key spaces (connector.store.history) -----------------------------------------

    create_version = _forward("versions", Versions.create_version)
    list_versions = _forward("versions", Versions.list_versions)
    get_version = _forward("versions", Versions.get_version)
    delete_version = _forward("versions", Versions.delete_version)
    chunks = _forward("versions", Versions.chunks)
    chunk = _forward("versions", Versions.chunk)
    rotate = _forward("versions", Versions.rotate)
    truncate = _forward("versions", Versions.truncate)
    begin_overwrite = _forward("versions", Versions.begin_overwrite)
    overwrite_versions = _forward("versions", Versions.overwrite_versions)
    finish_overwrite = _forward("versions", Versions.finish_overwrite)

    # -- maintenance (connector.store.maintenance) -------------------------------------------------

    aggregate = _forward("maintenance", Maintenance.aggregate)
    gc = _forward("maintenance", Maintenance.gc)
    verify = _forward("maintenance", Maintenance.verify)
    restore = _forward("maintenance", Maintenance.restore)
    dump_catalog = _forward("maintenance", Maintenance.dump_catalog)
