"""Retrying transient storage errors (:func:`connector.storage.is_transient`) with exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from connector.storage import is_transient

T = TypeVar("T")

#: Seconds before the first retry; doubled each attempt (with jitter).
BASE_DELAY = 0.2
MAX_DELAY = 10.0


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
