"""Files -> Arrow record batches: CSV, JSON and Parquet under S3 or any fsspec URL.

The public API: :class:`Source` (check, streams, discover, files, read), :class:`FileRef`,
and the events :meth:`Source.read` yields, :class:`FileBatch` and :class:`FileDone`.
"""

from connector.source.api import Source
from connector.source.errors import BadDataError, FileVanishedError, SourceError, TransientError
from connector.source.listing import FileRef
from connector.source.read import FileBatch, FileDone
from connector.source.state import CURSOR_FIELD, FILES_AT_CURSOR, StreamState

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
