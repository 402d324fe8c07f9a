"""Known fake credentials never appear in any output of des-destination or des sync, failing runs included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.reliability.helpers import FAKE_KEY, FAKE_SECRET, REPO


def _run(args, stdin: bytes = b"") -> str:
    out = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, timeout=120, cwd=REPO)
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


@pytest.mark.slow
def test_fake_keys_never_printed(tmp_path, s3_endpoint, s3_bucket):
    secrets = {"access_key_id": FAKE_KEY, "secret_access_key": FAKE_SECRET}
    # Wrong keys against the real test server, and a server that is not there at all.
    dests = {
        "denied": {"bucket_name": s3_bucket, "endpoint": s3_endpoint.endpoint_url, "region": "us-east-1", **secrets,
                   "catalog_path": str(tmp_path / "c1.sqlite")},
        "down": {"bucket_name": s3_bucket, "endpoint": "http://127.0.0.1:1", "region": "us-east-1", **secrets,
                 "catalog_path": str(tmp_path / "c2.sqlite")},
        "bad": {"root_url": "x", **secrets, "max_bytes": -1},
    }
    catalog = tmp_path / "cat.json"
    catalog.write_text(json.dumps({"streams": [{"stream": {"name": "s", "json_schema": {}}, "sync_mode": "full_refresh",
                                                "destination_sync_mode": "append"}]}))
    record = b'{"type": "RECORD", "record": {"stream": "s", "data": {"a": 1}}}\n'
    outputs = []
    for name, cfg in dests.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(cfg))
        outputs.append(_run(["-m", "connector.airbyte.destination_main", "check", "--config", str(path)]))
        outputs.append(_run(["-m", "connector.airbyte.destination_main", "write", "--config", str(path),
                             "--catalog", str(catalog)], record))
        if name == "down":
            continue  # the client's own connection retries make this one slow; check/write cover it
        src = tmp_path / f"src-{name}.json"
        src.write_text(json.dumps({"bucket_name": s3_bucket, "endpoint": cfg.get("endpoint", s3_endpoint.endpoint_url),
                                   "region": "us-east-1", **secrets}))
        outputs.append(_run(["-m", "connector.cli", "sync", "--config", str(src), "--destination", str(path)]))
        outputs.append(_run(["-m", "connector.cli", "--debug", "sync", "--config", str(src), "--destination", str(path)]))
    everything = "\n".join(outputs)
    assert "error" in everything.lower()  # the runs did fail, and said so
    assert FAKE_KEY not in everything and FAKE_SECRET not in everything
