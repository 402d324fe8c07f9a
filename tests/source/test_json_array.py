"""Top-level JSON arrays are decoded item by item, never whole: block boundaries anywhere."""

from __future__ import annotations

import io
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.source import Source
from connector.source.errors import BadDataError
from connector.source.formats.json import _array_items
from connector.source.listing import FileRef
from connector.records import record_lines
from tests.source.helpers import drain, put, s3_config

REF = FileRef(path="b/x.json", key="x.json", url="memory://b/x.json", size=0, last_modified=None,
              etag=None, format="json", compression=None)


def items(body: bytes, block_size: int) -> list:
    stream = io.BytesIO(body)
    head = stream.read(block_size)
    return [item for _, item in _array_items(stream, head, REF, block_size)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(json_values, max_size=8), st.integers(1, 17), st.sampled_from([None, 1, 2]))
def test_any_array_any_block_size_decodes_like_json_loads(value, block_size, indent):
    body = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    assert items(body, block_size) == value


def test_numbers_cut_by_the_block_boundary_are_not_split():
    body = b"[1234567, 89.25e3, -0, true, null]"
    for block_size in range(1, len(body) + 1):
        assert items(body, block_size) == [1234567, 89250.0, 0, True, None]


@pytest.mark.parametrize("body, message", [
    (b'[{"a": 1}, {"a": 2}', "missing ']'"),
    (b'[{"a": 1} {"a": 2}]', "expected ',' or ']' after array item 0"),
    (b'[{"a": 1}, {"a": }]', "array item 1: invalid JSON"),
    (b'[{"a": 1}] trailing', "data after the closing ']'"),
    (b'[{"a": 1},]', "array item 1: invalid JSON"),
    (b'["\xff"]', "not UTF-8"),
])
def test_malformed_arrays_name_the_problem(body, message):
    for block_size in (3, 1 << 20):
        with pytest.raises(BadDataError, match=message) as info:
            items(body, block_size)
        assert "x.json" in str(info.value)


def test_big_array_is_streamed_in_batches_in_order(s3_endpoint, s3_bucket):
    n = 4000
    body = json.dumps([{"i": i, "s": f"row [{i}] \"q\""} for i in range(n)], indent=1).encode()
    put(s3_endpoint, s3_bucket, {"a/big.json": body, "a/bad.json": b'[{"i": -1}, 7, {"i": -2}]'})
    src = Source(s3_config(s3_endpoint, s3_bucket, batch_size=256, on_bad_record="skip"))
    batches = [e.batch for e in src.read("a") if hasattr(e, "batch")]
    rows = [r for b in batches for r in b.to_pylist()]
    assert max(b.num_rows for b in batches) <= 256
    assert sorted(r["i"] for r in rows if r["i"] < 0) == [-2, -1]
    assert [r["i"] for r in rows if r["i"] >= 0] == list(range(n))
    assert {r["i"]: r["s"] for r in rows}[5] == 'row [5] "q"'


def test_non_object_item_fails_with_its_index(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"a/bad.json": b'[{"i": 1}, [2], {"i": 3}]'})
    with pytest.raises(BadDataError, match=r"bad.json: array item 1 is not an object \(list\)"):
        drain(Source(s3_config(s3_endpoint, s3_bucket)), "a")


@pytest.mark.parametrize("body", [b"{}\n{}\n{}\n", b"[{}, {}, {}]", b"[\n {},\n {},\n {}\n]"])
def test_objects_without_fields_are_records(s3_endpoint, s3_bucket, body):
    """A stream whose objects are all {} has no column at all; its rows must not vanish."""
    put(s3_endpoint, s3_bucket, {"e/x.json": body, "f/x.json": body, "f/y.jsonl": b'{"a": 1}\n'})
    for stream, expected in (("e", [{}] * 3), ("f", [{"a": None}] * 3 + [{"a": 1}])):
        src = Source(s3_config(s3_endpoint, s3_bucket, file_format="json"))
        events = list(src.read(stream))
        lines = b"".join(record_lines(stream, e.batch, 0) for e in events if hasattr(e, "batch"))
        data = [orjson.loads(line)["record"]["data"] for line in lines.splitlines()]
        assert [{k: v for k, v in d.items() if not k.startswith("_")} for d in data] == expected
        assert {d["_file"] for d in data} == ({"e/x.json"} if stream == "e" else {"f/x.json", "f/y.jsonl"})
        assert sum(e.records for e in events if hasattr(e, "records")) == len(expected)
