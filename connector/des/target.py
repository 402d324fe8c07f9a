"""Where a container lives: resolving paths/URLs to (filesystem, path), and committing atomically.

An :class:`AtomicFile` is written under a name nobody reads, and appears under its final name
only on :meth:`AtomicFile.commit`; :meth:`AtomicFile.discard` leaves nothing behind:

- local folders: a hidden temporary file in the target folder, fsynced, then ``os.replace`` and
  an fsync of the folder (:mod:`connector.files`);
- object stores whose fsspec files honour ``autocommit=False`` (s3fs, gcsfs, adlfs): a multipart
  upload completed on commit and aborted on discard, so nothing is visible before commit;
- anything else: a hidden temporary key, then ``fs.mv``.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

from connector.files import replace_durably, temp_name


def resolve(
    target: str | os.PathLike[str],
    fs: fsspec.AbstractFileSystem | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path)`` for a local path or fsspec URL, or for a path on a given ``fs``."""
    target = os.fspath(target)
    if fs is not None:
        return fs, fs._strip_protocol(target)
    fs, path = fsspec.core.url_to_fs(target, **(storage_options or {}))
    return fs, path


def url_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A protocol-qualified URL for ``path`` on ``fs`` (local paths stay plain paths)."""
    if isinstance(fs, LocalFileSystem):
        return path
    return fs.unstrip_protocol(path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True if ``fs`` is the local filesystem."""
    return isinstance(fs, LocalFileSystem)


def is_bucketed(fs: fsspec.AbstractFileSystem) -> bool:
    """True for object stores whose paths start with a bucket (s3fs, gcsfs, adlfs...)."""
    return callable(getattr(fs, "split_path", None))


class AtomicFile:
    """A binary file that becomes visible under ``path`` only when committed."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, block_size: int | None = None) -> None:
        self.fs, self.path = fs, path
        self._temp: str | None = None
        parent = path.rpartition("/")[0]
        hidden = temp_name(path)
        if is_local(fs):
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._temp = hidden
            self._file: Any = open(hidden, "wb")
            return
        kwargs = {"block_size": block_size} if block_size else {}
        f = fs.open(path, "wb", autocommit=False, **kwargs)
        if isinstance(f, AbstractBufferedFile) and not f.autocommit:
            self._file = f
            return
        # This filesystem commits on open or close: write under a hidden name and move at the end.
        f.close()
        if fs.exists(path):
            fs.rm_file(path)
        self._temp = hidden
        self._file = fs.open(hidden, "wb", **kwargs)

    def write(self, data: bytes | memoryview) -> int:
        """Write ``data`` to the hidden file; returns the number of bytes."""
        return self._file.write(data)

    def commit(self) -> None:
        """Make the file visible under its name in one step (durably on a local filesystem)."""
        if self._temp is None:
            self._file.close()  # uploads the last part; the object is not visible yet
            self._file.commit()
        elif is_local(self.fs):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            replace_durably(self._temp, self.path)
        else:
            self._file.close()
            self.fs.mv(self._temp, self.path)

    def discard(self) -> None:
        """Drop what was written; nothing becomes visible (errors while cleaning up are ignored)."""
        try:
            if self._temp is None:
                self._file.discard()
                # Without this, the file's __del__ would start uploading the discarded bytes.
                self._file.closed = True
            else:
                self._file.close()
                if is_local(self.fs):
                    os.unlink(self._temp)
                else:
                    self.fs.rm_file(self._temp)
        except (OSError, FileNotFoundError):
            pass
