"""Transient storage errors: retried with backoff, resumed without duplicates, then reported.

The remote is doubled by an fsspec MemoryFileSystem subclass whose files fail like a flaky network
(connection reset part-way through a read); our code is not mocked.
"""

from __future__ import annotations

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from connector.source import Source, TransientError
from connector.source.formats import FileStats, FormatOptions
from connector.source.read import file_batches
from connector.source.retry import backoff_delays
from connector.storage import is_transient
from tests.source.helpers import drain


class FlakyFile:
    """Wraps a file; ``read`` raises ConnectionResetError once ``fail_after`` bytes were served."""

    def __init__(self, inner, fail_after: int | None) -> None:
        self.inner, self.fail_after, self.served = inner, fail_after, 0

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.served >= self.fail_after:
            raise ConnectionResetError("[Errno 104] Connection reset by peer")
        data = self.inner.read(n if n is None or n < 0 or self.fail_after is None else min(n, 4096))
        self.served += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.inner.close()


class FlakyFS(MemoryFileSystem):
    """Opens fail (or reads break mid-file) for the first ``failures`` opens."""

    protocol = "flaky"

    def __init__(self, failures: int, mode: str = "read", fail_after: int = 10_000, **kw) -> None:
        super().__init__(**kw)
        self.failures, self.mode, self.fail_after, self.opens = failures, mode, fail_after, 0

    def _open(self, path, mode="rb", **kwargs):
        self.opens += 1
        if self.opens <= self.failures and self.mode == "open":
            raise ConnectionError("503 Service Unavailable")
        inner = super()._open(path, mode, **{k: v for k, v in kwargs.items() if k in ("autocommit",)})
        return FlakyFile(inner, self.fail_after if self.opens <= self.failures else None)


@pytest.fixture
def flaky_store():
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]
    body = b"i,s\n" + b"".join(b"%d,%s\n" % (i, b"x" * 20) for i in range(3000))
    fsspec.filesystem("memory").pipe("/r/s/a.csv", body)
    yield body
    MemoryFileSystem.store.clear()


def test_mid_file_reset_resumes_without_duplicates(flaky_store):
    fs = FlakyFS(failures=2, fail_after=20_000, skip_instance_cache=True)
    src = Source({"root_url": "memory:///r", "retry_count": 3}, fs=fs, retry_base_delay=0.001)
    [ref] = src.files("s")
    options = FormatOptions(batch_size=100, block_size=8192)
    schema = src._data_schema("s", [ref])
    rows = [r["i"] for b in file_batches(fs, ref, schema, options, 3, FileStats(), 0.001) for r in b.to_pylist()]
    assert rows == list(range(3000))
    assert fs.opens >= 3  # failed twice part-way, then finished


def test_open_failures_retried_then_reported(flaky_store):
    fs = FlakyFS(failures=2, mode="open", skip_instance_cache=True)
    src = Source({"root_url": "memory:///r", "retry_count": 3}, fs=fs, retry_base_delay=0.001)
    rows, done = drain(src, "s")
    assert len(rows) == 3000 and done[0].records == 3000

    fs = FlakyFS(failures=100, mode="open", skip_instance_cache=True)
    src = Source({"root_url": "memory:///r", "retry_count": 2}, fs=fs, retry_base_delay=0.001)
    with pytest.raises(TransientError, match=r"s/a\.csv"):
        drain(src, "s")


def test_backoff_is_exponential():
    delays = backoff_delays(4, base=1.0)
    assert len(delays) == 4
    assert 0.75 <= delays[0] <= 1.25 and 6.0 <= delays[3] <= 10.0


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError("reset"), True),
        (TimeoutError(), True),
        (OSError("An error occurred (SlowDown) when calling GetObject"), True),
        (FileNotFoundError("x"), False),
        (PermissionError("denied"), False),
        (ValueError("CSV conversion error: invalid value '503'"), False),
        (OSError("zlib inflate failed"), False),
    ],
)
def test_transient_classification(exc, transient):
    assert is_transient(exc) is transient
