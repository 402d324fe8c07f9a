"""The README's ``des`` section runs as written: its shell lines and Python blocks, in subprocesses.

The S3 block is pointed at the moto test server by replacing its example endpoint and bucket.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docs import blocks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ENDPOINT, EXAMPLE_BUCKET = "http://127.0.0.1:9000", "s3://bucket/"


def _blocks(lang: str) -> list[str]:
    return blocks("des", lang)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "testdata").symlink_to(ROOT / "testdata")
    return tmp_path


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120)
    assert out.returncode == 0, (argv, out.stderr.decode()[-2000:])
    return out


def test_readme_des_section_runs(workdir, s3_endpoint, s3_bucket, s3):
    (shell,) = _blocks("bash")
    commands = [shlex.split(line, comments=True) for line in shell.splitlines()]
    commands = [c for c in commands if c]
    assert [c[:2] for c in commands][:1] == [["des", "pack"]] and len(commands) == 7
    for argv in commands:
        out = _run([sys.executable, "-m", "connector.cli", *argv[1:]], workdir)
        if argv[1] == "cat":
            assert out.stdout.startswith(b"id,name,age")
    assert (workdir / "out" / "unpacked" / "orders" / "orders_01.jsonl").read_bytes() == (
        ROOT / "testdata" / "orders" / "orders_01.jsonl").read_bytes()

    local, on_s3, clients, _dlt, api = _blocks("python")
    _run([sys.executable, "-c", local], workdir)
    _run([sys.executable, "-c", clients], workdir)

    s3.put(str(workdir / "out" / "testdata.des"), f"{s3_bucket}/testdata.des")
    assert EXAMPLE_ENDPOINT in on_s3 and EXAMPLE_BUCKET in on_s3
    code = on_s3.replace(EXAMPLE_ENDPOINT, s3_endpoint.endpoint_url).replace(EXAMPLE_BUCKET, f"s3://{s3_bucket}/")
    out = _run([sys.executable, "-c", code], workdir)
    assert out.stdout.decode().split() == ["users/users_2024-01.csv", "1934"]

    _run([sys.executable, "-c", api], workdir)


def test_tail_size_reaches_the_filesystem_from_a_chained_url(tmp_path):
    # The README promises des={"tail_size": ...} in fsspec.open: check it lands on the reader.
    code = (
        "import fsspec\n"
        "from connector.des import DesWriter\n"
        f"p = {str(tmp_path / 'x.des')!r}\n"
        "with DesWriter(p) as w:\n"
        "    w.add('a.txt', b'abc')\n"
        "of = fsspec.open(f'des://a.txt::{p}', des={'tail_size': 4096})\n"
        "assert of.fs.reader.tail_size == 4096, of.fs.reader.tail_size\n"
        "assert of.open().read() == b'abc'\n"
    )
    _run([sys.executable, "-c", code], tmp_path)


@pytest.mark.slow
def test_readme_dlt_recipe_runs(workdir):
    _run([sys.executable, "-m", "connector.cli", "pack", "testdata", "-o", "out/testdata.des"], workdir)
    recipe = _blocks("python")[3]
    assert "des_files" in recipe
    out = _run([sys.executable, "-c", recipe], workdir)
    assert b"LOADED" in out.stdout
    import duckdb

    with duckdb.connect(str(workdir / "out" / "users.duckdb")) as con:
        rows = con.sql("select count(*) from raw.users").fetchall()
    with open(ROOT / "testdata" / "users" / "users_2024-01.csv") as f:
        assert rows == [(sum(1 for _ in f) - 1,)]
