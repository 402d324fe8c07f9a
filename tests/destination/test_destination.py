"""des-destination as a real subprocess: append, overwrite, STATE ordering, bad input, kill and re-run."""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.destination import DestinationConfig, write_messages
from connector.destination.messages import InputError
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
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stderr.decode()


def ids(tmp: Path, dataset: str = "rows", **kw) -> list[int]:
    """The ``id`` of every record of ``dataset`` in key order ([] if it does not exist yet)."""
    with Store(str(tmp / "store"), **kw) as store:
        if dataset not in {d.name for d in store.list_datasets()}:
            return []
        table = store.to_table(dataset)
        return table.column("id").to_pylist() if table.num_rows else []


def _visible_containers(folder: Path) -> set[str]:
    return {os.path.realpath(p) for p in folder.rglob("*.des")} if folder.exists() else set()


def _known_containers(tmp: Path, dataset: str = "rows") -> set[str]:
    """Containers the catalog knows: current dataranges and those kept by versions."""
    with Store(str(tmp / "store")) as store:
        if dataset not in {d.name for d in store.list_datasets()}:
            return set()
        ranges = list(store.dataranges(dataset)) + [d for v in store.list_versions(dataset) for d in v.dataranges]
        return {os.path.realpath(d.url) for d in ranges}


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
    body = b"".join(record("rows", i) for i in range(25)) + state(25) + b"".join(
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


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_killed_mid_stream_then_rerun_is_exactly_once(tmp_path, mode):
    """SIGKILL at seeded moments (some before the first commit, some after several), then re-run
    the same input: every record once, in order, and no container that is not in the catalog."""
    n = 1500
    body = b"".join(record("rows", i) + (state(i + 1) if i % 250 == 249 else b"") for i in range(n))
    lines = body.splitlines(keepends=True)
    cfg = config(tmp_path, max_datapoints=150)
    cat = catalog(tmp_path, mode)
    old = [-(i + 1) for i in range(5)]
    rng = random.Random(4 if mode == "append" else 5)
    points = 3 if mode == "append" else 2
    for point in range(points):
        if mode == "overwrite":  # data the overwrite replaces, visible again only if it fails for good
            run(["write", "--config", cfg, "--catalog", catalog(tmp_path)], b"".join(record("rows", i) for i in old))
        kill_after, wait = rng.randrange(100, len(lines)), rng.uniform(0.2, 1.0)
        proc = subprocess.Popen(CMD + ["write", "--config", cfg, "--catalog", cat], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdin.write(b"".join(lines[:kill_after]))
        proc.stdin.flush()
        time.sleep(wait)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        echoed = [json.loads(line) for line in proc.stdout.read().splitlines()]
        proc.stdout.close()
        proc.stdin.close()
        got = ids(tmp_path)
        if mode == "append":
            assert got == list(range(len(got))), "committed records form a prefix, each once"
        else:
            assert got == old or got == list(range(len(got)))
        for m in echoed:  # an echoed state's records are committed
            assert m["type"] != "STATE" or m["state"]["stream"]["stream_state"]["n"] <= len(got) or got == old
        assert _visible_containers(tmp_path / "store" / "rows") <= _known_containers(tmp_path), \
            "no uncommitted container visible"
        code, _, err = run(["write", "--config", cfg, "--catalog", cat], body)
        assert code == 0, err
        assert ids(tmp_path) == list(range(n)), (point, kill_after, wait)
        with Store(str(tmp_path / "store")) as store:
            assert store.list_versions("rows") == []  # the overwrite's kept data went on success
            if point < points - 1:
                store.delete_dataset("rows")
    # The last run finished: the same input again is a new sync, appended (or overwriting) in full.
    code, _, err = run(["write", "--config", cfg, "--catalog", cat], body)
    assert code == 0, err
    assert ids(tmp_path) == list(range(n)) * (2 if mode == "append" else 1)


def test_overwrite_with_no_records_empties_the_dataset(tmp_path):
    run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], b"".join(record("rows", i) for i in range(3)))
    code, msgs, err = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path, "overwrite")], state(0))
    assert code == 0, err
    assert [m["type"] for m in msgs].count("STATE") == 1
    assert ids(tmp_path) == []
    with Store(str(tmp_path / "store")) as store:
        assert store.list_versions("rows") == []


def test_failed_overwrite_then_different_input_drops_the_partial_data(tmp_path):
    run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], b"".join(record("rows", i) for i in range(3)))
    cfg, cat = config(tmp_path, max_datapoints=10), catalog(tmp_path, "overwrite")
    # The overwrite fails at a bad line after 25 committed records: the old data is kept aside.
    body = b"".join(record("rows", i) for i in range(100, 125)) + b"not json\n"
    code, _, _ = run(["write", "--config", cfg, "--catalog", cat], body)
    assert code == 1
    assert ids(tmp_path) == list(range(100, 125))
    with Store(str(tmp_path / "store")) as store:
        [kept] = store.list_versions("rows")
        assert store.to_table("rows", kept.version).column("id").to_pylist() == [0, 1, 2]
    # Another input: the failed run's records must not stay in front of it.
    code, _, err = run(["write", "--config", cfg, "--catalog", cat], b"".join(record("rows", i) for i in range(200, 213)))
    assert code == 0, err
    assert ids(tmp_path) == list(range(200, 213))
    with Store(str(tmp_path / "store")) as store:
        assert store.list_versions("rows") == []


def test_held_state_is_flushed_while_stdin_is_silent(tmp_path):
    proc = subprocess.Popen(CMD + ["write", "--config", config(tmp_path, flush_seconds=0.3), "--catalog", catalog(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"".join(record("rows", i) for i in range(5)) + state(5))
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the STATE was not echoed while stdin stayed open"
        echoed = json.loads(proc.stdout.readline())
        assert echoed["state"]["stream"]["stream_state"] == {"n": 5}
        assert ids(tmp_path) == list(range(5))  # committed before the echo
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read().decode()


def test_record_data_is_stored_compact_and_faithful(tmp_path):
    lines = [b'{"type": "RECORD", "record": {"stream": "rows", "data": {"id": 1, "s": "a  b", "big": 123456789012345678901234567890}}}\n',
             b'{"type":"RECORD","record":{"stream":"rows","data":{ "id" :2 ,"e":"\\u00e9"}, "namespace": null}}\r\n',
             b"\n",
             b'{"type":"LOG","log":{"level":"INFO","message":"ignored"}}\n',
             b'{"type":"RECORD","record":{"stream":"rows","data":{"id":3,"s":"caf\xc3\xa9"}}}\n']
    code, _, err = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], b"".join(lines))
    assert code == 0, err
    with Store(str(tmp_path / "store")) as store:
        assert [store.read("rows", k) for k in range(3)] == [
            b'{"id":1,"s":"a  b","big":123456789012345678901234567890}\n', b'{"id":2,"e":"\\u00e9"}\n',
            '{"id":3,"s":"café"}\n'.encode()]


@pytest.mark.parametrize("line, problem", [
    (b'{"type":"RECORD","record":{"stream":"rows","data":{"s":"\xff"}}}\n', "line 2: not JSON"),
    (b'{"type":"RECORD","record":{"stream":"rows","data":{"s":1},"namespace":5}}\n', "line 2: RECORD namespace must be a string"),
    (b'{"type":"RECORD","record":{"data":{"s":1}}}\n', "line 2: RECORD without record.stream"),
    (b'{"type":"RECORD","record":{"stream":"rows","data":"x"}}\n', "line 2: RECORD data of stream 'rows' is str"),
])
def test_more_bad_lines(tmp_path, line, problem):
    """In process (the subprocess path to a TRACE is covered above), from lines and from a binary
    stream: the named error, raised after the good record before it is committed and its STATE echoed."""
    cfg = DestinationConfig.from_dict({"root_url": str(tmp_path / "store")})
    cat = json.loads(Path(catalog(tmp_path)).read_text())
    echoed: list[bytes] = []
    for source in ([record("rows", 0) + state(1) + line], None):  # as lines, and as a binary stream
        if source is None:
            source = (tmp_path / "stdin").open("wb+")
            source.write(record("rows", 0) + state(1) + line)
            source.seek(0)
        with pytest.raises(InputError, match=re.escape(problem.replace("line 2", "line 3"))):
            write_messages(cfg, cat, source if not isinstance(source, list) else b"".join(source).splitlines(True),
                           echoed.append)
    # The second run is a re-run of the interrupted first: its committed record is not added again.
    assert ids(tmp_path) == [0] and len(echoed) == 2


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
    # Container keys end in the writer session's tag: <first>-<last>.<tag>.des
    assert [re.sub(r"\.[0-9a-f]{16}\.des$", ".des", k) for k in keys if k.endswith(".des")] == [
        "dest/rows/dataranges/00000000000000000000-00000000000000000003.des",
        "dest/rows/dataranges/00000000000000000004-00000000000000000007.des",
        "dest/rows/dataranges/00000000000000000008-00000000000000000009.des"]
    with Store(f"s3://{s3_bucket}/dest", str(tmp_path / "cat.sqlite"), storage_options=s3_endpoint.storage_options()) as store:
        assert store.to_table("rows").column("id").to_pylist() == list(range(10))


def test_two_streams_into_one_dataset_is_refused_clearly(tmp_path):
    body = record("a", 0) + record("b", 1)
    code, msgs, _ = run(["write", "--config", config(tmp_path, dataset_name="all"), "--catalog",
                         catalog(tmp_path, streams=("a", "b"))], body, timeout=60)
    assert code == 1
    [error] = [m["trace"]["error"]["message"] for m in msgs if m["type"] == "TRACE"]
    assert "streams 'a' and 'b' both map to dataset 'all'" in error
    assert ids(tmp_path, "all") == []  # found in the configured catalog, before anything is written
