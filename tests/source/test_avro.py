"""Avro: schema from the header, logical types exact, nested types, batches, bad files; locally and
on the S3 test server (counted at the proxy)."""

from __future__ import annotations

import base64
import io
import random
from datetime import date, datetime, time, timezone
from decimal import Decimal

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.source import BadDataError, Source
from connector.source.formats.avro import file_schema
from connector.source.infer import declared_column
from tests.source.formats_helpers import FORMATS, STREAMS, source_for, validated_records
from tests.source.helpers import drain, put, s3_config
from tests.support.s3proxy import CountingProxy


def avro_bytes(schema: dict, rows: list[dict], **kwargs) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), rows, **kwargs)
    return out.getvalue()


def fixture_rows() -> list[dict]:
    rows = []
    for name in ("readings_01.avro", "readings_02.avro"):
        with open(FORMATS / "avro" / name, "rb") as f:
            rows.extend(fastavro.reader(f))
    return rows


@pytest.mark.parametrize("where", ["local", "s3"])
def test_fixture_records_are_exact_and_match_the_schema(where, s3_endpoint, s3_bucket):
    src = source_for(where, s3_endpoint, s3_bucket)
    assert src.streams() == STREAMS
    props = src.airbyte_stream("avro")["json_schema"]["properties"]
    # Every column admits the text a value of another type in a later file is kept as.
    assert props["price"] == {"type": ["null", "number", "string"]} and props["huge"] == props["price"]
    # ... and a string column with a format admits any text: anyOf the column and a plain string.
    assert props["day"]["anyOf"][1] == {"type": "string"}
    col = {name: declared_column(prop) for name, prop in props.items()}
    assert col["day"]["format"] == "date" and col["at"]["format"] == "date-time"
    assert col["time_ms"]["format"] == "time" and col["raw"]["contentEncoding"] == "base64"
    assert props["attrs"]["additionalProperties"] == {"type": ["null", "integer"]}
    assert set(props["home"]["properties"]) == {"city", "zip", "country"}  # the evolved record's field too
    assert props["note"] == {"type": ["null", "string"]}

    records = validated_records(src, "avro")
    expected = fixture_rows()
    assert len(records) == len(expected) == 50
    for got, want in zip(records, expected):
        assert got["id"] == want["id"] and got["sensor"] == want["sensor"] and got["count"] == want["count"]
        assert got["price"] == want["price"] and str(got["price"]) == str(want["price"])  # digits and scale
        assert got["huge"] == want["huge"] and str(got["huge"]) == str(want["huge"])  # 45 digits: decimal256
        assert got["value"] == (None if want["value"] is None else Decimal(repr(want["value"])))
        assert got["day"] == want["day"].isoformat()
        assert got["at"] == want["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert got["at_ms"] == (None if want["at_ms"] is None else want["at_ms"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        assert got["local_at"] == want["local_at"].isoformat()  # no zone claimed
        assert time.fromisoformat(got["time_ms"]) == want["time_ms"] and time.fromisoformat(got["time_us"]) == want["time_us"]
        assert got["uid"] == str(want["uid"]) and got["kind"] == want["kind"]
        assert base64.b64decode(got["raw"]) == want["raw"] and base64.b64decode(got["tag4"]) == want["tag4"]
        assert got["labels"] == want["labels"] and got["attrs"] == want["attrs"]
        assert got["home"] == {"country": None, **want["home"]}
        assert got["work"] == (None if want["work"] is None else {"country": None, **want["work"]})
        assert got["extra"] == (None if want["extra"] is None else str(want["extra"]))
        assert got["_file"].startswith("avro/readings_0")
    assert [r.get("note") for r in records[30:]] == [w["note"] for w in expected[30:]]


def test_types_map_to_arrow():
    schema = {
        "type": "record", "name": "R", "fields": [
            {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3}},
            {"name": "d256", "type": {"type": "bytes", "logicalType": "decimal", "precision": 60, "scale": 2}},
            {"name": "dtext", "type": {"type": "bytes", "logicalType": "decimal", "precision": 90, "scale": 2}},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "tn", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
            {"name": "t", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "f", "type": {"type": "fixed", "name": "F", "size": 3}},
            {"name": "f2", "type": ["null", "F"]},
            {"name": "ints", "type": ["null", "int", "long"]},
            {"name": "many", "type": ["null", "string", "double"]},
            {"name": "m", "type": {"type": "map", "values": {"type": "array", "items": "float"}}},
            {"name": "self", "type": ["null", "R"]},
            {"name": "n", "type": "null"},
        ],
    }
    arrow, _, is_record = file_schema(fastavro.parse_schema(schema))
    assert is_record
    types = {f.name: f.type for f in arrow}
    assert types["d"] == pa.decimal128(9, 3) and types["d256"] == pa.decimal256(60, 2)
    assert types["dtext"] == pa.string()  # beyond Arrow's 76 digits: exact text
    assert types["ts"] == pa.timestamp("ms", tz="UTC") and types["tn"] == pa.timestamp("ns", tz="UTC")
    assert types["t"] == pa.time32("ms") and types["u"] == pa.string()
    assert types["f"] == types["f2"] == pa.binary(3)
    assert types["ints"] == pa.int64() and types["many"] == pa.string()
    assert types["m"] == pa.map_(pa.string(), pa.list_(pa.float32()))
    assert types["self"] == pa.string()  # recursive: JSON text (Arrow has no recursive types)
    assert types["n"] == pa.null()


def test_non_record_top_level_is_one_value_column(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/a.avro").write_bytes(avro_bytes({"type": "array", "items": "long"}, [[1, 2], [], [3]]))
    rows, _ = drain(Source({"root_url": str(tmp_path)}), "s")
    assert [r["value"] for r in rows] == [[1, 2], [], [3]]


def test_batches_are_bounded_and_schema_read_from_the_header_alone(s3_endpoint, s3_bucket):
    rng = random.Random(1)
    schema = {"type": "record", "name": "B", "fields": [{"name": "i", "type": "long"}, {"name": "pad", "type": "bytes"}]}
    rows = [{"i": i, "pad": rng.randbytes(200)} for i in range(20_000)]
    data = avro_bytes(schema, rows, codec="null")
    assert len(data) > 4_000_000
    put(s3_endpoint, s3_bucket, {"big/b/x.avro": data})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = s3_config(s3_endpoint, s3_bucket, path_prefix="big", batch_size=999)
        config["endpoint"] = proxy.url
        src = Source(config)
        with proxy.window() as header:
            assert src.schema("b").names == ["i", "pad", "_last_modified_time", "_file"]
        assert 0 < header.sent <= 128 << 10 < len(data), header
        sizes, ids = [], []
        for event in src.read("b"):
            if hasattr(event, "batch"):
                sizes.append(event.batch.num_rows)
                ids.extend(event.batch.column("i").to_pylist())
    assert ids == list(range(20_000)) and max(sizes) == 999


def test_evolving_types_across_files_keep_every_value(tmp_path):
    """int in one file, string in another: the stream says string and both files' values are
    kept as text; int next to double: number."""
    (tmp_path / "s").mkdir()
    a = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}]}
    b = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "string"}, {"name": "y", "type": "double"}]}
    (tmp_path / "s/1.avro").write_bytes(avro_bytes(a, [{"x": 7, "y": 2}]))
    (tmp_path / "s/2.avro").write_bytes(avro_bytes(b, [{"x": "seven", "y": 2.5}]))
    src = Source({"root_url": str(tmp_path)})
    records = validated_records(src, "s")
    assert [(r["x"], r["y"]) for r in records] == [("7", 2), ("seven", Decimal("2.5"))]


def test_truncated_file_fails_naming_the_file_or_keeps_what_was_read(tmp_path, caplog):
    schema = {"type": "record", "name": "T", "fields": [{"name": "i", "type": "long"}, {"name": "s", "type": "string"}]}
    data = avro_bytes(schema, [{"i": i, "s": "x" * 50} for i in range(500)], codec="deflate", sync_interval=2000)
    (tmp_path / "s").mkdir()
    (tmp_path / "s/cut.avro").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BadDataError, match=r"s/cut\.avro: record \d+"):
        drain(Source({"root_url": str(tmp_path)}), "s")
    rows, [done] = drain(Source({"root_url": str(tmp_path), "on_bad_record": "skip"}), "s")
    assert 0 < len(rows) < 500 and [r["i"] for r in rows] == list(range(len(rows))) and done.skipped == 1


def test_not_avro_at_all_is_bad_data(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/x.avro").write_bytes(b"PAR1 this is not avro")
    with pytest.raises(BadDataError, match=r"s/x\.avro"):
        Source({"root_url": str(tmp_path)}).check()


def test_avro_with_outer_compression_is_not_a_data_file(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/x.avro.gz").write_bytes(b"whatever")
    assert Source({"root_url": str(tmp_path)}).streams() == []


DECIMAL_SCHEMA = {"type": "record", "name": "D", "fields": [
    {"name": "d", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 9}]},
    {"name": "l", "type": "long"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
]}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(
    st.one_of(st.none(), st.decimals(min_value=Decimal("-1e28") + 1, max_value=Decimal("1e28") - 1, places=9,
                                     allow_nan=False, allow_infinity=False)),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(timezone.utc)),
), min_size=1, max_size=30))
def test_decimals_longs_and_timestamps_round_trip_exactly(tmp_path, values):
    folder = tmp_path / f"s{abs(hash(str(values)))}"
    (folder / "s").mkdir(parents=True)
    (folder / "s/x.avro").write_bytes(avro_bytes(DECIMAL_SCHEMA, [{"d": d, "l": n, "ts": t} for d, n, t in values]))
    records = validated_records(Source({"root_url": str(folder)}), "s")
    assert [(r["d"], r["l"]) for r in records] == [(d, n) for d, n, _ in values]
    assert [r["ts"] for r in records] == [t.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0") for _, _, t in values]


def test_dates_and_times_are_exact():
    rows = [{"day": date(1, 1, 1), "t": time(0, 0, 0, 1)}, {"day": date(9999, 12, 31), "t": time(23, 59, 59, 999999)}]
    schema = {"type": "record", "name": "X", "fields": [
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "t", "type": {"type": "long", "logicalType": "time-micros"}}]}
    arrow, convert, _ = file_schema(fastavro.parse_schema(schema))
    table = pa.Table.from_pylist(list(fastavro.reader(io.BytesIO(avro_bytes(schema, rows)))), schema=arrow)
    assert table.to_pylist() == rows


def test_double_as_string_option(tmp_path):
    schema = {"type": "record", "name": "F", "fields": [
        {"name": "d", "type": ["null", "double"]}, {"name": "f", "type": "float"}, {"name": "n", "type": "long"}]}
    (tmp_path / "s").mkdir()
    (tmp_path / "s/x.avro").write_bytes(avro_bytes(schema, [{"d": 0.1, "f": 1.1, "n": 1}, {"d": None, "f": 2.5, "n": 2}]))
    src = Source({"root_url": str(tmp_path), "avro": {"double_as_string": True}})
    props = src.airbyte_stream("s")["json_schema"]["properties"]
    assert props["d"] == props["f"] == {"type": ["null", "string"]}
    assert props["n"] == {"type": ["null", "integer", "string"]}
    records = validated_records(src, "s")
    assert [(r["d"], r["f"]) for r in records] == [("0.1", repr(1.100000023841858)), (None, "2.5")]
    records = validated_records(Source({"root_url": str(tmp_path)}), "s")
    assert records[0]["d"] == Decimal("0.1")


@pytest.mark.parametrize("avro", [{"double_as_string": "yes"}, {"doubles": True}, []])
def test_bad_avro_options_name_the_field(avro):
    from connector.errors import ConfigError
    from connector.source.config import SourceConfig

    with pytest.raises(ConfigError, match="'avro"):
        SourceConfig.from_dict({"root_url": "x", "avro": avro})


def test_map_columns_are_json_objects_also_nested():
    """records.py: a map (Avro map, Parquet map) is a JSON object, not a list of [key, value]."""
    import orjson

    from connector.records import record_lines

    m = pa.map_(pa.string(), pa.int64())
    batch = pa.RecordBatch.from_arrays([
        pa.array([[("a", 1), ("b", None)], None], m),
        pa.array([{"inner": [("k", 2)]}, {"inner": None}], pa.struct([pa.field("inner", m)])),
        pa.array([[[("x", 3)]], []], pa.list_(m)),
    ], names=["m", "s", "l"])
    rows = [orjson.loads(line)["record"]["data"] for line in record_lines("t", batch, 0).splitlines()]
    assert rows == [{"m": {"a": 1, "b": None}, "s": {"inner": {"k": 2}}, "l": [{"x": 3}]},
                    {"m": None, "s": {"inner": None}, "l": []}]


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy", "zstandard", "bzip2", "xz", "lz4"])
def test_every_avro_codec(tmp_path, codec):
    schema = {"type": "record", "name": "C", "fields": [{"name": "i", "type": "long"}, {"name": "s", "type": "string"}]}
    (tmp_path / "s").mkdir()
    (tmp_path / "s/x.avro").write_bytes(avro_bytes(schema, [{"i": i, "s": f"v{i}"} for i in range(300)], codec=codec,
                                                   sync_interval=1000))
    rows, _ = drain(Source({"root_url": str(tmp_path)}), "s")
    assert [(r["i"], r["s"]) for r in rows] == [(i, f"v{i}") for i in range(300)]


def test_airbyte_stream_format_filetype_and_double_as_string(tmp_path):
    """Airbyte's file-based streams[].format carries over: filetype picks the files of a stream
    (jsonl is our json), double_as_string applies to that stream."""
    schema = {"type": "record", "name": "F", "fields": [{"name": "d", "type": "double"}]}
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix/x.avro").write_bytes(avro_bytes(schema, [{"d": 0.25}]))
    (tmp_path / "mix/y.jsonl").write_bytes(b'{"d": 1}\n')
    src = Source({"root_url": str(tmp_path), "streams": [
        {"name": "a", "globs": ["mix/*"], "format": {"filetype": "avro", "double_as_string": True}},
        {"name": "j", "globs": ["mix/*"], "format": {"filetype": "jsonl"}},
        {"name": "all", "globs": ["mix/*"]}]})
    assert [r.key for r in src.files("a")] == ["mix/x.avro"] and [r.key for r in src.files("j")] == ["mix/y.jsonl"]
    assert len(src.files("all")) == 2
    assert [r["d"] for r in validated_records(src, "a")] == ["0.25"]
    assert [r["d"] for r in validated_records(src, "j")] == [1]


@pytest.mark.parametrize("fmt, needle", [
    ({"filetype": "unstructured"}, "'streams.0.format.filetype'"),
    ({}, "'streams.0.format'"),
    ({"filetype": "csv", "double_as_string": True}, "'streams.format.double_as_string' \\(stream 'a'\\) applies to filetype 'avro'"),
    ({"filetype": "avro", "double_as_string": "no"}, "'streams.0.format.double_as_string'"),
    ({"filetype": "avro", "delimiter": ";"}, "'streams.format.delimiter' \\(stream 'a'\\) applies to filetype 'csv' only"),
    ({"filetype": "avro", "sheet": "x"}, "'streams.0.format'"),
])
def test_bad_stream_format_names_the_field(fmt, needle):
    from connector.errors import ConfigError
    from connector.source.config import SourceConfig

    with pytest.raises(ConfigError, match=needle):
        SourceConfig.from_dict({"root_url": "x", "streams": [{"name": "a", "globs": ["*"], "format": fmt}]})
