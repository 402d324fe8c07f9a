"""Containers written by the reference DES writer (tests/des/vectors/, see its README), read by
``DesReader``, the ``des`` CLI and ``des://``: every member's bytes and sha256 against the vectors'
``expected.json``, locally and from the S3 test server.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.cli.container import escape_name, unescape_name
from connector.des import DesReader, IndexCache
from connector.des.format import parse_meta
from connector.des.fs import DesFileSystem

VECTORS = Path(__file__).resolve().parent / "vectors"
LOCAL = VECTORS / "local"
S3_TREE = VECTORS / "s3"
EXPECTED = json.loads((LOCAL / "expected.json").read_text())
S3_EXPECTED = json.loads((S3_TREE / "expected.json").read_text())
S3_KEY = "ref/2025-01-16/shard_00.des"
DES = [sys.executable, "-m", "connector.cli"]
# META the reference stored with Python's json.dumps, which expected.json can only spell as text.
SPECIAL_META = {"meta_nan.des", "meta_lone_surrogate_value.des", "meta_bigint.des"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def last_copies(container: str) -> dict[str, dict]:
    """name -> the member the reference reader returns (the last one written), in first-seen order."""
    return {m["name"]: m for m in EXPECTED[container]["members_in_write_order"]}


def des(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(DES + list(args), capture_output=True, timeout=120, env=env)


def test_every_vector_is_here():
    assert sorted(EXPECTED) == sorted(p.name for p in LOCAL.glob("*.des")) and len(EXPECTED) == 22


@pytest.mark.parametrize("container", sorted(EXPECTED))
def test_des_reader_reads_every_local_vector(container):
    members = last_copies(container)
    r = DesReader(LOCAL / container, cache=None)
    assert r.names() == list(members)
    for name, m in members.items():
        data = r.read(name)
        assert (len(data), sha(data)) == (m["size"], m["sha256"]), name
    got = r.read_many(list(members))
    assert {n: sha(d) for n, d in got.items()} == {n: m["sha256"] for n, m in members.items()}
    assert r.verify() == len(EXPECTED[container]["members_in_write_order"])  # every entry, duplicates too
    if container not in SPECIAL_META:
        for name, m in members.items():
            assert r.meta(name) == {**(m["meta_given"] or {}), "size": m["size"]}, name


@pytest.mark.parametrize("container", sorted(EXPECTED))
def test_des_filesystem_reads_every_local_vector(container):
    members = last_copies(container)
    fs = DesFileSystem(fo=str(LOCAL / container), index_cache=None)
    assert sorted(fs.find("")) == sorted(members)
    for name, m in members.items():
        assert sha(fs.cat_file(name)) == m["sha256"], name
        assert sha(fs.cat(name)) == m["sha256"], name  # a literal name, never a glob
        with fs.open(name) as f:
            assert sha(f.read()) == m["sha256"], name
        assert fs.info(name)["size"] == m["size"], name
    if members:
        assert {n: sha(d) for n, d in fs.cat(list(members)).items()} == {n: m["sha256"] for n, m in members.items()}


@pytest.mark.parametrize("container", sorted(EXPECTED))
def test_des_cli_cats_every_local_vector(container):
    members = last_copies(container)
    if not members:
        out = des("ls", str(LOCAL / container))
        assert out.returncode == 0 and out.stdout == b"", out.stderr
        return
    # Names as 'des ls' prints them (see test_ls_escapes_...), given back with -b: NUL cannot travel
    # in argv otherwise. One process per container keeps the sweep fast.
    out = des("cat", "-b", str(LOCAL / container), "--", *map(escape_name, members))
    assert out.returncode == 0, out.stderr[:500]
    assert split_by_size(out.stdout, members) == {n: (m["size"], m["sha256"]) for n, m in members.items()}


def split_by_size(stdout: bytes, members: dict[str, dict]) -> dict[str, tuple[int, str]]:
    """``des cat``'s output cut into members by their expected sizes: name -> (size, sha256)."""
    out, at = {}, 0
    for name, m in members.items():
        piece = stdout[at : at + m["size"]]
        out[name], at = (len(piece), sha(piece)), at + m["size"]
    assert at == len(stdout), "more bytes than the members hold"
    return out


def test_meta_as_python_json_wrote_it():
    assert math.isnan(DesReader(LOCAL / "meta_nan.des").meta("payload.txt")["score"])
    big = DesReader(LOCAL / "meta_bigint.des").meta("payload.txt")["id"]
    assert type(big) is int and big == 1180591620717411303424 == 2**70
    assert DesReader(LOCAL / "meta_lone_surrogate_value.des").meta("payload.txt")["s"] == "\ud800"
    out = des("info", str(LOCAL / "meta_bigint.des"), "payload.txt")
    assert out.returncode == 0 and b'"id": 1180591620717411303424' in out.stdout


def test_meta_that_claims_external_or_a_codec_without_the_flag_is_read_by_the_flags():
    # The flags decide, as in the reference: META keys alone change nothing.
    fake = DesReader(LOCAL / "meta_fake_external_key.des")
    assert fake.meta("payload.txt")["external_key"] == "../../etc/passwd"
    assert sha(fake.read("payload.txt")) == last_copies("meta_fake_external_key.des")["payload.txt"]["sha256"]
    codec = DesReader(LOCAL / "meta_codec_without_flag.des")
    assert sha(codec.read("payload.txt")) == last_copies("meta_codec_without_flag.des")["payload.txt"]["sha256"]


def test_duplicate_names_last_copy_wins_every_entry_listed_and_reported():
    path = str(LOCAL / "duplicate.des")
    written = EXPECTED["duplicate.des"]["members_in_write_order"]
    r = DesReader(path)
    assert r.names() == ["dup.txt", "other.txt"] and r.duplicates() == {"dup.txt": 2}
    assert sha(r.read("dup.txt")) == written[2]["sha256"] != written[0]["sha256"]
    listing = des("ls", "-l", path).stdout.decode().splitlines()
    assert [line.split() for line in listing] == [["5", "16", "s", "dup.txt"], ["1", "21", "-", "other.txt"],
                                                  ["7", "22", "-", "dup.txt"]]
    out = des("verify", path)
    assert out.returncode == 0, out.stderr
    assert b"3 members verified" in out.stdout and b"1 duplicate name(s)" in out.stdout and b"'dup.txt' (2 entries)" in out.stdout
    info = json.loads(des("info", path).stdout)
    assert (info["members"], info["footer"]["file_count"], info["duplicate_names"]) == (2, 3, 1)
    fs = DesFileSystem(fo=path, index_cache=None)
    assert fs.ls("", detail=False) == ["dup.txt", "other.txt"] and sha(fs.cat_file("dup.txt")) == written[2]["sha256"]


def test_ls_escapes_control_characters_as_ls_does():
    assert des("ls", str(LOCAL / "odd_newline.des")).stdout == b"a\\nb\nok.txt\n"
    assert des("ls", str(LOCAL / "odd_tab.des")).stdout == b"a\\tb\nok.txt\n"
    assert des("ls", "-l", str(LOCAL / "odd_nul.des")).stdout.splitlines()[0].split()[-1] == b"a\\000b"


def test_a_name_starting_with_a_dash_goes_after_double_dash(tmp_path):
    from connector.des import DesWriter

    box = tmp_path / "d.des"
    with DesWriter(box) as w:
        w.add("-rf", b"dash")
    assert des("cat", str(box), "--", "-rf").stdout == b"dash"
    info = des("info", str(box), "--", "-rf")
    assert info.returncode == 0 and json.loads(info.stdout)["name"] == "-rf"
    for command in ("cat", "info"):
        assert b"'--'" in des(command, "--help").stdout


# -- the S3 tree: external members in <folder>/_bigFiles/, as the reference lays them out ---------


@pytest.fixture(scope="module")
def s3_vectors(s3_endpoint):
    """The vectors' S3 tree uploaded as it is, object by object, to a fresh bucket."""
    bucket = f"interop-{uuid.uuid4().hex[:12]}"
    client = s3_endpoint.boto3_client()
    client.create_bucket(Bucket=bucket)
    root = S3_TREE / "interop"
    for path in root.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
    return f"s3://{bucket}/{S3_KEY}"


def _check_s3_members(got: dict[str, bytes]) -> None:
    assert {n: (len(d), sha(d)) for n, d in got.items()} == {n: (m["size"], m["sha256"]) for n, m in S3_EXPECTED.items()}


def test_des_reader_reads_the_reference_s3_container(s3_vectors, s3_endpoint):
    r = DesReader(s3_vectors, storage_options=s3_endpoint.storage_options(), cache=None)
    assert sorted(r.names()) == sorted(S3_EXPECTED)
    assert {n: r.info(n).external for n in r.names()} == {n: m["external_expected"] for n, m in S3_EXPECTED.items()}
    _check_s3_members({n: r.read(n) for n in r.names()})
    _check_s3_members(r.read_many(r.names()))
    assert r.verify() == 5
    with r.open("big.bin") as f:
        f.seek(1000)
        assert f.read(100) == r.read("big.bin")[1000:1100]


def test_the_reference_s3_tree_read_from_a_local_copy():
    r = DesReader(S3_TREE / "interop" / S3_KEY, cache=None)
    _check_s3_members(r.read_many(r.names()))


def test_des_filesystem_and_pandas_read_the_reference_s3_container(s3_vectors, s3_endpoint):
    so = s3_endpoint.storage_options()
    fs = DesFileSystem(fo=s3_vectors, target_options=so, index_cache=None)
    _check_s3_members(fs.cat(sorted(S3_EXPECTED)))
    _check_s3_members({n: fs.open(n).read() for n in S3_EXPECTED})
    assert {n: fs.info(n)["size"] for n in S3_EXPECTED} == {n: m["size"] for n, m in S3_EXPECTED.items()}
    with fsspec.open(f"des://big.bin::{s3_vectors}", s3=so) as f:
        assert sha(f.read()) == S3_EXPECTED["big.bin"]["sha256"]
    frame = pd.read_csv(f"des://users.csv::{s3_vectors}", storage_options={"s3": so})
    raw = fs.cat_file("users.csv")
    assert len(frame) == raw.count(b"\n") - 1 and sha(raw) == S3_EXPECTED["users.csv"]["sha256"]


def test_des_cli_reads_the_reference_s3_container(s3_vectors, s3_endpoint):
    env = dict(os.environ, FSSPEC_S3_ENDPOINT_URL=s3_endpoint.endpoint_url)
    names = sorted(S3_EXPECTED)
    out = des("cat", s3_vectors, *names, env=env)
    assert out.returncode == 0, out.stderr
    expected = {n: S3_EXPECTED[n] for n in names}
    assert split_by_size(out.stdout, expected) == {n: (m["size"], m["sha256"]) for n, m in expected.items()}
    out = des("verify", s3_vectors, env=env)
    assert out.returncode == 0 and b"5 members verified" in out.stdout, out.stderr
    assert sorted(des("ls", s3_vectors, env=env).stdout.decode().split()) == names


def test_an_external_member_costs_one_get(s3_vectors, s3_endpoint, s3_proxy):
    so = s3_proxy.storage_options(s3_endpoint)
    cache = IndexCache()
    r = DesReader(s3_vectors, storage_options=so, cache=cache)
    r.names()
    with s3_proxy.window() as w:
        assert sha(r.read("big.bin")) == S3_EXPECTED["big.bin"]["sha256"]
    assert w.count() == w.count("GET") == 1, w  # no HEAD for the size: the index has it
    fs = DesFileSystem(fo=s3_vectors, target_options=so, index_cache=cache)
    with s3_proxy.window() as w:
        assert sha(fs.cat_file("mid.dat")) == S3_EXPECTED["mid.dat"]["sha256"]
    assert w.count() == w.count("GET") == 1, w


# -- META as Python's json writes it, and names as 'des ls' prints them: property-based -----------

_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
            | st.text() | st.sampled_from(["\ud800", "x\udfffy", "\udbff\udbff"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                       max_leaves=12)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(meta=st.dictionaries(st.text(), _VALUES, max_size=5), compact=st.booleans())
def test_meta_parses_whatever_python_json_dumps_writes(meta, compact):
    raw = json.dumps(meta, separators=(",", ":") if compact else None).encode()
    parsed = parse_meta(raw, "c.des", "m")
    assert json.dumps(parsed) == json.dumps(meta)  # same types too: 1 vs 1.0, exact big integers


@settings(max_examples=300, deadline=None, derandomize=True)
@given(name=st.text(min_size=1))
def test_escaped_names_are_one_line_and_read_back(name):
    shown = escape_name(name)
    assert "\n" not in shown and "\r" not in shown and "\0" not in shown
    assert unescape_name(shown) == name
