"""``des sync`` (real subprocess) reading S3 through the fault-injecting proxy.

10% of requests broken: records and files modes land exactly the data a fault-free run lands.
100% broken: a bounded, clear failure; the next fault-free run completes with no duplicates.
The store root is local here; the faults are on the source side.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from connector.store import Store
from tests.reliability.helpers import REPO, dataset_files, no_traceback, put_objects, source_config
from tests.support.faults import fault_proxy

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    name = f"relsync-{uuid.uuid4().hex[:12]}"
    client = s3_endpoint.boto3_client()
    client.create_bucket(Bucket=name)
    put_objects(client, name, dataset_files(seed=11, files_per_stream=3, rows=30))
    return name


def _sync(tmp: Path, name: str, endpoint: str, bucket: str, mode: str, **extra):
    src = tmp / f"{name}-src.json"
    options = {"path_prefix": "in", "max_threads": 4, "retry_count": 3, "request_timeout": TIMEOUT, **extra}
    src.write_text(json.dumps(source_config(endpoint, bucket, **options)))
    dst = tmp / f"{name}-dst.json"
    dst.write_text(json.dumps({"root_url": str(tmp / f"{name}-store"), "max_datapoints": 25}))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "connector.cli", "sync", "--config", str(src), "--destination",
                          str(dst), "--mode", mode, "--no-progress"], capture_output=True, text=True, timeout=180, cwd=REPO)
    return out, time.monotonic() - t0


def _content(tmp: Path, name: str, mode: str) -> dict:
    with Store(str(tmp / f"{name}-store")) as store:
        out = {}
        for d in store.list_datasets():
            if mode == "records":
                rows = store.to_table(d.name).to_pylist()
                out[d.name] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
            else:
                n = store.get_dataset(d.name).next_key
                out[d.name] = sorted(store.read(d.name, k) for k in range(n))
        return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["records", "files"])
def test_ten_percent_faults_land_the_same_data(s3_endpoint, bucket, tmp_path, mode):
    base, _ = _sync(tmp_path, "base", s3_endpoint.endpoint_url, bucket, mode)
    assert base.returncode == 0, base.stderr
    expected = _content(tmp_path, "base", mode)
    assert sum(len(v) for v in expected.values()) == (3 * 3 * 30 if mode == "records" else 9)
    # The schedule is a pure function of (seed, request number). Seed 6 faults requests 0, 1, 6 and 8
    # (delays past the timeout, a reset), so both modes meet faults however few requests they need.
    with fault_proxy(s3_endpoint.endpoint_url, fraction=0.1, seed=6, delay=2.5) as proxy:
        out, _ = _sync(tmp_path, "faulty", proxy.url, bucket, mode)
        print(f"{mode}: {proxy.stats['requests']} requests, {proxy.faults} faults injected: {dict(proxy.stats)}")
    assert out.returncode == 0, out.stderr
    assert proxy.faults > 0
    assert _content(tmp_path, "faulty", mode) == expected


@pytest.mark.slow
def test_all_requests_failing_is_bounded_then_a_clean_run_completes_once(s3_endpoint, bucket, tmp_path):
    base, _ = _sync(tmp_path, "base", s3_endpoint.endpoint_url, bucket, "records")
    expected = _content(tmp_path, "base", "records")
    with fault_proxy(s3_endpoint.endpoint_url, fraction=1.0, seed=5, kinds=("500", "503", "reset")) as proxy:
        out, seconds = _sync(tmp_path, "down", proxy.url, bucket, "records", retry_count=1)
    assert out.returncode == 1 and seconds < 60
    assert "des: error:" in out.stderr and "cannot list" in out.stderr and no_traceback(out.stderr), out.stderr
    out, _ = _sync(tmp_path, "down", s3_endpoint.endpoint_url, bucket, "records")
    assert out.returncode == 0, out.stderr
    assert _content(tmp_path, "down", "records") == expected
