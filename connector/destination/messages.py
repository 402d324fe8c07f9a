"""Parsing the destination's stdin: Airbyte messages, one per line, fast.

The hot path decodes each line with a typed msgspec decoder that keeps ``record.data`` as the raw
bytes of the input (``msgspec.Raw``): the JSON is validated but not turned into Python objects and
back. ``msgspec.json.format(..., indent=-1)`` then drops whitespace between tokens, so every stored
datapoint is compact JSON (strings, numbers and escapes exactly as the source wrote them).

Any line the typed decoder refuses goes to :func:`classify`, which uses orjson and the protocol's
rules to either accept it, ignore it (a message type the destination does not store) or raise
:class:`InputError` naming the line and the reason.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import IO, Any, Optional, Union

import msgspec
import orjson

from connector.errors import ConnectorError
from connector.jsontext import duplicate_key, tables_cleanly

BLOCK_BYTES = 1 << 20


class InputError(ConnectorError):
    """A bad message on stdin (the text names the line)."""


NO_META = msgspec.Raw(b"")


def has_meta(meta: msgspec.Raw) -> bool:
    """True if a RECORD's ``meta`` was given and is not ``null``."""
    return len(meta) > 0 and bytes(meta) != b"null"


class Record(msgspec.Struct, gc=False):
    """``record`` of a RECORD message; ``data`` stays the input's bytes."""

    # gc=False (here and in Message): a block decodes thousands of these, and tracking them made the
    # collector run every few hundred lines; their fields (str, numbers, Raw) cannot form a cycle.

    stream: str
    data: msgspec.Raw
    namespace: Optional[str] = None  # noqa: UP045 - msgspec needs the runtime type
    emitted_at: Union[int, float, None] = None  # noqa: UP007 - milliseconds since the epoch (an integer by the protocol)
    # AirbyteRecordMessageMeta (``changes``) as bytes; empty when absent (msgspec takes no Raw in a union).
    meta: msgspec.Raw = NO_META
    # A file transferred with the record: ``file_reference`` (staging_file_url,
    # source_file_relative_path, file_size_bytes), or the older ``file`` (file_url, file_relative_path,
    # bytes, modified, source_file_url). Bytes, empty when absent, like ``meta``.
    file_reference: msgspec.Raw = NO_META
    file: msgspec.Raw = NO_META

    @property
    def has_file(self) -> bool:
        """True if the record carries a file (``file_reference`` or ``file``)."""
        return has_meta(self.file_reference) or has_meta(self.file)


class Message(msgspec.Struct, gc=False):
    """One stdin message: only what the destination acts on is decoded."""

    type: str
    record: Optional[Record] = None  # noqa: UP045


#: One line -> :class:`Message`; raises one of ``DECODE_ERRORS`` for anything else (then see :func:`classify`).
decode_line = msgspec.json.Decoder(Message).decode
DECODE_ERRORS = (msgspec.MsgspecError, RecursionError)


def classify(line: bytes, lineno: int) -> Message | None:
    """The slow, explanatory path for a line the typed decoder refused."""
    if not line.strip():
        return None
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"stdin line {lineno}: not JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise InputError(f"stdin line {lineno}: a message must be a JSON object, not {type(msg).__name__}")
    kind = msg.get("type")
    if kind == "RECORD":
        record = msg.get("record")
        if not isinstance(record, dict) or not isinstance(record.get("stream"), str):
            raise InputError(f"stdin line {lineno}: RECORD without record.stream")
        data = record.get("data")
        if not isinstance(data, dict):
            raise InputError(f"stdin line {lineno}: RECORD data of stream {record['stream']!r} is "
                             f"{type(data).__name__}, not an object")
        namespace = record.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise InputError(f"stdin line {lineno}: RECORD namespace must be a string or null, "
                             f"not {type(namespace).__name__}")
        emitted_at = record.get("emitted_at")
        if emitted_at is not None and (type(emitted_at) not in (int, float) or not -2**63 <= emitted_at < 2**63):
            raise InputError(f"stdin line {lineno}: RECORD emitted_at must be a number of milliseconds, "
                             f"not {emitted_at!r}")
        meta = record.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise InputError(f"stdin line {lineno}: RECORD meta must be an object, not {type(meta).__name__}")
        # Valid for orjson but refused by the typed decoder: its data could only be stored
        # re-encoded, which is not what the source sent.
        raise InputError(f"stdin line {lineno}: RECORD of stream {record['stream']!r} cannot be stored byte for byte "
                         f"({_typed_error(line)})")
    if isinstance(kind, str):
        return Message(kind)
    return Message("")  # no type: not a message the destination acts on


def _typed_error(line: bytes) -> str:
    try:
        decode_line(line)
    except DECODE_ERRORS as exc:
        return str(exc) or type(exc).__name__
    return "refused by the fast decoder"


def blocks(source: IO[bytes] | Iterable[bytes], *,
           idle: Callable[[], float | None] = lambda: None) -> Iterator[tuple[bytes, list[bytes]] | None]:
    """Lines of ``source`` in blocks: ``(text, lines)``, the block's lines without their ``\\n``
    and ``text`` their ``\\n``-joined bytes (the input as read, so it is not joined again).

    A binary stream with a file descriptor is read with ``os.read`` in large pieces; when ``idle``
    returns a number, ``None`` is yielded when no input arrived for that many seconds, so the caller can
    flush while a slow source is silent. Any other iterable is taken as lines.
    """
    fileno = _fileno(source)
    if fileno is None:
        batch: list[bytes] = []
        for line in source:
            batch.append(line[:-1] if line.endswith(b"\n") else line)
            if len(batch) >= 4096:
                yield b"\n".join(batch), batch
                batch = []
        if batch:
            yield b"\n".join(batch), batch
        return
    rest = b""
    while True:
        wait = idle()
        if wait is not None:
            ready, _, _ = select.select([fileno], [], [], max(wait, 0.0))
            if not ready:
                yield None
                continue
        block, ended = _read_block(fileno)
        if not block:
            break
        text = rest + block if rest else block
        cut = text.rfind(b"\n")
        if cut < 0:  # no line ends in it yet
            rest = text
            continue
        text, rest = text[:cut], text[cut + 1:]
        yield text, text.split(b"\n")
        if ended:
            break
    if rest:
        yield rest, [rest]


def _read_block(fileno: int) -> tuple[bytes, bool]:
    """Up to BLOCK_BYTES of input, and whether the input ended after it. A pipe gives what it holds
    (64 KiB at most on Linux), so what else is ready at once is gathered too: a fast producer's
    input goes on in blocks of BLOCK_BYTES, not in thousands of small ones (each costs a check
    call and a pass), while a slow one's is taken as soon as it arrives."""
    block = os.read(fileno, BLOCK_BYTES)
    parts, size = [block], len(block)
    while 0 < size < BLOCK_BYTES and select.select([fileno], [], [], 0)[0]:
        more = os.read(fileno, BLOCK_BYTES - size)
        if not more:
            return b"".join(parts), True
        parts.append(more)
        size += len(more)
    return (block if len(parts) == 1 else b"".join(parts)), False


def _fileno(source: Any) -> int | None:
    try:
        fileno = source.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fileno if isinstance(fileno, int) else None



#: RECORD data ``null`` (msgspec.Raw holds the value's own bytes, without the whitespace around it).
NULL_DATA = msgspec.Raw(b"null")
#: The verdict of a piece not handed to pyarrow: not known to be clean (see :func:`first_duplicate`).
_UNCHECKED: Future[bool] = Future()
_UNCHECKED.set_result(False)

#: A block's duplicate-key check runs in this many pieces: piece i is checked (in another thread,
#: without the GIL) while piece i+1 is decoded, and the last piece while the caller works on
#: something else (the writer decodes the next block before it waits for this one's verdict).
CHECK_PIECES = 4


def decode_starting_checks(block: list[bytes], checker: Executor) -> tuple[list[Message | None], list[Future[bool]]]:
    """Every line of ``block`` decoded, and :func:`tables_cleanly` of the RECORD data in it started
    in ``checker``, piece by piece: the block is clean when every future gives True, and then every
    RECORD's data is a JSON object in which no object holds a key twice.

    Only the ``data`` of RECORDs is given to pyarrow (a duplicate key anywhere else is not refused),
    which costs about 60% of parsing the whole messages; the pieces overlap with the decoding.
    Raises one of ``DECODE_ERRORS`` if a line fails the typed decoder (then take the slow path),
    after the checks it started have ended.
    """
    step = max(1, -(-len(block) // CHECK_PIECES))
    msgs: list[Message | None] = []
    checks: list[Future[bool]] = []
    try:
        for start in range(0, len(block), step):
            piece = [decode_line(line) for line in block[start:start + step]]
            msgs.extend(piece)
            raws = [m.record.data for m in piece if m.record is not None]
            if NULL_DATA in raws:  # pyarrow takes a null line for a row: the slow path names it
                checks.append(_UNCHECKED)
                continue
            # bytes.join takes the msgspec.Raw buffers as they are: no copy per record.
            checks.append(checker.submit(tables_cleanly, b"\n".join(raws)))
    except BaseException:
        for check in checks:  # none outlives the block's error
            check.result()
        raise
    return msgs, checks


def decode_checked(block: list[bytes], checker: Executor) -> tuple[list[Message | None], bool]:
    """:func:`decode_starting_checks`, waiting for the verdict: True if no RECORD data holds a
    key twice (False says nothing yet: see :func:`first_duplicate`)."""
    msgs, checks = decode_starting_checks(block, checker)
    verdicts = [check.result() for check in checks]  # every piece waited for
    return msgs, all(verdicts)


def first_duplicate(msgs: list[Message | None]) -> tuple[int, str] | None:
    """(index, key) of the first RECORD whose data holds a key twice (the slow, exact check)."""
    for i, msg in enumerate(msgs):
        if msg is not None and msg.record is not None:
            key = duplicate_key(bytes(msg.record.data))
            if key is not None:
                return i, key
    return None


class _Descriptor(msgspec.Struct):
    name: str
    namespace: Optional[str] = None  # noqa: UP045


class _StreamState(msgspec.Struct):
    stream_descriptor: _Descriptor


class _State(msgspec.Struct):
    """The part of ``state`` that says what it covers; everything else is skipped, not decoded."""

    type: Optional[str] = None  # noqa: UP045 - a state without type is LEGACY
    stream: Optional[_StreamState] = None  # noqa: UP045


_decode_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_scope = msgspec.json.Decoder(_State).decode
_encode = msgspec.json.Encoder().encode


def state_scope(line: bytes, lineno: int) -> tuple[str | None, str] | None:
    """The ``(namespace, name)`` a STREAM state covers, or ``None`` for a GLOBAL or LEGACY state
    (which covers every stream). :class:`InputError` for a STATE without a ``state`` object or a
    STREAM state without ``stream.stream_descriptor.name``."""
    try:
        fields = _decode_fields(line)
        scope = _decode_scope(fields["state"])
    except (*DECODE_ERRORS, KeyError):
        raise InputError(f"stdin line {lineno}: STATE without a 'state' object (or with a malformed "
                         f"'type' or 'stream.stream_descriptor')") from None
    if (scope.type or "LEGACY") == "STREAM":
        if scope.stream is None:
            raise InputError(f"stdin line {lineno}: STREAM state without stream.stream_descriptor")
        return scope.stream.stream_descriptor.namespace, scope.stream.stream_descriptor.name
    return None


def with_destination_count(line: bytes, count: int) -> bytes:
    """The STATE ``line`` with ``state.destinationStats.recordCount`` set to ``count``; every other
    field keeps its bytes (only whitespace between the top-level fields goes). One line, ``\\n``-ended."""
    fields = _decode_fields(line)
    state = _decode_fields(fields["state"])
    state["destinationStats"] = msgspec.Raw(b'{"recordCount":%d}' % count)
    fields["state"] = msgspec.Raw(_encode(state))
    return _encode(fields) + b"\n"
