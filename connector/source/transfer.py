"""Raw files through the protocol (Airbyte's ``delivery_method: use_file_transfer``).

Each pending file of a stream is copied, bytes unchanged, into the staging directory the source
shares with the destination, then announced by a RECORD whose ``file_reference`` points at it
(``staging_file_url``, ``source_file_relative_path``, ``file_size_bytes``) and whose data is the
file's metadata (Airbyte's file-transfer record: ``folder``, ``file_name``, ``bytes``,
``source_uri``, ``updated_at``; plus ``_last_modified_time`` and ``_file``). A file is staged under
a fresh folder (two files of one relative path never share a staging file) and appears there
whole or not at all (written beside, then renamed).
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from connector.source import formats
from connector.source.errors import FileChangedError, FileVanishedError, SourceError
from connector.source.listing import FileRef
from connector.source.read import FileDone, check_changed, check_vanished
from connector.source.retry import BASE_DELAY, call_with_retry
from connector.source.state import StreamState, format_time

log = logging.getLogger("connector.source")

#: Airbyte's staging directory: the environment's, when it exists, else a local default.
STAGING_ENV = "AIRBYTE_STAGING_DIRECTORY"
DEFAULT_STAGING = "/staging/files"
FALLBACK_STAGING = "/tmp/airbyte-file-transfer"
#: Bytes copied per read.
CHUNK = 8 << 20

#: The json_schema of a file-transfer stream (Airbyte's file record, and our file columns).
FILE_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "folder": {"type": "string"},
        "file_name": {"type": "string"},
        "source_uri": {"type": "string"},
        "bytes": {"type": "integer"},
        "updated_at": {"type": ["null", "string"], "format": "date-time"},
        "_last_modified_time": {"type": ["null", "string"], "format": "date-time"},
        "_file": {"type": ["null", "string"]},
    },
}


def staging_directory() -> str:
    """Where files are staged: ``$AIRBYTE_STAGING_DIRECTORY`` (default /staging/files) if it
    exists, else /tmp/airbyte-file-transfer (as Airbyte's file-based sources choose)."""
    wanted = os.environ.get(STAGING_ENV, DEFAULT_STAGING)
    return wanted if os.path.isdir(wanted) else FALLBACK_STAGING


@dataclass(frozen=True)
class StagedFile:
    """One file copied into the staging directory (``path`` is None when files are not included)."""

    stream: str
    file: FileRef
    path: str | None
    relative_path: str

    def record_data(self) -> dict[str, Any]:
        """The RECORD's data: the file's metadata."""
        when = format_time(self.file.last_modified)
        return {"folder": posixpath.dirname(self.file.key), "file_name": posixpath.basename(self.file.key),
                "bytes": self.file.size, "source_uri": self.file.url, "updated_at": when,
                "_last_modified_time": when, "_file": self.file.key}

    def file_reference(self) -> dict[str, Any]:
        """The RECORD's ``file_reference``."""
        return {"staging_file_url": self.path, "source_file_relative_path": self.relative_path,
                "file_size_bytes": self.file.size}


def stage_files(stream: str, fs: fsspec.AbstractFileSystem, files: list[FileRef], state: StreamState, *,
                directory: str | None, preserve_directories: bool, retries: int,
                retry_base: float = BASE_DELAY) -> Iterator[StagedFile | FileDone]:
    """Each of ``files`` (ordered, pending) staged under ``directory`` (None: metadata only), a
    :class:`FileDone` after each. A file deleted or replaced since the listing is skipped with a
    LOG and not counted as synced, as a read does."""
    for ref in files:
        relative = ref.key if preserve_directories else posixpath.basename(ref.key)
        path = None
        if directory is not None:
            try:
                path = call_with_retry(functools.partial(_copy, fs, ref, directory, relative), retries, retry_base)
            except FileVanishedError as exc:
                check_vanished(fs, ref, exc)
                log.warning("%s: skipped, not counted as synced", exc)
                continue
            except FileChangedError as exc:
                check_changed(fs, ref, exc)
                log.warning("%s: skipped, not counted as synced; its new version is copied next time", exc)
                continue
        yield StagedFile(stream, ref, path, relative)
        state = state.advance(ref)
        yield FileDone(stream, ref, 1, state)


def _copy(fs: fsspec.AbstractFileSystem, ref: FileRef, directory: str, relative: str) -> str:
    """``ref``'s bytes into a fresh folder of ``directory``; the staged file's absolute path."""
    target = os.path.join(os.path.abspath(directory), uuid.uuid4().hex, *relative.split("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = target + ".partial"
    try:
        with formats.open_raw(fs, ref) as src, open(partial, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
            copied = out.tell()
        if copied != ref.size:
            raise SourceError(f"{ref.key}: copied {copied} bytes, the listing said {ref.size}; "
                              "not staged (was the object being rewritten?)")
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        for folder in (os.path.dirname(target), os.path.dirname(os.path.dirname(target))):
            try:
                os.rmdir(folder)  # the fresh folders, if nothing else is in them
            except OSError:
                break
        raise
    return target
