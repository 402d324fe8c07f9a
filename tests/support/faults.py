"""A fault-injecting HTTP proxy in front of the test S3 server (moto), for reliability tests.

:class:`FaultProxy` listens on 127.0.0.1, forwards every request to the upstream endpoint and, on a
seeded schedule, breaks a configurable fraction of them the ways a real network and a busy S3 do:

- ``"500"``: ``500 InternalError`` with S3's XML error body (request not forwarded);
- ``"503"``: ``503 SlowDown`` with S3's XML error body (request not forwarded);
- ``"reset"``: the TCP connection is reset (RST) before any answer (request not forwarded);
- ``"delay"``: nothing is answered for ``delay`` seconds (past the client's read timeout), then the
  connection is closed (request not forwarded);
- ``"truncate"``: the request is forwarded and the answer's headers (full ``Content-Length``) and
  only half of its body are sent, then the connection is closed. Only GET answers carry a body worth
  truncating; on other methods this kind becomes ``"503"`` (so a write is never applied while the
  client sees a failure, which is a different fault: ``"lost"``);
- ``"lost"`` (not in the default mix): the request is forwarded and applied, then the connection is
  reset instead of answering.

The schedule is a pure function of ``(seed, request number)``: request *n* is faulted, and with which
kind, no matter which thread serves it, so a run is reproducible up to the order in which concurrent
requests arrive. :attr:`FaultProxy.stats` counts requests and injected faults per kind.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from tests.support.http_proxy import ProxyHandler, ProxyServer

ALL_KINDS = ("500", "503", "reset", "delay", "truncate")

_ERROR_XML = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


def fault_for(seed: int, n: int, fraction: float, kinds: Sequence[str]) -> str | None:
    """The fault of request number ``n`` (0-based) under ``seed``, or None to forward it intact."""
    if fraction <= 0 or not kinds:
        return None
    rng = random.Random(f"{seed}:{n}")
    if fraction < 1 and rng.random() >= fraction:
        return None
    return kinds[rng.randrange(len(kinds))]


class FaultProxy(ProxyServer):
    """The proxy; start with :meth:`start` (or use :func:`fault_proxy`), point clients at :attr:`url`.

    ``fraction`` (0..1) of requests get a fault drawn from ``kinds``; ``delay`` is how long a
    ``"delay"`` fault holds the connection (choose it above the client's read timeout). ``when``
    optionally restricts faults to requests for which ``when(method, path)`` is true. ``fraction``
    and ``kinds`` may be changed while the proxy runs (e.g. to stop faults half-way).
    """

    def __init__(self, upstream: str, *, fraction: float = 0.1, seed: int = 0,
                 kinds: Sequence[str] = ALL_KINDS, delay: float = 3.0,
                 when: Callable[[str, str], bool] | None = None) -> None:
        unknown = set(kinds) - set(ALL_KINDS) - {"lost"}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        super().__init__(upstream)
        self.fraction, self.seed, self.kinds, self.delay, self.when = fraction, seed, tuple(kinds), delay, when
        self.stats: Counter[str] = Counter()
        self.log: list[tuple[int, str, str, str]] = []  # (n, method, path, fault) of each injected fault
        self._lock = threading.Lock()
        self._n = 0
        self._closing = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy
            upstream = proxy.upstream

        self._serve(Handler, "fault-proxy")
        return self

    def stop(self) -> None:
        self._closing.set()  # a "delay" fault in progress ends now
        super().stop()

    # -- schedule -------------------------------------------------------------------------------

    def next_fault(self, method: str, path: str) -> str | None:
        """Number this request and decide its fault (counted in :attr:`stats`)."""
        with self._lock:
            n = self._n
            self._n += 1
            self.stats["requests"] += 1
            self.stats[method] += 1  # per method too: request-cost tests count GETs through fraction=0
            fault = fault_for(self.seed, n, self.fraction, self.kinds)
            if fault is not None and self.when is not None and not self.when(method, path):
                fault = None
            if fault == "truncate" and method != "GET":
                fault = "503"
            if fault is not None:
                self.stats[fault] += 1
                self.stats["faults"] += 1
                self.log.append((n, method, path, fault))
            return fault

    @property
    def faults(self) -> int:
        """How many faults were injected so far."""
        return self.stats["faults"]


class _Handler(ProxyHandler):
    owner: FaultProxy

    def _error(self, kind: str) -> None:
        status, reason, code, message = _ERROR_XML[kind]
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>fault-proxy</RequestId></Error>").encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self.read_body()
        fault = self.owner.next_fault(self.command, self.path)
        if fault in ("500", "503"):
            self._error(fault)
            return
        if fault == "reset":
            self.reset_connection()
            return
        if fault == "delay":
            self.owner._closing.wait(self.owner.delay)
            self.reset_connection()
            return
        status, reason, headers, data = self.forward(body)
        if fault == "lost":
            self.reset_connection()
            return
        self.send_head(status, reason, headers, data)
        if self.command == "HEAD":
            return
        if fault == "truncate" and len(data) >= 2:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.end_stream()
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815


@contextmanager
def fault_proxy(upstream: str, **kwargs) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy` for the ``with`` block."""
    proxy = FaultProxy(upstream, **kwargs).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
