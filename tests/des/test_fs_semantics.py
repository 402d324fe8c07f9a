"""``des://`` behaves like fsspec's archive filesystems: paths, directories, errors, cat/open forms."""

from __future__ import annotations

import fsspec
import pytest

from connector.des import DesWriter, IndexCache
from connector.des.fs import DesFileSystem

MEMBERS = {
    "top.txt": b"top\n",
    "a/one.csv": b"x\n1\n",
    "a/two.csv": b"x\n2\n",
    "a/deep/three.json": b'{"x": 3}\n',
    "b/[odd] name.txt": b"odd\n",
}


@pytest.fixture
def box(tmp_path):
    path = tmp_path / "box.des"
    with DesWriter(str(path), compression="gzip") as w:
        for name, data in MEMBERS.items():
            w.add(name, data * 50)  # repeated so gzip shrinks them: compressed members too
    return str(path)


def fs_of(box) -> DesFileSystem:
    return DesFileSystem(fo=box, index_cache=IndexCache())


def test_directories_are_implied_by_slashes(box):
    fs = fs_of(box)
    assert sorted(fs.ls("", detail=False)) == ["a", "b", "top.txt"]
    assert sorted(fs.ls("a", detail=False)) == ["a/deep", "a/one.csv", "a/two.csv"]
    assert fs.isdir("a/deep") and not fs.isfile("a/deep") and fs.isfile("a/deep/three.json")
    assert not fs.exists("a/nope") and not fs.exists("c")
    assert fs.info("a/one.csv") == {**fs.info("a/one.csv"), "type": "file", "size": len(MEMBERS["a/one.csv"]) * 50}
    assert fs.du("a") == sum(len(MEMBERS[n]) * 50 for n in MEMBERS if n.startswith("a/"))
    assert sorted(fs.find("", withdirs=True)) == sorted(list(MEMBERS) + ["a", "a/deep", "b"])
    assert fs.glob("**/*.json") == ["a/deep/three.json"]
    assert fs.glob("a/*.csv") == ["a/one.csv", "a/two.csv"]
    # Leading slashes and the protocol are accepted, as on other fsspec filesystems.
    assert fs.cat_file("/top.txt") == fs.cat_file("des://top.txt") == MEMBERS["top.txt"] * 50
    with pytest.raises(FileNotFoundError):
        fs.info("missing.txt")


def test_cat_forms_follow_fsspec(box):
    fs = fs_of(box)
    one = MEMBERS["a/one.csv"] * 50
    assert fs.cat("a/one.csv") == one  # one plain path: bytes
    assert fs.cat(["a/one.csv"]) == {"a/one.csv": one}  # a list: a dict
    assert fs.cat("a/*.csv") == {"a/one.csv": one, "a/two.csv": MEMBERS["a/two.csv"] * 50}
    assert set(fs.cat("a", recursive=True)) == {"a/one.csv", "a/two.csv", "a/deep/three.json"}
    with pytest.raises(IsADirectoryError):
        fs.cat("a")
    with pytest.raises(FileNotFoundError, match="nope"):
        fs.cat(["a/one.csv", "a/nope"])
    out = fs.cat(["a/one.csv", "a/nope"], on_error="return")
    assert out["a/one.csv"] == one and isinstance(out["a/nope"], FileNotFoundError)
    assert fs.cat(["a/one.csv", "a/nope"], on_error="omit") == {"a/one.csv": one}
    # A name with glob characters is still reachable as a literal path.
    assert fs.cat_file("b/[odd] name.txt") == MEMBERS["b/[odd] name.txt"] * 50


def test_ranges_of_compressed_and_plain_members(box, tmp_path):
    fs = fs_of(box)
    data = MEMBERS["a/deep/three.json"] * 50
    assert fs.cat_file("a/deep/three.json", 5, 25) == data[5:25]
    assert fs.cat_file("a/deep/three.json", -7) == data[-7:]
    assert fs.cat_file("a/deep/three.json", 10, 5) == b""
    assert fs.cat_file("a/deep/three.json", 0, 10**9) == data
    with fs.open("a/deep/three.json") as f:
        assert f.seekable() and f.read(4) == data[:4]
        f.seek(-3, 2)
        assert f.read() == data[-3:]
    plain = tmp_path / "plain.des"
    with DesWriter(str(plain)) as w:
        w.add("p.bin", bytes(range(256)))
    pfs = DesFileSystem(fo=str(plain), index_cache=None)
    assert pfs.cat_file("p.bin", 250) == bytes(range(250, 256))
    assert pfs.cat_file("p.bin", -300, 3) == bytes(range(3))
    with pytest.raises(IsADirectoryError):
        fs.open("a")
    with pytest.raises(FileNotFoundError):
        fs.open("a/none.csv")


def test_open_files_with_chained_urls_and_open_file_objects(box):
    files = fsspec.open_files(f"des://a/*.csv::{box}")
    assert [f.path for f in files] == ["a/one.csv", "a/two.csv"]
    assert [f.open().read() for f in files] == [MEMBERS["a/one.csv"] * 50, MEMBERS["a/two.csv"] * 50]
    with fsspec.open(f"des://top.txt::file://{box}", "rt") as f:  # text mode, explicit target protocol
        assert f.readline() == "top\n"
    # fo may be an open file (fsspec's or a plain one).
    with open(box, "rb") as raw:
        plain = DesFileSystem(fo=raw, index_cache=None)
        assert plain.cat_file("top.txt") == MEMBERS["top.txt"] * 50
        assert "top.txt" in plain.find("", detail=True) and plain.ls("a", detail=True)[0]["type"] == "directory"
    with fsspec.open(box, "rb") as remote_style:
        assert DesFileSystem(fo=remote_style, index_cache=None).cat_file("top.txt") == MEMBERS["top.txt"] * 50


def test_errors_name_the_container(tmp_path):
    missing = tmp_path / "missing.des"
    with pytest.raises(FileNotFoundError, match="missing.des"):
        fsspec.open(f"des://x::{missing}").open()
    bad = tmp_path / "bad.des"
    bad.write_bytes(b"not a container at all" * 10)
    with pytest.raises(ValueError, match="bad.des.*magic"):
        DesFileSystem(fo=str(bad), index_cache=None)


def test_compressed_member_without_a_size_is_a_named_format_error(tmp_path):
    path = tmp_path / "nosize.des"
    with DesWriter(str(path), compression="zstd") as w:
        w.add("z.txt", b"z" * 1000)
    raw = path.read_bytes()
    forged = raw.replace(b'"size":1000', b'"size":"xx"')  # same length: offsets stay valid
    assert forged != raw
    path.write_bytes(forged)
    from connector.des import DesFormatError

    fs = DesFileSystem(fo=str(path), index_cache=None)
    with pytest.raises(DesFormatError, match="'z.txt'.*no valid 'size'"):
        fs.info("z.txt")
    with pytest.raises(DesFormatError, match="'z.txt'"):
        fs.cat_file("z.txt")


def test_cat_on_error_keeps_the_good_members(tmp_path):
    path = tmp_path / "onebad.des"
    with DesWriter(str(path)) as w:
        w.add("good1", b"g1" * 10)
        w.add("bad", b"bb" * 10)
        w.add("good2", b"g2" * 10)
    data = bytearray(path.read_bytes())
    data[data.index(b"bb")] ^= 0x01
    path.write_bytes(bytes(data))
    from connector.des import DesFormatError

    fs = DesFileSystem(fo=str(path), index_cache=None)
    with pytest.raises(DesFormatError, match="'bad'"):
        fs.cat(["good1", "bad", "good2"])
    out = fs.cat(["good1", "bad", "good2"], on_error="return")
    assert out["good1"] == b"g1" * 10 and out["good2"] == b"g2" * 10 and isinstance(out["bad"], DesFormatError)
    assert fs.cat(["good1", "bad", "good2"], on_error="omit") == {"good1": b"g1" * 10, "good2": b"g2" * 10}
