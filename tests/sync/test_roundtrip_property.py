"""Property: a generated table written as CSV, JSON Lines, a JSON array, Parquet, Avro or xlsx
comes out of the source as RECORDs that validate against the discovered json_schema and carry
every value exactly, and ``des sync`` of the same files gives the same values back through
``Store.to_table`` (issue 13, "Done when").

The tables mix what a careless reader loses: integers beyond int64, integers at or above 2**53 in
a column that also holds floats, zero-padded digit strings, floats at a double's edges, booleans,
text with line breaks, quotes, commas, tabs and non-ASCII characters, nulls, dates, timestamps,
and, where the format has them, nested objects and lists, decimals and bytes. A small
``schema_sample_rows`` sends later rows past the sample (the keep-as-text and widen paths).

Comparisons are exact: numbers as ``Decimal``, instants to the microsecond, text byte for byte. A
value kept as text because it does not fit its column's type must be the value's own text.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.destination.config import DestinationConfig
from connector.records import record_lines
from connector.source import FileBatch, Source
from connector.source.read import FILE_COLUMNS
from connector.store import Store
from connector.sync import Sync
from tests.source.helpers import put, s3_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testdata"))
import generate  # (testdata/generate.py: the xlsx writer the Excel tests use)

# Draft 7's "time" wants an offset; no generated column is a time of day.
_FORMATS = jsonschema.FormatChecker([f for f in jsonschema.Draft7Validator.FORMAT_CHECKER.checkers if f != "time"])

# -- values ------------------------------------------------------------------------------------------

_TEXT_CHARS = st.characters(blacklist_categories=("Cs",))
text = st.one_of(
    st.text(_TEXT_CHARS, max_size=10),
    st.text(st.sampled_from('ab,"\n\r\t \\\'é😀'), max_size=6),
    st.sampled_from(["", "NA", "null", "nan", "N/A", "true", " yes", "True ", "1", "01", "1e5", "-0", " x ", "a,b",
                     'say "hi"']),
)
KINDS: dict[str, st.SearchStrategy] = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "bigint": st.one_of(st.integers(-(2**80), 2**80), st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30])),
    # Integers a double cannot hold, in a column that also holds fractions.
    "mixed": st.one_of(st.integers(2**53 - 2, 2**53 + 9), st.integers(-(2**62), 2**62),
                       st.floats(allow_nan=False, allow_infinity=False)),
    "padded": st.integers(0, 99_999).map(lambda n: f"{n:05d}"),
    "float": st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from([0.1, 1e308, 5e-324, 0.30000000000000004, 2.0**53, 1e16])),
    "bool": st.booleans(),
    "text": text,
    "null": st.none(),
    "date": st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    "timestamp": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                              timezones=st.just(UTC)),
    "object": st.fixed_dictionaries({"a": st.integers(-(2**64), 2**64)},
                                    optional={"b": text, "c": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
                                              "é": st.fixed_dictionaries({"x": st.one_of(st.none(), st.booleans())})}),
    "list": st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=4),
    "decimal": st.decimals(places=4, min_value=-(10**16) + 1, max_value=10**16 - 1),
    "binary": st.binary(max_size=8),
}

#: Kinds each format can hold (it writes them as :func:`WRITERS` says).
FORMAT_KINDS = {
    "csv": ["int", "bigint", "mixed", "padded", "float", "bool", "text", "null", "date", "timestamp"],
    "jsonl": ["int", "bigint", "mixed", "padded", "float", "bool", "text", "null", "date", "timestamp", "object",
              "list"],
    "json_array": ["int", "bigint", "mixed", "padded", "float", "bool", "text", "null", "date", "timestamp",
                   "object", "list"],
    "parquet": ["int", "bigint", "padded", "float", "bool", "text", "null", "date", "timestamp", "object", "list",
                "decimal", "binary"],
    "avro": ["int", "bigint", "padded", "float", "bool", "text", "null", "date", "timestamp", "object", "list",
             "decimal", "binary"],
    # A sheet's numbers are doubles (integers up to 2**53) and its text XML: no control characters.
    "xlsx": ["int", "padded", "float", "bool", "text", "null", "date", "timestamp"],
}
EXTENSION = {"csv": "csv", "jsonl": "jsonl", "json_array": "json", "parquet": "parquet", "avro": "avro",
             "xlsx": "xlsx"}

Table = tuple[dict[str, str], list[dict[str, Any]]]  # (column -> kind, rows)


def _for_format(fmt: str, kind: str, values: st.SearchStrategy) -> st.SearchStrategy:
    if fmt == "xlsx":
        if kind == "int":
            return st.integers(-(2**53), 2**53)
        if kind == "text":
            # XML 1.0 has no control characters and reads a CR as a line feed; python-calamine
            # gives an empty text cell as it gives an empty cell (so it is null).
            return st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t"),
                           min_size=1, max_size=8)
        # A cell is a double of days: whole seconds survive, not microseconds. Excel counts a
        # 29 February 1900 that never was: its days before March 1900 are off by one.
        if kind == "timestamp":
            return values.map(lambda t: t.replace(microsecond=0, tzinfo=None)).filter(lambda t: t >= datetime(1900, 3, 1))
        if kind == "date":
            return st.dates(min_value=date(1900, 3, 1), max_value=date(9999, 12, 31))
    return values


@st.composite
def tables(draw, fmt: str) -> Table:
    names = draw(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=5)
                          .filter(lambda n: not n.startswith("_") and n.strip() == n and n != "k"),
                          min_size=1, max_size=5, unique=True))
    kinds = {name: draw(st.sampled_from(FORMAT_KINDS[fmt])) for name in names}
    n = draw(st.integers(1, 12))
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"k": i}  # a row number first: a CSV row of empty cells would be a blank line
        for name, kind in kinds.items():
            row[name] = draw(st.one_of(st.none(), _for_format(fmt, kind, KINDS[kind])))
        rows.append(row)
    return {"k": "int", **kinds}, rows


# -- writers -----------------------------------------------------------------------------------------

def _csv_text(value: Any) -> str | None:
    """A value as the CSV cell text a tool would write (None: an empty, unquoted cell)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _csv_cell(value: Any) -> str:
    cell = _csv_text(value)
    if cell is None:
        return ""
    if cell == "" or any(c in cell for c in ',"\n\r') or cell != cell.strip(" "):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _json_value(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def write_csv(table: Table) -> bytes:
    kinds, rows = table
    lines = [",".join(_csv_cell(name) for name in kinds)]
    lines += [",".join(_csv_cell(row[name]) for name in kinds) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def write_jsonl(table: Table) -> bytes:
    return "".join(json.dumps(_json_value(r), ensure_ascii=False) + "\n" for r in table[1]).encode()


def write_json_array(table: Table) -> bytes:
    return json.dumps([_json_value(r) for r in table[1]], ensure_ascii=False, indent=1).encode()


_OBJECT = pa.struct([("a", pa.decimal128(38, 0)), ("b", pa.string()), ("c", pa.list_(pa.int64())),
                     ("é", pa.struct([("x", pa.bool_())]))])
ARROW = {"int": pa.int64(), "bigint": pa.decimal128(38, 0), "padded": pa.string(), "float": pa.float64(),
         "bool": pa.bool_(), "text": pa.string(), "null": pa.null(), "date": pa.date32(),
         "timestamp": pa.timestamp("us", tz="UTC"), "object": _OBJECT, "list": pa.list_(pa.int64()),
         "decimal": pa.decimal128(20, 4), "binary": pa.binary()}


def _arrow_value(value: Any, kind: str) -> Any:
    if kind == "bigint" and value is not None:
        return Decimal(value)
    if kind == "object" and value is not None:
        return {**value, "a": Decimal(value["a"])}
    return value


def write_parquet(table: Table) -> bytes:
    kinds, rows = table
    columns = {name: pa.array([_arrow_value(r[name], kind) for r in rows], ARROW[kind]) for name, kind in kinds.items()}
    out = io.BytesIO()
    pq.write_table(pa.table(columns), out)
    return out.getvalue()


_AVRO_DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 0}
AVRO = {"int": "long", "bigint": _AVRO_DECIMAL, "padded": "string", "float": "double", "bool": "boolean",
        "text": "string", "null": "string", "date": {"type": "int", "logicalType": "date"},
        "timestamp": {"type": "long", "logicalType": "timestamp-micros"},
        "object": {"type": "record", "name": "obj{i}", "fields": [
            {"name": "a", "type": _AVRO_DECIMAL}, {"name": "b", "type": ["null", "string"], "default": None},
            {"name": "c", "type": ["null", {"type": "array", "items": ["null", "long"]}], "default": None},
            {"name": "e", "type": ["null", {"type": "record", "name": "inner{i}", "fields": [
                {"name": "x", "type": ["null", "boolean"]}]}], "default": None}]},
        "list": {"type": "array", "items": ["null", "long"]},
        "decimal": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4}, "binary": "bytes"}


def _avro_value(value: Any, kind: str) -> Any:
    if kind == "bigint" and value is not None:
        return Decimal(value)
    if kind == "object" and value is not None:  # Avro names are ASCII: "é" is "e" there
        return {"a": Decimal(value["a"]), "b": value.get("b"), "c": value.get("c"), "e": value.get("é")}
    return value


def _named(avro_type: Any, i: int) -> Any:
    """``avro_type`` with its record names made unique to column ``i`` (a name is defined once)."""
    return json.loads(json.dumps(avro_type).replace("{i}", str(i)))


def write_avro(table: Table) -> bytes:
    kinds, rows = table
    # Avro field names are [A-Za-z_][A-Za-z0-9_]*: columns are c0, c1... (see _avro_names).
    fields = [{"name": f"c{i}", "type": ["null", _named(AVRO[kind], i)], "default": None}
              for i, kind in enumerate(kinds.values())]
    fields[0] = {"name": "k", "type": "long"}
    schema = fastavro.parse_schema({"type": "record", "name": "row", "fields": fields})
    records = [{f["name"]: _avro_value(r[name], kind) for f, (name, kind) in zip(fields, kinds.items())} for r in rows]
    out = io.BytesIO()
    fastavro.writer(out, schema, records)
    return out.getvalue()


def write_xlsx(table: Table) -> bytes:
    kinds, rows = table
    return generate.xlsx({"sheet": [list(kinds)] + [[r[name] for name in kinds] for r in rows]})


WRITERS: dict[str, Callable[[Table], bytes]] = {"csv": write_csv, "jsonl": write_jsonl, "json_array": write_json_array,
                                                "parquet": write_parquet, "avro": write_avro, "xlsx": write_xlsx}


def column_names(fmt: str, table: Table) -> dict[str, str]:
    """Generated column -> the column it is read as (Avro names are ASCII: ``c1``, ``c2``...)."""
    if fmt != "avro":
        return {name: name for name in table[0]}
    return {name: ("k" if i == 0 else f"c{i}") for i, name in enumerate(table[0])}


# -- comparisons -------------------------------------------------------------------------------------

_TRUE, _FALSE = {"true", "t", "yes", "y"}, {"false", "f", "no", "n"}


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def same_csv(got: Any, written: str | None, where: str) -> None:
    """``got`` (a RECORD value, JSON numbers as int/Decimal) says exactly what cell text ``written`` said."""
    if written is None:
        assert got is None, where
    elif isinstance(got, bool):
        assert written.lower() in (_TRUE if got else _FALSE), where
    elif isinstance(got, (int, Decimal)):
        assert Decimal(written) == Decimal(got), where
        assert not re.match(r"[+-]?0\d", written), where  # zero-padded text must stay text
    elif got is None:
        assert written == "", where  # a quoted "" is null in a typed column
    elif got != written:  # a timestamp, written out in one form: the same instant
        assert _ISO.match(written) and _instant(got) == _instant(written), where
    else:
        assert got == written, where


_ISO = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|z|[+-]\d\d:?\d\d)?$")


def same(got: Any, value: Any, where: str) -> None:
    """``got`` (a RECORD value) is ``value`` (as generated): itself, its JSON form, or, where the
    column is text because its values did not fit one type, its exact JSON text."""
    if value is None:
        assert got is None, where
    elif isinstance(got, str) and not isinstance(value, (str, date, bytes)):
        # Kept as text: the value's own JSON text.
        same(json.loads(got, parse_float=Decimal), value, where + " (as text)")
    elif isinstance(value, bool):
        assert got is value, where
    elif isinstance(value, (int, float, Decimal)):
        assert isinstance(got, (int, Decimal)) and not isinstance(got, bool), where
        assert Decimal(got) == _number(value), where
    elif isinstance(value, datetime):
        assert isinstance(got, str) and _instant(got) == (value if value.tzinfo else value.replace(tzinfo=UTC)), where
    elif isinstance(value, date):
        assert got == value.isoformat(), where
    elif isinstance(value, bytes):
        assert isinstance(got, str) and base64.b64decode(got) == value, where
    elif isinstance(value, str):
        # JSON readers take ISO-8601 date-time strings for timestamps: the same instant comes back.
        assert got == value or (_ISO.match(value) and _instant(got) == _instant(value)), where
    elif isinstance(value, dict):
        assert isinstance(got, dict), where
        assert all(got[k] is None for k in got if k not in value), where
        for k, v in value.items():
            same(got[k], v, f"{where}.{k}")
    elif isinstance(value, list):
        assert isinstance(got, list) and len(got) == len(value), where
        for i, (g, v) in enumerate(zip(got, value)):
            same(g, v, f"{where}[{i}]")
    else:
        raise AssertionError(f"{where}: no comparison for {value!r}")


def same_stored(got: Any, record: Any, where: str) -> None:
    """``got`` (a ``Store.to_table`` value) is ``record`` (the RECORD's value it was stored from):
    the same value, or, in a column the store keeps as JSON text, that value's JSON text."""
    if record is None:
        assert got is None, where
    elif isinstance(got, str) and not isinstance(record, str):
        same_stored(json.loads(got, parse_float=Decimal), record, where + " (as text)")
    elif isinstance(record, bool):
        assert got is record, where
    elif isinstance(record, (int, Decimal)):
        assert isinstance(got, (int, float, Decimal)) and not isinstance(got, bool), where
        assert _number(got) == Decimal(record), (where, got, record)
        if isinstance(record, int):  # a double holds an integer exactly only up to 2**53
            assert isinstance(got, int) or abs(record) <= 2**53, where
    elif isinstance(record, str):
        assert got == record, (where, got, record)
    elif isinstance(record, dict):
        assert isinstance(got, dict), where
        assert all(got[k] is None for k in got if k not in record), where
        for k, v in record.items():
            same_stored(got[k], v, f"{where}.{k}")
    elif isinstance(record, list):
        assert isinstance(got, list) and len(got) == len(record), where
        for i, (g, v) in enumerate(zip(got, record)):
            same_stored(g, v, f"{where}[{i}]")
    else:
        raise AssertionError(f"{where}: no comparison for {record!r}")


# -- the round trip ----------------------------------------------------------------------------------

def read_records(config: dict) -> tuple[dict, list[dict]]:
    """(discovered json_schema of stream ``s``, each RECORD's data as des-source emits it)."""
    source = Source(config)
    [stream] = source.discover()
    lines = b"".join(record_lines("s", e.batch, 1, FILE_COLUMNS) for e in source.read("s", sync_mode="full_refresh")
                     if isinstance(e, FileBatch))
    return stream["json_schema"], [json.loads(line, parse_float=Decimal)["record"]["data"] for line in lines.splitlines()]


def check_records(fmt: str, table: Table, schema: dict, records: list[dict]) -> None:
    kinds, rows = table
    names = column_names(fmt, table)
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    assert len(records) == len(rows)
    for row, record in zip(rows, records):
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(record)]
        assert not errors, (record, errors)
        assert set(record) == set(names.values()) | set(FILE_COLUMNS)
        for name, column in names.items():
            where = f"row {row['k']} column {name!r} ({kinds[name]}): {row[name]!r} -> {record[column]!r}"
            if fmt == "csv":
                same_csv(record[column], _csv_text(row[name]), where)
            elif fmt == "avro" and kinds[name] == "object" and row[name] is not None:
                same(record[column], {("e" if k == "é" else k): v for k, v in row[name].items()}, where)
            else:
                same(record[column], row[name], where)


def check_stored(store_root: str, records: list[dict], storage_options: dict | None = None) -> None:
    with Store(store_root, storage_options=storage_options) as store:
        stored = store.to_table("s").to_pylist()
    assert len(stored) == len(records)
    for got, record in zip(stored, records):
        for column, value in record.items():
            if column not in FILE_COLUMNS:
                same_stored(got.get(column), value, f"row {record['k']} column {column!r}: {value!r} -> {got.get(column)!r}")


def roundtrip(fmt: str, table: Table, sample_rows: int, files: int = 1, per_container: int = 100_000) -> None:
    """Write ``table`` as ``fmt`` into a local folder (its rows split over ``files`` files, older
    first), read it, sync it (API) into containers of ``per_container`` records, compare both."""
    kinds, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        (root / "s").mkdir(parents=True)
        cut = len(rows) // 2 if files > 1 else len(rows)
        for i, part in enumerate([rows[:cut], rows[cut:]] if files > 1 and cut else [rows]):
            path = root / "s" / f"t{i}.{EXTENSION[fmt]}"
            path.write_bytes(WRITERS[fmt]((kinds, part)))
            os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))  # read in this order
        config = {"root_url": str(root), "schema_sample_rows": sample_rows}
        schema, records = read_records(config)
        check_records(fmt, table, schema, records)
        destination = {"root_url": str(Path(tmp) / "store"), "max_datapoints": per_container}
        Sync(config, DestinationConfig.from_dict(destination)).run()
        check_stored(str(Path(tmp) / "store"), records)


FAST = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


#: How the rows reach the store: in one file or two (the schema merges both files' samples), in
#: one container or several (the store merges their column types when it reads them back).
LAYOUT = {"sample_rows": st.sampled_from([1, 2, 1000]), "files": st.sampled_from([1, 2]),
          "per_container": st.sampled_from([2, 100_000])}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@FAST
@given(data=st.data(), **LAYOUT)
def test_roundtrip(fmt, data, sample_rows, files, per_container):
    roundtrip(fmt, data.draw(tables(fmt)), sample_rows, files, per_container)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(WRITERS))
@SLOW
@given(data=st.data(), **LAYOUT)
def test_roundtrip_many(fmt, data, sample_rows, files, per_container):
    roundtrip(fmt, data.draw(tables(fmt)), sample_rows, files, per_container)


# -- fixed examples: every kind at its edges, and each mismatch the properties found ------------------

EDGES: dict[str, list[Any]] = {
    "int": [-(2**63), 2**63 - 1, 0, 2**53 + 1],
    "bigint": [2**63, -(2**63) - 1, 2**64 + 1, -(10**30)],
    "mixed": [2**53 + 1, 0.5, 2**62 + 3, -1.25],
    "padded": ["01234", "00000", "00012", "99999"],
    "float": [0.1, 1e308, 5e-324, 0.30000000000000004],
    "bool": [True, False, True, False],
    "text": ['a,"b"\n\tc', "ü😀\r\n", "", "2024-01-31"],
    "null": [None, None, None, None],
    "date": [date(2024, 1, 31), date(1, 1, 1), date(9999, 12, 31), date(1970, 1, 1)],
    "timestamp": [datetime(2024, 1, 31, 10, 0, 0, 123456, UTC), datetime(1900, 1, 1, tzinfo=UTC),
                  datetime(2200, 1, 1, 0, 0, 0, 1, UTC), datetime(1970, 1, 1, tzinfo=UTC)],
    "object": [{"a": 2**64, "b": "x\ny", "c": [1, None], "é": {"x": True}}, {"a": -1}, {"a": 0, "c": []},
               {"a": 5, "é": {"x": None}}],
    "list": [[None, 1], [None, None], [], [2**63 - 1, None]],
    "decimal": [Decimal("1004413618748.9399"), Decimal("-0.0001"), Decimal("9999999999999999.9999"), Decimal(0)],
    "binary": [b"\x00\xff", b"", b"abc", b"\n"],
}


def edge_table(fmt: str) -> Table:
    """Every kind ``fmt`` holds, each column at its edges, with a row of nulls last."""
    kinds = {kind: kind for kind in FORMAT_KINDS[fmt]}
    rows = [{"k": i, **{kind: _edge(fmt, kind, i) for kind in kinds}} for i in range(4)]
    rows.append({"k": 4, **dict.fromkeys(kinds)})
    return {"k": "int", **kinds}, rows


def _edge(fmt: str, kind: str, i: int) -> Any:
    value = EDGES[kind][i]
    if fmt == "xlsx":
        if kind == "int":
            return [-(2**53), 2**53, 0, 7][i]
        if kind == "text":
            return value.replace("\r", "") or "x"
        if kind == "timestamp":
            return max(value.replace(microsecond=0, tzinfo=None), datetime(1900, 3, 1))
        if kind == "date":
            return [date(2024, 1, 31), date(1900, 3, 1), date(9999, 12, 31), date(1970, 1, 1)][i]
    return value


@pytest.mark.parametrize("sample_rows, files, per_container", [(1, 1, 100_000), (1000, 2, 2)])
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_edges_of_every_kind(fmt, sample_rows, files, per_container):
    roundtrip(fmt, edge_table(fmt), sample_rows, files, per_container)


@pytest.mark.parametrize("fmt, table", [
    # Store.to_table read text that looks like a date as timestamp[s] (a midnight).
    ("csv", ({"k": "int", "d": "date"}, [{"k": 0, "d": date(2000, 1, 1)}])),
    ("jsonl", ({"k": "int", "d": "text"}, [{"k": 0, "d": "2024-01-31"}, {"k": 1, "d": "1999-12-31"}])),
    # Store.to_table read a decimal's 17 digits as the nearest double.
    ("parquet", ({"k": "int", "d": "decimal"}, [{"k": 0, "d": Decimal("1004413618748.9399")}])),
    # Store.to_table: pyarrow's JSON reader miscounts the nulls of a list of nulls.
    ("json_array", ({"k": "int", "l": "list"}, [{"k": 0, "l": [None, None]}, {"k": 1, "l": [None, 1]}])),
    ("avro", ({"k": "int", "l": "list"}, [{"k": 0, "l": [None, None]}])),
    # The JSON source built 0.5 as 0 in a column its sample saw as integers.
    ("json_array", ({"k": "int", "m": "mixed"}, [{"k": 0, "m": 9_007_199_254_740_990}, {"k": 1, "m": 0.5}])),
    ("jsonl", ({"k": "int", "o": "object"}, [{"k": 0, "o": {"a": 1}}, {"k": 1, "o": {"a": 2.5, "c": [1]}}])),
])
def test_found_by_the_properties(fmt, table):
    roundtrip(fmt, table, 1)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "avro"])
def test_from_s3_through_the_des_sync_cli(tmp_path, s3_endpoint, s3_bucket, fmt):
    """The same round trip from moto's S3 server, with ``des sync`` as a subprocess."""
    table = edge_table(fmt)
    put(s3_endpoint, s3_bucket, {f"s/t.{EXTENSION[fmt]}": WRITERS[fmt](table)})
    config = s3_config(s3_endpoint, s3_bucket, schema_sample_rows=2)
    schema, records = read_records(config)
    check_records(fmt, table, schema, records)
    (tmp_path / "src.json").write_text(json.dumps(config))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(tmp_path / "store")}))
    out = subprocess.run([sys.executable, "-m", "connector.cli", "sync", "--config", str(tmp_path / "src.json"),
                          "--destination", str(tmp_path / "dst.json")], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert f"s -> s: 1 files, {len(table[1])} datapoints" in out.stdout
    check_stored(str(tmp_path / "store"), records)
