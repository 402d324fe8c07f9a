"""delivery_method use_file_transfer: files copied unchanged into the staging directory and sent as
RECORDs with a file_reference (des-source through a subprocess; the S3 test server for one)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from airbyte_protocol.models import AirbyteMessage

from connector.errors import ConfigError
from connector.source import FileDone, Source
from connector.source.transfer import FILE_SCHEMA, StagedFile
from tests.source.helpers import put, s3_config, write_local
from tests.source.test_airbyte_source import REPO, catalog_for, write

FILES = {
    "docs/report.pdf": random.Random(1).randbytes(300_000),
    "docs/2024/notes.csv": b"not,parsed\n\"broken\n",  # copied, never parsed
    "docs/2024/archive.zip": b"PK\x05\x06" + bytes(18),  # an (empty) archive is copied whole
}
TRANSFER = {"delivery_type": "use_file_transfer"}


def run(staging: Path, *args: str) -> tuple[int, list[dict]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBYTE_STAGING_DIRECTORY": str(staging)}
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", *args], cwd=REPO,
                          capture_output=True, timeout=120, env=env)
    messages = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    for message in messages:
        AirbyteMessage.parse_obj(message)
    return proc.returncode, messages


def test_des_source_stages_every_file_unchanged_and_resumes(tmp_path):
    write_local(tmp_path / "root", FILES)
    staging = tmp_path / "staging"
    staging.mkdir()
    config = write(tmp_path, "config.json", {"root_url": str(tmp_path / "root"), "delivery_method": TRANSFER})
    code, messages = run(staging, "discover", "--config", config)
    [stream] = messages[0]["catalog"]["streams"]
    assert code == 0 and stream["is_file_based"] is True and stream["json_schema"] == FILE_SCHEMA
    catalog = write(tmp_path, "catalog.json", catalog_for([stream]))
    code, messages = run(staging, "read", "--config", config, "--catalog", catalog)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    states = [m["state"] for m in messages if m["type"] == "STATE"]
    assert code == 0 and len(records) == 3 and len(states) == 3
    assert [s["sourceStats"]["recordCount"] for s in states] == [1, 1, 1]
    for record in records:
        jsonschema.validate(record["data"], FILE_SCHEMA)
        ref = record["file_reference"]
        key = record["data"]["_file"]
        assert ref["source_file_relative_path"] == key and ref["file_size_bytes"] == len(FILES[key])
        staged = Path(ref["staging_file_url"])
        assert staged.is_absolute() and staged.is_relative_to(staging) and staged.read_bytes() == FILES[key]
        assert staged.as_posix().endswith("/" + key)
        assert record["data"]["file_name"] == key.rsplit("/", 1)[1] and record["data"]["bytes"] == len(FILES[key])
        assert record["data"]["folder"] == key.rsplit("/", 1)[0]
    assert sorted(r["data"]["_file"] for r in records) == sorted(FILES)
    assert not list(staging.rglob("*.partial"))

    state = write(tmp_path, "state.json", [states[-1]])
    code, messages = run(staging, "read", "--config", config, "--catalog", catalog, "--state", state)
    assert code == 0 and not [m for m in messages if m["type"] == "RECORD"]


def test_flattened_paths_and_metadata_only(tmp_path):
    write_local(tmp_path / "root", FILES)
    src = Source({"root_url": str(tmp_path / "root"),
                  "delivery_method": {**TRANSFER, "preserve_directory_structure": False}})
    staged = [e for e in src.stage("docs", directory=str(tmp_path / "out")) if isinstance(e, StagedFile)]
    assert sorted(s.relative_path for s in staged) == ["archive.zip", "notes.csv", "report.pdf"]
    assert all(Path(s.path).name == s.relative_path for s in staged)
    events = list(src.stage("docs", directory=str(tmp_path / "none"), include_files=False))
    assert [e.path for e in events if isinstance(e, StagedFile)] == [None] * 3
    assert len([e for e in events if isinstance(e, FileDone)]) == 3 and not (tmp_path / "none").exists()


def test_include_files_false_in_the_catalog_sends_metadata_only(tmp_path):
    write_local(tmp_path / "root", FILES)
    staging = tmp_path / "staging"
    staging.mkdir()
    config = write(tmp_path, "config.json", {"root_url": str(tmp_path / "root"), "delivery_method": TRANSFER})
    _, messages = run(staging, "discover", "--config", config)
    configured = catalog_for(messages[0]["catalog"]["streams"])
    configured["streams"][0]["include_files"] = False
    code, messages = run(staging, "read", "--config", config, "--catalog", write(tmp_path, "c.json", configured))
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert code == 0 and len(records) == 3 and not any("file_reference" in r for r in records)
    assert not list(staging.iterdir())


def test_files_staged_from_s3(tmp_path, s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"t/" + k: v for k, v in FILES.items()})
    src = Source(s3_config(s3_endpoint, s3_bucket, path_prefix="t", delivery_method=TRANSFER))
    staged = [e for e in src.stage("docs", directory=str(tmp_path)) if isinstance(e, StagedFile)]
    assert {s.relative_path: Path(s.path).read_bytes() for s in staged} == FILES
    assert all(s.file.url.startswith(f"s3://{s3_bucket}/t/docs/") for s in staged)


def test_file_transfer_config_errors(tmp_path):
    write_local(tmp_path, FILES)
    with pytest.raises(ConfigError, match=r"'delivery_method': use_file_transfer copies files unchanged"):
        list(Source({"root_url": str(tmp_path), "delivery_method": TRANSFER}).read("docs"))
    with pytest.raises(ConfigError, match=r"'delivery_method.preserve_directory_structure' applies to "
                                          r"delivery_type 'use_file_transfer' only"):
        Source({"root_url": ".", "delivery_method": {"delivery_type": "use_records_transfer",
                                                     "preserve_directory_structure": False}})
    with pytest.raises(ConfigError, match=r"delivery_type': 'copy' is not one of"):
        Source({"root_url": ".", "delivery_method": {"delivery_type": "copy"}})
