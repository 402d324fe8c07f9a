"""The storage policy (connector.storage): what every package opens storage with and how it reads failures."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from connector.destination.config import DestinationConfig
from connector.source.config import SourceConfig
from connector.storage import (
    S3Access,
    describe,
    is_library_error,
    is_transient,
    one_line,
    s3_options,
    storage_errors,
)
from connector.store import Store


def _access(s3_endpoint) -> dict:
    return {"endpoint": s3_endpoint.endpoint_url, "region": s3_endpoint.region, "access_key_id": s3_endpoint.key,
            "secret_access_key": s3_endpoint.secret, "retry_count": 2, "request_timeout": 7}


def test_source_and_destination_open_s3_with_one_set_of_options(s3_endpoint, s3_bucket, tmp_path):
    source = SourceConfig.from_dict({"bucket_name": s3_bucket, **_access(s3_endpoint)})._s3_options()
    destination = DestinationConfig.from_dict({"bucket_name": s3_bucket, "catalog_path": str(tmp_path / "c.sqlite"),
                                               **_access(s3_endpoint)}).storage_options
    expected = {"skip_instance_cache": True,
                "client_kwargs": {"endpoint_url": s3_endpoint.endpoint_url, "region_name": s3_endpoint.region},
                "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 3},
                                  "connect_timeout": 7, "read_timeout": 7},
                "key": s3_endpoint.key, "secret": s3_endpoint.secret}
    assert destination == expected
    # The source adds only what listing and many parallel GETs need.
    assert source == {**expected, "use_listings_cache": False,
                      "config_kwargs": {**expected["config_kwargs"], "max_pool_connections": 10}}


def test_a_store_on_bounded_options_makes_one_s3fs_attempt_per_call(s3_endpoint, s3_bucket, tmp_path):
    options = s3_options(S3Access(endpoint=s3_endpoint.endpoint_url, region=s3_endpoint.region,
                                  key=s3_endpoint.key, secret=s3_endpoint.secret, retry_count=1))
    with Store(f"s3://{s3_bucket}/a", str(tmp_path / "a.sqlite"), storage_options=options) as store:
        assert store.fs.retries == 1  # botocore retries; a second layer would multiply the attempts
    config = DestinationConfig.from_dict({"bucket_name": s3_bucket, "path_prefix": "b",
                                          "catalog_path": str(tmp_path / "b.sqlite"), **_access(s3_endpoint)})
    with config.open_store() as store:
        assert store.fs.retries == 1
    # Options that leave botocore's retries alone leave s3fs's alone too.
    with Store(f"s3://{s3_bucket}/c", str(tmp_path / "c.sqlite"),
               storage_options=s3_endpoint.storage_options()) as store:
        assert store.fs.retries == 5


def test_storage_errors_name_the_object_and_keep_other_errors():
    with pytest.raises(OSError, match=r"^s3://b/k: reading the footer: EndpointConnectionError: Could not connect"):
        with storage_errors("s3://b/k", "reading the footer"):
            raise EndpointConnectionError(endpoint_url="http://nowhere")
    with pytest.raises(OSError, match=r"^s3://b/k: reading: reset$"):
        with storage_errors("s3://b/k", "reading"):
            raise OSError("reset")
    with pytest.raises(FileNotFoundError, match=r"^gone$"):
        with storage_errors("s3://b/k", "reading"):
            raise FileNotFoundError("gone")
    with pytest.raises(ValueError, match=r"^a bug of ours$"):  # not a storage failure: not relabelled
        with storage_errors("s3://b/k", "reading"):
            raise ValueError("a bug of ours")


def test_library_and_transient_errors():
    assert is_library_error(EndpointConnectionError(endpoint_url="http://nowhere"))
    assert not is_library_error(ValueError("x"))
    assert is_transient(EndpointConnectionError(endpoint_url="http://nowhere"))
    assert is_transient(OSError("Service Unavailable (503)"))
    assert not is_transient(ValueError("cell says (503)"))  # a parser quoting data is not storage


def test_one_line_renderings():
    assert one_line(ValueError("first\nsecond")) == "first"
    assert one_line(ValueError("")) == "ValueError"
    assert describe(OSError("  first\nsecond")) == "OSError: first"
    assert describe(OSError()) == "OSError: "


def test_storage_errors_keep_the_errno_and_add_no_empty_one():
    with pytest.raises(OSError) as raised:
        with storage_errors("s3://b/k", "reading"):
            raise OSError(104, "Connection reset by peer")
    assert raised.value.errno == 104 and str(raised.value) == "[Errno 104] s3://b/k: reading: Connection reset by peer"
