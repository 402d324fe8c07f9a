"""des-source read encodes the small batches of consecutive files together (tiny files paid the
per-batch encoding cost once each): the same bytes as one encoding per batch, in the same order,
and every STATE after the RECORDs of the files it covers."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.airbyte.entrypoint import Output
from connector.airbyte.source_main import _Records
from connector.records import record_chunks
from connector.source.read import FILE_COLUMNS
from tests.source.helpers import write_local
from tests.source.test_roundtrip_types import arrow_tables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMITTED_AT = re.compile(rb'^(\{"type":"RECORD","record":\{"stream":"s","emitted_at":)\d+', re.M)


def _file_batches(table: pa.Table, cuts: list[int]) -> list[pa.RecordBatch]:
    """``table`` cut into consecutive files' batches, each with its file's ``_last_modified_time``
    and ``_file`` (one value throughout, as the reader gives them)."""
    bounds = sorted({0, table.num_rows, *(c % (table.num_rows + 1) for c in cuts)})
    out = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        part = table.slice(a, b - a)
        n = part.num_rows
        when = pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i)] * n, pa.timestamp("us", "UTC"))
        part = part.append_column("_last_modified_time", when).append_column("_file", pa.array([f"s/f{i}.csv"] * n))
        out.extend(part.to_batches())
    return out


@given(tables=st.lists(arrow_tables(), min_size=1, max_size=3), cuts=st.lists(st.integers(0, 6), max_size=4),
       rows=st.integers(1, 20), nbytes=st.sampled_from([64, 4096, 1 << 20]))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_gathered_batches_encode_to_the_bytes_of_one_encoding_per_batch(tables, cuts, rows, nbytes):
    """Every Arrow type, batches of several schemas in a row, any gathering bounds."""
    batches = [b for t in tables for b in _file_batches(t, cuts)]
    expected = b"".join(bytes(p) for b in batches for p in record_chunks("s", b, 0, FILE_COLUMNS))
    sink = io.BytesIO()
    out = Output(sink)
    records = _Records(out, "s", rows=rows, nbytes=nbytes)
    for batch in batches:
        records.add(batch)
    records.flush()
    out.flush()
    assert EMITTED_AT.sub(rb"\g<1>0", sink.getvalue()) == expected


def test_every_state_follows_the_records_of_the_files_it_covers(tmp_path):
    """400 tiny files read incrementally: the first 100 STATEs one per file, later ones at most
    every second, and each after every RECORD of every file up to its cursor."""
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    n = 400
    for i in range(n):
        write_local(tmp_path / "data", {f"s/f{i:04d}.csv": b"i,v\n" + b"".join(b"%d,x\n" % (10 * i + r) for r in range(10))},
                    base + timedelta(seconds=i))
    (tmp_path / "config.json").write_text(json.dumps({"root_url": str(tmp_path / "data")}))
    stream = {"name": "s", "json_schema": {}, "supported_sync_modes": ["incremental"]}
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append",
        "cursor_field": ["_last_modified_time"]}]}))
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", "read", "--config",
                           str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
                          capture_output=True, timeout=180, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr
    seen: dict[str, int] = {}
    states = 0
    for line in proc.stdout.decode().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            data = message["record"]["data"]
            assert data["i"] // 10 == int(data["_file"][3:7])
            seen[data["_file"]] = seen.get(data["_file"], 0) + 1
        elif message["type"] == "STATE":
            states += 1
            cursor = datetime.fromisoformat(message["state"]["stream"]["stream_state"]["_last_modified_time"])
            covered = int((cursor - base).total_seconds())
            assert all(seen.get(f"s/f{i:04d}.csv") == 10 for i in range(covered + 1)), (states, covered)
    assert len(seen) == n and set(seen.values()) == {10}
    assert states > 100
