"""``des sync --dask`` on a distributed.LocalCluster of 2 worker processes, S3 source and store:
the same dataset as a single-process sync, byte for byte, also when a worker process is killed
mid-sync; the records reach the coordinator already encoded, their bytes out of band."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.destination import DestinationConfig
from connector.records import object_lines
from connector.source import FileBatch, Source
from connector.source.read import FILE_COLUMNS
from connector.store import Store
from connector.sync import Sync
from connector.sync_dask import EncodedBatch, read_on_dask
from tests.source.helpers import put, s3_config

distributed = pytest.importorskip("distributed")

FILES = 24


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c


@pytest.fixture
def source(s3_endpoint, s3_bucket) -> dict:
    """``FILES`` CSV files of one stream, of different lengths, on the S3 test server."""
    put(s3_endpoint, s3_bucket, {
        f"data/users/part-{n:03d}.csv": ("id,name,score\n" + "".join(
            f"{n * 1000 + i},user {n}-{i},{(n * 7 + i) % 11 / 4}\n" for i in range(n % 5 * 3 + 1))).encode()
        for n in range(FILES)})
    return s3_config(s3_endpoint, s3_bucket, path_prefix="data/")


def destination(s3_endpoint, bucket: str, prefix: str, tmp: Path) -> dict:
    return {"bucket_name": bucket, "path_prefix": prefix, "endpoint": s3_endpoint.endpoint_url,
            "region": s3_endpoint.region, "access_key_id": s3_endpoint.key, "secret_access_key": s3_endpoint.secret,
            "catalog_path": str(tmp / f"{prefix}.sqlite"), "max_datapoints": 7}


def content(s3_endpoint, bucket: str, prefix: str, tmp: Path) -> dict:
    """What a sync left in the store: every record's bytes by key, the dataranges (each container's
    size and SHA-256: the same bytes, META and INDEX included) and checkpoint."""
    with Store(f"s3://{bucket}/{prefix}", str(tmp / f"{prefix}.sqlite"),
               storage_options=s3_endpoint.storage_options()) as store:
        return {"lines": b"".join(store.read_lines("users")).splitlines(),
                "ranges": [(d.first, d.last, d.size, d.sha256) for d in store.dataranges("users")],
                "checkpoint": store.checkpoint("users")}


def single_process(s3_endpoint, s3_bucket, source, tmp: Path) -> dict:
    config = DestinationConfig.from_dict(destination(s3_endpoint, s3_bucket, "single", tmp))
    Sync(source, config).run(["users"])
    return content(s3_endpoint, s3_bucket, "single", tmp)


def test_cli_sync_on_dask_writes_what_a_single_process_sync_writes(cluster, s3_endpoint, s3_bucket, source, tmp_path):
    (tmp_path / "src.json").write_text(json.dumps(source))
    (tmp_path / "dst.json").write_text(json.dumps(destination(s3_endpoint, s3_bucket, "dask", tmp_path)))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-m", "connector.cli", "sync", "--config", str(tmp_path / "src.json"),
                          "--destination", str(tmp_path / "dst.json"), "--state", str(tmp_path / "state.json"),
                          "--dask", cluster.scheduler_address], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")},
                         check=False)
    assert out.returncode == 0, out.stderr
    assert f"users -> users: {FILES} files" in out.stdout
    expected = single_process(s3_endpoint, s3_bucket, source, tmp_path)
    assert len(expected["lines"]) == sum(n % 5 * 3 + 1 for n in range(FILES))
    assert content(s3_endpoint, s3_bucket, "dask", tmp_path) == expected


def test_a_worker_killed_mid_sync_changes_nothing(cluster, s3_endpoint, s3_bucket, source, tmp_path):
    killed: list[int] = []
    with distributed.Client(cluster) as client:
        pids = sorted(client.run(os.getpid).values())

        def kill_one_worker_on_first_progress(stream: str, n: int) -> None:
            if not killed:  # files are still being read on the workers: at most 4 of 24 are done
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        config = DestinationConfig.from_dict(destination(s3_endpoint, s3_bucket, "dask", tmp_path))
        (summary,) = Sync(source, config, dask=client, progress=kill_one_worker_on_first_progress).run(["users"])
    assert killed and summary.files == FILES
    assert content(s3_endpoint, s3_bucket, "dask", tmp_path) == single_process(s3_endpoint, s3_bucket, source,
                                                                                 tmp_path)


def test_workers_hand_over_each_file_encoded(cluster, source):
    """The coordinator gets each file's record bytes with their lengths and CRC-32s, as this
    process would encode the file's batches; it only gives them keys."""
    src = Source(source)
    with distributed.Client(cluster) as client:
        shipped: dict[str, list] = {}
        for event in read_on_dask(src, "users", None, client):
            if isinstance(event, EncodedBatch):
                shipped.setdefault(event.file.key, []).append(event.batch)
    local: dict[str, bytes] = {}
    for event in src.read("users", None):
        if isinstance(event, FileBatch):
            local[event.file.key] = local.get(event.file.key, b"") + object_lines(event.batch, FILE_COLUMNS)[0]
    assert len(shipped) == FILES and shipped.keys() == local.keys()
    # The record bytes came straight from the worker, out of band (a frame of their own, not copied
    # through the pickle stream): relayed by the scheduler, or pickled in band, they arrive as bytes.
    assert all(isinstance(b.data, memoryview) for batches in shipped.values() for b in batches)
    for key, batches in shipped.items():
        data = b"".join(b.data for b in batches)
        lines = data.splitlines(keepends=True)
        assert data == local[key]
        assert [int(n) for b in batches for n in b.lengths] == [len(line) for line in lines]
        assert [int(c) for b in batches for c in b.crcs] == [zlib.crc32(line) for line in lines]


def test_files_mode_on_dask_is_refused(source, tmp_path):
    config = DestinationConfig.from_dict({"root_url": str(tmp_path / "store")})
    with pytest.raises(Exception, match="only records mode"):
        Sync(source, config, mode="files", dask="tcp://127.0.0.1:1")
