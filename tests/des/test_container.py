"""DES v1 writer and reader: members, compression, _bigFiles, atomicity. Compatibility with the
reference is tested against its own containers in test_vectors.py and test_compat.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.des import DesFormatError, DesReader, DesWriter
from connector.des.format import FLAG_COMPRESSED, FLAG_EXTERNAL
from connector.des.writer import line_crcs, member_crcs
from connector.errors import MemberNameError
from tests.support import reference_des as ref


def reference_style_container(members: list[tuple[str, bytes, dict]]) -> bytes:
    """The bytes DESIGN.md's v1 layout gives for ``members`` (plain, inside, META ``{**meta, "size"}``).

    Written independently of connector.des (plain struct calls) for byte-identity checks of our
    writer (tests/store/test_fastpath.py). Not a stand-in for the reference: compatibility is
    tested on the reference's own containers (test_vectors.py) and with its readers' rules
    (tests/support/reference_des.py, test_compat.py).
    """
    out = bytearray(b"DESHEAD1" + bytes([1]) + b"\0" * 7)
    data_start = len(out)
    entries, metas = [], bytearray()
    for name, data, meta in members:
        offset = len(out)
        out += data
        m = json.dumps({**meta, "size": len(data)}, separators=(",", ":")).encode()
        entries.append((name, offset, len(data), len(metas), len(m)))
        metas += m
    data_length = len(out) - data_start
    meta_start = len(out)
    out += metas
    index_start = len(out)
    for name, offset, length, meta_rel, meta_len in entries:
        raw = name.encode()
        out += struct.pack("<H", len(raw)) + raw + struct.pack("<QQQQI", offset, length, meta_start + meta_rel, meta_len, 0)
    index_length = len(out) - index_start
    out += struct.pack(
        "<8sB7sQQQQQQQ", b"DESFOOT1", 1, b"\0" * 7, data_start, data_length, meta_start, len(metas), index_start, index_length, len(entries)
    )
    return bytes(out)


def test_reference_reader_reads_our_container(tmp_path):
    # The reference's rules, applied by a reader independent of connector.des (plain struct/json).
    path = tmp_path / "c.des"
    with DesWriter(path) as w:
        w.add("x/1.json", b'{"a":1}\n', {"k": "v"})
        w.add("x/2.json", b'{"a":2}\n')
    blob = path.read_bytes()
    assert ref.read_local(blob) == {"x/1.json": b'{"a":1}\n', "x/2.json": b'{"a":2}\n'}
    meta = ref.parse(blob)["x/1.json"].meta
    assert meta == {"k": "v", "size": 8, "sha256": hashlib.sha256(b'{"a":1}\n').hexdigest()}
    assert w.sha256 == hashlib.sha256(blob).hexdigest() and w.size == len(blob)


def test_data_region_is_json_lines(tmp_path):
    path = tmp_path / "records.des"
    with DesWriter(path) as w:
        for i in range(3):
            w.add(f"{i:020d}.json", json.dumps({"i": i}, separators=(",", ":")).encode() + b"\n")
    r = DesReader(path)
    f = r.footer
    lines = r.read_range(f.data_start, f.data_start + f.data_length).splitlines()
    assert [json.loads(x)["i"] for x in lines] == [0, 1, 2]


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_compressed_members_round_trip(tmp_path, codec):
    path = tmp_path / "z.des"
    payload = b"abc" * 10_000
    with DesWriter(path, compression=codec) as w:
        info = w.add("big.txt", payload)
        tiny = w.add("tiny", b"x")  # would grow: stored plain
    assert info.flags & FLAG_COMPRESSED and info.length < len(payload)
    assert not tiny.flags & FLAG_COMPRESSED
    r = DesReader(path)
    assert r.read("big.txt") == payload and r.meta("big.txt")["codec"] == codec
    assert r.open("big.txt").read() == payload


def test_big_members_go_to_bigfiles_and_are_read_back(tmp_path):
    path = tmp_path / "shard.des"
    big = os.urandom(5000)
    with DesWriter(path, big_file_threshold=4096) as w:
        info = w.add("docs/big.bin", big)
        w.add_stream("docs/streamed.bin", io.BytesIO(big * 2))
        w.add("small", b"s")
    assert info.flags & FLAG_EXTERNAL
    assert (tmp_path / "shard" / "_bigFiles" / "docs" / "big.bin").read_bytes() == big
    r = DesReader(path)
    assert r.read("docs/big.bin") == big and r.read("docs/streamed.bin") == big * 2
    assert r.meta("docs/big.bin")["is_external"] is True
    assert r.read_many(["small", "docs/big.bin"]) == {"small": b"s", "docs/big.bin": big}
    assert r.verify() == 3


def test_add_stream_copies_in_chunks(tmp_path):
    path = tmp_path / "s.des"
    payload = os.urandom(3 * 1024 * 1024)
    with DesWriter(path, big_file_threshold=None) as w:
        w.add_stream("blob", io.BytesIO(payload), size=len(payload))
    r = DesReader(path)
    f = r.open("blob")
    f.seek(1024 * 1024)
    assert f.read(10) == payload[1024 * 1024 : 1024 * 1024 + 10]
    assert r.read("blob") == payload


@pytest.mark.parametrize(
    "name", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "back\\slash", "nul\x00", "ctl\x07", "trailing/", "x" * 65536]
)
def test_bad_member_names_are_refused(tmp_path, name):
    with DesWriter(tmp_path / "n.des") as w:
        with pytest.raises(MemberNameError):
            w.add(name, b"")
        w.add("ok", b"")


def test_duplicate_names_are_refused(tmp_path):
    with DesWriter(tmp_path / "d.des") as w:
        w.add("a", b"1")
        with pytest.raises(MemberNameError, match="duplicate"):
            w.add("a", b"2")


def test_exception_inside_with_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with DesWriter(tmp_path / "gone.des", big_file_threshold=10) as w:
            w.add("big", b"x" * 100)
            w.add("small", b"y")
            raise RuntimeError("boom")
    assert list(tmp_path.rglob("*.des")) == [] and list(tmp_path.rglob("*.partial")) == []
    assert not (tmp_path / "gone" / "_bigFiles" / "big").exists()


def test_container_is_invisible_until_closed(tmp_path):
    w = DesWriter(tmp_path / "late.des")
    w.add("a", b"1")
    assert not (tmp_path / "late.des").exists()
    w.close()
    assert DesReader(tmp_path / "late.des").read("a") == b"1"


def test_refuses_to_overwrite_unless_asked(tmp_path):
    with DesWriter(tmp_path / "o.des") as w:
        w.add("a", b"1")
    with pytest.raises(FileExistsError):
        DesWriter(tmp_path / "o.des")
    with DesWriter(tmp_path / "o.des", overwrite=True) as w:
        w.add("a", b"2")
    assert DesReader(tmp_path / "o.des").read("a") == b"2"


def test_checksum_mismatch_is_reported(tmp_path):
    path = tmp_path / "c.des"
    with DesWriter(path) as w:
        w.add("a", b"hello world")
    blob = bytearray(path.read_bytes())
    blob[16] ^= 0xFF  # first data byte
    with pytest.raises(DesFormatError, match="checksum"):
        DesReader(bytes(blob)).read("a")
    with pytest.raises(DesFormatError, match="failed verification"):
        DesReader(bytes(blob)).verify()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:50], "truncated|bad footer"),
        (lambda b: b[:-1], "bad footer magic|outside"),
        (lambda b: b[:-72] + b"XXXXXXXX" + b[-64:], "bad footer magic"),
        (lambda b: b[:-64] + bytes([9]) + b[-63:], "unsupported DES version"),
        (lambda b: b"NOTDES!!" + b[8:], "bad header magic"),
    ],
)
def test_bad_containers_raise_des_format_error(tmp_path, mutate, message):
    path = tmp_path / "m.des"
    with DesWriter(path) as w:
        w.add("a", b"hello")
    with pytest.raises(DesFormatError, match=message):
        DesReader(mutate(path.read_bytes())).verify()


def test_on_s3_atomic_write_and_read(s3_endpoint, s3_bucket, s3):
    url = f"s3://{s3_bucket}/x/c.des"
    so = s3_endpoint.storage_options()
    w = DesWriter(url, storage_options=so, big_file_threshold=1000)
    w.add("a", b"1")
    w.add("big", b"z" * 5000)
    assert not s3.exists(f"{s3_bucket}/x/c.des")
    w.close()
    assert s3.exists(f"{s3_bucket}/x/c.des") and s3.exists(f"{s3_bucket}/x/c/_bigFiles/big")
    r = DesReader(url, storage_options=so)
    assert r.read("a") == b"1" and r.read("big") == b"z" * 5000 and r.verify() == 2
    assert r.meta("big")["external_key"] == "x/c/_bigFiles/big"

    with pytest.raises(RuntimeError):
        with DesWriter(f"s3://{s3_bucket}/x/d.des", storage_options=so, big_file_threshold=1000) as w2:
            w2.add("big", b"z" * 5000)
            raise RuntimeError("boom")
    assert not s3.exists(f"{s3_bucket}/x/d.des") and not s3.exists(f"{s3_bucket}/x/d/_bigFiles/big")
    assert not s3.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads")


@given(lines=st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")), max_size=50))
@settings(max_examples=100, deadline=None)
def test_line_crcs_are_zlibs_crc32_of_each_line_and_its_newline(lines):
    """The store's writer hands these to add_many instead of slicing the joined DATA: they must
    be exactly the CRC-32s the reader checks."""
    assert line_crcs(lines).tolist() == [zlib.crc32(line + b"\n") for line in lines]
    data = b"".join(line + b"\n" for line in lines)
    assert member_crcs(data, np.array([len(line) + 1 for line in lines], np.int64)).tolist() == line_crcs(lines).tolist()
