"""``des://`` under the clients people use: Dask (a 2-process LocalCluster), DuckDB, Polars,
pyarrow.dataset, pandas and dlt, on a local container and on the S3 test server.

Each read is checked against the same group-by on the plain files. On S3 every request passes a
counting proxy; the counts are asserted (a whole member never costs more than one GET once the
index is known) and printed as the README's cost table (``pytest -s`` shows it).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import fsspec
import numpy as np
import pandas as pd
import pytest

from connector.des import DEFAULT_CACHE, DesWriter
from connector.des.fs import DesFileSystem
from tests.support.s3proxy import CountingProxy

N_CSV, ROWS = 4, 20_000
COSTS: dict[str, str] = {}


def _frame(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    return pd.DataFrame({"k": rng.integers(0, 7, ROWS), "v": rng.integers(0, 1000, ROWS), "s": [f"r{i}-{j}" for j in range(ROWS)]})


FRAMES = [_frame(i) for i in range(N_CSV)]
ALL = pd.concat(FRAMES, ignore_index=True)


def expected(frame: pd.DataFrame = ALL) -> dict[int, int]:
    """The group-by every client must reproduce (taken from the plain data)."""
    return {int(k): int(v) for k, v in frame.groupby("k")["v"].sum().items()}


def grouped(df) -> dict[int, int]:
    if hasattr(df, "to_pandas"):  # polars / pyarrow
        df = df.to_pandas()
    return {int(k): int(v) for k, v in df.groupby("k")["v"].sum().items()}


def _members() -> dict[str, bytes]:
    out = {}
    for i, frame in enumerate(FRAMES):
        out[f"csv/part-{i}.csv"] = frame.to_csv(index=False).encode()
        sink = io.BytesIO()
        frame.to_parquet(sink, index=False)
        out[f"parquet/part-{i}.parquet"] = sink.getvalue()
        out[f"json/part-{i}.jsonl"] = frame.to_json(orient="records", lines=True).encode()
    out["other/readme.txt"] = b"not data\n"
    return out


MEMBERS = _members()


class Where:
    """A container somewhere, and how to reach it."""

    def __init__(self, url: str, so: dict | None, proxy: CountingProxy | None) -> None:
        self.url, self.so, self.proxy = url, so, proxy

    @property
    def chained_options(self) -> dict:
        return {"s3": self.so} if self.so else {}

    def chained(self, member: str) -> str:
        return f"des://{member}::{self.url}"

    def fs(self) -> DesFileSystem:
        return DesFileSystem(fo=self.url, target_options=self.so)

    def measure(self, label: str, run, *, cold: bool = True, max_gets: int | None = None):
        """Run ``run()``; on S3 count its requests (index cache cleared first when ``cold``)."""
        if cold:
            DEFAULT_CACHE.clear()
        if self.proxy is None:
            return run()
        with self.proxy.window() as w:
            out = run()
        gets, other = w.count("GET"), w.count() - w.count("GET")
        COSTS[label] = f"{gets} GET" + (f" + {other} other" if other else "")
        if max_gets is not None:
            assert gets <= max_gets and other == 0, (label, w)
        return out


@pytest.fixture(scope="module")
def proxy(s3_endpoint) -> Iterator[CountingProxy]:
    with CountingProxy(s3_endpoint.endpoint_url) as p:
        yield p


@pytest.fixture(scope="module", params=["local", "s3"])
def where(request, tmp_path_factory, s3_endpoint, proxy) -> Iterator[Where]:
    if request.param == "local":
        path = str(tmp_path_factory.mktemp("clients") / "data.des")
        with DesWriter(path) as w:
            for name, data in MEMBERS.items():
                w.add(name, data)
        yield Where(path, None, None)
        return
    bucket = f"clients-{uuid.uuid4().hex[:12]}"
    s3_endpoint.boto3_client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/data.des"
    with DesWriter(url, fs=s3_endpoint.s3fs()) as w:
        for name, data in MEMBERS.items():
            w.add(name, data)
    yield Where(url, proxy.storage_options(s3_endpoint), proxy)


@pytest.fixture(scope="module")
def dask_client():
    """One LocalCluster of 2 worker processes for the module (workers inherit PYTHONPATH/AWS_*)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def cost_table():
    yield
    if COSTS:
        print("\n| read | requests at the S3 proxy |\n|---|---|")
        for label, cost in COSTS.items():
            print(f"| {label} | {cost} |")


# -- pandas ----------------------------------------------------------------------------------------


def test_pandas_readers_and_writers(where, tmp_path):
    opts = {"storage_options": where.chained_options} if where.so else {}
    one = where.measure("pandas read_csv (1 member, cold)",
                        lambda: pd.read_csv(where.chained("csv/part-0.csv"), **opts), max_gets=2)
    assert grouped(one) == expected(FRAMES[0])
    warm = where.measure("pandas read_csv (1 member, index cached)",
                         lambda: pd.read_csv(where.chained("csv/part-1.csv"), **opts), cold=False, max_gets=1)
    assert grouped(warm) == expected(FRAMES[1])
    lines = where.measure("pandas read_json lines=True (index cached)",
                          lambda: pd.read_json(where.chained("json/part-2.jsonl"), lines=True, **opts),
                          cold=False, max_gets=1)
    assert grouped(lines) == expected(FRAMES[2])
    parquet = where.measure("pandas read_parquet (index cached)",
                            lambda: pd.read_parquet(where.chained("parquet/part-3.parquet"), **opts), cold=False)
    assert grouped(parquet) == expected(FRAMES[3])
    files = where.measure("fsspec.open_files + read() of 4 CSVs (cold)",
                          lambda: [f.open().read() for f in fsspec.open_files(where.chained("csv/*.csv"),
                                                                              **where.chained_options)],
                          max_gets=1 + N_CSV)
    assert files == [MEMBERS[f"csv/part-{i}.csv"] for i in range(N_CSV)]
    # Writers: a new container per member (pandas closes what it opens), read back.
    base = where.url.rsplit("/", 1)[0] + f"/out-{uuid.uuid4().hex[:8]}"
    ALL.to_parquet(f"des://all.parquet::{base}.des", storage_options=where.chained_options or None, index=False)
    ALL.to_csv(f"des://all.csv::{base}-csv.des", storage_options=where.chained_options or None, index=False)
    assert grouped(pd.read_parquet(f"des://all.parquet::{base}.des", **opts)) == expected()
    assert grouped(pd.read_csv(f"des://all.csv::{base}-csv.des", **opts)) == expected()


# -- pyarrow.dataset ---------------------------------------------------------------------------------


def test_pyarrow_dataset(where):
    import pyarrow.dataset as ds

    fs = where.fs()
    csv = where.measure("pyarrow.dataset csv (4 members, cold)",
                        lambda: ds.dataset("csv", filesystem=where.fs(), format="csv").to_table(use_threads=False))
    assert grouped(csv) == expected()
    parquet = ds.dataset("parquet", filesystem=fs, format="parquet").to_table(use_threads=False)
    assert grouped(parquet) == expected()


# -- DuckDB ------------------------------------------------------------------------------------------


def test_duckdb_register_filesystem(where):
    duckdb = pytest.importorskip("duckdb")

    def query(sql: str):
        con = duckdb.connect()
        con.register_filesystem(where.fs())
        try:
            return dict(con.sql(sql).fetchall())
        finally:
            con.close()

    sums = "select k, sum(v)::BIGINT from {} group by k"
    # DuckDB opens each CSV/JSON file three times (sniffing, binding, scanning): 3 whole reads.
    assert where.measure("DuckDB read_csv (4 members, cold)",
                         lambda: query(sums.format("read_csv('des://csv/*.csv')")), max_gets=1 + 3 * N_CSV) == expected()
    assert where.measure("DuckDB read_parquet (4 members, cold)",
                         lambda: query(sums.format("read_parquet('des://parquet/*.parquet')"))) == expected()
    assert where.measure("DuckDB read_json (4 members, cold)",
                         lambda: query(sums.format("read_json('des://json/*.jsonl')")), max_gets=1 + 3 * N_CSV) == expected()


# -- Polars ------------------------------------------------------------------------------------------


def test_polars_through_fsspec_files_and_pyarrow(where):
    pl = pytest.importorskip("polars")
    fs = where.fs()

    def read_all(reader, kind: str, ext: str):
        frames = []
        for i in range(N_CSV):
            with fs.open(f"{kind}/part-{i}.{ext}") as f:
                frames.append(reader(f))
        return pl.concat(frames)

    DEFAULT_CACHE.clear()
    fs = where.fs()
    assert grouped(where.measure("Polars read_csv over des files (4 members, index known)",
                                 lambda: read_all(pl.read_csv, "csv", "csv"), cold=False, max_gets=N_CSV)) == expected()
    assert grouped(where.measure("Polars read_ndjson over des files (4 members, index known)",
                                 lambda: read_all(pl.read_ndjson, "json", "jsonl"), cold=False,
                                 max_gets=N_CSV)) == expected()
    assert grouped(read_all(pl.read_parquet, "parquet", "parquet")) == expected()
    one = where.measure("Polars read_parquet use_pyarrow=True (1 member, cold)",
                        lambda: pl.read_parquet(where.chained("parquet/part-0.parquet"), use_pyarrow=True,
                                                storage_options=where.chained_options or None))
    assert grouped(one) == expected(FRAMES[0])


# -- Dask on a 2-process LocalCluster --------------------------------------------------------------


def test_dask_on_a_local_cluster(where, dask_client):
    import dask.bag as db
    import dask.dataframe as dd

    so = where.chained_options or None
    csv = dd.read_csv(where.chained("csv/*.csv"), blocksize=50_000, storage_options=so)
    assert csv.npartitions > N_CSV  # members really were split into blocks
    assert where.measure("Dask read_csv blocksize=50 kB (4 members, 2 workers)",
                         lambda: grouped(csv.compute()), cold=False) == expected()
    parquet = dd.read_parquet(where.chained("parquet/*.parquet"), storage_options=so)
    assert where.measure("Dask read_parquet (4 members, 2 workers)",
                         lambda: grouped(parquet.compute()), cold=False) == expected()
    lines = dd.read_json(where.chained("json/*.jsonl"), lines=True, blocksize=None, storage_options=so)
    assert where.measure("Dask read_json lines=True (4 members, 2 workers)",
                         lambda: grouped(lines.compute()), cold=False) == expected()
    text = db.read_text(where.chained("csv/*.csv"), blocksize=50_000, storage_options=so)
    assert where.measure("Dask bag.read_text blocksize=50 kB (4 members, 2 workers)",
                         lambda: text.count().compute(), cold=False) == N_CSV * (ROWS + 1)
    # An open member file travels to a worker and is read there.
    with where.fs().open("csv/part-2.csv") as f:
        f.seek(10)
        remote = dask_client.submit(lambda fh: (fh.tell(), fh.read()), f).result()
    assert remote == (10, MEMBERS["csv/part-2.csv"][10:])


# -- dlt ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dlt_pipeline_reads_members(where, tmp_path):
    dlt = pytest.importorskip("dlt")
    duckdb = pytest.importorskip("duckdb")
    from dlt.sources.filesystem import read_csv

    from connector.des.dlt import des_files

    rows = des_files(where.url, "csv/*.csv", target_options=where.so) | read_csv()
    pipeline = dlt.pipeline(pipeline_name=f"des_{uuid.uuid4().hex[:8]}", pipelines_dir=str(tmp_path / "dlt"),
                            destination=dlt.destinations.duckdb(str(tmp_path / "out.duckdb")), dataset_name="raw")
    where.measure("dlt filesystem source + read_csv (4 members, cold)", lambda: pipeline.run(rows.with_name("rows")))
    with duckdb.connect(str(tmp_path / "out.duckdb")) as con:
        got = dict(con.sql("select k, sum(v)::BIGINT from raw.rows group by k").fetchall())
        loads = con.sql("select count(distinct _dlt_load_id) from raw.rows").fetchall()
    assert got == expected() and loads == [(1,)]
