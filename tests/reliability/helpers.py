"""Shared helpers of the reliability tests: real subprocesses, message parsing, seeded test data."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]

#: Known fake credentials: they must never show up in any output.
FAKE_KEY = "AKIAFAKEKEY123456789"
FAKE_SECRET = "fake/secret+KEY"


@dataclass
class Run:
    """One finished subprocess: exit code, parsed stdout messages, raw streams, wall time."""

    code: int
    messages: list[dict]
    stdout: str
    stderr: str
    seconds: float

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == kind]

    def records(self) -> list[tuple[str, dict]]:
        """(stream, data) of every RECORD, in output order (``emitted_at`` left out)."""
        return [(m["record"]["stream"], m["record"]["data"]) for m in self.of_type("RECORD")]

    def states(self) -> list[dict]:
        return [m["state"] for m in self.of_type("STATE")]

    def errors(self) -> list[dict]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"].get("type") == "ERROR"]


def run_module(module: str, *args: str, timeout: float = 120, stdin: bytes | None = None,
               cwd: Path = REPO, env: dict | None = None) -> Run:
    """``python -m module args`` as a real subprocess; stdout must be JSON lines only."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, input=stdin, capture_output=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    seconds = time.monotonic() - start
    stdout = proc.stdout.decode()
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return Run(proc.returncode, messages, stdout, proc.stderr.decode(), seconds)


def source(*args: str, timeout: float = 120) -> Run:
    return run_module("connector.airbyte.source_main", *args, timeout=timeout)


def write_json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def source_config(endpoint_url: str, bucket: str, **extra) -> dict:
    return {"bucket_name": bucket, "region": "us-east-1", "endpoint": endpoint_url,
            "access_key_id": "testing", "secret_access_key": "testing", **extra}


def configured_catalog(streams: list[dict], mode: str = "incremental") -> dict:
    return {"streams": [{"stream": s, "sync_mode": mode, "destination_sync_mode": "append",
                         "cursor_field": ["_last_modified_time"]} for s in streams]}


def dataset_files(seed: int, files_per_stream: int = 4, rows: int = 40) -> dict[str, bytes]:
    """Seeded CSV (plain and gzip), JSON Lines and Parquet files in three streams under ``in/``."""
    rng = random.Random(seed)
    out: dict[str, bytes] = {}
    for i in range(files_per_stream):
        lines = ["id,name,score"] + [f"{i * rows + r},n{rng.randrange(10**6)},{rng.random():.6f}" for r in range(rows)]
        body = ("\n".join(lines) + "\n").encode()
        out[f"in/users/u{i:02d}.csv" + (".gz" if i % 2 else "")] = gzip.compress(body, mtime=0) if i % 2 else body
        events = [json.dumps({"id": i * rows + r, "kind": rng.choice("abc"), "tags": {"k": rng.randrange(9)}})
                  for r in range(rows)]
        out[f"in/events/e{i:02d}.jsonl"] = ("\n".join(events) + "\n").encode()
        table = pa.table({"id": list(range(i * rows, (i + 1) * rows)),
                          "v": [rng.random() for _ in range(rows)]})
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=rows // 2)
        out[f"in/metrics/m{i:02d}.parquet"] = sink.getvalue()
    return out


def put_objects(boto3_client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        boto3_client.put_object(Bucket=bucket, Key=key, Body=body)


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text
