"""What a read decides comes from the source as it is now: no cached listing, schema or object
version is trusted past the point where it may have changed."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from fsspec.implementations.local import LocalFileSystem

from connector.source import FileBatch, FileDone, Source
from tests.source.helpers import drain, put, s3_config, write_local

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 1, 15, 11, 0, 0, tzinfo=timezone.utc)


class CachingLocalFileSystem(LocalFileSystem):
    """A filesystem keeping listings until told otherwise, as fsspec's dircache does (gcsfs, adlfs,
    s3fs's ls): a ``fs`` a caller may hand to :class:`Source`."""

    cachable = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.listings: dict = {}

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        key = (path, maxdepth, withdirs, detail)
        if key not in self.listings:
            self.listings[key] = super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        return self.listings[key]

    def invalidate_cache(self, path=None):
        self.listings.clear()


def test_a_caching_filesystem_still_shows_new_files(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"i\n1\n"}, T0)
    src = Source({"root_url": str(tmp_path)}, fs=CachingLocalFileSystem())
    _, done = drain(src, "s")
    write_local(tmp_path, {"s/b.csv": b"i\n2\n"}, T1)
    rows, _ = drain(src, "s", done[-1].state)
    assert [r["i"] for r in rows] == [2]  # the cached listing hid it


def test_a_rewritten_sample_file_is_sampled_again(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"i\n1\n"}, T0)
    src = Source({"root_url": str(tmp_path)})
    assert drain(src, "s")[0] == [{"i": 1, "_last_modified_time": T0, "_file": "s/a.csv"}]
    write_local(tmp_path, {"s/a.csv": b"i\n2.5\n"}, T1)  # same key, new content: a number now
    rows, _ = drain(src, "s")
    assert rows == [{"i": 2.5, "_last_modified_time": T1, "_file": "s/a.csv"}]  # was "2.5": the stale integer schema


def test_an_object_replaced_after_listing_is_read_once_in_its_new_version(s3_endpoint, s3_bucket, caplog):
    put(s3_endpoint, s3_bucket, {"d/a.csv": b"i\n1\n", "d/b.csv": b"i\n2\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket, max_threads=1))
    events = src.read("d")  # lists now
    time.sleep(1.1)  # the new version's LastModified is a later second
    put(s3_endpoint, s3_bucket, {"d/b.csv": b"i\n20\n"})
    rows, done = [], []
    with caplog.at_level(logging.WARNING, logger="connector.source"):
        for event in events:
            rows.extend(event.batch.to_pylist()) if isinstance(event, FileBatch) else done.append(event)
    assert any("d/b.csv" in m and "replaced since it was listed" in m for m in caplog.messages)
    assert [d.file.key for d in done] == ["d/a.csv"]  # b's listed version was never read: not synced
    more, _ = drain(src, "d", done[-1].state)
    assert [r["i"] for r in rows + more] == [1, 20]  # the old code read 20 twice (under two times)
    assert isinstance(done[0], FileDone)
