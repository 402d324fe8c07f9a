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
