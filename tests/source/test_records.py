"""The vectorised RECORD encoder produces exactly what a per-value JSON encoder would."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.source.read import FILE_COLUMNS
from connector.records import object_lines, record_chunks, record_lines


def decode(data: bytes) -> list[dict]:
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    messages = [orjson.loads(line) for line in lines[:-1]]
    assert all(m["type"] == "RECORD" and m["record"]["stream"] == 's"1' for m in messages)
    return [m["record"]["data"] for m in messages]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
                          st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
                          st.one_of(st.none(), st.booleans())), min_size=1, max_size=30))
def test_scalars_roundtrip(rows):
    batch = pa.RecordBatch.from_pydict({
        "s": pa.array([r[0] for r in rows], pa.string()),
        "i": pa.array([r[1] for r in rows], pa.int64()),
        "f": pa.array([r[2] for r in rows], pa.float64()),
        "b": pa.array([r[3] for r in rows], pa.bool_()),
    })
    assert decode(record_lines('s"1', batch, 7)) == batch.to_pylist()


def test_special_types():
    batch = pa.RecordBatch.from_pydict({
        "t": pa.array([datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), None], pa.timestamp("us", tz="UTC")),
        "naive": pa.array([datetime(2024, 1, 2), None], pa.timestamp("s")),
        "d": pa.array([Decimal("1.50"), None], pa.decimal128(5, 2)),
        "nan": pa.array([float("nan"), float("inf")]),
        "nested": pa.array([{"a": [1, 2], "b": "x"}, None]),
        "ctrl": pa.array(["\x00\x1f\"\\\n", "é 😀"]),
        "nothing": pa.nulls(2),
    })
    rows = decode(record_lines('s"1', batch, 7))
    assert rows[0] == {"t": "2024-01-02T03:04:05.000006Z", "naive": "2024-01-02T00:00:00Z", "d": 1.5, "nan": None,
                       "nested": {"a": [1, 2], "b": "x"}, "ctrl": "\x00\x1f\"\\\n", "nothing": None}
    assert rows[1]["ctrl"] == "é 😀" and rows[1]["t"] is None and rows[1]["nan"] is None


def test_constant_columns_are_encoded_once_and_alike():
    """Columns named constant (a file's _file and _last_modified_time) are joined as literals; the
    bytes must be those of the per-row encoding, with quotes folded or not (nulls elsewhere)."""
    n = 5
    when = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    batch = pa.RecordBatch.from_pydict({
        "s": pa.array(["a", 'q"', None, "d", "e\n"]),
        "plain": pa.array(["p"] * n),
        "t": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
        "day": pa.array([date(2024, 1, 2)] * n),
        "f": pa.array([1.5, float("nan"), None, 2.0, -0.0]),
        "_last_modified_time": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
        "_file": pa.array(['dir/k "1".csv'] * n),
    })
    plain = record_lines('s"1', batch, 7)
    assert record_lines('s"1', batch, 7, FILE_COLUMNS) == plain
    assert decode(plain)[1] == {"s": 'q"', "plain": "p", "t": "2024-01-02T03:04:05.000006Z", "day": "2024-01-02",
                                "f": None, "_last_modified_time": "2024-01-02T03:04:05.000006Z",
                                "_file": 'dir/k "1".csv'}
    data, lengths = object_lines(batch, FILE_COLUMNS)
    assert data == object_lines(batch)[0] and lengths.tolist() == [len(line) + 1 for line in data.split(b"\n")[:-1]]
    only = batch.select(list(FILE_COLUMNS))  # no per-row column left: n copies of one line
    assert record_lines('s"1', only, 7, FILE_COLUMNS) == record_lines('s"1', only, 7)
    assert object_lines(only, FILE_COLUMNS)[1].tolist() == object_lines(only)[1].tolist()


def test_des_discover_cli(capsys):
    from connector.cli import main

    assert main(["discover", "testdata"]) == 0
    out = capsys.readouterr().out
    assert "users  (3 files" in out and "signup_at" in out and "date-time" in out
    assert main(["discover", "--json", "testdata"]) == 0
    assert [s["name"] for s in orjson.loads(capsys.readouterr().out)] == ["avro", "events", "excel", "orders", "users", "zipped"]


def test_string_columns_take_the_right_path_in_slices():
    """Plain strings are only quoted; '"', '\\' and \n/\r/\t are escaped; other control characters
    go through orjson. Each decision looks at the slice's own bytes, not its parent's."""
    values = ['plain', 'say "hi"', "back\\slash", "line\nbreak\r\ttab", "bell\x07", None, "last"]
    whole = pa.array(values, pa.string())
    for lo in range(len(values)):
        for hi in range(lo + 1, len(values) + 1):
            batch = pa.RecordBatch.from_arrays([whole.slice(lo, hi - lo)], names=["s"])
            assert [r["s"] for r in decode(record_lines('s"1', batch, 7))] == values[lo:hi]


def test_scalars_from_buffers_match_pyarrow_conversion():
    from connector.scalars import string_scalar, timestamp_us_utc

    for moment in (datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc), datetime(1950, 1, 1, 0, 0, 0, 1),
                   datetime(2024, 1, 1, 12, tzinfo=timezone(__import__("datetime").timedelta(hours=-5)))):
        expected = pa.scalar(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc),
                             pa.timestamp("us", tz="UTC"))
        assert timestamp_us_utc(moment) == expected
    assert string_scalar("h\u00e9 \"x\"").as_py() == "h\u00e9 \"x\"" and string_scalar("").as_py() == ""


def test_reading_and_encoding_never_imports_pandas(tmp_path):
    # pandas costs ~0.25 s to import; the read path builds its constants without it.
    import subprocess
    import sys

    code = f"""
import sys
from connector.source import Source
from connector.records import record_lines
source = Source({{"root_url": "file://{tmp_path}", "file_format": "auto"}})
for stream in source.streams():
    for event in source.read(stream):
        if hasattr(event, "batch"):
            record_lines(stream, event.batch, 1)
assert "pandas" not in sys.modules, "pandas was imported"
print("ok")
"""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.csv").write_text("i,f,b,t,s\n1,1.5,true,2024-01-01T00:00:00Z,x\n2,,false,,\"q\"\"\"\n")
    (tmp_path / "s" / "b.jsonl").write_text('{"i": 1, "f": 2.5, "s": "a\\nb", "n": {"x": 1}}\n')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=300)), st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))),
                min_size=1, max_size=60),
       st.integers(1, 4096))
def test_record_chunks_are_record_lines_cut_at_line_ends(rows, budget):
    """The pieces des-source writes are the bytes of record_lines, in order, cut only after a line
    end, each about ``budget`` bytes (one line alone when a line is longer)."""
    batch = pa.RecordBatch.from_pydict({
        "s": pa.array([r[0] for r in rows], pa.string()),
        "i": pa.array([r[1] for r in rows], pa.int64()),
        "_file": pa.array(["k.csv"] * len(rows)),
    })
    pieces = [bytes(p) for p in record_chunks('s"1', batch, 7, FILE_COLUMNS, budget=budget)]
    assert b"".join(pieces) == record_lines('s"1', batch, 7, FILE_COLUMNS)
    assert all(p.endswith(b"\n") for p in pieces)
    # After the first piece (a guess) each holds as many rows as the bytes per line of the piece
    # before allow: lines of one length make pieces of at most the budget, or one line.
    sizes = [len(line) + 1 for line in record_lines('s"1', batch, 7, FILE_COLUMNS).split(b"\n")[:-1]]
    assert all(len(p) <= max(max(sizes), budget * max(sizes) / min(sizes)) for p in pieces[1:])


def test_record_chunks_of_a_large_batch_stay_near_the_budget():
    n = 50_000
    batch = pa.RecordBatch.from_pydict({"id": pa.array(range(n), pa.int64()), "name": pa.array([f"name-{i}" for i in range(n)])})
    pieces = list(record_chunks("s", batch, 7, budget=64 << 10))
    assert b"".join(pieces) == record_lines("s", batch, 7)
    assert len(pieces) > 10 and max(p.nbytes for p in pieces[1:]) <= (64 << 10) * 1.1
    assert list(record_chunks("s", batch.slice(0, 0), 7)) == []
