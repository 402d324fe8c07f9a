"""row_column: each record's number within its file, as ``_row``."""

from __future__ import annotations

import pytest

from connector.source import BadDataError, Source
from tests.source.formats_helpers import validated_records
from tests.source.helpers import drain, put, s3_config, write_local


def test_rows_are_numbered_per_file_and_declared(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"id,t\n1,\"two\nlines\"\n2,x\n", "s/b.jsonl": b'{"id": 3}\n{"id": 4}\n{"id": 5}\n'})
    src = Source({"root_url": str(tmp_path), "row_column": True, "batch_size": 2})
    assert src.airbyte_stream("s")["json_schema"]["properties"]["_row"]["type"][:2] == ["null", "integer"]
    rows = validated_records(src, "s")
    assert sorted((r["_file"], r["_row"], r["id"]) for r in rows) == [
        ("s/a.csv", 1, 1), ("s/a.csv", 2, 2), ("s/b.jsonl", 1, 3), ("s/b.jsonl", 2, 4), ("s/b.jsonl", 3, 5)]


def test_numbers_survive_records_dropped_by_validation(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"n\n1\nx\n3\n"})
    src = Source({"root_url": str(tmp_path), "row_column": True, "streams": [
        {"name": "s", "globs": ["s/*"], "input_schema": {"n": "integer"}, "validation_policy": "skip_record"}]})
    assert [(r["_row"], r["n"]) for r in drain(src, "s")[0]] == [(1, 1), (3, 3)]


def test_schemaless_keeps_the_row_outside_data(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"r/s/a.csv": b"_row,v\n9,a\n9,b\n"})
    src = Source(s3_config(s3_endpoint, s3_bucket, path_prefix="r", row_column=True,
                           streams=[{"name": "s", "globs": ["s/*"], "schemaless": True}]))
    assert [(r["_row"], r["data"]) for r in validated_records(src, "s")] == [
        (1, {"_row": "9", "v": "a"}), (2, {"_row": "9", "v": "b"})]


def test_a_source_column_of_that_name_is_an_error(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"_row,v\n9,a\n"})
    with pytest.raises(BadDataError, match=r"s/a\.csv: has a column '_row'"):
        drain(Source({"root_url": str(tmp_path), "row_column": True}), "s")
    assert drain(Source({"root_url": str(tmp_path)}), "s")[0][0]["_row"] == 9  # off: the file's own column
