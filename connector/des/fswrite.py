"""Writing members through ``des://``: a container is published whole, atomically, or not at all.

Two forms, like fsspec's ``zip://`` in mode ``"w"``:

- a write session, ``DesFileSystem(fo=url, mode="w")``: every member opened with ``"wb"`` is added
  when its file closes; the container appears when the filesystem is closed (``fs.close()`` or
  the end of a ``with`` block). An exception in that block, or ``fs.discard()``, leaves nothing;
- one member through a filesystem opened for reading (``fsspec.open("des://a.csv::s3://b/x.des",
  "wb")``, ``df.to_parquet("des://x.parquet::...")``): the container is created holding that
  one member when the file closes. It must not exist yet (a second member would have to rewrite
  it: use a session instead), so concurrent writers cannot lose each other's members.

Member bytes are spooled (in memory up to 32 MiB, then in a temporary file) until the member's
file closes, so several member files may be open at once.
"""

from __future__ import annotations

import io
import tempfile
import threading
from typing import Any, TypedDict

import fsspec

from connector.des.writer import DesWriter

SPOOL_IN_MEMORY = 32 * 1024 * 1024


class MemberWriter(io.BufferedIOBase):
    """A write-only binary file for one member; ``close`` hands the bytes to ``on_close``
    (``on_close(name, spool, size)``; ``spool`` is ``None`` when the member was discarded).

    Leaving a ``with`` block on an exception discards the member instead.
    """

    def __init__(self, name: str, on_close: Any) -> None:
        super().__init__()
        self.name = self.path = name
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self._on_close = on_close
        self._discarded = False

    def writable(self) -> bool:
        """Always True: a member file is write-only."""
        return True

    def write(self, data: Any) -> int:
        """Append ``data`` (any bytes-like object) to the member; returns the number of bytes."""
        if self.closed:
            raise ValueError(f"des member {self.name!r}: write to a closed file")
        view = memoryview(data).cast("B")
        self._spool.write(view)
        return view.nbytes

    def tell(self) -> int:
        """Bytes written so far."""
        return self._spool.tell()

    def discard(self) -> None:
        """Drop what was written: the member is not added."""
        self._discarded = True
        self.close()

    def close(self) -> None:
        """Hand the member to the session (or tell it the member was discarded); idempotent."""
        if self.closed:
            return
        try:
            if self._discarded:
                self._on_close(self.name, None, 0)
            else:
                size = self._spool.tell()
                self._spool.seek(0)
                self._on_close(self.name, self._spool, size)
        finally:
            self._spool.close()
            super().close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        # A member file dropped without close() is not published half-written.
        if not self.closed:
            self.discard()


class MemberOptions(TypedDict):
    """How members written through des:// are stored (:class:`DesWriter`'s arguments of the same names)."""

    compression: str | None
    big_file_threshold: int | None


class WriteSession:
    """Members added to one :class:`DesWriter`, committed by :meth:`commit`."""

    def __init__(self, target: fsspec.AbstractFileSystem, path: str, *, compression: str | None,
                 big_file_threshold: int | None, overwrite: bool) -> None:
        self.target, self.path = target, path
        self._options = MemberOptions(compression=compression, big_file_threshold=big_file_threshold)
        self._overwrite = overwrite
        self._writer: DesWriter | None = None
        self._lock = threading.Lock()
        self._open = 0
        self.state = "open"

    def _writer_now(self) -> DesWriter:
        if self._writer is None:
            self._writer = DesWriter(self.path, fs=self.target, overwrite=self._overwrite, **self._options)
        return self._writer

    def open_member(self, name: str) -> MemberWriter:
        """A file to write member ``name`` into; ValueError if the session is no longer open."""
        with self._lock:
            if self.state != "open":
                raise ValueError(f"{self.path}: the des:// write session is {self.state}")
            self._writer_now()  # an existing container without overwrite fails here, not at the end
            self._open += 1
        return MemberWriter(name, self._add)

    def _add(self, name: str, spool: Any, size: int) -> None:
        with self._lock:
            self._open -= 1
            if spool is None:  # discarded: not added
                return
            if self.state != "open":
                raise ValueError(f"{self.path}: member {name!r} closed after the write session was {self.state}")
            data = spool.read() if size <= SPOOL_IN_MEMORY else None
            writer = self._writer_now()
            if data is not None:
                writer.add(name, data)  # compresses when the session asked for it
            else:
                writer.add_stream(name, spool, size=size)

    def commit(self) -> None:
        """Publish the container with every member added; ValueError (and nothing written) if a member
        file is still open."""
        with self._lock:
            if self.state != "open":
                return
            if self._open:
                self.state = "failed"
                self._abort()
                raise ValueError(f"{self.path}: {self._open} member file(s) still open when the container was "
                                 f"closed; nothing was written")
            self._writer_now().close()
            self.state = "committed"

    def discard(self) -> None:
        """Drop the session: nothing is published."""
        with self._lock:
            if self.state == "open":
                self._abort()
                self.state = "discarded"

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


def write_one_member(target: fsspec.AbstractFileSystem, path: str, name: str, compression: str | None,
                     big_file_threshold: int | None) -> MemberWriter:
    """A member file whose close creates the container holding just that member."""
    if target.exists(path):
        raise FileExistsError(f"{path}: container already exists; des:// adds members to a container only in a "
                              f"write session that replaces it whole (mode='w')")

    def publish(member: str, spool: Any, size: int) -> None:
        if spool is None:  # discarded: no container
            return
        session = WriteSession(target, path, compression=compression, big_file_threshold=big_file_threshold,
                               overwrite=False)
        session._open += 1
        try:
            session._add(member, spool, size)
            session.commit()
        except BaseException:
            session.discard()
            raise

    return MemberWriter(name, publish)
