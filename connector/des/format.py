"""DES v1: the bytes on disk.

``HEADER | DATA | META | INDEX | FOOTER``, little-endian, byte-compatible with the reference
implementation (see ``spec/DES_FORMAT.md``). This module only encodes and decodes; it does no I/O.
Every decoding error is a :class:`~connector.errors.DesFormatError` naming the container.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass

import orjson

from connector.errors import DesFormatError

HEADER_MAGIC = b"DESHEAD1"
FOOTER_MAGIC = b"DESFOOT1"
VERSION = 1

HEADER_STRUCT = struct.Struct("<8sB7s")
FOOTER_STRUCT = struct.Struct("<8sB7sQQQQQQQ")
ENTRY_FIXED_STRUCT = struct.Struct("<QQQQI")
NAME_LENGTH_STRUCT = struct.Struct("<H")

HEADER_SIZE = HEADER_STRUCT.size  # 16
FOOTER_SIZE = FOOTER_STRUCT.size  # 72
ENTRY_FIXED_SIZE = ENTRY_FIXED_STRUCT.size  # 36: four u64 and one u32
MIN_CONTAINER_SIZE = HEADER_SIZE + FOOTER_SIZE

FLAG_EXTERNAL = 0x1
FLAG_COMPRESSED = 0x2
FLAG_ENCRYPTED = 0x4
FLAG_DELETED = 0x8
KNOWN_FLAGS = FLAG_EXTERNAL | FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_DELETED

MAX_NAME_BYTES = 0xFFFF
EXTERNAL_FOLDER = "_bigFiles"

HEADER_BYTES = HEADER_STRUCT.pack(HEADER_MAGIC, VERSION, b"\0" * 7)


@dataclass(frozen=True, slots=True)
class Footer:
    """The 72-byte trailer: where each region starts and how long it is."""

    data_start: int
    data_length: int
    meta_start: int
    meta_length: int
    index_start: int
    index_length: int
    file_count: int

    @property
    def end(self) -> int:
        """Size of a container whose regions are laid out back to back (as writers do)."""
        return self.index_start + self.index_length + FOOTER_SIZE

    def pack(self) -> bytes:
        """The footer's 72 bytes."""
        return FOOTER_STRUCT.pack(
            FOOTER_MAGIC,
            VERSION,
            b"\0" * 7,
            self.data_start,
            self.data_length,
            self.meta_start,
            self.meta_length,
            self.index_start,
            self.index_length,
            self.file_count,
        )


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One INDEX entry. ``offset`` and ``meta_offset`` are absolute positions in the container."""

    name: str
    offset: int
    length: int
    meta_offset: int
    meta_length: int
    flags: int = 0

    @property
    def external(self) -> bool:
        """The member's bytes are in ``_bigFiles/``, not in the container."""
        return bool(self.flags & FLAG_EXTERNAL)

    @property
    def compressed(self) -> bool:
        """The member's bytes are compressed (the codec is in its META)."""
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def deleted(self) -> bool:
        """The entry is marked deleted (readers skip it)."""
        return bool(self.flags & FLAG_DELETED)

    def pack(self) -> bytes:
        """The entry as stored in the INDEX: name length, UTF-8 name, then the fixed fields."""
        name = self.name.encode("utf-8")
        return (
            NAME_LENGTH_STRUCT.pack(len(name))
            + name
            + ENTRY_FIXED_STRUCT.pack(self.offset, self.length, self.meta_offset, self.meta_length, self.flags)
        )


def parse_footer(raw: bytes, container: str, size: int | None = None) -> Footer:
    """Decode and sanity-check the footer (the last 72 bytes of ``raw``).

    ``size`` is the container's size when known; without it the regions are only checked against
    each other, and the caller takes ``Footer.end`` as the size.
    """
    if len(raw) < FOOTER_SIZE:
        raise DesFormatError(f"{container}: truncated: {len(raw)} bytes, a DES container has at least {MIN_CONTAINER_SIZE}")
    magic, version, _reserved, *fields = FOOTER_STRUCT.unpack_from(raw, len(raw) - FOOTER_SIZE)
    if magic != FOOTER_MAGIC:
        raise DesFormatError(f"{container}: bad footer magic {magic!r} (not a DES container, or truncated)")
    if version != VERSION:
        raise DesFormatError(f"{container}: unsupported DES version {version} (this reader knows version {VERSION})")
    footer = Footer(*fields)
    end = footer.end if size is None else size
    if end < MIN_CONTAINER_SIZE:
        raise DesFormatError(f"{container}: truncated: {end} bytes, a DES container has at least {MIN_CONTAINER_SIZE}")
    body_end = end - FOOTER_SIZE
    regions = (
        ("DATA", footer.data_start, footer.data_length),
        ("META", footer.meta_start, footer.meta_length),
        ("INDEX", footer.index_start, footer.index_length),
    )
    for region, start, length in regions:
        if start < HEADER_SIZE or start + length > body_end:
            raise DesFormatError(
                f"{container}: {region} region [{start}, {start + length}) lies outside the container body "
                f"[{HEADER_SIZE}, {body_end}) (truncated or corrupt)"
            )
    ordered = sorted(regions, key=lambda r: r[1])
    for (name_a, start_a, len_a), (name_b, start_b, _len_b) in zip(ordered, ordered[1:]):
        if start_a + len_a > start_b:
            raise DesFormatError(f"{container}: {name_a} region overlaps the {name_b} region")
    # Each index entry takes at least 2 + 36 bytes: a larger count cannot be true.
    if footer.file_count * (NAME_LENGTH_STRUCT.size + ENTRY_FIXED_SIZE) > footer.index_length:
        raise DesFormatError(
            f"{container}: footer declares {footer.file_count} members but the index is only {footer.index_length} bytes"
        )
    return footer


def parse_header(raw: bytes, container: str) -> None:
    """Check the 16-byte header of ``container``: :class:`DesFormatError` if it is truncated,
    has the wrong magic or another version."""
    if len(raw) < HEADER_SIZE:
        raise DesFormatError(f"{container}: truncated header")
    magic, version, _ = HEADER_STRUCT.unpack_from(raw)
    if magic != HEADER_MAGIC:
        raise DesFormatError(f"{container}: bad header magic {magic!r}")
    if version != VERSION:
        raise DesFormatError(f"{container}: unsupported DES version {version} in header")


def parse_index(raw: bytes | memoryview, footer: Footer, container: str) -> list[MemberInfo]:
    """Decode the INDEX region (``raw`` is exactly ``footer.index_length`` bytes)."""
    if len(raw) != footer.index_length:
        raise DesFormatError(f"{container}: index region is {len(raw)} bytes, footer says {footer.index_length}")
    view = memoryview(raw)
    entries: list[MemberInfo] = []
    pos, end = 0, len(view)
    data_end = footer.data_start + footer.data_length
    meta_end = footer.meta_start + footer.meta_length
    unpack_len, unpack_fixed = NAME_LENGTH_STRUCT.unpack_from, ENTRY_FIXED_STRUCT.unpack_from
    while pos < end:
        n = len(entries)
        if pos + NAME_LENGTH_STRUCT.size > end:
            raise DesFormatError(f"{container}: index entry {n} overruns the index region")
        (name_len,) = unpack_len(view, pos)
        pos += NAME_LENGTH_STRUCT.size
        if pos + name_len + ENTRY_FIXED_SIZE > end:
            raise DesFormatError(f"{container}: index entry {n} overruns the index region")
        try:
            name = bytes(view[pos : pos + name_len]).decode("utf-8")
        except UnicodeDecodeError:
            raise DesFormatError(f"{container}: index entry {n} has a name that is not valid UTF-8") from None
        pos += name_len
        offset, length, meta_offset, meta_length, flags = unpack_fixed(view, pos)
        pos += ENTRY_FIXED_SIZE
        # Duplicate names are read as the reference reads them (the last entry wins); see
        # ``duplicate_names`` and spec/DES_FORMAT.md.
        if flags & ~KNOWN_FLAGS:
            # An unknown bit may change how the bytes must be read: refuse rather than misread.
            raise DesFormatError(f"{container}: member {name!r} has unknown flags 0x{flags & ~KNOWN_FLAGS:x}")
        if not flags & FLAG_EXTERNAL and (offset < footer.data_start or offset + length > data_end):
            raise DesFormatError(
                f"{container}: member {name!r} data [{offset}, {offset + length}) lies outside the DATA region"
            )
        if meta_length and (meta_offset < footer.meta_start or meta_offset + meta_length > meta_end):
            raise DesFormatError(
                f"{container}: member {name!r} meta [{meta_offset}, {meta_offset + meta_length}) lies outside the META region"
            )
        entries.append(MemberInfo(name, offset, length, meta_offset, meta_length, flags))
    if len(entries) != footer.file_count:
        raise DesFormatError(f"{container}: footer declares {footer.file_count} members, index holds {len(entries)}")
    return entries


# An integer of 19+ digits may not fit 64 bits (below -2**63, above 2**64 - 1), which orjson would
# turn into a float.
_LONG_NUMBER = re.compile(rb"[:,\[]\s*-?[0-9]{19}")


def parse_meta(raw: bytes, container: str, name: str) -> dict:
    """Decode one member's META JSON object (empty bytes -> ``{}``).

    Accepts what Python's ``json.dumps`` writes (the reference's META): ``NaN``, ``Infinity``,
    lone surrogates in strings, and integers of any size, kept exact. orjson does the common case;
    only META it refuses, or that holds an integer of 19+ digits, goes through Python's parser.
    """
    if not raw:
        return {}
    if _LONG_NUMBER.search(raw):
        meta = _python_loads(raw, container, name)
    else:
        try:
            meta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            meta = _python_loads(raw, container, name)
    if not isinstance(meta, dict):
        raise DesFormatError(f"{container}: member {name!r} META is not a JSON object")
    return meta


def _python_loads(raw: bytes, container: str, name: str) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, past Python's digit limit
        raise DesFormatError(f"{container}: member {name!r} has invalid META JSON ({exc})") from None


def duplicate_names(members: list[MemberInfo] | tuple[MemberInfo, ...]) -> dict[str, int]:
    """Names held by more than one INDEX entry, with how many entries hold each."""
    counts: dict[str, int] = {}
    for m in members:
        counts[m.name] = counts.get(m.name, 0) + 1
    return {n: c for n, c in counts.items() if c > 1}


def dumps_meta(meta: dict) -> bytes:
    """Compact JSON, as the reference writes it."""
    return orjson.dumps(meta)
