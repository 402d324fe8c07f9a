"""What both Airbyte entry points share: the stdout writer, LOG forwarding, config loading, and the
``main`` that turns every failure into a protocol message (never a traceback on stdout)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Any, NoReturn

from connector.airbyte import messages
from connector.errors import ConfigError, ConnectorError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Output:
    """Thread-safe writer of message lines to the real stdout (worker threads log too).

    The writes happen in a writer thread: a write to a pipe blocks until the reader has drained
    it, and meanwhile the caller can encode its next records. What waits for the writer is
    bounded in bytes (:attr:`BUDGET`), whatever the size of each piece: a caller blocks while more
    is waiting, except that one piece is always taken (a piece larger than the budget waits
    alone). Lines come out in the order of the calls; :meth:`flush` returns once everything
    handed over is written. A failed write (the reader went away) is raised by the next call.
    """

    #: Bytes of encoded lines that may wait for the pipe (one piece more at most).
    BUDGET = 8 << 20

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._pieces: deque[bytes | memoryview] = deque()
        self._waiting = 0  # bytes in _pieces
        self._busy = False  # the writer holds a piece taken off _pieces
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        threading.Thread(target=self._write, name="stdout-writer", daemon=True).start()

    def message(self, msg: dict[str, Any]) -> None:
        """Write one protocol message (a JSON line)."""
        self.raw(messages.dumps(msg))

    def raw(self, data: bytes | memoryview) -> None:
        """Hand already encoded JSON lines (any bytes-like object, not changed until written) to
        the writer thread; raises an earlier write's error."""
        size = memoryview(data).nbytes
        with self._cond:
            while self._pieces and self._waiting + size > self.BUDGET and self._error is None:
                self._cond.wait()
            self._raise_error()
            self._pieces.append(data)
            self._waiting += size
            self._cond.notify_all()

    def flush(self) -> None:
        """Return once everything handed over is written and flushed; raises a failed write's error."""
        with self._cond:
            while (self._pieces or self._busy) and self._error is None:
                self._cond.wait()
            self._raise_error()
        self._out.flush()

    def _write(self) -> None:
        while True:
            with self._cond:
                while not self._pieces:
                    self._cond.wait()
                data = self._pieces.popleft()
                self._waiting -= memoryview(data).nbytes
                self._busy = True
                self._cond.notify_all()
            try:
                if self._error is None:
                    self._out.write(data)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            finally:
                del data  # written: its memory (an Arrow buffer) goes back now, not at the next piece
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


class LogHandler(logging.Handler):
    """Python logging -> Airbyte LOG messages."""

    LEVELS: dict[int, messages.LogLevel] = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
              logging.CRITICAL: "FATAL"}

    def __init__(self, out: Output) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` as a LOG message (logging must never break a sync: a failure goes to
        ``handleError``)."""
        try:
            self.out.message(messages.log(record.getMessage(), self.LEVELS.get(record.levelno, "INFO")))
        except Exception:  # noqa: BLE001 - logging must never break a sync
            self.handleError(record)


class ArgParser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Exit with the usage error code (``EXIT_USAGE``) and ``message`` on stderr."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once stdout and stderr are flushed, skipping the interpreter's
    teardown: Arrow's C++ threads (the read-ahead of a CSV that a schema sample or a bad row stopped
    reading) may still be running then, and tearing the runtime down under them aborts the process
    (``terminate called without an active exception``, exit -6) after its output was complete."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


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
            kind: messages.FailureType = "config_error" if isinstance(exc, ConfigError) else "system_error"
            out.message(messages.trace_error(str(exc), kind))
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
