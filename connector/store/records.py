"""Reading record containers without their INDEX: the DATA region is JSON Lines.

A record container of 100,000 datapoints has a 6 MB INDEX; parsing it to read a whole datarange (or
one record) would cost more than the read. The DATA region's place is in the footer (or already in
the catalog), and record members ``<key:020d>.json`` have fixed-size INDEX entries, so entry ``i``
is found by arithmetic.
"""

from __future__ import annotations

import re
import zlib

import fsspec
import numpy as np
import orjson

from connector.des.format import (ENTRY_FIXED_STRUCT, FOOTER_SIZE, HEADER_SIZE, NAME_LENGTH_STRUCT, Footer,
                                  parse_footer, parse_meta)
from connector.des.reader import data_crc32_of
from connector.errors import DesFormatError

NAME_BYTES = 25  # "<key:020d>.json"
ENTRY_BYTES = NAME_LENGTH_STRUCT.size + NAME_BYTES + ENTRY_FIXED_STRUCT.size
# The first member's META ({"size":..,"crc32":..,"data_crc32":"<8 hex>"}) fits in this many bytes.
FIRST_META_BYTES = 128
MAX_RECORD_META = 4096  # a record member's META is a few dozen bytes; more is not ours: use DesReader


def footer(fs: fsspec.AbstractFileSystem, path: str, size: int) -> Footer:
    """The container's footer: one ranged GET of its last 72 bytes."""
    return parse_footer(fs.cat_file(path, start=size - FOOTER_SIZE, end=size), path, size)


def data_region(fs: fsspec.AbstractFileSystem, path: str, size: int, data_length: int | None) -> bytes:
    """The DATA region, checked against the ``data_crc32`` its container declares: one ranged
    GET when its length is known (it takes the first member's META, which follows DATA, along),
    else a footer GET first. A container written before ``data_crc32`` existed is not checked."""
    if data_length is None:
        f = footer(fs, path, size)
        start, data_length = f.data_start, f.data_length
    else:
        start = HEADER_SIZE
    blob = fs.cat_file(path, start=start, end=min(start + data_length + FIRST_META_BYTES, size))
    if len(blob) < data_length:
        raise DesFormatError(f"{path}: DATA region is {len(blob)} bytes, expected {data_length} (truncated?)")
    data = blob[:data_length] if len(blob) > data_length else blob
    expected = data_crc32_of(_first_meta(blob[data_length:]))
    if expected is not None and zlib.crc32(data) != expected:
        raise DesFormatError(f"{path}: DATA region does not match its data_crc32 (corrupt); "
                             "`des datasets verify` names the container")
    return data


def _first_meta(head: bytes) -> dict | None:
    """The first META object, from the bytes that follow DATA (None if it is not there). A META
    longer than those bytes (per-record columns merged into it, see connector.store.columns) still
    starts with the writer's own fields, ``data_crc32`` among them: that one is taken from the text."""
    end = head.find(b"}")
    if not head.startswith(b"{"):
        return None
    if end >= 0:
        try:
            meta = orjson.loads(head[:end + 1])
        except orjson.JSONDecodeError:
            meta = None
        if isinstance(meta, dict):
            return meta
    found = _DATA_CRC.search(head)
    return {"data_crc32": found.group(1).decode()} if found else None


_DATA_CRC = re.compile(rb'^\{"crc32":\d+,"data_crc32":"([0-9a-f]{8})"')


def record_at(fs: fsspec.AbstractFileSystem, path: str, size: int, index: int, name: str) -> bytes | None:
    """Member ``name`` at position ``index`` of a record container, in three small GETs; None when
    the entry there is not ``name`` (a container not laid out by this writer: use DesReader)."""
    f = footer(fs, path, size)
    at = f.index_start + index * ENTRY_BYTES
    if index >= f.file_count or at + ENTRY_BYTES > f.index_start + f.index_length:
        return None
    entry = fs.cat_file(path, start=at, end=at + ENTRY_BYTES)
    (name_length,) = NAME_LENGTH_STRUCT.unpack_from(entry, 0)
    if name_length != NAME_BYTES or entry[2:2 + NAME_BYTES] != name.encode():
        return None
    offset, length, meta_offset, meta_length, flags = ENTRY_FIXED_STRUCT.unpack_from(entry, 2 + NAME_BYTES)
    if flags or offset < f.data_start or offset + length > f.data_start + f.data_length:
        return None  # compressed, external or odd: let DesReader handle (and check) it
    if not f.meta_start <= meta_offset <= meta_offset + meta_length <= f.meta_start + f.meta_length \
            or meta_length > MAX_RECORD_META:
        return None
    # The member and its META in one round trip (two ranges fetched together).
    data, raw_meta = fs.cat_ranges([path, path], [offset, meta_offset], [offset + length, meta_offset + meta_length])
    meta = parse_meta(raw_meta, path, name)
    if len(data) != length or meta.get("size", length) != length:
        raise DesFormatError(f"{path}: member {name!r} has {len(data)} bytes, the index says {length} (truncated?)")
    crc = meta.get("crc32")
    if isinstance(crc, int) and zlib.crc32(data) != crc:
        raise DesFormatError(f"{path}: member {name!r}: checksum mismatch (crc32): the record is corrupt")
    return data


def line_lengths(data: bytes, datarange) -> np.ndarray:
    """Byte length of each record (newline included) of a DATA region, found by a vectorised scan;
    the count must match the datarange's."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    if len(ends) != datarange.count or (len(ends) and ends[-1] != len(data) - 1):
        raise DesFormatError(f"{datarange.url}: DATA region holds {len(ends)} JSON lines, the catalog says "
                             f"{datarange.count} records")
    return np.diff(ends, prepend=-1)


def first_member_meta(fs: fsspec.AbstractFileSystem, path: str, size: int) -> dict | None:
    """The META of a record container's first member in three small GETs (footer, first INDEX
    entry, the META), without parsing the INDEX; None for a container not laid out by this writer."""
    f = footer(fs, path, size)
    if not f.file_count or f.index_length < ENTRY_BYTES:
        return None
    entry = fs.cat_file(path, start=f.index_start, end=f.index_start + ENTRY_BYTES)
    (name_length,) = NAME_LENGTH_STRUCT.unpack_from(entry, 0)
    if name_length != NAME_BYTES:
        return None
    _, _, meta_offset, meta_length, _ = ENTRY_FIXED_STRUCT.unpack_from(entry, 2 + NAME_BYTES)
    if not f.meta_start <= meta_offset <= meta_offset + meta_length <= f.meta_start + f.meta_length:
        raise DesFormatError(f"{path}: the first INDEX entry points outside the META region")
    try:
        meta = orjson.loads(fs.cat_file(path, start=meta_offset, end=meta_offset + meta_length))
    except orjson.JSONDecodeError as exc:
        raise DesFormatError(f"{path}: the first member's META is not JSON ({exc})") from None
    return meta if isinstance(meta, dict) else None
