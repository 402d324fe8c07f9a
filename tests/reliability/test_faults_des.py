"""DES containers on S3 read through the fault-injecting proxy: the same bytes, or a bounded failure.

A container written straight to moto (plain, compressed and ``_bigFiles/`` members) is read back by
:class:`DesReader` over s3fs through 10% faults (500, 503, reset, timeout, truncated body): the tail
open, single reads, coalesced ``read_many`` and ``verify`` return exactly what was written. With
every request failing, opening fails within a bounded time with an error naming the container.
"""

from __future__ import annotations

import random
import time

import pytest

from connector.des import DesReader, DesWriter
from tests.support.faults import ALL_KINDS, fault_proxy


def options(endpoint_url: str, timeout: float = 1.0, attempts: int = 4) -> dict:
    return {"key": "testing", "secret": "testing", "skip_instance_cache": True, "use_listings_cache": False,
            "client_kwargs": {"endpoint_url": endpoint_url, "region_name": "us-east-1"},
            "config_kwargs": {"connect_timeout": timeout, "read_timeout": timeout,
                              "retries": {"mode": "standard", "total_max_attempts": attempts}}}


@pytest.fixture(scope="module")
def stored(s3_endpoint):
    import uuid

    bucket = f"des-{uuid.uuid4().hex[:12]}"
    s3_endpoint.boto3_client().create_bucket(Bucket=bucket)
    rng = random.Random(11)
    members = {f"m/{i:04d}.json": (b'{"i":%d,"pad":"%s"}\n' % (i, b"x" * rng.randrange(10, 3000))) for i in range(60)}
    members["big/blob.bin"] = rng.randbytes(40_000)
    url = f"s3://{bucket}/ds/dataranges/00000000000000000000-00000000000000000059.des"
    with DesWriter(url, storage_options=s3_endpoint.storage_options(), big_file_threshold=30_000,
                   compression="zstd") as w:
        for name, body in members.items():
            w.add(name, body)
    return url, members


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2])
def test_reader_through_ten_percent_faults_returns_the_same_bytes(s3_endpoint, stored, seed):
    url, members = stored
    with fault_proxy(s3_endpoint.endpoint_url, fraction=0.1, seed=seed, delay=2.5) as proxy:
        names = list(members)
        for attempt in range(2):  # fresh opens (cold tail read each time), different requests
            reader = DesReader(url, storage_options=options(proxy.url), cache=None)
            assert reader.names() == names
            assert {n: reader.read(n) for n in names[attempt::4]} == {n: members[n] for n in names[attempt::4]}
        assert reader.read_many(names) == members
        assert reader.verify() == len(members)
    assert proxy.faults > 0
    kinds = {k: v for k, v in sorted(proxy.stats.items()) if k in ALL_KINDS}
    print(f"\n[reliability] DesReader on S3, 10% faults, seed {seed}: {proxy.stats['requests']} requests, "
          f"{proxy.faults} faults injected {kinds}, all survived, {len(members)} members identical")


def test_reader_with_every_request_failing_gives_up_in_bounded_time(s3_endpoint, stored):
    url, _ = stored
    with fault_proxy(s3_endpoint.endpoint_url, fraction=1.0, seed=4, delay=2.5) as proxy:
        start = time.monotonic()
        with pytest.raises(OSError) as info:
            DesReader(url, storage_options=options(proxy.url, attempts=1), cache=None)
        elapsed = time.monotonic() - start
    assert elapsed < 60, f"gave up after {elapsed:.1f}s"
    assert url in str(info.value) and "reading" in str(info.value), info.value  # names container and operation
    print(f"\n[reliability] DesReader open, 100% faults: {type(info.value).__name__} after {elapsed:.1f}s, "
          f"{proxy.faults} faults: {str(info.value)[:100]}")
