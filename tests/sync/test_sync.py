"""``des sync`` as a real subprocess: records and files modes, incremental, state, S3 source."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connector.des import DesReader
from connector.store import Store
from tests.source.helpers import put, s3_config, write_local
from tests.support.s3proxy import CountingProxy

DES = [sys.executable, "-m", "connector.cli"]


def sync(tmp: Path, source: dict, *extra: str, root: str | None = None, dest_extra: dict | None = None):
    (tmp / "src.json").write_text(json.dumps(source))
    (tmp / "dst.json").write_text(json.dumps({"root_url": root or str(tmp / "store"), **(dest_extra or {})}))
    out = subprocess.run(DES + ["sync", "--config", str(tmp / "src.json"), "--destination", str(tmp / "dst.json"),
                                "--state", str(tmp / "state.json"), *extra], capture_output=True, text=True, timeout=120)
    return out


def test_records_incremental_and_state(tmp_path):
    src = tmp_path / "data"
    write_local(src, {"users/a.csv": b"id,name\n1,ada\n2,bo\n", "orders/o.jsonl": b'{"o": 1}\n{"o": 2}\n{"o": 3}\n'})
    out = sync(tmp_path, {"root_url": str(src)})
    assert out.returncode == 0, out.stderr
    assert "users -> users: 1 files, 2 datapoints" in out.stdout and "orders -> orders: 1 files, 3 datapoints" in out.stdout
    with Store(str(tmp_path / "store")) as store:
        t = store.to_table("users")
        assert t.column("id").to_pylist() == [1, 2] and t.column("_file").to_pylist() == ["users/a.csv"] * 2
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["users"]["_files_at_cursor"] == ["users/a.csv"]
    # Second run: nothing new, nothing written. Then one new file: only it is read.
    out = sync(tmp_path, {"root_url": str(src)})
    assert "users -> users: 0 files, 0 datapoints" in out.stdout
    time.sleep(0.01)
    write_local(src, {"users/b.csv": b"id,name\n3,cy\n"})
    out = sync(tmp_path, {"root_url": str(src)}, "--streams", "users")
    assert "users -> users: 1 files, 1 datapoints" in out.stdout and "orders" not in out.stdout
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("users").column("id").to_pylist() == [1, 2, 3]


def test_state_lives_with_the_data_when_the_state_file_is_lost(tmp_path):
    src = tmp_path / "data"
    write_local(src, {"s/a.csv": b"i\n1\n"})
    assert sync(tmp_path, {"root_url": str(src)}).returncode == 0
    os.unlink(tmp_path / "state.json")
    out = sync(tmp_path, {"root_url": str(src)})
    assert "s -> s: 0 files, 0 datapoints" in out.stdout  # the catalog's state wins: no duplicates
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("s").num_rows == 1


def test_files_mode_packs_objects_incrementally_from_s3(tmp_path, s3_endpoint, s3_bucket):
    objects = {f"docs/f{i:03d}.json": json.dumps({"i": i, "pad": "x" * i}).encode() for i in range(40)}
    put(s3_endpoint, s3_bucket, objects)
    cfg = s3_config(s3_endpoint, s3_bucket)
    out = sync(tmp_path, cfg, "--mode", "files", dest_extra={"max_datapoints": 16})
    assert out.returncode == 0, out.stderr
    assert "docs -> docs: 40 files, 40 datapoints" in out.stdout and "in 3 dataranges" in out.stdout
    with Store(str(tmp_path / "store")) as store:
        assert store.read("docs", 7) == objects["docs/f007.json"]
        first = store.dataranges("docs")[0]
        reader = DesReader(store.fs._strip_protocol(first.url), fs=store.fs)
        assert reader.names()[:2] == ["docs/f000.json", "docs/f001.json"]
        assert reader.meta("docs/f001.json")["etag"]
    put(s3_endpoint, s3_bucket, {"docs/new.json": b'{"new": true}'})
    out = sync(tmp_path, cfg, "--mode", "files")
    assert "docs -> docs: 1 files, 1 datapoints" in out.stdout, out.stdout + out.stderr
    with Store(str(tmp_path / "store")) as store:
        assert store.read("docs", 40) == b'{"new": true}'


# fewest: above botocore's default pool of 10 (what the test guards against), with room for a
# loaded machine that starts the 24 threads' GETs late.
@pytest.mark.parametrize("max_threads, fewest, most", [(24, 12, 24), (4, 2, 4)])
def test_files_mode_fetches_max_threads_objects_at_once(tmp_path, s3_endpoint, s3_bucket, max_threads, fewest, most):
    """Files mode overlaps max_threads GETs, no more (the latency of each is what a packer of
    small objects spends its time on); max_threads also sizes the S3 connection pool."""
    objects = {f"many/f{i:03d}.json": b'{"i": %d}' % i for i in range(48)}
    put(s3_endpoint, s3_bucket, objects)
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def slow_object_gets(request):  # holds each object GET 0.5 s, counting those held at once
        if request.method != "GET" or "/many/f" not in request.path:
            return None
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.5)
        with lock:
            in_flight[0] -= 1
        return None

    with CountingProxy(s3_endpoint.endpoint_url, fault=slow_object_gets) as proxy:
        cfg = s3_config(s3_endpoint, s3_bucket, max_threads=max_threads) | {"endpoint": proxy.url}
        out = sync(tmp_path, cfg, "--mode", "files")
    assert out.returncode == 0, out.stderr
    assert "many -> many: 48 files, 48 datapoints" in out.stdout
    assert fewest <= peak[0] <= most  # botocore's default pool capped it at 10


def test_bad_configs_fail_clearly(tmp_path):
    out = sync(tmp_path, {"root_url": str(tmp_path), "file_format": "xls"})
    assert out.returncode == 1 and "file_format" in out.stderr and "Traceback" not in out.stderr
    write_local(tmp_path / "d", {"s/a.csv": b"i\n1\n"})
    out = sync(tmp_path, {"root_url": str(tmp_path / "d")}, "--streams", "nope")
    assert out.returncode == 1 and "unknown stream(s) nope" in out.stderr


def test_default_state_file_and_one_kind_per_dataset(tmp_path):
    src = tmp_path / "data"
    write_local(src, {"users/a.csv": b"id,name\n1,ada\n"})
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(src)}))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(tmp_path / "out" / "store")}))
    base = DES + ["sync", "--config", str(tmp_path / "src.json"), "--destination", str(tmp_path / "dst.json")]
    out = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    state = json.loads((tmp_path / "out" / "store.state.json").read_text())  # beside the root
    assert state["users"]["_files_at_cursor"] == ["users/a.csv"]
    # Whole files into the dataset that holds records: refused, with the way out, nothing written.
    out = subprocess.run(base + ["--mode", "files"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "dataset 'users' holds records datapoints" in out.stderr and "dataset_name" in out.stderr
    with Store(str(tmp_path / "out" / "store")) as store:
        assert [(d.kind, d.count) for d in store.dataranges("users")] == [("records", 1)]


def test_records_into_an_s3_root_resume_from_the_catalog(tmp_path, s3_endpoint, s3_bucket):
    src = tmp_path / "data"
    write_local(src, {"users/a.csv": b"id,name\n1,ada\n2,bo\n3,cy\n"})
    dest = {"bucket_name": s3_bucket, "path_prefix": "store", "endpoint": s3_endpoint.endpoint_url,
            "region": s3_endpoint.region, "access_key_id": s3_endpoint.key, "secret_access_key": s3_endpoint.secret,
            "catalog_path": str(tmp_path / "catalog.sqlite"), "max_datapoints": 2}
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(src)}))
    (tmp_path / "dst.json").write_text(json.dumps(dest))
    argv = DES + ["sync", "--config", str(tmp_path / "src.json"), "--destination", str(tmp_path / "dst.json")]
    out = subprocess.run(argv + ["--state", str(tmp_path / "state.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "users -> users: 1 files, 3 datapoints" in out.stdout and "in 2 dataranges" in out.stdout
    keys = sorted(o["Key"] for o in s3_endpoint.boto3_client().list_objects_v2(Bucket=s3_bucket)["Contents"])
    # Container keys end in the writer session's tag: <first>-<last>.<tag>.des
    assert [re.sub(r"\.[0-9a-f]{16}\.des$", ".des", k) for k in keys if k.endswith(".des")] == [
        "store/users/dataranges/00000000000000000000-00000000000000000001.des",
        "store/users/dataranges/00000000000000000002-00000000000000000002.des"]
    # Without the state file the catalog's state (committed with the data) still says "done".
    out = subprocess.run(argv + ["--state", str(tmp_path / "other-state.json")], capture_output=True, text=True,
                         timeout=120)
    assert "users -> users: 0 files, 0 datapoints" in out.stdout, out.stdout + out.stderr
    with Store(f"s3://{s3_bucket}/store", str(tmp_path / "catalog.sqlite"),
               storage_options=s3_endpoint.storage_options()) as store:
        assert store.to_table("users").column("name").to_pylist() == ["ada", "bo", "cy"]


def test_progress_bars_only_on_a_terminal(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    src = tmp_path / "data"
    write_local(src, {"users/a.csv": b"id\n1\n2\n"})
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(src)}))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(tmp_path / "store")}))
    argv = DES + ["sync", "--config", str(tmp_path / "src.json"), "--destination", str(tmp_path / "dst.json")]
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr  # no bar into a pipe or file
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 0-column pty shows no bar
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(tmp_path / "store2")}))  # records to write again
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=child)
    proc.wait(timeout=120)
    # The slave end stays open here until the output is read: a pty whose last slave closes may
    # drop what is still unread.
    seen = b""
    while select.select([main], [], [], 0.5)[0]:
        seen += os.read(main, 65536)
    os.close(child)
    os.close(main)
    assert proc.returncode == 0
    assert b"users" in seen and b"dp" in seen, seen  # tqdm's bar for the stream, on the terminal


def test_two_streams_into_one_dataset_is_refused(tmp_path):
    src = tmp_path / "data"
    write_local(src, {"users/a.csv": b"id\n1\n", "orders/o.csv": b"o\n1\n"})
    out = sync(tmp_path, {"root_url": str(src)}, dest_extra={"dataset_name": "all"})
    assert out.returncode == 1
    assert "streams 'orders' and 'users' both map to dataset 'all'" in out.stderr
    assert not (tmp_path / "store" / "all").exists()


def test_a_csv_column_that_turns_to_text_reads_back(tmp_path):
    """Integer in the sample, 'A-17' at row 70,000: the sync succeeds and to_table reads it back."""
    rows = [str(i) for i in range(80_000)]
    rows[70_000] = "A-17"
    write_local(tmp_path / "data", {"s/a.csv": ("c\n" + "\n".join(rows) + "\n").encode()})
    out = sync(tmp_path, {"root_url": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr
    with Store(str(tmp_path / "store")) as store:
        column = store.to_table("s").column("c").to_pylist()
        assert len(column) == 80_000 and column[70_000] == "A-17" and column[69_999] in (69_999, "69999")
        assert [str(v) for v in column] == rows
        assert store.read_range("s", 69_999, 70_000).column("c").to_pylist() == ["69999", "A-17"]


def test_files_mode_packs_keys_that_are_not_member_names_under_safe_names(tmp_path, s3_endpoint, s3_bucket):
    """A backslash, '//' or a control character is a legal S3 key but not a member name: such an
    object is packed under a reversible safe name with its key in META; the others as they are."""
    odd = {"docs/a\\b.json": b"1", "docs//c.json": b"2", "docs/ctl\x01.json": b"3", "docs/100%.json": b"4"}
    objects = {"docs/fine.json": b"0", **odd}
    put(s3_endpoint, s3_bucket, objects)
    out = sync(tmp_path, s3_config(s3_endpoint, s3_bucket), "--mode", "files")
    assert out.returncode == 0, out.stderr
    assert "docs -> docs: 5 files, 5 datapoints" in out.stdout, out.stdout
    with Store(str(tmp_path / "store")) as store:
        (d,) = store.dataranges("docs")
        reader = DesReader(store.fs._strip_protocol(d.url), fs=store.fs)
        packed = {reader.meta(n).get("source_key", n): (n, reader.read(n)) for n in reader.names()}
    assert {k: v[1] for k, v in packed.items()} == objects
    assert packed["docs/fine.json"][0] == "docs/fine.json" and packed["docs/100%.json"][0] == "docs/100%.json"
    from urllib.parse import unquote

    for key in odd.keys() - {"docs/100%.json"}:
        assert unquote(packed[key][0]) == key  # the safe name decodes to the key


@pytest.mark.parametrize("drop", [["delete", "s"], ["truncate", "s"], ["rotate", "s"]])
def test_state_of_a_dropped_dataset_does_not_skip_its_files(tmp_path, drop):
    """Delete, truncate or rotate the dataset: the state file beside the store describes data
    that is gone, so the next sync reads every file again instead of '0 files'."""
    write_local(tmp_path / "data", {"s/a.csv": b"i\n1\n2\n", "s/b.csv": b"i\n3\n"})
    assert sync(tmp_path, {"root_url": str(tmp_path / "data")}).returncode == 0
    out = subprocess.run(DES + ["datasets", "--root", str(tmp_path / "store"), *drop], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = sync(tmp_path, {"root_url": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr
    assert "s -> s: 2 files, 3 datapoints" in out.stdout and "state file entry ignored" in out.stdout, out.stdout
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("s").column("i").to_pylist() == [1, 2, 3]
    assert "s -> s: 0 files" in sync(tmp_path, {"root_url": str(tmp_path / "data")}).stdout  # and incremental again


def test_full_refresh_flag_and_catalog_modes(tmp_path):
    write_local(tmp_path / "data", {"s/a.csv": b"i\n1\n2\n"})
    src = {"root_url": str(tmp_path / "data")}
    assert sync(tmp_path, src).returncode == 0
    out = sync(tmp_path, src, "--full-refresh")
    assert out.returncode == 0 and "s -> s: 1 files, 2 datapoints" in out.stdout, out.stdout + out.stderr
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("s").column("i").to_pylist() == [1, 2, 1, 2]  # appended again
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"streams": [{"stream": {"name": "s", "json_schema": {}},
                                                "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]}))
    for _ in range(2):
        out = sync(tmp_path, src, "--catalog", str(catalog))
        assert out.returncode == 0 and "s -> s: 1 files, 2 datapoints" in out.stdout, out.stdout + out.stderr
        with Store(str(tmp_path / "store")) as store:
            assert store.to_table("s").column("i").to_pylist() == [1, 2]  # replaced, not appended
            assert not store.list_versions("s")  # the replaced data is gone once the new is in
    catalog.write_text(json.dumps({"streams": [{"stream": {"name": "s"}, "sync_mode": "incremental",
                                                "destination_sync_mode": "append"}]}))
    assert "s -> s: 0 files" in sync(tmp_path, src, "--catalog", str(catalog)).stdout
    catalog.write_text(json.dumps({"streams": [{"stream": {"name": "s"}, "destination_sync_mode": "append_dedup"}]}))
    out = sync(tmp_path, src, "--catalog", str(catalog))
    assert out.returncode != 0 and "destination_sync_mode must be 'append' or 'overwrite'" in out.stderr
