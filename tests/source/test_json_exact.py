"""JSON values arrive exactly as they were: nested keys beyond the sample, integers of any size,
text that looks like a date, and bounded memory whatever the line lengths (issue 13)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from connector.source import FileBatch, Source
from connector.source.errors import BadDataError
from connector.records import record_lines
from tests.source.helpers import write_local

CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER


def body(rows: list[dict], kind: str) -> bytes:
    """``rows`` as JSON Lines or as one top-level array (stdlib encoder: integers of any size)."""
    if kind == "lines":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    return json.dumps(rows, indent=1).encode()


def without_nulls(value):
    """``value`` without null object members: a key a row lacks reads back as null, as a column does."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def records(source: Source, stream: str) -> tuple[list[dict], list]:
    """(each RECORD's data, decoded exactly by the stdlib, validated against the discovered
    json_schema; the FileDone events)."""
    schema = next(s for s in source.discover() if s["name"] == stream)["json_schema"]
    validator = jsonschema.Draft7Validator(schema, format_checker=CHECKER)
    out, done = [], []
    for event in source.read(stream):
        if not isinstance(event, FileBatch):
            done.append(event)
            continue
        for line in record_lines(stream, event.batch, 1).splitlines():
            data = json.loads(line)["record"]["data"]
            validator.validate(data)
            out.append({k: v for k, v in data.items() if not k.startswith("_")})
    return out, done


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_nested_keys_beyond_the_sample_are_kept(tmp_path, kind):
    rows = [{"id": i, "s": {"a": i}, "l": [{"a": i}]} for i in range(3)]
    rows.append({"id": 3, "s": {"a": 3, "new": {"x": [1, 2]}, "t": "2024-01-01T00:00:00Z"},
                 "l": [{"a": 3, "z": "q"}, {"a": 4, "deep": {"k": True}}]})
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(rows, kind)})
    src = Source({"root_url": str(tmp_path), "schema_sample_rows": 2})
    got, done = records(src, "s")
    assert without_nulls(got) == rows and done[0].type_conflicts == ()


def test_nested_keys_of_a_file_outside_the_sample_are_kept(tmp_path):
    # The schema samples the oldest file and the two newest: the second one is not sampled.
    from datetime import datetime, timedelta

    start = datetime(2024, 1, 1)
    files = {0: [{"s": {"a": 1}}], 1: [{"s": {"a": 2, "b": {"c": 3}}}, {"s": {"a": 5, "b": None}}],
             2: [{"s": {"a": 3}}], 3: [{"s": {"a": 4}}]}
    for i, rows in files.items():
        write_local(tmp_path, {f"s/{i}.jsonl": body(rows, "lines")}, mtime=start + timedelta(minutes=i))
    got, _ = records(Source({"root_url": str(tmp_path)}), "s")
    assert without_nulls(got) == without_nulls([r for i in sorted(files) for r in files[i]])


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_an_empty_object_in_the_sample_stays_an_object(tmp_path, kind):
    # {} was typed as text: every later object of the column came out as its JSON text.
    rows = [{"o": {}}, {"o": None}, {"o": {"a": 1, "b": {"c": "d"}}}]
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(rows, kind)})
    src = Source({"root_url": str(tmp_path), "schema_sample_rows": 2})
    got, done = records(src, "s")
    assert without_nulls(got) == rows[:1] + [{}] + rows[2:] and done[0].type_conflicts == ()


def test_sync_keeps_nested_keys_beyond_the_sample(tmp_path):
    from connector.store import Store

    rows = [{"s": {"a": 1}}, {"s": {"a": 2, "b": {"c": [{"d": None}, {"d": 1.5}]}}}]
    write_local(tmp_path / "data", {"s/a.jsonl": body(rows, "lines")})
    (tmp_path / "src.json").write_text(json.dumps({"root_url": str(tmp_path / "data"), "schema_sample_rows": 1}))
    (tmp_path / "dst.json").write_text(json.dumps({"root_url": str(tmp_path / "store")}))
    out = subprocess.run([sys.executable, "-m", "connector.cli", "sync", "--config", str(tmp_path / "src.json"),
                          "--destination", str(tmp_path / "dst.json"), "--state", str(tmp_path / "state.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("s").column("s").to_pylist() == [{"a": 1, "b": None}, rows[1]["s"]]


INTEGERS = [{"i": 2**63}, {"i": 2**64 + 1}, {"i": -(2**63) - 1}, {"i": 10**40 + 1}, {"i": -(10**70) - 7}, {"i": 0},
            {"h": 10**80 + 1}, {"h": -3},
            {"m": 1.5}, {"m": 2**53 + 1}, {"w": 2**53 + 1}, {"w": -(2**62) - 3},
            {"n": {"big": 2**70 + 1, "l": [2**64, 1]}}]


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_integers_of_any_size_are_exact(tmp_path, kind):
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(INTEGERS, kind)})
    src = Source({"root_url": str(tmp_path)})
    props = src.discover()[0]["json_schema"]["properties"]
    assert props["w"]["type"] == ["null", "integer", "string"]  # sampled: a later misfit is kept as text
    got, done = records(src, "s")
    assert props["i"]["type"] == ["null", "number", "string"] and props["h"]["type"] == props["m"]["type"] == ["null", "string"]
    # Past 76 digits, and beside a double, an integer is kept as its exact text.
    text = {"h", "m"}
    expected = [{k: (str(r[k]) if k in text else r[k]) if k in r else None for k in ("i", "h", "m", "w", "n")}
                for r in INTEGERS]
    assert [{k: g.get(k) for k in ("i", "h", "m", "w", "n")} for g in got] == expected
    assert done[0].type_conflicts == ()


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_integers_beyond_the_sample_are_exact_text(tmp_path, kind):
    rows = [{"f": 1.5, "i": 1}, {"f": 2.5, "i": 2}] + [{"f": 0.5, "i": 3}] * 3 + [{"f": 2**53 + 1, "i": 2**64 + 3}]
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(rows, kind)})
    src = Source({"root_url": str(tmp_path), "schema_sample_rows": 2})
    got, done = [], []
    for event in src.read("s"):
        (got.extend(event.batch.to_pylist()) if isinstance(event, FileBatch) else done.append(event))
    # Values the sampled type cannot hold are kept as their JSON text and reported, never rounded.
    assert (got[-1]["f"], got[-1]["i"]) == (str(2**53 + 1), str(2**64 + 3))
    assert done[0].type_conflicts == ("f", "i")


@pytest.mark.parametrize(("value", "message"), [(b"NaN", "NaN is not a JSON value"),
                                                (b"-Infinity", "-Infinity is not a JSON value"),
                                                (b"1e400", "number 1e400 is too large for a double")])
def test_non_finite_numbers_in_an_array_are_errors_not_null(tmp_path, value, message):
    write_local(tmp_path, {"s/a.json": b'[{"x": 1.5}, {"x": %s}]' % value})
    with pytest.raises(BadDataError, match=message):
        list(Source({"root_url": str(tmp_path)}).read("s"))


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_a_fraction_where_the_sample_saw_integers_is_kept(tmp_path, kind):
    """pyarrow builds 0.5 as 0 in an int64 column (and true as 1.0 in a double one): a fraction
    after an integer sample, at the top level or nested, came out truncated (issue 13's round trip)."""
    rows = [{"i": 9007199254740990, "o": {"a": 1, "l": [1]}, "f": 0.5},
            {"i": 0.5, "o": {"a": 2.5, "l": [1, 0.25]}, "f": 1.5},
            {"i": 3, "o": {"a": 3, "l": [2]}, "f": None}]
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(rows, kind)})
    got, done = records(Source({"root_url": str(tmp_path), "schema_sample_rows": 1}), "s")
    assert [r["i"] for r in got] == ["9007199254740990", "0.5", "3"]  # the block's column kept as text
    assert [r["o"] for r in got] == ['{"a":1,"l":[1]}', '{"a":2.5,"l":[1,0.25]}', '{"a":3,"l":[2]}']
    assert set(done[0].type_conflicts) == {"i", "o"}


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_text_that_looks_like_a_date_is_kept_as_written(tmp_path, kind):
    # The sample makes "d" text; a later block of dates only must not come out re-formatted, and a
    # key first seen after the sample keeps its text too.
    rows = [{"d": "hello"}] + [{"d": "2024-01-02", "e": "2024-01-02T03:04:05+02:00"}] * 3
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(rows, kind)})
    src = Source({"root_url": str(tmp_path), "schema_sample_rows": 1})
    got = [r for e in src.read("s") if isinstance(e, FileBatch) for r in e.batch.to_pylist()]
    assert [(r["d"], r["e"]) for r in got] == [(r["d"], r.get("e")) for r in rows]


@pytest.mark.parametrize("kind", ["lines", "array"])
def test_timestamps_finer_than_microseconds_stay_text(tmp_path, kind):
    rows = [{"t": "2024-01-01T00:00:00.123456789Z"}, {"t": "2024-01-01T00:00:00.5Z"}]
    write_local(tmp_path, {f"s/a.{'jsonl' if kind == 'lines' else 'json'}": body(rows, kind)})
    src = Source({"root_url": str(tmp_path)})
    assert src.discover()[0]["json_schema"]["properties"]["t"] == {"type": ["null", "string"]}
    got, done = records(src, "s")
    assert got == rows and done[0].type_conflicts == ()


def test_fast_and_line_by_line_paths_agree(tmp_path):
    """A block Arrow reads and the same rows in a block it rejects (one bad line, skipped) give the
    same values and types."""
    rows = [{"a": 1, "s": {"x": 1.5, "t": "2024-01-01T00:00:00Z"}, "new": {"k": [1, 2]}, "d": "2024-01-01"}] * 3
    good = body(rows, "lines")
    write_local(tmp_path, {"s/a.jsonl": body([{"a": 0, "s": {"x": 0.5, "t": "2024-01-01T00:00:00Z"}}], "lines")
                           + good + b"not json\n" + good})
    src = Source({"root_url": str(tmp_path), "schema_sample_rows": 1, "on_bad_record": "skip"})
    from connector.source import formats
    from connector.source.formats import FileStats, FormatOptions

    ref = src.files("s")[0]
    schema = src._data_schema("s", [ref])
    fast = list(formats.get("json").batches(src.fs, ref, schema, FormatOptions(on_bad_record="skip", block_size=len(good)), FileStats()))
    assert len(fast) >= 2
    values = [r for b in fast for r in b.to_pylist()]
    assert values[1:4] == values[4:7]
    types = {b.schema.field("s").type for b in fast if b.num_rows == 3}
    assert len(types) == 1


def test_lines_longer_than_a_mebibyte_are_read_in_bounded_memory(tmp_path):
    """A JSON Lines file whose lines are over 1 MiB was taken for one document and parsed whole
    (peak RSS about 13x the file). Discover and read must stay bounded by the block size."""
    line = b'{"id": %d, "text": "' + b"x" * (3 << 19) + b'", "n": {"a": [1, 2, 3]}}\n'
    data = b"".join(line % i for i in range(32))  # 48 MiB, every line 1.5 MiB
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "big.jsonl").write_bytes(data)
    code = f"""
import resource, sys
from connector.source import FileBatch, Source
from connector.records import record_lines
src = Source({{"root_url": {str(tmp_path)!r}}})
assert list(src.discover()[0]["json_schema"]["properties"])[:3] == ["id", "text", "n"]
rows = 0
for event in src.read("s"):
    if isinstance(event, FileBatch):
        rows += event.batch.num_rows
        record_lines("s", event.batch, 1)
# ru_maxrss keeps the parent's peak across fork+exec on Linux; VmHWM is this process's own.
status = open("/proc/self/status").read() if sys.platform == "linux" else ""
hwm = [int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")]
print(rows, (hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    rows, peak_mib = map(int, out.stdout.split())
    assert rows == 32
    # Parsed whole, the 48 MiB file took 409 MiB at peak; in blocks of lines, 150 (80 of them imports).
    assert peak_mib < 250, f"peak RSS {peak_mib} MiB"
