"""Hostile containers: any mutation or truncation of a valid one gives DesFormatError, nothing else."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.des import DesFormatError, DesReader, DesWriter
from connector.des.format import ENTRY_FIXED_STRUCT, FOOTER_SIZE, FOOTER_STRUCT, HEADER_SIZE


def _valid(compression: str | None = None) -> bytes:
    import tempfile
    import os

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
    alone = {}
    for n in names:
        r.info(n)
        r.meta(n)
        alone[n] = r.read(n)
    # Whatever a hostile index says, a batch read agrees with one-by-one reads.
    assert r.read_many(names) == alone
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


def test_invalid_utf8_name():
    bad_name = VALID[None].replace(b"dir/b.json", b"dir/\xff.json")
    with pytest.raises(DesFormatError, match="UTF-8|name"):
        _exercise(bad_name)
    # (Duplicate names are read as the reference reads them, the last entry winning:
    # test_vectors.py::test_duplicate_names_last_copy_wins_every_entry_listed_and_reported.)


# -- the same through a filesystem: size unknown, tail read as a suffix range ---------------------

_MEMFS = None


def _through_fs(data: bytes) -> None:
    """Exercise ``data`` stored on fsspec's memory filesystem: the reader does not know the size
    up front (as with S3, where no HEAD is made) and takes it from the footer."""
    import fsspec
    import uuid

    global _MEMFS
    _MEMFS = _MEMFS or fsspec.filesystem("memory")
    path = f"/fuzz/{uuid.uuid4().hex}.des"
    _MEMFS.pipe_file(path, data)
    try:
        r = DesReader(path, fs=_MEMFS, cache=None, tail_size=FOOTER_SIZE + 64)  # small tail: second reads too
        names = r.names()
        alone = {}
        for n in names:
            r.meta(n)
            alone[n] = r.read(n)
        assert r.read_many(names) == alone
        r.verify()
    finally:
        _MEMFS.rm_file(path)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(codec=st.sampled_from([None, "zstd"]), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                           min_size=1, max_size=4),
       cut=st.integers(0, 10**6), cut_front=st.booleans(), cut_it=st.booleans())
def test_mutated_or_truncated_on_a_filesystem_give_only_format_errors(codec, edits, cut, cut_front, cut_it):
    data = bytearray(VALID[codec])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut_it:
        cut = cut % (len(data) - 1) + 1
        data = data[cut:] if cut_front else data[:cut]
    tracemalloc.start()
    try:
        _through_fs(bytes(data))
    except DesFormatError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


# -- forged fields: any value in any footer or index field ----------------------------------------

_FOOTER_FIELDS = ["data_start", "data_length", "meta_start", "meta_length", "index_start", "index_length", "file_count"]
_ENTRY_FIELDS = ["offset", "length", "meta_offset", "meta_length"]
_HOSTILE_INTS = st.one_of(
    st.sampled_from([0, 1, 15, 16, 17, 72, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 4096),
)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(footer=st.dictionaries(st.sampled_from(_FOOTER_FIELDS), _HOSTILE_INTS, max_size=3),
       entries=st.dictionaries(st.tuples(st.sampled_from(["a.txt", "dir/b.json", "c", "z.bin"]),
                                         st.sampled_from(_ENTRY_FIELDS)), _HOSTILE_INTS, max_size=3),
       relative=st.booleans(), via_fs=st.booleans())
def test_forged_fields_give_only_format_errors_and_no_big_allocation(footer, entries, relative, via_fs):
    data = VALID[None]
    for (member, field), value in entries.items():
        data = _forge_entry(data, member, **{field: value})
    if relative:  # near-miss values: off by a little from the true ones (overlaps, overruns by one)
        names = _FOOTER_FIELDS
        current = dict(zip(names, FOOTER_STRUCT.unpack_from(data, len(data) - FOOTER_SIZE)[3:]))
        footer = {k: max(0, current[k] + (v % 9) - 4) for k, v in footer.items()}
    data = _forge_footer(data, **footer)
    tracemalloc.start()
    try:
        (_through_fs if via_fs else _exercise)(data)
    except DesFormatError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, (footer, entries)


def test_index_overrunning_its_region_and_count_mismatch_are_named():
    data = VALID[None]
    current = dict(zip(_FOOTER_FIELDS, FOOTER_STRUCT.unpack_from(data, len(data) - FOOTER_SIZE)[3:]))
    with pytest.raises(DesFormatError, match="overruns the index region"):
        _exercise(_forge_footer(data, index_length=current["index_length"] - 1))
    with pytest.raises(DesFormatError, match="declares 5 members"):
        _exercise(_forge_footer(data, file_count=5))
    with pytest.raises(DesFormatError, match="declares 3 members, index holds 4"):
        _exercise(_forge_footer(data, file_count=3))
    with pytest.raises(DesFormatError, match="overlaps"):
        _exercise(_forge_footer(data, meta_start=current["meta_start"] - 1))
    with pytest.raises(DesFormatError, match="outside the DATA region"):
        _exercise(_forge_entry(data, "z.bin", offset=current["data_start"] + current["data_length"] - 10))


def test_overlapping_members_read_the_same_alone_and_in_a_batch():
    # A hostile index may make members overlap (and drop META so no size check catches it):
    # read_many must still return each member's full declared bytes, as read() does.
    data = VALID[None]
    a = _forge_entry(data, "a.txt", meta_length=0)
    start = ENTRY_FIXED_STRUCT.unpack_from(a, a.rindex(struct.pack("<H", 5) + b"a.txt") + 7)[0]
    forged = _forge_entry(a, "dir/b.json", offset=start + 10, meta_length=0)
    r = DesReader(forged, cache=None)
    alone = r.read("a.txt")
    assert len(alone) == 120
    assert r.read_many(["a.txt", "dir/b.json"]) == {"a.txt": alone, "dir/b.json": r.read("dir/b.json")}
