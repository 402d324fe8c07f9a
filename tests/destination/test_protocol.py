"""des-destination and the current Airbyte protocol, through real ``des-destination write`` runs:
destinationStats counts, Airbyte metadata per datapoint, generations and refreshes, sync modes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.destination.test_destination import CMD, config, ids, record, run


def stream_state(stream: str, n: int, **extra) -> bytes:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": stream}, "stream_state": {"n": n}}, **extra}}).encode() + b"\n"


def global_state(n: int) -> bytes:
    return json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": {
        "shared_state": {"n": n}, "stream_states": []}}}).encode() + b"\n"


def catalog(tmp: Path, streams=("rows",), mode: str = "append", name: str = "catalog", **fields) -> str:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"streams": [{"stream": {"name": s, "json_schema": {}}, "sync_mode": "full_refresh",
                                             "destination_sync_mode": mode, **fields} for s in streams]}))
    return str(path)


def states(msgs) -> list[dict]:
    return [m["state"] for m in msgs if m["type"] == "STATE"]


def test_state_carries_destination_record_count_per_stream_and_global(tmp_path):
    body = (b"".join(record("a", i) for i in range(3)) + b"".join(record("b", i) for i in range(2))
            + stream_state("a", 3, sourceStats={"recordCount": 3.0})
            + record("a", 3) + stream_state("b", 2) + stream_state("a", 4)
            + record("b", 2) + global_state(1) + stream_state("b", 3) + global_state(2))
    code, msgs, err = run(["write", "--config", config(tmp_path, max_datapoints=2),
                           "--catalog", catalog(tmp_path, ("a", "b"))], body)
    assert code == 0, err
    got = states(msgs)
    assert [s["destinationStats"] for s in got] == [{"recordCount": n} for n in (3, 2, 1, 7, 1, 0)]
    # The source's own fields are kept as they were.
    assert got[0]["sourceStats"] == {"recordCount": 3.0} and got[0]["stream"]["stream_state"] == {"n": 3}
    assert got[3]["global"] == {"shared_state": {"n": 1}, "stream_states": []}


def test_state_keeps_its_bytes_exactly(tmp_path):
    big = b'{"type":"STATE","state":{"type":"LEGACY","data":{"cursor":123456789012345678901234567890,"f":1.50}}}\n'
    raw = [line for line in _stdout(tmp_path, record("rows", 1) + big) if b'"STATE"' in line]
    assert raw == [(b'{"type":"STATE","state":{"type":"LEGACY","data":{"cursor":123456789012345678901234567890,'
                    b'"f":1.50},"destinationStats":{"recordCount":1}}}')]


def _stdout(tmp_path: Path, body: bytes) -> list[bytes]:
    out = subprocess.run(CMD + ["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)],
                         input=body, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_malformed_stream_state_is_named(tmp_path):
    bad = b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_state":{}}}}\n'
    code, msgs, _ = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], record("rows", 0) + bad)
    assert code == 1
    errors = [m["trace"]["error"]["message"] for m in msgs if m["type"] == "TRACE"]
    assert "stdin line 2" in errors[0] and "stream_descriptor" in errors[0], errors


def rec(stream: str, i: int, emitted_at: int = 1_700_000_000_000, meta: dict | None = None) -> bytes:
    body = {"stream": stream, "emitted_at": emitted_at, "data": {"id": i}}
    if meta is not None:
        body["meta"] = meta
    return json.dumps({"type": "RECORD", "record": body}).encode() + b"\n"


def refresh(tmp: Path, generation: int, minimum: int, mode: str = "append", sync_id: int = 100) -> str:
    return catalog(tmp, mode=mode, name=f"gen{generation}-{minimum}-{mode}", generation_id=generation,
                   minimum_generation_id=minimum, sync_id=sync_id + generation)


def table(tmp: Path, dataset: str = "rows", version: str | None = None):
    from connector.store import Store
    with Store(str(tmp / "store")) as store:
        return store.to_table(dataset, version, meta=True).to_pylist()


def test_airbyte_metadata_kept_beside_each_record(tmp_path):
    change = {"changes": [{"field": "id", "change": "NULLED", "reason": "DESTINATION_FIELD_SIZE_LIMITATION"}]}
    body = rec("rows", 0, 5) + rec("rows", 1, 5) + rec("rows", 2, 6, meta=change) + rec("rows", 3, 7) + rec("rows", 4, 7)
    cfg = config(tmp_path, max_datapoints=2)
    code, _, err = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 3, 0)], body)
    assert code == 0, err
    rows = table(tmp_path)
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["_airbyte_extracted_at"] for r in rows] == [5, 5, 6, 7, 7]
    assert {r["_airbyte_generation_id"] for r in rows} == {3}
    assert [r["_airbyte_meta"] for r in rows] == [{"sync_id": 103, "changes": []}] * 2 + [
        {"sync_id": 103, **change}] + [{"sync_id": 103, "changes": []}] * 2
    raw_ids = [r["_airbyte_raw_id"] for r in rows]
    assert len(set(raw_ids)) == 5 and all(uuid.UUID(i).version == 4 for i in raw_ids)
    from connector.store import Store
    with Store(str(tmp_path / "store")) as store:
        assert store.read("rows", 2) == b'{"id":2}\n'  # the record's bytes, nothing added
        assert store.read_meta("rows", 2)["_airbyte_raw_id"] == raw_ids[2]
    out = subprocess.run([sys.executable, "-m", "connector.cli", "datasets", "--root", str(tmp_path / "store"),
                          "read", "rows", "2", "--meta"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"_airbyte_raw_id": raw_ids[2], "_airbyte_extracted_at": 6,
                                      "_airbyte_generation_id": 3, "_airbyte_meta": {"sync_id": 103, **change}}


def test_bad_emitted_at_or_meta_is_named(tmp_path):
    for bad, why in ((b'{"type":"RECORD","record":{"stream":"rows","emitted_at":"5","data":{}}}\n', "emitted_at"),
                     (b'{"type":"RECORD","record":{"stream":"rows","emitted_at":1,"meta":[],"data":{}}}\n', "meta")):
        code, msgs, _ = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], rec("rows", 0) + bad)
        errors = [m["trace"]["error"]["message"] for m in msgs if m["type"] == "TRACE"]
        assert code == 1 and "stdin line 2" in errors[0] and why in errors[0], errors


def test_truncate_refresh_replaces_older_generations_on_success(tmp_path):
    cfg = config(tmp_path, max_datapoints=3)
    assert run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], b"".join(rec("rows", i) for i in range(5)))[0] == 0
    assert run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], rec("rows", 5))[0] == 0
    # Merge refresh (minimum 0): a new generation, the old one kept.
    assert run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 2, 0)], rec("rows", 10))[0] == 0
    assert [(r["id"], r["_airbyte_generation_id"]) for r in table(tmp_path)] == [(i, 1) for i in range(6)] + [(10, 2)]
    # Truncate refresh (minimum = generation): only generation 3 stays.
    code, _, err = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 3, 3)], rec("rows", 20) + rec("rows", 21))
    assert code == 0, err
    assert [(r["id"], r["_airbyte_generation_id"]) for r in table(tmp_path)] == [(20, 3), (21, 3)]
    from connector.store import Store
    with Store(str(tmp_path / "store")) as store:
        assert store.list_versions("rows") == []


def test_failed_truncate_refresh_keeps_previous_data_then_retry_of_same_generation_adds(tmp_path):
    cfg = config(tmp_path, max_datapoints=2)
    run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], b"".join(rec("rows", i) for i in range(3)))
    # Generation 2 fails at a bad line after 4 records (committed, their state acknowledged).
    code, _, _ = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 2, 2)],
                     b"".join(rec("rows", i) for i in range(100, 104)) + stream_state("rows", 4) + b"oops\n")
    assert code == 1
    from connector.store import Store
    with Store(str(tmp_path / "store")) as store:
        (kept,) = [v.version for v in store.list_versions("rows")]
    assert [r["id"] for r in table(tmp_path, version=kept)] == [0, 1, 2], "previous data readable"
    # Airbyte retries the same generation from the last state: the new attempt adds to the first's.
    code, _, err = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 2, 2)], rec("rows", 104))
    assert code == 0, err
    assert [(r["id"], r["_airbyte_generation_id"]) for r in table(tmp_path)] == [(i, 2) for i in range(100, 105)]
    with Store(str(tmp_path / "store")) as store:
        assert store.list_versions("rows") == []


def test_failed_refresh_of_an_older_generation_is_dropped_by_the_next_refresh(tmp_path):
    cfg = config(tmp_path, max_datapoints=2)
    run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], rec("rows", 0))
    code, _, _ = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 2, 2)],
                     rec("rows", 50) + rec("rows", 51) + b"oops\n")
    assert code == 1
    code, _, err = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 3, 3)], rec("rows", 60))
    assert code == 0, err
    assert [(r["id"], r["_airbyte_generation_id"]) for r in table(tmp_path)] == [(60, 3)]


def test_sigkill_during_truncate_refresh_then_rerun_equals_uninterrupted(tmp_path):
    n = 1200
    cfg = config(tmp_path, max_datapoints=100)
    old = b"".join(rec("rows", -i - 1) for i in range(4))
    body = b"".join(rec("rows", i, emitted_at=i) + (stream_state("rows", i + 1) if i % 200 == 199 else b"")
                    for i in range(n))
    lines = body.splitlines(keepends=True)
    rng = random.Random(16)
    for _ in range(2):
        from connector.store import Store
        with Store(str(tmp_path / "store")) as store:
            if "rows" in {d.name for d in store.list_datasets()}:
                store.delete_dataset("rows")
        assert run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], old)[0] == 0
        proc = subprocess.Popen(CMD + ["write", "--config", cfg, "--catalog", refresh(tmp_path, 2, 2)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.stdin.write(b"".join(lines[:rng.randrange(300, len(lines))]))
        proc.stdin.flush()
        time.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        with Store(str(tmp_path / "store")) as store:
            versions = [v.version for v in store.list_versions("rows")]
        previous = [r["id"] for r in table(tmp_path, version=versions[0])] if versions else ids(tmp_path)
        assert previous == [-1, -2, -3, -4], "the previous data stays readable"
        code, _, err = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 2, 2)], body)
        assert code == 0, err
        rows = table(tmp_path)
        assert [r["id"] for r in rows] == list(range(n)) and {r["_airbyte_generation_id"] for r in rows} == {2}
        assert len({r["_airbyte_raw_id"] for r in rows}) == n
        assert [r["_airbyte_extracted_at"] for r in rows] == list(range(n))


def test_metadata_of_records_spooled_while_a_resume_is_checked(tmp_path):
    """A re-run whose input starts like the interrupted one's: its records wait in the spool until
    the comparison fails, then are written with their own metadata."""
    cfg = config(tmp_path, max_datapoints=5)
    first = b"".join(rec("rows", i, emitted_at=i) for i in range(7))
    assert run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], first + b"oops\n")[0] == 1
    change = {"changes": [{"field": "x", "change": "TRUNCATED", "reason": "SOURCE_RECORD_SIZE_LIMITATION"}]}
    second = rec("rows", 0, emitted_at=0) + b"".join(
        rec("rows", i, emitted_at=i, meta=change if i == 102 else None) for i in range(100, 110))
    code, _, err = run(["write", "--config", cfg, "--catalog", refresh(tmp_path, 1, 0)], second)
    assert code == 0, err
    rows = table(tmp_path)
    assert [r["id"] for r in rows] == list(range(7)) + [0] + list(range(100, 110))
    assert [r["_airbyte_extracted_at"] for r in rows] == list(range(7)) + [0] + list(range(100, 110))
    assert rows[10]["id"] == 102 and rows[10]["_airbyte_meta"]["changes"] == change["changes"]
    assert sum(1 for r in rows if r["_airbyte_meta"]["changes"]) == 1


def test_append_dedup_keeps_every_record_and_reads_the_latest_per_primary_key(tmp_path):
    cfg = config(tmp_path, max_datapoints=2)
    cat = catalog(tmp_path, mode="append_dedup", name="dedup", primary_key=[["id"]])
    def row(i: int, v: str) -> bytes:
        return json.dumps({"type": "RECORD", "record": {"stream": "rows", "emitted_at": 1,
                                                        "data": {"id": i, "v": v}}}).encode() + b"\n"
    assert run(["write", "--config", cfg, "--catalog", cat], row(1, "a") + row(2, "b") + row(1, "c"))[0] == 0
    code, _, err = run(["write", "--config", cfg, "--catalog", cat], row(2, "d") + row(3, "e"))
    assert code == 0, err
    from connector.store import Store
    with Store(str(tmp_path / "store")) as store:
        assert store.get_dataset("rows").metadata["primary_key"] == ["id"]
        assert store.to_table("rows").num_rows == 5  # every record is kept, in order
        latest = store.to_table("rows", latest_by=store.get_dataset("rows").metadata["primary_key"], meta=True)
        assert [(r["id"], r["v"]) for r in latest.to_pylist()] == [(1, "c"), (2, "d"), (3, "e")]
    out = subprocess.run([sys.executable, "-m", "connector.cli", "datasets", "--root", str(tmp_path / "store"),
                          "cat", "rows", "--latest-by", "id"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b'{"id":1,"v":"c"}\n{"id":2,"v":"d"}\n{"id":3,"v":"e"}\n'  # the stored bytes


def test_sigkill_during_a_deduplicating_write_then_rerun_equals_uninterrupted(tmp_path):
    """append_dedup killed at random points and re-run with the same input: every record once, in
    order, and the latest per key the same as an uninterrupted run's (which runs beside it)."""
    n = 1200
    body = b"".join(json.dumps({"type": "RECORD", "record": {
        "stream": "rows", "emitted_at": i, "data": {"id": i % 97, "v": i}}}).encode() + b"\n"
        + (stream_state("rows", i + 1) if i % 150 == 149 else b"") for i in range(n))
    lines = body.splitlines(keepends=True)
    fields = {"primary_key": [["id"]], "cursor_field": ["v"]}
    expected_root = tmp_path / "uninterrupted"
    expected_root.mkdir()
    code, _, err = run(["write", "--config", config(expected_root, max_datapoints=100), "--catalog",
                        catalog(expected_root, mode="append_dedup", **fields)], body)
    assert code == 0, err
    cfg = config(tmp_path, max_datapoints=100)
    cat = catalog(tmp_path, mode="append_dedup", **fields)
    rng = random.Random(18)
    from connector.store import Store
    for _ in range(2):
        proc = subprocess.Popen(CMD + ["write", "--config", cfg, "--catalog", cat],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.stdin.write(b"".join(lines[:rng.randrange(200, len(lines))]))
        proc.stdin.flush()
        time.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
    code, _, err = run(["write", "--config", cfg, "--catalog", cat], body)
    assert code == 0, err
    with Store(str(tmp_path / "store")) as store, Store(str(expected_root / "store")) as expected:
        assert store.to_table("rows").to_pylist() == expected.to_table("rows").to_pylist()
        assert [r["v"] for r in store.to_table("rows").to_pylist()] == list(range(n))
        latest = store.to_table("rows", latest_by=["id"]).to_pylist()
        assert latest == expected.to_table("rows", latest_by=["id"]).to_pylist()
        assert sorted(r["v"] for r in latest) == list(range(n - 97, n))


def test_append_dedup_and_bad_generations_refused_naming_the_stream(tmp_path):
    for fields, why in (({"destination_sync_mode": "append_dedup"}, "'append_dedup' needs a primary_key"),
                        ({"destination_sync_mode": "append_dedup", "primary_key": [["a", "b"]]}, "is nested"),
                        ({"generation_id": 2, "minimum_generation_id": 1}, "minimum_generation_id 1 must be 0"),
                        ({"generation_id": -1}, "generation_id must be a whole number")):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"streams": [{"stream": {"name": "rows", "json_schema": {}}, "sync_mode": "full_refresh",
                                                 "destination_sync_mode": "append", **fields}]}))
        code, msgs, _ = run(["write", "--config", config(tmp_path), "--catalog", str(path)], rec("rows", 0))
        errors = [m["trace"]["error"] for m in msgs if m["type"] == "TRACE"]
        assert code == 1 and errors[0]["failure_type"] == "config_error", errors
        assert "stream 'rows'" in errors[0]["message"] and why in errors[0]["message"], errors
    assert ids(tmp_path) == []


def test_spec_advertises_what_works():
    code, msgs, _ = run(["spec"], b"")
    spec = msgs[0]["spec"]
    assert spec["supported_destination_sync_modes"] == ["append", "overwrite", "append_dedup"]
    assert spec["supportsRefreshes"] is True


@given(st.lists(st.one_of(st.tuples(st.just("rec"), st.sampled_from(["a", "b"])),
                          st.tuples(st.just("stream"), st.sampled_from(["a", "b"])),
                          st.tuples(st.just("global"), st.none())), max_size=40),
       st.integers(1, 5))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_destination_counts_match_a_model(tmp_path_factory, events, max_datapoints):
    """Any interleaving of records and states: each echoed state counts the records of its scope
    since the previous state of that scope (in-process, the same code the subprocess runs)."""
    from connector.destination import DestinationConfig, write_messages

    tmp = tmp_path_factory.mktemp("counts")
    lines, expected, seen, at = [], [], {"a": 0, "b": 0}, {}
    for kind, stream in events:
        if kind == "rec":
            seen[stream] += 1
            lines.append(rec(stream, seen[stream]))
            continue
        total = seen[stream] if kind == "stream" else seen["a"] + seen["b"]
        expected.append(total - at.get(stream, 0))
        at[stream] = total
        lines.append(stream_state(stream, 0) if kind == "stream" else global_state(0))
    out: list[bytes] = []
    cfg = DestinationConfig.from_dict({"root_url": str(tmp / "store"), "max_datapoints": max_datapoints})
    cat = json.loads(Path(catalog(tmp, ("a", "b"))).read_text())
    write_messages(cfg, cat, lines, out.append)
    assert [json.loads(line)["state"]["destinationStats"]["recordCount"] for line in out] == expected
