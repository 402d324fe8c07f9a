"""Listing the root and grouping files into streams.

A stream is the folder at ``stream_depth`` below the root (Olake's layout, depth 1 by default), or
the files matching a configured list of globs. Files are identified by their key relative to the
root; the format and compression come from the extension.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec

from connector.source import archive
from connector.source.compression import split_compression
from connector.source.config import SourceConfig

#: Extension (after removing a compression suffix) -> format.
FORMAT_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".avro": "avro",
    ".xlsx": "excel",
}
#: The format of a file copied unchanged (delivery_method use_file_transfer) that is no data format.
RAW = "raw"
#: Formats that compress internally (or are zip archives themselves): an outer codec is refused.
SELF_CONTAINED = frozenset({"parquet", "avro", "excel"})


@dataclass(frozen=True, order=False)
class FileRef:
    """One source object as listed.

    ``path`` is what the fsspec filesystem opens; ``key`` is relative to the configured root (and is
    what state and the ``_file`` column record); ``url`` is protocol-qualified.
    """

    path: str
    key: str
    url: str
    size: int
    last_modified: datetime
    etag: str | None = None
    format: str = "csv"
    compression: str | None = None
    #: For a member of a zip archive (``path`` is then the archive's): its name inside it.
    member: str | None = None

    @property
    def sort_key(self) -> tuple[datetime, str]:
        """Files are processed (and state advances) in this order."""
        return (self.last_modified, self.key)


def detect_format(key: str) -> tuple[str | None, str | None]:
    """``(format, compression)`` from the extension; format None when it is not a data file."""
    base, codec = split_compression(key)
    ext = posixpath.splitext(base)[1].lower()
    fmt = FORMAT_EXTENSIONS.get(ext)
    if fmt in SELF_CONTAINED and codec is not None:
        return None, None  # compressed internally; an outer codec would defeat ranged reads.
    return fmt, codec


def last_modified(info: dict[str, Any]) -> datetime:
    """A tz-aware UTC modification time from an fsspec ``info`` dict (S3, local, memory...)."""
    for name in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(0, tz=timezone.utc)


def list_files(fs: fsspec.AbstractFileSystem, root: str, config: SourceConfig) -> list[FileRef]:
    """Every data file under ``root`` whose format the config accepts, sorted by (last_modified, key)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    # No ``fs.exists`` guard: s3fs answers False for a bucket on *any* error (5xx, timeouts...), so
    # an outage would look like an empty root and a sync would succeed with nothing. ``find``
    # raises the real error, and FileNotFoundError for a missing bucket or root.
    try:
        found = fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        found = {}
    refs: list[FileRef] = []
    prefix = root.rstrip("/") + "/"
    for path, info in found.items():
        if info.get("type") == "directory" or path.endswith("/"):
            continue  # S3 "folder" placeholder objects
        key = path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path)
        fmt, codec = detect_format(key)
        zipped = archive.is_archive(key) and not config.file_transfer  # copied whole, not opened
        if config.file_transfer and config.file_format == "auto":
            fmt = fmt or RAW  # every file is copied as it is
        elif not zipped and (fmt is None or (config.file_format != "auto" and fmt != config.file_format)):
            continue
        modified = last_modified(info)
        if config.start_date is not None and modified < config.start_date:
            continue
        etag = info.get("ETag") or info.get("etag")
        ref = FileRef(
            path=path,
            key=key,
            url=f"{protocol}://{path}" if protocol not in ("file", "local") else f"file://{path}",
            size=int(info.get("size") or 0),
            last_modified=modified,
            etag=etag.strip('"') if isinstance(etag, str) else None,
            format=fmt or "zip",
            compression=codec,
        )
        refs.extend(_archive_members(fs, ref, config) if zipped else [ref])
    refs.sort(key=lambda r: r.sort_key)
    return refs


def root_stream_name(root: str) -> str:
    """The name of the one stream of ``stream_depth`` 0: the root's last path segment (the bucket's
    name for a whole bucket)."""
    return posixpath.basename(root.rstrip("/")) or root.strip("/") or "root"


def _archive_members(fs: fsspec.AbstractFileSystem, ref: FileRef, config: SourceConfig) -> list[FileRef]:
    """The data files inside zip archive ``ref``; a corrupt one fails the listing, or is left out
    with a warning under ``on_bad_record: skip``."""
    from connector.source.errors import BadDataError, FileVanishedError

    try:
        return archive.members(fs, ref, config.file_format)
    except FileVanishedError as exc:
        logging.getLogger("connector.source").warning("%s (skipped)", exc)
        return []
    except BadDataError as exc:
        if config.on_bad_record != "skip":
            raise
        logging.getLogger("connector.source").warning("%s (skipped)", exc)
        return []


def stream_of(key: str, config: SourceConfig, root: str = "", fmt: str | None = None) -> list[str]:
    """The stream names ``key`` (of format ``fmt``) belongs to (several when explicit globs
    overlap; none at the top). A configured stream with a ``format`` takes files of it only."""
    if config.streams:
        return [s.name for s in config.streams if any(fnmatch.fnmatchcase(key, g) for g in s.globs)
                and (s.format is None or fmt is None or s.format == fmt)]
    parts = key.split("/")
    if config.stream_depth == 0:
        return [root_stream_name(root)] if len(parts) == 1 else []
    if len(parts) <= config.stream_depth:
        return []  # not inside a folder at that depth
    return [parts[config.stream_depth - 1]]


def group_streams(refs: list[FileRef], config: SourceConfig, root: str = "") -> dict[str, list[FileRef]]:
    """Stream name -> its files, in (last_modified, key) order. Empty folders give no stream."""
    grouped: dict[str, list[FileRef]] = {}
    if config.streams:
        for s in config.streams:
            grouped[s.name] = []
    for ref in refs:
        for name in stream_of(archive.archive_key(ref), config, root, ref.format):
            grouped.setdefault(name, []).append(ref)
    return {name: files for name, files in sorted(grouped.items()) if files}


def no_streams_hint(refs: list[FileRef], config: SourceConfig) -> str:
    """Why data files were found but no stream: where they lie against ``stream_depth``, what to set."""
    if not refs or config.streams:
        return ""
    depths = sorted({archive.archive_key(r).count("/") for r in refs})
    if depths[-1] < config.stream_depth:
        where = "directly under the root" if depths == [0] else f"at most {depths[-1]} folder(s) deep"
        return (f"; {len(refs)} data file(s) lie {where}, above stream_depth {config.stream_depth}: "
                f"set \"stream_depth\": {depths[-1]} to read them"
                + (" as one stream" if depths[-1] == 0 else ""))
    return ""
