"""Corrupt bytes in a record datarange are an error on every read path, never data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import pytest

from connector.des import DesReader
from connector.des.format import HEADER_SIZE
from connector.errors import DesFormatError
from connector.store import Store
from connector.store.errors import StoreError

DES = [sys.executable, "-m", "connector.cli"]


def _corrupt_store(tmp_path, n: int = 50) -> tuple[str, str, int]:
    """A dataset of n records in two containers, then 4 bytes of record 20 (in the first) flipped
    in place. Returns (root, container path, key of the corrupt record)."""
    root = str(tmp_path / "store")
    with Store(root, max_datapoints=n // 2) as store:
        rows = [{"id": i, "name": f"record-{i:04d}"} for i in range(n)]
        store.write_records("d", [rows[:n // 2], rows[n // 2:]])
        d = store.dataranges("d")[0]
        path = store.fs._strip_protocol(d.url)
    reader = DesReader(path)
    at = reader.info("00000000000000000020.json").offset + 10
    with open(path, "r+b") as f:
        f.seek(at)
        good = f.read(4)
        f.seek(at)
        f.write(bytes(b ^ 0x20 for b in good))  # still JSON-looking text: "record-0020" -> "RECOrd-0020"
    return root, path, 20


def _des(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DES, *args], capture_output=True, text=True, timeout=60)


def test_every_read_path_refuses_a_corrupt_record_datarange(tmp_path):
    root, path, key = _corrupt_store(tmp_path)
    for args in (["read", "d", str(key)], ["cat", "d"], ["cat", "d", "15", "25"]):
        out = _des("datasets", "--root", root, *args)
        assert out.returncode != 0 and ("checksum mismatch" in out.stderr or "corrupt" in out.stderr), (args, out.stderr)
        assert "RECO" not in out.stdout, args
    with Store(root) as store:
        with pytest.raises(DesFormatError, match="corrupt"):
            store.to_table("d")
        with pytest.raises(DesFormatError, match="corrupt"):
            store.read_range("d", 0, 5)
        with pytest.raises(DesFormatError, match=r"crc32"):
            store.read("d", key)
        assert json.loads(store.read("d", key - 1))["id"] == key - 1  # the other records are fine one by one
        with pytest.raises(StoreError, match=r"dataset 'd': cannot aggregate \[0, 49\]: .*corrupt"):
            store.aggregate("d", 0, 49)  # never merged into a new container with fresh checksums
        assert len(store.dataranges("d")) == 2


def test_container_verify_says_what_it_checked_and_finds_the_corruption(tmp_path):
    root, path, _ = _corrupt_store(tmp_path)
    out = _des("verify", path)
    assert out.returncode != 0 and "checksum mismatch (crc32)" in out.stderr and "00000000000000000020.json" in out.stderr
    with Store(str(tmp_path / "good")) as store:
        store.write_records("d", [[{"id": i} for i in range(10)]])
        good = store.fs._strip_protocol(store.dataranges("d")[0].url)
    out = _des("verify", good)
    assert out.returncode == 0 and "10 members verified (10 by crc32); DATA region checked by data_crc32" in out.stdout
    out = _des("datasets", "--root", root, "--json", "verify", "d")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["checked"]["containers"] == 2 and "sha256" in report["checked"]["by"]


def test_record_containers_declare_member_and_region_checksums(tmp_path):
    with Store(str(tmp_path / "s")) as store:
        store.write_records("d", [[{"i": i} for i in range(5)]])
        path = store.fs._strip_protocol(store.dataranges("d")[0].url)
    reader = DesReader(path)
    data = open(path, "rb").read()[HEADER_SIZE:HEADER_SIZE + reader.footer.data_length]
    first = reader.meta(reader.names()[0])
    assert first["data_crc32"] == f"{zlib.crc32(data):08x}"
    assert [reader.meta(n)["crc32"] for n in reader.names()] == [zlib.crc32(line + b"\n") for line in data.splitlines()]
    assert os.path.getsize(path) == reader.size
