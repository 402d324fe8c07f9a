"""The store over a local root and the S3 test server: datasets, writes, reads, aggregate, versions, restore."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from connector.store.backends import is_catalog_url
from connector.store import (DatasetExists, DatasetFrozen, DatasetLocked, DatasetNotFound, InvalidName, RangeError,
                             Store, StoreError, VersionError)
from tests.store.names import untagged


def rows(lo: int, hi: int) -> pa.Table:
    return pa.table({"id": list(range(lo, hi)), "name": [f"n{i}" for i in range(lo, hi)]})


def test_datasets_crud_filters_and_names(store):
    store.create_dataset("a", description="first", tags=["x", "y"], metadata={"owner": "me"}, status="active")
    store.create_dataset("b", tags=["y"])
    with pytest.raises(DatasetExists, match="'a' already exists"):
        store.create_dataset("a")
    assert [d.name for d in store.list_datasets(tags=["y"])] == ["a", "b"]
    assert [d.name for d in store.list_datasets(status="active")] == ["a"]
    assert [d.name for d in store.list_datasets(limit=1, offset=1)] == ["b"]
    d = store.update_dataset("a", metadata={"owner": None, "team": "t"}, status="archived")
    assert d.metadata == {"team": "t"} and d.status == "archived"
    with pytest.raises(StoreError, match="status must be one of"):
        store.update_dataset("a", status="gone")
    for bad in ["", "../x", "a/b", "a\\b", ".hidden", "x\x00", "a" * 201]:
        with pytest.raises(InvalidName):
            store.create_dataset(bad)
    with pytest.raises(DatasetNotFound, match="'nope' not found"):
        store.get_dataset("nope")


def test_records_cut_read_range_missing_and_table(store):
    result = store.write_records("r", [rows(0, 25), [{"id": 25, "name": "n25"}]])
    assert (result.first, result.last, result.count, result.dataranges) == (0, 25, 26, 3)
    assert [(d.first, d.last, d.count) for d in store.dataranges("r")] == [(0, 9, 10), (10, 19, 10), (20, 25, 6)]
    assert store.read("r", 13) == b'{"id":13,"name":"n13"}\n'
    assert store.read_range("r", 8, 12).column("id").to_pylist() == [8, 9, 10, 11, 12]
    assert store.to_table("r").column("id").to_pylist() == list(range(26))
    assert store.missing_ranges("r") == []
    with pytest.raises(RangeError, match="no datapoint 99"):
        store.read("r", 99)


def test_records_without_fields_are_kept_and_counted(store):
    # Arrow gives a column-less batch no length of its own and concat_tables drops the rows of
    # column-less tables: both once made {} records vanish from reads.
    empty = pa.RecordBatch.from_struct_array(pa.array([{}] * 3, pa.struct([])))
    result = store.write_records("e", [empty, [{}, {}]])
    assert (result.first, result.last, result.count) == (0, 4, 5)
    assert [store.read("e", k) for k in (0, 4)] == [b"{}\n", b"{}\n"]
    assert store.to_table("e").num_rows == 5
    assert store.read_range("e", 1, 3).num_rows == 3
    store.write_records("e", [[{"x": 1}]])
    assert store.to_table("e").column("x").to_pylist() == [None] * 5 + [1]


def test_aggregate_refuses_gaps_and_cuts_then_merges(store):
    store.write_records("r", [rows(0, 30)])
    with pytest.raises(RangeError, match="cuts datarange"):
        store.aggregate("r", 0, 15)
    merged = store.aggregate("r", 0, 19)
    assert (merged.first, merged.last, merged.count) == (0, 19, 20)
    assert [(d.first, d.last) for d in store.dataranges("r")] == [(0, 19), (20, 29)]
    assert store.to_table("r").column("id").to_pylist() == list(range(30))
    # Old containers are gone from storage (no version references them).
    names = [untagged(p) for p in store.storage.list_range_objects("r")]
    assert names == ["00000000000000000000-00000000000000000019.des", "00000000000000000020-00000000000000000029.des"]


def test_gaps_are_reported_and_block_aggregation(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as store:
        store.write_records("g", [rows(0, 15)])
        path = store.fs._strip_protocol(store.datarange_for("g", 7).url)
        os.unlink(path)
        store.restore()
        assert store.missing_ranges("g") == [(5, 9)]
        with pytest.raises(RangeError, match=r"has gaps \(missing: \[\(5, 9\)\]\)"):
            store.aggregate("g", 0, 14)


def test_versions_hash_read_as_of_and_survive_aggregation(store):
    store.write_records("v", [rows(0, 20)])
    v1 = store.create_version("v", "1.0.0", "first")
    store.write_records("v", [rows(20, 25)])
    store.aggregate("v", 0, 24)
    v2 = store.create_version("v", "1.1.0-rc.1")
    assert [v.version for v in store.list_versions("v")] == ["1.0.0", "1.1.0-rc.1"]
    assert store.get_version("v", "latest").version == "1.1.0-rc.1"
    assert v1.sha256 != v2.sha256 and len(v1.sha256) == 64
    assert store.to_table("v", version="1.0.0").column("id").to_pylist() == list(range(20))
    assert store.chunk("v", "1.0.0", index=1)["first"] == 10
    assert store.chunk("v", "1.0.0", sha256=v1.dataranges[0].sha256)["index"] == 0
    assert store.verify("v") == []
    with pytest.raises(VersionError, match="not a semantic version"):
        store.create_version("v", "v2")
    with pytest.raises(VersionError, match="already has version 1.0.0"):
        store.create_version("v", "1.0.0")


def test_freeze_rotate_stats_and_log(store):
    store.write_records("f", [rows(0, 12)])
    store.freeze("f")
    with pytest.raises(DatasetFrozen, match="'f' is frozen"):
        store.write_records("f", [rows(12, 13)])
    assert store.stats("f")["datapoints"] == 12
    store.unfreeze("f")
    v = store.rotate("f", "1.0.0")
    assert store.dataranges("f") == [] and store.get_dataset("f").next_key == 0
    store.write_records("f", [rows(100, 103)])
    assert store.to_table("f").column("id").to_pylist() == [100, 101, 102]
    assert store.to_table("f", version="1.0.0").column("id").to_pylist() == list(range(12))
    assert v.sha256 == store.get_version("f", "1.0.0").sha256
    ops = [e["op"] for e in store.log_entries("f")]
    assert ops[:2] == ["create", "write"] and "freeze" in ops and "rotate" in ops and ops[-1] == "write"
    stats = store.stats("f")
    assert (stats["datapoints"], stats["dataranges"], stats["versions"]) == (3, 1, 1)


def test_verify_reports_a_corrupted_container(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as store:
        store.write_records("c", [rows(0, 10)])
        path = store.fs._strip_protocol(store.dataranges("c")[1].url)
        data = bytearray(open(path, "rb").read())
        data[20] ^= 0xFF
        open(path, "wb").write(bytes(data))
        bad = store.verify("c")
        assert len(bad) == 1 and bad[0]["first"] == 5 and bad[0]["code"] == "DATA_LOSS"


def test_files_datapoints_keep_bytes_and_meta(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(bytes([i]) * (100 + i))
    store.write_files("files", [str(src / f"f{i}.bin") for i in range(3)], relative_to=str(src))
    assert store.read("files", 2) == bytes([2]) * 102
    d = store.dataranges("files")[0]
    from connector.des import DesReader

    reader = DesReader(store.fs._strip_protocol(d.url), fs=store.fs)
    assert reader.names() == ["f0.bin", "f1.bin", "f2.bin"] and "last_modified" in reader.meta("f1.bin")


def test_restore_from_storage_alone_gives_the_same_catalog(store, tmp_path, request):
    store.create_dataset("m", description="kept", tags=["t"], metadata={"k": 1}, status="active")
    store.write_records("m", [rows(0, 25)])
    store.create_version("m", "0.1.0")
    store.aggregate("m", 0, 19)  # the superseded containers stay (the version references them)
    store.write_records("n", [rows(0, 3)])
    before = store.dump_catalog()
    store.close()
    if is_catalog_url(store.catalog_path):  # the catalog lost: an empty database in its place
        catalog = request.getfixturevalue("postgres_server").new_database()
    else:
        os.unlink(store.catalog_path)
        catalog = store.catalog_path
    again = Store(store.storage.url(store.root), catalog, storage_options=store.fs.storage_options)
    assert again.dump_catalog() == before
    again.close()


def test_delete_cascades_and_can_be_finished(store):
    store.write_records("d", [rows(0, 12)])
    store.create_version("d", "1.0.0")
    store.delete_dataset("d")
    assert not store.fs.exists(store.layout.dataset_dir("d"))
    with pytest.raises(DatasetNotFound):
        store.get_dataset("d")
    with pytest.raises(DatasetNotFound):
        store.delete_dataset("d")


def test_second_writer_waits_then_fails_clearly(tmp_path):
    with Store(str(tmp_path / "root")) as store:
        store.create_dataset("l")
        with store.writer("l"):
            with pytest.raises(DatasetLocked, match=r"'l' is being written by another writer \(pid \d+"):
                store.writer("l", wait=0.3)
        with store.writer("l", wait=0.3) as w:  # released: free again
            w.write_json_lines([b'{"a":1}'])
        assert store.to_table("l").num_rows == 1


def test_leftover_container_of_a_crash_is_removed(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as store:
        store.write_records("x", [rows(0, 5)])
        # A container published but never recorded (the process died in between).
        import shutil

        src = store.fs._strip_protocol(store.dataranges("x")[0].url)
        orphan = store.layout.datarange("x", 5, 9)
        shutil.copy(src, orphan)
        store.write_records("x", [rows(5, 7)])
        assert store.to_table("x").column("id").to_pylist() == list(range(7))
        assert not os.path.exists(orphan) and store.datarange_for("x", 5).last == 6
