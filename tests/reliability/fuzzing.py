"""Shared pieces of the fuzz tests: bounded hypothesis settings, a hang guard, JSON strategies."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Deterministic (derandomize: the same cases on every run and machine), bounded, no deadline (CI
#: machines are shared); the per-case hang guard below bounds the time instead.
FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

#: Cases run per fuzz test, summed into the README figure by tests printing them.
CASES = {"small": 60, "medium": 120, "large": 200}


@contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) when the block runs longer than ``seconds``: a hang, not a slow case."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=20)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


class Counter:
    """Counts the cases a fuzz test really ran (hypothesis may stop early on small spaces)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1
