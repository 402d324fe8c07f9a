"""What sampling and reading a large CSV/JSON object costs on S3, counted at a proxy in front of
the test server: schema inference fetches the sample, not the object, and a read fetches bounded
blocks (the first batch does not wait for the whole object)."""

from __future__ import annotations

import pytest

from connector.source import FileBatch, Source
from connector.source.formats import BLOCK_SIZE, READ_BLOCK, SAMPLE_BLOCK
from tests.source.helpers import put, s3_config
from tests.support.s3proxy import CountingProxy

ROWS = 600_000


PAD = b"x" * 40


def _object(fmt: str) -> tuple[str, bytes]:
    if fmt == "jsonl":
        return "costs/jsonl/rows/a.jsonl", b"".join(b'{"id":%d,"name":"row %d %s","ok":true}\n' % (i, i, PAD)
                                                     for i in range(ROWS))
    return "costs/csv/rows/a.csv", b"id,name,ok\n" + b"".join(b"%d,row %d %s,true\n" % (i, i, PAD) for i in range(ROWS))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_inference_fetches_the_sample_and_reads_fetch_bounded_blocks(fmt, s3_endpoint, s3_bucket):
    key, body = _object(fmt)
    assert len(body) > 4 * READ_BLOCK  # a few blocks, far more than a sample
    put(s3_endpoint, s3_bucket, {key: body})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = s3_config(s3_endpoint, s3_bucket, path_prefix=f"costs/{fmt}", file_format="auto")
        config["endpoint"] = proxy.url
        source = Source(config)
        with proxy.window() as sampling:
            schema = source.schema("rows")
        assert schema.names[:3] == ["id", "name", "ok"]
        # One sample block (plus, for CSV, the block Arrow's streaming reader reads ahead).
        assert sampling.sent <= 3 * SAMPLE_BLOCK < len(body) / 2, sampling

        with proxy.window() as reading:
            ids = [i for ev in source.read("rows", sync_mode="full_refresh") if isinstance(ev, FileBatch)
                   for i in ev.batch.column("id").to_pylist()]
        assert ids == list(range(ROWS))
        gets = [e for e in reading.exchanges if e.request.method == "GET" and e.request.range]
        # s3fs's read-ahead fetches what a parse block asks for plus one READ_BLOCK: never the object.
        assert len(gets) >= 3 and max(e.sent for e in gets) <= BLOCK_SIZE + READ_BLOCK < len(body) / 2, reading
        # Each byte fetched once by the read; Arrow's CSV reader may still be reading ahead for the
        # sample when the read starts, so that block can land in either window.
        assert sampling.sent + reading.sent <= len(body) + 3 * SAMPLE_BLOCK


def test_des_source_read_lists_the_root_once(s3_endpoint, s3_bucket, tmp_path):
    """A read command lists its root once (not once for the stream names, once per stream and once
    per estimate): each LIST is a request that small incremental runs pay in full."""
    import json
    import subprocess
    import sys

    put(s3_endpoint, s3_bucket, {f"once/{s}/{i}.csv": b"id,v\n%d,x\n" % i for s in ("a", "b") for i in range(3)})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = s3_config(s3_endpoint, s3_bucket, path_prefix="once", file_format="csv")
        config["endpoint"] = proxy.url
        (tmp_path / "config.json").write_text(json.dumps(config))
        streams = [{"stream": {"name": s, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                    "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"} for s in ("a", "b")]
        (tmp_path / "catalog.json").write_text(json.dumps({"streams": streams}))
        with proxy.window() as w:
            out = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", "read", "--config",
                                  str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
                                 capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.count(b'"type":"RECORD"') == 6
        lists = [e for e in w.exchanges if "list-type=2" in e.request.path]
        assert len(lists) == 1, w


def test_big_files_are_read_two_at_a_time_whatever_max_threads(tmp_path):
    """Memory: each file being read holds blocks and batches while the consumer emits one file at
    a time, so files of BIG_FILE bytes or more are read at most BIG_IN_FLIGHT at once (the one being
    emitted and the next); records still come in file order, every one of them."""
    import time

    from fsspec.implementations.local import LocalFileSystem

    from connector.source.read import BIG_FILE, BIG_IN_FLIGHT

    rows = BIG_FILE // 19  # > BIG_FILE bytes of "<id>,<pad>\n" (19-21 bytes a row)
    for f in range(5):
        body = b"id,pad\n" + b"".join(b"%d,%s\n" % (f * rows + i, b"p" * 12) for i in range(rows))
        assert len(body) >= BIG_FILE
        (tmp_path / "rows").mkdir(exist_ok=True)
        (tmp_path / "rows" / f"{f}.csv").write_bytes(body)

    class Counting(LocalFileSystem):
        """Each file's reading span: from its open to its last read (files are not always closed
        explicitly, so closes cannot be counted)."""

        spans: dict[str, list[float]] = {}

        def open(self, path, mode="rb", **kwargs):
            f = super().open(path, mode, **kwargs)
            span = Counting.spans.setdefault(f"{path}#{len(Counting.spans)}", [time.monotonic()] * 2)
            read = f.read

            def reading(*args):
                data = read(*args)
                span[1] = time.monotonic()
                return data

            f.read = reading
            return f

    source = Source({"root_url": str(tmp_path), "file_format": "csv", "max_threads": 10}, fs=Counting())
    source.schema("rows")
    Counting.spans.clear()
    ids = [i for ev in source.read("rows", sync_mode="full_refresh") if isinstance(ev, FileBatch)
           for i in ev.batch.column("id").to_pylist()]
    assert ids == list(range(5 * rows))
    spans = list(Counting.spans.values())
    assert len(spans) == 5
    most = max(sum(a <= t <= b for a, b in spans) for t, _ in spans)
    # At most BIG_IN_FLIGHT (without the limit max_threads opens all five at once); fewer when a
    # file is read before the next one's open (a CI run read each in 2 ms, one at a time).
    assert most <= BIG_IN_FLIGHT, spans
