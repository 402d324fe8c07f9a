"""State round trips through ``des-source read`` (a real subprocess): every accepted input form
means the same when it comes back, and late files (older than the cursor, visible after a sync)
are read exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.source.helpers import write_local

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone.utc)
T2 = datetime(2024, 1, 15, 11, 0, 0, tzinfo=timezone.utc)


def wrap(form: str, stream: str, state: dict) -> object:
    """``state`` of ``stream`` as a ``--state`` file of the given form."""
    if form == "stream":
        return [{"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": state}}]
    if form == "legacy":
        return {"type": "LEGACY", "data": {stream: state}}
    assert form == "plain"  # Olake's map
    return {stream: state}


class Reader:
    """Runs ``des-source read`` on one incremental stream, carrying the state between runs."""

    def __init__(self, tmp: Path, config: dict, stream: str, form: str) -> None:
        self.tmp, self.stream, self.form = tmp, stream, form
        (tmp / "config.json").write_text(json.dumps(config))
        catalog = {"streams": [{"stream": {"name": stream, "json_schema": {}, "supported_sync_modes": ["incremental"]},
                                "sync_mode": "incremental", "destination_sync_mode": "append"}]}
        (tmp / "catalog.json").write_text(json.dumps(catalog))
        self.state: dict | None = None

    def run(self) -> list[str]:
        """The ``_file`` of every record read; the last STATE becomes the next run's input."""
        args = ["read", "--config", str(self.tmp / "config.json"), "--catalog", str(self.tmp / "catalog.json")]
        if self.state is not None:
            (self.tmp / "state.json").write_text(json.dumps(wrap(self.form, self.stream, self.state)))
            args += ["--state", str(self.tmp / "state.json")]
        proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", *args], capture_output=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        messages = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        states = [m["state"]["stream"]["stream_state"] for m in messages if m["type"] == "STATE"]
        if self.state is not None:
            assert states, "a stream with a state must get a STATE back, or the platform loses it"
        if states:
            self.state = states[-1]
        return [m["record"]["data"]["_file"] for m in messages if m["type"] == "RECORD"]


OLAKE = {"_last_modified_time": "2024-01-15T10:30:00Z"}  # every file up to 10:30:00 is synced
EXACT = {"_last_modified_time": "2024-01-15T10:30:00Z", "_files_at_cursor": ["s/b.csv"]}  # c is not
#: What the old code wrote back for OLAKE: it only ever meant OLAKE, and is read that way.
DAMAGED = {"_last_modified_time": "2024-01-15T10:30:00Z", "_files_at_cursor": []}


@pytest.mark.parametrize("form", ["stream", "legacy", "plain"])
@pytest.mark.parametrize("start, first_run", [(OLAKE, []), (DAMAGED, []), (EXACT, ["s/c.csv"])])
def test_each_state_form_means_the_same_when_it_comes_back(tmp_path, form, start, first_run):
    data = tmp_path / "data"
    write_local(data, {"s/a.csv": b"i\n1\n"}, T0)
    write_local(data, {"s/b.csv": b"i\n2\n", "s/c.csv": b"i\n3\n"}, T1)
    reader = Reader(tmp_path, {"root_url": str(data)}, "s", form)
    reader.state = dict(start)
    assert reader.run() == first_run
    if start is OLAKE:
        assert reader.state == OLAKE  # nothing new: the same state, in the same form
    assert reader.run() == []  # and again: the old code re-read b and c here (duplicates)
    assert reader.run() == []
    write_local(data, {"s/d.csv": b"i\n4\n"}, T2)
    assert reader.run() == ["s/d.csv"]
    assert reader.run() == []


@pytest.mark.parametrize("form", ["stream", "plain"])
def test_state_written_by_a_read_round_trips(tmp_path, form):
    data = tmp_path / "data"
    write_local(data, {"s/a.csv": b"i\n1\n"}, T0)
    write_local(data, {"s/b.csv": b"i\n2\n"}, T1)
    reader = Reader(tmp_path, {"root_url": str(data)}, "s", form)
    assert reader.run() == ["s/a.csv", "s/b.csv"]
    first = reader.state
    assert reader.run() == [] and reader.state == first
    write_local(data, {"s/c.csv": b"i\n3\n"}, T1)  # same second as the cursor, after the sync
    assert reader.run() == ["s/c.csv"]
    assert reader.run() == []


def test_late_files_are_read_exactly_once(tmp_path):
    data = tmp_path / "data"
    write_local(data, {"s/a.csv": b"i\n1\n"}, T1)
    reader = Reader(tmp_path, {"root_url": str(data), "lookback_window_days": 1}, "s", "stream")
    assert reader.run() == ["s/a.csv"]
    # Visible only now, last modified before the cursor (a slow multipart upload, a replica...).
    write_local(data, {"s/late.csv": b"i\n2\n"}, T1 - timedelta(hours=1))
    write_local(data, {"s/ancient.csv": b"i\n3\n"}, T1 - timedelta(days=2))  # outside the window
    assert reader.run() == ["s/late.csv"]  # the old code never read it
    assert reader.run() == []
    # A late file beside a new one: both, in (time, key) order; then nothing again.
    write_local(data, {"s/new.csv": b"i\n4\n"}, T2)
    write_local(data, {"s/late2.csv": b"i\n5\n"}, T1 - timedelta(minutes=5))
    assert reader.run() == ["s/late2.csv", "s/new.csv"]
    assert reader.run() == []
    assert reader.state["_history"] == {"s/a.csv": "2024-01-15T10:30:00Z", "s/late.csv": "2024-01-15T09:30:00Z",
                                        "s/late2.csv": "2024-01-15T10:25:00Z"}
    assert reader.state["_history_start"] == "2024-01-14T11:00:00Z"  # the cursor less one day


def test_without_a_window_late_files_are_not_read(tmp_path):
    data = tmp_path / "data"
    write_local(data, {"s/a.csv": b"i\n1\n"}, T1)
    reader = Reader(tmp_path, {"root_url": str(data), "lookback_window_days": 0}, "s", "stream")
    assert reader.run() == ["s/a.csv"]
    assert reader.state == {"_last_modified_time": "2024-01-15T10:30:00Z", "_files_at_cursor": ["s/a.csv"]}
    write_local(data, {"s/late.csv": b"i\n2\n"}, T1 - timedelta(hours=1))
    assert reader.run() == []


def test_a_big_state_is_emitted_at_most_every_second_and_after_the_last_file(tmp_path):
    """Each STATE holds the whole history: one per file of a backfill would be quadratic."""
    from connector.airbyte.source_main import BIG_STATE

    n = BIG_STATE + 300
    write_local(tmp_path / "data", {f"s/f{i:05d}.csv": b"i\n%d\n" % i for i in range(n)}, T1)
    reader = Reader(tmp_path, {"root_url": str(tmp_path / "data")}, "s", "stream")
    (tmp_path / "config.json").write_text(json.dumps({"root_url": str(tmp_path / "data")}))
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", "read", "--config",
                           str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
                          capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0
    messages = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    kinds = [m["type"] for m in messages if m["type"] in ("RECORD", "STATE")]
    assert kinds[:2 * BIG_STATE] == ["RECORD", "STATE"] * BIG_STATE  # small: after each file
    assert BIG_STATE < kinds.count("STATE") < BIG_STATE + 300
    assert kinds[-1] == "STATE" and kinds.count("RECORD") == n
    last = [m for m in messages if m["type"] == "STATE"][-1]["state"]["stream"]["stream_state"]
    assert len(last["_files_at_cursor"]) == n
    reader.state = last
    assert reader.run() == []


def test_state_of_a_stream_whose_files_are_gone_comes_back_unchanged(tmp_path):
    data = tmp_path / "data"
    write_local(data, {"other/a.csv": b"i\n1\n"}, T0)  # the root still holds a stream; "s" has no files
    reader = Reader(tmp_path, {"root_url": str(data)}, "s", "stream")
    reader.state = dict(OLAKE)
    assert reader.run() == []
    assert reader.state == OLAKE  # the old code wrote "_files_at_cursor": [] here too
