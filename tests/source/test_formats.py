"""Formats, compression and type inference, read from the S3 test server over HTTP."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.source import Source
from connector.source.infer import declared_column
from tests.source.helpers import compress, drain, put, s3_config

CSV = b"id,name,score,ok,at,note\n1,Ada,1.5,true,2024-01-01T10:00:00Z,\n2,\"Bo, Jr\",2,false,2024-01-02 11:00:00,x\n3,Cy,,TRUE,,y\n"


def test_streams_at_depth_one_ignore_top_level_and_other_extensions(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {
        "data/users/a.csv": CSV,
        "data/orders/o.jsonl": b'{"a": 1}\n',
        "data/readme.txt": b"hello",
        "data/top.csv": CSV,  # not inside a stream folder
        "data/images/x.png": b"\x89PNG",
        "data/empty/": b"",  # folder placeholder only: no stream
    })
    src = Source(s3_config(s3_endpoint, s3_bucket, path_prefix="data/"))
    assert src.streams() == ["orders", "users"]
    [ref] = src.files("users")
    assert ref.key == "users/a.csv" and ref.url == f"s3://{s3_bucket}/data/users/a.csv"
    assert ref.size == len(CSV) and ref.last_modified.tzinfo is not None and ref.etag


def test_csv_types_inferred(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"users/a.csv": CSV})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    [stream] = src.discover()
    props = stream["json_schema"]["properties"]
    # A later value that does not fit its column is kept as text: the declared types admit it.
    assert props["id"]["type"] == ["null", "integer", "string"]
    assert props["score"]["type"] == ["null", "number", "string"]
    assert props["ok"]["type"] == ["null", "boolean", "string"]
    # a sampled date-time column admits the text a later value that is not one is kept as
    assert props["at"] == {"anyOf": [{"type": ["null", "string"], "format": "date-time"}, {"type": "string"}]}
    assert props["name"]["type"] == ["null", "string"]
    assert props["_last_modified_time"]["format"] == "date-time" and "_file" in props
    assert stream["source_defined_cursor"] is True and stream["default_cursor_field"] == ["_last_modified_time"]
    assert set(stream["supported_sync_modes"]) == {"full_refresh", "incremental"}
    rows, done = drain(src, "users")
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[1]["name"] == "Bo, Jr" and rows[2]["score"] is None and rows[2]["ok"] is True
    assert rows[0]["at"].isoformat() == "2024-01-01T10:00:00+00:00"
    assert rows[1]["at"].isoformat() == "2024-01-02T11:00:00+00:00"  # naive values are UTC
    assert all(r["_file"] == "users/a.csv" for r in rows)
    assert done[0].records == 3


def test_type_conflict_falls_back_to_string(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"s/a.csv": b"v,w\n1,1\n2,x\n", "s/b.csv": b"v,w\n3.5,2\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    props = src.discover()[0]["json_schema"]["properties"]
    assert props["v"]["type"] == ["null", "number", "string"]  # int + double -> number
    assert props["w"]["type"] == ["null", "string"]  # int + text -> string
    rows, _ = drain(src, "s")
    assert sorted(r["w"] for r in rows) == ["1", "2", "x"]


def test_value_beyond_sample_kept_as_text(s3_endpoint, s3_bucket):
    body = b"n\n" + b"".join(b"%d\n" % i for i in range(50)) + b"oops\n"
    put(s3_endpoint, s3_bucket, {"s/a.csv": body})
    src = Source(s3_config(s3_endpoint, s3_bucket, schema_sample_rows=10))
    rows, done = drain(src, "s")
    assert len(rows) == 51 and rows[-1]["n"] == "oops" and rows[0]["n"] == "0"  # nothing lost
    assert done[0].type_conflicts == ("n",)


def test_csv_options_no_header_delimiter_quote_skip_rows(s3_endpoint, s3_bucket):
    body = b"# exported\n# by tool\n1;'a;b';2024-01-01\n2;'c';2024-01-02\n"
    put(s3_endpoint, s3_bucket, {"s/a.csv": body})
    src = Source(s3_config(s3_endpoint, s3_bucket, csv={"delimiter": ";", "has_header": False, "skip_rows": 2,
                                                        "quote_character": "'"}))
    rows, _ = drain(src, "s")
    assert [(r["column_1"], r["column_2"]) for r in rows] == [(1, "a;b"), (2, "c")]


@pytest.mark.parametrize("codec", ["gz", "zst", "bz2", "xz"])
def test_compression_by_extension(s3_endpoint, s3_bucket, codec):
    lines = b"".join(json.dumps({"i": i, "s": "x" * (i % 7)}).encode() + b"\n" for i in range(500))
    put(s3_endpoint, s3_bucket, {f"j/a.jsonl.{codec}": compress(lines, codec), f"c/a.csv.{codec}": compress(CSV, codec)})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    rows, _ = drain(src, "j")
    assert [r["i"] for r in rows] == list(range(500))
    rows, _ = drain(src, "c")
    assert [r["id"] for r in rows] == [1, 2, 3]


def test_json_lines_array_and_single_object(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {
        "o/1.jsonl": b'{"id": 1, "user": {"name": "a", "tags": ["x"]}, "at": "2024-01-01T00:00:00Z"}\n\n{"id": 2, "user": null}\n',
        "o/2.json": json.dumps([{"id": 3, "user": {"name": "c", "tags": []}}, {"id": 4, "price": 9.5}], indent=2).encode(),
        "o/3.json": json.dumps({"id": 5, "user": {"name": "e", "tags": ["y", "z"]}}, indent=2).encode(),
    })
    src = Source(s3_config(s3_endpoint, s3_bucket))
    props = src.discover()[0]["json_schema"]["properties"]
    assert props["user"]["type"] == ["null", "object", "string"]  # sampled: a later misfit is kept as text
    assert props["user"]["properties"]["tags"]["type"] == ["null", "array"]
    assert props["price"]["type"] == ["null", "number", "string"] and declared_column(props["at"])["format"] == "date-time"
    rows, done = drain(src, "o")
    assert sorted(r["id"] for r in rows) == [1, 2, 3, 4, 5]
    by_id = {r["id"]: r for r in rows}
    assert by_id[1]["user"] == {"name": "a", "tags": ["x"]} and by_id[5]["user"]["tags"] == ["y", "z"]
    assert [d.records for d in done] == [2, 2, 1]


def _parquet_bytes(table: pa.Table, row_group_size: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def test_parquet_native_types(s3_endpoint, s3_bucket):
    from datetime import datetime, timezone
    from decimal import Decimal

    table = pa.table({
        "id": pa.array([1, 2, 3], pa.int32()),
        "at": pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)] * 3, pa.timestamp("ms", tz="UTC")),
        "price": pa.array([Decimal("1.50"), None, Decimal("3.25")], pa.decimal128(6, 2)),
        "tags": pa.array([["a"], [], None]),
        "dev": pa.array([{"os": "ios"}, None, {"os": "android"}]),
    })
    put(s3_endpoint, s3_bucket, {"e/a.parquet": _parquet_bytes(table, 2)})
    src = Source(s3_config(s3_endpoint, s3_bucket))
    props = src.discover()[0]["json_schema"]["properties"]
    assert props["id"]["type"] == ["null", "integer", "string"] and props["price"]["type"] == ["null", "number", "string"]
    assert declared_column(props["at"])["format"] == "date-time" and props["tags"]["items"]["type"] == ["null", "string"]
    assert props["dev"]["properties"]["os"]["type"] == ["null", "string"]
    rows, _ = drain(src, "e")
    assert [r["id"] for r in rows] == [1, 2, 3] and rows[2]["dev"] == {"os": "android"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_file_larger_than_batch_streamed_in_order(s3_endpoint, s3_bucket, fmt):
    n = 5000
    if fmt == "csv":
        body = b"i,s\n" + b"".join(b"%d,row%d\n" % (i, i) for i in range(n))
    elif fmt == "jsonl":
        body = b"".join(b'{"i": %d, "s": "row%d"}\n' % (i, i) for i in range(n))
    else:
        body = _parquet_bytes(pa.table({"i": range(n), "s": [f"row{i}" for i in range(n)]}), 1000)
    put(s3_endpoint, s3_bucket, {f"s/big.{fmt}": body})
    src = Source(s3_config(s3_endpoint, s3_bucket, batch_size=300))
    batches = [e.batch for e in src.read("s") if hasattr(e, "batch")]
    assert len(batches) >= n // 300 and max(b.num_rows for b in batches) <= 300
    assert [r["i"] for b in batches for r in b.to_pylist()] == list(range(n))


def test_explicit_streams_and_depth_two(tmp_path):
    from tests.source.helpers import write_local

    write_local(tmp_path, {"2024/users/a.csv": b"a\n1\n", "2025/users/b.csv": b"a\n2\n", "2025/orders/o.jsonl": b'{"b":1}\n'})
    assert Source({"root_url": str(tmp_path), "stream_depth": 2}).streams() == ["orders", "users"]
    src = Source({"root_url": str(tmp_path), "streams": [{"name": "all_csv", "globs": ["*/users/*.csv"]}]})
    assert src.streams() == ["all_csv"] and len(src.files("all_csv")) == 2
    only_json = Source({"root_url": str(tmp_path), "stream_depth": 2, "file_format": "json"})
    assert only_json.streams() == ["orders"]


def test_bundled_testdata_reads():
    src = Source({"root_url": "testdata"})
    assert src.streams() == ["avro", "events", "excel", "orders", "users", "zipped"]
    counts = {s: sum(d.records for d in drain(src, s)[1]) for s in src.streams()}
    assert counts == {"avro": 50, "events": 250, "excel": 25, "orders": 100, "users": 90, "zipped": 40}


def test_a_parquet_file_outside_the_sample_with_other_types_is_kept_as_text(tmp_path, caplog):
    """The schema comes from the oldest and newest files; a middle one with text in an integer
    column, a fraction in another, or a struct of other field types is emitted as exact text that
    validates against what discover declared (it used to go out as ``"x"`` under ``integer``)."""
    import os

    from tests.source.formats_helpers import validated_records

    (tmp_path / "s").mkdir()
    usual = pa.table({"n": [1, 2], "f": [3, 4], "o": [{"k": 1}, None]})
    odd = pa.table({"n": ["x", None], "f": [0.5, 4.0], "o": [{"k": "a"}, {"k": "b"}]})
    for i, table in enumerate([usual, usual, odd, usual, usual]):
        path = tmp_path / "s" / f"f{i}.parquet"
        pq.write_table(table, path)
        os.utime(path, (1_700_000_000 + 100 * i,) * 2)
    rows = validated_records(Source({"root_url": str(tmp_path)}), "s")
    assert [r["n"] for r in rows] == [1, 2, 1, 2, "x", None, 1, 2, 1, 2]
    assert [r["f"] for r in rows][4:6] == ["0.5", "4"]  # as des-source writes a double: 4.0 as 4
    assert [r["o"] for r in rows][4:6] == ['{"k":"a"}', '{"k":"b"}'] and rows[0]["o"] == {"k": 1}
    assert "s/f2.parquet: values not matching the stream's type kept as text in column(s) f, n, o" in caplog.text


@pytest.mark.parametrize("name", ["csv", "json", "parquet", "avro", "excel"])
def test_every_format_is_a_format_reader(name):
    # mypy checks the types (formats.get's registry is typed with the Protocol); this checks what it
    # does not: the parameter names, which a caller passing them by keyword relies on.
    import inspect

    from connector.source import formats

    reader = formats.get(name)
    assert isinstance(reader, formats.FormatReader)
    for method in ("infer", "batches"):
        wanted = list(inspect.signature(getattr(formats.FormatReader, method)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(reader, method)).parameters) == wanted, (name, method)


def test_prefixed_hands_on_the_streams_own_bytes_once_the_head_is_read():
    """Arrow reads CSV blocks through Prefixed: past the head, a read is the rest's own bytes object
    (no bytearray and copy per block), and the bytes are those of head + rest whatever the sizes."""
    from connector.source.formats import Prefixed

    class Rest(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.given = data, []

        def read(self, size: int = -1) -> bytes:
            out = self.data[:size] if size >= 0 else self.data
            self.data = self.data[len(out):]
            self.given.append(out)
            return out

    rest = Rest(b"cdefghij")
    stream = Prefixed(b"ab", rest)
    got = [stream.read(1), stream.read(5), stream.read(3)]
    assert got[:2] == [b"a", b"b"] and got[2] is rest.given[-1] and got[2] == b"cde"
    assert stream.read() + stream.read(4) == b"fghij"
