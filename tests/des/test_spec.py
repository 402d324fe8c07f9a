"""spec/DES_FORMAT.md says what the code does: constants and the worked example, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

from connector.des import DesReader, DesWriter
from connector.des.format import ENTRY_FIXED_SIZE, FOOTER_SIZE, HEADER_SIZE

SPEC = (Path(__file__).resolve().parents[2] / "spec" / "DES_FORMAT.md").read_text()


def test_sizes_stated_in_the_spec():
    assert (HEADER_SIZE, FOOTER_SIZE, ENTRY_FIXED_SIZE) == (16, 72, 36)
    assert "| HEADER | 16 |" in SPEC and "| FOOTER | 72 |" in SPEC and "**36 bytes**" in SPEC


def test_worked_example_is_what_the_writer_writes(tmp_path):
    path = tmp_path / "ex.des"
    with DesWriter(str(path)) as w:
        w.add("a.txt", b"hi\n")
    data = path.read_bytes()
    assert "(220 bytes;" in SPEC and len(data) == 220
    block = re.search(r"### Worked example.*?```\n(.*?)```", SPEC, re.S).group(1)
    checked = 0
    for line in block.splitlines():
        m = re.match(r"([0-9a-f]{4})  (.*)", line)
        if not m:
            continue
        at = int(m.group(1), 16)
        for token in m.group(2).split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break  # the rest of the line is elided or commentary
            assert data[at] == int(token, 16), f"byte {at:#x}: spec says {token}, writer wrote {data[at]:02x}"
            at += 1
            checked += 1
    assert checked >= 80
    r = DesReader(data)
    f = r.footer
    assert (f.data_start, f.data_length, f.meta_start, f.meta_length, f.index_start, f.index_length, f.file_count) == (
        16, 3, 19, 86, 105, 43, 1)
    assert r.meta("a.txt")["sha256"].startswith("98ea6e4f") and r.meta("a.txt")["sha256"].endswith("07be4")
