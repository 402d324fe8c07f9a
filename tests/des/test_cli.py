"""The container commands of ``des`` as real subprocesses, hostile containers included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from connector.des import DesWriter
from connector.des.format import FOOTER_SIZE

DES = [sys.executable, "-m", "connector.cli"]


def des(*args: str, **kw):
    return subprocess.run(DES + list(args), capture_output=True, timeout=60, **kw)


def test_pack_ls_cat_info_verify_unpack_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.txt").write_bytes(b"hello\n")
    (src / "b.csv").write_bytes(b"i\n1\n" * 100)
    box = tmp_path / "box.des"
    out = des("pack", str(src), "-o", str(box), "--compress", "zstd")
    assert out.returncode == 0, out.stderr
    assert des("ls", str(box)).stdout.decode().split() == ["a/x.txt", "b.csv"]
    assert " z " in des("ls", "-l", str(box)).stdout.decode()
    assert des("cat", str(box), "a/x.txt", "b.csv").stdout == b"hello\n" + b"i\n1\n" * 100
    info = json.loads(des("info", str(box)).stdout)
    assert info["members"] == 2 and info["footer"]["file_count"] == 2 and info["compressed"] == 1
    assert json.loads(des("info", str(box), "b.csv").stdout)["meta"]["codec"] == "zstd"
    assert des("verify", str(box)).returncode == 0
    out = des("unpack", str(box), "-o", str(tmp_path / "out"))
    assert out.returncode == 0 and (tmp_path / "out" / "a" / "x.txt").read_bytes() == b"hello\n"
    out = des("cat", str(box), "missing")
    assert out.returncode == 1 and b"no member named 'missing'" in out.stderr


def test_verify_names_the_corrupted_member(tmp_path):
    box = tmp_path / "c.des"
    with DesWriter(str(box)) as w:
        w.add("good", b"g" * 50)
        w.add("bad", b"b" * 50)
    data = bytearray(box.read_bytes())
    data[16 + 60] ^= 0x01  # inside the second member's bytes
    box.write_bytes(bytes(data))
    out = des("verify", str(box))
    assert out.returncode == 1 and b"'bad'" in out.stderr and b"Traceback" not in out.stderr


@pytest.mark.parametrize("hostile", ["../escape.txt", "/etc/passwd-x", "a\\..\\b", "a/\x01b"])
def test_unpack_refuses_hostile_names_and_writes_nothing(tmp_path, hostile):
    # A container written by someone else's tool: forge the name into a valid one's index.
    box = tmp_path / "h.des"
    safe = "s" * len(hostile.encode())
    with DesWriter(str(box)) as w:
        w.add(safe, b"payload")
    raw = box.read_bytes().replace(safe.encode(), hostile.encode())
    box.write_bytes(raw)
    out = des("unpack", str(box), "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_truncated_container_is_a_clear_error(tmp_path):
    box = tmp_path / "t.des"
    with DesWriter(str(box)) as w:
        w.add("a", b"x")
    box.write_bytes(box.read_bytes()[:-FOOTER_SIZE // 2])
    out = des("ls", str(box))
    assert out.returncode == 1 and b"Traceback" not in out.stderr and str(box).encode() in out.stderr
