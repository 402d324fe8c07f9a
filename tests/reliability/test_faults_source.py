"""`des-source` (a real subprocess) through the fault-injecting proxy in front of moto.

10% of requests broken (500, 503 SlowDown, connection reset, timeout, truncated body): the same
catalog, records and states as without faults. 100% broken: a bounded, clear failure naming the
operation, no traceback. Faults on one file only: the stream stops at that file with its name, and
a re-run from the emitted state lands the rest exactly once.

Figures (requests, faults injected per kind) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import uuid

import pytest

from tests.reliability.helpers import (
    configured_catalog,
    dataset_files,
    no_traceback,
    put_objects,
    source,
    source_config,
    write_json,
)
from tests.support.faults import ALL_KINDS, fault_for, fault_proxy

#: Schedules that fault at least two of the first 24 requests (discover and read of these files make
#: more than that), so each run proves something whatever the request count becomes: a fixed seed
#: whose first fault came at request 31 went quiet when read stopped sampling the files again.
SEEDS = tuple(s for s in range(1, 100)
              if sum(fault_for(s, n, 0.1, ALL_KINDS) is not None for n in range(24)) >= 2)[:3]
TIMEOUT = 1.0  # client connect/read timeout in the configs below; "delay" faults hold 2.5 s


@pytest.fixture(scope="module")
def data(s3_endpoint, tmp_path_factory):
    """A bucket with 12 seeded files in 3 streams, and the no-fault discover + read results."""
    bucket = f"rel-{uuid.uuid4().hex[:12]}"
    client = s3_endpoint.boto3_client()
    client.create_bucket(Bucket=bucket)
    put_objects(client, bucket, dataset_files(seed=7))
    tmp = tmp_path_factory.mktemp("faults-source")
    config = write_json(tmp / "plain.json", source_config(s3_endpoint.endpoint_url, bucket, path_prefix="in", max_threads=4))
    discovered = source("discover", "--config", config)
    assert discovered.code == 0, discovered.stdout
    streams = discovered.messages[0]["catalog"]["streams"]
    catalog = write_json(tmp / "catalog.json", configured_catalog(streams))
    baseline = source("read", "--config", config, "--catalog", catalog)
    assert baseline.code == 0 and len(baseline.records()) == 3 * 4 * 40
    assert [s["name"] for s in streams] == ["events", "metrics", "users"]
    return {"bucket": bucket, "tmp": tmp, "streams": streams, "catalog": catalog, "baseline": baseline}


def faulty_config(data, url: str, name: str, **extra) -> str:
    options = {"path_prefix": "in", "max_threads": 4, "retry_count": 3, "request_timeout": TIMEOUT, **extra}
    return write_json(data["tmp"] / f"{name}.json", source_config(url, data["bucket"], **options))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_ten_percent_faults_same_catalog_records_and_states(s3_endpoint, data, seed):
    with fault_proxy(s3_endpoint.endpoint_url, fraction=0.1, seed=seed, delay=2.5) as proxy:
        config = faulty_config(data, proxy.url, f"ten-{seed}")
        discovered = source("discover", "--config", config)
        read = source("read", "--config", config, "--catalog", data["catalog"])
    assert discovered.code == 0, discovered.stdout
    assert discovered.messages[-1]["catalog"]["streams"] == data["streams"]
    assert read.code == 0, read.errors()
    assert read.records() == data["baseline"].records()
    assert read.states() == data["baseline"].states()
    assert no_traceback(read.stdout + read.stderr)
    assert proxy.faults > 0, "the schedule injected nothing: the test would prove nothing"
    kinds = {k: v for k, v in sorted(proxy.stats.items()) if k in ALL_KINDS}
    print(f"\n[reliability] des-source discover+read, 10% faults, seed {seed}: {proxy.stats['requests']} requests, "
          f"{proxy.faults} faults injected {kinds}, all survived, {len(read.records())} records identical")


@pytest.mark.parametrize("command", ["check", "discover", "read"])
def test_all_requests_failing_gives_bounded_clear_failure(s3_endpoint, data, command):
    with fault_proxy(s3_endpoint.endpoint_url, fraction=1.0, seed=5, delay=2.5) as proxy:
        config = faulty_config(data, proxy.url, f"dead-{command}", retry_count=1)
        args = ("--catalog", data["catalog"]) if command == "read" else ()
        run = source(command, "--config", config, *args, timeout=120)
    assert run.seconds < 60, f"{command} took {run.seconds:.1f}s to give up"
    assert no_traceback(run.stdout) and no_traceback(run.stderr)
    assert not run.of_type("RECORD") and not run.of_type("STATE")
    if command == "check":
        assert run.code == 0
        [status] = run.of_type("CONNECTION_STATUS")
        message = status["connectionStatus"]["message"]
        assert status["connectionStatus"]["status"] == "FAILED"
    else:
        assert run.code == 1
        [error] = run.errors()
        message = error["message"]
        assert error["failure_type"] == "system_error"
    # Names the operation and where: "cannot list s3://<bucket>: ..."
    assert "cannot list" in message and data["bucket"] in message, message
    print(f"\n[reliability] des-source {command}, 100% faults: gave up after {run.seconds:.1f}s, "
          f"{proxy.faults} faults injected: {message[:120]}")


def test_faults_on_one_file_stop_there_and_rerun_lands_the_rest_once(s3_endpoint, data):
    """Every request for one file fails: its stream stops at it (TRACE names the file, earlier files'
    STATE out); a re-run from that state, without faults, emits exactly the missing records."""
    bad = "u01.csv.gz"
    with fault_proxy(s3_endpoint.endpoint_url, fraction=1.0, seed=9, delay=2.5,
                     when=lambda method, path: bad in path) as proxy:
        config = faulty_config(data, proxy.url, "one-file", retry_count=1)
        first = source("read", "--config", config, "--catalog", data["catalog"], timeout=120)
    assert first.code == 1 and proxy.faults > 0
    [error] = first.errors()
    assert error["stream_descriptor"]["name"] == "users" and f"users/{bad}" in error["message"], error
    assert no_traceback(first.stdout)
    statuses = {m["trace"]["stream_status"]["stream_descriptor"]["name"]: m["trace"]["stream_status"]["status"]
                for m in first.of_type("TRACE") if m["trace"]["type"] == "STREAM_STATUS"}
    assert statuses == {"events": "COMPLETE", "metrics": "COMPLETE", "users": "INCOMPLETE"}

    state = write_json(data["tmp"] / "one-file-state.json", first.states())
    plain = faulty_config(data, s3_endpoint.endpoint_url, "one-file-plain")
    second = source("read", "--config", plain, "--catalog", data["catalog"], "--state", state)
    assert second.code == 0, second.errors()
    # State is per stream: only users' files from the failed one on are read again.
    landed = [r for r in first.records() if r[0] != "users" or r[1]["_file"] < f"users/{bad}"]
    assert landed == first.records(), "records of the failed file were emitted before its failure"
    combined = sorted(map(repr, first.records() + [r for r in second.records() if r[0] == "users"]))
    assert combined == sorted(map(repr, data["baseline"].records()))
    assert not [r for r in second.records() if r[0] != "users"]


def test_request_timeout_and_retry_bound_reach_the_s3_client():
    from connector.errors import ConfigError
    from connector.source.config import SourceConfig

    config = SourceConfig.from_dict({"bucket_name": "b", "endpoint": "http://127.0.0.1:1", "request_timeout": 1.5,
                                     "retry_count": 2})
    fs, root = config.filesystem()
    assert root == "b" and fs.retries == 1  # s3fs's own layer off: attempts do not multiply
    assert fs.config_kwargs == {"retries": {"mode": "standard", "total_max_attempts": 3},
                                "connect_timeout": 1.5, "read_timeout": 1.5, "max_pool_connections": 10}
    with pytest.raises(ConfigError, match="request_timeout"):
        SourceConfig.from_dict({"bucket_name": "b", "request_timeout": 0})
