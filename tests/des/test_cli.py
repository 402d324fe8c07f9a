"""The container commands of ``des`` as real subprocesses, hostile containers included."""

from __future__ import annotations

import json
import os
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


def container_with_a_flipped_bit(path, good: str, bad: str):
    """A container of two 50-byte members, ``good`` then ``bad``, with one bit of ``bad``'s bytes flipped."""
    with DesWriter(str(path)) as w:
        w.add(good, b"g" * 50)
        w.add(bad, b"b" * 50)
    data = bytearray(path.read_bytes())
    data[16 + 60] ^= 0x01  # DATA starts after the 16-byte header: byte 10 of the second member
    path.write_bytes(bytes(data))
    return path


def test_verify_names_the_corrupted_member(tmp_path):
    box = container_with_a_flipped_bit(tmp_path / "c.des", "good", "bad")
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


@pytest.mark.parametrize("hostile", ["a/\x00b", "x/\x7f", "./x", "a//b", "a/../../b"])
def test_unpack_refuses_more_hostile_names(tmp_path, hostile):
    box = tmp_path / "h.des"
    safe = "s" * len(hostile.encode())
    with DesWriter(str(box)) as w:
        w.add("first.txt", b"would be written before the bad one in write order")
        w.add(safe, b"payload")
    box.write_bytes(box.read_bytes().replace(safe.encode(), hostile.encode()))
    out = des("unpack", str(box), "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"Traceback" not in out.stderr and b"member name" in out.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))  # checked before writing


def test_unpack_refuses_a_member_that_is_also_a_folder(tmp_path):
    box = tmp_path / "clash.des"
    with DesWriter(str(box)) as w:
        w.add("a/b", b"1")
        w.add("a", b"2")
    out = des("unpack", str(box), "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"'a' is both a file and a folder" in out.stderr
    assert not (tmp_path / "out").exists()


def test_unpack_never_leaves_a_half_written_member(tmp_path):
    box = container_with_a_flipped_bit(tmp_path / "c.des", "ok.txt", "bad.txt")
    out = des("unpack", str(box), "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"'bad.txt'" in out.stderr and b"checksum" in out.stderr
    assert not (tmp_path / "out").exists()  # every member is verified before any is written: not even ok.txt
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "kept.txt").write_text("kept")
    assert des("unpack", str(box), "-o", str(tmp_path / "mine")).returncode == 1
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["kept.txt"]  # no staging folder left


def test_unpack_does_not_follow_a_symlink_out_of_the_folder(tmp_path):
    box = tmp_path / "s.des"
    with DesWriter(str(box)) as w:
        w.add("link/x.txt", b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(outside)  # planted before the unpack
    out = des("unpack", str(box), "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"outside" in out.stderr
    assert not any(outside.iterdir())


def test_pack_options_big_files_and_usage_errors(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"s" * 10)
    (src / "huge.bin").write_bytes(b"h" * 5000)
    box = tmp_path / "out" / "b.des"
    out = des("pack", str(src), str(src / "small.txt"), "-o", str(box), "--big-file-threshold", "1000")
    assert out.returncode == 1 and b"'small.txt' comes from both" in out.stderr and not box.exists()
    out = des("pack", str(src), "-o", str(box), "--big-file-threshold", "1000")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "b" / "_bigFiles" / "huge.bin").read_bytes() == b"h" * 5000
    listing = des("ls", "-l", str(box)).stdout.decode().splitlines()
    assert any(line.split()[-2:] == ["e", "huge.bin"] for line in listing), listing
    assert json.loads(des("info", str(box), "huge.bin").stdout)["meta"]["external_key"].endswith("_bigFiles/huge.bin")
    assert des("cat", str(box), "small.txt", "huge.bin", "small.txt").stdout == b"s" * 10 + b"h" * 5000 + b"s" * 10
    assert des("verify", str(box)).returncode == 0
    # Usage errors exit 2, one line, no traceback.
    for args in (["pack", str(src)], ["pack", str(src), "-o", "x.des", "--compress", "lz4"], ["ls"], ["frobnicate"]):
        out = des(*args)
        assert out.returncode == 2 and b"Traceback" not in out.stderr, args
    out = des("info", str(box), "nope")
    assert out.returncode == 1 and b"no member named 'nope'" in out.stderr
    out = des("ls", str(tmp_path / "absent.des"))
    assert out.returncode == 1 and b"absent.des" in out.stderr and b"Traceback" not in out.stderr


def test_pack_refuses_unpackable_names_and_skips_its_own_output(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"ok")
    (src / "back\\slash.txt").write_bytes(b"no")
    out = des("pack", str(src), "-o", str(tmp_path / "x.des"))
    assert out.returncode == 1 and b"back\\\\slash.txt" in out.stderr and b"backslash" in out.stderr
    assert not (tmp_path / "x.des").exists() and not list(tmp_path.glob(".x.des*"))
    (src / "back\\slash.txt").unlink()
    inside = src / "self.des"
    assert des("pack", str(src), "-o", str(inside)).returncode == 0
    assert des("pack", str(src), "-o", str(inside), "--overwrite").returncode == 0  # not packed into itself
    assert des("ls", str(inside)).stdout.decode().split() == ["ok.txt"]


@pytest.mark.slow
def test_pack_from_and_to_s3(tmp_path, s3_endpoint, s3_bucket, s3):
    s3.pipe(f"{s3_bucket}/in/a.csv", b"id\n1\n")
    s3.pipe(f"{s3_bucket}/in/sub/b.json", b'{"b": 2}\n')
    env = dict(os.environ, FSSPEC_S3_ENDPOINT_URL=s3_endpoint.endpoint_url)  # fsspec's per-protocol config
    url = f"s3://{s3_bucket}/out/packed.des"
    out = des("pack", f"s3://{s3_bucket}/in", "-o", url, "--compress", "gzip", env=env)
    assert out.returncode == 0, out.stderr
    assert des("ls", url, env=env).stdout.decode().split() == ["a.csv", "sub/b.json"]
    assert des("cat", url, "sub/b.json", env=env).stdout == b'{"b": 2}\n'
    out = des("unpack", url, "-o", str(tmp_path / "u"), env=env)
    assert out.returncode == 0 and (tmp_path / "u" / "a.csv").read_bytes() == b"id\n1\n"


def test_pack_glob_selects_members(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for name in ("a.csv", "b.json", "d/c.csv", "d/e.txt"):
        (src / name).write_bytes(name.encode())
    box = tmp_path / "g.des"
    out = des("pack", str(src), "-o", str(box), "--glob", "*.csv", "--glob", "d/e.*")
    assert out.returncode == 0, out.stderr
    assert des("ls", str(box)).stdout.decode().split() == ["a.csv", "d/c.csv", "d/e.txt"]


def test_pack_shows_progress_only_on_a_terminal(tmp_path):
    import pty

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.txt").write_bytes(b"x")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real width for the bar
    try:
        out = subprocess.run(DES + ["pack", str(src), "-o", str(tmp_path / "p.des")], stdout=subprocess.PIPE,
                             stderr=slave, timeout=60)
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert out.returncode == 0 and b"3/3" in shown and b"pack" in shown
    quiet = des("pack", str(src), "-o", str(tmp_path / "q.des"))
    assert quiet.returncode == 0 and quiet.stderr == b""  # not a terminal: no progress bar
