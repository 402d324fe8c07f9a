"""Local files replaced atomically and durably.

A reader sees the old content or the new, never part of one, and after :func:`write_atomically`
returns the new content survives a power cut: it is written to a hidden temporary file in the same
folder (so the rename stays on one filesystem), fsynced, renamed over the target with
``os.replace``, and the folder is fsynced so the rename itself is on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid

#: What :func:`temp_name` makes of a name: ``.<name>.<12 hex digits>.partial``.
_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.partial$")


def temp_name(path: str) -> str:
    """A hidden, unique sibling of ``path`` (``.<name>.<random>.partial``) to write before
    renaming; ``/``-separated, so it serves object-store keys too."""
    parent, _, base = path.rpartition("/")
    hidden = f".{base}.{uuid.uuid4().hex[:12]}.partial"
    return f"{parent}/{hidden}" if parent else hidden


def is_temp_name(base: str) -> bool:
    """True if ``base`` (a file name, no folder) is one :func:`temp_name` makes: a write that a
    killed process never finished renaming."""
    return _TEMP.match(base) is not None


def fsync_folder(folder: str) -> None:
    """Make the entries of ``folder`` (a rename into it) durable; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is as durable as they allow
    finally:
        os.close(fd)


def replace_durably(temp: str, path: str) -> None:
    """Rename the finished (fsynced) file ``temp`` over ``path`` and make the rename durable."""
    os.replace(temp, path)
    fsync_folder(os.path.dirname(os.path.abspath(path)))


def write_atomically(path: str, data: bytes) -> None:
    """Replace the local file ``path`` with ``data`` atomically and durably (see the module);
    creates missing parent folders. On failure the old file is intact and no temporary is left."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = temp_name(path)
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        replace_durably(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
