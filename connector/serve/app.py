"""The server: an aiohttp application over one store, its middlewares, and running it.

Why aiohttp: it is already installed with s3fs (aiobotocore is built on it), it is mature, it
streams request and response bodies with flow control, and it is its own HTTP server (no ASGI
server to add). Its own shutdown drops request bytes that arrive once it begins (an upload in
flight could not finish), so stopping has a phase of ours first: stop listening, answer new
requests on open connections 503, and wait for the requests in flight (:class:`InFlight`).

Every answer that is not a success carries ``{"error": {"code", "message"}}``. The access log is
one JSON object a line on stderr: method, path (never the query), status, bytes, milliseconds,
remote address and principal; request headers (``Authorization`` among them) are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from connector.errors import ConfigError
from connector.serve import openapi
from connector.serve.auth import ANONYMOUS_ADMIN, Tokens, bearer_token
from connector.serve.buffer import BufferApi
from connector.serve.errors import ApiError, api_error
from connector.serve.routes import Datas3tApi, Limits
from connector.store import Store

PUBLIC_PATHS = frozenset({"/healthz", "/api/v1/openapi.json"})
MAX_JSON_BODY = 1 << 20  # bodies read whole (dataset metadata); uploads stream under Limits
_log = logging.getLogger("connector.serve")
_access = logging.getLogger("connector.serve.access")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``des serve`` is given."""

    root: str
    catalog: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: str | None = None  # tokens file; None only with no_auth
    no_auth: bool = False
    limits: Limits = field(default_factory=Limits)
    shutdown_timeout: float = 30.0
    threads: int = 32
    tls_cert: str | None = None
    tls_key: str | None = None
    grpc: str | None = None  # host:port of DatasetService over gRPC; None: not served


def open_store(options: ServeOptions) -> Store:
    """The store behind the server. Its containers are cut only past the upload limit, so one
    upload is one datarange and is committed (or dropped) as a whole."""
    return Store(options.root, options.catalog, storage_options=options.storage_options,
                 max_datapoints=1 << 62, max_bytes=options.limits.max_upload_bytes + 1)


class InFlight:
    """Counts the requests being served; once :meth:`stop` is called, refuses new ones (503)."""

    def __init__(self) -> None:
        self.count = 0
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        """Count the request while it is served; answer 503 once the server is stopping."""
        if self.stopping:
            return _error_response(ApiError(503, "stopping", "the server is stopping", {"Connection": "close"}))
        self.count += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def stop(self, timeout: float) -> bool:
        """Refuse new requests, wait up to ``timeout`` seconds for those in flight; True if none is left."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


def build_app(store: Store, tokens: Tokens | None, limits: Limits, in_flight: InFlight | None = None
              ) -> web.Application:
    """The application: Datas3t's routes, the data buffer's, the OpenAPI document, ``/healthz``. ``tokens=None``
    serves everyone as an admin (``--no-auth``); ``in_flight`` counts requests for a graceful stop."""
    middlewares = [_errors_as_json, _authenticate(tokens)]
    if in_flight is not None:
        middlewares.insert(0, in_flight.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=MAX_JSON_BODY)
    app.add_routes(Datas3tApi(store, limits).routes())
    app.add_routes(BufferApi(store, limits.max_upload_bytes, limits.lock_wait).routes())
    document = openapi.document()

    async def openapi_json(_: web.Request) -> web.Response:
        return web.json_response(document)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.add_routes([web.get("/api/v1/openapi.json", openapi_json), web.get("/healthz", healthz)])
    return app


@web.middleware
async def _errors_as_json(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: unknown path, wrong method, body over client_max_size
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return _error_response(ApiError(exc.status, code, f"{exc.reason}: {request.method} {request.path}",
                                        {k: v for k, v in exc.headers.items() if k == "Allow"}))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every error becomes an answer (api_error logs the unexpected)
        return _error_response(api_error(exc))


def _error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


def _authenticate(tokens: Tokens | None) -> Any:
    """A middleware naming the principal of every request to a non-public path (401 without one)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        if tokens is None:
            request["principal"] = ANONYMOUS_ADMIN
            return await handler(request)
        token = bearer_token(request.headers.get("Authorization"))
        principal = tokens.principal(token) if token else None
        if principal is None:
            why = "unknown bearer token" if token else "missing bearer token (Authorization: Bearer <token>)"
            raise ApiError(401, "unauthenticated", why, {"WWW-Authenticate": 'Bearer realm="des"'})
        request["principal"] = principal
        return await handler(request)

    return authenticate


class JsonAccessLog(AbstractAccessLogger):
    """One JSON line per request; no headers, no query string, no body."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_taken: float) -> None:
        """Log one request: method, path, status, bytes, milliseconds and principal, as JSON."""
        principal = request.get("principal")
        self.logger.info(json.dumps({
            "event": "access", "time": _now(), "remote": request.remote, "method": request.method,
            "path": request.path, "status": response.status, "bytes": response.body_length,
            "ms": round(time_taken * 1000, 1), "principal": getattr(principal, "name", None)}))


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e3):03d}Z"


def _event(event: str, **fields: Any) -> None:
    _log.info(json.dumps({"event": event, "time": _now(), **fields}))


def _start_grpc(options: ServeOptions, store: Store, tokens: Tokens | None) -> Any:
    """DatasetService on ``options.grpc`` (imported here: grpcio is needed only to serve it)."""
    try:
        from connector.serve.grpc_service import start_grpc
    except ImportError as exc:
        raise ConfigError(f"--grpc needs grpcio and protobuf (pip install 'des-connector[grpc]'): {exc}") from None

    assert options.grpc is not None
    tls = None
    if options.tls_cert and options.tls_key:
        with open(options.tls_cert, "rb") as cert, open(options.tls_key, "rb") as key:
            tls = (cert.read(), key.read())
    server, port = start_grpc(store, tokens, options.grpc, max_upload_bytes=options.limits.max_upload_bytes,
                              lock_wait=options.limits.lock_wait, tls=tls)
    host = options.grpc.rpartition(":")[0]
    _event("listening_grpc", address=f"{host}:{port}", tls=tls is not None)
    return server


def _tls(options: ServeOptions) -> ssl.SSLContext | None:
    if options.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.tls_cert, options.tls_key)
    return context


def serve(options: ServeOptions) -> None:
    """Run the server until SIGTERM or SIGINT, then stop gracefully: stop listening, answer new
    requests 503, let requests in flight finish for up to ``shutdown_timeout`` seconds, cancel the
    rest (an upload cancelled writes nothing), close the store."""
    logging.basicConfig(stream=sys.stderr, format="%(message)s", level=logging.INFO, force=True)
    tokens = Tokens.load(options.tokens) if options.tokens else None
    if tokens is None and not options.no_auth:
        raise ConfigError("des serve needs a tokens file (--tokens FILE) or --no-auth")
    tls = _tls(options)
    with open_store(options) as store:
        asyncio.run(_serve(options, store, tokens, tls))


async def _serve(options: ServeOptions, store: Store, tokens: Tokens | None, tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    workers = ThreadPoolExecutor(options.threads, thread_name_prefix="des-serve")
    loop.set_default_executor(workers)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    in_flight = InFlight()
    runner = web.AppRunner(build_app(store, tokens, options.limits, in_flight), handle_signals=False,
                           access_log_class=JsonAccessLog, access_log=_access, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port, ssl_context=tls)
        await site.start()
        grpc_server = _start_grpc(options, store, tokens) if options.grpc else None  # logged before "listening"
        host, port = runner.addresses[0][:2]
        scheme = "https" if tls else "http"
        _event("listening", url=f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}",
               root=store.storage.url(store.root), auth="none" if tokens is None else "tokens")
        if tokens is None:
            _log.warning(json.dumps({"event": "warning", "time": _now(),
                                     "message": "--no-auth: every request is served as an admin"}))
        await stop.wait()
        _event("stopping", grace_seconds=options.shutdown_timeout, in_flight=in_flight.count)
        await site.stop()  # no new connections
        stopped_grpc = (loop.run_in_executor(None, lambda: grpc_server.stop(options.shutdown_timeout).wait())
                        if grpc_server is not None else None)
        if not await in_flight.stop(options.shutdown_timeout):
            _event("cancelling", in_flight=in_flight.count)
        if stopped_grpc is not None:
            await stopped_grpc
    finally:
        await runner.cleanup()
        workers.shutdown(wait=True)
    _event("stopped")
