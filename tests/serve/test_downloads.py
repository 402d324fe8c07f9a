"""The tar of file datapoints that ``des serve`` streams: read in windows through one reader per
container, and still exact when an aggregate replaces the container halfway through."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from connector.serve import downloads
from connector.store import Store


def _members(chunks: list[bytes]) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


@pytest.fixture
def packed(tmp_path) -> tuple[Store, list[bytes]]:
    """A files dataset of 12 datapoints in 3 containers (4 each), distinct random contents."""
    store = Store(tmp_path / "root", max_datapoints=4)
    contents = [os.urandom(1000 + 37 * i) for i in range(12)]
    folder = tmp_path / "files"
    folder.mkdir()
    for i, data in enumerate(contents):
        (folder / f"f{i:02d}.bin").write_bytes(data)
    store.write_files("ds", [str(folder / f"f{i:02d}.bin") for i in range(12)])
    assert len(store.dataranges("ds")) == 3
    return store, contents


def test_tar_of_files_in_small_windows_equals_each_datapoint(packed, monkeypatch):
    store, contents = packed
    monkeypatch.setattr(downloads, "WINDOW_BYTES", 2500)  # two or three members per ranged read
    ranges = downloads.covering(store, "ds", 2, 10)
    got = _members(list(downloads.tar_chunks(store, "ds", ranges, 2, 10)))
    assert [data for _, data in got] == contents[2:11]
    assert [data for _, data in got] == [store.read("ds", k) for k in range(2, 11)]
    assert [name.split(".")[0] for name, _ in got] == [f"{k:020d}" for k in range(2, 11)]


def test_tar_stays_exact_when_an_aggregate_replaces_the_container_midway(packed, monkeypatch):
    store, contents = packed
    monkeypatch.setattr(downloads, "WINDOW_BYTES", 1)  # one member per read: the merge lands between
    ranges = downloads.covering(store, "ds", 0, 11)
    stream = downloads.tar_chunks(store, "ds", ranges, 0, 11)
    chunks = [next(stream) for _ in range(5)]  # the first container and one member of the second
    old = {d.url for d in store.dataranges("ds")}
    store.aggregate("ds", 0, 11)
    assert not old & {d.url for d in store.dataranges("ds")}  # every container was replaced
    chunks += list(stream)
    assert [data for _, data in _members(chunks)] == contents
