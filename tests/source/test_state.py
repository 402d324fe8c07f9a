"""Incremental state: cursor + keys at the cursor, resume after interruption, same-second files."""

from __future__ import annotations

import json

from datetime import datetime, timedelta, timezone

from connector.source import FileBatch, FileDone, Source, StreamState
from connector.source.state import format_time, parse_input_state, parse_time
from tests.source.helpers import drain, put, s3_config, write_local

T0 = datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 1, 15, 10, 31, 0, tzinfo=timezone.utc)


def test_state_shape_and_incremental_on_s3(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"u/a.csv": b"i\n1\n2\n", "u/b.csv": b"i\n3\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    rows, done = drain(src, "u")
    assert [r["i"] for r in rows] == [1, 2, 3]
    state = done[-1].state
    assert set(state) == {"_last_modified_time", "_files_at_cursor", "_history", "_history_start"}
    assert state["_last_modified_time"].endswith("Z")
    cursor = parse_time(state["_last_modified_time"])
    assert parse_time(state["_history_start"]) == cursor - timedelta(days=3)  # the default window
    assert drain(src, "u", state) == ([], [])  # nothing new
    put(s3_endpoint, s3_bucket, {"u/c.csv": b"i\n4\n"})
    rows, done = drain(src, "u", state)
    assert [r["i"] for r in rows] == [4] and done[0].file.key == "u/c.csv"
    # full refresh ignores the state
    rows, _ = drain(src, "u", done[-1].state, sync_mode="full_refresh")
    assert sorted(r["i"] for r in rows) == [1, 2, 3, 4]


def test_same_second_file_after_cursor_not_lost(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"i\n1\n", "s/c.csv": b"i\n3\n"}, T0)
    src = Source({"root_url": str(tmp_path), "lookback_window_days": 0})  # no window: the original shape
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


# -- look-back window and history: the state logic over random sequences of runs ------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from connector.source.listing import FileRef  # noqa: E402

BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=100)


def ref(key: str, seconds: float) -> FileRef:
    return FileRef(path=key, key=key, url=key, size=1, last_modified=BASE + timedelta(seconds=seconds))


#: A step: new files at offsets (seconds) from the newest file so far (negative: late), or a run
#: that is interrupted after a number of files (None: runs to the end).
steps = st.lists(st.one_of(
    st.tuples(st.just("files"), st.lists(st.integers(-250, 60), min_size=1, max_size=4)),
    st.tuples(st.just("run"), st.one_of(st.none(), st.integers(0, 5)))), max_size=14)


def simulate(plan, max_history: int):
    """(reads per key, {key: cursor when the key appeared}); the state goes through JSON between runs."""
    files: dict[str, FileRef] = {}
    reads: dict[str, int] = {}
    seen_cursor: dict[str, datetime | None] = {}
    saved: dict = {}
    newest = 0
    for kind, arg in plan + [("run", None)]:
        state = StreamState.from_dict(json.loads(json.dumps(saved)), lookback=WINDOW, max_history=max_history)
        if kind == "files":
            for offset in arg:
                key = f"f{len(files):03d}"
                files[key] = ref(key, max(0, newest + offset))
                seen_cursor[key] = state.cursor
            newest = max(newest, max((r.last_modified - BASE).total_seconds() for r in files.values()))
            continue
        pending = state.pending(files.values())
        for r in pending[:arg]:
            reads[r.key] = reads.get(r.key, 0) + 1
            state = state.advance(r)
            saved = state.to_dict()  # persisted after each file: the run may stop here
    return files, reads, seen_cursor


@settings(max_examples=300, deadline=None)
@given(plan=steps)
def test_every_file_inside_the_window_is_read_exactly_once(plan):
    files, reads, seen_cursor = simulate(plan, max_history=10_000)
    assert all(n == 1 for n in reads.values()), reads  # nothing twice
    for key, r in files.items():
        cursor = seen_cursor[key]
        if cursor is None or r.last_modified >= cursor - WINDOW:
            assert reads.get(key) == 1, (key, r.last_modified, cursor)  # nothing inside the window skipped


@settings(max_examples=200, deadline=None)
@given(plan=steps)
def test_a_full_history_drops_its_oldest_keys_but_never_reads_twice(plan):
    files, reads, seen_cursor = simulate(plan, max_history=2)
    assert all(n == 1 for n in reads.values()), reads
    for key, r in files.items():  # files newer than the cursor (or at it) are never lost
        if seen_cursor[key] is None or r.last_modified > seen_cursor[key]:
            assert reads.get(key) == 1


def test_history_is_bounded_and_keeps_the_keys_at_the_cursor():
    state = StreamState(lookback=timedelta(days=3), max_history=3)
    for i in range(6):
        state = state.advance(ref(f"old{i}", i))
    assert sorted(state.history) == ["old3", "old4", "old5"]
    assert state.start == BASE + timedelta(seconds=3)  # old0..2 now count as synced: history stays small
    for i in range(5):  # many files in the cursor's second: all kept, or one would be read again
        state = state.advance(ref(f"same{i}", 10))
    assert sorted(state.history) == [f"same{i}" for i in range(5)]
    assert state.to_dict()["_files_at_cursor"] == [f"same{i}" for i in range(5)]


def test_old_state_forms_are_read_with_their_meaning():
    cursor = "2024-01-15T10:30:00Z"
    at = ref("k", 0).__class__(path="a", key="a", url="a", size=1, last_modified=parse_time(cursor))
    before = ref("b", 0).__class__(path="b", key="b", url="b", size=1, last_modified=parse_time(cursor) - timedelta(1))
    olake = StreamState.from_dict({"_last_modified_time": cursor})
    assert not olake.is_pending(at) and not olake.is_pending(before)
    assert olake.to_dict() == {"_last_modified_time": cursor}
    damaged = StreamState.from_dict({"_last_modified_time": cursor, "_files_at_cursor": []})
    assert damaged == olake and damaged.to_dict() == {"_last_modified_time": cursor}
    exact = StreamState.from_dict({"_last_modified_time": cursor, "_files_at_cursor": ["x"]})
    assert exact.is_pending(at) and not exact.is_pending(before)
    assert exact.to_dict() == {"_last_modified_time": cursor, "_files_at_cursor": ["x"]}


def test_a_narrower_window_never_skips_files_pending_in_an_interrupted_run():
    wide = StreamState(lookback=timedelta(seconds=100)).advance(ref("a", 200))
    assert wide.start == BASE + timedelta(seconds=100)
    narrow = StreamState.from_dict(wide.to_dict(), lookback=timedelta(seconds=10))  # config changed
    late = [ref("late1", 110), ref("late2", 120)]
    assert narrow.pending(late) == late
    resumed = StreamState.from_dict(narrow.advance(late[0]).to_dict(), lookback=timedelta(seconds=10))
    assert resumed.pending(late) == [late[1]]  # interrupted after late1: late2 is still pending


def test_a_state_built_without_a_start_keeps_its_meaning_through_json():
    state = StreamState(BASE + timedelta(seconds=10), {"a": BASE + timedelta(seconds=10)})
    late = ref("late", 1)
    assert state.is_pending(late)  # no start: nothing before the cursor counts as synced
    assert StreamState.from_dict(json.loads(json.dumps(state.to_dict()))).is_pending(late)


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(timezones=st.just(timezone.utc)))
def test_times_round_trip_through_the_state_text(moment):
    assert parse_time(format_time(moment)) == moment  # years before 1000 came out as "1-01-01T..."
