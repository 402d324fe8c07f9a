"""No read returns another version's bytes: a container replaced, rewritten or cut under its name
while its index is known (cached in the process, or held by an open filesystem) is detected on
the read itself: S3 GETs carry ``If-Match: <ETag>``, local reads check size and mtime."""

from __future__ import annotations

import os
import time

import fsspec
import pandas as pd
import pytest

from connector.des import DesWriter, IndexCache
from connector.des.blob import ContainerChanged
from connector.des.fs import DesFileSystem

OLD = {"a.csv": b"id,v\n1,old-a\n", "b.csv": b"id,v\n2,old-b\n"}
# Same names and lengths, other order and content: old offsets now point into another member.
NEW_SAME_SIZE = {"b.csv": b"id,v\n2,new-b\n", "a.csv": b"id,v\n1,new-a\n"}
# b.csv of another length: a stale index cannot be followed by an open file.
NEW_OTHER_SIZE = {"b.csv": b"id,v\n2,new-b-longer\n", "a.csv": b"id,v\n1,new-a\n"}


def _bytes_of(members: dict[str, bytes], tmp_path) -> bytes:
    path = tmp_path / f"build-{time.monotonic_ns()}.des"
    with DesWriter(str(path)) as w:
        for name, data in members.items():
            w.add(name, data)
    return path.read_bytes()


class Local:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.url = str(tmp_path / "box.des")
        self.so: dict = {}

    def fs(self, cache):
        return DesFileSystem(fo=self.url, index_cache=cache)

    def replace(self, data: bytes) -> None:
        # Another process's atomic replace; the mtime must move even on coarse clocks.
        tmp = self.url + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        if os.path.exists(self.url):
            st = os.stat(self.url)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        os.replace(tmp, self.url)

    def chained(self, name: str) -> str:
        return f"des://{name}::{self.url}"


class OnS3:
    def __init__(self, tmp_path, s3_endpoint, s3_bucket):
        self.tmp = tmp_path
        self.url = f"s3://{s3_bucket}/box.des"
        self.so = s3_endpoint.storage_options()
        self.s3 = s3_endpoint.s3fs()

    def fs(self, cache):
        return DesFileSystem(fo=self.url, target_options=self.so, index_cache=cache)

    def replace(self, data: bytes) -> None:
        self.s3.pipe(self.url, data)

    def chained(self, name: str) -> str:
        return f"des://{name}::{self.url}"


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    if request.param == "local":
        w = Local(tmp_path)
    else:
        w = OnS3(tmp_path, request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"))
    w.replace(_bytes_of(OLD, tmp_path))
    return w


def test_a_new_filesystem_on_a_cached_index_reads_the_new_container(where):
    cache = IndexCache()
    assert where.fs(cache).cat_file("b.csv") == OLD["b.csv"]  # the index is now cached
    where.replace(_bytes_of(NEW_SAME_SIZE, where.tmp))
    fs = where.fs(cache)
    assert fs.cat_file("b.csv", 5, 12) == NEW_SAME_SIZE["b.csv"][5:12]
    where.replace(_bytes_of(OLD, where.tmp))
    assert where.fs(cache).open("a.csv").read() == OLD["a.csv"]


def test_open_on_a_stale_index_follows_a_same_size_member_or_refuses(where):
    cache = IndexCache()
    where.fs(cache).ls("")
    where.replace(_bytes_of(NEW_SAME_SIZE, where.tmp))
    with where.fs(cache).open("a.csv") as f:  # nothing served yet: the new version is read
        assert f.read() == NEW_SAME_SIZE["a.csv"]
    stale = where.fs(cache)
    where.replace(_bytes_of(NEW_OTHER_SIZE, where.tmp))
    with stale.open("b.csv") as f, pytest.raises(ContainerChanged, match="box.des.*changed"):
        f.read()
    assert where.fs(cache).open("b.csv").read() == NEW_OTHER_SIZE["b.csv"]  # reloaded by then


def test_pandas_after_a_replace_never_reads_the_old_offsets(where):
    # The process-wide cache, as pandas uses it.
    opts = {"storage_options": {"s3": where.so}} if where.so else {}
    assert pd.read_csv(where.chained("b.csv"), **opts)["v"].tolist() == ["old-b"]
    where.replace(_bytes_of(NEW_SAME_SIZE, where.tmp))
    assert pd.read_csv(where.chained("b.csv"), **opts)["v"].tolist() == ["new-b"]
    assert fsspec.open(where.chained("a.csv"), **({"s3": where.so} if where.so else {})).open().read() == NEW_SAME_SIZE["a.csv"]


def test_a_file_that_served_bytes_never_mixes_versions(where):
    fs = where.fs(IndexCache())
    with fs.open("a.csv", block_size=4, cache_type="none") as f:
        assert f.read(4) == OLD["a.csv"][:4]
        where.replace(_bytes_of(NEW_SAME_SIZE, where.tmp))
        with pytest.raises(ContainerChanged):
            f.read()


def test_a_container_cut_at_the_front_is_never_read_shifted(where):
    cache = IndexCache()
    fs = where.fs(cache)
    assert fs.cat_file("a.csv") == OLD["a.csv"]
    data = _bytes_of(OLD, where.tmp)
    where.replace(data[7:])  # same tail, 7 bytes fewer in front: every offset is off by 7
    with pytest.raises((ContainerChanged, ValueError)):
        fs.open("b.csv").read()
    with pytest.raises((ContainerChanged, ValueError)):
        fs.cat_file("b.csv", 0, 6)
    with pytest.raises((ContainerChanged, ValueError)):
        where.fs(cache).open("b.csv").read()
    with pytest.raises((ContainerChanged, ValueError)):
        where.fs(cache).cat_file("b.csv", 0, 6)


def test_an_external_member_replaced_between_two_ranges_is_refused(where):
    # A _bigFiles/ object is its own object: its version is fixed by the first ranged read.
    data = bytes(range(256)) * 40
    fs_target = fsspec.filesystem("file") if isinstance(where, Local) else where.s3
    box = where.url.replace("box.des", "ext.des")
    with DesWriter(box, fs=fs_target, big_file_threshold=1000) as w:
        w.add("big.bin", data)
    fs = DesFileSystem(fo=box, target_options=where.so or None, index_cache=IndexCache())
    assert fs.reader.info("big.bin").external
    with fs.open("big.bin", block_size=100, cache_type="none") as f:
        assert f.read(100) == data[:100]
        external = fs.reader._external_at[fs.reader.info("big.bin")]
        time.sleep(0.01)
        fs_target.pipe(external, data[::-1])  # same length, other bytes
        if isinstance(where, Local):  # make sure the mtime moves on coarse clocks
            st = os.stat(external)
            os.utime(external, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        with pytest.raises(ContainerChanged, match="external object"):
            f.read(100)
