"""Small helpers over fsspec objects shared by the store's modules."""

from __future__ import annotations

import hashlib

import fsspec


def remove_quietly(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Delete ``path``; already gone is fine (deletes are retried after crashes), any other
    failure is raised."""
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def remove_best_effort(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Try to delete ``path`` and never fail: for cleanup while another error is on its way up,
    or of leftovers a later writer or gc removes anyway (a failure here must not undo a commit)."""
    try:
        fs.rm_file(path)
    except OSError:  # FileNotFoundError included
        pass


def sha256_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """SHA-256 of a whole object, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with fs.open(path, "rb", block_size=8 * 1024 * 1024) as f:
        while chunk := f.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
