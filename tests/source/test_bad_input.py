"""Bad input: malformed rows/lines/files with fail and skip, empty files, vanished files."""

from __future__ import annotations

import gzip
import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.source import BadDataError, FileBatch, Source, SourceError
from tests.source.helpers import drain, put, s3_config


def _parquet(n: int = 3000) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"i": range(n), "s": [f"v{i}" * 3 for i in range(n)]}), sink, row_group_size=1000,
                   compression="snappy")
    return sink.getvalue()


BAD_FILES = {
    "csv": ("s/a.csv", b"a,b\n1,2\n3,4,5\n6,7\n", "line 3: expected 2 columns, got 3", [1, 6]),
    "json": ("s/a.jsonl", b'{"a": 1}\n{"a": 2\n{"a": 6}\n', "line 2: invalid JSON", [1, 6]),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_malformed_row_fail_names_file_and_line(s3_endpoint, s3_bucket, kind):
    key, body, message, _ = BAD_FILES[kind]
    put(s3_endpoint, s3_bucket, {key: body, "s/z.csv" if kind == "json" else "s/z.jsonl": b""})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    got = []
    with pytest.raises(BadDataError) as info:
        for event in src.read("s"):
            if isinstance(event, FileBatch):
                got.extend(event.batch.to_pylist())
    assert key.split("/", 1)[0] + "/" + key.split("/", 1)[1] in str(info.value) and message in str(info.value)
    assert all(r["a"] != 6 for r in got)  # nothing after the bad row


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_malformed_row_skip_counts(s3_endpoint, s3_bucket, kind, caplog):
    key, body, _, expected = BAD_FILES[kind]
    put(s3_endpoint, s3_bucket, {key: body})
    src = Source(s3_config(s3_endpoint, s3_bucket, on_bad_record="skip"))
    with caplog.at_level(logging.WARNING, logger="connector.source"):
        rows, done = drain(src, "s")
    assert [r["a"] for r in rows] == expected
    assert done[0].skipped == 1 and done[0].records == 2
    assert any("skipped 1 bad record" in m and key.split("/", 1)[1] in m for m in caplog.messages)


def test_corrupt_parquet_row_group(s3_endpoint, s3_bucket):
    data = bytearray(_parquet())
    pf = pq.ParquetFile(io.BytesIO(bytes(data)))
    col = pf.metadata.row_group(1).column(1)
    start = col.data_page_offset
    data[start + 40: start + 400] = b"\xff" * 360  # garble a page of row group 1
    put(s3_endpoint, s3_bucket, {"p/a.parquet": bytes(data)})
    with pytest.raises(BadDataError, match=r"p/a\.parquet: row group 1"):
        drain(Source(s3_config(s3_endpoint, s3_bucket)), "p")
    rows, done = drain(Source(s3_config(s3_endpoint, s3_bucket, on_bad_record="skip")), "p")
    assert len(rows) == 2000 and done[0].skipped == 1


def test_not_parquet_at_all(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"p/a.parquet": b"this is not parquet" * 10, "p/b.parquet": _parquet(10)})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    with pytest.raises(BadDataError, match=r"p/a\.parquet"):
        drain(src, "p")


def test_bad_gzip(s3_endpoint, s3_bucket):
    good = gzip.compress(b"a\n" + b"".join(b"%d\n" % i for i in range(1000)))
    put(s3_endpoint, s3_bucket, {"g/a.csv.gz": b"\x1f\x8b" + b"garbage" * 50, "g/b.csv.gz": good[: len(good) // 2]})
    src = Source(s3_config(s3_endpoint, s3_bucket, file_format="csv"))
    with pytest.raises(BadDataError, match=r"g/a\.csv\.gz"):
        list(src.read("g"))
    rows, done = drain(Source(s3_config(s3_endpoint, s3_bucket, on_bad_record="skip")), "g")
    assert [d.skipped for d in done] == [1, 1]


def test_empty_files_and_empty_folders(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"e/a.csv": b"", "e/b.jsonl": b"", "e/c.json": b"  \n", "e/d.parquet": b"",
                                 "e/e.csv.gz": gzip.compress(b""), "nothing/": b""})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    assert src.streams() == ["e"]
    assert src.discover()[0]["json_schema"]["properties"].keys() == {"_last_modified_time", "_file"}
    rows, done = drain(src, "e")
    assert rows == [] and len(done) == 5 and all(d.records == 0 for d in done)


def test_empty_bucket_check_fails_clearly(s3_endpoint, s3_bucket):
    src = Source(s3_config(s3_endpoint, s3_bucket))
    assert src.streams() == [] and src.discover() == []
    with pytest.raises(SourceError, match="no data files found"):
        src.check()


def test_missing_bucket_or_folder_is_named(s3_endpoint, tmp_path):
    src = Source(s3_config(s3_endpoint, "no-such-bucket-xyz"))
    for call in (src.streams, src.discover, src.check, lambda: src.read("any")):
        with pytest.raises(SourceError, match="bucket 'no-such-bucket-xyz' does not exist"):
            call()
    with pytest.raises(SourceError, match=r"nowhere does not exist"):
        Source({"root_url": str(tmp_path / "nowhere")}).check()


def test_file_deleted_between_list_and_read(s3_endpoint, s3_bucket, caplog):
    put(s3_endpoint, s3_bucket, {"d/a.csv": b"i\n1\n", "d/b.csv": b"i\n2\n", "d/c.csv": b"i\n3\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket, max_threads=1))
    events = src.read("d")  # lists now
    s3_endpoint.boto3_client().delete_object(Bucket=s3_bucket, Key="d/b.csv")
    rows, done = [], []
    with caplog.at_level(logging.WARNING, logger="connector.source"):
        for event in events:
            (rows.extend(event.batch.to_pylist()) if isinstance(event, FileBatch) else done.append(event))
    assert [r["i"] for r in rows] == [1, 3]
    assert [d.file.key for d in done] == ["d/a.csv", "d/c.csv"]  # b is not counted as synced
    assert "d/b.csv" not in done[-1].state["_files_at_cursor"]
    assert any("d/b.csv" in m and "no longer exists" in m for m in caplog.messages)
