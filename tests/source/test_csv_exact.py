"""CSV values arrive exactly as written, or as text saying so: never cut, rounded or renamed away.

Issue 13 (CSV): quoted line breaks across Arrow's blocks, integers beyond int64 or 2**53,
zero-padded codes, non-finite numbers, ``.tsv`` delimiters, a UTF-8 byte order mark, source
columns named like ours (``_file``), and ``""`` against an empty cell.
"""

from __future__ import annotations

import gzip
import io
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.source import BadDataError, Source
from connector.source.formats import BLOCK_SIZE, READ_BLOCK
from connector.source.infer import declared_column
from tests.source.formats_helpers import validated_records
from tests.source.helpers import drain, put, s3_config, write_local


def _multiline(i: int) -> str:
    """A value of ~1.2 KB, nearly all line breaks, commas and quotes inside one quoted field."""
    return "".join(f'part {j} of {i}, "q"\n' for j in range(60))


def _quoted_rows(size: int) -> tuple[bytes, int, float]:
    """A CSV of at least ``size`` bytes whose second column is a multi-line quoted value: (bytes,
    rows, the share of the file's bytes that lie inside quoted values)."""
    out, inside, i = io.BytesIO(), 0, 0
    out.write(b"id,text,after\n")
    while out.tell() < size:
        value = _multiline(i).replace('"', '""').encode()
        out.write(b'%d,"%s",x%d\r\n' % (i, value, i))
        inside += len(value)
        i += 1
    data = out.getvalue()
    return data, i, inside / len(data)


@pytest.mark.parametrize("size", [BLOCK_SIZE + (1 << 20), READ_BLOCK + (1 << 20)], ids=["block+1MiB", "readahead+1MiB"])
@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("on_bad_record", ["fail", "skip"])
def test_quoted_line_breaks_across_blocks_are_read_whole(size, where, on_bad_record, tmp_path, s3_endpoint,
                                                          s3_bucket):
    data, n, inside = _quoted_rows(size)
    # Every block boundary (CSV blocks of csv.CSV_BLOCK, S3 requests of BLOCK_SIZE + READ_BLOCK)
    # falls inside a quoted multi-line value unless it hits one of the few bytes outside them; the
    # old chunker cut there.
    assert inside > 0.98 and len(data) > size
    if where == "local":
        write_local(tmp_path, {"s/big.csv": data})
        config = {"root_url": str(tmp_path), "on_bad_record": on_bad_record}
    else:
        put(s3_endpoint, s3_bucket, {"s/big.csv": data})
        config = s3_config(s3_endpoint, s3_bucket, on_bad_record=on_bad_record)
    rows, done = drain(Source(config), "s")
    assert [r["id"] for r in rows] == list(range(n))
    assert all(r["text"] == _multiline(r["id"]) and r["after"] == f"x{r['id']}" for r in rows)
    assert done[0].skipped == 0 and done[0].records == n


def test_header_with_a_quoted_line_break(tmp_path):
    write_local(tmp_path, {"s/a.csv": b'# note\n"first\nname",b\n"1\n2",3\n4,5\n'})
    src = Source({"root_url": str(tmp_path), "csv": {"skip_rows": 1}})
    rows, _ = drain(src, "s")
    assert [(r["first\nname"], r["b"]) for r in rows] == [("1\n2", 3), ("4", 5)]


def _discovered(tmp_path, files: dict[str, bytes], **config) -> tuple[Source, dict]:
    write_local(tmp_path, files)
    src = Source({"root_url": str(tmp_path), **config})
    [stream] = src.discover()
    return src, stream["json_schema"]["properties"]


def test_integers_beyond_int64_stay_exact_text(tmp_path):
    big = str(2**63)  # one past int64
    src, props = _discovered(tmp_path, {"s/a.csv": f"n,m\n1,1\n{big},-{2**70}\n3,3\n".encode()})
    assert props["n"]["type"][:2] == ["null", "string"] and props["m"]["type"][:2] == ["null", "string"]
    rows, _ = drain(src, "s")
    assert [r["n"] for r in rows] == ["1", big, "3"] and rows[1]["m"] == f"-{2**70}"


def test_integer_beyond_int64_after_the_sample_kept_as_text(tmp_path, caplog):
    body = b"n\n" + b"".join(b"%d\n" % i for i in range(20)) + str(2**64 + 1).encode() + b"\n"
    src, props = _discovered(tmp_path, {"s/a.csv": body}, schema_sample_rows=5)
    assert props["n"]["type"] == ["null", "integer", "string"]  # declared: a later value may be text
    with caplog.at_level(logging.WARNING, logger="connector.source"):
        rows, done = drain(src, "s")
    assert rows[-1]["n"] == str(2**64 + 1) and done[0].type_conflicts == ("n",)
    assert any("kept as text" in m and "n" in m for m in caplog.messages)


def test_zero_padded_columns_stay_text(tmp_path):
    src, props = _discovered(tmp_path, {"s/a.csv": b"zip,code,amount\n01234,0x1f,00.50\n90210,7,1.5\n"})
    assert all(props[c]["type"][:2] == ["null", "string"] for c in ("zip", "code", "amount"))
    rows, _ = drain(src, "s")
    assert [(r["zip"], r["code"], r["amount"]) for r in rows] == [("01234", "0x1f", "00.50"), ("90210", "7", "1.5")]


def test_booleans_with_spaces_stay_text(tmp_path):
    """" yes" was read as true (its spaces dropped) while " 5" stays text: a cast keeps every value."""
    src, props = _discovered(tmp_path, {"s/a.csv": b'b,c,n\n" yes",True,5\nno,no ,6\n'})
    assert props["b"]["type"][:2] == props["c"]["type"][:2] == ["null", "string"]
    rows, _ = drain(src, "s")
    assert [(r["b"], r["c"]) for r in rows] == [(" yes", "True"), ("no", "no ")]


def test_zero_padded_value_after_the_sample_kept_as_text(tmp_path):
    body = b"zip\n" + b"".join(b"%d\n" % (90000 + i) for i in range(20)) + b"02134\n"
    src, _ = _discovered(tmp_path, {"s/a.csv": body}, schema_sample_rows=5)
    rows, done = drain(src, "s")
    assert rows[-1]["zip"] == "02134" and done[0].type_conflicts == ("zip",)


def test_ints_beyond_a_double_in_a_number_column(tmp_path):
    exact_edge = str(2**53 + 1)  # a double holds 2**53 and 2**53 + 2, not this
    src, props = _discovered(tmp_path, {"s/a.csv": f"v,w\n1.5,1.5\n{exact_edge},{2**53}\n".encode()})
    assert props["v"]["type"][:2] == ["null", "string"]  # the sample shows it: text at discover
    assert props["w"]["type"][:2] == ["null", "number"]  # 2**53 is a double exactly
    rows, _ = drain(src, "s")
    assert [r["v"] for r in rows] == ["1.5", exact_edge] and [r["w"] for r in rows] == [1.5, 2**53]


@pytest.mark.parametrize("late", [str(2**53 + 1), "0.1000000000000000000001", "nan", "1e400", "1e-400"])
def test_number_a_double_would_change_after_the_sample_kept_as_text(tmp_path, late):
    body = b"v\n" + b"".join(b"%d.5\n" % i for i in range(20)) + late.encode() + b"\n"
    src, props = _discovered(tmp_path, {"s/a.csv": body}, schema_sample_rows=5)
    assert props["v"]["type"] == ["null", "number", "string"]
    rows, done = drain(src, "s")
    assert rows[-1]["v"] == late and rows[0]["v"] == "0.5" and done[0].type_conflicts == ("v",)


def test_quoted_empty_is_an_empty_string_unquoted_empty_is_null(tmp_path):
    src, props = _discovered(tmp_path, {"s/a.csv": b'name,n\n"",""\n,\nx,1\n'})
    assert props["n"]["type"][:2] == ["null", "integer"]
    rows, _ = drain(src, "s")
    assert [(r["name"], r["n"]) for r in rows] == [("", None), (None, None), ("x", 1)]


@pytest.mark.parametrize("name", ["a.tsv", "a.tsv.gz"])
def test_tsv_is_tab_separated(tmp_path, name):
    body = b"id\tnote\n1\ta, b\n2\tc\n"
    src, props = _discovered(tmp_path, {f"s/{name}": gzip.compress(body) if name.endswith(".gz") else body})
    assert set(props) == {"id", "note", "_last_modified_time", "_file"}
    rows, _ = drain(src, "s")
    assert [(r["id"], r["note"]) for r in rows] == [(1, "a, b"), (2, "c")]


def test_tsv_with_a_configured_delimiter_uses_it(tmp_path):
    src, _ = _discovered(tmp_path, {"s/a.tsv": b"id,note\n1,a\tb\n"}, csv={"delimiter": ","})
    rows, _ = drain(src, "s")
    assert [(r["id"], r["note"]) for r in rows] == [(1, "a\tb")]


@pytest.mark.parametrize("name", ["a.csv", "a.csv.gz"])
def test_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path, name):
    body = "\ufeffid,name\n1,Zoë\n".encode()
    src, props = _discovered(tmp_path, {f"s/{name}": gzip.compress(body) if name.endswith(".gz") else body})
    assert "id" in props and not any(k.startswith("\ufeff") for k in props)
    rows, _ = drain(src, "s")
    assert [(r["id"], r["name"]) for r in rows] == [(1, "Zoë")]


def test_header_that_is_not_utf8_is_an_error_naming_the_file(tmp_path):
    write_local(tmp_path, {"s/a.csv": b"id,caf\xe9\n1,2\n"})
    with pytest.raises(BadDataError, match=r"s/a\.csv.*line 1.*not UTF-8"):
        drain(Source({"root_url": str(tmp_path)}), "s")


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_source_columns_named_like_ours_are_renamed_not_overwritten(tmp_path, fmt, caplog):
    if fmt == "csv":
        body = b"id,_file,_last_modified_time\n1,mine.txt,yesterday\n"
    elif fmt == "jsonl":
        body = json.dumps({"id": 1, "_file": "mine.txt", "_last_modified_time": "yesterday"}).encode() + b"\n"
    else:
        body = _parquet(pa.table({"id": [1], "_file": ["mine.txt"], "_last_modified_time": ["yesterday"]}))
    src, props = _discovered(tmp_path, {f"s/a.{fmt}": body})
    assert list(props) == ["id", "_file_2", "_last_modified_time_2", "_last_modified_time", "_file"]
    with caplog.at_level(logging.WARNING, logger="connector.source"):
        rows, _ = drain(src, "s")
    [row] = rows
    assert row["_file_2"] == "mine.txt" and row["_last_modified_time_2"] == "yesterday"
    assert row["_file"] == f"s/a.{fmt}" and row["_last_modified_time"].year > 2000
    assert any("s/a." + fmt in m and "_file_2" in m for m in caplog.messages)


def test_renamed_column_takes_the_next_free_suffix(tmp_path):
    src, props = _discovered(tmp_path, {"s/a.csv": b"_file,_file_2\nx,v2\n"})
    assert list(props) == ["_file_3", "_file_2", "_last_modified_time", "_file"]
    [row] = drain(src, "s")[0]
    assert (row["_file_3"], row["_file_2"], row["_file"]) == ("x", "v2", "s/a.csv")


def test_words_that_look_like_nulls_are_values(tmp_path):
    src, _ = _discovered(tmp_path, {"s/a.csv": b"country,note\nNA,null\nFR,N/A\n"})
    rows, _ = drain(src, "s")
    assert [(r["country"], r["note"]) for r in rows] == [("NA", "null"), ("FR", "N/A")]


def test_row_longer_than_a_block_is_read_whole(tmp_path):
    plain, spanning = "x" * (BLOCK_SIZE + 1000), "line\n" * (2 * BLOCK_SIZE // 5)
    body = f'a,b\n1,{plain}\n2,"{spanning}"\n3,z\n'.encode()
    src, _ = _discovered(tmp_path, {"s/a.csv": body})
    rows, done = drain(src, "s")
    assert [r["a"] for r in rows] == [1, 2, 3] and done[0].skipped == 0
    assert rows[0]["b"] == plain and rows[1]["b"] == spanning and rows[2]["b"] == "z"


def test_a_late_value_that_is_not_a_date_validates_as_text(tmp_path):
    # The sample sees only dates; the last row, outside it, is kept as its text (with a WARN), and
    # the declared column must admit that text: a date format alone refused it.
    text = "d,t\n" + "".join(f"2024-01-{i % 28 + 1:02d},2024-01-01T00:00:{i % 60:02d}Z\n" for i in range(3000))
    src, props = _discovered(tmp_path, {"s/a.csv": (text + "not-a-date,also-not\n").encode()})
    assert declared_column(props["d"])["format"] == "date"  # typed from the sample
    assert declared_column(props["t"])["format"] == "date-time"
    records = validated_records(src, "s")  # each validated with the format checker
    assert (records[-1]["d"], records[-1]["t"]) == ("not-a-date", "also-not")
    assert [r["d"] for r in records[:2]] == ["2024-01-01", "2024-01-02"]


def test_dates_stay_dates(tmp_path):
    src, props = _discovered(tmp_path, {"s/a.csv": b"d,t\n2024-01-31,2024-01-31\n0001-01-01,2024-01-31T10:00:00\n"})
    assert declared_column(props["d"])["format"] == "date" and props["t"]["type"][:2] == ["null", "string"]  # mixed: text
    rows, _ = drain(src, "s")
    assert [r["d"].isoformat() for r in rows] == ["2024-01-31", "0001-01-01"]
    assert [r["t"] for r in rows] == ["2024-01-31", "2024-01-31T10:00:00"]


def test_des_source_records_validate_against_the_discovered_schema(tmp_path):
    """Through the real entry point: discover, then read; every RECORD fits its stream's schema."""
    import jsonschema

    from tests.source.test_airbyte_source import catalog_for, run, write

    body = (b"id,zip,_file,v\n" + b"".join(b"%d,9%04d,f%d,%d.5\n" % (i, i, i, i) for i in range(30))
            + str(2**64).encode() + b",01234,g," + str(2**53 + 1).encode() + b"\n")
    write_local(tmp_path / "root", {"s/a.csv": body, "t/b.tsv": b"k\tnote\n1\ta, b\n"})
    config = write(tmp_path, "config.json", {"root_url": str(tmp_path / "root"), "schema_sample_rows": 10})
    code, messages, _ = run("discover", "--config", config)
    streams = messages[0]["catalog"]["streams"]
    catalog = write(tmp_path, "catalog.json", catalog_for(streams, "full_refresh"))
    code, messages, stderr = run("read", "--config", config, "--catalog", catalog)
    assert code == 0, stderr
    schemas = {s["name"]: jsonschema.Draft7Validator(s["json_schema"], format_checker=jsonschema.FormatChecker())
               for s in streams}
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    for record in records:
        assert not list(schemas[record["stream"]].iter_errors(record["data"])), record
    last = [r["data"] for r in records if r["stream"] == "s"][-1]
    assert (last["id"], last["zip"], last["_file_2"], last["v"]) == (str(2**64), "01234", "g", str(2**53 + 1))
    assert last["_file"] == "s/a.csv"
    [tsv] = [r["data"] for r in records if r["stream"] == "t"]
    assert (tsv["k"], tsv["note"]) == (1, "a, b")


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_line_ends_with_blank_lines_and_skipped_rows(tmp_path, end):
    body = end.join([b"# exported", b"", b"a,b", b'1,"x' + end + b'y"', b"", b"2,z"]) + end
    src, _ = _discovered(tmp_path, {"s/a.csv": body}, csv={"skip_rows": 1})
    rows, _ = drain(src, "s")
    assert [(r["a"], r["b"]) for r in rows] == [(1, "x" + end.decode() + "y"), (2, "z")]


@pytest.mark.parametrize("on_bad_record", ["fail", "skip"])
def test_quote_never_closed_is_a_bad_row_not_the_rest_of_the_file(tmp_path, on_bad_record):
    src, _ = _discovered(tmp_path, {"s/a.csv": b'a,b\n0,ok\n1,"x\n2,y\n3,z\n'}, on_bad_record=on_bad_record)
    if on_bad_record == "fail":
        with pytest.raises(BadDataError, match=r"s/a\.csv: the last row: a quoted value is never closed"):
            drain(src, "s")
        return
    rows, done = drain(src, "s")
    assert [(r["a"], r["b"]) for r in rows] == [(0, "ok")] and done[0].skipped == 1


@pytest.mark.parametrize("ending", [b'"', b'"\n', b'"\r\n\r\n', b'"""\n'])
def test_last_value_with_a_line_break_that_is_closed_is_kept(tmp_path, ending):
    src, _ = _discovered(tmp_path, {"s/a.csv": b'a,b\n1,"x\ny' + ending})
    rows, _ = drain(src, "s")
    assert [r["b"] for r in rows] == ["x\ny" + ('"' if ending.startswith(b'"""') else "")]
