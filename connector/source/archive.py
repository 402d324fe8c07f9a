"""Members of ``.zip`` archives as files of their stream, read by range.

A zip archive ends with its central directory, which lists every member with its offset. Listing
an archive opens it with a small read-ahead block, so it costs a ranged GET or two of its tail, not
a download; reading a member fetches that member's bytes only. Each member becomes a
:class:`FileRef` whose key is ``<archive key>/<member name>`` (the ``_file`` of its records), whose
format comes from the member's own extension, and whose ``last_modified`` is the archive's: the
state's cursor moves with the archive, and the member keys tell members of one archive apart.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
import zlib
from typing import IO, TYPE_CHECKING, Any

import fsspec

from connector.source.errors import BadDataError, FileVanishedError

if TYPE_CHECKING:  # listing imports this module
    from connector.source.listing import FileRef

#: Read-ahead while reading the central directory: the tail of the archive, in small ranges.
DIRECTORY_BLOCK = 64 << 10


def is_archive(key: str) -> bool:
    """True for a key naming a zip archive (by extension)."""
    return key.lower().endswith(".zip")


def members(fs: fsspec.AbstractFileSystem, archive: FileRef, file_format: str) -> list[FileRef]:
    """The data files inside ``archive`` (directories, unknown extensions and nested archives are
    left out; ``file_format`` other than ``auto`` keeps only members of that format).

    A corrupt archive raises :class:`BadDataError` naming it.
    """
    from connector.source.listing import detect_format

    try:
        with fs.open(archive.path, "rb", block_size=DIRECTORY_BLOCK, cache_type="readahead") as raw:
            infos = zipfile.ZipFile(raw).infolist()
    except FileNotFoundError:
        raise FileVanishedError(f"{archive.key}: file no longer exists (deleted after listing)") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise BadDataError(f"{archive.key}: not a readable zip archive: {exc}") from None
    refs = []
    for info in infos:
        if info.is_dir():
            continue
        fmt, codec = detect_format(info.filename)
        if fmt is None or (file_format != "auto" and fmt != file_format):
            continue
        refs.append(dataclasses.replace(
            archive,
            key=f"{archive.key}/{info.filename}",
            url=f"{archive.url}/{info.filename}",
            size=info.file_size,
            format=fmt,
            compression=codec,
            member=info.filename,
        ))
    return refs


def open_member(fs: fsspec.AbstractFileSystem, ref: FileRef, **kwargs: Any) -> IO[bytes]:
    """A readable (and, for stored members, cheaply seekable) stream of member ``ref.member`` of
    the archive at ``ref.path``; ``kwargs`` go to ``fs.open`` of the archive (block size...)."""
    if "block_size" in kwargs:
        # A read-ahead block starting at the member must not run far into the members after it:
        # bounded by the member's size (deflate can add a little to incompressible data).
        kwargs["block_size"] = min(kwargs["block_size"], ref.size + ref.size // 64 + DIRECTORY_BLOCK)
    try:
        raw = fs.open(ref.path, "rb", **kwargs)
    except FileNotFoundError:
        raise FileVanishedError(f"{ref.key}: archive no longer exists (deleted after listing)") from None
    try:
        archive = zipfile.ZipFile(raw)
        member = archive.open(ref.member or "")
    except KeyError:
        raw.close()
        raise FileVanishedError(f"{ref.key}: member no longer in the archive (rewritten after listing)") from None
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raw.close()
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks.
        raise BadDataError(f"{ref.key}: cannot read this zip member: {exc}") from None
    except BaseException:
        raw.close()
        raise
    return io.BufferedReader(_Member(raw, archive, member), buffer_size=1 << 20)


class _Member(io.RawIOBase):
    """A zip member whose close also closes the archive and its storage file; a corrupt member
    (bad CRC, truncated deflate data) reads as ``ValueError``, which callers report as bad data."""

    def __init__(self, raw: IO[bytes], archive: zipfile.ZipFile, member: IO[bytes]) -> None:
        super().__init__()
        self._raw, self._archive, self._member = raw, archive, member

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._member.seekable()

    def readinto(self, buffer) -> int:
        try:
            data = self._member.read(len(buffer))
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # bad CRC, truncated or bad deflate data
            raise ValueError(f"corrupt zip member: {exc}") from None
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._member.seek(offset, whence)

    def tell(self) -> int:
        return self._member.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                self._member.close()
                self._archive.close()
            finally:
                self._raw.close()
        super().close()


def archive_key(ref: FileRef) -> str:
    """The key of the object in storage: the archive's for a member (``<archive>/<member>``),
    else the file's own."""
    if ref.member is None:
        return ref.key
    return ref.key[: -len(ref.member) - 1]

