"""des-destination stores what it was sent, byte for byte, on every path, or refuses it by line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
