"""The catalog on a real PostgreSQL server: what the shared store tests do not reach (64-bit keys
and exact times in PostgreSQL's types, migrations, locks of other hosts and of killed processes,
connection errors, the CLI), and several processes sharing only an S3 root and the catalog."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from connector.store import DatasetLocked, Store, StoreError
from connector.store import catalog as catalog_module
from connector.store.api import MAX_KEY
from connector.store.catalog import SCHEMA_VERSION, Catalog
from tests.conftest import free_port

DES = [sys.executable, "-m", "connector.cli"]


def env() -> dict[str, str]:
    """The environment of a subprocess importing this worktree's code."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_location(request: pytest.FixtureRequest, tmp_path) -> str:
    """An SQLite file or a PostgreSQL database URL for a new catalog."""
    if request.param == "sqlite":
        return str(tmp_path / "c.sqlite")
    return request.getfixturevalue("postgres_url")


def test_both_backends_keep_64_bit_keys_and_exact_timestamps(catalog_location):
    """PostgreSQL's INTEGER and REAL are 32 bits: the schema must use BIGINT and DOUBLE PRECISION."""
    catalog = Catalog(catalog_location)
    created = 1796211642.5733013
    with catalog.transaction() as db:
        catalog.insert_dataset(db, "d", created=created, next_key=MAX_KEY)
        catalog.insert_datarange(db, "d", MAX_KEY - 1, MAX_KEY, "r.des", 2**40, "0" * 64, 2, "records", 2**33)
    row = catalog.dataset("d")
    assert (row["created"], row["next_key"]) == (created, MAX_KEY)
    (r,) = catalog.dataranges("d")
    assert (r["first"], r["last"], r["size"], r["data_length"]) == (MAX_KEY - 1, MAX_KEY, 2**40, 2**33)
    catalog.close()


def test_overlapping_datarange_is_refused_and_nothing_is_kept(catalog_location):
    catalog = Catalog(catalog_location)
    with catalog.transaction() as db:
        catalog.insert_dataset(db, "d")
        catalog.insert_datarange(db, "d", 0, 9, "a.des", 1, "0" * 64, 10, "records")
    with pytest.raises(StoreError, match=r"\[5, 12\] overlaps \[0, 9\]"), catalog.transaction() as db:
        catalog.insert_datarange(db, "d", 10, 12, "b.des", 1, "0" * 64, 3, "records")  # fine alone
        catalog.insert_datarange(db, "d", 5, 12, "c.des", 1, "0" * 64, 8, "records")
    assert [(r["first"], r["last"]) for r in catalog.dataranges("d")] == [(0, 9)]  # rolled back as one
    catalog.close()


def test_of_writers_racing_for_a_free_lock_exactly_one_wins(catalog_location):
    """Check-then-take of a lock row is one transaction that runs alone (PostgreSQL's READ
    COMMITTED alone would let two racers both see the row free and both take it)."""
    catalog = Catalog(catalog_location)
    with catalog.transaction() as db:
        catalog.insert_dataset(db, "d")
    threads = 6

    def race(round_: int) -> int:
        start = threading.Barrier(threads)

        def take(n: int) -> bool:
            start.wait()
            try:
                catalog.acquire_lock("d", f"r{round_}-{n}", wait=0)
                return True
            except DatasetLocked:
                return False

        with ThreadPoolExecutor(threads) as pool:
            won = sum(pool.map(take, range(threads)))
        with catalog.transaction() as db:
            db.execute("DELETE FROM locks")
        return won

    assert [race(r) for r in range(15)] == [1] * 15
    catalog.close()


def test_data_version_changes_on_another_connections_commit_only(catalog_location):
    """restore relies on it to see writers that committed while it read storage."""
    one, two = Catalog(catalog_location), Catalog(catalog_location)
    seen = one.data_version()
    assert one.data_version() == seen
    with two.transaction() as db:
        two.insert_dataset(db, "d")
    assert one.data_version() != seen
    one.close()
    two.close()


def test_postgres_schema_migrates_from_version_1_and_refuses_a_newer_one(postgres_url, tmp_path):
    root = str(tmp_path / "root")
    with Store(root, postgres_url) as store:
        store.write_records("m", [[{"id": i} for i in range(3)]])
    with psycopg.connect(postgres_url, autocommit=True) as db:  # as an older des-connector left it
        db.execute("ALTER TABLE datasets DROP COLUMN epoch")
        db.execute("ALTER TABLE dataranges DROP COLUMN data_length")
        db.execute("UPDATE schema_version SET version = 1")
    with Store(root, postgres_url) as store:
        assert store.to_table("m").column("id").to_pylist() == [0, 1, 2] and store.get_dataset("m").epoch == 0
        assert store.catalog.query("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
        store.write_records("m", [[{"id": 3}]])
        assert store.dataranges("m")[-1].data_length is not None
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(root, postgres_url)


def test_lock_of_another_host_is_waited_for_while_fresh_and_taken_over_once_stale(postgres_url, tmp_path):
    """Leases are measured on the server's clock, the one clock every host shares."""
    with Store(str(tmp_path / "root"), postgres_url) as store:
        store.create_dataset("d")
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("INSERT INTO locks VALUES ('d', 'elsewhere', 1, 'another-host', "
                       "extract(epoch FROM now()), extract(epoch FROM now()))")
            with pytest.raises(DatasetLocked, match="pid 1 on another-host"):
                store.writer("d", wait=0.3)
            db.execute("UPDATE locks SET heartbeat = heartbeat - %s", (catalog_module.LOCK_LEASE_SECONDS + 5,))
            with store.writer("d", wait=0) as w:
                w.write_json_lines([b'{"id":0}'])
            # The stale holder is gone: its token lost the row, so its next commit would fail.
            assert not db.execute("SELECT 1 FROM locks WHERE token = 'elsewhere'").fetchall()
        assert store.to_table("d").num_rows == 1


HOLD_LOCK = """
import sys, time
from connector.store import Store
with Store(sys.argv[1], sys.argv[2]) as s:
    w = s.writer("d", wait=0)
    w.write_json_lines([b'{"id":0}'])
    w.commit()
    w.write_json_lines([b'{"id":1}'])
    print("holding", flush=True)
    time.sleep(600)
"""


def test_lock_of_a_killed_process_is_taken_over_at_once_and_its_commits_stay(postgres_url, tmp_path):
    root = str(tmp_path / "root")
    with Store(root, postgres_url) as store:
        store.create_dataset("d")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, root, postgres_url], stdout=subprocess.PIPE,
                              env=env())
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        with Store(root, postgres_url) as store, pytest.raises(DatasetLocked, match=f"pid {holder.pid}"):
            store.writer("d", wait=0)
    finally:
        holder.kill()
        holder.wait()
    with Store(root, postgres_url) as store:
        started = time.monotonic()
        with store.writer("d", wait=0) as w:  # the holder's pid is gone: no lease to wait out
            w.write_json_lines([b'{"id":1}'])
        assert time.monotonic() - started < 10
        assert store.to_table("d").column("id").to_pylist() == [0, 1]
        assert store.verify("d") == []


def test_an_unreachable_server_is_a_clear_error_that_hides_the_password(tmp_path):
    url = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreError, match="cannot connect to catalog postgresql://someone:\\*\\*\\*@127.0.0.1") as info:
        Store(str(tmp_path / "root"), url)
    assert "s3cret" not in str(info.value)


def test_cli_uses_a_postgres_catalog(postgres_url, tmp_path):
    root = str(tmp_path / "root")

    def des(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*DES, "datasets", "--root", root, "--catalog", postgres_url, *args],
                              capture_output=True, env=env(), timeout=120, check=False)

    assert des("create", "made-by-cli").returncode == 0
    with Store(root, postgres_url) as store:
        assert [d.name for d in store.list_datasets()] == ["made-by-cli"]
        store.write_records("made-by-cli", [[{"id": 7}]])
    listed = des("--json", "list")
    assert listed.returncode == 0, listed.stderr.decode()
    assert [d["name"] for d in json.loads(listed.stdout)] == ["made-by-cli"]
    assert not (tmp_path / "root" / ".des-catalog.sqlite").exists()  # no SQLite catalog beside it


# -- several hosts: processes sharing nothing but the S3 root and the catalog ---------------------

RESUMABLE_WORKER = """
import json, sys
from connector.store import Store
root, catalog, options, worker, batches = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
with Store(root, catalog, storage_options=options, max_datapoints=4) as s:
    for dataset in ("shared", f"own-{worker}"):
        s.ensure_dataset(dataset)
    while True:
        busy = False
        for dataset in ("shared", f"own-{worker}"):
            with s.writer(dataset, wait=120) as w:
                done = s.checkpoint(dataset) or 0  # read under the lock: the batch to write next
                if done < batches:
                    busy = True
                    w.write_json_lines([b'{"batch":%d,"i":%d}' % (done, i) for i in range(3)], checkpoint=done + 1)
        if not busy:
            break
"""


@pytest.mark.slow
def test_processes_sharing_s3_and_postgres_write_every_datapoint_once_despite_kills(
        postgres_url, postgres_server, s3_endpoint, s3_bucket):
    """Three "hosts" write one shared dataset and one each of their own, a batch per writer session
    with the batch number as checkpoint, and are SIGKILLed at random moments and started again.
    Every batch must be in each dataset exactly once, in dataranges that neither overlap nor leave
    gaps, and storage alone must rebuild the same catalog."""
    root, batches, workers = f"s3://{s3_bucket}/store", 8, 3
    options = s3_endpoint.storage_options()
    rng = random.Random(18)

    def start(worker: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", RESUMABLE_WORKER, root, postgres_url, json.dumps(options),
                                 str(worker), str(batches)], env=env(), stderr=subprocess.PIPE)

    running = {w: start(w) for w in range(workers)}
    kills, deadline = 0, time.monotonic() + 300
    try:
        while running:
            assert time.monotonic() < deadline, "workers did not finish"
            time.sleep(rng.uniform(0.5, 2.5))
            for w, proc in list(running.items()):
                if proc.poll() is not None:
                    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
                    del running[w]
            if running and kills < 5:
                w = rng.choice(sorted(running))
                running[w].send_signal(signal.SIGKILL)
                running[w].wait()
                running[w] = start(w)
                kills += 1
    finally:
        for proc in running.values():
            proc.kill()
            proc.wait()
    assert kills >= 1
    wanted = Counter((b, i) for b in range(batches) for i in range(3))
    with Store(root, postgres_url, storage_options=options) as store:
        for dataset in ["shared", *(f"own-{w}" for w in range(workers))]:
            rows = store.to_table(dataset).to_pylist()
            assert Counter((r["batch"], r["i"]) for r in rows) == wanted, dataset
            assert store.checkpoint(dataset) == batches
            ranges = store.dataranges(dataset)
            assert [(d.first, d.last) for d in ranges] == _contiguous(ranges), dataset
            assert ranges[-1].last == len(rows) - 1 and store.verify(dataset) == []
        before = store.dump_catalog()
    with Store(root, postgres_server.new_database(), storage_options=options) as again:  # catalog lost
        assert again.dump_catalog() == before


def _contiguous(ranges) -> list[tuple[int, int]]:
    """The (first, last) pairs ``ranges`` would have if each started right after the one before."""
    out, key = [], 0
    for d in ranges:
        out.append((key, key + d.last - d.first))
        key += d.last - d.first + 1
    return out


def test_destination_catalog_path_takes_a_postgres_url(postgres_url, tmp_path):
    config = tmp_path / "dest.json"
    config.write_text(json.dumps({"root_url": str(tmp_path / "store"), "catalog_path": postgres_url,
                                  "max_datapoints": 4}))
    configured = tmp_path / "catalog.json"
    configured.write_text(json.dumps({"streams": [{"stream": {"name": "rows", "json_schema": {}},
                                                   "sync_mode": "full_refresh", "destination_sync_mode": "append"}]}))
    records = b"".join(json.dumps({"type": "RECORD", "record": {"stream": "rows", "emitted_at": 1,
                                                               "data": {"id": i}}}).encode() + b"\n" for i in range(10))
    state = json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "rows"}, "stream_state": {"n": 10}}}}).encode() + b"\n"
    out = subprocess.run([sys.executable, "-m", "connector.airbyte.destination_main", "write", "--config", str(config),
                          "--catalog", str(configured)], input=records + state, capture_output=True, env=env(),
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr.decode()
    echoed = [json.loads(line) for line in out.stdout.splitlines() if b'"STATE"' in line]
    assert [m["state"]["stream"]["stream_state"] for m in echoed] == [{"n": 10}]
    with Store(str(tmp_path / "store"), postgres_url) as store:
        assert store.to_table("rows").column("id").to_pylist() == list(range(10))
        assert store.checkpoint("rows") is not None
    assert not (tmp_path / "store" / ".des-catalog.sqlite").exists()
