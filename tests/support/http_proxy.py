"""What the test proxies in front of moto share: a threaded server and a forwarding request handler.

:class:`ProxyServer` owns the listening socket on 127.0.0.1 and the upstream address;
:class:`ProxyHandler` reads a request body (plain or chunked), forwards it upstream, sends an
upstream answer's headers back, and can break the connection the ways a network does (reset, early
end of stream). :mod:`tests.support.s3proxy` (counting) and :mod:`tests.support.faults` (seeded
faults) each add their own policy on top.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Headers that describe one hop, not the message: never copied across the proxy.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "content-length"})


class ProxyServer:
    """A proxy's lifecycle: :meth:`start` with a handler class, :attr:`url` for clients, :meth:`stop`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream: tuple[str, int] = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _serve(self, handler: type[ProxyHandler], thread_name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=thread_name, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class ProxyHandler(BaseHTTPRequestHandler):
    """Forwarding primitives; a subclass sets ``upstream`` and routes every method to its own policy."""

    upstream: tuple[str, int]
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect: they pool connections

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no per-request noise
        pass

    def read_body(self) -> bytes:
        """The request body, de-chunked (boto sends chunked uploads)."""
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

    def forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send this request upstream; its status, reason, headers and whole body."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def send_head(self, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes) -> None:
        """Status line and end-to-end headers of an answer whose body is ``body``."""
        self.send_response(status, reason)
        declared = None
        for name, value in headers:
            low = name.lower()
            if low == "content-length":
                declared = value
            if low in HOP_BY_HOP or low in ("date", "server"):
                continue
            self.send_header(name, value)
        # A HEAD answer declares the object's length without carrying it.
        self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(body)))
        self.end_headers()

    def reset_connection(self) -> None:
        """Drop the connection with RST: the client sees "connection reset by peer"."""
        try:
            # SO_LINGER 0 makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def end_stream(self) -> None:
        """Close cleanly (FIN, not RST) so what was written is delivered before the end of stream."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
