"""Reading record containers without their INDEX: the DATA region is JSON Lines.

A record container of 100,000 datapoints has a 6 MB INDEX; parsing it to read a whole datarange (or
one record) would cost more than the read. The DATA region's place is in the footer (or already in
the catalog), and record members ``<key:020d>.json`` have fixed-size INDEX entries, so entry ``i``
is found by arithmetic.
"""

from __future__ import annotations

import fsspec
import numpy as np

from connector.des.format import (ENTRY_FIXED_STRUCT, FOOTER_SIZE, HEADER_SIZE, NAME_LENGTH_STRUCT, Footer,
                                  parse_footer)
from connector.errors import DesFormatError

NAME_BYTES = 25  # "<key:020d>.json"
ENTRY_BYTES = NAME_LENGTH_STRUCT.size + NAME_BYTES + ENTRY_FIXED_STRUCT.size


def footer(fs: fsspec.AbstractFileSystem, path: str, size: int) -> Footer:
    """The container's footer: one ranged GET of its last 72 bytes."""
    return parse_footer(fs.cat_file(path, start=size - FOOTER_SIZE, end=size), path, size)


def data_region(fs: fsspec.AbstractFileSystem, path: str, size: int, data_length: int | None) -> bytes:
    """The DATA region: one ranged GET when its length is known, else a footer GET first."""
    if data_length is None:
        f = footer(fs, path, size)
        start, data_length = f.data_start, f.data_length
    else:
        start = HEADER_SIZE
    data = fs.cat_file(path, start=start, end=start + data_length)
    if len(data) != data_length:
        raise DesFormatError(f"{path}: DATA region is {len(data)} bytes, expected {data_length} (truncated?)")
    return data


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
    offset, length, _meta_offset, _meta_length, flags = ENTRY_FIXED_STRUCT.unpack_from(entry, 2 + NAME_BYTES)
    if flags or offset < f.data_start or offset + length > f.data_start + f.data_length:
        return None  # compressed, external or odd: let DesReader handle (and check) it
    return fs.cat_file(path, start=offset, end=offset + length)


def line_lengths(data: bytes, datarange) -> np.ndarray:
    """Byte length of each record (newline included) of a DATA region, found by a vectorised scan;
    the count must match the datarange's."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    if len(ends) != datarange.count or (len(ends) and ends[-1] != len(data) - 1):
        raise DesFormatError(f"{datarange.url}: DATA region holds {len(ends)} JSON lines, the catalog says "
                             f"{datarange.count} records")
    return np.diff(ends, prepend=-1)
