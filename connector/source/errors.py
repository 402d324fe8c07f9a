"""Errors raised by the file source; all derive from :class:`connector.errors.ConnectorError`."""

from __future__ import annotations

from connector.errors import ConfigError, ConnectorError

__all__ = ["ConfigError", "SourceError", "RootNotFoundError", "BadDataError", "TransientError", "FileVanishedError",
           "FileChangedError"]


class SourceError(ConnectorError):
    """Listing or reading the source failed; the message names the file when there is one."""


class RootNotFoundError(SourceError, ConfigError):
    """The configured root (bucket, folder or prefix) does not exist: a mistake in the config, said by
    check, discover, read and sync alike rather than taken for an empty source."""


class BadDataError(SourceError, ValueError):
    """A file's content is malformed (bad row, bad JSON line, corrupt Parquet, bad compression).

    The message names the file and, when known, the line, row or row group.
    """


class TransientError(SourceError):
    """A storage error that may go away on retry (5xx, throttling, connection reset, timeout)."""


class FileVanishedError(SourceError, FileNotFoundError):
    """A listed file no longer exists when it is read (deleted between listing and reading)."""


class FileChangedError(SourceError):
    """A listed object was replaced before it was opened (its ETag differs from the listing's).

    Its new version is newer than the listing, so the next read picks it up; reading it now under
    the listed time would record the wrong version as synced and read the new one twice.
    """
