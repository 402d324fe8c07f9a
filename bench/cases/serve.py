"""``des serve`` over an S3 root: upload and download throughput through the server against a direct
PUT/GET of the same bytes to the S3 server, and metadata calls per second."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import BUCKET, REPO, WORK, Ctx, log, ratio

START_SECONDS = 60.0


def case_serve(ctx: Ctx) -> None:
    """A tar of datapoints uploaded through ``des serve`` (REST) and read back, vs boto3 PUT/GET."""
    from connector.client import Datas3tClient, datapoints_tar

    r = ctx.results
    points, size = (16, 256 << 10) if ctx.args.quick else (64, 1 << 20)
    mib = points * size / 1048576
    case = f"des serve: {points} datapoints of {size >> 10} KiB ({mib:.0f} MiB) as one tar"
    meta_case = "des serve: metadata calls"
    payload = {k: bytes([k % 251]) * size for k in range(points)}
    tar = datapoints_tar(payload)
    server, url = _start(ctx)
    try:
        client = Datas3tClient(url)
        boto = ctx.server.boto3()
        client.create_dataset("warm-up")  # imports, first connections: not measured
        client.upload_tar("warm-up", datapoints_tar({0: b"x"}))
        for i in range(ctx.args.repeat):
            name = f"bench-{i}"
            client.create_dataset(name)
            t0 = time.perf_counter()
            client.upload_tar(name, tar)
            r.add(case, "through des serve", "upload MiB/s", mib / (time.perf_counter() - t0), "MiB/s")
            t0 = time.perf_counter()
            back = client.download_bytes(name, 0, points - 1, "tar")
            r.add(case, "through des serve", "download MiB/s", mib / (time.perf_counter() - t0), "MiB/s")
            assert _members(back) == payload, "des serve: downloaded datapoints differ"
            key = f"serve-direct/{i}.tar"
            t0 = time.perf_counter()
            boto.put_object(Bucket=BUCKET, Key=key, Body=tar)
            r.add(case, "direct S3 PUT/GET", "upload MiB/s", mib / (time.perf_counter() - t0), "MiB/s")
            t0 = time.perf_counter()
            direct = boto.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            r.add(case, "direct S3 PUT/GET", "download MiB/s", mib / (time.perf_counter() - t0), "MiB/s")
            assert direct == tar, "direct GET: bytes differ"
            _metadata_rates(ctx, client, url, name, meta_case)
            log(f"  {case}: repeat {i + 1} done")
        for metric in ("upload MiB/s", "download MiB/s"):
            ratio(r, case, metric, "through des serve", "direct S3 PUT/GET")
    finally:
        server.terminate()
        server.wait(30)


def _metadata_rates(ctx: Ctx, client, url: str, name: str, case: str) -> None:
    """GET dataset, list dataranges, list datasets: calls per second, one client and 8 at once."""
    from connector.client import Datas3tClient

    calls = 50 if ctx.args.quick else 300
    for tool, threads in (("1 client", 1), ("8 concurrent clients", 8)):
        def work(_: int, threads: int = threads) -> None:
            mine = client if threads == 1 else Datas3tClient(url)
            for _ in range(calls // threads):
                mine.get_dataset(name)
                mine.dataranges(name)
                mine.list_datasets()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        done = threads * (calls // threads) * 3  # three calls a round
        ctx.results.add(case, tool, "calls/s (get, dataranges, list)", done / (time.perf_counter() - t0), "calls/s")


def _members(tar: bytes) -> dict[int, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member)
            assert extracted is not None
            out[int(member.name.split(".")[0])] = extracted.read()
    return out


def _start(ctx: Ctx) -> tuple[subprocess.Popen, str]:
    """``des serve`` on an S3 root of the bench bucket (fresh catalog), port picked by the server."""
    ctx.delete_prefix("serve-root")
    ctx.delete_prefix("serve-direct")
    catalog = WORK / "serve-catalog.sqlite"
    for old in WORK.glob("serve-catalog.sqlite*"):
        old.unlink()
    log_path = WORK / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "serve", "--root", f"s3://{BUCKET}/serve-root", "--catalog",
             str(catalog), "--storage-options", json.dumps(ctx.server.storage_options()), "--listen", "127.0.0.1:0",
             "--no-auth"], cwd=REPO, env=ctx.our_env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        for line in Path(log_path).read_text().splitlines():
            if '"listening"' in line:
                return process, json.loads(line)["url"]
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"des serve did not start: {Path(log_path).read_text()[-2000:]}")
