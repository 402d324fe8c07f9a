"""Parquet discovery reads only the footer: counted at the S3 client, over HTTP."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import s3fs

from connector.source import Source
from tests.source.helpers import put, s3_config


class CountingS3(s3fs.S3FileSystem):
    """s3fs that counts the bytes and GETs its files fetch (instrumentation of the remote side)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fetched_bytes = 0
        self.fetches = 0

    def _open(self, *args, **kwargs):
        f = super()._open(*args, **kwargs)
        fetch = f._fetch_range

        def counting(start, end):
            data = fetch(start, end)
            self.fetched_bytes += len(data)
            self.fetches += 1
            return data

        f._fetch_range = counting
        f.cache.fetcher = counting
        return f


def test_discover_reads_footer_only(s3_endpoint, s3_bucket):
    n = 200_000
    table = pa.table({"i": pa.array(range(n), pa.int64()), "s": [f"value-{i:08d}" for i in range(n)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=50_000, compression="none")
    data = sink.getvalue()
    assert len(data) > 3_000_000
    put(s3_endpoint, s3_bucket, {"p/a.parquet": data})
    config = s3_config(s3_endpoint, s3_bucket)
    fs = CountingS3(**s3_endpoint.storage_options())
    src = Source(config, fs=fs)
    [stream] = src.discover()
    assert set(stream["json_schema"]["properties"]) == {"i", "s", "_last_modified_time", "_file"}
    assert 0 < fs.fetched_bytes <= 256 << 10, fs.fetched_bytes  # the tail, not the 3+ MB file
    assert fs.fetches <= 3
    # and reading really does fetch the data
    rows = sum(e.batch.num_rows for e in src.read("p") if hasattr(e, "batch"))
    assert rows == n and fs.fetched_bytes >= len(data) * 0.9
