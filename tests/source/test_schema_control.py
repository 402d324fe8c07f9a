"""input_schema, schemaless and validation_policy on configured streams (Airbyte's file-based
stream fields): Python API, S3 request counts, and des-source through a subprocess."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import jsonschema
import pytest

from connector.errors import ConfigError
from connector.source import Source
from connector.source.validate import SchemaMismatchError
from tests.source.formats_helpers import validated_records
from tests.source.helpers import drain, put, s3_config, write_local
from tests.source.test_airbyte_source import catalog_for, run, write
from tests.support.s3proxy import CountingProxy

DECLARED = {"id": "integer", "name": "string", "age": "integer"}
#: a.csv (older): two values that are not integers; b.csv (newer): a column the schema lacks.
FILES = {"s/a.csv": b"id,name,age\n1,a,10\n2,b,x\n3,c,007\n4,d,12\n",
         "s/b.csv": b"id,name,age,extra\n5,e,1,\n6,f,2,zz\n"}


def root(tmp_path) -> str:
    write_local(tmp_path, {"s/a.csv": FILES["s/a.csv"]}, datetime(2024, 1, 1, tzinfo=timezone.utc))
    write_local(tmp_path, {"s/b.csv": FILES["s/b.csv"]}, datetime(2024, 1, 2, tzinfo=timezone.utc))
    return str(tmp_path)


def source(tmp_path, **stream) -> Source:
    return Source({"root_url": root(tmp_path), "streams": [{"name": "s", "globs": ["s/*.csv"], **stream}]})


def data(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("_last_modified_time", "_file")} for r in rows]


@pytest.mark.parametrize("declared", [
    DECLARED,
    json.dumps(DECLARED),  # Airbyte's form: the mapping as JSON text
    {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
                                      "age": {"type": "integer"}}},
])
def test_input_schema_forms_declare_the_same_columns(tmp_path, declared):
    props = source(tmp_path, input_schema=declared, validation_policy="skip_record").airbyte_stream("s")["json_schema"]["properties"]
    assert {k: v for k, v in props.items() if not k.startswith("_")} == {
        "id": {"type": ["null", "integer"]}, "name": {"type": ["null", "string"]}, "age": {"type": ["null", "integer"]}}


def test_input_schema_dates_and_nested_columns(tmp_path):
    write_local(tmp_path, {"s/a.jsonl": b'{"d": "2024-01-31", "t": "2024-01-31T10:00:00Z", "o": {"k": [1]}, "l": [1, 2]}\n'})
    src = Source({"root_url": str(tmp_path), "streams": [{
        "name": "s", "globs": ["s/*"], "validation_policy": "skip_record",
        "input_schema": {"d": "date", "t": "date-time", "o": "object", "l": "array"}}]})
    assert data(validated_records(src, "s")) == [{"d": "2024-01-31", "t": "2024-01-31T10:00:00.000000Z",
                                                  "o": {"k": [1]}, "l": [1, 2]}]


def test_emit_record_keeps_misfits_as_text_and_says_so(tmp_path, caplog):
    src = source(tmp_path, input_schema=DECLARED)
    with caplog.at_level(logging.WARNING):
        rows = validated_records(src, "s")  # the declared columns admit text too under emit_record
    assert [r["age"] for r in rows] == ["10", "x", "007", "12", 1, 2]  # the batch with misfits is text
    assert "s/a.csv: values not matching the stream's type kept as text in column(s) age" in caplog.text
    assert rows[-1]["extra"] == "zz"  # a column the schema lacks passes through (des-source drops it)


def test_skip_record_drops_exactly_the_misfits_and_counts_them_per_file(tmp_path, caplog):
    src = source(tmp_path, input_schema=DECLARED, validation_policy="Skip Record")  # Airbyte's enum value
    with caplog.at_level(logging.WARNING):
        rows, done = drain(src, "s")
    assert data(rows) == [{"id": 1, "name": "a", "age": 10}, {"id": 4, "name": "d", "age": 12},
                          {"id": 5, "name": "e", "age": 1, "extra": None}]
    assert [(d.file.key, d.records, d.invalid) for d in done] == [("s/a.csv", 2, 2), ("s/b.csv", 1, 1)]
    assert ("Records in file did not pass validation policy. stream=s file=s/a.csv n_skipped=2 "
            "validation_policy=skip_record (e.g. record 2: column 'age' = 'x' does not fit integer)") in caplog.text
    assert "file=s/b.csv n_skipped=1" in caplog.text and "'extra' = 'zz' is in a column" in caplog.text
    assert "kept as text" not in caplog.text
    schema = src.airbyte_stream("s")["json_schema"]
    for row in rows:
        jsonschema.validate(json.loads(json.dumps(row, default=str)), schema)


def test_skip_record_with_the_inferred_schema(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"n\n1\n2\n"}, datetime(2024, 1, 1, tzinfo=timezone.utc))
    write_local(tmp_path, {"s/m.csv": b"n\n3\nthree\n"}, datetime(2024, 1, 2, tzinfo=timezone.utc))  # not sampled
    write_local(tmp_path, {"s/y.csv": b"n\n4\n"}, datetime(2024, 1, 3, tzinfo=timezone.utc))
    write_local(tmp_path, {"s/z.csv": b"n\n5\n"}, datetime(2024, 1, 4, tzinfo=timezone.utc))
    src = Source({"root_url": str(tmp_path), "streams": [{"name": "s", "globs": ["s/*"], "validation_policy": "skip_record"}]})
    assert src.airbyte_stream("s")["json_schema"]["properties"]["n"] == {"type": ["null", "integer"]}
    rows, done = drain(src, "s")
    assert [r["n"] for r in rows] == [1, 2, 3, 4, 5] and [d.invalid for d in done] == [0, 1, 0, 0]


def test_wait_for_discover_stops_at_the_first_misfit(tmp_path):
    src = source(tmp_path, input_schema=DECLARED, validation_policy="wait_for_discover")
    with pytest.raises(SchemaMismatchError, match=r"s/a\.csv: record 2: column 'age' = 'x' does not fit integer; "
                                                  r"validation_policy wait_for_discover stops the stream"):
        drain(src, "s")


def test_wait_for_discover_through_des_source_is_a_config_error_trace(tmp_path):
    config = write(tmp_path, "config.json", {"root_url": root(tmp_path / "data"), "streams": [
        {"name": "s", "globs": ["s/*.csv"], "input_schema": DECLARED, "validation_policy": "Wait for Discover"}]})
    code, messages, _ = run("discover", "--config", config)
    catalog = write(tmp_path, "catalog.json", catalog_for(messages[0]["catalog"]["streams"]))
    code, messages, _ = run("read", "--config", config, "--catalog", catalog)
    [error] = [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert code == 1 and error["failure_type"] == "config_error" and "record 2: column 'age'" in error["message"]
    # The file is not synced: none of its records (the batch holding the misfit is held back), no STATE.
    assert not [m for m in messages if m["type"] in ("RECORD", "STATE")]


def test_schemaless_wraps_every_record_in_data(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"id,age\n1,x\n"}, datetime(2024, 1, 1, tzinfo=timezone.utc))
    write_local(tmp_path, {"s/b.jsonl": b'{"id": 2, "tags": ["a"], "o": {"k": 1}}\n'}, datetime(2024, 1, 2, tzinfo=timezone.utc))
    src = Source({"root_url": str(tmp_path), "streams": [{"name": "s", "globs": ["s/*"], "schemaless": True}]})
    schema = src.airbyte_stream("s")["json_schema"]
    assert schema["properties"]["data"] == {"type": "object"} and set(schema["properties"]) == {
        "data", "_last_modified_time", "_file"}
    rows = validated_records(src, "s")
    assert [r["data"] for r in rows] == [{"id": "1", "age": "x"}, {"id": 2, "tags": ["a"], "o": {"k": 1}}]
    assert [r["_file"] for r in rows] == ["s/a.csv", "s/b.jsonl"]


@pytest.mark.parametrize("stream", [{"input_schema": {"id": "integer"}}, {"schemaless": True}])
def test_discover_of_many_files_only_lists(s3_endpoint, s3_bucket, stream):
    put(s3_endpoint, s3_bucket, {f"m/s/{i:04d}.csv": b"id\n%d\n" % i for i in range(300)})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = s3_config(s3_endpoint, s3_bucket, path_prefix="m",
                           streams=[{"name": "s", "globs": ["s/*.csv"], **stream}])
        config["endpoint"] = proxy.url
        with proxy.window() as w:
            [discovered] = Source(config).discover()
        assert discovered["name"] == "s"
        objects = [e.request.key for e in w.exchanges if "/" in e.request.key.rstrip("/")]
        assert w.count() == w.count("GET") and w.count() <= 3 and not objects, w
        with proxy.window() as w:  # inference, for comparison, opens the sampled files
            Source(dict(config, streams=[{"name": "s", "globs": ["s/*.csv"]}])).discover()
        assert [e for e in w.exchanges if "/" in e.request.key.rstrip("/")], w


@pytest.mark.parametrize("stream, message", [
    ({"input_schema": {"id": "int"}}, r"'streams.input_schema.id' \(stream 's'\): unknown type 'int'"),
    ({"input_schema": "{id: integer}"}, r"'streams.input_schema' \(stream 's'\): not valid JSON"),
    ({"input_schema": {"id": {"type": "integer"}}}, r"'streams.input_schema.id' \(stream 's'\): expected a type name"),
    ({"input_schema": {"properties": {"d": {"type": "integer", "format": "date"}}}}, r"'streams.input_schema.properties.d.format' \(stream 's'\): 'date' applies to type 'string'"),
    ({"input_schema": {"a": "string"}, "schemaless": True}, r"'streams.schemaless' and 'streams.input_schema' .* exclude each other"),
    ({"validation_policy": "drop"}, r"validation_policy': 'drop' is not one of"),
    ({"schemaless": "yes"}, r"schemaless': 'yes' is not of type 'boolean'"),
])
def test_bad_schema_options_are_config_errors_naming_the_field(stream, message):
    with pytest.raises(ConfigError, match=message):
        Source({"root_url": ".", "streams": [{"name": "s", "globs": ["*"], **stream}]})


def test_declared_type_the_parquet_file_does_not_have(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "s").mkdir()
    pq.write_table(pa.table({"n": pa.array([1.5, 2.0, None]), "k": pa.array([1, 2, 3], pa.int32())}),
                   tmp_path / "s" / "a.parquet")
    declared = {"n": "integer", "k": "number"}
    emit = Source({"root_url": str(tmp_path), "streams": [{"name": "s", "globs": ["s/*"], "input_schema": declared}]})
    with caplog.at_level(logging.WARNING):
        rows = validated_records(emit, "s")
    assert [(r["n"], r["k"]) for r in rows] == [("1.5", 1), ("2", 2), (None, 3)]  # the doubles as JSON writes them
    assert "s/a.parquet: values not matching the stream's type kept as text in column(s) n" in caplog.text
    skip = Source({"root_url": str(tmp_path), "streams": [{"name": "s", "globs": ["s/*"], "input_schema": declared,
                                                            "validation_policy": "skip_record"}]})
    assert [(r["n"], r["k"]) for r in data(drain(skip, "s")[0])] == [(None, 3)]
