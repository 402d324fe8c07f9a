"""Members of .zip archives: files of their stream, read by range (bytes counted at the S3 proxy),
formats by their own extension, state by the archive's LastModified."""

from __future__ import annotations

import random
import sys
import zipfile
from pathlib import Path

import pytest

from connector.source import BadDataError, Source
from tests.source.formats_helpers import source_for, validated_records
from tests.source.helpers import drain, put, s3_config
from tests.support.s3proxy import CountingProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testdata"))
import generate  # testdata/generate.py: the fixture writer

CSV = b"id,name\n1,a\n2,b\n"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_members_are_files_of_the_stream(where, s3_endpoint, s3_bucket):
    src = source_for(where, s3_endpoint, s3_bucket)
    assert [r.key for r in src.files("zipped")] == [
        "zipped/batch_01.zip/nested/part-3.csv.gz", "zipped/batch_01.zip/part-1.csv",
        "zipped/batch_01.zip/part-2.jsonl", "zipped/batch_02.zip/part-4.csv"]  # README.txt, nested/ left out
    records = validated_records(src, "zipped")
    assert sorted(r["id"] for r in records) == list(range(1, 41))
    by_file = {}
    for r in records:
        by_file.setdefault(r["_file"], []).append(r["id"])
    assert by_file["zipped/batch_01.zip/part-2.jsonl"] == list(range(11, 21))  # JSON Lines member
    assert by_file["zipped/batch_01.zip/nested/part-3.csv.gz"] == list(range(21, 31))  # gzip inside zip


def test_a_member_is_read_by_range_not_the_archive(s3_endpoint, s3_bucket):
    blob = random.Random(3).randbytes(6 << 20)  # incompressible, stored: the archive is > 6 MiB
    archive = generate.zipped({"small.csv": CSV, "blob.bin": blob, "tail.csv": CSV}, zipfile.ZIP_STORED)
    put(s3_endpoint, s3_bucket, {"z/s/a.zip": archive})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = s3_config(s3_endpoint, s3_bucket, path_prefix="z")
        config["endpoint"] = proxy.url
        src = Source(config)
        with proxy.window() as listing:
            refs = src.files("s")
        assert [r.key for r in refs] == ["s/a.zip/small.csv", "s/a.zip/tail.csv"]
        assert listing.sent < 256 << 10, listing  # the central directory, not the archive
        with proxy.window() as reading:
            rows, done = drain(src, "s")
        assert [r["_file"] for r in rows] == ["s/a.zip/small.csv"] * 2 + ["s/a.zip/tail.csv"] * 2
        assert [r["id"] for r in rows] == [1, 2, 1, 2] and len(done) == 2
        assert reading.sent < 1 << 20 < len(archive), reading  # the blob between them is never fetched
        assert all(e.request.range for e in reading.exchanges
                   if e.request.method == "GET" and e.request.path.split("?")[0].endswith("/a.zip")), reading


def test_state_follows_the_archive(tmp_path):
    from datetime import datetime, timezone

    from tests.source.helpers import write_local

    t1 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    write_local(tmp_path, {"s/a.zip": generate.zipped({"x.csv": CSV, "y.csv": CSV})}, mtime=t1)
    src = Source({"root_url": str(tmp_path)})
    rows, done = drain(src, "s")
    assert len(rows) == 4 and {r.file.last_modified for r in done} == {t1}
    state = done[-1].state
    assert state == {"_last_modified_time": "2024-01-01T00:00:00Z", "_files_at_cursor": ["s/a.zip/x.csv", "s/a.zip/y.csv"],
                     "_history": {}, "_history_start": "2023-12-29T00:00:00Z"}  # the 3-day look-back window
    assert drain(src, "s", state)[0] == []
    # A new archive in the same second is read, the old one's members are not read again.
    write_local(tmp_path, {"s/b.zip": generate.zipped({"z.csv": CSV})}, mtime=t1)
    rows, _ = drain(src, "s", state)
    assert {r["_file"] for r in rows} == {"s/b.zip/z.csv"}


def test_file_format_filters_members_and_globs_match_the_archive(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/a.zip").write_bytes(generate.zipped({"x.csv": CSV, "y.jsonl": b'{"id": 9}\n'}))
    src = Source({"root_url": str(tmp_path), "file_format": "json"})
    assert [r.key for r in src.files("s")] == ["s/a.zip/y.jsonl"]
    src = Source({"root_url": str(tmp_path), "streams": [{"name": "zips", "globs": ["s/*.zip"]}]})
    assert [r.key for r in src.files("zips")] == ["s/a.zip/x.csv", "s/a.zip/y.jsonl"]


def test_corrupt_archive_fails_naming_it_or_is_skipped(tmp_path, caplog):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/bad.zip").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "s/ok.csv").write_bytes(CSV)
    with pytest.raises(BadDataError, match=r"s/bad\.zip: not a readable zip archive"):
        Source({"root_url": str(tmp_path)}).streams()
    rows, _ = drain(Source({"root_url": str(tmp_path), "on_bad_record": "skip"}), "s")
    assert len(rows) == 2 and "s/bad.zip" in caplog.text


def test_corrupt_member_is_bad_data_naming_the_member(tmp_path):
    rng = random.Random(5)
    archive = bytearray(generate.zipped({"x.csv": b"id\n" + b"".join(b"%d\n" % rng.getrandbits(40) for _ in range(5000))}))
    start = archive.index(b"x.csv") + 1000
    archive[start:start + 20] = bytes(20)  # inside the deflate stream of the member
    (tmp_path / "s").mkdir()
    (tmp_path / "s/a.zip").write_bytes(bytes(archive))
    with pytest.raises(BadDataError, match=r"s/a\.zip/x\.csv"):
        drain(Source({"root_url": str(tmp_path)}), "s")


def test_encrypted_member_is_bad_data(tmp_path):
    archive = bytearray(generate.zipped({"x.csv": CSV}))
    # Set the "encrypted" flag in both the local header and the central directory entry.
    for header in (b"PK\x03\x04", b"PK\x01\x02"):
        at = archive.index(header) + (6 if header == b"PK\x03\x04" else 8)
        archive[at] |= 1
    (tmp_path / "s").mkdir()
    (tmp_path / "s/a.zip").write_bytes(bytes(archive))
    with pytest.raises(BadDataError, match=r"s/a\.zip/x\.csv: cannot read this zip member"):
        drain(Source({"root_url": str(tmp_path)}), "s")


def test_des_sync_files_mode_stores_each_member(tmp_path):
    import json
    import subprocess

    from connector.store import Store

    src = tmp_path / "data"
    members = {"x.csv": CSV, "sub/y.jsonl": b'{"id": 9}\n'}
    (src / "s").mkdir(parents=True)
    (src / "s/a.zip").write_bytes(generate.zipped(members))
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(src)}))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(tmp_path / "store")}))
    out = subprocess.run([sys.executable, "-m", "connector.cli", "sync", "--config", str(tmp_path / "src.json"),
                          "--destination", str(tmp_path / "dst.json"), "--state", str(tmp_path / "state.json"),
                          "--mode", "files"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "s -> s: 2 files, 2 datapoints" in out.stdout
    with Store(str(tmp_path / "store")) as store:
        assert sorted([store.read("s", 0), store.read("s", 1)]) == sorted(members.values())


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_parquet_avro_and_excel_members(tmp_path, compression):
    """Formats that seek (Parquet's footer, a workbook's directory) work inside an archive too,
    stored or deflated."""
    import io

    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2]}), sink)
    avro = io.BytesIO()
    fastavro.writer(avro, fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]}),
                    [{"id": 3}])
    members = {"a.parquet": sink.getvalue(), "b.avro": avro.getvalue(), "c.xlsx": generate.xlsx({"x": [["id"], [4]]})}
    (tmp_path / "s").mkdir()
    (tmp_path / "s/m.zip").write_bytes(generate.zipped(members, compression))
    src = Source({"root_url": str(tmp_path)})
    records = validated_records(src, "s")
    assert sorted((r["_file"], r["id"]) for r in records) == [
        ("s/m.zip/a.parquet", 1), ("s/m.zip/a.parquet", 2), ("s/m.zip/b.avro", 3), ("s/m.zip/c.xlsx", 4)]
