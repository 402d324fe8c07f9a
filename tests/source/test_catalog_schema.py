"""read parses with the schema discover declared in the catalog (``x-des-arrow-schema``), not a new
sample of the files: records validate against the schema the destination was given, and a read
fetches no sample. Through des-source subprocesses, S3 requests counted at a proxy, and a
hypothesis property over every Arrow type the readers produce."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError
from connector.records import record_chunks
from connector.source import FileBatch, Source
from connector.source import catalog_schema
from connector.source.read import FILE_COLUMNS
from tests.source.formats_helpers import CHECKER
from tests.source.helpers import put, s3_config, write_local
from tests.source.test_airbyte_source import catalog_for, run, write
from tests.source.test_roundtrip_types import arrow_tables
from tests.support.s3proxy import CountingProxy


def _day(n: int) -> datetime:
    return datetime(2024, 1, n, tzinfo=timezone.utc)


def _discover(tmp_path, config: dict) -> tuple[str, dict]:
    """The config's path and the stream ``s`` discover declares for it."""
    cfg = write(tmp_path, "config.json", config)
    code, messages, err = run("discover", "--config", cfg)
    assert code == 0, err
    (stream,) = [s for m in messages if m["type"] == "CATALOG" for s in m["catalog"]["streams"] if s["name"] == "s"]
    return cfg, stream


def _read(tmp_path, cfg: str, stream: dict) -> tuple[int, list[dict], list[dict]]:
    """des-source read of ``stream`` (full refresh): exit code, record data, LOG messages."""
    cat = write(tmp_path, "catalog.json", catalog_for([stream], "full_refresh"))
    code, messages, _ = run("read", "--config", cfg, "--catalog", cat)
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    return code, records, [m["log"] for m in messages if m["type"] == "LOG"] + \
        [m["trace"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


def _valid(stream: dict, records: list[dict]) -> None:
    validator = jsonschema.Draft7Validator(stream["json_schema"], format_checker=CHECKER)
    for record in records:
        validator.validate(record)


def test_a_column_discover_declared_text_stays_text_when_the_files_that_made_it_text_are_gone(tmp_path):
    """A sample taken at read time (the oldest file deleted) would type ``code`` as integer and emit
    7 where the catalog declares a string."""
    write_local(tmp_path, {"s/a.csv": b"id,code\n1,A1\n"}, _day(1))
    write_local(tmp_path, {"s/b.csv": b"id,code\n2,7\n"}, _day(2))
    write_local(tmp_path, {"s/c.csv": b"id,code\n3,8\n"}, _day(3))
    cfg, stream = _discover(tmp_path, {"root_url": str(tmp_path)})
    assert stream["json_schema"]["properties"]["code"] == {"type": ["null", "string"]}
    os.remove(tmp_path / "s" / "a.csv")
    code, records, _ = _read(tmp_path, cfg, stream)
    assert code == 0
    assert [(r["id"], r["code"]) for r in records] == [(2, "7"), (3, "8")]
    _valid(stream, records)


def test_a_later_value_of_another_type_is_kept_as_text_not_read_as_a_new_type(tmp_path):
    """Newer files with decimals in a column discover declared integer: a new sample would read the
    column as number and emit 1.5, which the catalog's integer-or-text column does not admit."""
    write_local(tmp_path, {"s/a.csv": b"id,amount\n1,10\n"}, _day(1))
    write_local(tmp_path, {"s/b.csv": b"id,amount\n2,20\n"}, _day(2))
    cfg, stream = _discover(tmp_path, {"root_url": str(tmp_path)})
    assert stream["json_schema"]["properties"]["amount"] == {"type": ["null", "integer", "string"]}
    write_local(tmp_path, {"s/c.csv": b"id,amount\n3,1.5\n"}, _day(3))
    write_local(tmp_path, {"s/d.csv": b"id,amount\n4,2.250\n"}, _day(4))
    code, records, logs = _read(tmp_path, cfg, stream)
    assert code == 0
    assert [r["amount"] for r in records] == [10, 20, "1.5", "2.250"]
    _valid(stream, records)
    assert any("amount" in entry.get("message", "") and entry.get("level") == "WARN" for entry in logs), logs


def test_a_read_with_the_catalog_schema_fetches_each_object_once_and_samples_none(s3_endpoint, s3_bucket, tmp_path):
    put(s3_endpoint, s3_bucket, {f"cat/s/f{i}.csv": b"id,v\n%d,x%d\n" % (i, i) for i in range(6)})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        config = {**s3_config(s3_endpoint, s3_bucket, path_prefix="cat", file_format="csv"), "endpoint": proxy.url}
        cfg, stream = _discover(tmp_path, config)
        with proxy.window() as w:
            code, records, _ = _read(tmp_path, cfg, stream)
    assert code == 0 and sorted(r["id"] for r in records) == list(range(6))
    gets = [e for e in w.exchanges if e.request.method == "GET" and "list-type=2" not in e.request.path]
    assert len(gets) == 6, w  # one per object; sampling would have fetched the oldest and newest again


def test_a_catalog_whose_columns_were_edited_is_read_with_a_new_sample_and_says_so(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"id,code\n1,x\n"}, _day(1))
    cfg, stream = _discover(tmp_path, {"root_url": str(tmp_path)})
    stream["json_schema"]["properties"]["id"] = {"type": ["null", "string"]}
    code, records, logs = _read(tmp_path, cfg, stream)
    assert code == 0 and records[0]["code"] == "x"
    assert any("'id'" in e["message"] and "sampling the files" in e["message"] and e["level"] == "WARN"
               for e in logs if "message" in e), logs


@pytest.mark.parametrize("blob", ["not base64 at all!", "AAAA", 42])
def test_a_catalog_schema_that_is_not_one_fails_the_stream_naming_it(tmp_path, blob):
    write_local(tmp_path, {"s/a.csv": b"id\n1\n"}, _day(1))
    cfg, stream = _discover(tmp_path, {"root_url": str(tmp_path)})
    stream["json_schema"][catalog_schema.KEYWORD] = blob
    code, records, logs = _read(tmp_path, cfg, stream)
    assert code != 0 and records == []
    errors = [e["error"] for e in logs if "error" in e]
    assert errors and errors[0]["failure_type"] == "config_error", logs
    assert "stream 's'" in errors[0]["message"] and catalog_schema.KEYWORD in errors[0]["message"]


def test_deselected_and_new_columns_are_left_out_and_said(tmp_path):
    """A column the catalog deselected is not emitted (INFO); one new since discover is not
    emitted either, with a WARN naming it and the file, never silently."""
    write_local(tmp_path, {"s/a.csv": b"id,code,note\n1,x,n1\n"}, _day(1))
    cfg, stream = _discover(tmp_path, {"root_url": str(tmp_path)})
    del stream["json_schema"]["properties"]["note"]
    write_local(tmp_path, {"s/b.csv": b"id,code,note,extra\n2,y,n2,e2\n"}, _day(2))
    code, records, logs = _read(tmp_path, cfg, stream)
    assert code == 0
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in records] == [
        {"id": 1, "code": "x"}, {"id": 2, "code": "y"}]
    said = {(e["level"], e["message"]) for e in logs if "message" in e}
    assert any(level == "INFO" and "'note'" in m and "not selected" in m for level, m in said), said
    assert any(level == "WARN" and "'extra'" in m and "s/b.csv" in m for level, m in said), said
    assert not any("'note'" in m for level, m in said if level == "WARN")


def test_streams_whose_config_declares_the_schema_carry_no_arrow_schema(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"id\n1\n"}, _day(1))
    declared = Source({"root_url": str(tmp_path), "streams": [{"name": "s", "globs": ["s/*.csv"],
                                                               "input_schema": {"id": "integer"}}]})
    assert catalog_schema.KEYWORD not in declared.airbyte_stream("s")["json_schema"]
    inferred = Source({"root_url": str(tmp_path)}).airbyte_stream("s")["json_schema"]
    assert declared.catalog_schema("s", inferred) is None  # the config's declaration wins


def test_decode_names_the_stream():
    with pytest.raises(ConfigError, match="stream 'orders'"):
        catalog_schema.decode("@@@", "orders")


def _emitted(source: Source, **kw) -> bytes:
    out = b""
    for event in source.read("s", sync_mode="full_refresh", **kw):
        if isinstance(event, FileBatch):
            out += b"".join(record_chunks("s", event.batch, 0, FILE_COLUMNS))
    return out


@given(table=arrow_tables(), split=st.integers(0, 6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_the_catalog_schema_reads_every_type_byte_identical_to_a_new_sample(tmp_path_factory, table, split):
    """Every Arrow type Parquet files carry: the schema survives the catalog exactly, is accepted
    back, and a read with it emits the same bytes as a read that samples the unchanged files."""
    root = tmp_path_factory.mktemp("types")
    (root / "s").mkdir()
    split = min(split, table.num_rows)
    pq.write_table(table.slice(0, split), root / "s" / "a.parquet")
    pq.write_table(table.slice(split), root / "s" / "b.parquet")
    os.utime(root / "s" / "a.parquet", (1_700_000_000, 1_700_000_000))
    source = Source({"root_url": str(root)})
    declared = json.loads(json.dumps(source.airbyte_stream("s")["json_schema"]))  # as a catalog file carries it
    schema = source.catalog_schema("s", declared)
    assert schema is not None and schema.equals(catalog_schema.decode(declared[catalog_schema.KEYWORD], "s"))
    assert _emitted(Source({"root_url": str(root)}), schema=schema) == _emitted(Source({"root_url": str(root)}))


@given(st.lists(st.sampled_from([pa.int64(), pa.float64(), pa.string(), pa.timestamp("ns", "UTC"), pa.date32(),
                                 pa.decimal128(38, 9), pa.decimal256(70, 3), pa.list_(pa.struct([("a", pa.uint8())])),
                                 pa.map_(pa.string(), pa.binary())]), min_size=0, max_size=8),
       st.lists(st.text(min_size=1, max_size=8), min_size=8, max_size=8, unique=True))
def test_encode_decode_is_exact(types, names):
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, types)])
    assert catalog_schema.decode(catalog_schema.encode(schema), "s").equals(schema)
