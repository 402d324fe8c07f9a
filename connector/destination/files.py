"""Files transferred with RECORDs (Airbyte's file transfer): the reference, checked, and its file.

A source that transfers files stages each one on a volume it shares with the destination and sends
a RECORD carrying a reference to it: ``record.file_reference`` (``staging_file_url``,
``source_file_relative_path``, ``file_size_bytes``; the record's ``data`` holds the source's
metadata of the file, e.g. ``updated_at``) or, in the older protocol, ``record.file``
(``file_url``, ``file_relative_path``, ``bytes``, ``modified``, ``source_file_url``). Each file
becomes one file datapoint: member name = its relative path, bytes unchanged, META with the path,
size and modification time.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import unquote, urlparse

import orjson

from connector.destination.messages import InputError, Record, has_meta
from connector.errors import ConnectorError

# Fields of the record's data that carry the source's modification time of the file, first wins.
MODIFIED_FIELDS = ("updated_at", "modified", "last_modified", "modified_at")


@dataclass(frozen=True)
class FileRef:
    """A staged file, as a RECORD referred to it."""

    staging: str  # where the source staged it (a local path or file:// URL)
    path: str  # its path relative to the source's root: the member name
    size: int | None  # as the source declared it (checked against the staged file)
    modified: str | int | float | None = None  # the older protocol's ``file.modified``
    source_url: str | None = None  # the older protocol's ``file.source_file_url``


def file_ref(record: Record, lineno: int) -> FileRef:
    """The file a RECORD refers to; :class:`InputError` naming the line if the reference is malformed."""
    new = has_meta(record.file_reference)
    raw = orjson.loads(bytes(record.file_reference if new else record.file))
    what = "file_reference" if new else "file"
    if not isinstance(raw, dict):
        raise InputError(f"stdin line {lineno}: RECORD {what} must be an object, not {type(raw).__name__}")
    names = (("staging_file_url", "source_file_relative_path", "file_size_bytes") if new
             else ("file_url", "file_relative_path", "bytes"))
    staging, path = (_text(raw, what, name, lineno) for name in names[:2])
    size = raw.get(names[2])
    if size is not None and (type(size) is not int or size < 0):
        raise InputError(f"stdin line {lineno}: RECORD {what}.{names[2]} must be a whole number >= 0, not {size!r}")
    modified = None if new else raw.get("modified")
    source_url = None if new else raw.get("source_file_url")
    return FileRef(staging, path, size, modified, source_url if isinstance(source_url, str) else None)


def _text(raw: dict[str, Any], what: str, name: str, lineno: int) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise InputError(f"stdin line {lineno}: RECORD {what}.{name} must be a non-empty string, not {value!r}")
    return value


def file_item(data: bytes, ref: FileRef) -> bytes:
    """One line holding a file record's data (compact JSON) and its reference (no raw tab or newline)."""
    return b'{"ref":' + orjson.dumps(asdict(ref)) + b',"data":' + data + b"}"


def parse_item(item: bytes) -> tuple[FileRef, Any]:
    """The reference and data of a :func:`file_item` line."""
    parsed = orjson.loads(item)
    return FileRef(**parsed["ref"]), parsed["data"]


def identity(item: bytes) -> bytes:
    """What the exactly-once checkpoint hashes of a file record: its data, path and declared size,
    not where it is staged (a retried sync stages the same file elsewhere)."""
    ref, data = parse_item(item)
    return orjson.dumps([ref.path, ref.size, data]) + b"\n"


def staged_path(ref: FileRef, stream: str) -> str:
    """The local path of a staged file; :class:`ConnectorError` for a URL that is not local."""
    url = urlparse(ref.staging)
    if url.scheme == "file":
        return unquote(url.path)
    if url.scheme and len(url.scheme) > 1:  # (one letter: a Windows drive)
        raise ConnectorError(f"stream {stream!r}: file {ref.path!r} is staged at {ref.staging!r}; only local "
                             "paths and file:// URLs are supported (the staging volume the platform shares)")
    return ref.staging


def open_staged(ref: FileRef, stream: str) -> tuple[IO[bytes], int, float]:
    """The staged file open for reading, its size and its mtime; :class:`ConnectorError` if it is
    missing or its size is not the declared one."""
    path = staged_path(ref, stream)
    try:
        f = open(path, "rb")  # the caller closes it once written
    except OSError as exc:
        raise ConnectorError(f"stream {stream!r}: cannot read file {ref.path!r} staged at {path!r}: "
                             f"{exc.strerror or exc}") from None
    st = os.fstat(f.fileno())
    if ref.size is not None and st.st_size != ref.size:
        f.close()
        raise ConnectorError(f"stream {stream!r}: file {ref.path!r} staged at {path!r} has {st.st_size} bytes, "
                             f"the RECORD declares {ref.size}")
    return f, st.st_size, st.st_mtime


def file_meta(ref: FileRef, data: Any, size: int, staged_mtime: float, extra: dict[str, Any]) -> dict[str, Any]:
    """META of a file datapoint: original path, size, modification time (the source's when the
    record gives it, else the staged file's, and ``modified_from`` says which), the record's data."""
    modified, source = _source_modified(ref, data)
    meta: dict[str, Any] = {"source_file_relative_path": ref.path, "size": size,
                            "modified": modified if modified is not None else _iso(staged_mtime),
                            "modified_from": source if modified is not None else "staged_file"}
    if ref.source_url is not None:
        meta["source_url"] = ref.source_url
    return {**meta, "record": data, **extra}


def _source_modified(ref: FileRef, data: Any) -> tuple[str | None, str]:
    if isinstance(ref.modified, (int, float)) and not isinstance(ref.modified, bool):
        return _iso(ref.modified / 1000), "file.modified"  # milliseconds since the epoch
    if isinstance(ref.modified, str):
        return ref.modified, "file.modified"
    if isinstance(data, dict):
        for name in MODIFIED_FIELDS:
            if isinstance(data.get(name), str):
                return data[name], f"data.{name}"
    return None, ""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
