"""``des sync`` keeps the source's state meaning what it meant: an Olake state given with
``--state`` does not make it re-read the files at the cursor, and late files are read once, in
both modes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from connector.store import Store
from tests.source.helpers import write_local
from tests.sync.test_sync import sync

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone.utc)
T2 = datetime(2024, 1, 15, 11, 0, 0, tzinfo=timezone.utc)


def files_read(out) -> int:
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("s -> "))
    return int(line.split(": ")[1].split(" files")[0])


@pytest.mark.parametrize("mode", ["records", "files"])
def test_olake_state_and_late_files(tmp_path, mode):
    data = tmp_path / "data"
    write_local(data, {"s/a.csv": b"i\n1\n"}, T0)
    write_local(data, {"s/b.csv": b"i\n2\n", "s/c.csv": b"i\n3\n"}, T1)
    (tmp_path / "state.json").write_text(json.dumps({"s": {"_last_modified_time": "2024-01-15T10:30:00Z"}}))
    source = {"root_url": str(data)}
    args = ("--mode", mode, "--no-progress")
    assert files_read(sync(tmp_path, source, *args)) == 0  # Olake: everything up to 10:30:00 is synced
    assert files_read(sync(tmp_path, source, *args)) == 0  # the old files mode re-read b and c here
    write_local(data, {"s/d.csv": b"i\n4\n"}, T2)
    assert files_read(sync(tmp_path, source, *args)) == 1
    write_local(data, {"s/late.csv": b"i\n5\n"}, T2 - timedelta(minutes=20))  # visible late, older than d
    assert files_read(sync(tmp_path, source, *args)) == 1
    assert files_read(sync(tmp_path, source, *args)) == 0
    with Store(str(tmp_path / "store")) as store:
        if mode == "records":
            assert store.to_table("s").column("i").to_pylist() == [4, 5]
        else:
            assert sum(d.count for d in store.dataranges("s")) == 2
    state = json.loads((tmp_path / "state.json").read_text())["s"]
    assert state["_files_at_cursor"] == ["s/d.csv"] and state["_history"] == {"s/late.csv": "2024-01-15T10:40:00Z"}
