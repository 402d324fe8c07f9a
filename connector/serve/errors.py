"""Errors of the server as HTTP answers: a status and a JSON body ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from connector.errors import ConfigError
from connector.serve.bodies import BodyAborted, BodyTooLarge
from connector.store import (
    DatasetExists,
    DatasetFrozen,
    DatasetLocked,
    DatasetNotFound,
    InvalidName,
    RangeError,
    StoreError,
    VersionError,
)

_log = logging.getLogger("connector.serve")


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, a stable ``code`` and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON error body: ``{"error": {"code": ..., "message": ...}}``."""
        return {"error": {"code": self.code, "message": self.message}}


# Most specific first: DatasetNotFound is also a KeyError, InvalidName and RangeError ValueErrors.
_STORE_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (DatasetNotFound, 404, "not_found"),
    (DatasetExists, 409, "already_exists"),
    (DatasetFrozen, 409, "frozen"),
    (DatasetLocked, 503, "locked"),
    (InvalidName, 400, "invalid_name"),
    (RangeError, 400, "bad_range"),
    (VersionError, 400, "bad_version"),
    (StoreError, 400, "store_error"),
    (ConfigError, 400, "bad_request"),
)


def api_error(exc: BaseException) -> ApiError:
    """The answer to an exception raised while serving a request (500 for the unexpected ones,
    whose details are logged, not sent)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BodyTooLarge):
        return ApiError(413, "too_large", str(exc))
    if isinstance(exc, BodyAborted):
        return ApiError(400, "body_aborted", str(exc))
    for kind, status, code in _STORE_ERRORS:
        if isinstance(exc, kind):
            headers = {"Retry-After": "5"} if status == 503 else None
            return ApiError(status, code, str(exc), headers)
    _log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return ApiError(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
