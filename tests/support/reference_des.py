"""A strict test reader that applies the reference DES readers' rules, not ours.

Written from the description of the reference (the DES seed README, shared/vectors/README.md and
issue 20), without its code and independently of ``connector.des`` (plain ``struct`` and ``json``),
so a bug shared with our reader cannot hide. What it models:

- ``DesReader`` (local): footer, then index into a dict (a duplicate name: the last entry wins),
  META with Python's ``json``; a member's bytes are ``[data_offset, data_offset + data_length)`` of
  the container file whatever its flags say: the external flag is ignored (an external member
  gives the container's first bytes), the compressed flag too (compressed bytes, no error).
- ``S3DesReader``: the same, except that a member flagged external (0x1) is the whole object
  ``<folder of the container>/_bigFiles/<name>``; META's ``external_key`` is not consulted.

"Strict": anything the reference would choke on fails here too (bad magic or version, an index
that does not add up, META that is not a JSON object), and the answers are exactly the bytes the
reference would return, right or wrong, so a test can tell which containers it reads correctly.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

FOOTER = struct.Struct("<8sB7s7Q")
ENTRY = struct.Struct("<QQQQI")
EXTERNAL = 0x1


@dataclass(frozen=True)
class Entry:
    name: str
    offset: int
    length: int
    flags: int
    meta: dict[str, Any]


def parse(blob: bytes) -> dict[str, Entry]:
    """The reference's view of a container: name -> entry, the last entry of a name winning."""
    if blob[:8] != b"DESHEAD1" or blob[8] != 1:
        raise ValueError("bad header")
    magic, version, _, data_start, data_length, meta_start, meta_length, index_start, index_length, count = (
        FOOTER.unpack_from(blob, len(blob) - FOOTER.size))
    if magic != b"DESFOOT1" or version != 1:
        raise ValueError("bad footer")
    index: dict[str, Entry] = {}
    pos, end, seen = index_start, index_start + index_length, 0
    while pos < end:
        (n,) = struct.unpack_from("<H", blob, pos)
        name = blob[pos + 2 : pos + 2 + n].decode("utf-8")
        offset, length, meta_offset, meta_len, flags = ENTRY.unpack_from(blob, pos + 2 + n)
        pos += 2 + n + ENTRY.size
        meta = json.loads(blob[meta_offset : meta_offset + meta_len]) if meta_len else {}
        if not isinstance(meta, dict):
            raise ValueError(f"{name!r}: META is not an object")
        index[name] = Entry(name, offset, length, flags, meta)
        seen += 1
    if pos != end or seen != count:
        raise ValueError("index does not match the footer")
    return index


def read_local(blob: bytes) -> dict[str, bytes]:
    """Every member as the reference's local ``DesReader`` returns it (flags ignored)."""
    return {name: blob[e.offset : e.offset + e.length] for name, e in parse(blob).items()}


def read_s3(s3: Any, bucket: str, key: str) -> dict[str, bytes]:
    """Every member as the reference's ``S3DesReader`` returns it; ``s3`` is a boto3 client."""
    blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    folder = key.rpartition("/")[0]
    out = {}
    for name, e in parse(blob).items():
        if e.flags & EXTERNAL:
            out[name] = s3.get_object(Bucket=bucket, Key=f"{folder}/_bigFiles/{name}")["Body"].read()
        else:
            out[name] = blob[e.offset : e.offset + e.length]
    return out
