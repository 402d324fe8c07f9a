"""Key spaces (rotate, truncate, overwrite), checkpoints through restore, locks across processes,
frozen writers, background commits, the catalog schema, the operation log and cascade delete."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from connector.store import (DatasetFrozen, DatasetLocked, DatasetNotFound, RangeError, Store, StoreError,
                             VersionError)
from connector.store.catalog import SCHEMA_VERSION
from tests.store.names import untagged


def rows(lo: int, hi: int) -> pa.Table:
    return pa.table({"id": list(range(lo, hi))})


def ids(store: Store, dataset: str, version: str | None = None) -> list[int]:
    return store.to_table(dataset, version=version).column("id").to_pylist()


def spools(store: Store, dataset: str) -> list[str]:
    """This process's spool files of ``dataset`` (containers being built or waiting to publish)."""
    return [n for n in os.listdir(store.storage.spool_dir(dataset)) if n.lstrip(".").startswith(store.storage.spool_prefix(dataset))]


def reopen_without_catalog(store: Store) -> Store:
    """A fresh Store on the same root after the SQLite file is deleted (rebuilt from storage)."""
    store.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(store.catalog_path + suffix):
            os.unlink(store.catalog_path + suffix)
    return Store(store.storage.url(store.root), store.catalog_path, storage_options=store.fs.storage_options,
                 max_datapoints=store.max_datapoints)


def test_rotate_after_aggregate_keeps_every_version_readable_and_restorable(store):
    store.write_records("k", [rows(0, 20)])
    store.create_version("k", "1.0.0")
    store.aggregate("k", 0, 19)  # 1.0.0 still references the two inputs, same folder
    v2 = store.rotate("k")  # default: next major
    assert v2.version == "2.0.0" and store.get_dataset("k").epoch == 1
    store.write_records("k", [rows(100, 125)])  # keys 0.. again, in a new key space
    assert ids(store, "k") == list(range(100, 125))
    assert ids(store, "k", "1.0.0") == list(range(20)) == ids(store, "k", "2.0.0")
    assert store.verify("k") == []
    url = store.dataranges("k")[0].url
    assert "/dataranges/epoch-1/" in url and untagged(url) == "00000000000000000000-00000000000000000009.des"
    before = store.dump_catalog()
    again = reopen_without_catalog(store)
    try:
        assert again.dump_catalog() == before
        assert ids(again, "k", "1.0.0") == list(range(20))
    finally:
        again.close()


def test_overwrite_keeps_old_data_until_finished_and_drops_a_failed_run(store):
    store.write_records("o", [rows(0, 15)])
    kept = store.begin_overwrite("o")
    assert kept.startswith("0.0.0-overwrite.") and store.dataranges("o") == []
    store.write_records("o", [rows(500, 512)])  # a run that then fails: no finish_overwrite
    assert store.begin_overwrite("o") == kept  # the re-run drops the partial data, keeps the old
    assert store.dataranges("o") == [] and ids(store, "o", kept) == list(range(15))
    store.write_records("o", [rows(700, 703)])
    old_paths = [store.fs._strip_protocol(d.url) for d in store.get_version("o", kept).dataranges]
    assert store.finish_overwrite("o") == [kept]
    assert store.list_versions("o") == [] and ids(store, "o") == [700, 701, 702]
    assert not any(store.fs.exists(p) for p in old_paths)
    assert store.begin_overwrite("empty-one") is None if store.ensure_dataset("empty-one") else True


def test_checkpoint_is_stored_beside_the_data_and_survives_a_lost_catalog(store):
    store.create_dataset("c")
    with store.writer("c") as w:
        w.write_json_lines([b'{"a":%d}' % i for i in range(12)], checkpoint={"offset": 12})
        w.write_json_lines([b'{"a":12}'], checkpoint={"offset": 13})
    with store.writer("c") as w:  # a commit without a checkpoint carries the one in effect
        w.write_json_lines([b'{"a":13}'])
    assert store.checkpoint("c") == {"offset": 13}
    names = [untagged(p) for p in store.storage.list_range_objects("c", checkpoints=True)]
    files = [n for n in names if n.startswith("checkpoint-")]
    assert files == [f"checkpoint-{14:020d}.json"]  # superseded ones are removed
    store.set_checkpoint("c", {"offset": 13, "note": "set by hand"})
    again = reopen_without_catalog(store)
    try:
        assert again.checkpoint("c") == {"offset": 13, "note": "set by hand"}
        assert again.get_dataset("c").next_key == 14
    finally:
        again.close()


def test_write_to_frozen_dataset_fails_and_writes_nothing(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as store:
        store.write_records("f", [rows(0, 5)])
        with store.writer("f") as w:
            w.write_batch(rows(5, 7))
            store.freeze("f")  # while the writer is open: its commit must fail
            with pytest.raises(DatasetFrozen, match="'f' is frozen"):
                w.commit()
            w.abort()
        assert [(d.first, d.last) for d in store.dataranges("f")] == [(0, 4)]
        assert [untagged(p) for p in store.storage.list_range_objects("f")] == [
            "00000000000000000000-00000000000000000004.des"]
        with pytest.raises(DatasetFrozen):
            store.writer("f")
        with pytest.raises(StoreError, match="raw newline"):
            store.unfreeze("f") and None
            with store.writer("f") as w:
                w.write_json_lines([b'{"a":1}', b'{"b":\n2}'])
        assert store.get_dataset("f").next_key == 5


def test_containers_cut_at_the_limit_commit_in_the_background_in_key_order(store):
    store.create_dataset("p")
    seen = []

    def on_commit(d):
        # Called once the catalog holds the datarange, from the commit thread for cut containers.
        seen.append((d.first, d.last, store.get_dataset("p").next_key,
                     threading.current_thread() is threading.main_thread()))

    with store.writer("p", on_commit=on_commit) as w:
        w.write_batch(rows(0, 35))  # three containers cut at 10 datapoints, five rows left open
        assert (w.next_key, w.pending) == (30, 5)
        w.write_json_lines([b'{"id":35}'], checkpoint={"n": 36})
    assert [s[:3] for s in seen] == [(0, 9, 10), (10, 19, 20), (20, 29, 30), (30, 35, 36)]
    assert [s[3] for s in seen] == [False, False, False, True]  # the last one, by close, in the caller's
    assert ids(store, "p") == list(range(36)) and store.checkpoint("p") == {"n": 36}
    assert [f"{d.first}-{d.last}" for d in store.dataranges("p")] == ["0-9", "10-19", "20-29", "30-35"]
    assert not spools(store, "p")


def test_a_failed_background_commit_stops_the_writer_and_leaves_no_trace(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as store:
        store.write_records("f", [rows(0, 5)])
        w = store.writer("f")
        store.freeze("f")  # the commit thread's transaction will find the dataset frozen
        w.write_batch(rows(5, 12))  # 5..9 cut and handed to the commit thread; 10, 11 stay open
        with pytest.raises(DatasetFrozen, match="'f' is frozen"):
            w.commit()
        with pytest.raises(StoreError, match="an earlier commit failed .*'f' is frozen"):
            w.write_batch(rows(12, 13))
        w.abort()
        assert [(d.first, d.last) for d in store.dataranges("f")] == [(0, 4)]
        assert [untagged(p) for p in store.storage.list_range_objects("f", checkpoints=True)] == [
            "00000000000000000000-00000000000000000004.des"]
        assert store.get_dataset("f").next_key == 5 and not spools(store, "f")
        store.unfreeze("f")
        store.write_records("f", [rows(5, 8)])  # a new writer carries on at the committed key
        assert ids(store, "f") == list(range(8))


def _open_catalog(path: str, barrier, failures) -> None:
    from connector.store.catalog import Catalog

    barrier.wait()
    try:
        Catalog(path).close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        failures.put(str(exc))


def test_two_processes_creating_the_catalog_at_once_both_open_it(tmp_path):
    # Switching a new SQLite file to WAL from two processes at once can return "database is
    # locked" without waiting; before the catalog waited it out, 8 of 10 such races failed.
    ctx = multiprocessing.get_context("spawn")
    failures = ctx.Queue()
    for i in range(6):
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_open_catalog, args=(str(tmp_path / f"c{i}.sqlite"), barrier, failures))
                 for _ in range(2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
    assert failures.empty(), failures.get()


def test_log_is_json_lines_and_compaction_loses_and_duplicates_nothing(tmp_path):
    with Store(str(tmp_path / "root")) as store:
        store.create_dataset("l")
        for i in range(5):
            store.update_dataset("l", metadata={"n": i})
        before = store.log_entries("l")
        assert [e["op"] for e in before] == ["create"] + ["update"] * 5
        folder = store.layout.log_dir("l")
        segments = sorted(os.listdir(folder))
        assert all(s.endswith(".jsonl") for s in segments)
        # A compaction whose process died before deleting its inputs: entries still appear once.
        merged = b"".join(open(os.path.join(folder, s), "rb").read() for s in segments)
        open(os.path.join(folder, "zzzz-compacted.jsonl"), "wb").write(merged)
        assert store.log_entries("l") == before
        assert store.oplog.compact("l") == len(segments) + 1
        assert len(os.listdir(folder)) == 1 and store.log_entries("l") == before


def test_catalog_schema_migration_newer_schema_and_garbage_file(tmp_path):
    root, cat = str(tmp_path / "root"), str(tmp_path / "c.sqlite")
    with Store(root, cat) as store:
        store.write_records("m", [rows(0, 3)])
    db = sqlite3.connect(cat)  # make it a version 1 catalog, as an older des-connector wrote it
    db.execute("ALTER TABLE datasets DROP COLUMN epoch")
    db.execute("ALTER TABLE dataranges DROP COLUMN data_length")
    db.execute("UPDATE schema_version SET version = 1")
    db.commit()
    db.close()
    with Store(root, cat) as store:
        assert ids(store, "m") == [0, 1, 2] and store.get_dataset("m").epoch == 0
        assert store.catalog.query("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
    db = sqlite3.connect(cat)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(root, cat)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(root, str(tmp_path / "junk.sqlite"))


HOLD_LOCK = """
import sys, time
from connector.store import Store
s = Store(sys.argv[1])
w = s.writer("x")
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_of_a_killed_process_is_taken_over_and_a_live_one_is_named(tmp_path):
    root = str(tmp_path / "root")
    with Store(root) as store:
        store.create_dataset("x")
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, root], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with Store(root) as store:
            start = time.monotonic()
            with pytest.raises(DatasetLocked, match=rf"pid {proc.pid} on "):
                store.writer("x", wait=0.5)
            assert time.monotonic() - start >= 0.5
            with pytest.raises(DatasetLocked, match="being written"):
                store.aggregate("x", 0, 0, wait=0.1)
            with pytest.raises(DatasetLocked, match="cannot restore"):
                store.restore()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with store.writer("x", wait=5) as w:  # the dead holder's lock is taken over
                w.write_json_lines([b'{"id":1}'])
            assert ids(store, "x") == [1]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_cascade_delete_finishes_a_half_done_delete(store):
    store.write_records("d", [rows(0, 25)])
    store.create_version("d", "1.0.0")
    # A delete that died part-way: some objects gone, catalog rows still there.
    store.fs.rm_file(store.layout.dataset_json("d"))
    store.fs.rm_file(store.fs._strip_protocol(store.dataranges("d")[0].url))
    store.delete_dataset("d")
    assert not store.fs.exists(store.layout.dataset_dir("d"))
    assert [d.name for d in store.list_datasets()] == []
    # Known only to storage (the rows went first, e.g. a catalog rebuilt elsewhere): still deletable.
    store.write_records("e", [rows(0, 3)])
    with store.catalog.transaction() as db:
        db.execute("DELETE FROM datasets WHERE name = 'e'")
    store.delete_dataset("e")
    assert not store.fs.exists(store.layout.dataset_dir("e"))


def test_unknown_datasets_and_bad_arguments_have_clear_errors(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as store:
        for call in (lambda: store.read("ghost", 0), lambda: store.dataranges("ghost"),
                     lambda: store.aggregate("ghost", 0, 1), lambda: store.list_versions("ghost"),
                     lambda: store.writer("ghost"), lambda: store.rotate("ghost"), lambda: store.stats("ghost")):
            with pytest.raises(DatasetNotFound, match="'ghost' not found"):
                call()
        store.write_records("b", [rows(0, 12)])
        with pytest.raises(RangeError, match="first > last"):
            store.aggregate("b", 5, 1)
        with pytest.raises(RangeError, match="first > last"):
            list(store.read_lines("b", 5, 1))
        with pytest.raises(VersionError, match="has no versions"):
            store.get_version("b")
        store.create_version("b", "1.0.0")
        with pytest.raises(RangeError, match="no chunk with index 7 \\(it has 3\\)"):
            store.chunk("b", "1.0.0", index=7)
        with pytest.raises(VersionError, match="no version 2.0.0 \\(versions: 1.0.0\\)"):
            store.read("b", 0, version="2.0.0")
        assert b"".join(store.read_lines("b", 3, 6, version="1.0.0")).count(b"\n") == 4
        # verify notices a container only a version still references going missing.
        store.aggregate("b", 0, 9)
        kept = [d for d in store.get_version("b", "1.0.0").dataranges if d.first == 5][0]
        store.fs.rm_file(store.fs._strip_protocol(kept.url))
        [bad] = store.verify("b")
        assert bad["used_by"] == "version 1.0.0" and bad["problem"] == "object missing"


def test_cli_versions_cat_and_errors_in_subprocesses(tmp_path):
    root = str(tmp_path / "root")
    with Store(root, max_datapoints=4) as store:
        store.write_records("c", [rows(0, 10)])

    def des(*args):
        return subprocess.run([sys.executable, "-m", "connector.cli", "datasets", "--root", root, *args],
                              capture_output=True, text=True, timeout=60)

    out = des("--json", "list")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["datapoints"] == 10
    assert des("read", "c", "1").stdout == '{"id":1}\n'
    out = des("cat", "c", "2", "5")
    assert out.returncode == 0 and [json.loads(x)["id"] for x in out.stdout.splitlines()] == [2, 3, 4, 5]
    assert des("versions", "create", "c", "1.0.0", "-m", "snap").returncode == 0
    got = json.loads(des("--json", "versions", "get", "c", "latest").stdout)
    assert got["version"] == "1.0.0" and len(got["dataranges"]) == 3
    out = des("aggregate", "c", "0", "5")
    assert out.returncode == 1 and "cuts datarange [4, 7]" in out.stderr and "Traceback" not in out.stderr
    out = des("stats", "../etc")
    assert out.returncode == 1 and "path separator" in out.stderr


WRITE_FOREVER = """
import sys
from connector.store import Store
store = Store(sys.argv[1], max_datapoints=30)
store.ensure_dataset("k")
n = 0
with store.writer("k") as w:
    while True:
        batch = [b'{"id":%d}' % i for i in range(n, n + 7)]
        n += 7
        w.write_json_lines(batch, checkpoint={"records": n})
        if w.committed:
            print(len(w.committed), flush=True)
"""


@pytest.mark.parametrize("commits", [3, 9])
def test_sigkill_mid_write_leaves_committed_data_checkpoint_and_storage_consistent(tmp_path, commits):
    root = str(tmp_path / "root")
    proc = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, root], stdout=subprocess.PIPE, text=True)
    try:
        while int(proc.stdout.readline() or commits) < commits:
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with Store(root, max_datapoints=30) as store:
        got = ids(store, "k")
        assert got == list(range(len(got))) and len(got) >= 30 * (commits - 1)
        # The checkpoint names exactly the records committed (calls are never split).
        assert store.checkpoint("k")["records"] == len(got) == store.get_dataset("k").next_key
        with store.writer("k", wait=5) as w:  # the killed writer's lock is taken over, leftovers go
            w.write_json_lines([b'{"id":%d}' % len(got)], checkpoint={"records": len(got) + 1})
        known = {store.fs._strip_protocol(d.url) for d in store.dataranges("k")}
        assert set(store.storage.list_range_objects("k")) == known
        assert not [f for f in os.listdir(os.path.join(root, ".spool")) if f.startswith(("k.", ".k."))]
        before = store.dump_catalog()
    again = reopen_without_catalog(Store(root, max_datapoints=30))
    try:
        assert again.dump_catalog() == before
    finally:
        again.close()


def test_overlaps_are_refused_by_the_catalog_and_by_restore(tmp_path):
    import shutil

    with Store(str(tmp_path / "root"), max_datapoints=10) as store:
        store.write_records("v", [rows(0, 20)])
        with pytest.raises(RangeError, match=r"datarange \[5, 14\] overlaps \[0, 9\]"):
            with store.catalog.transaction() as db:
                store.catalog.insert_datarange(db, "v", 5, 14, "x.des", 1, "0" * 64, 10, "records")
        assert [(d.first, d.last) for d in store.dataranges("v")] == [(0, 9), (10, 19)]
        with pytest.raises(StoreError, match="metadata must be a JSON object"):
            store.update_dataset("v", metadata=[1, 2])
        # An object that overlaps without covering cannot come from this store: restore names it.
        src = store.fs._strip_protocol(store.dataranges("v")[0].url)
        shutil.copy(src, store.layout.datarange("v", 5, 14))
        with pytest.raises(RangeError, match=r"00000000000000000005-00000000000000000014.des: datarange \[5, 14\] "
                                              r"overlaps \[0, 9\] without being covered"):
            store.restore()
        assert len(store.dataranges("v")) == 2  # the failed restore changed nothing


def test_restore_refuses_a_container_holding_a_name_twice(tmp_path):
    # DesReader reads such containers as the reference does (the last copy wins); a datarange
    # holding one cannot come from this store, and counting its names would be wrong.
    with Store(str(tmp_path / "root"), max_datapoints=10) as store:
        store.write_records("d", [rows(0, 3)])
        path = store.fs._strip_protocol(store.dataranges("d")[0].url)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data.replace(b"00000000000000000002.json", b"00000000000000000001.json"))
        with pytest.raises(StoreError, match="holds a member name twice"):
            store.restore()


def test_gc_deletes_only_objects_nothing_uses(store):
    store.write_records("g", [rows(0, 30)])
    store.create_version("g", "1.0.0")
    store.aggregate("g", 0, 19)  # inputs kept: 1.0.0 references them
    store.delete_version("g", "1.0.0")  # ... and now they are gone with it
    store.rotate("g", "2.0.0")
    store.write_records("g", [rows(0, 5)])
    # Orphans: a merged container whose aggregation died before the catalog knew it (old key
    # space), and a stale checkpoint file.
    merged = store.fs._strip_protocol(store.get_version("g", "2.0.0").dataranges[0].url)
    orphan = store.layout.datarange("g", 0, 29)
    store.fs.copy(merged, orphan)
    stale = store.layout.checkpoint("g", 1, 3)
    store.storage.write_bytes(stale, b"{}")
    before = {d.url for d in store.dataranges("g")}
    assert sorted(store.gc("g")) == sorted([orphan, stale])
    assert {d.url for d in store.dataranges("g")} == before and store.verify("g") == []
    assert ids(store, "g", "2.0.0") == list(range(30)) and ids(store, "g") == list(range(5))
    assert store.gc("g") == []


def test_cli_on_s3_root_with_the_default_catalog_rebuilds_it_from_storage(s3_endpoint, s3_bucket, tmp_path):
    root = f"s3://{s3_bucket}/cli"
    with Store(root, str(tmp_path / "elsewhere.sqlite"), storage_options=s3_endpoint.storage_options(),
               max_datapoints=4) as store:
        store.create_dataset("remote", description="on s3", tags=["t"])
        store.write_records("remote", [rows(0, 10)])
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "connector.cli", "datasets", "--root", root, "--storage-options",
                          json.dumps(s3_endpoint.storage_options()), "--json", "stats", "remote"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert (stats["datapoints"], stats["dataranges"]) == (10, 3)
    [catalog] = list((tmp_path / "cache" / "des-connector" / "catalogs").glob("*.sqlite"))
    with Store(root, str(catalog), storage_options=s3_endpoint.storage_options()) as store:
        assert store.get_dataset("remote").description == "on s3" and ids(store, "remote") == list(range(10))


def test_readers_see_every_datapoint_exactly_once_while_aggregates_run(tmp_path):
    import threading

    with Store(str(tmp_path / "root"), max_datapoints=4) as store:
        store.write_records("a", [rows(0, 96)])
        errors: list[BaseException] = []

        def merge_until_one() -> None:
            try:
                while len(ranges := store.dataranges("a")) > 1:
                    for a, b in list(zip(ranges[::2], ranges[1::2])):
                        store.aggregate("a", a.first, b.last)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        worker = threading.Thread(target=merge_until_one)
        worker.start()
        reads = 0
        while worker.is_alive() or reads == 0:
            assert ids(store, "a") == list(range(96))
            assert store.read("a", 50 + reads % 40) == b'{"id":%d}\n' % (50 + reads % 40)
            reads += 1
        worker.join()
        assert not errors, errors
        assert [(d.first, d.last) for d in store.dataranges("a")] == [(0, 95)] and reads > 1
        assert [untagged(p) for p in store.storage.list_range_objects("a")] == [untagged(store.layout.datarange("a", 0, 95))]
