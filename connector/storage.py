"""The storage policy every package follows: how object storage is opened and what its failures mean.

One place, like s3fs's single ``_call_s3`` choke point and its error table, so the source, the
destination, the store and des cannot drift apart:

- **options**: :func:`s3_options` builds the fsspec/s3fs storage options from an :class:`S3Access`
  (the source's and the destination's configs both describe one).
- **attempts**: retries are bounded at two levels only: each request (botocore's standard mode,
  :func:`botocore_retries`) and each file or listing (the caller's loop, on :func:`is_transient`
  errors). s3fs's own third layer is switched off (:func:`single_attempt`), or attempts would
  multiply and a dead endpoint would take minutes to report. :func:`open_filesystem` applies that
  to any filesystem opened from options that bound botocore's retries.
- **errors**: :func:`is_library_error` (raised by the storage stack itself, not by our code or a
  parser), :func:`is_transient` (worth trying again), :func:`storage_errors` (a library error as an
  ``OSError`` naming the object and the operation) and the one-line renderings :func:`one_line` and
  :func:`describe` used in every message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fsspec

#: Modules whose exceptions are failures of the storage stack (HTTP, AWS SDK, s3fs, fsspec, asyncio).
LIBRARY_MODULES = ("aiohttp", "botocore", "aiobotocore", "s3fs", "fsspec", "asyncio")

#: Substrings of error text from botocore/aiobotocore/s3fs meaning "try again later".
TRANSIENT_MARKERS = (
    "SlowDown",
    "Throttl",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Service Unavailable",
    "(500)",
    "(502)",
    "(503)",
    "(504)",
    " 503 ",
    "Connection reset",
    "Connection was closed",
    "ConnectionClosed",
    "timed out",
)

#: Exception class names of the storage stack that are always worth a retry.
TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectionError", "ServerDisconnectedError", "ClientPayloadError", "ResponseStreamingError",
    "IncompleteReadError",
})

#: botocore's default connection pool per client; asking for fewer would only throttle.
BOTOCORE_POOL = 10


# -- options ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Access:
    """What an S3 filesystem needs: where, who, and how hard to try."""

    endpoint: str | None = None
    region: str | None = None
    key: str | None = None
    secret: str | None = None
    token: str | None = None
    anonymous: bool = False  # unsigned requests: public buckets
    session: Any = None  # an aiobotocore session signing the requests (an assumed role)
    retry_count: int = 3
    request_timeout: float | None = None
    connections: int | None = None  # parallel requests wanted (botocore pools at least BOTOCORE_POOL)
    fresh_listings: bool = False  # no listings cache: decisions need what is there now


def botocore_retries(retry_count: int) -> dict[str, Any]:
    """botocore's retry configuration: standard mode (backoff and a retry quota), ``retry_count`` retries."""
    return {"mode": "standard", "total_max_attempts": retry_count + 1}


def s3_options(access: S3Access) -> dict[str, Any]:
    """fsspec storage options for s3fs: a fresh instance, bounded retries, the given identity."""
    options: dict[str, Any] = {"skip_instance_cache": True}
    if access.fresh_listings:
        options["use_listings_cache"] = False
    client_kwargs: dict[str, Any] = {}
    if access.endpoint:
        client_kwargs["endpoint_url"] = access.endpoint
    if access.region:
        client_kwargs["region_name"] = access.region
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    config_kwargs: dict[str, Any] = {"retries": botocore_retries(access.retry_count)}
    if access.request_timeout is not None:
        config_kwargs["connect_timeout"] = config_kwargs["read_timeout"] = access.request_timeout
    if access.connections is not None:
        # More requests than the pool only queue: files mode (one GET per object) could never
        # overlap more than the pool whatever max_threads said.
        config_kwargs["max_pool_connections"] = max(BOTOCORE_POOL, access.connections)
    options["config_kwargs"] = config_kwargs
    if access.anonymous:
        options["anon"] = True
    elif access.session is not None:
        options["session"] = access.session
    elif access.key is not None:
        options["key"] = access.key
        options["secret"] = access.secret
        if access.token is not None:
            options["token"] = access.token
    return options


def is_s3_url(url: str) -> bool:
    """True for an ``s3://`` or ``s3a://`` URL."""
    return url.startswith(("s3://", "s3a://"))


# -- attempts --------------------------------------------------------------------------------------


def is_s3fs(fs: fsspec.AbstractFileSystem) -> bool:
    """An s3fs filesystem (a subclass included)."""
    return any(cls.__module__.startswith("s3fs") for cls in type(fs).__mro__)


def single_attempt(fs: fsspec.AbstractFileSystem) -> fsspec.AbstractFileSystem:
    """One s3fs-level attempt per call (see the module docstring); other filesystems are left alone."""
    if is_s3fs(fs):
        fs.retries = 1  # an instance attribute (s3fs reads self.retries), not a constructor option
    return fs


def bounds_retries(storage_options: dict[str, Any] | None) -> bool:
    """True if ``storage_options`` bound botocore's retries (as :func:`s3_options` does)."""
    config_kwargs = (storage_options or {}).get("config_kwargs")
    return isinstance(config_kwargs, dict) and "retries" in config_kwargs


def open_filesystem(url: str | os.PathLike[str],
                    storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path)`` for a local path or fsspec URL; s3fs's own retries are off when the
    options bound botocore's (attempts would multiply otherwise)."""
    import fsspec  # not at import time: the entry points' light commands (spec) never open storage

    fs, path = fsspec.core.url_to_fs(os.fspath(url), **(storage_options or {}))
    if bounds_retries(storage_options):
        single_attempt(fs)
    return fs, path


# -- errors ----------------------------------------------------------------------------------------


def is_library_error(exc: BaseException) -> bool:
    """Raised by the storage stack itself (aiohttp, botocore, s3fs, fsspec, asyncio): its text is a
    storage failure, not data (a parser quoting a "503" cell) and not a bug of ours."""
    return (type(exc).__module__ or "").startswith(LIBRARY_MODULES)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: connection resets, timeouts, 5xx and throttling."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if type(exc).__name__ in TRANSIENT_NAMES:
        return True
    # Text markers only for storage-layer errors: a parser message quoting a "503" cell is data.
    if (is_library_error(exc) or type(exc) is OSError) and any(marker in str(exc) for marker in TRANSIENT_MARKERS):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


def one_line(exc: BaseException) -> str:
    """The first line of the exception's message, or its type's name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (``Type:`` alone when it has none), for one-line reports."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@contextlib.contextmanager
def storage_errors(url: str, what: str) -> Iterator[None]:
    """Storage failures as ``OSError`` naming ``url`` and the operation. s3fs re-raises its last
    error once its retries are spent, which may be a raw aiohttp/botocore exception; missing
    objects and refused access keep their own types."""
    try:
        yield
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:
        if url in str(exc):
            raise
        message = f"{url}: {what}: {exc.strerror or exc}"
        # OSError(None, text) would read "[Errno None] text".
        raise (OSError(message) if exc.errno is None else OSError(exc.errno, message)) from exc
    except Exception as exc:
        if not is_library_error(exc):
            raise
        raise OSError(f"{url}: {what}: {describe(exc)}") from exc
