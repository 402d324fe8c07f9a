"""Processes end cleanly: Arrow's read-ahead threads must not outlive the interpreter.

Found while fuzzing: after a schema sample (which stops reading a big CSV early) or a parse error,
Arrow's streaming CSV reader kept reading the Python stream ahead from its I/O threads; if the
process exited meanwhile, it aborted ("PyGILState_Release ... finalizing") or hung forever, so
``des-source discover`` on a ~40 MB CSV failed most of the time. Each case runs a few times
because the race is timing-dependent (without the fix most runs fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import configured_catalog, source, write_json

RUNS = 3


@pytest.fixture(scope="module")
def big_csv_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bigcsv")
    (root / "s").mkdir()
    line = b"12345,67890,abcdefghij\n"
    (root / "s" / "x.csv").write_bytes(b"a,b,c\n" + line * (40_000_000 // len(line)))
    (root / "bad").mkdir()
    # A bad row first, then 20 MiB the reader is still reading ahead when the error is raised (a
    # 20 MiB cell did that until rows longer than a block were read whole).
    (root / "bad" / "y.csv").write_bytes(b"a,b\n1,2,3\n" + b"4,5\n" * (5 << 20))
    return root


def test_discover_of_a_big_csv_exits_cleanly(big_csv_root, tmp_path):
    config = write_json(tmp_path / "c.json", {"root_url": str(big_csv_root), "streams": [
        {"name": "s", "globs": ["s/*.csv"]}]})
    for _ in range(RUNS):
        run = source("discover", "--config", config, timeout=60)
        assert run.code == 0 and run.messages[-1]["type"] == "CATALOG", (run.code, run.stderr[-500:])


def test_failed_read_of_a_big_csv_exits_cleanly(big_csv_root, tmp_path):
    config = write_json(tmp_path / "c.json", {"root_url": str(big_csv_root), "streams": [
        {"name": "bad", "globs": ["bad/*.csv"]}]})
    catalog = write_json(tmp_path / "cat.json", configured_catalog([{"name": "bad", "json_schema": {}}]))
    for _ in range(RUNS):
        run = source("read", "--config", config, "--catalog", catalog, timeout=60)
        assert run.code == 1, (run.code, run.stderr[-500:])
        assert "bad/y.csv" in run.errors()[0]["message"]
