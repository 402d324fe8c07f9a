"""Building hostile DES containers byte by byte (plain struct calls, independent of connector.des).

Each entry says exactly what the INDEX and META will claim, true or not, so tests can hand the
reader lies: names that escape, external keys pointing elsewhere, sizes that do not match.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field


@dataclass
class Entry:
    name: str | bytes
    data: bytes = b""  # stored in DATA (ignored for external members)
    meta: dict = field(default_factory=dict)
    flags: int = 0
    length: int | None = None  # index data_length; default len(data)


def container(entries: list[Entry]) -> bytes:
    out = bytearray(b"DESHEAD1" + bytes([1]) + b"\0" * 7)
    data_start = len(out)
    placed = []
    for e in entries:
        offset = len(out)
        if not e.flags & 0x1:
            out += e.data
        placed.append((e, offset))
    data_length = len(out) - data_start
    meta_start = len(out)
    metas = []
    for e, _ in placed:
        raw = json.dumps(e.meta, separators=(",", ":")).encode()
        metas.append((len(out), len(raw)))
        out += raw
    meta_length = len(out) - meta_start
    index_start = len(out)
    for (e, offset), (meta_offset, meta_len) in zip(placed, metas):
        name = e.name.encode() if isinstance(e.name, str) else e.name
        length = e.length if e.length is not None else len(e.data)
        out += struct.pack("<H", len(name)) + name + struct.pack("<QQQQI", offset, length, meta_offset, meta_len, e.flags)
    index_length = len(out) - index_start
    out += struct.pack("<8sB7sQQQQQQQ", b"DESFOOT1", 1, b"\0" * 7, data_start, data_length, meta_start, meta_length,
                       index_start, index_length, len(entries))
    return bytes(out)
