"""``des://`` as a first-class fsspec filesystem: the member file's interface, ``ukey`` and
``modified``, any target filesystem (caching wrappers, memory, http), listing at scale, writing."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import time

import fsspec
import pandas as pd
import pytest

from connector.des import DesWriter, IndexCache
from connector.des.file import DesMemberFile
from connector.des.fs import DesFileSystem

BODY = b"".join(b"%d,row-%d\n" % (i, i) for i in range(30_000))  # ~400 KB, one plain member
MEMBERS = {"d/a.csv": b"k,v\n" + BODY, "d/b.csv": b"k,v\n1,x\n", "z.txt": b"zz" * 5000}


def _write(fs, path, members, **kw):
    with DesWriter(path, fs=fs, **kw) as w:
        for name, data in members.items():
            w.add(name, data)


@pytest.fixture
def box(tmp_path):
    path = str(tmp_path / "box.des")
    _write(None, path, MEMBERS, compression="zstd")  # z.txt shrinks: a compressed member
    return path


# -- the member file (item 4) ---------------------------------------------------------------------


def test_member_file_is_an_fsspec_buffered_file(box):
    fs = DesFileSystem(fo=box, index_cache=IndexCache())
    for cache_type in ("readahead", "bytes", "none", "blockcache", "first"):
        with fs.open("d/a.csv", cache_type=cache_type, block_size=4096) as f:
            assert isinstance(f, DesMemberFile) and f.size == len(MEMBERS["d/a.csv"]) and f.path == "d/a.csv"
            f.seek(100)
            assert f.tell() == 100 and f.read(20) == MEMBERS["d/a.csv"][100:120]
            f.seek(-5, 2)
            assert f.read() == MEMBERS["d/a.csv"][-5:]
    with fs.open("z.txt") as f:  # compressed: its logical size
        assert f.size == 10_000 and f.read() == MEMBERS["z.txt"]


def test_member_file_pickles_at_its_position(tmp_path):
    box = str(tmp_path / "plain.des")
    _write(None, box, MEMBERS)  # stored plain: the member file reads by range
    fs = DesFileSystem(fo=box)
    with fs.open("d/a.csv") as f:
        f.seek(1234)
        clone = pickle.loads(pickle.dumps(f))
    assert clone.tell() == 1234 and clone.read(10) == MEMBERS["d/a.csv"][1234:1244]
    assert pickle.loads(pickle.dumps(fs)).cat_file("d/b.csv") == MEMBERS["d/b.csv"]


# -- ukey and modified (items 1, 2) ------------------------------------------------------------------


def test_ukey_names_member_and_container_version(box, tmp_path):
    fs = DesFileSystem(fo=box)
    assert fs.fo == box  # fsspec's archive helpers read it
    assert fs.ukey("d/a.csv") != fs.ukey("d/b.csv")
    before = fs.ukey("d/a.csv")
    assert DesFileSystem(fo=box).ukey("d/a.csv") == before  # stable
    time.sleep(0.01)
    _write(None, box, MEMBERS, overwrite=True)  # same names and bytes, a new version
    assert DesFileSystem(fo=box).ukey("d/a.csv") != before
    assert fs.ukey("d/a.csv") != before  # an already open filesystem notices too
    other = str(tmp_path / "other.des")
    _write(None, other, MEMBERS)
    assert DesFileSystem(fo=other).ukey("d/a.csv") != DesFileSystem(fo=box).ukey("d/a.csv")


def test_modified_is_the_containers_mtime(box):
    fs = DesFileSystem(fo=box)
    assert fs.modified("d/a.csv") == dt.datetime.fromtimestamp(os.stat(box).st_mtime_ns / 1e9, dt.UTC)
    with pytest.raises(FileNotFoundError):
        fs.modified("nope.csv")


def test_modified_and_ukey_on_s3(s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/m.des"
    _write(s3_endpoint.s3fs(), url, MEMBERS)
    so = s3_endpoint.storage_options()
    fs = DesFileSystem(fo=url, target_options=so, index_cache=IndexCache())
    info = s3_endpoint.s3fs().info(url)
    assert fs.modified("d/a.csv") == info["LastModified"]
    key = fs.ukey("d/a.csv")
    assert fs.ukey("d/a.csv") == key
    time.sleep(1.1)  # S3's Last-Modified has 1 s resolution
    _write(s3_endpoint.s3fs(), url, {**MEMBERS, "new.txt": b"n"}, overwrite=True)
    assert fs.ukey("d/a.csv") != key
    assert fs.modified("d/a.csv") > info["LastModified"]


@pytest.mark.parametrize("wrapper", ["filecache", "blockcache"])
def test_caching_wrappers_over_des_never_serve_an_old_version(box, tmp_path, wrapper):
    opts = {wrapper: {"cache_storage": str(tmp_path / "cache"), "check_files": True}}
    url = f"{wrapper}::des://d/b.csv::{box}"
    assert fsspec.open(url, **opts).open().read() == MEMBERS["d/b.csv"]
    time.sleep(0.01)
    # Same length: fsspec's blockcache reuses its sparse file for a path and fails (mmap length)
    # when a new version of the same path is longer, whatever the filesystem.
    _write(None, box, {**MEMBERS, "d/b.csv": b"k,v\n2,y\n"}, overwrite=True)
    assert fsspec.open(url, **opts).open().read() == b"k,v\n2,y\n"


# -- any target filesystem (item 5) -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["memory", "simplecache", "filecache", "blockcache", "simplecache-memory", "http",
                                    "simplecache-s3"])
def test_container_over_any_target_filesystem(box, tmp_path, target, request):
    kw: dict = {}
    if target == "memory":
        fsspec.filesystem("memory").pipe("/i14/box.des", open(box, "rb").read())
        url = "memory://i14/box.des"
    elif target == "simplecache-memory":
        fsspec.filesystem("memory").pipe("/i14/box2.des", open(box, "rb").read())
        url = "simplecache::memory://i14/box2.des"
    elif target == "http":
        s3_endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        with open(box, "rb") as f:
            s3_endpoint.boto3_client().put_object(Bucket=bucket, Key="box.des", Body=f.read(), ACL="public-read")
        url = f"{s3_endpoint.endpoint_url}/{bucket}/box.des"  # moto serves objects over plain HTTP
    elif target == "simplecache-s3":
        s3_endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        s3_endpoint.s3fs().put(box, f"{bucket}/box.des")
        url, kw = f"simplecache::s3://{bucket}/box.des", {"s3": s3_endpoint.storage_options()}
    else:
        url = f"{target}::{box}"
        if target != "simplecache":
            kw[target] = {"cache_storage": str(tmp_path / "cache")}
    with fsspec.open(f"des://d/a.csv::{url}", **kw) as f:
        assert f.read() == MEMBERS["d/a.csv"]
    fs = fsspec.open(f"des://d/a.csv::{url}", **kw).fs
    assert fs.cat_file("d/a.csv", 10, 30) == MEMBERS["d/a.csv"][10:30]
    assert fs.cat(["d/b.csv", "z.txt"]) == {"d/b.csv": MEMBERS["d/b.csv"], "z.txt": MEMBERS["z.txt"]}
    assert pd.read_csv(f"des://d/b.csv::{url}", storage_options=kw)["v"].tolist() == ["x"]


# -- listing at scale (item 6) -------------------------------------------------------------------------


def test_listing_is_linear_in_the_member_count(tmp_path):
    path = str(tmp_path / "many.des")
    names = [f"f{i % 500:03d}/m{i:05d}.txt" for i in range(50_000)]
    with DesWriter(path) as w:
        w.add_many(names, b"x" * 50_000, [1] * 50_000)
    fs = DesFileSystem(fo=path, index_cache=None)
    timings = {}
    for what, call, expect in [
        ("find", lambda: len(fs.find("")), 50_000),
        ("find withdirs", lambda: len(fs.find("", withdirs=True)), 50_500),
        ("ls", lambda: [len(fs.ls(f"f{i:03d}")) for i in range(0, 500, 50)], [100] * 10),
        ("glob", lambda: len(fs.glob("f01*/*.txt")), 1000),
        ("glob **", lambda: len(fs.glob("**/m0000*.txt")), 10),
        ("walk", lambda: sum(len(files) for _, _, files in fs.walk("")), 50_000),
        ("du", lambda: fs.du(""), 50_000),
    ]:
        t0 = time.perf_counter()
        assert call() == expect, what
        timings[what] = time.perf_counter() - t0
    assert all(t < 3 for t in timings.values()), timings  # fsspec's default walk took > 50 s
    assert fs.find("f007/m00007.txt") == ["f007/m00007.txt"] and fs.find("nope") == []
    assert fs.find("", maxdepth=1, withdirs=True)[:2] == ["f000", "f001"]


# -- writing (item 8) ----------------------------------------------------------------------------------


def test_pandas_writes_a_new_container_through_des(tmp_path):
    df = pd.DataFrame({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    df.to_parquet(f"des://x.parquet::{tmp_path}/p.des")
    df.to_csv(f"des://x.csv::{tmp_path}/c.des", index=False)
    with fsspec.open(f"des://a/raw.bin::{tmp_path}/r.des", "wb") as f:
        f.write(b"\x00raw")
    assert pd.read_parquet(f"des://x.parquet::{tmp_path}/p.des").equals(df)
    assert pd.read_csv(f"des://x.csv::{tmp_path}/c.des").equals(df)
    assert fsspec.open(f"des://a/raw.bin::{tmp_path}/r.des").open().read() == b"\x00raw"
    # A second member would rewrite the container: refused, the container untouched.
    before = (tmp_path / "c.des").read_bytes()
    with pytest.raises(FileExistsError, match="c.des.*already exists.*mode='w'"):
        df.to_csv(f"des://y.csv::{tmp_path}/c.des", index=False)
    assert (tmp_path / "c.des").read_bytes() == before
    with pytest.raises(ValueError, match="member name"):
        fsspec.open(f"des://../up.csv::{tmp_path}/u.des", "wb").open()


def _session_roundtrip(url, target, so):
    df = pd.DataFrame({"k": [1, 2], "v": [0.5, 1.5]})
    with DesFileSystem(fo=url, mode="w", target_options=so, compression="zstd") as fs:
        with fs.open("t/a.parquet", "wb") as f:
            df.to_parquet(f)
        with fs.open("t/b.csv", "wb") as f:
            f.write(b"k,v\n" * 1000)
        assert not target.exists(url)  # nothing visible before close
    back = DesFileSystem(fo=url, target_options=so, index_cache=None)
    assert back.find("") == ["t/a.parquet", "t/b.csv"]
    assert pd.read_parquet(back.open("t/a.parquet")).equals(df)
    assert back.cat_file("t/b.csv") == b"k,v\n" * 1000 and back.reader.info("t/b.csv").compressed


def _failed_session_leaves_nothing(url, target, so):
    with pytest.raises(RuntimeError, match="boom"):
        with DesFileSystem(fo=url, mode="w", target_options=so) as fs:
            with fs.open("a.txt", "wb") as f:
                f.write(b"a")
            raise RuntimeError("boom")
    assert not target.exists(url)
    with DesFileSystem(fo=url, mode="w", target_options=so) as fs:
        with pytest.raises(RuntimeError), fs.open("half.txt", "wb") as f:
            f.write(b"half")
            raise RuntimeError("a member that fails is dropped")
        with fs.open("ok.txt", "wb") as f:
            f.write(b"ok")
    assert DesFileSystem(fo=url, target_options=so, index_cache=None).find("") == ["ok.txt"]
    fs = DesFileSystem(fo=url, mode="w", target_options=so)
    left_open = fs.open("open.txt", "wb")
    left_open.write(b"never closed")
    with pytest.raises(ValueError, match="still open"):
        fs.close()
    with pytest.raises(ValueError, match="after the write session was failed"):
        left_open.close()
    assert DesFileSystem(fo=url, target_options=so, index_cache=None).find("") == ["ok.txt"]


def test_write_session_local(tmp_path):
    target = fsspec.filesystem("file")
    _session_roundtrip(str(tmp_path / "s.des"), target, {})
    _failed_session_leaves_nothing(str(tmp_path / "f.des"), target, {})
    assert sorted(os.listdir(tmp_path)) == ["f.des", "s.des"]  # no temporary left


def test_write_session_and_one_member_on_s3(s3_endpoint, s3_bucket):
    s3, so = s3_endpoint.s3fs(), s3_endpoint.storage_options()
    _session_roundtrip(f"s3://{s3_bucket}/s.des", s3, so)
    _failed_session_leaves_nothing(f"s3://{s3_bucket}/f.des", s3, so)
    df = pd.DataFrame({"k": [1, 2, 3]})
    df.to_parquet(f"des://x.parquet::s3://{s3_bucket}/new.des", storage_options={"s3": so})
    assert pd.read_parquet(f"des://x.parquet::s3://{s3_bucket}/new.des", storage_options={"s3": so}).equals(df)
    assert sorted(p.rsplit("/", 1)[1] for p in s3.ls(s3_bucket)) == ["f.des", "new.des", "s.des"]
    uploads = s3_endpoint.boto3_client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert uploads == []  # the failed session's upload was aborted
