"""A container's bytes by range, each read checked against the version the index came from.

A :class:`Blob` reads ``[start, end)`` of one object and knows the object's *identity* (the
version its index was parsed from). Every ranged read either returns bytes of that version or
raises :class:`ContainerChanged`; it never returns another version's bytes:

- S3 (s3fs): every GET carries ``If-Match: <ETag>``; the ETag, size and modification time come
  with the first (tail) GET's answer, so this costs no extra request. A replaced object answers
  412, turned into :class:`ContainerChanged`.
- local files: the file's ``(size, mtime_ns)`` is taken from the descriptor each read used,
  after reading, so a file replaced or rewritten in between is caught.
- any other fsspec filesystem (memory, http, caching wrappers...): the identity comes from
  ``fs.info`` (ETag, mtime or size), read when the container is opened (also from the index
  cache); such stores give no per-request check, so a replacement *during* one reader's life is
  caught only by the size and checksum checks. This is said in the README.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import sys
from collections.abc import Sequence
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

# At most this many ranged GETs in flight for one batch.
MAX_CONCURRENT_RANGES = 16


class ContainerChanged(OSError):
    """The container is no longer the version whose index is being used (replaced, rewritten or
    cut under its name). Reads by member name reload the index and retry; an open member file that
    already served bytes of the old version raises this instead of mixing versions."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(errno.ESTALE, f"{url}: the container changed since its index was read ({detail}); reopen it")


class Blob:
    """Generic fsspec target: identity from ``fs.info`` at open, ranges through ``cat_file``."""

    per_read_check = False

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
        self.fs, self.path, self.url = fs, path, url
        self.identity: Any = None  # the version reads must match; None until known
        self.size: int | None = None
        self.modified: dt.datetime | None = None

    # -- identity ------------------------------------------------------------------------------

    def current_identity(self) -> Any:
        """The object's identity now, fetched when this store offers no per-read check (one
        ``info`` call), ``None`` when reads check it themselves."""
        info = self.fs.info(self.path)
        self.size = info.get("size")
        self.modified = _modified_of(info)
        return _identity_of(info)

    def unchanged(self) -> bool:
        """Whether the object still is the expected version (one request at most: a ``info`` call,
        a 1-byte GET with ``If-Match`` on S3, a ``stat`` locally)."""
        return self.identity is not None and self.current_identity() == self.identity

    def expect(self, identity: Any, size: int | None) -> None:
        """Reads from now on must come from this version (the one the index belongs to)."""
        self.identity, self.size = identity, size

    # -- reading -------------------------------------------------------------------------------

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object."""
        return self.fs.cat_file(self.path, start=start, end=end)

    def read_suffix(self, n: int) -> bytes:
        """The last ``n`` bytes (fewer if the object is shorter). Sets ``size`` and the identity."""
        if self.identity is None:
            self.identity = self.current_identity()
        if self.size is None:
            raise OSError(f"{self.url}: the store reports no size for the container")
        return self.read(max(0, self.size - n), self.size)

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(start, end)`` range, in order (fetched concurrently where the
        filesystem can)."""
        blobs = self.fs.cat_ranges([self.path] * len(ranges), [s for s, _ in ranges], [e for _, e in ranges])
        for blob in blobs:
            if isinstance(blob, BaseException):
                raise blob
        return blobs

    def stat_modified(self) -> dt.datetime:
        """The container's modification time (one ``info`` call when not known yet)."""
        if self.modified is None:
            self.modified = _modified_of(self.fs.info(self.path))
        if self.modified is None:
            raise NotImplementedError(f"{self.url}: the store reports no modification time for the container")
        return self.modified


class LocalBlob(Blob):
    """A local file: ``os.pread`` on a fresh descriptor, then that descriptor's identity checked."""

    per_read_check = True

    def current_identity(self) -> Any:
        """(size, mtime in ns) of the file now; also updates ``size`` and ``modified``."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}: no such container") from None
        self.size, self.modified = st.st_size, _from_ns(st.st_mtime_ns)
        return (st.st_size, st.st_mtime_ns)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` read from a fresh descriptor, whose size and mtime must match the
        expected ones (the first read fixes them; :class:`ContainerChanged` if the file was replaced)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}: no such container") from None
        try:
            chunks, pos = [], start
            while pos < end:
                chunk = os.pread(fd, end - pos, pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        now = (st.st_size, st.st_mtime_ns)
        if self.identity is None:
            self.identity = now  # the first read fixes the version (objects read without an index)
        elif now != self.identity:
            raise ContainerChanged(self.url, f"size/mtime {self.identity} -> {now}")
        return b"".join(chunks)

    def read_suffix(self, n: int) -> bytes:
        """The last ``n`` bytes (fewer if the file is shorter). Sets ``size`` and the identity."""
        if self.identity is None:
            self.identity = self.current_identity()
        assert self.size is not None
        return self.read(max(0, self.size - n), self.size)

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(start, end)`` range, in order."""
        return [self.read(s, e) for s, e in ranges]


class S3Blob(Blob):
    """An S3 object through s3fs: ``get_object`` with ``Range`` and ``If-Match``."""

    per_read_check = True

    def __init__(self, fs: Any, path: str, url: str) -> None:
        super().__init__(fs, path, url)
        self.bucket, self.key, self.version = fs.split_path(path)

    def current_identity(self) -> Any:
        """None: every GET carries ``If-Match`` with the expected ETag, so no separate check is needed."""
        return None  # every GET checks it

    def unchanged(self) -> bool:
        """Whether the object still has the expected ETag (a 1-byte GET with ``If-Match``)."""
        if self.identity is None or not self.size:
            return False
        try:
            self.read(self.size - 1, self.size)
        except ContainerChanged:
            return False
        return True

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``: one GET with ``Range`` and ``If-Match`` (:class:`ContainerChanged`
        if the object was replaced)."""
        return fsspec.asyn.sync(self.fs.loop, self._get, f"bytes={start}-{end - 1}")

    def read_suffix(self, n: int) -> bytes:
        """The last ``n`` bytes in one GET (``Range: bytes=-n``)."""
        return fsspec.asyn.sync(self.fs.loop, self._get, f"bytes=-{n}")

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(start, end)`` range, in order, fetched concurrently."""
        return fsspec.asyn.sync(self.fs.loop, self._get_many, ranges)

    def stat_modified(self) -> dt.datetime:
        """The object's Last-Modified time (a 1-byte GET when not known yet)."""
        if self.modified is None:
            fsspec.asyn.sync(self.fs.loop, self._get, "bytes=0-0")  # the answer carries Last-Modified
        assert self.modified is not None
        return self.modified

    async def _get_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        gate = asyncio.Semaphore(MAX_CONCURRENT_RANGES)

        async def one(start: int, end: int) -> bytes:
            async with gate:
                return await self._get(f"bytes={start}-{end - 1}")

        return list(await asyncio.gather(*(one(s, e) for s, e in ranges)))

    async def _get(self, byte_range: str) -> bytes:
        from s3fs.core import (
            _error_wrapper,  # retries a body cut short, as s3fs's own reads do
        )

        return await _error_wrapper(self._get_once, args=(byte_range,), retries=self.fs.retries)

    async def _get_once(self, byte_range: str) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "Range": byte_range}
        if self.version:
            kwargs["VersionId"] = self.version
        if self.identity is not None:
            kwargs["IfMatch"] = self.identity
        try:
            resp = await self.fs._call_s3("get_object", **kwargs)
        except OSError as exc:
            if _precondition_failed(exc):
                raise ContainerChanged(self.url, f"ETag {self.identity} no longer matches") from None
            if isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(f"{self.url}: no such container") from None
            raise
        try:
            data = await resp["Body"].read()
        finally:
            resp["Body"].close()
        etag = resp.get("ETag")
        if self.identity is None:
            self.identity = etag
        elif etag is not None and etag != self.identity:  # a store that ignored If-Match
            raise ContainerChanged(self.url, f"ETag {self.identity} -> {etag}")
        total = _total_of(resp.get("ContentRange"))
        if total is not None:
            self.size = total
        if isinstance(resp.get("LastModified"), dt.datetime):
            self.modified = resp["LastModified"]
        return data


def blob_for(fs: fsspec.AbstractFileSystem, path: str, url: str) -> Blob:
    """The :class:`Blob` kind that can check this filesystem's objects best."""
    if isinstance(fs, LocalFileSystem):
        return LocalBlob(fs, path, url)
    s3fs = sys.modules.get("s3fs")
    if s3fs is not None and isinstance(fs, s3fs.S3FileSystem) and not getattr(fs, "version_aware", False):
        return S3Blob(fs, path, url)
    return Blob(fs, path, url)


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if not isinstance(response, dict):
        return False
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in ("PreconditionFailed", "412") or status == 412


def _total_of(content_range: Any) -> int | None:
    """The object's size from ``Content-Range: bytes a-b/total``."""
    if not isinstance(content_range, str) or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def _identity_of(info: dict[str, Any]) -> Any:
    """What tells one version of an object from another in an fsspec ``info`` dict."""
    for key in ("ETag", "etag", "e_tag", "md5Hash", "checksum"):
        if info.get(key):
            return (key, info[key], info.get("size"))
    for key in ("mtime", "LastModified", "last_modified", "modified", "created", "updated"):
        if info.get(key) is not None:
            return (key, str(info[key]), info.get("size"))
    return ("size", info.get("size"))


def _modified_of(info: dict[str, Any]) -> dt.datetime | None:
    for key in ("LastModified", "last_modified", "modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(value, dt.UTC)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def _from_ns(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
