"""Dataset names cannot make any object key escape the store root.

Fuzzed: any name the store accepts is one safe key segment, and everything a write puts in storage
lies under ``<root>/<name>/``. End to end: hostile stream names reaching ``des sync`` (explicit
source streams) and ``des-destination write`` (the configured catalog) are refused with a message
naming the stream, exit non-zero, and nothing is written outside the root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.store import InvalidName, Store
from tests.reliability.fuzzing import CASES, FUZZ, Counter
from tests.reliability.helpers import REPO

HOSTILE = ["..", "../escape", "a/../../escape", "/abs", "a\\..\\b", ".hidden", "x\x00y", "tab\tname", "new\nline",
           "ok/../../escape", "\u202e..", " lead", "a" * 300]

names = st.one_of(st.sampled_from(HOSTILE), st.text(alphabet=st.sampled_from(list("ab._-/\\\x00 \n=+@é")), max_size=12),
                  st.text(max_size=12))


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_fuzz_dataset_names_stay_one_segment_under_the_root(tmp_path):
    ran, accepted = Counter(), Counter()
    outside = tmp_path / "outside"
    outside.mkdir()
    root = outside / "root"

    @settings(FUZZ, max_examples=CASES["medium"])
    @given(name=names)
    def case(name):
        ran()
        with Store(str(root)) as store:
            try:
                store.create_dataset(name)
            except InvalidName:
                return
            accepted()
            store.write_records(name, [[{"i": 1}]])
        assert "/" not in name and "\\" not in name and name not in (".", "..")
        dataset_dir = (root / name).resolve()
        assert dataset_dir.parent == root.resolve()
        # Nothing but the root exists in the outer folder: no key escaped it.
        assert [p.name for p in outside.iterdir()] == ["root"]

    case()
    assert accepted.n > 0  # some names were valid, so the write path was exercised
    print(f"\n[reliability] dataset-name fuzz cases run: {ran.n} ({accepted.n} accepted and written)")


def run(args: list[str], stdin: bytes | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], input=stdin, capture_output=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("stream", ["../escape", ".hidden"])
def test_des_sync_refuses_hostile_stream_names(tmp_path, stream):
    data = tmp_path / "data" / "s"
    data.mkdir(parents=True)
    (data / "a.csv").write_text("id\n1\n")
    outer = tmp_path / "outer"
    outer.mkdir()
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(tmp_path / "data"),
                                                   "streams": [{"name": stream, "globs": ["s/*.csv"]}]}))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(outer / "root")}))
    before = files_under(tmp_path)
    proc = run(["connector.cli", "sync", "--config", str(tmp_path / "src.json"), "--destination",
                str(tmp_path / "dst.json"), "--state", str(tmp_path / "state.json"), "--no-progress"])
    stderr = proc.stderr.decode()
    assert proc.returncode != 0
    assert stream in stderr or repr(stream) in stderr, stderr
    assert "Traceback" not in stderr
    created = files_under(tmp_path) - before
    assert all((outer / "root") in p.parents for p in created), created  # only catalog/log inside the root


@pytest.mark.parametrize("stream", ["a/../../escape", "x\u0000y"])
def test_destination_refuses_hostile_stream_names(tmp_path, stream):
    outer = tmp_path / "outer"
    outer.mkdir()
    config = tmp_path / "dst.json"
    config.write_text(json.dumps({"root_url": str(outer / "root")}))
    catalog = tmp_path / "cat.json"
    catalog.write_text(json.dumps({"streams": [{"stream": {"name": stream, "json_schema": {}},
                                                "sync_mode": "full_refresh", "destination_sync_mode": "append"}]}))
    record = json.dumps({"type": "RECORD", "record": {"stream": stream, "data": {"a": 1}, "emitted_at": 0}})
    before = files_under(tmp_path)
    proc = run(["connector.airbyte.destination_main", "write", "--config", str(config), "--catalog", str(catalog)],
               stdin=(record + "\n").encode())
    assert proc.returncode != 0
    messages = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    errors = [m["trace"]["error"]["message"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert errors and any(repr(stream) in e or stream in e for e in errors), messages
    created = files_under(tmp_path) - before
    assert all((outer / "root") in p.parents for p in created), created
    assert not list(outer.glob("escape*")) and not list(tmp_path.glob("escape*"))


def test_unique_names_do_not_collide_with_store_internals(tmp_path):
    """Names that look like the store's own folders are still one dataset each, under the root."""
    with Store(str(tmp_path / "root")) as store:
        for name in [f"d{uuid.uuid4().hex[:6]}", "dataranges", "versions", "_bigFiles"]:
            try:
                store.create_dataset(name)
            except InvalidName:
                continue
            store.write_records(name, [[{"n": name}]])
            assert store.to_table(name).column("n").to_pylist() == [name]
