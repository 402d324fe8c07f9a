"""What both Airbyte entry points share: the stdout writer, LOG forwarding, config loading, and the
``main`` that turns every failure into a protocol message (never a traceback on stdout)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import IO, Any

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


class ArgParser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def load_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: {exc}") from None


def run(args: argparse.Namespace, commands: Mapping[str, Callable[[Output, argparse.Namespace], int]]) -> int:
    """Run ``commands[args.command]`` with stdout reserved for protocol messages.

    A :class:`ConnectorError` becomes CONNECTION_STATUS FAILED (check) or a TRACE error; anything
    else a TRACE ``system_error`` (the traceback only on stderr with ``DES_DEBUG=1``).
    """
    out = Output(sys.stdout.buffer)
    handler = LogHandler(out)
    root_logger = logging.getLogger("connector")
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    code = EXIT_FAILURE
    try:
        # Anything printed by a library goes to stderr: stdout is for protocol messages only.
        with contextlib.redirect_stdout(sys.stderr):
            code = commands[args.command](out, args)
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
