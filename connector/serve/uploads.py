"""Uploads of a datarange, Datas3t's way: a tar of datapoint files, or JSON Lines records.

Both run in a worker thread, reading the body as a blocking stream (see
:mod:`connector.serve.bodies`) into ONE store writer session, committed only once the whole
body is read and valid. Any error (a bad name, a gap, a bad line, a body cut short or too large)
aborts the writer, so nothing of that upload becomes visible. The server's store cuts no
container before the upload limit (see :func:`connector.serve.app.open_store`), so an upload is
exactly one datarange.

Datas3t names the datapoints of a tar ``%020d.<ext>``; keys must run without gaps from the
dataset's next key (this store numbers datapoints contiguously: an upload starting before it
overlaps what is stored, one starting after it would leave a gap).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterator
from typing import IO

import msgspec

from connector.jsontext import duplicate_key, tables_cleanly, valid_utf8
from connector.serve.errors import ApiError
from connector.store import Datarange, Store, StoreError

#: ``<key:020d>.<ext>``: 20 digits, a dot, an extension of letters and digits (dotted parts allowed).
DATAPOINT_NAME = re.compile(r"^(\d{20})\.([A-Za-z0-9]{1,16}(?:\.[A-Za-z0-9]{1,16}){0,3})$")
MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSON Lines record; a longer line is refused, not buffered
LINES_PER_CALL = 10_000


def upload_tar(store: Store, dataset: str, body: IO[bytes], *, wait: float,
               before_commit: Callable[[], None] | None = None) -> Datarange:
    """Write the datapoint files of the tar ``body`` as one datarange of ``dataset``.
    ``before_commit`` runs once the whole body is read; raising there writes nothing."""
    with store.writer(dataset, "files", wait=wait) as writer:
        first = writer.next_key
        count = 0
        try:
            archive = tarfile.open(fileobj=body, mode="r|")  # a stream: read in order, never seeked
            for member in archive:
                key = _check_member(dataset, member, first + count, first)
                content = archive.extractfile(member)
                assert content is not None  # a regular file (checked)
                writer.write_file(f"{key:020d}.{DATAPOINT_NAME.match(member.name)[2]}", content,  # type: ignore[index]
                                  size=member.size)
                count += 1
        except (tarfile.TarError, EOFError, ValueError) as exc:
            if isinstance(exc, StoreError):  # a ValueError too, but the store's own
                raise
            # ValueError: a member shorter than its header says (the body was cut)
            raise ApiError(400, "bad_tar", f"upload to {dataset!r} is not a readable tar archive "
                           f"(after {count} datapoints): {exc}") from None
        if count == 0:
            raise ApiError(400, "empty_upload", f"upload to {dataset!r} holds no datapoint files")
        _drain(body)
        if before_commit is not None:
            before_commit()
        datarange = writer.commit()
    assert datarange is not None
    return datarange


def _check_member(dataset: str, member: tarfile.TarInfo, expected: int, first: int) -> int:
    """The key of tar ``member`` if it is the datapoint file the upload needs next."""
    where = f"upload to {dataset!r}: tar member {member.name!r}"
    if not member.isreg():
        raise ApiError(400, "bad_member", f"{where} is not a regular file (only datapoint files are taken)")
    found = DATAPOINT_NAME.match(member.name)
    if found is None:
        raise ApiError(400, "bad_name", f"{where} is not named <key:020d>.<ext> (e.g. 00000000000000000042.json)")
    key = int(found[1])
    if expected == first and key != first:
        if key < first:
            raise ApiError(409, "overlap", f"{where}: key {key} overlaps the datapoints stored; the dataset's "
                           f"next key is {first}")
        raise ApiError(409, "gap", f"{where}: key {key} would leave keys {first}..{key - 1} missing; the "
                       f"dataset's next key is {first} (datapoints are numbered without gaps)")
    if key < expected:
        raise ApiError(400, "order", f"{where}: key {key} comes after key {expected - 1} (members must be in "
                       "ascending key order, each once)")
    if key > expected:
        raise ApiError(400, "gap", f"{where}: key {key} skips keys {expected}..{key - 1} (an upload holds "
                       "consecutive keys)")
    return key


def upload_lines(store: Store, dataset: str, body: IO[bytes], *, wait: float,
                 before_commit: Callable[[], None] | None = None) -> Datarange:
    """Write the JSON Lines records of ``body`` (one JSON object a line) as one datarange
    (``before_commit``: as :func:`upload_tar`'s).

    Each record is stored as compact JSON with its strings and numbers exactly as sent; a line
    that is not a JSON object in UTF-8, or whose object holds a key twice, is refused."""
    with store.writer(dataset, "records", wait=wait) as writer:
        count = 0
        for lines in _batches(dataset, body):
            writer.write_json_lines(check_records(dataset, lines, count))
            count += len(lines)
        if count == 0:
            raise ApiError(400, "empty_upload", f"upload to {dataset!r} holds no records")
        if before_commit is not None:
            before_commit()
        datarange = writer.commit()
    assert datarange is not None
    return datarange


def _batches(dataset: str, body: IO[bytes]) -> Iterator[list[bytes]]:
    """Lines of ``body`` (without their line ends) in lists of at most :data:`LINES_PER_CALL`."""
    batch: list[bytes] = []
    lineno = 0
    while line := body.readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            raise ApiError(413, "line_too_long", f"upload to {dataset!r}: line {lineno} is longer than "
                           f"{MAX_LINE_BYTES} bytes")
        batch.append(line.rstrip(b"\r\n") if line.endswith(b"\n") else line)
        if len(batch) == LINES_PER_CALL:
            yield batch
            batch = []
    if batch:
        yield batch


def check_records(dataset: str, lines: list[bytes], before: int) -> list[bytes]:
    """``lines`` as compact JSON objects; :class:`ApiError` naming the first bad line."""
    def bad(i: int, why: str) -> ApiError:
        return ApiError(400, "bad_record", f"upload to {dataset!r}: line {before + i + 1} {why}")

    if not valid_utf8(lines):
        i = next(i for i, line in enumerate(lines) if not valid_utf8([line]))
        raise bad(i, "is not UTF-8")
    out = []
    for i, line in enumerate(lines):
        try:
            compact = msgspec.json.format(line, indent=-1)  # whitespace dropped; values as written
        except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested 1,000 deep or more
            raise bad(i, f"is not JSON ({exc})") from None
        if not compact.startswith(b"{"):
            raise bad(i, "is not a JSON object")
        out.append(compact)
    if not tables_cleanly(b"\n".join(out)):  # fast: pyarrow refuses an object with a key twice
        for i, line in enumerate(out):
            key = duplicate_key(line)
            if key is not None:
                raise bad(i, f"holds the key {key!r} twice")
    return out


def _drain(body: IO[bytes]) -> None:
    """Read what follows the tar's end (its zero blocks): the body's end must be seen, and its
    size checked, before the upload is committed."""
    while body.read(1 << 16):
        pass
