"""Round trip of every type the readers produce: files (Parquet of any Arrow type, JSON Lines, JSON
arrays, single JSON objects) -> discover's json_schema + the RECORDs a read emits. Every RECORD
must validate against the schema of its stream, and carry each value exactly (issue 13)."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.source import FileBatch, Source
from connector.source.formats.json import _ISO_TIME
from connector.source.read import FILE_COLUMNS
from connector.records import record_lines

# Draft 7's "time" is RFC 3339's full-time, which needs an offset; an Arrow time is a time of day
# without one (Airbyte's time_without_timezone), checked by TIME below instead.
_FORMATS = jsonschema.FormatChecker([f for f in jsonschema.Draft7Validator.FORMAT_CHECKER.checkers if f != "time"])
TIME = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?$")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])


def emitted(root: Path, stream: str = "s", **config) -> tuple[dict, list[bytes]]:
    """(the stream's discovered json_schema, every RECORD line a read emits for it)."""
    src = Source({"root_url": str(root), **config})
    schema = next(s for s in src.discover() if s["name"] == stream)["json_schema"]
    lines = [line for event in src.read(stream, sync_mode="full_refresh") if isinstance(event, FileBatch)
             for line in record_lines(stream, event.batch, 1, FILE_COLUMNS).splitlines()]
    return schema, lines


def validated(schema: dict, lines: list[bytes]) -> list[dict]:
    """Each RECORD's data, validated against ``schema``; decimals exact (``Decimal``)."""
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    out = []
    for line in lines:
        validator.validate(json.loads(line)["record"]["data"])
        data = json.loads(line, parse_float=Decimal)["record"]["data"]
        _check_times(schema, data)
        out.append({k: v for k, v in data.items() if k not in FILE_COLUMNS})
    return out


def _check_times(schema: dict, value) -> None:
    if value is None:
        return
    if schema.get("format") == "time":
        assert TIME.match(value), value
    for key, sub in schema.get("properties", {}).items():
        _check_times(sub, value.get(key))
    if "items" in schema:
        for item in value:
            _check_times(schema["items"], item)
    if isinstance(schema.get("additionalProperties"), dict):
        for item in value.values():
            _check_times(schema["additionalProperties"], item)


# -- Parquet: any Arrow type ------------------------------------------------------------------------

def _ints(lo: int, hi: int):
    return st.integers(lo, hi)


_UNIT_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_FIRST_SECOND, _LAST_SECOND = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31


def _timestamp_values(unit: str):
    if unit == "ns":
        return _ints(-(2**63) + 1, 2**63 - 1)
    return _ints(_FIRST_SECOND * _UNIT_PER_SECOND[unit], _LAST_SECOND * _UNIT_PER_SECOND[unit])


_DAYS = (-719162, 2932896)  # 0001-01-01 .. 9999-12-31
SCALARS: list[tuple[pa.DataType, st.SearchStrategy]] = [
    *[(t, _ints(-(2 ** (t.bit_width - 1)), 2 ** (t.bit_width - 1) - 1))
      for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64())],
    *[(t, _ints(0, 2**t.bit_width - 1)) for t in (pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64())],
    (pa.float32(), st.floats(width=32)),
    (pa.float64(), st.floats()),
    (pa.decimal128(20, 4), st.decimals(places=4, min_value=-(10**16) + 1, max_value=10**16 - 1)),
    (pa.decimal128(38, 0), st.decimals(places=0, min_value=-(10**38) + 1, max_value=10**38 - 1)),
    (pa.decimal256(60, 10), st.decimals(places=10, min_value=-(10**50) + 1, max_value=10**50 - 1)),
    (pa.date32(), _ints(*_DAYS)),
    (pa.date64(), _ints(*_DAYS).map(lambda d: d * 86_400_000)),
    (pa.time32("s"), _ints(0, 86399)), (pa.time32("ms"), _ints(0, 86_399_999)),
    (pa.time64("us"), _ints(0, 86_399_999_999)), (pa.time64("ns"), _ints(0, 86_399_999_999_999)),
    *[(pa.timestamp(u, tz), _timestamp_values(u)) for u in ("s", "ms", "us", "ns") for tz in (None, "UTC", "+05:30")],
    *[(pa.duration(u), _ints(-(2**63) + 1, 2**63 - 1)) for u in ("s", "ms", "us", "ns")],
    (pa.binary(), st.binary(max_size=12)), (pa.large_binary(), st.binary(max_size=12)),
    (pa.binary(3), st.binary(min_size=3, max_size=3)),
    (pa.string(), st.text(max_size=12)), (pa.large_string(), st.text(max_size=12)),
    (pa.bool_(), st.booleans()),
    (pa.null(), st.none()),
]
_MAP_KEYS = [(pa.string(), st.text(max_size=6)), (pa.int32(), _ints(-(2**31), 2**31 - 1))]


def _nullable(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), values)


def _nested(children: st.SearchStrategy) -> st.SearchStrategy:
    """Containers of (type, value strategy) pairs."""
    def list_of(child, kind):
        t, values = child
        if kind == "fixed":
            return pa.list_(t, 2), st.lists(_nullable(values), min_size=2, max_size=2)
        return (pa.large_list(t) if kind == "large" else pa.list_(t)), st.lists(_nullable(values), max_size=3)

    def struct_of(kids):
        names = [f"f{i}é" for i in range(len(kids))]
        return (pa.struct([pa.field(n, t) for n, (t, _) in zip(names, kids)]),
                st.fixed_dictionaries({n: _nullable(v) for n, (_, v) in zip(names, kids)}))

    def map_of(key, item):
        (kt, kv), (it, iv) = key, item
        return pa.map_(kt, it), st.lists(st.tuples(kv, _nullable(iv)), max_size=3)

    return st.one_of(
        st.builds(list_of, children, st.sampled_from(["list", "large", "fixed"])),
        st.builds(struct_of, st.lists(children, min_size=1, max_size=3)),
        st.builds(map_of, st.sampled_from(_MAP_KEYS), children),
    )


ARROW_TYPES = st.recursive(st.sampled_from(SCALARS), _nested, max_leaves=4)


@st.composite
def arrow_tables(draw) -> pa.Table:
    rows = draw(st.integers(1, 6))
    columns = {}
    for i, (t, values) in enumerate(draw(st.lists(ARROW_TYPES, min_size=1, max_size=5))):
        columns[f"c{i}"] = pa.array(draw(st.lists(_nullable(values), min_size=rows, max_size=rows)), t)
    # Types pa.array does not build from Python values: half floats, dictionaries.
    halves = draw(st.lists(st.one_of(st.none(), st.floats(width=16)), min_size=rows, max_size=rows))
    columns["half"] = pa.array(np.array([0 if h is None else h for h in halves], np.float16),
                               mask=np.array([h is None for h in halves]))
    words = draw(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "ü"])), min_size=rows, max_size=rows))
    columns["dict"] = pa.array(words, pa.string()).dictionary_encode()
    return pa.table(columns)


def check(got, value, t: pa.DataType) -> None:
    """``got`` (from a RECORD) is exactly ``value`` (as given to ``pa.array`` for type ``t``)."""
    if value is None:
        assert got is None
        return
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        assert type(got) is int and got == value
    elif pa.types.is_floating(t):
        if not math.isfinite(value):
            assert got is None  # JSON has no NaN or infinity: null, as the schema's "null" allows
        else:
            width = {16: np.float16, 32: np.float32, 64: np.float64}[t.bit_width]
            assert width(float(got)) == width(value)
    elif pa.types.is_decimal(t):
        assert isinstance(got, (int, Decimal)) and Decimal(got) == value
    elif pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        assert got == value
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        assert base64.b64decode(got) == value
    elif pa.types.is_date(t):
        days = value // 86_400_000 if t == pa.date64() else value
        assert got == (date(1970, 1, 1) + timedelta(days=days)).isoformat()
    elif pa.types.is_time(t):
        per = _UNIT_PER_SECOND[t.unit]
        seconds, fraction = divmod(value, per)
        text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        assert got == (text if per == 1 else f"{text}.{fraction:0{len(str(per)) - 1}d}")
    elif pa.types.is_timestamp(t):
        assert _instant(got, t.unit) == value, (got, value)
    elif pa.types.is_duration(t):
        m = re.fullmatch(r"(-?)PT(\d+)(?:\.(\d+))?S", got)
        assert m, got
        per = _UNIT_PER_SECOND[t.unit]
        amount = int(m[2]) * per + (int(m[3].ljust(len(str(per)) - 1, "0")) if m[3] else 0)
        assert (-amount if m[1] else amount) == value
    elif pa.types.is_map(t):
        keys = [k if isinstance(k, str) else json.dumps(k) for k, _ in value]
        assert list(got) == list(dict.fromkeys(keys))
        last = dict(zip(keys, (v for _, v in value)))
        for k, v in last.items():
            check(got[k], v, t.item_type)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        assert len(got) == len(value)
        for g, v in zip(got, value):
            check(g, v, t.value_type)
    elif pa.types.is_struct(t):
        assert list(got) == [f.name for f in t]
        for f in t:
            check(got[f.name], value[f.name], f.type)
    elif pa.types.is_null(t):
        assert got is None
    else:
        raise AssertionError(f"no check for {t}")


def _instant(text: str, unit: str) -> int:
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|\+00:00)", text)
    assert m, text
    days = (date(int(m[1]), int(m[2]), int(m[3])) - date(1970, 1, 1)).days
    seconds = days * 86400 + int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6])
    digits = len(str(_UNIT_PER_SECOND[unit])) - 1
    fraction = (m[7] or "").ljust(digits, "0")
    assert fraction[digits:].strip("0") == ""  # orjson writes milliseconds as microseconds
    fraction = fraction[:digits]
    return seconds * _UNIT_PER_SECOND[unit] + (int(fraction) if fraction else 0)


@SETTINGS
@given(st.data())
def test_parquet_of_any_arrow_type_emits_records_its_schema_declares(data):
    table = data.draw(arrow_tables())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s").mkdir()
        pq.write_table(table, Path(tmp) / "s" / "t.parquet")
        table = pq.read_table(Path(tmp) / "s" / "t.parquet")  # Parquet stores seconds as milliseconds
        schema, lines = emitted(Path(tmp))
    records = validated(schema, lines)
    assert len(records) == table.num_rows
    for name, column in zip(table.column_names, table.columns):
        t = column.type
        values = _storage_values(column.combine_chunks())
        for record, value in zip(records, values):
            check(record[name], value, t)


def _storage_values(array: pa.Array) -> list:
    """The values as the strategies drew them: integers for temporal types (no pandas, no ns loss)."""
    t = array.type
    if pa.types.is_dictionary(t):
        return array.dictionary_decode().to_pylist()
    if pa.types.is_timestamp(t) or pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_date(t):
        return array.view({32: pa.int32(), 64: pa.int64()}[t.bit_width]).to_pylist()
    if pa.types.is_floating(t):
        return [None if v is None else float(v) for v in array.to_numpy(zero_copy_only=False).tolist()] \
            if array.null_count == 0 else [None if not ok else float(v) for v, ok in
                                           zip(array.fill_null(0).to_numpy().tolist(), array.is_valid().to_pylist())]
    if pa.types.is_struct(t):
        kids = [_storage_values(array.field(i)) for i in range(t.num_fields)]
        valid = array.is_valid().to_pylist()
        return [{f.name: k[i] for f, k in zip(t, kids)} if valid[i] else None for i in range(len(array))]
    if pa.types.is_map(t):
        keys, items = _storage_values(array.keys), _storage_values(array.items)
        return _split(array, list(zip(keys, items)))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _split(array, _storage_values(array.values))
    return array.to_pylist()


def _split(array: pa.Array, flat: list) -> list:
    if pa.types.is_fixed_size_list(array.type):
        n = array.type.list_size
        offsets = [(array.offset + i) * n for i in range(len(array) + 1)]
    else:
        offsets = array.offsets.to_pylist()
    valid = array.is_valid().to_pylist()
    return [flat[a:b] if ok else None for a, b, ok in zip(offsets, offsets[1:], valid)]


# -- JSON Lines, JSON arrays, single objects ------------------------------------------------------

_TEXT = st.text(max_size=8).filter(lambda s: not _ISO_TIME.match(s))
_BIG = st.one_of(st.integers(-(2**70), 2**70), st.integers(-(10**90), 10**90))
_SCALAR = st.one_of(st.none(), st.booleans(), _BIG, st.floats(allow_nan=False, allow_infinity=False), _TEXT)
KINDS = {
    "int": _BIG,
    "num": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60)),
    "text": _TEXT,
    "bool": st.booleans(),
    "object": st.fixed_dictionaries({"a": _BIG}, optional={"b": _TEXT, "c": st.lists(_BIG, max_size=3),
                                                           "é": st.fixed_dictionaries({"x": st.booleans()})}),
    "objects": st.lists(st.dictionaries(st.sampled_from(["x", "y", "ü"]), _SCALAR, max_size=3), max_size=3),
    "any": st.recursive(_SCALAR, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                        st.dictionaries(_TEXT, kids, max_size=3)), max_leaves=5),
}
_KEYS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=4).filter(
    lambda k: not k.startswith("_"))


@st.composite
def json_rows(draw) -> list[dict]:
    kinds = draw(st.dictionaries(_KEYS, st.sampled_from(sorted(KINDS)), min_size=1, max_size=5))
    row = st.fixed_dictionaries({}, optional={k: st.one_of(st.none(), KINDS[kind]) for k, kind in kinds.items()})
    return draw(st.lists(row, min_size=1, max_size=8))


def same(got, value, schema: dict) -> None:
    """``got`` is ``value`` as ``schema`` types it: itself, or its exact JSON text where the schema
    says text (its samples disagreed, or an integer too long for a decimal)."""
    if value is None:
        assert got is None
        return
    types = schema.get("type", [])
    if not isinstance(value, str) and (isinstance(got, str) or [t for t in types if t != "null"] == ["string"]):
        # Text: the samples disagreed (the column is declared text), or this value did not fit its
        # sampled type (a top-level column of a sampled format admits text for that).
        assert isinstance(got, str) and "string" in types
        assert json.loads(got, parse_float=Decimal) == _exact(value)
    elif isinstance(value, dict):
        assert isinstance(got, dict)
        assert all(got[k] is None for k in got if k not in value)
        for k, v in value.items():
            same(got[k], v, schema.get("properties", {}).get(k, {}))
    elif isinstance(value, list):
        assert isinstance(got, list) and len(got) == len(value)
        for g, v in zip(got, value):
            same(g, v, schema.get("items", {}))
    elif isinstance(value, float) or (isinstance(value, int) and "number" in types and not isinstance(value, bool)):
        # A double column: an integer in it reads back as the same number (1e+20 for 10**20)
        assert not isinstance(got, bool) and (Decimal(got) == Decimal(value) or float(got) == value)
    else:
        assert got == value and type(got) is type(value)


def _exact(value):
    """``value`` with its floats as the Decimals of their shortest text (how a JSON text reads back)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


@SETTINGS
@given(json_rows(), st.sampled_from(["lines", "array", "object"]))
def test_json_of_any_shape_emits_records_its_schema_declares(rows, kind):
    if kind == "object":
        rows = rows[:1]
        body = json.dumps(rows[0], indent=2, ensure_ascii=False).encode()
    elif kind == "array":
        body = json.dumps(rows, ensure_ascii=False).encode()
    else:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s").mkdir()
        (Path(tmp) / "s" / "f.json").write_bytes(body)
        schema, lines = emitted(Path(tmp), schema_sample_rows=len(rows))
    records = validated(schema, lines)
    assert len(records) == len(rows)
    for record, row in zip(records, rows):
        assert all(record[k] is None for k in record if k not in row)
        for k, v in row.items():
            same(record[k], v, schema["properties"][k])


# -- the real des-source --------------------------------------------------------------------------

def test_des_source_discover_and_read_emit_records_their_schema_declares(tmp_path):
    rows = [{"big": 2**64 + 1, "n": {"a": 1, "l": [{"x": "é"}]}, "f": 0.1},
            {"big": -(10**30), "n": {"a": 2**62, "l": [{"x": "😀", "new": [1, {"k": None}]}]}, "f": None}]
    (tmp_path / "data" / "j").mkdir(parents=True)
    (tmp_path / "data" / "j" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    (tmp_path / "data" / "p").mkdir()
    pq.write_table(pa.table({
        "m": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
        "d": pa.array([{"x": Decimal("1.50")}, {"x": None}], pa.struct([("x", pa.decimal128(5, 2))])),
        "t": pa.array([[1], [2**62]], pa.list_(pa.timestamp("ns"))),
        "u": pa.array([2**64 - 1, None], pa.uint64()),
    }), tmp_path / "data" / "p" / "a.parquet")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"root_url": str(tmp_path / "data"), "schema_sample_rows": 1}))

    def run(*args: str) -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", *args, "--config", str(config)],
                             capture_output=True, timeout=120, cwd=Path(__file__).parents[2])
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    streams = next(m for m in run("discover") if m["type"] == "CATALOG")["catalog"]["streams"]
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"streams": [{"stream": s, "sync_mode": "full_refresh",
                                                "destination_sync_mode": "overwrite"} for s in streams]}))
    records = [m["record"] for m in run("read", "--catalog", str(catalog)) if m["type"] == "RECORD"]
    schemas = {s["name"]: s["json_schema"] for s in streams}
    for record in records:
        jsonschema.Draft7Validator(schemas[record["stream"]], format_checker=_FORMATS).validate(record["data"])
    data = {s: [r["data"] for r in records if r["stream"] == s] for s in schemas}
    assert [r["big"] for r in data["j"]] == [2**64 + 1, -(10**30)]
    # A key beyond the sample is kept; its list mixes numbers and objects, so its items are text.
    assert data["j"][1]["n"] == {"a": 2**62, "l": [{"x": "😀", "new": ["1", '{"k":null}']}]}
    assert [r["m"] for r in data["p"]] == [{"k": 1}, None] and data["p"][0]["d"] == {"x": 1.5}
    assert data["p"][1]["t"] == ["2116-02-20T23:53:38.427387904Z"] and data["p"][0]["u"] == 2**64 - 1


def test_parquet_files_that_disagree_on_a_type_emit_what_the_merged_schema_declares(tmp_path):
    (tmp_path / "s").mkdir()
    pq.write_table(pa.table({"x": pa.array([1, None]), "d": pa.array([1, 2], pa.date32()),
                             "n": pa.array([5, 6], pa.int64())}), tmp_path / "s" / "a.parquet")
    pq.write_table(pa.table({"x": pa.array(["a", None]), "d": pa.array(["z", None]),
                             "n": pa.array([0.5, None])}), tmp_path / "s" / "b.parquet")
    schema, lines = emitted(tmp_path)
    assert schema["properties"]["x"]["type"] == schema["properties"]["d"]["type"] == ["null", "string"]
    records = validated(schema, lines)  # an int64 where text is declared broke the schema
    assert [(r["x"], r["d"], r["n"]) for r in records] == [
        ("1", "1970-01-02", 5), (None, "1970-01-03", 6), ("a", "z", Decimal("0.5")), (None, None, None)]


def test_nested_values_encode_alike_in_any_slice():
    """Batches are slices of larger ones: a nested value's text must not depend on where it sits."""
    from connector.records import json_texts

    column = pa.array([{"m": [("a", 1)], "d": Decimal("1.5"), "f": [1, 2]}, None,
                       {"m": None, "d": None, "f": None}, {"m": [("b", None), ("b", 2)], "d": Decimal("-2"), "f": [3, None]}],
                      pa.struct([("m", pa.map_(pa.string(), pa.int64())), ("d", pa.decimal128(5, 1)),
                                 ("f", pa.list_(pa.int64(), 2))]))
    whole = json_texts(column).to_pylist()
    assert whole[3] == '{"m":{"b":null,"b":2},"d":-2.0,"f":[3,null]}'
    for lo in range(len(column)):
        for hi in range(lo + 1, len(column) + 1):
            assert json_texts(column.slice(lo, hi - lo)).to_pylist() == whole[lo:hi]


def test_parquet_files_that_disagree_on_a_nested_type_emit_what_the_merged_schema_declares(tmp_path):
    (tmp_path / "s").mkdir()
    pq.write_table(pa.table({"o": pa.array([{"a": 1, "b": 2}, None]), "l": pa.array([[{"a": 1}, None], None])}),
                   tmp_path / "s" / "a.parquet")
    pq.write_table(pa.table({"o": pa.array([{"a": "x", "b": 3}]), "l": pa.array([[{"a": "y"}]])}),
                   tmp_path / "s" / "b.parquet")
    schema, lines = emitted(tmp_path)
    assert schema["properties"]["o"]["properties"]["a"]["type"] == ["null", "string"]
    records = validated(schema, lines)  # an int64 where the merged struct declares text broke it
    assert [(r["o"], r["l"]) for r in records] == [({"a": "1", "b": 2}, [{"a": "1"}, None]), (None, None),
                                                   ({"a": "x", "b": 3}, [{"a": "y"}])]
