"""Ours, read by the reference: ``compat="reference"`` / ``des pack --compat reference``, and the
compatibility table of spec/DES_FORMAT.md, checked with the strict reference reader of
tests/support/reference_des.py. Also where external members may be read from (``external_key``).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from connector.des import DesFormatError, DesReader, DesWriter
from connector.des.codecs import compress
from connector.errors import ConfigError
from tests.support import reference_des as ref

SPEC = (Path(__file__).resolve().parents[2] / "spec" / "DES_FORMAT.md").read_text()
DES = [sys.executable, "-m", "connector.cli"]
BIG = bytes(range(256)) * 20  # 5,120 bytes
MEMBERS = {"small.txt": b"hi\n", "docs/big.bin": BIG, "mid.csv": b"a,b\n" * 600, "empty": b""}


def write_all(w: DesWriter) -> dict[str, bytes]:
    """The same members through every writer path: add, add_stream, add_many."""
    for name, data in MEMBERS.items():
        w.add(name, data, {"k": name})
    w.add_stream("streamed.bin", io.BytesIO(BIG * 2))
    w.add_many(["r/0.json", "r/1.json"], b'{"a":1}\n{"a":2}\n', [8, 8])
    return {**MEMBERS, "streamed.bin": BIG * 2, "r/0.json": b'{"a":1}\n', "r/1.json": b'{"a":2}\n'}


def test_compat_reference_on_s3_is_read_right_by_the_reference_s3_reader(s3_endpoint, s3_bucket, s3):
    key = "day/2025-01-16/00.des"
    url = f"s3://{s3_bucket}/{key}"
    with DesWriter(url, fs=s3, big_file_threshold=1000, compat="reference") as w:
        expected = write_all(w)
    got = ref.read_s3(s3_endpoint.boto3_client(), s3_bucket, key)
    assert got == expected
    index = ref.parse(s3.cat_file(f"{s3_bucket}/{key}"))
    assert {n for n, e in index.items() if e.flags & ref.EXTERNAL} == {"docs/big.bin", "mid.csv", "streamed.bin"}
    assert not any(e.flags & ~ref.EXTERNAL for e in index.values())  # nothing compressed
    assert index["docs/big.bin"].meta["external_key"] == "day/2025-01-16/_bigFiles/docs/big.bin"
    assert s3.exists(f"{s3_bucket}/day/2025-01-16/_bigFiles/docs/big.bin")
    r = DesReader(url, fs=s3, cache=None)
    assert r.read_many(r.names()) == expected and r.verify() == len(expected)


def test_compat_reference_refuses_to_replace_another_containers_big_file(s3_bucket, s3):
    with DesWriter(f"s3://{s3_bucket}/d/00.des", fs=s3, big_file_threshold=1000, compat="reference") as w:
        w.add("big.bin", BIG)
    with pytest.raises(FileExistsError, match=r"_bigFiles/big\.bin already exists"):
        with DesWriter(f"s3://{s3_bucket}/d/01.des", fs=s3, big_file_threshold=1000, compat="reference") as w:
            w.add("big.bin", b"other" * 300)
    assert not s3.exists(f"{s3_bucket}/d/01.des")
    assert DesReader(f"s3://{s3_bucket}/d/00.des", fs=s3, cache=None).read("big.bin") == BIG


def test_compat_reference_refuses_what_the_reference_cannot_read(tmp_path, s3_bucket, s3):
    with pytest.raises(ConfigError, match="compressed flag"):
        DesWriter(tmp_path / "z.des", compression="zstd", compat="reference")
    with DesWriter(tmp_path / "a.des", compat="reference", big_file_threshold=1000) as w:
        with pytest.raises(ConfigError, match="compress"):
            w.add("x", b"x" * 100, compression="gzip")
        with pytest.raises(ConfigError, match="local reader ignores the external flag"):
            w.add("big.bin", BIG)
        w.add("ok", b"ok")
    assert ref.read_local((tmp_path / "a.des").read_bytes()) == {"ok": b"ok"}
    assert not (tmp_path / "_bigFiles").exists()
    with pytest.raises(ConfigError, match="root of a bucket"):
        with DesWriter(f"s3://{s3_bucket}/root.des", fs=s3, big_file_threshold=1000, compat="reference") as w:
            w.add("big.bin", BIG)
    with pytest.raises(ConfigError, match="unknown compat"):
        DesWriter(tmp_path / "b.des", compat="zip")


def test_compat_reference_local_without_big_files_is_read_right_by_the_reference_local_reader(tmp_path):
    path = tmp_path / "plain.des"
    with DesWriter(path, compat="reference", big_file_threshold=None) as w:
        expected = write_all(w)
    assert ref.read_local(path.read_bytes()) == expected


def test_des_pack_compat_reference(tmp_path, s3_endpoint, s3_bucket):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(BIG)
    (src / "a.txt").write_bytes(b"alpha\n")
    env = dict(os.environ, FSSPEC_S3_ENDPOINT_URL=s3_endpoint.endpoint_url)
    out = subprocess.run(DES + ["pack", str(src), "-o", f"s3://{s3_bucket}/p/x.des", "--compat", "reference",
                                "--big-file-threshold", "1000"], capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ref.read_s3(s3_endpoint.boto3_client(), s3_bucket, "p/x.des") == {"big.bin": BIG, "a.txt": b"alpha\n"}
    out = subprocess.run(DES + ["pack", str(src), "-o", str(tmp_path / "z.des"), "--compat", "reference",
                                "--compress", "zstd"], capture_output=True, timeout=120)
    assert out.returncode == 1 and b"--compat reference cannot be combined with --compress" in out.stderr
    assert b"--compat" in subprocess.run(DES + ["pack", "--help"], capture_output=True, timeout=60).stdout


# -- the compatibility table: each row's claim, for a container written locally and on S3 --------

ROWS = {
    # row label in the spec: DesWriter options
    "plain members (default)": {},
    "store dataranges (`add_many`, `{\"size\": n}` META)": {},
    "compressed members (`compression=`, `--compress`)": {"compression": "zstd"},
    "external members, default layout (`<container without .des>/_bigFiles/`)": {"big_file_threshold": 1000},
    "`compat=\"reference\"`, `--compat reference`": {"big_file_threshold": 1000, "compat": "reference"},
}
MEMBER = b"0123456789" * 500  # compresses, and is over the 1,000-byte threshold


def add(w: DesWriter, row: str) -> None:
    if row.startswith("store dataranges"):
        w.add_many(["m.txt"], MEMBER, [len(MEMBER)])
    else:
        w.add("m.txt", MEMBER)


def outcome(read, blob_of_container) -> str:
    """What a reference reader gives for the member, in the table's words."""
    try:
        got = read()["m.txt"]
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchKey"
        return "error: object not found"
    if got == MEMBER:
        return "correct"
    if got == compress(MEMBER, "zstd"):
        return "compressed bytes, no error"
    if got == blob_of_container()[: len(MEMBER)]:
        return "the container's first bytes, no error"
    return "other bytes"


@pytest.mark.parametrize("row", ROWS)
def test_compatibility_table_row(row, tmp_path, s3_endpoint, s3_bucket, s3):
    local_path = tmp_path / "c.des"
    try:
        with DesWriter(local_path, **ROWS[row]) as w:
            add(w, row)
        local = outcome(lambda: ref.read_local(local_path.read_bytes()), local_path.read_bytes)
    except ConfigError:
        local = "refused by the writer"
    key = "t/c.des"
    with DesWriter(f"s3://{s3_bucket}/{key}", fs=s3, **ROWS[row]) as w:
        add(w, row)
    remote = outcome(lambda: ref.read_s3(s3_endpoint.boto3_client(), s3_bucket, key),
                     lambda: s3.cat_file(f"{s3_bucket}/{key}"))
    assert f"| {row} | {local} | {remote} |" in SPEC


# -- external_key: what a reader follows, and what it refuses ------------------------------------


ABSENT = object()


def forged(external_key: object, name: str = "m.bin", length: int = 4) -> bytes:
    """A container of one external member whose META says ``external_key`` (``ABSENT``: no key),
    written by hand: our writer never writes such keys."""
    fields = {"size": length, "is_external": True, "external_key": external_key}
    if external_key is ABSENT:
        del fields["external_key"]
    meta = json.dumps(fields).encode()
    raw = name.encode()
    index = struct.pack("<H", len(raw)) + raw + struct.pack("<QQQQI", 0, length, 16, len(meta), 1)
    meta_start, index_start = 16, 16 + len(meta)
    footer = struct.pack("<8sB7s7Q", b"DESFOOT1", 1, b"\0" * 7, 16, 0, meta_start, len(meta), index_start,
                         len(index), 1)
    return b"DESHEAD1\x01" + b"\0" * 7 + meta + index + footer


@pytest.mark.parametrize("key", ["../../etc/passwd", "_bigFiles/../../m.bin", "/etc/_bigFiles/m.bin",
                                 "_bigFiles/other.bin", "file:///tmp/_bigFiles/m.bin", "a\\_bigFiles\\m.bin",
                                 "x/_bigFiles//m.bin", 42])
def test_a_local_container_refuses_external_keys_outside_its_folder(tmp_path, key):
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "c.des").write_bytes(forged(key))
    (tmp_path / "box" / "_bigFiles").mkdir()
    (tmp_path / "box" / "_bigFiles" / "m.bin").write_bytes(b"safe")
    with pytest.raises(DesFormatError, match="external_key"):
        DesReader(tmp_path / "box" / "c.des", cache=None).read("m.bin")


def test_a_local_external_key_may_name_a_bigfiles_folder_inside_the_containers_folder(tmp_path):
    (tmp_path / "c.des").write_bytes(forged("older/_bigFiles/m.bin"))
    (tmp_path / "older" / "_bigFiles").mkdir(parents=True)
    (tmp_path / "older" / "_bigFiles" / "m.bin").write_bytes(b"moved")
    with pytest.raises(DesFormatError, match="external object .* is longer"):
        DesReader(tmp_path / "c.des", cache=None).read("m.bin")  # 5 bytes where the index says 4
    (tmp_path / "older" / "_bigFiles" / "m.bin").write_bytes(b"here")
    assert DesReader(tmp_path / "c.des", cache=None).read("m.bin") == b"here"


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "m.bin").write_bytes(b"evil")
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "c.des").write_bytes(forged("_bigFiles/m.bin"))
    (tmp_path / "box" / "_bigFiles").symlink_to(outside)
    with pytest.raises(DesFormatError, match="external_key"):
        DesReader(tmp_path / "box" / "c.des", cache=None).read("m.bin")


def test_an_s3_external_key_names_an_object_of_the_same_bucket_only(s3_bucket, s3):
    s3.pipe_file(f"{s3_bucket}/elsewhere/_bigFiles/m.bin", b"same")
    s3.pipe_file(f"{s3_bucket}/x/a.des", forged("elsewhere/_bigFiles/m.bin"))
    assert DesReader(f"s3://{s3_bucket}/x/a.des", fs=s3, cache=None).read("m.bin") == b"same"
    for key in (f"s3://{s3_bucket}/elsewhere/_bigFiles/m.bin", "/elsewhere/_bigFiles/m.bin", "../_bigFiles/m.bin"):
        s3.pipe_file(f"{s3_bucket}/x/b.des", forged(key))
        with pytest.raises(DesFormatError, match="external_key"):
            DesReader(f"s3://{s3_bucket}/x/b.des", fs=s3, cache=None).read("m.bin")


def test_both_layouts_are_looked_up_and_a_miss_names_every_place_tried(s3_bucket, s3):
    s3.pipe_file(f"{s3_bucket}/x/c.des", forged(ABSENT))
    s3.pipe_file(f"{s3_bucket}/x/c/_bigFiles/m.bin", b"ours")  # this project's layout
    assert DesReader(f"s3://{s3_bucket}/x/c.des", fs=s3, cache=None).read("m.bin") == b"ours"
    s3.pipe_file(f"{s3_bucket}/y/d.des", forged(ABSENT))
    s3.pipe_file(f"{s3_bucket}/y/_bigFiles/m.bin", b"refs")  # the reference's S3 reader's
    assert DesReader(f"s3://{s3_bucket}/y/d.des", fs=s3, cache=None).read("m.bin") == b"refs"
    # A declared key whose object is gone (the container was copied with its _bigFiles/): the
    # layouts next to the container are tried next.
    s3.pipe_file(f"{s3_bucket}/y/e.des", forged("gone/_bigFiles/m.bin"))
    s3.pipe_file(f"{s3_bucket}/y/e/_bigFiles/m.bin", b"copy")
    assert DesReader(f"s3://{s3_bucket}/y/e.des", fs=s3, cache=None).read("m.bin") == b"copy"
    s3.pipe_file(f"{s3_bucket}/z/f.des", forged("gone/_bigFiles/m.bin"))
    with pytest.raises(DesFormatError) as caught:
        DesReader(f"s3://{s3_bucket}/z/f.des", fs=s3, cache=None).read("m.bin")
    for place in ("gone/_bigFiles/m.bin", "z/f/_bigFiles/m.bin", "z/_bigFiles/m.bin"):
        assert f"{s3_bucket}/{place}" in str(caught.value)
