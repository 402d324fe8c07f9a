"""Fuzzing the source's parsers and loaders (hypothesis, derandomized and bounded).

Whatever the bytes of a CSV/JSON file, discover + read + RECORD encoding either succeed or raise a
documented :class:`ConnectorError` (BadDataError naming the file) with ``on_bad_record=fail``, and
never raise with ``skip``; no case hangs (each is under a hang guard). Configs and states made of
random JSON are accepted or refused with :class:`ConfigError`, nothing else. Deep nesting and huge
lines get named errors, not a RecursionError or unbounded buffering.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, ConnectorError
from connector.source import FileBatch, Source
from connector.source.config import SourceConfig
from connector.source.errors import BadDataError
from connector.source.formats.json import _chunks
from connector.source.listing import FileRef
from connector.records import record_lines
from connector.source.state import StreamState, parse_input_state
from tests.reliability.fuzzing import CASES, FUZZ, Counter, hang_guard, json_objects, json_values

RAN: dict[str, int] = {}


@pytest.fixture(autouse=True)
def quiet_source_log():
    """Thousands of bad-file warnings are expected here; keep them out of the output."""
    logger = logging.getLogger("connector.source")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def read_everything(body: bytes, name: str, on_bad_record: str) -> int:
    """Discover and read a root holding one file ``s/<name>``; encode every record; rows read."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s").mkdir()
        (Path(tmp) / "s" / name).write_bytes(body)
        src = Source({"root_url": tmp, "on_bad_record": on_bad_record, "max_threads": 1, "retry_count": 0,
                      "schema_sample_rows": 50})
        json.dumps(src.discover())
        rows = 0
        for stream in src.streams():
            for event in src.read(stream):
                if isinstance(event, FileBatch):
                    for line in record_lines(stream, event.batch, 0).splitlines():
                        orjson.loads(line)  # every RECORD line is valid JSON
                        rows += 1
        return rows


def check_file(body: bytes, name: str, on_bad_record: str) -> None:
    with hang_guard(20):
        try:
            read_everything(body, name, on_bad_record)
        except ConnectorError as exc:
            assert on_bad_record == "fail", f"skip mode raised {exc!r}"
            assert name in str(exc), f"error does not name the file: {exc}"


def csv_text(rows: list[list[str]], delimiter: str) -> bytes:
    return "\n".join(delimiter.join(row) for row in rows).encode("utf-8", "surrogatepass")


cells = st.one_of(st.text(alphabet=st.sampled_from(list('ab1.,;"\n\r\t\x00 é-:TZ')), max_size=12),
                  st.sampled_from(["2024-01-01T00:00:00Z", "true", "1e5", "-3", "2.5", ""]))
csv_bodies = st.one_of(
    st.binary(max_size=600),
    st.builds(csv_text, st.lists(st.lists(cells, min_size=1, max_size=5), max_size=12), st.sampled_from([",", ";"])),
)


def json_body(kind: str, values: list, cut: int | None) -> bytes:
    # The stdlib writes integers beyond 64 bits too (valid JSON the source must cope with).
    def dump(v, indent=None) -> bytes:
        return json.dumps(v, ensure_ascii=False, indent=indent).encode()

    if kind == "lines":
        body = b"\n".join(dump(v) for v in values)
    elif kind == "array":
        body = dump(values, indent=2)
    else:
        body = dump(values[0] if values else {})
    return body[:cut] if cut is not None else body


json_bodies = st.one_of(
    st.binary(max_size=600),
    st.builds(json_body, st.sampled_from(["lines", "array", "whole"]),
              st.lists(st.one_of(json_objects, json_values), max_size=8), st.none() | st.integers(0, 400)),
)


@pytest.mark.parametrize("on_bad_record", ["fail", "skip"])
@pytest.mark.parametrize("ext", [".csv", ".csv.gz"])
def test_fuzz_csv(ext, on_bad_record):
    ran = Counter()

    @settings(FUZZ, max_examples=CASES["medium"] if ext == ".csv" else CASES["small"])
    @given(body=csv_bodies, compress=st.booleans())
    def case(body, compress):
        ran()
        if ext.endswith(".gz") and compress:
            body = gzip.compress(body, mtime=0)  # valid gzip around fuzzed text; else bad gzip bytes
        check_file(body, "x" + ext, on_bad_record)

    case()
    RAN[f"csv{ext}/{on_bad_record}"] = ran.n


@pytest.mark.parametrize("on_bad_record", ["fail", "skip"])
@pytest.mark.parametrize("ext", [".jsonl", ".json"])
def test_fuzz_json(ext, on_bad_record):
    ran = Counter()

    @settings(FUZZ, max_examples=CASES["medium"])
    @given(body=json_bodies)
    def case(body):
        ran()
        check_file(body, "x" + ext, on_bad_record)

    case()
    RAN[f"json{ext}/{on_bad_record}"] = ran.n


def parquet_bytes(rows: int, row_group: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    table = pa.table({"i": list(range(rows)), "s": [f"v{i}" for i in range(rows)],
                      "n": [{"k": i} for i in range(rows)]})
    pq.write_table(table, sink, row_group_size=row_group)
    return sink.getvalue()


VALID_PARQUET = parquet_bytes(50, 10)


@pytest.mark.parametrize("on_bad_record", ["fail", "skip"])
def test_fuzz_parquet_truncated_and_mutated(on_bad_record):
    """Parquet files cut short or with bytes overwritten (footer, row groups, magic)."""
    ran = Counter()

    @settings(FUZZ, max_examples=CASES["medium"])
    @given(cut=st.integers(0, len(VALID_PARQUET)), flips=st.lists(
        st.tuples(st.integers(0, len(VALID_PARQUET) - 1), st.integers(0, 255)), max_size=4),
        noise=st.binary(max_size=64))
    def case(cut, flips, noise):
        ran()
        body = bytearray(VALID_PARQUET)
        for at, value in flips:
            body[at] = value
        body = bytes(body[:cut]) + (noise if cut < len(VALID_PARQUET) // 2 else b"")
        check_file(body, "x.parquet", on_bad_record)

    case()
    RAN[f"parquet/{on_bad_record}"] = ran.n


@pytest.mark.parametrize("depth", [10, 200, 1000, 100_000])
@pytest.mark.parametrize("shape", ["array-in-array", "object-line", "object-whole", "list-in-line"])
def test_deep_nesting_gives_named_error_or_reads(shape, depth):
    body = {
        "array-in-array": b"[" + b"[" * depth + b"]" * depth + b"]",
        "object-line": b'{"a":' * depth + b"1" + b"}" * depth + b"\n",
        "object-whole": b'{"a":' * depth + b"1" + b"}" * depth,
        "list-in-line": b'{"a":' + b"[" * depth + b"]" * depth + b"}\n",
    }[shape]
    name = "x.jsonl" if shape.endswith("line") else "x.json"
    with hang_guard(30):
        try:
            rows = read_everything(body, name, "fail")
        except BadDataError as exc:
            expected = ("nested", "depth") + (("not an object",) if shape == "array-in-array" else ())
            assert name in str(exc) and any(word in str(exc) for word in expected), exc
        else:
            assert depth <= 200 and rows == (0 if shape == "array-in-array" else 1)


def test_huge_csv_field_reads_and_one_beyond_the_row_limit_is_a_named_error(monkeypatch):
    body = b"a,b\n" + b"x" * (5 << 20) + b",1\n2,3\n"  # one cell beyond the 4 MiB parse block
    with hang_guard(30):
        assert read_everything(body, "x.csv", "fail") == 2  # blocks grow to hold the row
    from connector.source.formats import csv as csv_format

    monkeypatch.setattr(csv_format, "MAX_ROW", 8 << 20)  # the real bound (256 MiB) is too big to test
    body = b"a,b\n" + b"x" * (9 << 20) + b",1\n2,3\n"
    with hang_guard(30), pytest.raises(BadDataError, match=r"x\.csv: a row longer than 8 MiB"):
        read_everything(body, "x.csv", "fail")


def test_huge_json_line_reads_and_a_line_without_end_is_bounded():
    big = {"id": 1, "text": "y" * (5 << 20)}
    body = orjson.dumps(big) + b"\n" + orjson.dumps({"id": 2, "text": "z"}) + b"\n"
    with hang_guard(30):
        assert read_everything(body, "x.jsonl", "fail") == 2  # a legitimate big record is fine

    ref = FileRef(path="p", key="s/x.jsonl", url="file://p", size=0, last_modified=None)  # type: ignore[arg-type]
    endless = io.BytesIO(b'{"a": "' + b"q" * 10_000)  # no newline, ever
    with pytest.raises(BadDataError, match=r"s/x\.jsonl: line 1: longer than 4096 bytes"):
        list(_chunks(endless, b"", 1024, ref, max_line=4096))


def rows_of(body: bytes, name: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s").mkdir()
        (Path(tmp) / "s" / name).write_bytes(body)
        src = Source({"root_url": tmp})
        return [{k: v for k, v in row.items() if not k.startswith("_")}
                for e in src.read("s") if isinstance(e, FileBatch) for row in e.batch.to_pylist()]


# Regressions found by the fuzzers above (each crashed with a raw exception or lost rows).
@pytest.mark.parametrize(("body", "rows"), [
    (b"\na,b\n1,2\n", [{"a": 1, "b": 2}]),                       # leading blank line: rows were lost
    (b"a,b\r1,2\r3,4\r", [{"a": 1, "b": 2}, {"a": 3, "b": 4}]),  # CR line ends: _csv.Error
    (b"a,b", []),                                                  # header only, no newline: Arrow error
    (b"a,a,a_2\n1,2,3\n", [{"a": 1, "a_2": 2, "a_2_2": 3}]),     # duplicate names: KeyError
])
def test_csv_regressions(body, rows):
    assert rows_of(body, "x.csv") == rows


def test_json_array_with_integers_beyond_64_bits_keeps_them_exact():
    body = b'[{"n": 1}, {"n": -9223372036854775809}]'
    # was: TypeError; then text; now an exact decimal column
    assert [r["n"] for r in rows_of(body, "x.json")] == [1, -9223372036854775809]


@pytest.mark.parametrize("raw", [
    {"type": "STREAM"}, {"type": "STREAM", "stream": "x"}, [{"type": "STREAM", "stream": {"stream_descriptor": {}}}],
    {"type": "GLOBAL", "global": []}, {"s": {"_last_modified_time": "2024-01-01", "_files_at_cursor": 5}},
    {"s": {"_last_modified_time": "0001-01-01T00:00:00+01:00"}}, {"s": []},
    {"s": {"_last_modified_time": "9999-12-31T23:59:59.999999Z"}},  # Olake's form: no time after it
    {"s": {"_last_modified_time": "2024-01-01", "_history": {"a": "2023-12-31"}}},  # no _history_start
    {"s": {"_last_modified_time": "2024-01-01", "_history": {"a": "2024-01-02"}, "_history_start": "2023-01-01"}},
    {"s": {"_last_modified_time": "2024-01-01", "_history": {"a": "2022-01-02"}, "_history_start": "2023-01-01"}},
    {"s": {"_last_modified_time": "2024-01-01", "_history": ["a"], "_history_start": "2023-01-01"}},
    {"s": {"_last_modified_time": "2024-01-01", "_history": {"a": 5}, "_history_start": "2023-01-01"}},
])
def test_malformed_states_are_config_errors(raw):
    with pytest.raises(ConfigError, match="state"):
        for state in parse_input_state(raw).values():
            StreamState.from_dict(state)


config_keys = st.sampled_from(["root_url", "bucket_name", "region", "path_prefix", "endpoint", "access_key_id",
                               "secret_access_key", "file_format", "max_threads", "retry_count", "request_timeout",
                               "csv", "stream_depth", "streams", "start_date", "schema_sample_rows",
                               "on_bad_record", "batch_size", "other"])
configs = st.one_of(json_values, st.dictionaries(config_keys, json_values, max_size=6),
                    st.dictionaries(config_keys, st.one_of(json_values, st.just("/tmp"), st.just("s3://b/p"),
                                                           st.just("2024-01-01T00:00:00Z")), max_size=6))


def test_fuzz_config_loader():
    ran = Counter()

    @settings(FUZZ, max_examples=CASES["large"])
    @given(raw=configs)
    def case(raw):
        ran()
        try:
            config = SourceConfig.from_dict(raw)
        except ConfigError:
            return
        if config.root_url is not None and not config.root_url.startswith(("s3", "/tmp")):
            return  # arbitrary strings as local paths or URLs: not touched, only validated
        try:
            config.filesystem()
        except ConfigError:
            pass

    case()
    RAN["config"] = ran.n


state_like = st.recursive(
    st.one_of(json_values, st.just("2024-01-01T00:00:00Z"), st.just("STREAM"), st.just("GLOBAL"), st.just("LEGACY")),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["type", "stream", "stream_descriptor", "name", "stream_state", "global",
                                         "stream_states", "data", "_last_modified_time", "_files_at_cursor", "s",
                                         "_history", "_history_start"]),
                        inner, max_size=4)),
    max_leaves=15)


def test_fuzz_state_loader():
    ran = Counter()

    @settings(FUZZ, max_examples=CASES["large"])
    @given(raw=state_like)
    def case(raw):
        ran()
        try:
            states = parse_input_state(raw)
            for state in states.values():
                StreamState.from_dict(state).to_dict()
        except ConfigError:
            pass

    case()
    RAN["state"] = ran.n


def test_zz_report_fuzz_cases():
    """Prints the cases run by the fuzz tests above (run with -s); they must have run."""
    total = sum(RAN.values())
    print(f"\n[reliability] source fuzz cases run: {total} {dict(sorted(RAN.items()))}")
    assert total == 0 or total >= 10
