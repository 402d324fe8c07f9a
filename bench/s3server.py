"""moto's S3 server on 127.0.0.1 with a request counter, run in its own process.

``python bench/s3server.py PORT [--keepalive]`` serves moto's WSGI app (the same app
``python -m moto.server`` serves; with ``--keepalive`` behind aiohttp's HTTP/1.1 server, which
keeps connections open as S3 does, instead of werkzeug's, which closes each one) wrapped in a
middleware that counts every request by method, and range GETs apart.
``GET /__bench__/counts`` returns the counters as JSON and ``POST /__bench__/reset`` zeroes
them; ``POST /__bench__/latency?ms=N`` makes every S3 request wait N ms before it is served (0:
none). Those paths are not counted. Requests are counted at the server, so nothing a client
library does (HEADs, retries, multipart parts, readahead) escapes the count.

The latency models S3's own: AWS's performance guide puts the median latency of small GETs and
PUTs "in the range of tens of milliseconds", while moto on loopback answers in ~3 ms of CPU. The
wait is a ``time.sleep`` in the request's thread (werkzeug serves each connection in its own
thread and the sleep releases the GIL), so concurrent requests wait at the same time, as on S3,
and moto's CPU cost per request is unchanged.

:class:`S3Server` starts and stops it from the benchmark process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass


def _app():
    from moto.server import DomainDispatcherApplication, create_backend_app

    inner = DomainDispatcherApplication(create_backend_app)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    latency = [0.0]  # seconds every S3 request waits before it is served

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__bench__/"):
            if path.endswith("/reset"):
                with lock:
                    counts.clear()
            elif path.endswith("/latency"):
                query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
                latency[0] = float(query.get("ms", 0)) / 1000
            with lock:
                body = json.dumps(dict(counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        method = environ.get("REQUEST_METHOD", "?")
        with lock:
            counts["total"] += 1
            counts[method] += 1
            if method == "GET" and environ.get("HTTP_RANGE"):
                counts["GET_range"] += 1
            query = environ.get("QUERY_STRING", "")
            if method == "GET" and ("list-type" in query or path.count("/") <= 1 and "prefix" in query):
                counts["LIST"] += 1
        if latency[0]:
            time.sleep(latency[0])

        def counting_start_response(status, headers, exc_info=None):
            for k, v in headers:
                if k.lower() == "content-length" and method in ("GET", "HEAD") and v.isdigit() and method == "GET":
                    with lock:
                        counts["bytes_out"] += int(v)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return inner(environ, counting_start_response)

    return app


def serve(port: int, keepalive: bool = False) -> None:
    """Serve the counting app on 127.0.0.1:``port``: by werkzeug (what ``python -m moto.server``
    runs), or with ``keepalive`` by aiohttp's HTTP/1.1 server (:func:`_serve_keepalive`)."""
    os.environ.setdefault("MOTO_PORT", str(port))
    if keepalive:
        _serve_keepalive(port, _app())
        return
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", port, _app(), threaded=True, use_reloader=False)


#: Response headers the HTTP server sets itself (framing), not copied from the WSGI app's.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


def _serve_keepalive(port: int, app) -> None:
    """The WSGI ``app`` behind aiohttp's HTTP/1.1 server, which keeps connections open between
    requests as S3 does. werkzeug's server answers every request with ``Connection: close``, so a
    client opens a TCP connection per request: on tiny objects that per-request cost is a large
    part of what is measured, for every tool alike, and one S3 does not charge. Each request's body
    is read whole, the app runs in a thread (moto is synchronous; the latency sleep waits there),
    and its response is sent whole."""
    import asyncio
    import io
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import unquote

    from aiohttp import web

    pool = ThreadPoolExecutor(64)

    def call(environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        started: dict = {}

        def start_response(status, headers, exc_info=None):
            started["status"], started["headers"] = status, headers

        body = b"".join(app(environ, start_response))
        return started["status"], started["headers"], body

    async def handle(request: web.Request) -> web.StreamResponse:
        data = await request.read()
        raw_path, _, query = request.raw_path.partition("?")
        environ = {
            "REQUEST_METHOD": request.method, "SCRIPT_NAME": "",
            # WSGI's PATH_INFO: percent-decoded, its UTF-8 bytes as latin-1 text
            "PATH_INFO": unquote(raw_path).encode("utf-8").decode("latin-1"), "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": request.remote or "127.0.0.1", "CONTENT_LENGTH": str(len(data)),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_LENGTH" or key == "TRANSFER_ENCODING":  # the body is whole, its length above
                continue
            key = key if key == "CONTENT_TYPE" else f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        status, headers, body = await asyncio.get_running_loop().run_in_executor(pool, call, environ)
        response = web.Response(status=int(status.split(" ", 1)[0]), body=body)
        for name, value in headers:
            if name.lower() not in _FRAMING:
                response.headers.add(name, value)
        if request.method == "HEAD":  # no body, but the object's length, as the app gave it
            length = next((v for k, v in headers if k.lower() == "content-length"), None)
            if length is not None:
                response.headers["Content-Length"] = length
        return response

    server = web.Application(client_max_size=1 << 40)
    server.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(server, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """The counting moto server in a subprocess, on a free port."""

    key: str = "testing"
    secret: str = "testing"
    region: str = "us-east-1"
    #: Serve with keep-alive connections (aiohttp) instead of werkzeug's one connection per request.
    keepalive: bool = False

    def start(self) -> S3Server:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret}
        argv = [sys.executable, os.path.abspath(__file__), str(self.port)] + (["--keepalive"] if self.keepalive else [])
        self.proc = subprocess.Popen(argv, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.counts()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto server exited at start") from None
                time.sleep(0.2)
        raise RuntimeError("moto server did not start in 60 s")

    def stop(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def counts(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.endpoint_url}/__bench__/counts", timeout=5) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint_url}/__bench__/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def set_latency(self, ms: float) -> None:
        """Every S3 request from now on waits ``ms`` milliseconds at the server (0: none)."""
        req = urllib.request.Request(f"{self.endpoint_url}/__bench__/latency?ms={ms}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    # clients ------------------------------------------------------------------------------

    def storage_options(self) -> dict:
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
            "skip_instance_cache": True,
            "use_listings_cache": False,
        }

    def s3fs(self, **extra):
        import s3fs

        return s3fs.S3FileSystem(**{**self.storage_options(), **extra})

    def boto3(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.key,
                            aws_secret_access_key=self.secret, region_name=self.region,
                            config=Config(max_pool_connections=32))


if __name__ == "__main__":
    serve(int(sys.argv[1]), keepalive="--keepalive" in sys.argv[2:])
