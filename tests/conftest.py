"""Shared fixtures: a real S3 endpoint (moto's server on 127.0.0.1) and clients talking to it.

No ``mock_aws``: every test that touches S3 speaks HTTP to this server, through s3fs or pyarrow's
S3FileSystem, exactly as against AWS or MinIO.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# Set before any boto/s3fs import in the test process, so no test ever reaches a real AWS account;
# subprocesses inherit them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

# The request-counting S3 proxy fixture (s3_proxy), for any test that takes it as an argument.
pytest_plugins = ["tests.support.s3proxy"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class S3Endpoint:
    """Where the test S3 server listens and how to log in."""

    endpoint_url: str
    key: str = "testing"
    secret: str = "testing"
    region: str = "us-east-1"

    def storage_options(self) -> dict:
        """fsspec/s3fs options for this endpoint (fresh instance, no listing cache)."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
            "skip_instance_cache": True,
            "use_listings_cache": False,
        }

    def s3fs(self):
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options())

    def pyarrow_fs(self):
        from pyarrow import fs as pafs

        scheme, _, host = self.endpoint_url.partition("://")
        return pafs.S3FileSystem(
            access_key=self.key,
            secret_key=self.secret,
            region=self.region,
            endpoint_override=host,
            scheme=scheme,
        )

    def boto3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """moto's ThreadedMotoServer on a free 127.0.0.1 port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Endpoint(endpoint_url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> str:
    """A fresh, empty bucket on the test server."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_endpoint.boto3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_endpoint: S3Endpoint):
    """An s3fs filesystem talking to the test server."""
    return s3_endpoint.s3fs()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (see tests/support/postgres.py).

    Skipped only where the machine has no server binaries; under ``CI=true`` that is a failure,
    so CI never passes without having run the PostgreSQL catalog tests."""
    from tests.support.postgres import find_bin, running_server

    if find_bin() is None:
        reason = "no PostgreSQL server binaries (initdb, postgres; set PG_BIN or install postgresql)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}, and CI must run the PostgreSQL tests")
        pytest.skip(reason)
    with running_server(free_port()) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the test PostgreSQL server."""
    return postgres_server.new_database()
