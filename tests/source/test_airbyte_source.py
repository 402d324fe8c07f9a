"""des-source through a real subprocess; every message validated by airbyte_protocol's models."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from airbyte_protocol.models import AirbyteMessage, ConfiguredAirbyteCatalog

from connector.airbyte.entrypoint import Output
from tests.source.helpers import put, s3_config

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = REPO) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", *args], cwd=cwd,
                          capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    messages = []
    for line in proc.stdout.decode().splitlines():
        message = json.loads(line)  # stdout holds JSON lines only
        AirbyteMessage.parse_obj(message)  # and each is a valid Airbyte message
        messages.append(message)
    return proc.returncode, messages, proc.stderr.decode()


def write(tmp_path: Path, name: str, obj) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def catalog_for(streams: list[dict], mode: str = "incremental") -> dict:
    catalog = {"streams": [{"stream": s, "sync_mode": mode, "destination_sync_mode": "append",
                            "cursor_field": ["_last_modified_time"]} for s in streams]}
    ConfiguredAirbyteCatalog.parse_obj(catalog)
    return catalog


def test_spec():
    code, messages, _ = run("spec")
    assert code == 0 and [m["type"] for m in messages] == ["SPEC"]
    assert messages[0]["spec"]["connectionSpecification"]["properties"]["secret_access_key"]["airbyte_secret"]


def test_check_discover_read_on_s3_and_resume(tmp_path, s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {
        "in/users/a.csv": b"id,name\n1,a\n2,b\n",
        "in/orders/o.jsonl": b'{"id": 1, "ship": {"city": "Paris"}}\n',
    })
    config = write(tmp_path, "config.json", s3_config(s3_endpoint, s3_bucket, path_prefix="in"))
    code, messages, _ = run("check", "--config", config)
    assert code == 0 and messages == [{"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}]

    code, messages, _ = run("discover", "--config", config)
    assert code == 0 and messages[0]["type"] == "CATALOG"
    streams = messages[0]["catalog"]["streams"]
    assert [s["name"] for s in streams] == ["orders", "users"]
    catalog = write(tmp_path, "catalog.json", catalog_for(streams))

    code, messages, _ = run("read", "--config", config, "--catalog", catalog)
    assert code == 0
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert [r["data"]["id"] for r in records if r["stream"] == "users"] == [1, 2]
    assert records[0]["data"]["ship"] == {"city": "Paris"}
    assert {"_last_modified_time", "_file"} <= set(records[0]["data"])
    statuses = [(m["trace"]["stream_status"]["stream_descriptor"]["name"], m["trace"]["stream_status"]["status"])
                for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "STREAM_STATUS"]
    assert statuses == [("orders", "STARTED"), ("orders", "RUNNING"), ("orders", "COMPLETE"),
                        ("users", "STARTED"), ("users", "RUNNING"), ("users", "COMPLETE")]
    states = [m["state"] for m in messages if m["type"] == "STATE"]
    assert [s["type"] for s in states] == ["STREAM", "STREAM"]

    # resume with the emitted state: no records, state repeated
    state = write(tmp_path, "state.json", states)
    code, messages, _ = run("read", "--config", config, "--catalog", catalog, "--state", state)
    assert code == 0 and not [m for m in messages if m["type"] == "RECORD"]
    assert [m["state"]["stream"] for m in messages if m["type"] == "STATE"] == [s["stream"] for s in states]


def discovered_csv(tmp_path: Path, body: bytes) -> tuple[Path, str, list[dict]]:
    """A local root holding stream ``s`` with ``s/a.csv``: (root, config path, discovered streams)."""
    root = tmp_path / "data"
    (root / "s").mkdir(parents=True)
    (root / "s" / "a.csv").write_bytes(body)
    config = write(tmp_path, "config.json", {"root_url": str(root)})
    code, messages, _ = run("discover", "--config", config)
    assert code == 0
    return root, config, messages[0]["catalog"]["streams"]


def test_read_bad_file_gives_trace_error_and_incomplete(tmp_path):
    root, config, streams = discovered_csv(tmp_path, b"a,b\n1,2\n3,4,5\n")
    catalog = write(tmp_path, "catalog.json", catalog_for(streams))
    code, messages, _ = run("read", "--config", config, "--catalog", catalog)
    assert code == 1
    [error] = [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert "s/a.csv" in error["message"] and "line 3" in error["message"]
    assert messages[-1]["trace"]["stream_status"]["status"] == "INCOMPLETE"
    assert not [m for m in messages if m["type"] == "STATE"]

    skip = write(tmp_path, "skip.json", {"root_url": str(root), "on_bad_record": "skip"})
    code, messages, _ = run("read", "--config", skip, "--catalog", catalog)
    assert code == 0 and len([m for m in messages if m["type"] == "RECORD"]) == 1
    logs = [m["log"] for m in messages if m["type"] == "LOG"]
    assert any(log["level"] == "WARN" and "skipped 1 bad record" in log["message"] for log in logs)


def test_read_emits_the_fields_the_configured_schema_selects(tmp_path):
    _, config, [stream] = discovered_csv(tmp_path, b"a,b,c\n1,x,2.5\n")
    props = stream["json_schema"]["properties"]
    assert {"a", "b", "c", "_file", "_last_modified_time"} <= set(props)
    picked = dict(stream, json_schema=dict(stream["json_schema"], properties={k: props[k] for k in ("c", "_file")}))
    everything = dict(stream, json_schema={"type": "object"})  # no properties: every column
    for configured, fields in ((picked, {"c", "_file"}), (everything, set(props))):
        catalog = write(tmp_path, "catalog.json", catalog_for([configured], "full_refresh"))
        code, messages, _ = run("read", "--config", config, "--catalog", catalog)
        [record] = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
        assert code == 0 and set(record) == fields and record["_file"] == "s/a.csv"


def test_bad_config_and_args(tmp_path):
    secret = "s3cr3t-VALUE-never-shown"
    bad = write(tmp_path, "bad.json", {"bucket_name": "b", "max_threads": "many", "access_key_id": "AK",
                                       "secret_access_key": secret})
    code, messages, stderr = run("check", "--config", bad)
    assert code == 0 and messages[0]["connectionStatus"]["status"] == "FAILED"
    assert "max_threads" in messages[0]["connectionStatus"]["message"]
    code, messages, stderr = run("discover", "--config", bad)
    assert code == 1 and messages[0]["trace"]["error"]["failure_type"] == "config_error"
    assert "max_threads" in messages[0]["trace"]["error"]["message"]
    code, messages, stderr = run("discover", "--config", str(tmp_path / "missing.json"))
    assert code == 1 and "not found" in messages[0]["trace"]["error"]["message"]
    for args in (("read", "--config", bad), ("nonsense",), ()):
        code, messages, stderr = run(*args)
        assert code == 2 and messages == [] and "error" in stderr
    everything = json.dumps(messages) + stderr
    assert secret not in everything


def test_check_on_empty_root_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    config = write(tmp_path, "c.json", {"root_url": str(tmp_path / "empty")})
    code, messages, _ = run("check", "--config", config)
    assert messages[0]["connectionStatus"]["status"] == "FAILED"
    assert "no data files" in messages[0]["connectionStatus"]["message"]


def test_examples_local_config_reads_testdata():
    code, messages, _ = run("discover", "--config", "examples/local/source.json")
    assert code == 0 and [s["name"] for s in messages[0]["catalog"]["streams"]] == ["avro", "events", "excel", "orders", "users", "zipped"]


class _SlowSink(io.RawIOBase):
    """A pipe whose reader is slow: each write takes a moment, so the writer thread falls behind."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.fail_after = fail_after

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.fail_after is not None and len(self.chunks) >= self.fail_after:
            raise BrokenPipeError(32, "Broken pipe")
        time.sleep(0.002)
        self.chunks.append(bytes(data))
        return len(data)


def test_output_writes_in_call_order_and_flush_waits_for_the_pipe():
    sink = _SlowSink()
    out = Output(sink)
    threads = [threading.Thread(target=lambda t=t: [out.raw(b"%d:%d\n" % (t, i)) for i in range(50)])
               for t in range(3)]
    for th in threads:
        th.start()
    out.message({"type": "LOG", "log": {"level": "INFO", "message": "main"}})
    for th in threads:
        th.join()
    out.flush()
    lines = b"".join(sink.chunks).splitlines()
    assert len(lines) == 151
    for t in range(3):  # each thread's lines in its own order, none lost or doubled
        assert [ln for ln in lines if ln.startswith(b"%d:" % t)] == [b"%d:%d" % (t, i) for i in range(50)]


def test_output_raises_a_failed_write_on_the_next_call():
    out = Output(_SlowSink(fail_after=2))
    for _ in range(3):
        out.raw(b"x\n")
    with pytest.raises(BrokenPipeError):
        out.flush()
    with pytest.raises(BrokenPipeError):
        out.raw(b"more\n")


class _HeldSink(io.RawIOBase):
    """A pipe that takes nothing until released: what waits for it is what Output holds."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.release = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.release.wait()
        self.chunks.append(bytes(data))
        return len(data)


def test_output_holds_at_most_its_budget_in_bytes_and_takes_any_bytes_like_piece():
    sink = _HeldSink()
    out = Output(sink)
    out.BUDGET = 1000
    piece = memoryview(bytearray(b"x" * 199 + b"\n"))
    handed = []

    def producer():
        for i in range(8):
            out.raw(piece)
            handed.append(i)
        out.raw(b"y" * 5000 + b"\n")  # larger than the budget: waits until nothing else does
        handed.append("big")

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        # One piece in the (stalled) write, five waiting (1000 bytes): the seventh call blocks.
        assert handed == [0, 1, 2, 3, 4, 5]
    finally:
        sink.release.set()
        thread.join(timeout=10)
    out.flush()
    assert handed == [0, 1, 2, 3, 4, 5, 6, 7, "big"]
    assert b"".join(sink.chunks) == bytes(piece) * 8 + b"y" * 5000 + b"\n"


def test_read_into_a_pipe_closed_early_ends_quietly(tmp_path):
    root = tmp_path / "data" / "s"
    root.mkdir(parents=True)
    (root / "a.jsonl").write_bytes(b"".join(b'{"id":%d,"text":"%s"}\n' % (i, b"x" * 50) for i in range(200_000)))
    config = write(tmp_path, "config.json", {"root_url": str(root.parent)})
    _, messages, _ = run("discover", "--config", config)
    catalog = write(tmp_path, "catalog.json", catalog_for(messages[0]["catalog"]["streams"]))
    proc = subprocess.Popen([sys.executable, "-m", "connector.airbyte.source_main", "read", "--config", config,
                             "--catalog", catalog], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    assert json.loads(first)["type"] == "TRACE"
    assert proc.wait(timeout=60) == 0
    stderr = proc.stderr.read().decode()
    assert "Traceback" not in stderr, stderr
