"""``des serve``: serve a store over HTTP (Datas3t's REST API; see :mod:`connector.serve`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``des serve`` to ``sub``."""
    p = sub.add_parser("serve", help="serve a store over HTTP (Datas3t's REST API)",
                       description="Serve the datasets of a store root over HTTP: Datas3t's REST API under "
                                   "/api/v1/datas3t, the data buffer's endpoints under /api/v1/buffer/{id}, the "
                                   "OpenAPI document at /api/v1/openapi.json; with --grpc, DatasetService over "
                                   "gRPC. Stops gracefully on SIGTERM or SIGINT.")
    p.add_argument("--root", help="store root (local folder or fsspec URL)")
    p.add_argument("--catalog", help="SQLite catalog (default: <root>/.des-catalog.sqlite, or the user cache dir)")
    p.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON",
                   help="fsspec options of the root, e.g. '{\"client_kwargs\": {\"endpoint_url\": ...}}'")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8080; port 0 picks a free one, printed at start)")
    p.add_argument("--grpc", metavar="HOST:PORT",
                   help="also serve DatasetService over gRPC here (spec/dataset_service.proto; needs grpcio)")
    p.add_argument("--tokens", metavar="FILE", help="tokens file: principals, SHA-256 of their tokens, roles per topic and dataset")
    p.add_argument("--no-auth", action="store_true", help="serve everyone as an admin (no tokens file)")
    p.add_argument("--max-upload-bytes", type=_positive, default=1 << 30, metavar="N",
                   help="largest upload body (default 1 GiB); larger ones get 413 and write nothing")
    p.add_argument("--lock-wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long a write waits for another writer of the dataset before 503 (default 30)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--new-token", action="store_true",
                   help="print a new random token and the SHA-256 the tokens file stores, then exit")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from connector.serve import Limits, ServeOptions, serve
    from connector.serve.auth import new_token

    if args.new_token:
        token, digest = new_token()
        print(json.dumps({"token": token, "token_sha256": digest}))
        return 0
    problem = _usage_problem(args)
    if problem:
        print(f"des serve: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    host, port = _listen(args.listen)
    serve(ServeOptions(root=args.root, catalog=args.catalog, storage_options=args.storage_options or {},
                       host=host, port=port, tokens=args.tokens, no_auth=args.no_auth,
                       limits=Limits(max_upload_bytes=args.max_upload_bytes, lock_wait=args.lock_wait),
                       shutdown_timeout=args.shutdown_timeout, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       grpc=args.grpc))
    return 0


def _usage_problem(args: argparse.Namespace) -> str | None:
    if not args.root:
        return "--root is required"
    if bool(args.tokens) == bool(args.no_auth):
        return "give exactly one of --tokens FILE and --no-auth"
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    try:
        _listen(args.listen)
        if args.grpc:
            _listen(args.grpc)
    except ValueError as exc:
        return str(exc)
    return None


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _positive(text: str) -> Any:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value
