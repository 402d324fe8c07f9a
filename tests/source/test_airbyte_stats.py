"""des-source read: sourceStats.recordCount on every STATE, an ESTIMATE trace per stream before its
records; and the Avro / Excel / zip fixtures end to end, every RECORD valid against the catalog."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import jsonschema

from tests.source.formats_helpers import CHECKER, FORMATS, STREAMS
from tests.source.helpers import write_local
from tests.source.test_airbyte_source import catalog_for, run, write


def stream_messages(messages: list[dict], stream: str) -> list[dict]:
    def name(m: dict) -> str | None:
        if m["type"] == "RECORD":
            return m["record"]["stream"]
        if m["type"] == "STATE":
            return m["state"]["stream"]["stream_descriptor"]["name"]
        if m["type"] == "TRACE" and m["trace"]["type"] == "ESTIMATE":
            return m["trace"]["estimate"]["name"]
        if m["type"] == "TRACE" and m["trace"]["type"] == "STREAM_STATUS":
            return m["trace"]["stream_status"]["stream_descriptor"]["name"]
        return None

    return [m for m in messages if name(m) == stream]


def kind(m: dict) -> str:
    return m["trace"]["type"] if m["type"] == "TRACE" else m["type"]


def test_state_record_counts_and_estimate(tmp_path):
    root = tmp_path / "root"
    t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    write_local(root, {"s/a.csv": b"id\n1\n2\n3\n", "s/b.csv": b"id\n4\n"}, mtime=t)
    write_local(root, {"s/c.jsonl": b'{"id": 5}\n{"id": 6}\n'})
    sizes = sum(os.path.getsize(root / "s" / n) for n in ("a.csv", "b.csv", "c.jsonl"))
    config = write(tmp_path, "config.json", {"root_url": str(root)})
    _, messages, _ = run("discover", "--config", config)
    catalog = write(tmp_path, "catalog.json", catalog_for(messages[0]["catalog"]["streams"]))

    code, messages, _ = run("read", "--config", config, "--catalog", catalog)
    assert code == 0
    mine = stream_messages(messages, "s")
    assert [kind(m) for m in mine] == ["STREAM_STATUS", "ESTIMATE", "STREAM_STATUS", "RECORD", "RECORD", "RECORD",
                                       "STATE", "RECORD", "STATE", "RECORD", "RECORD", "STATE", "STREAM_STATUS"]
    [estimate] = [m["trace"]["estimate"] for m in mine if kind(m) == "ESTIMATE"]
    assert estimate == {"name": "s", "type": "STREAM", "byte_estimate": sizes}
    counts = [m["state"]["sourceStats"]["recordCount"] for m in mine if m["type"] == "STATE"]
    assert counts == [3.0, 1.0, 2.0]
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert f"stream s: 3 file(s), {sizes} byte(s) to read" in logs
    last_state = [m["state"] for m in mine if m["type"] == "STATE"][-1]

    # Nothing new: nothing to read, and the state repeated with a count of 0.
    state = write(tmp_path, "state.json", [last_state])
    code, messages, _ = run("read", "--config", config, "--catalog", catalog, "--state", state)
    mine = stream_messages(messages, "s")
    assert code == 0 and [kind(m) for m in mine] == ["STREAM_STATUS", "ESTIMATE", "STATE", "STREAM_STATUS"]
    assert mine[1]["trace"]["estimate"]["byte_estimate"] == 0
    assert mine[2]["state"]["sourceStats"] == {"recordCount": 0.0}

    # Full refresh: every file estimated, no STATE.
    catalog = write(tmp_path, "full.json", catalog_for(_discovered(config), mode="full_refresh"))
    code, messages, _ = run("read", "--config", config, "--catalog", catalog, "--state", state)
    mine = stream_messages(messages, "s")
    assert code == 0 and [m["trace"]["estimate"]["byte_estimate"] for m in mine if kind(m) == "ESTIMATE"] == [sizes]
    assert not [m for m in mine if m["type"] == "STATE"] and len([m for m in mine if m["type"] == "RECORD"]) == 6


def _discovered(config: str) -> list[dict]:
    _, messages, _ = run("discover", "--config", config)
    return messages[0]["catalog"]["streams"]


def test_formats_fixtures_end_to_end(tmp_path):
    config = write(tmp_path, "config.json", {"root_url": str(FORMATS)})
    streams = _discovered(config)
    assert [s["name"] for s in streams] == STREAMS  # every stream of the bundled testdata
    catalog = write(tmp_path, "catalog.json", catalog_for(streams))
    code, messages, _ = run("read", "--config", config, "--catalog", catalog)
    assert code == 0
    validators = {s["name"]: jsonschema.Draft7Validator(s["json_schema"], format_checker=CHECKER) for s in streams}
    counts: dict[str, int] = {}
    for m in messages:
        if m["type"] == "RECORD":
            record = m["record"]
            errors = list(validators[record["stream"]].iter_errors(record["data"]))
            assert not errors, (record, errors[0].message)
            counts[record["stream"]] = counts.get(record["stream"], 0) + 1
    assert counts == {"avro": 50, "events": 250, "excel": 25, "orders": 100, "users": 90, "zipped": 40}
    for name, total in counts.items():
        states = [m["state"] for m in stream_messages(messages, name) if m["type"] == "STATE"]
        assert sum(s["sourceStats"]["recordCount"] for s in states) == total
    [zipped] = [m["trace"]["estimate"] for m in messages if kind(m) == "ESTIMATE" and m["trace"]["estimate"]["name"] == "zipped"]
    assert zipped["byte_estimate"] > 0
