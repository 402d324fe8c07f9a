"""des-destination and the current Airbyte protocol, through real ``des-destination write`` runs:
destinationStats counts, Airbyte metadata per datapoint, generations and refreshes, sync modes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.destination.test_destination import CMD, config, ids, record, run  # noqa: F401


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
    assert raw == [b'{"type":"STATE","state":{"type":"LEGACY","data":{"cursor":123456789012345678901234567890,'
                   b'"f":1.50},"destinationStats":{"recordCount":1}}}']


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
