"""``des sync`` killed with SIGKILL at seeded points, then re-run: every record exactly once,
no partial container visible, catalog equal to what restore rebuilds from storage. And two
concurrent syncs of the same dataset: one waits, nothing overlaps, nothing is lost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from connector.store import Store
from tests.reliability.crash import kill_when, seeded_points
from tests.reliability.helpers import REPO

FILES, ROWS = 40, 25
SEED = 6


def _source(tmp: Path) -> Path:
    data = tmp / "data" / "events"
    data.mkdir(parents=True)
    for f in range(FILES):
        lines = "".join(f'{{"file": {f}, "row": {r}, "pad": "{"x" * 40}"}}\n' for r in range(ROWS))
        (data / f"e{f:03d}.jsonl").write_text(lines)
        os.utime(data / f"e{f:03d}.jsonl", (1_700_000_000 + f, 1_700_000_000 + f))
    return tmp / "data"


def _configs(tmp: Path) -> list[str]:
    (tmp / "src.json").write_text(json.dumps({"root_url": str(_source(tmp)), "max_threads": 2}))
    (tmp / "dst.json").write_text(json.dumps({"root_url": str(tmp / "store"), "max_datapoints": 30}))
    return [sys.executable, "-m", "connector.cli", "sync", "--config", str(tmp / "src.json"),
            "--destination", str(tmp / "dst.json"), "--state", str(tmp / "state.json"), "--no-progress"]


RANGE = re.compile(r"^\d{20}-\d{20}\.[0-9a-f]{16}\.des$")  # <first>-<last>.<session tag>.des
# What else a committed dataranges/ folder may hold: writer checkpoints, later key spaces.
BOOKKEEPING = re.compile(r"^(checkpoint-\d{20}\.[0-9a-f]{16}\.json|epoch-\d+)$")


def _entries(tmp: Path) -> list[str]:
    folder = tmp / "store" / "events" / "dataranges"
    return sorted(os.listdir(folder)) if folder.exists() else []


def _containers(tmp: Path) -> list[str]:
    return [n for n in _entries(tmp) if RANGE.match(n)]


def _check_exactly_once(tmp: Path) -> None:
    with Store(str(tmp / "store")) as store:
        t = store.to_table("events")
        pairs = list(zip(t.column("file").to_pylist(), t.column("row").to_pylist()))
        assert sorted(pairs) == [(f, r) for f in range(FILES) for r in range(ROWS)]
        assert len(pairs) == len(set(pairs))
        assert store.missing_ranges("events") == []
        before = store.dump_catalog()
        catalog = store.catalog_path
    # No partial container visible: only committed ranges and the store's own bookkeeping.
    assert all(RANGE.match(n) or BOOKKEEPING.match(n) for n in _entries(tmp)), _entries(tmp)
    os.unlink(catalog)
    with Store(str(tmp / "store")) as again:
        assert again.dump_catalog() == before


def test_sync_killed_at_seeded_points_then_rerun(tmp_path):
    cmd = _configs(tmp_path)
    points = seeded_points(SEED, 3, 1, FILES * ROWS // 30 - 2)  # kill once this many containers exist
    tried = 0
    for point in points:
        result = kill_when(cmd, lambda out: False, poll=lambda point=point: len(_containers(tmp_path)) >= point,
                           timeout=60)
        tried += result.killed
        with Store(str(tmp_path / "store")) as store:  # whatever was committed is a clean prefix
            if "events" in [d.name for d in store.list_datasets()]:
                keys = [(d.first, d.last) for d in store.dataranges("events")]
                assert all(a[1] + 1 == b[0] for a, b in zip(keys, keys[1:]))
    assert tried == len(points), "every kill lands before the sync finishes"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    _check_exactly_once(tmp_path)
    assert not os.listdir(tmp_path / "store" / ".spool")  # the killed runs' spools were cleaned up


def test_two_concurrent_syncs_of_the_same_dataset(tmp_path):
    cmd = _configs(tmp_path)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    # Either both succeed (one waited for the other's lock) or one fails naming the lock holder.
    for code, (_, err) in zip(codes, results):
        assert code == 0 or b"is being written by another writer" in err, err
    assert 0 in codes
    _check_exactly_once(tmp_path)
