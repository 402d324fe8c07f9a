"""Airbyte protocol messages: builders returning plain dicts, and a line writer.

Each builder returns the dict form of one ``AirbyteMessage``; :func:`write` serialises it as one
compact JSON line. The shapes follow the Airbyte protocol (validated in tests against the
``airbyte-protocol-models`` package).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import IO, Any, Literal

import orjson

FailureType = Literal["config_error", "system_error", "transient_error"]
StreamStatus = Literal["STARTED", "RUNNING", "COMPLETE", "INCOMPLETE"]
LogLevel = Literal["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"]


def now_ms() -> int:
    """Milliseconds since the epoch, the unit of ``emitted_at``."""
    return int(time.time() * 1000)


def spec(connection_specification: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A SPEC message: the config's JSON Schema plus ``extra`` spec fields."""
    return {"type": "SPEC", "spec": {"connectionSpecification": dict(connection_specification), **extra}}


def connection_status(ok: bool, message: str | None = None) -> dict[str, Any]:
    """A CONNECTION_STATUS message: SUCCEEDED, or FAILED with ``message``."""
    status: dict[str, Any] = {"status": "SUCCEEDED" if ok else "FAILED"}
    if message:
        status["message"] = message
    return {"type": "CONNECTION_STATUS", "connectionStatus": status}


def catalog(streams: list[dict[str, Any]]) -> dict[str, Any]:
    """A CATALOG message listing ``streams`` (Airbyte stream objects)."""
    return {"type": "CATALOG", "catalog": {"streams": streams}}


def record(stream: str, data: Mapping[str, Any], emitted_at: int | None = None) -> dict[str, Any]:
    """A RECORD message of ``stream``; ``emitted_at`` in ms since the epoch (default: now)."""
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": emitted_at or now_ms()}}


def stream_state(stream: str, state: Mapping[str, Any], record_count: int | None = None) -> dict[str, Any]:
    """A STREAM state; ``record_count``: records emitted for the stream since its previous STATE
    (``sourceStats.recordCount``, which the platform checks against the records it received)."""
    message: dict[str, Any] = {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": stream}, "stream_state": dict(state)},
    }
    if record_count is not None:
        message["sourceStats"] = {"recordCount": float(record_count)}
    return {"type": "STATE", "state": message}


def log(message: str, level: LogLevel = "INFO") -> dict[str, Any]:
    """A LOG message at ``level``."""
    return {"type": "LOG", "log": {"level": level, "message": message}}


def trace_error(
    message: str,
    failure_type: FailureType = "system_error",
    internal_message: str | None = None,
    stream: str | None = None,
) -> dict[str, Any]:
    """An ERROR trace: ``message`` for people, ``internal_message`` for logs, ``failure_type``
    (``system_error``, ``config_error`` or ``transient_error``), and the stream it concerns, if one."""
    error: dict[str, Any] = {"message": message, "failure_type": failure_type}
    if internal_message:
        error["internal_message"] = internal_message
    if stream:
        error["stream_descriptor"] = {"name": stream}
    return {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": float(now_ms()), "error": error}}


def trace_stream_status(stream: str, status: StreamStatus) -> dict[str, Any]:
    """A STREAM_STATUS trace: ``stream`` is STARTED, RUNNING, COMPLETE or INCOMPLETE."""
    return {
        "type": "TRACE",
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": float(now_ms()),
            "stream_status": {"stream_descriptor": {"name": stream}, "status": status},
        },
    }


def trace_estimate(stream: str, byte_estimate: int, row_estimate: int | None = None) -> dict[str, Any]:
    """An ESTIMATE trace for one stream: the bytes (and rows, when known) it is about to read."""
    estimate: dict[str, Any] = {"name": stream, "type": "STREAM", "byte_estimate": byte_estimate}
    if row_estimate is not None:
        estimate["row_estimate"] = row_estimate
    return {"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": float(now_ms()), "estimate": estimate}}


def dumps(message: Mapping[str, Any]) -> bytes:
    """One message as compact JSON bytes, newline-terminated."""
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


def write(message: Mapping[str, Any], out: IO[bytes]) -> None:
    """Write one message line to a binary stream (stdout's buffer) and flush it."""
    out.write(dumps(message))
    out.flush()
