"""The column decoder of Avro blocks (formats/avro_columns.py) against fastavro's record path: for
generated schemas over every Avro type and generated data, the same batches, the same RECORD
lines byte for byte, every RECORD valid against its stream's schema; on data the decoder does not
vouch for (bad bytes, truncation), the same values or the same error as before."""

from __future__ import annotations

import decimal
import io
import os
import string
import uuid
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from unittest import mock

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connector.records import record_lines
from connector.source import BadDataError, Source
from connector.source.formats import FileStats, FormatOptions, avro, avro_columns
from connector.source.listing import FileRef
from tests.source.formats_helpers import validated_records

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
CODECS = ["null", "deflate", "snappy", "zstandard", "bzip2", "xz", "lz4"]


def _decimal_type(draw, base: dict) -> tuple[dict, st.SearchStrategy]:
    precision = draw(st.integers(1, 40))
    scale = draw(st.integers(0, precision))
    unscaled = st.integers(-(10 ** precision) + 1, 10 ** precision - 1)
    values = unscaled.map(lambda u, s=scale: Decimal(u).scaleb(-s, decimal.Context(prec=100)))
    if base["type"] == "fixed":
        base["size"] = max(1, (precision * 3322 // 1000 + 8) // 8 + 1)
    return {**base, "logicalType": "decimal", "precision": precision, "scale": scale}, values


@st.composite
def leaf(draw, name: str) -> tuple[object, st.SearchStrategy]:
    """An Avro type and a strategy of its values (as fastavro's writer takes them)."""
    kind = draw(st.sampled_from([
        "boolean", "int", "long", "float", "double", "bytes", "string", "enum", "fixed", "decimal-bytes",
        "decimal-fixed", "date", "time-millis", "time-micros", "timestamp-millis", "timestamp-micros",
        "timestamp-nanos", "local-timestamp-millis", "uuid", "record", "array", "map", "multi-union"]))
    text = st.text(max_size=12)
    if kind == "boolean":
        return "boolean", st.booleans()
    if kind == "int":
        return "int", st.integers(-2**31, 2**31 - 1)
    if kind == "long":
        return "long", st.integers(-2**63, 2**63 - 1)
    if kind == "float":
        return "float", st.floats(width=32)
    if kind == "double":
        return "double", st.floats()
    if kind == "bytes":
        return "bytes", st.binary(max_size=80)
    if kind == "string":
        return "string", st.text(max_size=80)
    if kind == "enum":
        symbols = draw(st.lists(st.text(string.ascii_letters, min_size=1, max_size=4), min_size=1, max_size=5,
                                unique=True))
        return {"type": "enum", "name": f"E{name}", "symbols": symbols}, st.sampled_from(symbols)
    if kind == "fixed":
        size = draw(st.integers(0, 20))
        return {"type": "fixed", "name": f"F{name}", "size": size}, st.binary(min_size=size, max_size=size)
    if kind == "decimal-bytes":
        return _decimal_type(draw, {"type": "bytes"})
    if kind == "decimal-fixed":
        return _decimal_type(draw, {"type": "fixed", "name": f"D{name}"})
    if kind == "date":
        return {"type": "int", "logicalType": "date"}, st.dates()
    if kind == "time-millis":
        return ({"type": "int", "logicalType": "time-millis"},
                st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)))
    if kind == "time-micros":
        return {"type": "long", "logicalType": "time-micros"}, st.times()
    if kind in ("timestamp-millis", "timestamp-micros"):
        values = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                              timezones=st.just(timezone.utc))
        if kind == "timestamp-millis":
            values = values.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
        return {"type": "long", "logicalType": kind}, values
    if kind == "timestamp-nanos":
        return {"type": "long", "logicalType": kind}, st.integers(-2**63, 2**63 - 1)
    if kind == "local-timestamp-millis":
        return {"type": "long", "logicalType": kind}, st.datetimes(min_value=datetime(1, 1, 1)).map(
            lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
    if kind == "uuid":
        return {"type": "string", "logicalType": "uuid"}, st.uuids()
    if kind == "record":
        return ({"type": "record", "name": f"R{name}", "fields": [{"name": "a", "type": "long"},
                                                                   {"name": "b", "type": ["null", "string"]}]},
                st.fixed_dictionaries({"a": st.integers(-5, 5), "b": st.none() | text}))
    if kind == "array":
        return {"type": "array", "items": "long"}, st.lists(st.integers(-2**40, 2**40), max_size=4)
    if kind == "map":
        return {"type": "map", "values": "double"}, st.dictionaries(text, st.floats(allow_nan=False), max_size=3)
    return ["null", "long", "string"], st.none() | st.integers(-2**63, 2**63 - 1) | text


@st.composite
def avro_files(draw) -> tuple[dict, list[dict], dict]:
    """(schema, rows, writer options): a record of 1-6 fields, each maybe a nullable union."""
    fields, values = [], {}
    for i in range(draw(st.integers(1, 6))):
        t, strategy = draw(leaf(str(i)))
        nullable = draw(st.sampled_from(["no", "null first", "null last"]))
        if nullable != "no" and not isinstance(t, list):
            t = ["null", t] if nullable == "null first" else [t, "null"]
            strategy = st.none() | strategy
        fields.append({"name": f"c{i}", "type": t})
        values[f"c{i}"] = strategy
    rows = draw(st.lists(st.fixed_dictionaries(values), max_size=120))
    options = {"codec": draw(st.sampled_from(CODECS)), "sync_interval": draw(st.sampled_from([50, 300, 2000, 16000]))}
    return {"type": "record", "name": "Row", "fields": fields}, rows, options


def write(path: Path, schema: dict, rows: list[dict], **options) -> FileRef:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), rows, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return file_ref(path)


def file_ref(path: Path) -> FileRef:
    return FileRef(path=str(path), key=f"s/{path.name}", url=f"file://{path}", size=os.path.getsize(path),
                   last_modified=datetime(2024, 1, 1, tzinfo=timezone.utc), format="avro")


def outcome(batches) -> tuple[list[pa.RecordBatch], str | None]:
    """The batches a reader yields and the error it ends with (None: it reached the end)."""
    got: list[pa.RecordBatch] = []
    try:
        for batch in batches:
            got.append(batch)
    except BadDataError as exc:
        return got, str(exc)
    return got, None


def both_paths(ref: FileRef, batch_size: int, run_rows: int, columns_only: bool = False):
    """(column path, fastavro path) outcomes of one file, with the stream schema of its header;
    ``columns_only``: fail if the first one opened fastavro's record reader."""
    import contextlib

    import fsspec

    fs = fsspec.filesystem("file")
    options = FormatOptions(batch_size=batch_size)
    schema = avro.infer(fs, ref, options, 100)
    with mock.patch.object(avro, "RUN_ROWS", run_rows), (fastavro_forbidden() if columns_only
                                                          else contextlib.nullcontext()):
        new = outcome(avro.batches(fs, ref, schema, options, FileStats()))
    old = outcome(avro._record_batches(fs, ref, schema, options, FileStats(), 0))
    return new, old


def same_values(a: pa.Array, b: pa.Array) -> bool:
    """Equal arrays, NaN equal to NaN (Arrow's equals says a NaN differs from itself)."""
    if a.equals(b):
        return True
    if not pa.types.is_floating(a.type) or a.type != b.type or a.is_null().to_pylist() != b.is_null().to_pylist():
        return False
    import numpy as np

    return np.array_equal(a.fill_null(0).to_numpy(), b.fill_null(0).to_numpy(), equal_nan=True)


def assert_same(new, old) -> None:
    (got, error), (want, want_error) = new, old
    assert error == want_error
    assert [b.num_rows for b in got] == [b.num_rows for b in want]
    for g, w in zip(got, want):
        assert g.schema == w.schema
        assert all(same_values(a, b) for a, b in zip(g.columns, w.columns)), (g.to_pylist()[:3], w.to_pylist()[:3])
        assert record_lines("s", g, 0) == record_lines("s", w, 0)  # byte-identical RECORD lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(avro_files(), st.integers(1, 70), st.sampled_from([1, 40, 1 << 17]))
def test_column_path_matches_fastavro_path(tmp_path, file, batch_size, run_rows):
    schema, rows, options = file
    folder = tmp_path / f"f{abs(hash(repr(file)))}-{batch_size}-{run_rows}"
    ref = write(folder / "s" / "x.avro", schema, rows, **options)
    parsed = fastavro.parse_schema(schema)
    flat = avro_columns.plan(parsed, avro.file_schema(parsed)[0]) is not None
    event(f"column path: {flat}")
    # Valid data of a flat schema is decoded by columns alone, never handed back to fastavro.
    assert_same(*both_paths(ref, batch_size, run_rows, columns_only=flat))
    if rows:  # and as Airbyte sees them: every RECORD valid against the discovered stream schema
        assert len(validated_records(Source({"root_url": str(folder)}), "s")) == len(rows)


FLAT = {"type": "record", "name": "Flat", "fields": [
    {"name": "id", "type": "long"}, {"name": "ok", "type": "boolean"}, {"name": "name", "type": ["null", "string"]},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}}]}


def flat_rows(n: int) -> list[dict]:
    return [{"id": i, "ok": i % 3 == 0, "name": None if i % 5 == 0 else f"n{i}", "at": EPOCH + timedelta(seconds=i),
             "price": Decimal(i).scaleb(-2), "u": uuid.UUID(int=i)} for i in range(n)]


def test_flat_schema_is_decoded_by_columns(tmp_path):
    """The bench's kind of file takes the column path (not a silent fallback), and is exact."""
    ref = write(tmp_path / "x.avro", FLAT, flat_rows(5000), codec="deflate")
    import fsspec

    fs = fsspec.filesystem("file")
    schema = avro.infer(fs, ref, FormatOptions(), 10)
    with fastavro_forbidden():
        got = list(avro.batches(fs, ref, schema, FormatOptions(batch_size=700), FileStats()))
    assert [b.num_rows for b in got] == [700] * 7 + [100]
    assert_same((got, None), both_paths(ref, 700, 1 << 17)[1])


class fastavro_forbidden:  # noqa: N801 - used as a context manager, reads as a phrase
    """Fails the test if fastavro's record reader is opened (the column path must read alone)."""

    def __enter__(self):
        self.patch = mock.patch.object(avro.fastavro, "reader", wraps=fastavro.reader)
        self.reader = self.patch.start()

    def __exit__(self, *exc):
        self.patch.stop()
        assert self.reader.call_count == 0, "fastavro's record path was used"
        return False


def test_one_big_block_is_walked_by_the_loop(tmp_path):
    ref = write(tmp_path / "x.avro", FLAT, flat_rows(3000), codec="null", sync_interval=10 ** 9)
    assert_same(*both_paths(ref, 1000, 1 << 17))


def _patched(tmp_path: Path, rows: list[dict], schema: dict, find: bytes, replace: bytes) -> FileRef:
    data = io.BytesIO()
    fastavro.writer(data, fastavro.parse_schema(schema), rows, codec="null", sync_interval=200, sync_marker=b"S" * 16)
    raw = data.getvalue()
    assert find in raw
    path = tmp_path / "bad.avro"
    path.write_bytes(raw.replace(find, replace, 1))
    return file_ref(path)


@pytest.mark.parametrize("schema, rows, find, replace", [
    # a boolean byte other than 0/1
    ({"type": "record", "name": "B", "fields": [{"name": "i", "type": "long"}, {"name": "b", "type": "boolean"}]},
     [{"i": 1000 + i, "b": True} for i in range(50)], bytes([0xD0, 0x0F, 1]), bytes([0xD0, 0x0F, 7])),
    # a union branch index past the union's end
    ({"type": "record", "name": "U", "fields": [{"name": "s", "type": ["null", "string"]}]},
     [{"s": f"v{i:03d}"} for i in range(50)], b"\x02\x08v017", b"\x04\x08v017"),
    # invalid UTF-8 in a string
    ({"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]},
     [{"s": f"v{i:03d}"} for i in range(50)], b"v020", b"v\xff20"),
    # uuid text fastavro rewrites (upper case)
    ({"type": "record", "name": "Q", "fields": [{"name": "u", "type": {"type": "string", "logicalType": "uuid"}}]},
     [{"u": uuid.UUID(int=i)} for i in range(50)], b"00000000-0000-0000-0000-00000000000a",
     b"00000000-0000-0000-0000-00000000000A"),
    # a decimal wider than its precision
    ({"type": "record", "name": "D", "fields": [
        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 0}}]},
     [{"d": Decimal(i)} for i in range(50)], b"\x02\x31", b"\x02\x7f"),
    # a time of day past midnight
    ({"type": "record", "name": "T", "fields": [{"name": "t", "type": {"type": "int", "logicalType": "time-millis"}}]},
     [{"t": time(23, 59, 59, 999000)} for i in range(50)], bytes.fromhex("feefb252"), bytes.fromhex("80f0b252")),
    # a string length running past its block
    ({"type": "record", "name": "L", "fields": [{"name": "s", "type": "string"}]},
     [{"s": f"v{i:03d}"} for i in range(50)], b"\x08v030", b"\x7ev030"),
    # a negative string length
    ({"type": "record", "name": "N", "fields": [{"name": "s", "type": "string"}]},
     [{"s": f"v{i:03d}"} for i in range(50)], b"\x08v030", b"\x07v030"),
])
def test_data_the_decoder_does_not_vouch_for_reads_as_before(tmp_path, schema, rows, find, replace):
    ref = _patched(tmp_path, rows, schema, find, replace)
    for batch_size in (7, 1000):
        assert_same(*both_paths(ref, batch_size, 1 << 17))


@pytest.mark.parametrize("cut", [1, 40, 300])
def test_truncated_file_reads_as_before(tmp_path, cut):
    ref = write(tmp_path / "x.avro", FLAT, flat_rows(400), codec="deflate", sync_interval=500)
    data = Path(ref.path).read_bytes()
    Path(ref.path).write_bytes(data[:-cut])
    new, old = both_paths(file_ref(Path(ref.path)), 64, 1 << 17)
    assert old[1] is not None and "x.avro" in old[1]
    assert_same(new, old)


def test_plan_refuses_what_it_cannot_decode():
    """Nested types, unions of several types, text conversions: fastavro's path."""
    for t in ({"type": "array", "items": "long"}, ["null", "long", "string"], "null",
              {"type": "long", "logicalType": "local-timestamp-micros"},
              {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"},
              {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2}):
        schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": t}]}
        own = avro.file_schema(fastavro.parse_schema(schema))[0]
        assert avro_columns.plan(fastavro.parse_schema(schema), own) is None, t
    assert avro_columns.plan("long", pa.schema([pa.field("value", pa.int64())])) is None


def test_column_path_does_not_import_pandas(tmp_path):
    """pyarrow imports pandas on its first conversion of Python objects (0.3-0.6 s, most of a small
    file's read): the column path builds every array from buffers, so a fresh process reading a
    flat file (enums and nullable strings included) never imports it."""
    import subprocess
    import sys

    schema = {**FLAT, "fields": [*FLAT["fields"], {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}}]}
    ref = write(tmp_path / "x.avro", schema, [{**row, "e": "ab"[i % 2]} for i, row in enumerate(flat_rows(500))])
    script = f"""
import sys, fsspec
from connector.source.formats import FileStats, FormatOptions, avro
from tests.source.test_avro_columns import file_ref
from pathlib import Path
ref = file_ref(Path({ref.path!r}))
fs = fsspec.filesystem("file")
rows = sum(b.num_rows for b in avro.batches(fs, ref, avro.infer(fs, ref, FormatOptions(), 10), FormatOptions(), FileStats()))
print(rows, "pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["500", "False"]
