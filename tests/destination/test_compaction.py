"""Compaction of superseded records (``des datasets aggregate NAME --compact``) of an append_dedup
dataset written by des-destination: the latest record per primary key by cursor, bytes and Airbyte
metadata unchanged, the exactly-once checkpoint kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.store import Store
from connector.store.compaction import latest_rows

DEST = [sys.executable, "-m", "connector.airbyte.destination_main"]


def rec(i: int, updated: int | None, extra: str = "") -> bytes:
    data = {"id": i, "updated": updated, "v": f"{i}-{updated}{extra}"}
    return json.dumps({"type": "RECORD", "record": {"stream": "rows", "emitted_at": 10 + (updated or 0),
                                                    "data": data}}).encode() + b"\n"


def setup(tmp: Path) -> tuple[str, str]:
    (tmp / "dest.json").write_text(json.dumps({"root_url": str(tmp / "store"), "max_datapoints": 4}))
    (tmp / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": {"name": "rows", "json_schema": {}, "source_defined_primary_key": [["id"]]},
        "sync_mode": "incremental", "cursor_field": ["updated"], "destination_sync_mode": "append_dedup",
        "generation_id": 1, "minimum_generation_id": 0, "sync_id": 9}]}))
    return str(tmp / "dest.json"), str(tmp / "catalog.json")


def write(cfg: str, cat: str, body: bytes) -> None:
    out = subprocess.run(DEST + ["write", "--config", cfg, "--catalog", cat], input=body, capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "connector.cli", "datasets", "--root", str(tmp / "store"), *args],
                          capture_output=True, timeout=60)


def test_compact_keeps_latest_by_cursor_with_bytes_and_metadata(tmp_path):
    cfg, cat = setup(tmp_path)
    # id 1: updated 5 then (a late record) 3: the cursor, not the arrival, decides. id 2: a tie on
    # the cursor: the later record wins. id 3: null cursor loses to any value. id 4: one record.
    write(cfg, cat, rec(1, 5) + rec(2, 1) + rec(3, None) + rec(4, 2) + rec(2, 7, "a"))
    write(cfg, cat, rec(1, 3) + rec(2, 7, "b") + rec(3, 0) + rec(5, 1))
    with Store(str(tmp_path / "store")) as store:
        before = store.to_table("rows", meta=True).to_pylist()
        d = store.get_dataset("rows")
        assert d.metadata == {"primary_key": ["id"], "cursor_field": "updated"}
        checkpoint = store.checkpoint("rows")
    out = cli(tmp_path, "aggregate", "rows", "--compact")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"kept": 5, "dropped": 4}
    expected = [r for r in before if r["v"] in ("1-5", "4-2", "2-7b", "3-0", "5-1")]
    with Store(str(tmp_path / "store")) as store:
        after = store.to_table("rows", meta=True).to_pylist()
        assert after == expected  # old order, record fields and every _airbyte_* value (raw ids too)
        assert [store.read("rows", k) for k in range(5)] == [
            json.dumps({"id": r["id"], "updated": r["updated"], "v": r["v"]}, separators=(",", ":")).encode() + b"\n"
            for r in expected]
        assert store.checkpoint("rows") == checkpoint
        assert store.verify("rows") == []
        assert len(store.dataranges("rows")) == 1  # the CLI store's max_datapoints (100,000)
    # Nothing superseded: nothing to do. The next sync appends after the compacted records.
    assert json.loads(cli(tmp_path, "aggregate", "rows", "--compact").stdout) == {"kept": 5, "dropped": 0}
    write(cfg, cat, rec(4, 9))
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("rows").column("v").to_pylist() == ["1-5", "4-2", "2-7b", "3-0", "5-1", "4-9"]
        assert store.to_table("rows", latest_by=["id"]).column("v").to_pylist() == ["1-5", "2-7b", "3-0", "5-1", "4-9"]


def test_compact_needs_a_primary_key_and_is_opt_in(tmp_path):
    with Store(str(tmp_path / "store")) as store:
        store.write_records("plain", [[{"id": 1}, {"id": 1}]])
    out = cli(tmp_path, "aggregate", "plain", "--compact")
    assert out.returncode != 0 and b"no primary key to compact by" in out.stderr
    out = cli(tmp_path, "aggregate", "plain", "--compact", "--key", "id")
    assert out.returncode == 0 and json.loads(out.stdout) == {"kept": 1, "dropped": 1}, out.stderr
    out = cli(tmp_path, "aggregate", "plain", "0", "0", "--compact")
    assert out.returncode != 0 and b"give no FIRST/LAST" in out.stderr


rows = st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(-3, 3))), max_size=40)


@settings(max_examples=200, deadline=None)
@given(rows, st.booleans())
def test_latest_rows_matches_a_model(data, with_cursor):
    table = pa.table({"k": pa.array([k for k, _ in data], pa.int64()), "c": pa.array([c for _, c in data], pa.int64())})
    best: dict[int, int] = {}
    for row, (k, c) in enumerate(data):
        old = best.get(k)
        # A later row wins unless its cursor is lower (null is lowest).
        if old is None or not with_cursor or (c if c is not None else -99) >= (data[old][1] if data[old][1] is not None else -99):
            best[k] = row
    assert latest_rows("t", table, ["k"], "c" if with_cursor else None) == sorted(best.values())


def test_compact_across_containers_survives_a_catalog_restore(tmp_path):
    """Containers of max_datapoints each (row ids and columns cut with them); a catalog rebuilt
    from storage alone finds the compacted key space and its checkpoint."""
    cfg, cat = setup(tmp_path)
    write(cfg, cat, b"".join(rec(i % 3, i) for i in range(10)) + b"".join(rec(i, None) for i in range(3, 8)))
    with Store(str(tmp_path / "store"), max_datapoints=2) as store:
        before = store.to_table("rows", meta=True).to_pylist()
        checkpoint = store.checkpoint("rows")
        from connector.store.compaction import compact_superseded
        assert compact_superseded(store, "rows") == {"kept": 8, "dropped": 7}
        after = store.to_table("rows", meta=True).to_pylist()
        assert after == [before[i] for i in (7, 8, 9, 10, 11, 12, 13, 14)]
        assert [d.count for d in store.dataranges("rows")] == [2, 2, 2, 2]
    (tmp_path / "store" / ".des-catalog.sqlite").unlink()
    with Store(str(tmp_path / "store")) as store:
        store.restore()
        assert store.to_table("rows", meta=True).to_pylist() == after
        assert store.checkpoint("rows") == checkpoint
        assert store.verify("rows") == []
