"""The destination's S3 client must give up in bounded time, as the source's does.

Found by a black-box hunt and fixed in 1321f23: ``des-destination`` built s3fs with its defaults: 5 s connect / 15 s read timeouts, 5 botocore attempts inside 5 s3fs attempts.
Against an endpoint that accepts connections and never answers, ``des-destination check`` was
still running after 150 s (measured through tests/support/faults.py at 100% "delay" faults).
The source bounds this with ``request_timeout`` and ``retry_count`` (connector/source/config.py);
the destination config now does the same; the whole check must fail within 60 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.reliability.helpers import REPO
from tests.support.faults import fault_proxy


@pytest.mark.slow
def test_destination_check_against_a_silent_endpoint_fails_within_bounds(s3_endpoint, tmp_path):
    config = tmp_path / "dest.json"
    with fault_proxy(s3_endpoint.endpoint_url, fraction=1.0, kinds=["delay"], delay=5) as proxy:
        config.write_text(json.dumps({"bucket_name": "silent-bucket", "endpoint": proxy.url, "region": "us-east-1",
                                      "access_key_id": "a", "secret_access_key": "b", "request_timeout": 1,
                                      "retry_count": 1, "catalog_path": str(tmp_path / "c.sqlite")}))
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "connector.airbyte.destination_main", "check", "--config",
                               str(config)], capture_output=True, text=True, timeout=60, cwd=REPO)
        elapsed = time.monotonic() - start
    print(f"\n[reliability] des-destination check, silent endpoint: {proxy.stats['requests']} requests, "
          f"gave up after {elapsed:.1f}s (bound 60 s; before the fix: still running after 150 s)")
    [status] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "request_timeout" not in status["connectionStatus"].get("message", "")  # the field is accepted
