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

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ALL_KINDS = ("500", "503", "reset", "delay", "truncate")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "content-length"}

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


class FaultProxy:
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
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.fraction, self.seed, self.kinds, self.delay, self.when = fraction, seed, tuple(kinds), delay, when
        self.stats: Counter[str] = Counter()
        self.log: list[tuple[int, str, str, str]] = []  # (n, method, path, fault) of each injected fault
        self._lock = threading.Lock()
        self._n = 0
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

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


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, like S3: clients pool connections

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence per-request logging
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer".
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

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

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.owner.upstream_host, self.owner.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def _handle(self) -> None:
        body = self._body()
        fault = self.owner.next_fault(self.command, self.path)
        if fault in ("500", "503"):
            self._error(fault)
            return
        if fault == "reset":
            self._reset()
            return
        if fault == "delay":
            self.owner._closing.wait(self.owner.delay)
            self._reset()
            return
        status, reason, headers, data = self._forward(body)
        if fault == "lost":
            self._reset()
            return
        self.send_response(status, reason)
        declared = None
        for name, value in headers:
            low = name.lower()
            if low == "content-length":
                declared = value
            if low in _HOP_BY_HOP or low in ("date", "server"):
                continue
            self.send_header(name, value)
        # HEAD answers declare the object's length without carrying it.
        self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "truncate" and len(data) >= 2:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            # A clean close (FIN, not RST) so the half body is delivered before the end of stream.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
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
