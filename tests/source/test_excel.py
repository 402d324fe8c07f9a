"""Excel (.xlsx): first or named sheet, header row, typed cells; locally and on the S3 test server."""

from __future__ import annotations

import sys
from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError
from connector.source import BadDataError, Source
from connector.source.config import SourceConfig
from connector.source.infer import declared_column
from tests.source.formats_helpers import source_for, validated_records
from tests.source.helpers import drain

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "testdata"))
import generate  # testdata/generate.py: the fixture writer


@pytest.mark.parametrize("where", ["local", "s3"])
def test_first_sheet_typed_cells(where, s3_endpoint, s3_bucket):
    src = source_for(where, s3_endpoint, s3_bucket)
    props = src.airbyte_stream("excel")["json_schema"]["properties"]
    assert {k: declared_column(v)["type"][1] for k, v in props.items()} == {
        "id": "integer", "name": "string", "amount": "number", "qty": "integer", "paid": "boolean",
        "day": "string", "at": "string", "mixed": "string", "column_9": "string", "name_2": "string",
        "_last_modified_time": "string", "_file": "string"}
    assert declared_column(props["day"])["format"] == "date" and declared_column(props["at"])["format"] == "date-time"
    records = validated_records(src, "excel")
    assert len(records) == 25 and [r["id"] for r in records] == list(range(1, 26))
    first = records[0]
    assert first["day"] == "2024-02-02" and first["at"] == "2024-02-01T09:30:01.000000Z"
    assert first["name_2"] == "second name" and first["_file"] == "excel/sheets_01.xlsx"
    # A column of numbers, text and booleans keeps each cell's text: 3 (not 3.0), t1, true.
    assert [r["mixed"] for r in records[:3]] == ["t1", "true", "3"]
    assert {r["amount"] for r in records} <= {Decimal("1.5"), Decimal("2.25"), Decimal("1E-7"), Decimal("123456.789")}
    assert any(r["name"] is None for r in records) and all(r["column_9"] in (None, "x") for r in records)


def test_named_sheet(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/book.xlsx").write_bytes(generate.xlsx({"first": [["a"], [1]], "Second sheet": [["b", "c"], ["x", 2.5], [None, None], ["y", None]]}))
    src = Source({"root_url": str(tmp_path), "excel": {"sheet_name": "Second sheet"}})
    rows, _ = drain(src, "s")
    assert [(r["b"], r["c"]) for r in rows] == [("x", 2.5), (None, None), ("y", None)]
    rows, _ = drain(Source({"root_url": str(tmp_path)}), "s")
    assert [r["a"] for r in rows] == [1]


def test_missing_sheet_is_a_config_error_naming_the_field(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/book.xlsx").write_bytes(generate.xlsx({"first": [["a"], [1]]}))
    with pytest.raises(ConfigError, match=r"config field 'excel.sheet_name': s/book\.xlsx has no sheet 'nope' \(sheets: 'first'\)"):
        Source({"root_url": str(tmp_path), "excel": {"sheet_name": "nope"}}).discover()


@pytest.mark.parametrize("excel, needle", [
    ({"sheet_name": ""}, "'excel.sheet_name'"),
    ({"sheet_name": 3}, "'excel.sheet_name'"),
    ({"sheet": "x"}, "'excel'"),
    ("first", "'excel'"),
])
def test_bad_excel_options(excel, needle):
    with pytest.raises(ConfigError, match=needle):
        SourceConfig.from_dict({"root_url": "x", "excel": excel})


def test_types_across_files_and_large_whole_numbers(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/1.xlsx").write_bytes(generate.xlsx({"a": [["n", "d", "big"], [1, date(2024, 1, 2), 2**53]]}))
    (tmp_path / "s/2.xlsx").write_bytes(generate.xlsx({"a": [["n", "d", "big"], ["one", datetime(2024, 1, 2, 3, 4, 5), 2.0**60]]}))
    records = validated_records(Source({"root_url": str(tmp_path)}), "s")
    # n: integer + text -> text, every value kept; d: a date in one file, a date-time in the
    # other -> text (as infer.merge_types decides); big: 2**60 is past 2**53, so that file's column
    # is a number, and the stream's too.
    assert [(r["n"], r["d"]) for r in records] == [("1", "2024-01-02"), ("one", "2024-01-02T03:04:05")]
    assert records[0]["big"] == 2**53 and float(records[1]["big"]) == 2.0**60


def test_header_only_and_empty_workbooks(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/h.xlsx").write_bytes(generate.xlsx({"a": [["x", "y"]]}))
    (tmp_path / "s/e.xlsx").write_bytes(generate.xlsx({"a": []}))
    src = Source({"root_url": str(tmp_path)})
    assert src.schema("s").names[:2] == ["x", "y"]
    rows, done = drain(src, "s")
    assert rows == [] and len(done) == 2


def test_corrupt_workbook_is_bad_data_naming_the_file(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/bad.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(BadDataError, match=r"s/bad\.xlsx"):
        drain(Source({"root_url": str(tmp_path)}), "s")
    rows, [done] = drain(Source({"root_url": str(tmp_path), "on_bad_record": "skip"}), "s")
    assert rows == [] and done.skipped == 1


XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(lambda s: s.strip() == s)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False, width=64),
                          st.integers(min_value=-2**53, max_value=2**53), XML_TEXT, st.booleans()),
                min_size=1, max_size=20))
def test_cells_round_trip_exactly(tmp_path, rows):
    folder = tmp_path / f"w{abs(hash(str(rows)))}"
    (folder / "s").mkdir(parents=True)
    (folder / "s/x.xlsx").write_bytes(generate.xlsx({"a": [["f", "i", "t", "b"], *map(list, rows)]}))
    records = validated_records(Source({"root_url": str(folder)}), "s")
    assert [int(r["i"]) for r in records] == [i for _, i, _, _ in rows]
    assert [r["t"] for r in records] == [t for _, _, t, _ in rows]
    assert [r["b"] for r in records] == [b for _, _, _, b in rows]
    # Excel stores doubles: each comes back as the same double (an all-whole column is integer).
    assert [float(r["f"]) for r in records] == [f for f, _, _, _ in rows]
