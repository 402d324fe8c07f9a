"""Concurrency and lifecycle cases of the store that once lost committed data or broke a README
promise: restore racing writers, a stalled lock holder, moved and copied roots, frozen datasets,
half-applied updates, odd keys on the CLI, name limits in bytes and files packed twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from connector.store import DatasetFrozen, DatasetLocked, InvalidName, RangeError, Store, StoreError
from connector.store import catalog as catalog_module
from tests.support.s3proxy import CountingProxy

DES = [sys.executable, "-m", "connector.cli"]


def rows(lo: int, hi: int, who: str = "") -> pa.Table:
    return pa.table({"id": list(range(lo, hi)), "who": [who] * (hi - lo)})


def ids(store: Store, dataset: str, version: str | None = None) -> list[int]:
    table = store.to_table(dataset, version=version)
    return table.column("id").to_pylist() if table.num_rows else []


def env() -> dict[str, str]:
    """The environment of a subprocess importing this worktree's code."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def des(*args: str, root) -> subprocess.CompletedProcess:
    return subprocess.run([*DES, "datasets", "--root", str(root), *args], capture_output=True, env=env(), timeout=120)


# -- 1. restore racing a writer ------------------------------------------------------------------

WRITE_SESSION = """
import sys
from connector.store import Store
root, catalog, endpoint, first, count = sys.argv[1:6]
options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint,
           "region_name": "us-east-1"}} if root.startswith("s3://") else None
with Store(root, catalog if catalog != "-" else None, storage_options=options, max_datapoints=1000) as s:
    with s.writer("d", wait=0) as w:
        w.write_json_lines([b'{"id":%d}' % i for i in range(int(first), int(first) + int(count))])
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_restore_sees_a_writer_session_that_committed_while_it_read_storage(s3_endpoint, s3_bucket, tmp_path,
                                                                           backend, request):
    """The writer takes the lock, commits and releases it after restore listed the containers and
    before its transaction (paused inside restore's LIST of the versions folder, deterministically).
    Restore used to drop that commit from the catalog, and the next writer then deleted it."""
    root = f"s3://{s3_bucket}/store"
    catalog = str(tmp_path / "cat.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    options = s3_endpoint.storage_options()
    with Store(root, catalog, storage_options=options, max_datapoints=1000) as s:
        s.write_records("d", [rows(0, 10)])
    sessions = []

    def writer_session(request):
        if not sessions and "prefix=store%2Fd%2Fversions" in request.path:
            sessions.append(subprocess.run([sys.executable, "-c", WRITE_SESSION, root, catalog,
                                            s3_endpoint.endpoint_url, "10", "10"],
                                           capture_output=True, env=env(), timeout=120))
        return None

    with CountingProxy(s3_endpoint.endpoint_url, fault=writer_session) as proxy:
        with Store(root, catalog, storage_options=proxy.storage_options(s3_endpoint), max_datapoints=1000) as s:
            s.restore()
    assert sessions and sessions[0].returncode == 0, sessions[0].stderr.decode()
    with Store(root, catalog, storage_options=options, max_datapoints=1000) as s:
        assert s.get_dataset("d").next_key == 20
        s.write_records("d", [rows(20, 25)])  # the next writer must not take [10, 19] for a leftover
        assert ids(s, "d") == list(range(25)) and s.verify("d") == []


RACING_WRITER = """
import sys, time
from connector.store import DatasetLocked, Store
root, sessions = sys.argv[1], int(sys.argv[2])
key = 0
with Store(root, max_datapoints=1000) as s:
    while key < sessions * 3:
        try:
            with s.writer("d", wait=30) as w:
                w.write_json_lines([b'{"id":%d}' % i for i in range(key, key + 3)])
        except DatasetLocked:  # a restore rebuilt the catalog: try again
            continue
        key = s.get_dataset("d").next_key
        print(key, flush=True)
        time.sleep(0.01)
"""


def test_restores_racing_a_writer_process_lose_no_committed_record(tmp_path):
    root = tmp_path / "root"
    with Store(str(root)) as s:
        s.create_dataset("d")
    writer = subprocess.Popen([sys.executable, "-c", RACING_WRITER, str(root), "40"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env())
    refused = done = 0
    with Store(str(root)) as s:
        while writer.poll() is None:
            try:
                s.restore()
                done += 1
            except DatasetLocked:
                refused += 1
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    committed = int(out.split()[-1])
    assert committed == 120 and done + refused > 0
    with Store(str(root)) as s:
        assert ids(s, "d") == list(range(120)) and s.verify("d") == []


# -- 2. a writer that outlived its lock ------------------------------------------------------------

STALLED_WRITER = """
import sys
from connector.store import Store
with Store(sys.argv[1], max_datapoints=1000) as s:
    w = s.writer("d")
    w.write_json_lines([b'{"id":%d,"who":"A"}' % i for i in range(10, 20)], checkpoint={"by": "A"})
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        w.commit()
        print("committed", flush=True)
    except Exception as exc:
        print("refused", type(exc).__name__, flush=True)
        w.abort()
"""


def test_a_writer_stopped_past_its_lease_never_touches_the_new_holders_data(tmp_path, monkeypatch):
    """A holder is SIGSTOPped past the lease and taken over; the new holder commits the same keys;
    the old one resumes and commits. It used to publish over the new container (same object key)
    and, failing its lock check, delete it."""
    root = tmp_path / "root"
    with Store(str(root), max_datapoints=1000) as s:
        s.write_records("d", [rows(0, 10, "first")])
    stalled = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, str(root)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        assert stalled.stdout.readline() == b"ready\n", stalled.stderr.read().decode()
        os.kill(stalled.pid, signal.SIGSTOP)  # its heartbeat thread stops too
        monkeypatch.setattr(catalog_module, "LOCK_LEASE_SECONDS", 0.5)
        time.sleep(0.6)
        with Store(str(root), max_datapoints=1000) as s:
            with s.writer("d", wait=5) as w:  # takes the stale lock over
                w.write_json_lines([b'{"id":%d,"who":"B"}' % i for i in range(10, 20)], checkpoint={"by": "B"})
        os.kill(stalled.pid, signal.SIGCONT)
        out, err = stalled.communicate(b"\n", timeout=60)
    finally:
        if stalled.poll() is None:
            os.kill(stalled.pid, signal.SIGCONT)
            stalled.kill()
    assert out.split()[-2:] == [b"refused", b"DatasetLocked"], (out, err)
    with Store(str(root), max_datapoints=1000) as s:
        table = s.to_table("d")
        assert table.column("id").to_pylist() == list(range(20))
        assert table.column("who").to_pylist() == ["first"] * 10 + ["B"] * 10
        assert s.checkpoint("d") == {"by": "B"} and s.verify("d") == []
        s.restore()  # storage says the same
        assert s.to_table("d").column("who").to_pylist()[10:] == ["B"] * 10 and s.checkpoint("d") == {"by": "B"}


def test_restore_prefers_the_newest_session_of_two_containers_of_one_range(tmp_path):
    """A stale holder killed right after publishing leaves a container of the same range as the
    committed one (with an older session tag); restore keeps the newer session's."""
    with Store(str(tmp_path / "root"), max_datapoints=10) as s:
        s.write_records("stale", [rows(0, 10, "old")])
        s.write_records("d", [rows(0, 10, "new")])
        stale = s.fs._strip_protocol(s.dataranges("stale")[0].url)
        shutil.copy(stale, os.path.join(s.layout.ranges_dir("d"), os.path.basename(stale)))
        s.restore()
        assert s.to_table("d").column("who").to_pylist() == ["new"] * 10
        assert len(s.gc("d")) == 1 and s.verify("d") == []


# -- 3. moved and copied roots --------------------------------------------------------------------


def _root_with_history(root) -> None:
    with Store(str(root), max_datapoints=5) as s:
        s.write_records("d", [rows(0, 10)])
        s.create_version("d", "1.0.0")
        s.aggregate("d", 0, 9)  # 1.0.0 keeps the two inputs
        s.write_records("d", [rows(10, 12)])


def _objects(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs if f.endswith(".des")}


@pytest.mark.parametrize("rebuild", [False, True], ids=["catalog-copied", "restored"])
def test_a_copied_root_is_independent_of_the_original(tmp_path, rebuild):
    a, b = tmp_path / "A", tmp_path / "B"
    _root_with_history(a)
    shutil.copytree(a, b)
    before = _objects(a)
    with Store(str(b), max_datapoints=5) as s:
        if rebuild:
            s.restore()
        urls = [d.url for d in s.dataranges("d")] + [d.url for d in s.get_version("d", "1.0.0").dataranges]
        assert all(u.startswith((str(b) + "/", f"file://{b}/")) for u in urls), urls
        s.delete_version("d", "1.0.0")  # deletes B's copies of the inputs, never A's
        s.truncate("d")
    assert _objects(a) == before
    with Store(str(a), max_datapoints=5) as s:
        assert ids(s, "d", "1.0.0") == list(range(10)) and ids(s, "d") == list(range(12))
        assert s.verify("d") == []


def test_a_moved_root_keeps_every_version_readable(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    _root_with_history(a)
    os.rename(a, b)
    with Store(str(b), max_datapoints=5) as s:
        assert ids(s, "d", "1.0.0") == list(range(10)) and ids(s, "d") == list(range(12))
        assert s.verify("d") == []
        s.restore()
        assert ids(s, "d", "1.0.0") == list(range(10)) and s.verify("d") == []


def test_catalogs_and_manifests_with_absolute_paths_still_open(tmp_path):
    """What older versions wrote: absolute paths in catalog rows, absolute URLs in manifests."""
    root = tmp_path / "old"
    _root_with_history(root)
    with Store(str(root)) as s:
        with s.catalog.transaction() as db:
            db.execute("UPDATE dataranges SET path = '/elsewhere/old/' || path")
            for r in db.execute("SELECT version, manifest FROM versions").fetchall():
                doc = json.loads(r["manifest"])
                for d in doc["dataranges"]:
                    d["url"] = "file:///elsewhere/old/" + d.pop("path")
                db.execute("UPDATE versions SET manifest = ? WHERE version = ?", (json.dumps(doc), r["version"]))
        assert ids(s, "d", "1.0.0") == list(range(10)) and ids(s, "d") == list(range(12))
        assert s.verify("d") == [] and all(d.url.startswith(f"file://{root}/") or d.url.startswith(f"{root}/")
                                           for d in s.dataranges("d"))


# -- 4. frozen means frozen -------------------------------------------------------------------------


def test_frozen_dataset_refuses_rotate_truncate_and_overwrite_before_any_change(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=5) as s:
        s.write_records("f", [rows(0, 12)])
        s.create_version("f", "1.0.0")
        s.freeze("f")
        before, objects = s.dump_catalog(), _objects(tmp_path / "root")
        for attempt in (lambda: s.rotate("f"), lambda: s.truncate("f"), lambda: s.begin_overwrite("f"),
                        lambda: s.rotate("f", "2.0.0")):
            with pytest.raises(DatasetFrozen, match="'f' is frozen"):
                attempt()
        assert s.dump_catalog() == before and _objects(tmp_path / "root") == objects
        assert ids(s, "f") == list(range(12))


def test_destination_overwrite_of_a_frozen_dataset_changes_nothing(tmp_path):
    with Store(str(tmp_path / "store"), max_datapoints=5) as s:
        s.write_records("rows", [rows(0, 12)])
        s.freeze("rows")
        before = s.dump_catalog()
    (tmp_path / "dest.json").write_text(json.dumps({"root_url": str(tmp_path / "store")}))
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": {"name": "rows", "json_schema": {}}, "sync_mode": "full_refresh",
        "destination_sync_mode": "overwrite"}]}))
    record = json.dumps({"type": "RECORD", "record": {"stream": "rows", "emitted_at": 1, "data": {"id": 99}}})
    out = subprocess.run([sys.executable, "-m", "connector.airbyte.destination_main", "write", "--config",
                          str(tmp_path / "dest.json"), "--catalog", str(tmp_path / "catalog.json")],
                         input=record.encode() + b"\n", capture_output=True, env=env(), timeout=120)
    assert out.returncode != 0 and b"frozen" in out.stdout + out.stderr
    with Store(str(tmp_path / "store"), max_datapoints=5) as s:
        assert s.dump_catalog() == before and ids(s, "rows") == list(range(12))


# -- 9. half-applied updates ------------------------------------------------------------------------


def test_update_with_a_big_integer_is_applied_and_logged_exactly(tmp_path):
    root = tmp_path / "root"
    assert des("create", "users", root=root).returncode == 0
    out = des("update", "users", "--metadata", '{"n": 18446744073709551616}', root=root)
    assert out.returncode == 0, out.stderr.decode()
    got = des("--json", "get", "users", root=root)
    assert b'"n": 18446744073709551616' in got.stdout
    log = des("--json", "log", "users", root=root).stdout.decode().splitlines()
    assert json.loads(log[-1])["op"] == "update" and json.loads(log[-1])["metadata"] == {"n": 18446744073709551616}
    with open(root / "users" / "dataset.json") as f:
        assert json.load(f)["metadata"] == {"n": 18446744073709551616}


def test_an_operation_whose_log_entry_cannot_be_written_changes_nothing(tmp_path):
    root = tmp_path / "root"
    with Store(str(root), max_datapoints=5) as s:
        s.create_dataset("u", description="before")
        s.write_records("u", [rows(0, 10)])
        s.create_version("u", "1.0.0")
        s.freeze("u")
        log_dir = s.layout.log_dir("u")
        shutil.rmtree(log_dir)
        with open(log_dir, "w") as f:  # the log folder is a file now: no entry can be written
            f.write("in the way")
        catalog_before = s.dump_catalog()
        files_before = {os.path.join(d, f): open(os.path.join(d, f), "rb").read()
                        for d, _, fs in os.walk(root / "u") for f in fs}
        for change in (lambda: s.update_dataset("u", description="after"), lambda: s.unfreeze("u")):
            with pytest.raises(OSError):
                change()
        with s.catalog.transaction() as db:  # unfrozen by hand (no log) to reach the operations below
            db.execute("UPDATE datasets SET frozen = 0 WHERE name = 'u'")
        catalog_before["u"]["meta"]["frozen"] = False
        for change in (lambda: s.create_version("u", "2.0.0"), lambda: s.rotate("u"), lambda: s.truncate("u"),
                       lambda: s.aggregate("u", 0, 9), lambda: s.delete_version("u", "1.0.0")):
            with pytest.raises(OSError):
                change()
        assert s.dump_catalog() == catalog_before
        assert {os.path.join(d, f): open(os.path.join(d, f), "rb").read()
                for d, _, fs in os.walk(root / "u") for f in fs} == files_before
        with pytest.raises(StoreError, match="JSON"):
            s.update_dataset("u", metadata={"x": float("nan")})


# -- 8. odd keys on the CLI -------------------------------------------------------------------------


def test_keys_follow_one_rule_on_every_command(tmp_path):
    root = tmp_path / "root"
    with Store(str(root), max_datapoints=5) as s:
        s.write_records("users", [rows(0, 10)])
    for args in (["read", "users", "99999999999999999999999"], ["read", "users", "-1"], ["cat", "users", "-5", "2"],
                 ["aggregate", "users", "0", "-1"], ["read", "users", "1.5"]):
        out = des(*args, root=root)
        assert out.returncode == 2 and b"is not a key" in out.stderr, (args, out.stderr)
        assert b"Traceback" not in out.stderr and out.stdout == b""
    for args, missing in ((["read", "users", "10"], b"no datapoint 10"), (["cat", "users", "8", "12"], b"[10, 12]"),
                          (["cat", "users", "10"], b"no datapoint 10"),
                          (["read", "users", str(2**63 - 1)], b"no datapoint 9223372036854775807")):
        out = des(*args, root=root)
        assert out.returncode == 1 and missing in out.stderr and out.stdout == b"", (args, out.stderr)
    assert des("cat", "users", "8", "9", root=root).stdout.splitlines() == [b'{"id":8,"who":""}', b'{"id":9,"who":""}']
    assert len(des("cat", "users", root=root).stdout.splitlines()) == 10
    with Store(str(root)) as s:
        for bad in (-1, 2**63, True, "3"):
            with pytest.raises(RangeError, match="not a datapoint key"):
                s.read("users", bad)
        with pytest.raises(RangeError, match=r"has no datapoint \[10, 20\] \(its last key is 9\)"):
            s.read_range("users", 5, 20)


# -- 6. name limits in bytes ------------------------------------------------------------------------


def test_names_are_limited_in_bytes_before_anything_is_created(tmp_path):
    root = tmp_path / "root"
    with Store(str(root)) as s:
        long_name = "é" * 120  # 240 bytes: fits in a file name
        s.write_records(long_name, [rows(0, 3)])
        assert ids(s, long_name) == [0, 1, 2]
        with pytest.raises(InvalidName, match="256 bytes"):
            s.create_dataset("é" * 128)
    out = des("create", "日" * 90, root=root)  # 270 bytes
    assert out.returncode == 1 and b"270 bytes" in out.stderr and b"Traceback" not in out.stderr
    with Store(str(root)) as s:
        assert [d.name for d in s.list_datasets()] == [long_name]
    assert [n for n in os.listdir(root) if not n.startswith(".")] == [long_name]


def test_a_create_that_fails_half_way_leaves_nothing(tmp_path):
    root = tmp_path / "root"
    with Store(str(root)) as s:
        os.makedirs(root / "half")
        with open(root / "half" / "log", "w") as f:  # the log entry cannot be written
            f.write("in the way")
        with pytest.raises(OSError):
            s.create_dataset("half")
        assert not s.catalog.has_dataset("half") and not os.path.exists(root / "half" / "dataset.json")


# -- 5. a changed file packed twice -----------------------------------------------------------------


def test_a_file_packed_twice_is_a_new_datapoint_and_aggregates(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=100) as s:
        s.create_dataset("f")
        with s.writer("f", "files") as w:  # one writer, no cut between the two: same as below
            w.write_file("a.csv", b"v1")
            w.write_file("b.csv", b"b")
            w.write_file("a.csv", b"v2")
        with s.writer("f", "files") as w:  # a later sync packs it again
            w.write_file("a.csv", b"v3")
        assert [s.read("f", k) for k in range(4)] == [b"v1", b"b", b"v2", b"v3"]
        assert [(d.first, d.last) for d in s.dataranges("f")] == [(0, 1), (2, 2), (3, 3)]
        merged = s.aggregate("f", 0, 3)
        assert [s.read("f", k) for k in range(4)] == [b"v1", b"b", b"v2", b"v3"]
        reader = s.storage.reader(merged)
        # By name the newest wins; older datapoints keep their bytes under <name>@<key>.
        assert reader.names() == [f"a.csv@{0:020d}", "b.csv", f"a.csv@{2:020d}", "a.csv"]
        assert reader.read("a.csv") == b"v3" and reader.meta(f"a.csv@{0:020d}")["name"] == "a.csv"
        assert s.verify("f") == []
        s.restore()
        assert [s.read("f", k) for k in range(4)] == [b"v1", b"b", b"v2", b"v3"]


def test_an_aggregate_that_cannot_merge_names_the_dataset_and_range(tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=100) as s:
        s.create_dataset("f")
        with s.writer("f", "files") as w:
            w.write_file("a.csv", b"v1")
            w.write_file(f"a.csv@{2:020d}", b"a real object of that name")
            w.write_file("a.csv", b"v2")  # key 2: superseded by key 3, it would take key 1's name
            w.write_file("a.csv", b"v3")
        with pytest.raises(StoreError, match=r"dataset 'f': cannot aggregate \[0, 3\]: .*duplicate member name"):
            s.aggregate("f", 0, 3)
        assert [s.read("f", k) for k in range(4)] == [b"v1", b"a real object of that name", b"v2", b"v3"]
        assert len(s.dataranges("f")) == 3 and s.verify("f") == []


def test_maintenance_never_deletes_objects_of_a_later_session(tmp_path):
    """gc and a writer's leftover clean-up judge only objects of sessions before theirs: a session
    that stalled past its lease must not delete what the holder after it published."""
    with Store(str(tmp_path / "root"), max_datapoints=10) as s:
        s.write_records("d", [rows(0, 10)])
        src = s.fs._strip_protocol(s.dataranges("d")[0].url)
        later = s.layout.datarange("d", 10, 19, 0, "f" * 16)  # a later session's, not recorded (yet)
        shutil.copy(src, later)
        assert s.gc("d") == [] and os.path.exists(later)
        earlier = s.layout.datarange("d", 10, 19, 0, "0" * 16)
        shutil.copy(src, earlier)
        assert s.gc("d") == [earlier] and os.path.exists(later)


def test_des_sync_files_mode_repacking_a_changed_file_then_aggregate(tmp_path):
    """The issue's path: ``des sync --mode files`` packs a.csv, a.csv changes, the next sync packs
    it again under the same member name; ``des datasets aggregate`` over both used to fail."""
    src, root = tmp_path / "data", tmp_path / "store"
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(src)}))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(root)}))
    argv = [*DES, "sync", "--config", str(tmp_path / "src.json"), "--destination", str(tmp_path / "dst.json"),
            "--state", str(tmp_path / "state.json"), "--mode", "files", "--no-progress"]
    os.makedirs(src / "docs")
    for n, body in enumerate((b"id\n1\n", b"id\n1\n2\n")):
        (src / "docs" / "a.csv").write_bytes(body)
        os.utime(src / "docs" / "a.csv", (1_700_000_000 + n * 100,) * 2)
        out = subprocess.run(argv, capture_output=True, env=env(), timeout=120)
        assert out.returncode == 0, out.stderr.decode()
    assert des("aggregate", "docs", "0", "1", root=root).returncode == 0
    assert [des("read", "docs", str(k), root=root).stdout for k in (0, 1)] == [b"id\n1\n", b"id\n1\n2\n"]
    with Store(str(root)) as s:
        merged = s.dataranges("docs")
        reader = s.storage.reader(merged[0])
        assert len(merged) == 1 and reader.names() == [f"docs/a.csv@{0:020d}", "docs/a.csv"]
        assert reader.read("docs/a.csv") == b"id\n1\n2\n"


def test_a_killed_writers_unfinished_atomic_write_is_removed_by_the_next_writer(tmp_path):
    """SIGKILL between writing a checkpoint's temporary and renaming it leaves the temporary; the
    next writer of the dataset (under the lock, so no live process owns it) removes it."""
    from connector.files import temp_name

    with Store(str(tmp_path / "store")) as store:
        store.write_records("d", [pa.table({"id": [1, 2, 3]})])
        folder = store.layout.ranges_dir("d")
        leftover = temp_name(f"{folder}/checkpoint-{3:020d}.{'0' * 16}.json")
        with open(leftover, "wb") as f:
            f.write(b'{"half": ')
        unrelated = f"{folder}/.notes.partial"  # not a name temp_name makes: left alone
        with open(unrelated, "wb") as f:
            f.write(b"x")
        store.write_records("d", [pa.table({"id": [4]})])
        assert not os.path.exists(leftover) and os.path.exists(unrelated)
        assert store.to_table("d").column("id").to_pylist() == [1, 2, 3, 4]
