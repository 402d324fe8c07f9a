"""Member names: what a DES container may hold, and how a name maps onto a folder safely.

Names are ``/``-separated relative paths (directories are implied by ``/``, as in zip files).
Refused: empty names, more than 65535 UTF-8 bytes, leading ``/``, empty, ``.`` or ``..``
segments, backslashes, NUL and other control characters, and strings that are not valid
Unicode. The same rule guards writing and unpacking, so no name can escape a target folder.
"""

from __future__ import annotations

import os
import re
import unicodedata

from connector.des.format import MAX_NAME_BYTES
from connector.errors import MemberNameError


# Plain ASCII names without '.'-only segments pass this one regex (the common case, checked at C
# speed); anything else goes through the character-by-character rules below.
_SIMPLE = re.compile(r"[A-Za-z0-9_\-+=@,~%][A-Za-z0-9_.\-+=@,~%]*(?:/[A-Za-z0-9_\-+=@,~%][A-Za-z0-9_.\-+=@,~%]*)*")


def validate_member_name(name: str) -> bytes:
    """Return ``name`` as UTF-8 bytes, or raise :class:`MemberNameError` saying why it is refused."""
    if type(name) is str and len(name) <= 1024 and _SIMPLE.fullmatch(name) and ".." not in name:
        # Segments start with a safe non-dot character, so none is '', '.' or '..'.
        return name.encode("ascii")
    if not isinstance(name, str):
        raise MemberNameError(f"member name must be a str, got {type(name).__name__}")
    if not name:
        raise MemberNameError("member name is empty")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise MemberNameError(f"member name {name!r} is not valid Unicode") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise MemberNameError(f"member name is {len(encoded)} bytes long, the limit is {MAX_NAME_BYTES}")
    for ch in name:
        if ch == "\\":
            raise MemberNameError(f"member name {name!r} contains a backslash")
        if unicodedata.category(ch) == "Cc":
            raise MemberNameError(f"member name {name!r} contains a control character {ch!r}")
    if name.startswith("/"):
        raise MemberNameError(f"member name {name!r} is absolute (starts with '/')")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise MemberNameError(f"member name {name!r} has an empty, '.' or '..' path segment")
    return encoded


def safe_join(root: str | os.PathLike[str], name: str) -> str:
    """The local path of member ``name`` under ``root``; refuses names that would escape it."""
    validate_member_name(name)
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, *name.split("/")))
    if os.path.commonpath([base, target]) != base:
        raise MemberNameError(f"member name {name!r} would be written outside {root}")
    return target


# Printable ASCII kept as is in a safe name; '%' (the escape), '/' and '\\' are encoded.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%/\\")


def safe_member_name(key: str) -> str:
    """``key`` itself when it is a valid member name, else a valid name it can be recovered from
    with ``urllib.parse.unquote``: the whole key percent-encoded into one segment (``/``, ``\\``,
    ``%``, control and non-ASCII characters), ``.`` and ``..`` as ``%2E``, ``%2E%2E``."""
    try:
        validate_member_name(key)
        return key
    except MemberNameError:
        pass
    from urllib.parse import quote

    name = quote(key, safe=_SAFE)
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    validate_member_name(name)  # too long (over 65,535 bytes) stays an error
    return name
