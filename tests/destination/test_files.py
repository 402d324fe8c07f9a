"""des-destination with Airbyte file transfer: RECORDs carrying ``file_reference`` (or the older
``file``) become file datapoints, bytes unchanged, exactly once across a SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.des.reader import DesReader
from connector.store import Store

CMD = [sys.executable, "-m", "connector.airbyte.destination_main"]


def stage(tmp: Path, rel: str, data: bytes, sub: str = "staging") -> Path:
    path = tmp / sub / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def file_record(stream: str, staged: Path, rel: str, size: int | None = None, **data) -> bytes:
    ref = {"staging_file_url": str(staged), "source_file_relative_path": rel,
           "file_size_bytes": staged.stat().st_size if size is None else size}
    return json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 7, "file_reference": ref,
                                                    "data": {"file_name": rel.rsplit("/", 1)[-1], **data}}}).encode() + b"\n"


def state(stream: str, n: int) -> bytes:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": stream}, "stream_state": {"n": n}}}}).encode() + b"\n"


def catalog(tmp: Path, mode: str = "append", streams=("docs",), **extra) -> str:
    path = tmp / f"catalog-{mode}.json"
    path.write_text(json.dumps({"streams": [{"stream": {"name": s, "json_schema": {}}, "sync_mode": "full_refresh",
                                             "destination_sync_mode": mode, **extra} for s in streams]}))
    return str(path)


def config(tmp: Path, **extra) -> str:
    path = tmp / "dest.json"
    path.write_text(json.dumps({"root_url": str(tmp / "store"), **extra}))
    return str(path)


def run(args, stdin: bytes):
    out = subprocess.run(CMD + args, input=stdin, capture_output=True, timeout=60)
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stderr.decode()


def files_of(tmp: Path, dataset: str = "docs") -> list[tuple[str, bytes, dict]]:
    """(member name, bytes, META) of every datapoint of ``dataset``, in key order."""
    out = []
    with Store(str(tmp / "store")) as store:
        if dataset not in {d.name for d in store.list_datasets()}:
            return []
        for d in store.dataranges(dataset):
            assert d.kind == "files"
            reader = DesReader(store.fs._strip_protocol(d.url), fs=store.fs)
            out.extend((n, reader.read(n), reader.meta(n)) for n in reader.names())
    return out


def test_file_references_are_stored_as_file_datapoints(tmp_path):
    blobs = {"a/all-bytes.bin": bytes(range(256)) * 3, "empty.txt": b"", "b/c/d.csv": b"x,y\r\n1,2\r\n"}
    staged = {rel: stage(tmp_path, rel, data) for rel, data in blobs.items()}
    os.utime(staged["empty.txt"], (1_600_000_000, 1_600_000_000))
    body = (file_record("docs", staged["a/all-bytes.bin"], "a/all-bytes.bin", updated_at="2024-05-01T10:00:00Z")
            + file_record("docs", staged["empty.txt"], "empty.txt") + state("docs", 2)
            + file_record("docs", staged["b/c/d.csv"], "b/c/d.csv", updated_at="2024-05-02T00:00:00Z")
            + state("docs", 3))
    code, msgs, err = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], body)
    assert code == 0, err
    assert [m["state"]["destinationStats"]["recordCount"] for m in msgs if m["type"] == "STATE"] == [2, 1]
    got = files_of(tmp_path)
    assert [(n, b) for n, b, _ in got] == list(blobs.items())
    meta = {n: m for n, _, m in got}
    assert meta["a/all-bytes.bin"]["source_file_relative_path"] == "a/all-bytes.bin"
    assert meta["a/all-bytes.bin"]["size"] == 768
    assert (meta["a/all-bytes.bin"]["modified"], meta["a/all-bytes.bin"]["modified_from"]) == \
        ("2024-05-01T10:00:00Z", "data.updated_at")
    # No modification time in the record: the staged file's, and META says so.
    assert (meta["empty.txt"]["modified"], meta["empty.txt"]["modified_from"]) == ("2020-09-13T12:26:40Z", "staged_file")
    assert meta["b/c/d.csv"]["record"] == {"file_name": "d.csv", "updated_at": "2024-05-02T00:00:00Z"}
    assert meta["b/c/d.csv"]["_airbyte_extracted_at"] == 7


def test_older_file_field_and_include_files_overwrite(tmp_path):
    """The older protocol's ``record.file`` (use_file_transfer), into an overwrite stream that the
    catalog marks ``include_files``: the old files go once the new ones are in."""
    cat = catalog(tmp_path, "overwrite", include_files=True)
    cfg = config(tmp_path)
    old = stage(tmp_path, "old.txt", b"old")
    assert run(["write", "--config", cfg, "--catalog", cat], file_record("docs", old, "old.txt"))[0] == 0
    new = stage(tmp_path, "n.bin", b"\x00new\xff")
    line = json.dumps({"type": "RECORD", "record": {"stream": "docs", "emitted_at": 1, "data": {}, "file": {
        "file_url": new.as_uri(), "file_relative_path": "dir/n.bin", "bytes": 5, "modified": 1_700_000_000_000,
        "source_file_url": "s3://bucket/dir/n.bin"}}}).encode() + b"\n"
    code, _, err = run(["write", "--config", cfg, "--catalog", cat], line)
    assert code == 0, err
    [(name, data, meta)] = files_of(tmp_path)
    assert (name, data) == ("dir/n.bin", b"\x00new\xff")
    assert meta["modified"] == "2023-11-14T22:13:20Z" and meta["source_url"] == "s3://bucket/dir/n.bin"
    with Store(str(tmp_path / "store")) as store:
        assert store.list_versions("docs") == []


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: file_record("docs", p, "f", size=99), "has 3 bytes, the RECORD declares 99"),
    (lambda p: file_record("docs", p.with_name("gone"), "f", size=1), "cannot read file 'f' staged at"),
    (lambda p: file_record("docs", p, "f").replace(b'"file_size_bytes": 3', b'"file_size_bytes": "3"'),
     "file_size_bytes must be a whole number"),
    (lambda p: file_record("docs", p, "f") + json.dumps({"type": "RECORD", "record": {
        "stream": "docs", "data": {"a": 1}}}).encode(), "line 2: stream 'docs' sent files before"),
])
def test_bad_file_references_are_named(tmp_path, make, problem):
    staged = stage(tmp_path, "f", b"abc")
    code, msgs, err = run(["write", "--config", config(tmp_path), "--catalog", catalog(tmp_path)], make(staged))
    assert code != 0
    assert problem in json.dumps(msgs) + err


def test_records_and_files_in_one_dataset_are_refused(tmp_path):
    cfg, cat = config(tmp_path), catalog(tmp_path)
    rec = json.dumps({"type": "RECORD", "record": {"stream": "docs", "data": {"a": 1}}}).encode() + b"\n"
    assert run(["write", "--config", cfg, "--catalog", cat], rec)[0] == 0
    code, msgs, err = run(["write", "--config", cfg, "--catalog", cat],
                          file_record("docs", stage(tmp_path, "f", b"x"), "f"))
    assert code != 0 and "dataset 'docs' holds records, this stream sends files" in json.dumps(msgs) + err


def test_killed_while_storing_files_then_rerun_is_exactly_once(tmp_path):
    """SIGKILL at seeded moments, then the same sync retried with its files staged elsewhere (as a
    retried Airbyte attempt stages them anew): every file once, in order, bytes unchanged."""
    rng = random.Random(16)
    n = 240
    blobs = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(n)]
    cfg, cat = config(tmp_path, max_datapoints=20), catalog(tmp_path)
    for point in range(3):
        def body(sub: str) -> bytes:
            return b"".join(file_record("docs", stage(tmp_path, f"f{i:03d}", b, sub), f"f{i:03d}")
                            + (state("docs", i + 1) if i % 30 == 29 else b"") for i, b in enumerate(blobs))
        first = body(f"attempt-{point}-1")
        lines = first.splitlines(keepends=True)
        proc = subprocess.Popen(CMD + ["write", "--config", cfg, "--catalog", cat], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdin.write(b"".join(lines[:rng.randrange(60, len(lines))]))
        proc.stdin.flush()
        # Killed once something is committed (a STATE came back), at a seeded moment after that.
        assert b'"STATE"' in proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        got = [b for _, b, _ in files_of(tmp_path)]
        assert 20 <= len(got) < n and got == blobs[:len(got)], "committed files form a prefix, each once"
        code, _, err = run(["write", "--config", cfg, "--catalog", cat], body(f"attempt-{point}-2"))
        assert code == 0, err
        got = files_of(tmp_path)
        assert [n for n, _, _ in got] == [f"f{i:03d}" for i in range(n)], point
        assert [hashlib.sha256(b).digest() for _, b, _ in got] == [hashlib.sha256(b).digest() for b in blobs]
        with Store(str(tmp_path / "store")) as store:
            store.delete_dataset("docs")
