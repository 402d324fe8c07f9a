"""Reading an S3 object sends no HEAD: the listing gave its size and ETag, and every GET carries
``If-Match`` with the listed ETag, so a version other than the listed one is never read.

Counted at a proxy in front of the test server (tests/support/s3proxy.py)."""

from __future__ import annotations

import logging

import pytest

from connector.source import FileBatch, FileDone, Source
from connector.source.errors import FileChangedError
from connector.source.formats import data_errors, open_raw
from tests.source.helpers import drain, put, s3_config
from tests.support.s3proxy import CountingProxy

FORMATS = {
    "csv": lambda i: b"id,name\n%d,n%d\n%d,m%d\n" % (i, i, i + 100, i),
    "jsonl": lambda i: b'{"id": %d, "name": "n%d"}\n{"id": %d, "name": "m%d"}\n' % (i, i, i + 100, i),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_small_objects_are_read_with_one_get_each_and_no_head(fmt, s3_endpoint, s3_bucket):
    objects = {f"one-get-{fmt}/s/f{i:02d}.{fmt}": FORMATS[fmt](i) for i in range(12)}
    put(s3_endpoint, s3_bucket, objects)
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = s3_config(s3_endpoint, s3_bucket, path_prefix=f"one-get-{fmt}", max_threads=4) | {"endpoint": proxy.url}
        source = Source(config)
        listing = source.listing()  # what read is given, so the window holds the read alone
        schema = source.schema("s", listing["s"])
        with proxy.window() as seen:
            events = list(source.read("s", files=listing["s"]))
    rows = [row for e in events if isinstance(e, FileBatch) for row in e.batch.to_pylist()]
    done = [e for e in events if isinstance(e, FileDone)]
    assert schema.names[:2] == ["id", "name"]
    assert seen.count("HEAD") == 0, seen
    assert seen.count("GET") == len(objects), seen
    assert sorted(r["id"] for r in rows) == sorted([*range(12), *range(100, 112)])
    assert len(done) == len(objects)


def test_an_object_replaced_between_two_ranged_reads_is_a_changed_file_not_bad_data(s3_endpoint, s3_bucket):
    """The first GET of the listed version succeeds; the object is then replaced; the next range
    answers 412 (If-Match), which is the file having changed, not bad data to skip."""
    put(s3_endpoint, s3_bucket, {"mid/s/a.csv": b"id\n" + b"".join(b"%d\n" % i for i in range(1000))})
    source = Source(s3_config(s3_endpoint, s3_bucket, path_prefix="mid"))
    ref = source.listing()["s"][0]
    with pytest.raises(FileChangedError, match=r"s/a\.csv: replaced since it was listed"):
        with data_errors(ref), open_raw(source.fs, ref, block_size=64, cache_type="none") as raw:
            assert raw.read(16) == b"id\n0\n1\n2\n3\n4\n5\n6"
            put(s3_endpoint, s3_bucket, {"mid/s/a.csv": b"id\n" + b"".join(b"%d\n" % -i for i in range(1000))})
            raw.read(16)


def test_the_listed_version_is_read_whole_when_nothing_changes(s3_endpoint, s3_bucket):
    body = b"id\n" + b"".join(b"%d\n" % i for i in range(5000))
    put(s3_endpoint, s3_bucket, {"whole/s/a.csv": body})
    source = Source(s3_config(s3_endpoint, s3_bucket, path_prefix="whole"))
    ref = source.listing()["s"][0]
    with data_errors(ref), open_raw(source.fs, ref, block_size=1000, cache_type="readahead") as raw:
        assert raw.size == len(body) and raw.read() == body
    rows, done = drain(source, "s")
    assert [r["id"] for r in rows] == list(range(5000)) and len(done) == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_object_replaced_mid_read_is_skipped_as_changed_through_the_whole_read(fmt, s3_endpoint, s3_bucket, caplog):
    """Through the format readers (Arrow reads the file object on its own threads): the rows
    already read stay, the file is not counted as synced, and its new version is read next time;
    with on_bad_record=skip the old code dropped the rest of the file as bad data instead."""
    # Past what is read ahead by the time the first batch is out (for CSV, Arrow's 32 blocks of
    # 512 KiB plus the queued batches), so ranges are still to be fetched after it.
    if fmt == "csv":
        body = b"id\n" + b"".join(b"%d\n" % i for i in range(6_000_000))
    else:
        body = b"".join(b'{"id": %d}\n' % i for i in range(400_000))
    key = f"midread-{fmt}/s/a.{fmt}"
    put(s3_endpoint, s3_bucket, {key: body})
    source = Source(s3_config(s3_endpoint, s3_bucket, path_prefix=f"midread-{fmt}", max_threads=1,
                              on_bad_record="skip", batch_size=1000))
    files = source.listing()["s"]
    events = source.read("s", files=files)
    first = next(events)
    assert isinstance(first, FileBatch)
    put(s3_endpoint, s3_bucket, {key: body.replace(b"1", b"7")})
    with caplog.at_level(logging.WARNING, logger="connector.source"):
        rest = list(events)
    assert not [e for e in rest if isinstance(e, FileDone)]  # not synced: read again next time
    assert any("replaced since it was listed" in m for m in caplog.messages), caplog.messages
