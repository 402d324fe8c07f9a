"""Hostile containers: any mutation or truncation of a valid one gives DesFormatError, nothing else."""

from __future__ import annotations

import io
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.des import DesFormatError, DesReader, DesWriter
from connector.des.format import ENTRY_FIXED_STRUCT, FOOTER_SIZE, FOOTER_STRUCT, HEADER_SIZE


def _valid(compression: str | None = None) -> bytes:
    import tempfile, os

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "v.des")
        with DesWriter(p, compression=compression) as w:
            w.add("a.txt", b"alpha\n" * 20)
            w.add("dir/b.json", b'{"b": 1}\n')
            w.add("c", b"")
            w.add("z.bin", bytes(range(256)) * 4)
        return open(p, "rb").read()


VALID = {None: _valid(None), "zstd": _valid("zstd")}


def _exercise(data: bytes) -> None:
    r = DesReader(data, cache=None)
    names = r.names()
    for n in names:
        r.info(n)
        r.meta(n)
        r.read(n)
    r.read_many(names)
    r.verify()


def _only_format_errors(data: bytes) -> None:
    try:
        _exercise(data)
    except DesFormatError:
        pass


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(codec=st.sampled_from([None, "zstd"]), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                           min_size=1, max_size=6))
def test_mutated_bytes_give_only_format_errors(codec, edits):
    data = bytearray(VALID[codec])
    for pos, value in edits:
        data[pos % len(data)] = value
    _only_format_errors(bytes(data))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(codec=st.sampled_from([None, "zstd"]), cut=st.integers(0, 10**6), from_front=st.booleans())
def test_truncated_containers_give_only_format_errors(codec, cut, from_front):
    data = VALID[codec]
    cut = cut % (len(data) - 1) + 1  # a strict, non-empty cut
    piece = data[cut:] if from_front else data[:cut]
    with pytest.raises(DesFormatError):
        _exercise(piece)


def _forge_footer(data: bytes, **fields: int) -> bytes:
    names = ["data_start", "data_length", "meta_start", "meta_length", "index_start", "index_length", "file_count"]
    magic, version, reserved, *values = FOOTER_STRUCT.unpack_from(data, len(data) - FOOTER_SIZE)
    current = dict(zip(names, values))
    current.update(fields)
    return data[:-FOOTER_SIZE] + FOOTER_STRUCT.pack(magic, version, reserved, *[current[n] for n in names])


@pytest.mark.parametrize("fields, why", [
    ({"index_length": 2**63}, ""), ({"meta_length": 2**63 - 1}, ""), ({"file_count": 2**40}, ""),
    ({"file_count": 3}, ""), ({"index_start": HEADER_SIZE}, ""), ({"data_length": 2**63}, ""),
])
def test_forged_footer_fields(fields, why):
    tracemalloc.start()
    try:
        with pytest.raises(DesFormatError):
            _exercise(_forge_footer(VALID[None], **fields))
        assert tracemalloc.get_traced_memory()[1] < 64 * 1024 * 1024  # no allocation by declared size
    finally:
        tracemalloc.stop()


def _forge_entry(data: bytes, member: str, **fields: int) -> bytes:
    """Rewrite the fixed part of one index entry (offset, length, meta_offset, meta_length, flags)."""
    needle = struct.pack("<H", len(member)) + member.encode()
    at = data.rindex(needle) + len(needle)
    off, length, mo, ml, flags = ENTRY_FIXED_STRUCT.unpack_from(data, at)
    values = {"offset": off, "length": length, "meta_offset": mo, "meta_length": ml, "flags": flags} | fields
    return data[:at] + ENTRY_FIXED_STRUCT.pack(*values.values()) + data[at + ENTRY_FIXED_STRUCT.size:]


@pytest.mark.parametrize("fields", [
    {"length": 2**63}, {"offset": 2**64 - 1}, {"meta_length": 2**62}, {"offset": 0},  # overlaps the header
    {"flags": 0x80}, {"meta_offset": 2**63},
])
def test_forged_index_entries(fields):
    tracemalloc.start()
    try:
        with pytest.raises(DesFormatError):
            _exercise(_forge_entry(VALID[None], "a.txt", **fields))
        assert tracemalloc.get_traced_memory()[1] < 64 * 1024 * 1024
    finally:
        tracemalloc.stop()


def test_invalid_utf8_name_and_duplicates():
    data = VALID[None]
    bad_name = data.replace(b"dir/b.json", b"dir/\xff.json")
    with pytest.raises(DesFormatError, match="UTF-8|name"):
        _exercise(bad_name)
    dup = data.replace(b"dir/b.json", b"a.txt").replace(struct.pack("<H", 10) + b"a.txt", struct.pack("<H", 5) + b"a.txt")
    with pytest.raises(DesFormatError):
        _exercise(dup)
