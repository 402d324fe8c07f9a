"""The store fixture shared by the store tests: the same tests over a local root, the S3 test server
and a local root whose catalog is on the test PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.store import Store


@pytest.fixture(params=["local", "s3", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    """A store of at most 10 datapoints per container; its root is a local folder or an S3 prefix,
    its catalog an SQLite file or (``postgres``, local root) a PostgreSQL database."""
    if request.param == "local":
        s = Store(str(tmp_path / "root"), max_datapoints=10)
    elif request.param == "postgres":
        s = Store(str(tmp_path / "root"), request.getfixturevalue("postgres_url"), max_datapoints=10)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        s = Store(f"s3://{bucket}/store", str(tmp_path / "cat.sqlite"), storage_options=endpoint.storage_options(),
                  max_datapoints=10)
    yield s
    s.close()
