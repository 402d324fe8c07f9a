"""des-destination as a real subprocess: append, overwrite, STATE ordering, bad input, kill and re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.store import Store

CMD = [sys.executable, "-m", "connector.airbyte.destination_main"]


def record(stream: str, i: int) -> bytes:
    return json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 1,
                                                    "data": {"id": i, "name": f"n{i}", "tags": [i % 3]}}}).encode() + b"\n"


def state(n: int) -> bytes:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "rows"}, "stream_state": {"n": n}}}}).encode() + b"\n"


def catalog(tmp: Path, mode: str = "append", streams=("rows",)) -> str:
    path = tmp / f"catalog-{mode}.json"
    path.write_text(json.dumps({"streams": [{"stream": {"name": s, "json_schema": {}},
                                             "sync_mode": "full_refresh", "destination_sync_mode": mode}
                                            for s in streams]}))
    return str(path)


def config(tmp: Path, **extra) -> str:
    path = tmp / "dest.json"
    path.write_text(json.dumps({"root_url": str(tmp / "store"), **extra}))
    return str(path)


def run(args, stdin: bytes, timeout: float = 60):
    out = subprocess.run(CMD + args, input=stdin, capture_output=True, timeout=timeout)
    return out.returncode, [json.loads(l) for l in out.stdout.splitlines() if l.strip()], out.stderr.decode()


def ids(tmp: Path, dataset: str = "rows", **kw) -> list[int]:
    with Store(str(tmp / "store"), **kw) as store:
        return store.to_table(dataset).column("id").to_pylist()


def test_spec_and_check(tmp_path):
    code, msgs, _ = run(["spec"], b"")
    assert code == 0 and msgs[0]["spec"]["connectionSpecification"]["properties"]["secret_access_key"]["airbyte_secret"]
    code, msgs, _ = run(["check", "--config", config(tmp_path)], b"")
    assert msgs[0]["connectionStatus"]["status"] == "SUCCEEDED"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"root_url": "x", "max_datapoints": 0}))
    code, msgs, _ = run(["check", "--config", str(bad)], b"")
    assert msgs[0]["connectionStatus"]["status"] == "FAILED" and "max_datapoints" in msgs[0]["connectionStatus"]["message"]


def test_append_states_echoed_after_commit_in_order(tmp_path):
    body = b"".join(record("rows", i) for i in range(0, 25)) + state(25) + b"".join(
        record("rows", i) for i in range(25, 40)) + state(40)
    code, msgs, err = run(["write", "--config", config(tmp_path, max_datapoints=10), "--catalog", catalog(tmp_path)], body)
    assert code == 0, err
    states = [m["state"]["stream"]["stream_state"]["n"] for m in msgs if m["type"] == "STATE"]
    assert states == [25, 40]
    assert ids(tmp_path) == list(range(40))
    with Store(str(tmp_path / "store")) as store:
        assert [(d.first, d.last) for d in store.dataranges("rows")][:2] == [(0, 9), (10, 19)]
        assert store.read("rows", 7) == b'{"id":7,"name":"n7","tags":[1]}\n'
    # A second sync appends to the same key space.
    code, _, err = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)],
                       b"".join(record("rows", i) for i in range(100, 103)))
    assert code == 0, err
    assert ids(tmp_path) == list(range(40)) + [100, 101, 102]


def test_overwrite_replaces_and_drops_old_data_after_success(tmp_path):
    run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], b"".join(record("rows", i) for i in range(5)))
    code, _, err = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path, "overwrite")],
                       b"".join(record("rows", i) for i in range(50, 53)))
    assert code == 0, err
    assert ids(tmp_path) == [50, 51, 52]
    with Store(str(tmp_path / "store")) as store:
        assert store.list_versions("rows") == []
        assert [(d.first, d.last) for d in store.dataranges("rows")] == [(0, 2)]


@pytest.mark.parametrize("line, problem", [
    (b"not json\n", "line 3: not JSON"),
    (record("other", 1), "line 3: RECORD for stream 'other' which is not in the configured catalog"),
    (b'{"type": "RECORD", "record": {"stream": "rows", "data": [1, 2]}}\n', "line 3: RECORD data of stream 'rows' is list"),
])
def test_bad_line_named_committed_data_stays(tmp_path, line, problem):
    body = record("rows", 0) + record("rows", 1) + line + record("rows", 2)
    code, msgs, _ = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], body)
    assert code == 1
    errors = [m["trace"]["error"]["message"] for m in msgs if m["type"] == "TRACE"]
    assert len(errors) == 1 and problem in errors[0], errors
    assert ids(tmp_path) == [0, 1]


def test_killed_mid_stream_then_rerun_is_exactly_once(tmp_path):
    n = 3000
    body = b"".join(record("rows", i) + (state(i + 1) if i % 500 == 499 else b"") for i in range(n))
    cfg = config(tmp_path, max_datapoints=200)
    cat = catalog(tmp_path)
    for kill_after in (700, 1900):  # lines fed before SIGKILL, seeded points
        proc = subprocess.Popen(CMD + ["write", "--config", cfg, "--catalog", cat], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        lines = body.splitlines(keepends=True)
        proc.stdin.write(b"".join(lines[:kill_after]))
        proc.stdin.flush()
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        store_dir = tmp_path / "store" / "rows" / "dataranges"
        assert not [p for p in os.listdir(store_dir) if p.endswith(".des") and not p[:1].isdigit()]
        got = ids(tmp_path)
        assert got == list(range(len(got))), "committed records form a prefix, each once"
        code, _, err = run(["write", "--config", cfg, "--catalog", cat], body)
        assert code == 0, err
        assert ids(tmp_path) == list(range(n))
        # The same input again: everything is already committed, nothing is added.
        code, _, err = run(["write", "--config", cfg, "--catalog", cat], body)
        assert code == 0, err
        assert ids(tmp_path) == list(range(n))
        with Store(str(tmp_path / "store")) as store:  # the catalog matches what storage rebuilds
            before = store.dump_catalog()
            os.unlink(store.catalog_path)
        with Store(str(tmp_path / "store")) as store:
            assert store.dump_catalog() == before
            store.delete_dataset("rows")


def test_writes_to_s3_root(s3_endpoint, s3_bucket, tmp_path):
    cfg = tmp_path / "s3.json"
    cfg.write_text(json.dumps({"bucket_name": s3_bucket, "path_prefix": "dest", "endpoint": s3_endpoint.endpoint_url,
                               "region": s3_endpoint.region, "access_key_id": s3_endpoint.key,
                               "secret_access_key": s3_endpoint.secret,
                               "catalog_path": str(tmp_path / "cat.sqlite"), "max_datapoints": 4}))
    body = b"".join(record("rows", i) for i in range(10)) + state(10)
    code, msgs, err = run(["write", "--config", str(cfg), "--catalog", catalog(tmp_path)], body)
    assert code == 0, err
    assert [m["type"] for m in msgs].count("STATE") == 1
    keys = sorted(o["Key"] for o in s3_endpoint.boto3_client().list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert [k for k in keys if k.endswith(".des")] == [
        "dest/rows/dataranges/00000000000000000000-00000000000000000003.des",
        "dest/rows/dataranges/00000000000000000004-00000000000000000007.des",
        "dest/rows/dataranges/00000000000000000008-00000000000000000009.des"]
    with Store(f"s3://{s3_bucket}/dest", str(tmp_path / "cat.sqlite"), storage_options=s3_endpoint.storage_options()) as store:
        assert store.to_table("rows").column("id").to_pylist() == list(range(10))
