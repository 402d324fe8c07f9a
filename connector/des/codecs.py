"""Member compression (flag 0x2): ``zstd`` and ``gzip``, always bounded by the declared size.

Decompression never produces more than the size recorded in the member's META, so a hostile
container cannot blow up memory (no "zip bombs").
"""

from __future__ import annotations

import zlib

import pyarrow as pa

from connector.errors import DesFormatError

CODECS = ("zstd", "gzip")


def check_codec(codec: str | None) -> str | None:
    """``codec`` if it is None or one of ``CODECS``, else ValueError."""
    if codec is not None and codec not in CODECS:
        raise ValueError(f"unknown compression {codec!r}; choose one of {', '.join(CODECS)} or None")
    return codec


def compress(data: bytes, codec: str) -> bytes:
    """``data`` compressed with ``codec`` (``zstd``, or ``gzip`` without file name or mtime)."""
    if codec == "zstd":
        return pa.compress(data, codec="zstd", asbytes=True)
    if codec == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip framing, no file name or mtime
        return c.compress(data) + c.flush()
    raise ValueError(f"unknown compression {codec!r}")


#: Largest expansion each codec can produce (deflate: ~1032:1; zstd: a 4-byte RLE block gives
#: 128 KiB, 32768:1), with headroom. A META ``size`` beyond it is a lie, refused before allocating.
MAX_RATIO = {"gzip": 1100, "zstd": 33000}


def decompress(data: bytes, codec: str, size: int, where: str) -> bytes:
    """Decompress to exactly ``size`` bytes or raise :class:`DesFormatError` naming ``where``."""
    if codec in MAX_RATIO and size > len(data) * MAX_RATIO[codec] + 4096:
        raise DesFormatError(f"{where}: META declares {size} bytes from {len(data)} compressed {codec} bytes, "
                             f"more than {codec} can expand to")
    try:
        if codec == "zstd":
            out = pa.decompress(data, decompressed_size=size, codec="zstd", asbytes=True)
        elif codec == "gzip":
            d = zlib.decompressobj(31)
            out = d.decompress(data, size + 1)
            if len(out) > size or d.unconsumed_tail:
                raise DesFormatError(f"{where}: decompresses to more than its declared {size} bytes")
        else:
            raise DesFormatError(f"{where}: unknown codec {codec!r}")
    except (OSError, zlib.error, pa.ArrowException, MemoryError, OverflowError) as exc:
        raise DesFormatError(f"{where}: corrupt {codec} data ({exc})") from None
    if len(out) != size:
        raise DesFormatError(f"{where}: decompressed to {len(out)} bytes, META says {size}")
    return out
