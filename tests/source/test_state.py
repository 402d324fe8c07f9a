"""Incremental state: cursor + keys at the cursor, resume after interruption, same-second files."""

from __future__ import annotations

from datetime import datetime, timezone

from connector.source import FileBatch, FileDone, Source, StreamState
from connector.source.state import parse_input_state
from tests.source.helpers import drain, put, s3_config, write_local

T0 = datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 1, 15, 10, 31, 0, tzinfo=timezone.utc)


def test_state_shape_and_incremental_on_s3(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"u/a.csv": b"i\n1\n2\n", "u/b.csv": b"i\n3\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    rows, done = drain(src, "u")
    assert [r["i"] for r in rows] == [1, 2, 3]
    state = done[-1].state
    assert set(state) == {"_last_modified_time", "_files_at_cursor"}
    assert state["_last_modified_time"].endswith("Z")
    assert drain(src, "u", state) == ([], [])  # nothing new
    put(s3_endpoint, s3_bucket, {"u/c.csv": b"i\n4\n"})
    rows, done = drain(src, "u", state)
    assert [r["i"] for r in rows] == [4] and done[0].file.key == "u/c.csv"
    # full refresh ignores the state
    rows, _ = drain(src, "u", done[-1].state, sync_mode="full_refresh")
    assert sorted(r["i"] for r in rows) == [1, 2, 3, 4]


def test_same_second_file_after_cursor_not_lost(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"i\n1\n", "s/c.csv": b"i\n3\n"}, T0)
    src = Source({"root_url": str(tmp_path)})
    _, done = drain(src, "s")
    state = done[-1].state
    assert state == {"_last_modified_time": "2024-01-15T10:30:00Z", "_files_at_cursor": ["s/a.csv", "s/c.csv"]}
    # Written in the same second as the cursor, after the sync: a strictly-greater cursor loses it.
    write_local(tmp_path, {"s/b.csv": b"i\n2\n"}, T0)
    rows, done = drain(src, "s", state)
    assert [r["i"] for r in rows] == [2]
    assert done[-1].state["_files_at_cursor"] == ["s/a.csv", "s/b.csv", "s/c.csv"]
    # A newer file resets the list: state stays small.
    write_local(tmp_path, {"s/d.csv": b"i\n4\n"}, T1)
    _, done = drain(src, "s", done[-1].state)
    assert done[-1].state == {"_last_modified_time": "2024-01-15T10:31:00Z", "_files_at_cursor": ["s/d.csv"]}


def test_olake_state_without_key_list_is_accepted(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"i\n1\n"}, T0)
    write_local(tmp_path, {"s/b.csv": b"i\n2\n"}, T1)
    src = Source({"root_url": str(tmp_path)})
    assert [f.key for f in src.files("s", {"_last_modified_time": "2024-01-15T10:30:00Z"})] == ["s/b.csv"]


def test_interrupted_then_resumed_read(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {f"u/{i:02d}.jsonl": b'{"i": %d}\n{"i": %d}\n' % (2 * i, 2 * i + 1) for i in range(6)})
    src = Source(s3_config(s3_endpoint, s3_bucket, max_threads=3, batch_size=1))
    emitted, saved = [], None
    events = src.read("u")
    for event in events:
        if isinstance(event, FileBatch):
            emitted.extend(r["i"] for r in event.batch.to_pylist())
        elif isinstance(event, FileDone):
            saved = event.state
            if len(emitted) >= 6:
                break  # the process "dies" after 3 files; only their state was persisted
    events.close()
    assert emitted == list(range(6))
    rows, done = drain(src, "u", saved)
    assert [r["i"] for r in rows] == list(range(6, 12))  # finished files are not re-emitted
    assert [d.file.key for d in done] == ["u/03.jsonl", "u/04.jsonl", "u/05.jsonl"]


def test_state_only_after_whole_file(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"i\n" + b"".join(b"%d\n" % i for i in range(100))}, T0)
    src = Source({"root_url": str(tmp_path), "batch_size": 10})
    kinds = ["batch" if isinstance(e, FileBatch) else "done" for e in src.read("s")]
    assert kinds == ["batch"] * 10 + ["done"]


def test_parse_input_state_forms():
    s = {"_last_modified_time": "2024-01-15T10:30:00Z", "_files_at_cursor": ["a"]}
    stream_msgs = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "u"}, "stream_state": s}}]
    assert parse_input_state(stream_msgs) == {"u": s}
    assert parse_input_state({"type": "LEGACY", "data": {"u": s}}) == {"u": s}
    assert parse_input_state({"u": s}) == {"u": s}  # Olake's plain map
    assert parse_input_state(None) == {}
    assert StreamState.from_dict(s).to_dict() == s
