"""Retrying transient storage errors with exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Substrings of error text from botocore/aiobotocore/s3fs meaning "try again later".
_TRANSIENT_MARKERS = (
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

#: Seconds before the first retry; doubled each attempt (with jitter).
BASE_DELAY = 0.2
MAX_DELAY = 10.0


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: connection resets, timeouts, 5xx and throttling."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    name = type(exc).__name__
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ClientConnectionError", "ServerDisconnectedError", "ClientPayloadError", "ResponseStreamingError",
                "IncompleteReadError"}:
        return True
    # Text markers only for storage-layer errors: a parser message quoting a "503" cell is data.
    module = type(exc).__module__ or ""
    storage_error = module.startswith(("botocore", "aiobotocore", "s3fs", "aiohttp", "fsspec")) or (
        type(exc) is OSError
    )
    if storage_error and any(marker in str(exc) for marker in _TRANSIENT_MARKERS):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


def backoff_delays(retries: int, base: float = BASE_DELAY) -> list[float]:
    """Delays before each of ``retries`` attempts: base, 2*base, 4*base... (capped, +-25% jitter)."""
    return [min(MAX_DELAY, base * 2**i) * random.uniform(0.75, 1.25) for i in range(retries)]


def call_with_retry(fn: Callable[[], T], retries: int, base: float = BASE_DELAY,
                    on_retry: Callable[[int, BaseException, float], None] | None = None) -> T:
    """``fn()``, retried up to ``retries`` times while it raises a transient error."""
    delays = backoff_delays(retries, base)
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= len(delays) or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(attempt + 1, exc, delays[attempt])
            time.sleep(delays[attempt])
            attempt += 1
