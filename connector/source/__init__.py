"""Files -> Arrow record batches: CSV, JSON and Parquet under S3 or any fsspec URL.

The public API: :class:`Source` (check, streams, discover, files, read), :class:`FileRef`,
and the events :meth:`Source.read` yields, :class:`FileBatch` and :class:`FileDone`.

The names are imported on first use (PEP 562), so ``connector.source.config`` (which ``des-source
spec`` needs) loads without pyarrow and fsspec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.source.api import Source
    from connector.source.errors import BadDataError, FileVanishedError, SourceError, TransientError
    from connector.source.listing import FileRef
    from connector.source.read import FileBatch, FileDone
    from connector.source.state import CURSOR_FIELD, FILES_AT_CURSOR, StreamState

_HOME = {
    "Source": "api",
    "FileRef": "listing",
    "FileBatch": "read",
    "FileDone": "read",
    "StreamState": "state",
    "CURSOR_FIELD": "state",
    "FILES_AT_CURSOR": "state",
    "SourceError": "errors",
    "BadDataError": "errors",
    "TransientError": "errors",
    "FileVanishedError": "errors",
}

__all__ = [
    "Source",
    "FileRef",
    "FileBatch",
    "FileDone",
    "StreamState",
    "CURSOR_FIELD",
    "FILES_AT_CURSOR",
    "SourceError",
    "BadDataError",
    "TransientError",
    "FileVanishedError",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
