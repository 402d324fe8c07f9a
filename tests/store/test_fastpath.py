"""The vectorised record path: DesWriter.add_many and generated member names, byte for byte."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from connector.des import DesReader, DesWriter
from connector.errors import MemberNameError
from connector.store.names import record_name, record_names
from tests.des.test_container import reference_style_container


def records(n: int, start: int = 0) -> tuple[list[bytes], bytes, list[int]]:
    lines = [b'{"id":%d,"s":"%s"}\n' % (i, b"x" * (i % 7)) for i in range(start, start + n)]
    return lines, b"".join(lines), [len(x) for x in lines]


def test_record_names_match_the_scalar_format():
    keys = [0, 1, 9, 10, 123456789, 10**19 - 1, 2**63 - 1]
    for k in keys:
        assert record_names(k, 1)[0].decode() == record_name(k)
    assert [n.decode() for n in record_names(98, 4)] == [record_name(k) for k in range(98, 102)]
    # Runs whose keys cross a power of ten (the number of varying digits changes inside the run).
    for first, count in [(0, 12), (9, 3), (995, 10), (10**19 - 5, 5), (0, 100_001)]:
        assert [n.decode() for n in record_names(first, count)] == [record_name(k) for k in range(first, first + count)]
    assert len(record_names(5, 0)) == 0


@pytest.mark.parametrize("as_array", [True, False])
def test_add_many_is_byte_identical_to_the_reference_layout(tmp_path, as_array):
    lines, data, lengths = records(250, start=7)
    names = [record_name(k) for k in range(7, 257)]
    path = tmp_path / "c.des"
    with DesWriter(str(path)) as w:
        # Two runs and a plain member in between: offsets must continue across them.
        w.add_many(record_names(7, 100) if as_array else names[:100], b"".join(lines[:100]), lengths[:100],
                   check_names=not as_array)
        w.add_many(record_names(107, 150) if as_array else names[100:], b"".join(lines[100:]), lengths[100:],
                   check_names=not as_array)
        assert w.count == 250
    # Each member's META carries its CRC-32, the first one also the DATA region's.
    metas = [{"crc32": zlib.crc32(line)} for line in lines]
    metas[0]["data_crc32"] = f"{zlib.crc32(b''.join(lines)):08x}"
    expected = reference_style_container([(n, line, m) for n, line, m in zip(names, lines, metas)])
    assert path.read_bytes() == expected
    reader = DesReader(str(path))
    assert reader.read(record_name(200)) == lines[193]
    assert reader.meta(record_name(8)) == {"crc32": zlib.crc32(lines[1]), "size": lengths[1]}


def test_add_many_with_names_of_different_lengths_and_plain_members(tmp_path):
    names, blobs = ["a", "bb/c.txt", "ééé"], [b"1", b"22", b""]
    path = tmp_path / "mixed.des"
    with DesWriter(str(path)) as w:
        w.add_many(names, b"".join(blobs), [len(b) for b in blobs])
        w.add("zz", b"tail")
        w.add_many([], b"", [])
    reader = DesReader(str(path))
    assert reader.names() == [*names, "zz"]
    assert [reader.read(n) for n in names] == blobs and reader.read("zz") == b"tail"


def test_add_many_refuses_bad_input(tmp_path):
    with DesWriter(str(tmp_path / "bad.des")) as w:
        with pytest.raises(ValueError, match="one length per name"):
            w.add_many(["a", "b"], b"abc", [1, 1])
        with pytest.raises(MemberNameError, match="duplicate"):
            w.add_many(["a", "a"], b"ab", [1, 1])
        with pytest.raises(MemberNameError):
            w.add_many(["../up"], b"a", [1])
        with pytest.raises(TypeError, match="dtype 'S'"):
            w.add_many(np.array([1, 2]), b"ab", [1, 1], check_names=False)
        w.add_many(["ok"], b"k", [1])
    assert DesReader(str(tmp_path / "bad.des")).names() == ["ok"]
