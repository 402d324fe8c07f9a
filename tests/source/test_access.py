"""Access: an assumed role (role_arn, external_id) through moto's STS, refreshed before expiry;
temporary credentials (session_token); unsigned access (anonymous). Every request is seen at the
counting proxy, so the tests check what was really sent (which key signed what)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest
import s3fs

from connector.errors import ConfigError
from connector.source import Source
from connector.source.config import SourceConfig
from connector.source.credentials import assumed_role_session
from tests.source.helpers import drain, put
from tests.source.test_airbyte_source import run, write
from tests.support.s3proxy import CountingProxy

ROLE = "arn:aws:iam::123456789012:role/reader"
CSV = b"id,name\n1,a\n2,b\n"


def header(exchange, name: str) -> str | None:
    return next((v for k, v in exchange.request.headers.items() if k.lower() == name), None)


def signer(exchange) -> str | None:
    """The access key id that signed a request (None: unsigned)."""
    auth = header(exchange, "authorization")
    match = re.search(r"Credential=([^/]+)/", auth or "")
    return match.group(1) if match else None


def assume_role_calls(window) -> list[dict[str, list[str]]]:
    return [parse_qs(e.request.body.decode()) for e in window.exchanges
            if e.request.method == "POST" and b"Action=AssumeRole" in e.request.body]


def base_config(bucket: str, endpoint: str, **extra) -> dict:
    return {"bucket_name": bucket, "region": "us-east-1", "endpoint": endpoint, **extra}


def test_role_arn_with_external_id_signs_s3_requests_with_the_role(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"s/a.csv": CSV})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as w:
        src = Source(base_config(s3_bucket, proxy.url, role_arn=ROLE, external_id="ext-42",
                                 access_key_id="AKIDSOURCE", secret_access_key="source-secret"))
        rows, _ = drain(src, "s")
    assert [r["id"] for r in rows] == [1, 2]
    [call] = assume_role_calls(w)
    assert call["RoleArn"] == [ROLE] and call["ExternalId"] == ["ext-42"] and call["RoleSessionName"] == ["des-connector"]
    sts = [e for e in w.exchanges if e.request.method == "POST"]
    s3_requests = [e for e in w.exchanges if e.request.method != "POST"]
    assert {signer(e) for e in sts} == {"AKIDSOURCE"}  # the configured keys assume the role
    role_keys = {signer(e) for e in s3_requests}
    assert len(role_keys) == 1 and role_keys.pop().startswith("ASIA")  # moto's temporary keys
    assert all(header(e, "x-amz-security-token") for e in s3_requests)


def test_role_assumed_by_the_default_chain_and_sts_endpoint_option(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"s/a.csv": CSV})
    with CountingProxy(s3_endpoint.endpoint_url) as sts, sts.window() as w:
        # S3 straight at moto, STS through the proxy: sts_endpoint is where AssumeRole goes.
        src = Source(base_config(s3_bucket, s3_endpoint.endpoint_url, role_arn=ROLE, sts_endpoint=sts.url))
        assert src.streams() == ["s"]
    assert len(w.exchanges) == len(assume_role_calls(w)) == 1
    assert signer(w.exchanges[0]) == "testing"  # AWS_ACCESS_KEY_ID of the test environment


def test_role_credentials_are_renewed_before_they_expire(s3_endpoint, s3_bucket):
    """A 900 s role session is within botocore's 15-minute renewal window from the start, so each
    request renews it first: the renewal path runs, and requests sign with the new keys."""
    put(s3_endpoint, s3_bucket, {"s/a.csv": CSV})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as w:
        session = assumed_role_session(ROLE, region="us-east-1", sts_endpoint=proxy.url, duration_seconds=900)
        fs = s3fs.S3FileSystem(session=session, client_kwargs={"endpoint_url": proxy.url, "region_name": "us-east-1"},
                               skip_instance_cache=True, use_listings_cache=False)
        for _ in range(3):
            assert fs.cat(f"{s3_bucket}/s/a.csv") == CSV
    assert len(assume_role_calls(w)) >= 3
    keys = [signer(e) for e in w.exchanges if e.request.method == "GET"]
    assert len(set(keys)) >= 3 and all(k.startswith("ASIA") for k in keys)


def test_session_token_is_sent(s3_endpoint, s3_bucket):
    put(s3_endpoint, s3_bucket, {"s/a.csv": CSV})
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as w:
        src = Source(base_config(s3_bucket, proxy.url, access_key_id="ASIATEMP", secret_access_key="s",
                                 session_token="token-123"))
        assert drain(src, "s")[0][0]["id"] == 1
    assert w.exchanges and all(header(e, "x-amz-security-token") == "token-123" and signer(e) == "ASIATEMP"
                               for e in w.exchanges)


def test_anonymous_requests_are_unsigned(s3_endpoint, s3_bucket):
    client = s3_endpoint.boto3_client()
    client.put_object(Bucket=s3_bucket, Key="s/a.csv", Body=CSV, ACL="public-read")
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as w:
        rows, _ = drain(Source(base_config(s3_bucket, proxy.url, anonymous=True)), "s")
    assert [r["id"] for r in rows] == [1, 2]
    assert w.exchanges and all(header(e, "authorization") is None for e in w.exchanges)
    # moto enforces object ACLs for unsigned requests: a private object is refused, so the
    # requests above really were anonymous.
    client.put_object(Bucket=s3_bucket, Key="s/private.csv", Body=CSV)
    with pytest.raises(Exception, match="Forbidden"):
        drain(Source(base_config(s3_bucket, s3_endpoint.endpoint_url, anonymous=True)), "s")


@pytest.mark.parametrize("extra, needle", [
    ({"role_arn": "reader"}, "'role_arn'"),
    ({"role_arn": "arn:aws:s3:::bucket"}, "'role_arn'"),
    ({"role_arn": ROLE, "external_id": "x"}, "'external_id'"),
    ({"external_id": "ext-42"}, "'external_id' needs 'role_arn'"),
    ({"role_arn": ROLE, "sts_endpoint": "sts.example.com"}, "'sts_endpoint'"),
    ({"sts_endpoint": "http://localhost:9000"}, "'sts_endpoint' needs 'role_arn'"),
    ({"session_token": "t"}, "'session_token' goes with 'access_key_id'"),
    ({"access_key_id": "a", "secret_access_key": "b", "session_token": ""}, "'session_token'"),
    ({"anonymous": "yes"}, "'anonymous'"),
    ({"anonymous": True, "access_key_id": "a", "secret_access_key": "b"}, "'anonymous'.*'access_key_id'"),
    ({"anonymous": True, "role_arn": ROLE}, "'anonymous'.*'role_arn'"),
])
def test_bad_access_options_name_the_field(extra, needle):
    with pytest.raises(ConfigError, match=needle):
        SourceConfig.from_dict({"bucket_name": "b", **extra})


def test_session_token_is_never_echoed():
    with pytest.raises(ConfigError) as info:
        SourceConfig.from_dict({"bucket_name": "b", "access_key_id": "a", "secret_access_key": "b", "session_token": 12345})
    assert "session_token" in str(info.value) and "12345" not in str(info.value)


def test_bad_role_option_is_a_config_error_from_des_source(tmp_path):
    config = write(tmp_path, "config.json", {"bucket_name": "b", "role_arn": "not-an-arn"})
    code, messages, _ = run("discover", "--config", config)
    [trace] = [m for m in messages if m["type"] == "TRACE"]
    assert code != 0 and trace["trace"]["error"]["failure_type"] == "config_error"
    assert "'role_arn'" in trace["trace"]["error"]["message"]


def test_unreachable_sts_fails_check_naming_it_without_a_traceback(tmp_path):
    from tests.conftest import free_port

    sts = f"http://127.0.0.1:{free_port()}"
    config = write(tmp_path, "config.json", {"bucket_name": "bkt1", "endpoint": "http://127.0.0.1:9", "region": "us-east-1",
                                             "role_arn": ROLE, "sts_endpoint": sts, "retry_count": 0})
    code, messages, stderr = run("check", "--config", config)
    [status] = [m["connectionStatus"] for m in messages if m["type"] == "CONNECTION_STATUS"]
    assert code == 0 and status["status"] == "FAILED" and sts in status["message"]
    assert "Traceback" not in stderr, stderr


def test_external_id_from_airbyte_environment_variable(s3_endpoint, s3_bucket, monkeypatch):
    put(s3_endpoint, s3_bucket, {"s/a.csv": CSV})
    monkeypatch.setenv("AWS_ASSUME_ROLE_EXTERNAL_ID", "workspace-7")
    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as w:
        assert Source(base_config(s3_bucket, proxy.url, role_arn=ROLE)).streams() == ["s"]
        assert Source(base_config(s3_bucket, proxy.url, role_arn=ROLE, external_id="mine")).streams() == ["s"]
    assert [c["ExternalId"] for c in assume_role_calls(w)] == [["workspace-7"], ["mine"]]
