"""The ``des://`` filesystem: pandas, pyarrow and fsspec on containers in S3, with request counts."""

from __future__ import annotations

import io
import subprocess
import sys

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.des import DesWriter, IndexCache
from connector.des.fs import DesFileSystem
from tests.support.faults import fault_proxy

CSV = b"id,name\n1,ada\n2,bo\n"
JSONL = b'{"id": 1, "v": "x"}\n{"id": 2, "v": "y"}\n'


def _parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2, 3], "s": ["a", "b", "c"]}), sink)
    return sink.getvalue()


def _container(fs, path: str, members: dict[str, bytes], **kw) -> None:
    with DesWriter(path, fs=fs, **kw) as w:
        for name, data in members.items():
            w.add(name, data)


@pytest.fixture
def on_s3(s3_endpoint, s3_bucket):
    """(url, storage options) of a container with CSV/JSONL/Parquet members in the S3 test server."""
    url = f"s3://{s3_bucket}/x.des"
    _container(s3_endpoint.s3fs(), url, {"a.csv": CSV, "dir/b.csv": CSV, "dir/c.jsonl": JSONL,
                                         "p.parquet": _parquet(), "z.csv": CSV * 3}, compression=None)
    # z.csv is compressed: info() must still report its logical size.
    return url, s3_endpoint.storage_options()


def test_pandas_and_pyarrow_read_members_on_s3(on_s3):
    url, so = on_s3
    opts = {"s3": so}
    assert pd.read_csv(f"des://a.csv::{url}", storage_options=opts)["name"].tolist() == ["ada", "bo"]
    assert pd.read_json(f"des://dir/c.jsonl::{url}", lines=True, storage_options=opts)["v"].tolist() == ["x", "y"]
    assert pd.read_parquet(f"des://p.parquet::{url}", storage_options=opts)["s"].tolist() == ["a", "b", "c"]
    fs = DesFileSystem(fo=url, target_options=so)
    assert pq.read_table("p.parquet", filesystem=fs).column("id").to_pylist() == [1, 2, 3]
    files = fsspec.open_files(f"des://*.csv::{url}", s3=so)
    assert sorted(f.path for f in files) == ["a.csv", "z.csv"]
    with files[0] as f:
        assert f.read() == CSV


def test_listing_info_glob_find_and_ranges(on_s3):
    url, so = on_s3
    fs = DesFileSystem(fo=url, target_options=so)
    assert sorted(fs.ls("", detail=False)) == [
        "a.csv", "dir", "p.parquet", "z.csv"]
    assert sorted(fs.ls("dir", detail=False)) == ["dir/b.csv", "dir/c.jsonl"]
    assert fs.info("dir")["type"] == "directory"
    assert fs.info("a.csv")["size"] == len(CSV)
    assert sorted(fs.find("")) == ["a.csv", "dir/b.csv", "dir/c.jsonl", "p.parquet", "z.csv"]
    assert fs.glob("dir/*.csv") == ["dir/b.csv"]
    assert fs.cat_file("a.csv", 3, 7) == CSV[3:7]
    assert fs.cat_file("a.csv", -4) == CSV[-4:]
    assert fs.cat(["a.csv", "dir/b.csv"]) == {"a.csv": CSV, "dir/b.csv": CSV}
    with fs.open("a.csv") as f:
        f.seek(8)
        assert f.read(5) == CSV[8:13]
        f.seek(0)
        assert f.read() == CSV
    with pytest.raises(FileNotFoundError, match="nope"):
        fs.cat_file("nope")
    with pytest.raises(FileExistsError, match="already exists"):  # one-member writes create a container
        fs.open("a.csv", "wb")


def test_compressed_member_size_comes_from_meta(tmp_path):
    path = str(tmp_path / "c.des")
    _container(None, path, {"big.txt": b"abc" * 1000}, compression="zstd")
    fs = DesFileSystem(fo=path)
    assert fs.info("big.txt")["size"] == 3000
    assert fs.cat_file("big.txt", 10, 16) == (b"abc" * 1000)[10:16]


def _gets(proxy) -> int:
    return proxy.stats["GET"]


def test_request_costs_cold_warm_and_batch(s3_endpoint, s3_bucket):
    with fault_proxy(s3_endpoint.endpoint_url, fraction=0) as proxy:
        so = dict(s3_endpoint.storage_options(), client_kwargs={"endpoint_url": proxy.url,
                                                                 "region_name": s3_endpoint.region})
        url = f"s3://{s3_bucket}/many.des"
        members = {f"m/{i:04d}.txt": b"x%d\n" % i for i in range(300)}
        _container(s3_endpoint.s3fs(), url, members)
        cache = IndexCache()

        before = _gets(proxy)
        fs = DesFileSystem(fo=url, target_options=so, index_cache=cache)  # private: no other test warms it
        assert fs.cat_file("m/0007.txt") == b"x7\n"
        assert _gets(proxy) - before <= 2, proxy.stats

        # Warm: the index comes from the cache; only the member costs a request.
        from connector.des import DesReader
        before = _gets(proxy)
        warm = DesReader(url, storage_options=so, cache=cache)
        assert warm.read("m/0123.txt") == b"x123\n"
        assert _gets(proxy) - before <= 1, proxy.stats

        # 100 adjacent members, cold open included: at most 3 GETs.
        before = _gets(proxy)
        cold = DesFileSystem(fo=url, target_options=so, index_cache=None)
        names = [f"m/{i:04d}.txt" for i in range(100, 200)]
        out = cold.cat(names)
        assert out == {n: members[n] for n in names}
        assert _gets(proxy) - before <= 3, proxy.stats


def test_entry_point_in_a_fresh_interpreter(tmp_path):
    path = tmp_path / "x.des"
    _container(None, str(path), {"a.csv": CSV})
    code = ("import fsspec, sys\n"
            "assert 'connector' not in sys.modules\n"
            f"data = fsspec.open('des://a.csv::{path}').open().read()\n"
            "assert 'connector.des.fs' in sys.modules  # loaded through the fsspec.specs entry point\n"
            "sys.stdout.write(data.decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == CSV.decode()
