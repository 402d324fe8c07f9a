"""S3 access through an assumed IAM role (``role_arn``), with credentials refreshed before they expire.

The role is assumed with STS (``AssumeRole``, with ``ExternalId`` when given) by a source identity:
the configured access key, or else the default AWS credential chain. The result is an aiobotocore
session whose credentials are botocore's deferred refreshable credentials: the first request
assumes the role, and any request made within 15 minutes of the expiry assumes it again first, so
a sync longer than a role session never signs with expired credentials.
"""

from __future__ import annotations

import logging
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioCredentialResolver,
    AioCredentials,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession
from botocore.exceptions import NoCredentialsError

from connector.storage import botocore_retries

# A failed AssumeRole is logged by aiobotocore with its traceback, then raised, and reported by us
# naming the STS endpoint; without any handler configured, logging's last resort would print the
# traceback to stderr too. A NullHandler stops only that fallback (configured handlers still see it).
logging.getLogger("aiobotocore.credentials").addHandler(logging.NullHandler())

#: Lifetime asked of each role session (STS allows 900 s up to the role's maximum, 1 h by default).
SESSION_SECONDS = 3600
SESSION_NAME = "des-connector"


class _SourceIdentity:
    """Who assumes the role: fixed keys, or whatever the default credential chain finds."""

    def __init__(self, key: str | None, secret: str | None, token: str | None) -> None:
        self._fixed = AioCredentials(key, secret, token) if key is not None else None
        self._chain = AioSession() if key is None else None

    async def get_frozen_credentials(self) -> Any:
        credentials = self._fixed
        if credentials is None:
            assert self._chain is not None
            credentials = await self._chain.get_credentials()
            if credentials is None:
                raise NoCredentialsError()
        return await credentials.get_frozen_credentials()


class _Provider:
    """A credential provider handing out the one refreshable credentials object."""

    METHOD = "assume-role"
    CANONICAL_NAME = "des-connector-assume-role"

    def __init__(self, credentials: AioDeferredRefreshableCredentials) -> None:
        self._credentials = credentials

    async def load(self) -> AioDeferredRefreshableCredentials:
        return self._credentials


def assumed_role_session(role_arn: str, *, external_id: str | None = None, key: str | None = None,
                         secret: str | None = None, token: str | None = None, region: str | None = None,
                         sts_endpoint: str | None = None, retries: int = 3,
                         duration_seconds: int = SESSION_SECONDS) -> AioSession:
    """An aiobotocore session (for ``s3fs.S3FileSystem(session=...)``) signing as ``role_arn``."""
    source = _SourceIdentity(key, secret, token)
    base = AioSession()
    config = AioConfig(retries=botocore_retries(retries))

    def sts_client(service: str, **credentials: Any) -> Any:
        return base.create_client(service, region_name=region or "us-east-1", endpoint_url=sts_endpoint,
                                  config=config, **credentials)

    extra: dict[str, Any] = {"RoleSessionName": SESSION_NAME, "DurationSeconds": duration_seconds}
    if external_id is not None:
        extra["ExternalId"] = external_id
    fetcher = AioAssumeRoleCredentialFetcher(client_creator=sts_client, source_credentials=source,
                                             role_arn=role_arn, extra_args=extra, cache={})
    refreshable = AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")
    session = AioSession()
    session.register_component("credential_provider", AioCredentialResolver([_Provider(refreshable)]))
    return session
