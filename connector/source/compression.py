"""Decompression chosen by file extension (``.gz``, ``.zst``/``.zstd``, ``.bz2``, ``.xz``).

gzip, bzip2 and zstd are decoded by Arrow's C++ codecs (no GIL, no extra dependency); xz by the
standard library's :mod:`lzma`, which Arrow does not ship.
"""

from __future__ import annotations

import lzma
from typing import IO, Any

import pyarrow as pa

#: Extension -> codec name.
EXTENSIONS: dict[str, str] = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


def split_compression(name: str) -> tuple[str, str | None]:
    """``"a/b.csv.gz"`` -> ``("a/b.csv", "gzip")``; no known suffix -> ``(name, None)``."""
    lower = name.lower()
    for ext, codec in EXTENSIONS.items():
        if lower.endswith(ext):
            return name[: -len(ext)], codec
    return name, None


def decompressed(raw: IO[bytes], codec: str | None) -> Any:
    """A readable stream of the decoded bytes of ``raw`` (returned unchanged when ``codec`` is None).

    The result is something ``pyarrow.csv.open_csv``/``pyarrow.json`` and ``.read()`` accept.
    """
    if codec is None:
        return raw
    if codec == "xz":
        return lzma.LZMAFile(raw)
    return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec)
