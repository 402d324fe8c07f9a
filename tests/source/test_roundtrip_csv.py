"""Property: any CSV table read by the source comes out as RECORDs that validate against the
json_schema discover declared, with every value exact (compared as text, Decimal or instant).

The tables mix what loses data when a reader is careless: integers beyond int64 and zero-padded,
floats at a double's edges, booleans, timestamps, strings with quotes, commas, line breaks and
non-ASCII text, nulls and quoted empty strings. A small ``schema_sample_rows`` sends later values
down the keep-as-text path too.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.source import FileBatch, Source
from connector.source.read import FILE_COLUMNS
from connector.source.infer import declared_column
from connector.records import record_lines

_TRUE, _FALSE = {"true", "t", "yes", "y"}, {"false", "f", "no", "n"}

ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**80), 2**80)).map(str)
zero_padded = st.integers(0, 99_999).map(lambda n: f"{n:05d}")
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: f"{f:.2f}"),
    st.sampled_from([str(2**53), str(2**53 + 1), "1e308", "1E5", "5e-324", "1e-400", "0.1", "-0.0",
                     "0.30000000000000004", "1.2345678901234567890", "123456789012345678"]),
)
booleans = st.sampled_from(["true", "false", "True", "FALSE", "yes", "no", "t", "f"])
timestamps = st.builds(
    lambda moment, form: moment.strftime(form),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S+00:00"]),
)
texts = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
                  st.text(alphabet='ab,"\n\r 1.', max_size=8), st.sampled_from(["NA", "null", "nan", "N/A", "5"]))
dates = st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
KINDS = {"date": dates, "int": ints, "zero_padded": zero_padded, "float": floats, "bool": booleans, "timestamp": timestamps,
         "text": texts, "mixed": st.one_of(ints, floats, texts)}


@st.composite
def tables(draw) -> tuple[list[str], list[list[str | None]]]:
    """Column kinds, then rows of cell texts (None: an empty cell)."""
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=4))
    cells = [st.one_of(st.none(), KINDS[k]) if k != "text" else st.one_of(st.none(), st.just(""), KINDS[k])
             for k in kinds]
    rows = draw(st.lists(st.tuples(*cells).map(list), min_size=1, max_size=25))
    return kinds, rows


def _cell(text: str | None) -> str:
    if text is None:
        return ""  # an empty unquoted cell: null
    if text == "" or any(c in text for c in ',"\n\r') or text != text.strip(" "):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_bytes(names: list[str], rows: list[list[str | None]]) -> bytes:
    lines = [",".join(names)] + [",".join(_cell(v) for v in row) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def assert_exact(written: str | None, got, declared: dict, where: str) -> None:
    """``got`` (the RECORD's value, JSON numbers as int/Decimal) says exactly what ``written`` did;
    ``declared`` is the column's JSON Schema."""
    if written is None:
        assert got is None, where
    elif written == "":  # a quoted "" cell: an empty string, or null in a typed column
        assert got == "" or (got is None and declared["type"][1] != "string"), where
    elif isinstance(got, bool):
        assert written.lower() in (_TRUE if got else _FALSE), where
    elif isinstance(got, (int, Decimal)):
        assert Decimal(written) == Decimal(got), where
        assert not (written.lstrip("+-").startswith("0") and written.lstrip("+-")[1:2].isdigit()), where
    elif got != written:  # a timestamp, written out in one form: the same instant
        assert declared.get("format") == "date-time", where  # (a date is written as it was)
        assert _instant(got) == _instant(written), where
    else:
        assert got == written, where


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(table=tables(), sample_rows=st.sampled_from([1, 3, 1000]), batch_size=st.sampled_from([2, 65536]))
def test_csv_records_validate_and_values_are_exact(table, sample_rows, batch_size):
    kinds, rows = table
    # A row number first: a row whose cells are all empty would be a blank line, which CSV
    # readers (this one too) skip.
    names = ["k"] + [f"{kind}_{i}" for i, kind in enumerate(kinds)]
    rows = [[str(i)] + row for i, row in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s" / "a.csv"
        path.parent.mkdir()
        path.write_bytes(csv_bytes(names, rows))
        source = Source({"root_url": tmp, "schema_sample_rows": sample_rows, "batch_size": batch_size})
        [stream] = source.discover()
        schema = stream["json_schema"]
        validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
        encoded = b"".join(record_lines("s", event.batch, 0, FILE_COLUMNS) for event in source.read("s")
                           if isinstance(event, FileBatch))
    records = [json.loads(line, parse_float=Decimal)["record"]["data"] for line in encoded.splitlines()]
    assert len(records) == len(rows)
    for index, (row, record) in enumerate(zip(rows, records)):
        errors = [e.message for e in validator.iter_errors(record)]
        assert not errors, (index, record, errors)
        assert list(record) == names + ["_last_modified_time", "_file"]
        for name, written in zip(names, row):
            assert_exact(written, record[name], declared_column(schema["properties"][name]), f"row {index} {name}: {written!r} -> {record[name]!r}")
