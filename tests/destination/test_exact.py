"""des-destination stores what it was sent, byte for byte, on every path, or refuses it by line."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.destination.messages import decode_checked
from connector.store import Store

CMD = [sys.executable, "-m", "connector.airbyte.destination_main"]


def _setup(tmp: Path) -> list[str]:
    (tmp / "dest.json").write_text(json.dumps({"root_url": str(tmp / "store")}))
    (tmp / "catalog.json").write_text(json.dumps({"streams": [{"stream": {"name": "rows", "json_schema": {}},
                                                               "sync_mode": "full_refresh",
                                                               "destination_sync_mode": "append"}]}))
    return ["write", "--config", str(tmp / "dest.json"), "--catalog", str(tmp / "catalog.json")]


def _record(data: bytes) -> bytes:
    return b'{"type":"RECORD","record":{"stream":"rows","emitted_at":1,"data":' + data + b"}}\n"


def _traces(stdout: bytes) -> list[str]:
    msgs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [m["trace"]["error"]["message"] for m in msgs if m["type"] == "TRACE"]


def test_good_lines_of_a_block_with_a_bad_utf8_line_keep_their_bytes(tmp_path):
    """One line that is not UTF-8 in a 1 MiB block used to send every line of the block through
    orjson, which rewrote 0.10000000000000000001 as 0.1 and a 24-digit integer as a float."""
    datas = [b'{"x":0.10000000000000000001,"n":%d}' % i for i in range(50)]
    datas += [b'{"big":123456789012345678901234,"s":"caf\xc3\xa9","e":1E+2}']
    body = b"".join(map(_record, datas)) + _record(b'{"s":"\xff"}')
    out = subprocess.run(CMD + _setup(tmp_path), input=body, capture_output=True, timeout=60)
    assert out.returncode == 1
    assert any("line 52: not JSON" in t for t in _traces(out.stdout)), out.stdout
    with Store(str(tmp_path / "store")) as store:
        assert b"".join(store.read_lines("rows")) == b"".join(d + b"\n" for d in datas)


@pytest.mark.parametrize(("body", "why"), [
    # pyarrow's JSON reader (the duplicate-key check) crashed the process on a block of RECORD data
    # whose first value is null, and on nesting some ten thousand levels deep.
    (_record(b"null") + _record(b'{"a":1}'), "stdin line 1"),
    (_record(b'{"a":1}') + _record(b'{"d":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "stdin line 2: not JSON"),
])
def test_input_that_crashed_the_duplicate_check_is_a_named_error(tmp_path, body, why):
    out = subprocess.run(CMD + _setup(tmp_path), input=body, capture_output=True, timeout=60)
    assert out.returncode == 1, (out.returncode, out.stderr[-300:])
    assert any(why in t for t in _traces(out.stdout)), out.stdout


def test_duplicate_key_is_refused_by_line_and_the_rest_reads_back(tmp_path):
    """A duplicate key (at any depth) is refused with a TRACE naming its line; records before it
    are committed, and the dataset still reads as a table."""
    body = (_record(b'{"a":1,"n":{"x":1}}') + _record(b'{"a":2,"n":{"x":1,"x":2}}') + _record(b'{"a":3}'))
    out = subprocess.run(CMD + _setup(tmp_path), input=body, capture_output=True, timeout=60)
    assert out.returncode == 1
    traces = _traces(out.stdout)
    assert len(traces) == 1 and "stdin line 2: RECORD data holds key 'x' twice" in traces[0], traces
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("rows").column("a").to_pylist() == [1]


def test_numbers_beyond_int64_and_double_are_stored_and_read_back_as_text(tmp_path):
    datas = [b'{"i":1,"f":1e400}', b'{"i":123456789012345678901234567,"f":0.5}']
    body = b"".join(map(_record, datas)) + b'{"type":"STATE","state":{"data":{"n":2}}}\n'
    out = subprocess.run(CMD + _setup(tmp_path), input=body, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with Store(str(tmp_path / "store")) as store:
        assert b"".join(store.read_lines("rows")) == b"".join(d + b"\n" for d in datas)
        table = store.to_table("rows")
        assert table.column("i").to_pylist() == ["1", "123456789012345678901234567"]
        assert table.column("f").to_pylist() == ["1e400", "0.5"]


@pytest.mark.parametrize("at", [1, 1500, 2999])
def test_duplicate_key_anywhere_in_a_block_is_refused(tmp_path, at):
    """The duplicate-key check runs on the RECORD data of a block in pieces (decode_checked): a
    duplicate in any piece, with STATEs between the records, is refused at its line."""
    lines = []
    for i in range(3000):
        data = b'{"a":%d,"s":"x","n":[{"k":1}]}' % i
        if i == at:
            data = b'{"a":%d,"s":"x","n":[{"k":1,"k":2}]}' % i
        lines.append(_record(data))
        if i % 700 == 0:
            lines.append(b'{"type":"STATE","state":{"data":{"n":%d}}}\n' % i)
    body = b"".join(lines)
    out = subprocess.run(CMD + _setup(tmp_path), input=body, capture_output=True, timeout=60)
    assert out.returncode == 1
    line = next(n for n, raw in enumerate(lines, start=1) if b'"k":1,"k":2' in raw)
    assert [t for t in _traces(out.stdout) if "twice" in t] == [
        (f"stdin line {line}: RECORD data holds key 'k' twice; a record with duplicate keys has no exact table form "
         "and is refused")], out.stdout
    with Store(str(tmp_path / "store")) as store:
        assert store.to_table("rows").column("a").to_pylist() == list(range(at))


_keys = st.text(st.characters(codec="utf-8", exclude_characters='"\\'), min_size=1, max_size=3)
_flat = st.dictionaries(_keys, st.one_of(st.integers(-10**20, 10**20), st.text(max_size=4), st.booleans()),
                        max_size=4)


@given(rows=st.lists(_flat, min_size=1, max_size=40), at=st.integers(0, 39), nested=st.booleans())
@settings(max_examples=60, deadline=None)
def test_decode_checked_never_passes_a_block_with_a_duplicate_key(rows, at, nested):
    """decode_checked's verdict True means no RECORD data holds a key twice (False only asks for
    the exact check): a duplicate injected into any row, at the top or nested, is never passed."""
    at %= len(rows)
    datas = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in rows]
    dup = b'"d":1,"d":2'
    datas[at] = (b'{"z":{' + dup + b"}}") if nested else (b"{" + dup + b"}")
    block = [_record(d)[:-1] for d in datas] + [b'{"type":"STATE","state":{"data":{}}}']
    with ThreadPoolExecutor(1) as pool:
        msgs, clean = decode_checked(block, pool)
    assert not clean
    assert [bytes(m.record.data) for m in msgs if m.record is not None] == datas
