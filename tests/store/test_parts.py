"""The store's parts work on their own, without a Store: what a server, a client or another catalog
backend builds on (see connector.store.api)."""

from __future__ import annotations

import fsspec
import pyarrow as pa

from connector.store import Store
from connector.store.catalog import Catalog
from connector.store.datasets import Datasets
from connector.store.history import Versions
from connector.store.oplog import OperationLog
from connector.store.reading import Reads
from connector.store.storage import Storage
from connector.store.writer import Limits, Writers


def test_parts_assembled_by_hand_write_and_read_what_a_store_reads(tmp_path):
    root = str(tmp_path / "root")
    storage = Storage(fsspec.filesystem("file"), root)
    catalog = Catalog(str(tmp_path / "catalog.sqlite"))
    oplog = OperationLog(storage, catalog)
    datasets = Datasets(storage, catalog, oplog)
    versions = Versions(storage, catalog, oplog, datasets)
    reads = Reads(storage, datasets, versions)
    writers = Writers(storage, catalog, oplog, datasets, Limits(max_datapoints=4))

    result = writers.write_records("t", [pa.table({"id": list(range(10))})])
    assert (result.first, result.last, result.dataranges) == (0, 9, 3)
    versions.create_version("t", "1.0.0")
    assert reads.read_range("t", 3, 5).column("id").to_pylist() == [3, 4, 5]
    assert [e["op"] for e in oplog.entries("t")] == ["create", "write", "version"]
    catalog.close()

    # Storage alone: what the root holds, whoever wrote it.
    assert storage.dataset_names() == ["t"]
    assert len(storage.list_range_objects("t")) == 3 and len(storage.version_documents("t")) == 1
    # A Store over the same root and catalog sees the same data.
    with Store(root, str(tmp_path / "catalog.sqlite")) as store:
        assert store.to_table("t").column("id").to_pylist() == list(range(10))
        assert store.get_version("t", "1.0.0").dataranges == versions.get_version("t", "1.0.0").dataranges


def test_store_methods_are_its_parts_methods(tmp_path):
    with Store(str(tmp_path / "root")) as store:
        for name, part in [("create_dataset", store.datasets), ("read_range", store.reads),
                           ("rotate", store.versions), ("writer", store.writers), ("gc", store.maintenance)]:
            method = getattr(type(store), name)
            assert method.__wrapped__ is getattr(type(part), name)  # same function: same docstring and signature
            assert method.__doc__ == getattr(type(part), name).__doc__
