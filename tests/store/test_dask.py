"""Store.to_dask on a distributed.LocalCluster of 2 worker processes, against the S3 test server:
one partition per datarange, one ranged GET each, the same records as to_table."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pytest

from connector.store import Store, StoreError
from tests.support.s3proxy import CountingProxy

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """Two worker processes, one thread each: partitions are read in other processes than this one."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def batch(lo: int, hi: int) -> pa.Table:
    return pa.table({"id": list(range(lo, hi)), "group": [i % 3 for i in range(lo, hi)],
                     "big": [2**62 + i if i % 4 else None for i in range(lo, hi)]})


@pytest.fixture
def s3_store(s3_endpoint, s3_bucket) -> Iterator[Store]:
    with Store(f"s3://{s3_bucket}/store", storage_options=s3_endpoint.storage_options(), max_datapoints=10) as s:
        s.write_records("d", [batch(lo, min(lo + 10, 35)) for lo in range(0, 35, 10)])  # 4 dataranges
        yield s


def test_one_partition_per_datarange_read_by_the_workers_with_one_ranged_get_each(client, s3_store, s3_endpoint,
                                                                                  s3_bucket):
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, \
            Store(f"s3://{s3_bucket}/store", s3_store.catalog_path, storage_options=proxy.storage_options(s3_endpoint),
                  read_only=True) as store:
        df = store.to_dask("d")
        assert df.npartitions == 4 and df.divisions == (0, 10, 20, 30, 34)
        with proxy.window() as w:
            got = df.compute()
    gets = [e.request for e in w.exchanges if e.request.method == "GET"]
    assert len(gets) == 4 and all(r.range for r in gets), w
    assert len({r.path for r in gets}) == 4
    expected = s3_store.to_table("d").to_pandas(types_mapper=pd.ArrowDtype)
    expected.index = pd.RangeIndex(35, name="key")
    pd.testing.assert_frame_equal(got, expected)
    assert got["big"].dtype == pd.ArrowDtype(pa.int64()) and got["big"].iloc[5] == 2**62 + 5  # not a float


def test_group_by_and_columns_and_a_key_lookup(client, s3_store):
    df = s3_store.to_dask("d", columns=["group", "id"])
    assert list(df.columns) == ["group", "id"]
    sums = df.groupby("group")["id"].sum().compute().sort_index()
    assert sums.to_dict() == {g: sum(i for i in range(35) if i % 3 == g) for g in range(3)}
    assert df.loc[23].compute()["id"].tolist() == [23]


def test_a_version_reads_its_dataranges_and_an_aggregate_after_listing_loses_nothing(client, s3_store):
    s3_store.create_version("d", "1.0.0")
    s3_store.write_records("d", [batch(35, 40)])
    before_aggregate = s3_store.to_dask("d")  # lists 5 dataranges
    s3_store.aggregate("d", 0, 39)  # replaces and deletes the current containers the frame listed
    current = before_aggregate.compute()
    assert current["id"].tolist() == list(range(40)) and list(current.index) == list(range(40))
    old = s3_store.to_dask("d", version="1.0.0")
    assert old.npartitions == 4 and old.compute()["id"].tolist() == list(range(35))


def test_types_that_do_not_convert_exactly_are_an_error_not_a_rounding(client, tmp_path):
    with Store(str(tmp_path / "root"), max_datapoints=10) as store:
        store.write_records("d", [[{"x": 1}, {"x": 2}]])
        store.write_records("d", [[{"x": 2.5}]])
        with pytest.raises(StoreError, match=r"field 'x' is double in datarange \[2, 2\] but int64"):
            store.to_dask("d").compute()
        store.write_records("w", [[{"x": 1}]])
        store.write_records("w", [[{"x": 2**40}]])  # the same type: fine
        assert store.to_dask("w").compute()["x"].tolist() == [1, 2**40]
        store.write_files("f", [str(tmp_path / "root" / ".des-catalog.sqlite")])
        with pytest.raises(StoreError, match="holds files, not records"):
            store.to_dask("f")


def test_latest_by_keeps_the_last_record_per_key_as_to_table_does(client, tmp_path):
    """append_dedup reads through Dask: the highest key per primary key, across dataranges, nulls
    a key of their own; the same rows as to_table(latest_by=...)."""
    rows = [{"id": i % 7 if i % 11 else None, "v": i} for i in range(60)]
    with Store(str(tmp_path / "s"), max_datapoints=8) as store:
        store.write_records("d", [pa.Table.from_pylist(rows[i:i + 8]) for i in range(0, 60, 8)])
        got = store.to_dask("d", latest_by=["id"]).compute()
        expected = store.to_table("d", latest_by=["id"]).to_pylist()
        assert got.to_dict("records") == expected and len(expected) == 8  # ids 0..6 and null
        assert list(got.index) == sorted(got.index)
        assert list(store.to_dask("d", columns=["v"], latest_by=["id"]).compute().columns) == ["v"]
        with pytest.raises(StoreError, match="no field 'nope'"):
            store.to_dask("d", latest_by=["nope"])
