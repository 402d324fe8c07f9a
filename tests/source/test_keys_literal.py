"""Keys are read literally, and a listed file that cannot be opened is never passed silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connector.errors import ConnectorError
from connector.source import Source
from tests.source.helpers import drain, put, s3_config, write_local

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=timezone.utc)

#: Names s3fs, fsspec or URLs give a meaning to. "v.csv?versionId=1.csv" beside "v.csv": s3fs cut
#: the query off and read v.csv's content under the other name.
KEYS = ["w/v.csv", "w/v.csv?versionId=1.csv", "w/x?versionId=null.csv", "w/h#1.csv", "w/p%20.csv", "w/p%2F.csv",
        "w/sp ace.csv", "w/st*r.csv", "w/br[1].csv", "w/q?.csv", "w/a+b.csv", "w/ü€ 名.csv", "w/semi;c=1&d.csv",
        'w/quo"te.csv', "w/back\\slash.csv", "w/new\nline.csv", "w/tab\tx.csv", "w/ctl\x01.csv", "w/ls\u2028.csv",
        "w/cr\rx.csv"]
#: moto's HTTP server cannot route a path holding a newline (S3 takes it).
S3_KEYS = [key for key in KEYS if "\n" not in key]


def read_stream(tmp: Path, config: dict, stream: str) -> tuple[int, list[dict], str]:
    (tmp / "config.json").write_text(json.dumps(config))
    catalog = {"streams": [{"stream": {"name": stream, "json_schema": {}, "supported_sync_modes": ["incremental"]},
                            "sync_mode": "incremental", "destination_sync_mode": "append"}]}
    (tmp / "catalog.json").write_text(json.dumps(catalog))
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", "read", "--config",
                           str(tmp / "config.json"), "--catalog", str(tmp / "catalog.json")],
                          capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc.returncode, [json.loads(line) for line in proc.stdout.decode().split("\n") if line], proc.stderr.decode()


def records_by_file(messages: list[dict]) -> dict[str, int]:
    return {m["record"]["data"]["_file"]: m["record"]["data"]["i"] for m in messages if m["type"] == "RECORD"}


def test_s3_keys_are_read_literally(tmp_path, s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {key: b"i\n%d\n" % n for n, key in enumerate(S3_KEYS)})
    code, messages, stderr = read_stream(tmp_path, s3_config(s3_endpoint, s3_bucket), "w")
    assert code == 0, stderr[-2000:]
    assert records_by_file(messages) == {key: n for n, key in enumerate(S3_KEYS)}
    # the same through an s3:// root_url
    config = s3_config(s3_endpoint, s3_bucket)
    del config["bucket_name"]
    code, messages, stderr = read_stream(tmp_path, {**config, "root_url": f"s3://{s3_bucket}"}, "w")
    assert code == 0, stderr[-2000:]
    assert records_by_file(messages) == {key: n for n, key in enumerate(S3_KEYS)}


def test_local_keys_are_read_literally(tmp_path):
    write_local(tmp_path / "data", {key: b"i\n%d\n" % n for n, key in enumerate(KEYS)}, T0)
    code, messages, stderr = read_stream(tmp_path, {"root_url": str(tmp_path / "data")}, "w")
    assert code == 0, stderr[-2000:]
    assert records_by_file(messages) == {key: n for n, key in enumerate(KEYS)}


def test_a_listed_file_that_cannot_be_opened_is_an_error_not_a_deletion(s3_endpoint, s3_bucket):
    """A filesystem that does not take the key literally (a plain s3fs given as ``fs``) lists the
    object and fails to open it: that was logged as "deleted after listing" and the next file moved
    the cursor past it for good."""
    put(s3_endpoint, s3_bucket, {"w/x?versionId=1.csv": b"i\n1\n", "w/y.csv": b"i\n2\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket, max_threads=1), fs=s3_endpoint.s3fs())
    with pytest.raises(ConnectorError, match=r"w/x\?versionId=1\.csv: listed but cannot be opened"):
        drain(src, "w")


def test_a_broken_link_fails_the_stream_naming_it(tmp_path):
    data = tmp_path / "data"
    write_local(data, {"s/a.csv": b"i\n1\n"}, T0)
    os.symlink(tmp_path / "nowhere.csv", data / "s" / "b.csv")
    code, messages, _ = read_stream(tmp_path, {"root_url": str(data)}, "s")
    assert code == 1
    errors = [m["trace"]["error"]["message"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert len(errors) == 1 and "s/b.csv: listed but cannot be opened" in errors[0]
    states = [m["state"]["stream"]["stream_state"] for m in messages if m["type"] == "STATE"]
    assert all("s/b.csv" not in json.dumps(s) for s in states)


def test_file_deleted_after_listing_is_still_skipped(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"d/a.csv": b"i\n1\n", "d/b.csv": b"i\n2\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket, max_threads=1))
    events = src.read("d")  # lists now
    s3_endpoint.boto3_client().delete_object(Bucket=s3_bucket, Key="d/b.csv")
    rows = [r for e in events if hasattr(e, "batch") for r in e.batch.to_pylist()]
    assert [r["i"] for r in rows] == [1]


def test_start_date_overflowing_in_utc_fails_check_naming_the_field(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"root_url": str(tmp_path), "start_date": "0001-01-01T00:00:00+01:00"}))
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", "check", "--config",
                           str(tmp_path / "c.json")], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    messages = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [m["connectionStatus"]["status"] for m in messages] == ["FAILED"]
    assert "'start_date'" in messages[0]["connectionStatus"]["message"]
    assert "0001-01-01T00:00:00+01:00" in messages[0]["connectionStatus"]["message"]


def test_des_sync_files_mode_packs_s3_keys_literally(tmp_path, s3_endpoint, s3_bucket):
    from connector.store import Store
    from tests.sync.test_sync import sync

    # DES member names refuse backslashes and control characters (spec/DES_FORMAT.md): a named error.
    keys = [key for key in S3_KEYS if "\\" not in key and not any(ord(c) < 32 for c in key)]
    put(s3_endpoint, s3_bucket, {key: b"i\n%d\n" % n for n, key in enumerate(keys)})
    out = sync(tmp_path, s3_config(s3_endpoint, s3_bucket), "--mode", "files", "--no-progress")
    assert out.returncode == 0, out.stderr
    with Store(str(tmp_path / "store")) as store:
        bodies = sorted(store.read("w", key) for key in range(len(keys)))
    assert bodies == sorted(b"i\n%d\n" % n for n in range(len(keys)))  # each object's own bytes, once


def test_a_filesystem_opening_another_object_than_listed_is_an_error(s3_endpoint, s3_bucket):
    """A plain s3fs given as ``fs`` opens "v.csv" for "v.csv?versionId=1.csv": v.csv's rows
    under the other name, without a word, in the old code."""
    put(s3_endpoint, s3_bucket, {"w/v.csv": b"i\n1\n", "w/v.csv?versionId=1.csv": b"i\n2\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket, max_threads=1), fs=s3_endpoint.s3fs())
    with pytest.raises(ConnectorError, match=r"w/v\.csv\?versionId=1\.csv: opening it reads another object"):
        drain(src, "w")


def test_the_literal_s3_filesystem_keeps_one_attempt_and_one_get_per_object(tmp_path, s3_endpoint, s3_bucket):
    """Our s3fs subclass is still s3fs to the code that tunes it: s3fs's own retry layer off (or
    attempts multiply), and files mode fetches each object with one GET (no HEAD first)."""
    from connector.source.config import SourceConfig
    from tests.support.s3proxy import CountingProxy
    from tests.sync.test_sync import sync

    fs, _ = SourceConfig.from_dict(s3_config(s3_endpoint, s3_bucket)).filesystem()
    assert fs.retries == 1
    put(s3_endpoint, s3_bucket, {f"w/f{i}.json": b'{"i": %d}' % i for i in range(6)})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as seen:
        out = sync(tmp_path, s3_config(s3_endpoint, s3_bucket) | {"endpoint": proxy.url}, "--mode", "files",
                   "--no-progress")
    assert out.returncode == 0, out.stderr
    assert seen.count("HEAD") == 0 and seen.count("GET") >= 6, seen
