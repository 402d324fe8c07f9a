"""The counting proxy's fault hook: a broken answer for one request is survived by a retry and the
data read is still right; the proxy's log shows exactly what happened."""

from __future__ import annotations

import pytest

from connector.des import DesReader, DesWriter
from tests.support.s3proxy import RESET, CountingProxy, Request, Truncate

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def container(s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/f.des"
    with DesWriter(url, fs=s3_endpoint.s3fs()) as w:
        w.add("p.bin", PAYLOAD)
    return url


@pytest.mark.parametrize("action", [RESET, Truncate(keep=100)], ids=["reset", "truncate"])
def test_one_broken_member_get_is_retried(container, s3_endpoint, action):
    faulted: list[Request] = []

    def once(req: Request):
        # Break the first GET after the tail (the member's range), and only that one.
        if req.method == "GET" and req.range and not req.range.startswith("bytes=-") and not faulted:
            faulted.append(req)
            return action
        return None

    with CountingProxy(s3_endpoint.endpoint_url, fault=once) as proxy, proxy.window() as w:
        r = DesReader(container, storage_options=proxy.storage_options(s3_endpoint), cache=None)
        assert r.read("p.bin") == PAYLOAD  # sha256 checked too
    assert len(faulted) == 1
    member_gets = [e for e in w.exchanges if e.request.range == faulted[0].range]
    assert [e.action for e in member_gets] == [action, None], w  # broken once, then served whole
    assert member_gets[1].sent == len(PAYLOAD)
