"""``des-source``: the file source speaking the Airbyte protocol.

``des-source spec | check --config F | discover --config F | read --config F --catalog F [--state F]``

stdout carries Airbyte messages only, one JSON object per line (anything else a library might print
is sent to stderr). Problems become CONNECTION_STATUS FAILED (check) or a TRACE error (discover,
read) naming the config field, the stream or the file, never a traceback on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import IO, Any

import pyarrow as pa

from connector.airbyte import messages
from connector.errors import ConfigError, ConnectorError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Output:
    """Thread-safe writer of message lines to the real stdout (worker threads log too)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def message(self, msg: dict[str, Any]) -> None:
        self.raw(messages.dumps(msg))

    def raw(self, data: bytes) -> None:
        with self._lock:
            self._out.write(data)

    def flush(self) -> None:
        with self._lock:
            self._out.flush()


class LogHandler(logging.Handler):
    """Python logging -> Airbyte LOG messages."""

    LEVELS = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
              logging.CRITICAL: "FATAL"}

    def __init__(self, out: Output) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.message(messages.log(record.getMessage(), self.LEVELS.get(record.levelno, "INFO")))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - logging must never break a sync
            self.handleError(record)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="des-source", description="CSV/JSON/Parquet files from S3 or any fsspec URL, as an Airbyte source.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    sub.add_parser("spec", help="print the configuration spec")
    for name, help_text in (("check", "list the root and open one file"), ("discover", "print the catalog")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="source config JSON file")
    p = sub.add_parser("read", help="emit records and state")
    p.add_argument("--config", required=True, help="source config JSON file")
    p.add_argument("--catalog", required=True, help="configured catalog JSON file")
    p.add_argument("--state", help="state JSON file (list of STREAM state messages, or legacy)")
    return parser


def load_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: {exc}") from None


def cmd_spec(out: Output, args: argparse.Namespace) -> int:
    from connector.source.config import load_spec

    out.message(messages.spec(load_spec(), supportsIncremental=True,
                              documentationUrl="https://github.com/des-connector/des-connector#source"))
    return EXIT_OK


def cmd_check(out: Output, args: argparse.Namespace) -> int:
    from connector.source import Source

    try:
        Source(load_json(args.config, "config")).check()
    except ConnectorError as exc:
        out.message(messages.connection_status(False, str(exc)))
        return EXIT_OK
    out.message(messages.connection_status(True))
    return EXIT_OK


def cmd_discover(out: Output, args: argparse.Namespace) -> int:
    from connector.source import Source

    out.message(messages.catalog(Source(load_json(args.config, "config")).discover()))
    return EXIT_OK


def _selected(stream: dict[str, Any]) -> list[str] | None:
    props = (stream.get("json_schema") or {}).get("properties")
    return list(props) if isinstance(props, dict) and props else None


def _project(batch: pa.RecordBatch, columns: list[str] | None) -> pa.RecordBatch:
    if columns is None:
        return batch
    keep = [name for name in batch.schema.names if name in columns]
    return batch if len(keep) == batch.num_columns else batch.select(keep)


def cmd_read(out: Output, args: argparse.Namespace) -> int:
    from connector.source import FileBatch, Source, StreamState, TransientError
    from connector.source.records import record_lines
    from connector.source.state import parse_input_state

    config = load_json(args.config, "config")
    catalog = load_json(args.catalog, "catalog")
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise ConfigError("catalog: expected a configured catalog object with a 'streams' list")
    states = parse_input_state(load_json(args.state, "state")) if args.state else {}
    source = Source(config)
    available = set(source.streams())
    failed = False
    for configured in catalog["streams"]:
        try:
            stream = configured["stream"]
            name = stream["name"]
        except (KeyError, TypeError):
            raise ConfigError("catalog: each entry of 'streams' needs stream.name") from None
        mode = configured.get("sync_mode", "full_refresh")
        incremental = mode == "incremental"
        out.message(messages.trace_stream_status(name, "STARTED"))
        if name not in available:
            logging.getLogger("connector.source").warning("stream %r has no files any more; nothing to read", name)
            if incremental and states.get(name):
                out.message(messages.stream_state(name, StreamState.from_dict(states[name]).to_dict()))
            out.message(messages.trace_stream_status(name, "COMPLETE"))
            continue
        columns = _selected(stream)
        running = state_sent = False
        try:
            for event in source.read(name, states.get(name), sync_mode=mode):
                if isinstance(event, FileBatch):
                    if not running:
                        out.message(messages.trace_stream_status(name, "RUNNING"))
                        running = True
                    out.raw(record_lines(name, _project(event.batch, columns), messages.now_ms()))
                elif incremental:
                    out.message(messages.stream_state(name, event.state))
                    state_sent = True
            if incremental and not state_sent and states.get(name):
                # Nothing new: repeat the state so the platform keeps it.
                out.message(messages.stream_state(name, StreamState.from_dict(states[name]).to_dict()))
            out.message(messages.trace_stream_status(name, "COMPLETE"))
        except ConnectorError as exc:
            failed = True
            kind = "transient_error" if isinstance(exc, TransientError) else (
                "config_error" if isinstance(exc, ConfigError) else "system_error")
            out.message(messages.trace_error(f"stream {name}: {exc}", kind, stream=name))  # type: ignore[arg-type]
            out.message(messages.trace_stream_status(name, "INCOMPLETE"))
        out.flush()
    return EXIT_FAILURE if failed else EXIT_OK


COMMANDS = {"spec": cmd_spec, "check": cmd_check, "discover": cmd_discover, "read": cmd_read}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(sys.stdout.buffer)
    handler = LogHandler(out)
    root_logger = logging.getLogger("connector")
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    code = EXIT_FAILURE
    try:
        # Anything printed by a library goes to stderr: stdout is for protocol messages only.
        with contextlib.redirect_stdout(sys.stderr):
            code = COMMANDS[args.command](out, args)
    except ConnectorError as exc:
        if args.command == "check":
            out.message(messages.connection_status(False, str(exc)))
            code = EXIT_OK
        else:
            kind = "config_error" if isinstance(exc, ConfigError) else "system_error"
            out.message(messages.trace_error(str(exc), kind))  # type: ignore[arg-type]
            code = EXIT_FAILURE
    except BrokenPipeError:
        code = EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the protocol wants a TRACE, not a traceback
        if os.environ.get("DES_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        out.message(messages.trace_error(f"{type(exc).__name__}: {exc}", "system_error",
                                         internal_message=traceback.format_exc(limit=5)))
        code = EXIT_FAILURE
    finally:
        root_logger.removeHandler(handler)
        with contextlib.suppress(BrokenPipeError, ValueError):
            out.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
