"""A small counting HTTP proxy in front of the test S3 server, for request-cost tests.

:class:`CountingProxy` listens on 127.0.0.1, forwards every request to the upstream endpoint
(moto) and logs one :class:`Exchange` per request: method, path, ``Range`` header, status and the
body bytes sent back. Tests point s3fs at :attr:`CountingProxy.url` (see
:meth:`CountingProxy.storage_options`) and assert on what a read really cost::

    with CountingProxy(s3_endpoint.endpoint_url) as proxy, proxy.window() as w:
        DesReader(url, storage_options=proxy.storage_options(s3_endpoint)).read("a.csv")
    assert w.count("GET") <= 2 and w.count() == w.count("GET")

Fault injection plugs in through one hook, ``fault(request) -> action | None``, called for every
request before it is forwarded (``None``: forward it untouched). Actions:

- :class:`Respond`: answer with this status/body instead of forwarding (e.g. a 503 SlowDown);
- :data:`RESET`: reset the TCP connection without answering;
- :class:`Truncate`: forward, then send the headers (full ``Content-Length``) and only ``keep``
  body bytes, then close.

A schedule is any callable; :class:`Request` carries its sequence number ``n`` so a seeded schedule
can be a pure function of it. The ``s3_proxy`` fixture below gives a test a started proxy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

from tests.support.http_proxy import ProxyHandler, ProxyServer


@dataclass(frozen=True)
class Request:
    """What the client sent (``n`` numbers requests from 0 in arrival order)."""

    n: int
    method: str
    path: str  # path and query string, e.g. ``/bucket/key.des?uploadId=...``
    headers: dict[str, str]
    body: bytes

    @property
    def range(self) -> str | None:
        """The ``Range`` header (``bytes=lo-hi`` or ``bytes=-n``), if any."""
        return next((v for k, v in self.headers.items() if k.lower() == "range"), None)

    @property
    def key(self) -> str:
        """``bucket/key`` without the query string."""
        return urlsplit(self.path).path.lstrip("/")


@dataclass(frozen=True)
class Respond:
    """Fault action: answer with this instead of forwarding."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/xml"),)


@dataclass(frozen=True)
class Truncate:
    """Fault action: forward, then deliver only ``keep`` bytes of the answer's body and close."""

    keep: int


RESET: Literal["reset"] = "reset"
Action = Respond | Truncate | Literal["reset"]
FaultHook = Callable[[Request], Action | None]


@dataclass(frozen=True)
class Exchange:
    """One logged request and what the proxy did with it."""

    request: Request
    status: int | None  # None when the connection was reset
    sent: int  # body bytes sent back to the client
    action: Action | None


@dataclass
class Window:
    """The exchanges logged while a :meth:`CountingProxy.window` block ran."""

    exchanges: list[Exchange] = field(default_factory=list)

    def count(self, method: str | None = None) -> int:
        """Number of requests, of one method or all."""
        return sum(1 for e in self.exchanges if method is None or e.request.method == method)

    @property
    def sent(self) -> int:
        """Body bytes sent to the client."""
        return sum(e.sent for e in self.exchanges)

    def ranges(self) -> list[str | None]:
        """The ``Range`` header of each GET, in order."""
        return [e.request.range for e in self.exchanges if e.request.method == "GET"]

    def __repr__(self) -> str:
        lines = [f"{e.request.method} {e.request.path} {e.request.range or ''} -> {e.status} ({e.sent} B)"
                 for e in self.exchanges]
        return "Window(\n  " + "\n  ".join(lines) + "\n)"


class CountingProxy(ProxyServer):
    """Forwarding, logging HTTP proxy; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self, upstream: str, fault: FaultHook | None = None) -> None:
        super().__init__(upstream)
        self.fault = fault  # may be replaced while the proxy runs
        self.log: list[Exchange] = []
        self._lock = threading.Lock()
        self._n = 0
        self._windows: list[Window] = []

    def storage_options(self, endpoint: Any) -> dict[str, Any]:
        """s3fs options of the test ``S3Endpoint`` ``endpoint``, pointed at this proxy."""
        options = dict(endpoint.storage_options())
        options["client_kwargs"] = dict(options["client_kwargs"], endpoint_url=self.url)
        return options

    def start(self) -> CountingProxy:
        owner = self

        class Handler(_Handler):
            proxy = owner
            upstream = owner.upstream

        self._serve(Handler, "s3-counting-proxy")
        return self

    def __enter__(self) -> CountingProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @contextmanager
    def window(self) -> Iterator[Window]:
        """Collect the exchanges that complete inside the ``with`` block."""
        w = Window()
        with self._lock:
            self._windows.append(w)
        try:
            yield w
        finally:
            with self._lock:
                self._windows.remove(w)

    # -- called by the handler threads ----------------------------------------------------------

    def _number(self) -> int:
        with self._lock:
            n, self._n = self._n, self._n + 1
            return n

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.log.append(exchange)
            for w in self._windows:
                w.exchanges.append(exchange)


class _Handler(ProxyHandler):
    proxy: CountingProxy

    def _handle(self) -> None:
        request = Request(self.proxy._number(), self.command, self.path, dict(self.headers.items()),
                          self.read_body())
        hook = self.proxy.fault
        action = hook(request) if hook is not None else None
        if action == RESET:
            self.proxy._record(Exchange(request, None, 0, action))
            self.reset_connection()
            return
        if isinstance(action, Respond):
            status, reason, headers, body = action.status, None, list(action.headers), action.body
        else:
            status, reason, headers, body = self.forward(request.body)
        self.send_head(status, reason, headers, body)
        if self.command == "HEAD":
            body = b""
        if isinstance(action, Truncate):
            body = body[: action.keep]
        # Logged before the client can see the answer, so a window closed right after it counts it.
        self.proxy._record(Exchange(request, status, len(body), action))
        self.wfile.write(body)
        self.wfile.flush()
        if isinstance(action, Truncate):
            self.end_stream()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815


@pytest.fixture
def s3_proxy(s3_endpoint: Any) -> Iterator[CountingProxy]:
    """A started :class:`CountingProxy` in front of the session's S3 test server.

    Registered for every test by ``pytest_plugins`` in tests/conftest.py: take ``s3_proxy`` as an argument.
    """
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        yield proxy
