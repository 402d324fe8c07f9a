"""Checks on JSON text that the destination, the store and the server share: is it UTF-8, and
does some object in it hold a key twice (which has no exact table form, so it is refused)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable


def valid_utf8(lines: list[bytes]) -> bool:
    """True if every line is UTF-8 (checked per block at C speed: msgspec.Raw does not check it)."""
    try:
        b"\n".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: The first byte that is not JSON whitespace.
_FIRST_TOKEN = re.compile(rb"[ \t\r\n]*")


def tables_cleanly(raw: bytes) -> bool:
    """True if pyarrow parses the block: then no object in it holds a key twice (pyarrow refuses
    that, at C speed and without the GIL, so it can run beside other work). False says nothing yet
    (a field that is a number in one line and text in another fails too): see :func:`duplicate_key`.

    ``raw`` must be lines that a recursion-limited parser (msgspec, Python's json) has already
    accepted: pyarrow's parser overflows the C stack on nesting some ten thousand levels deep, and
    crashes on a block whose first value is ``null`` (pyarrow 26), which is why only a block that
    starts with an object is handed to it.
    """
    import pyarrow as pa
    import pyarrow.json as pajson

    if not raw.strip():
        return True
    start = _FIRST_TOKEN.match(raw).end()  # type: ignore[union-attr]  # matches the empty string anywhere
    if raw[start:start + 1] != b"{":
        return False
    options = pajson.ReadOptions(use_threads=False, block_size=max(len(raw) + 1, 1 << 20))
    try:
        pajson.read_json(io.BytesIO(raw), read_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def first_repeated(keys: Iterable[str]) -> str:
    """The first key seen a second time (called once a repeat is known to be there)."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    raise ValueError("no key repeats")


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate(first_repeated(k for k, _ in pairs))
    return out


def duplicate_key(data: bytes) -> str | None:
    """The first key that some object of the JSON ``data`` holds twice, or None."""
    try:
        json.loads(data, object_pairs_hook=_object_without_duplicates)
    except _Duplicate as dup:
        return dup.key
    return None
