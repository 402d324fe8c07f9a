"""A range of datapoints as a byte stream: JSON Lines (records) or a tar of datapoint files.

The tar has Datas3t's shape, the one an upload takes: members ``<key:020d>.<ext>`` in key order
(records as ``.json``; a packed file keeps its name's extension, and its stored name, when it is
not already ``<key>.<ext>``, rides in the PAX header ``DES.name``). Bytes come from the store's
readers, so every member and DATA region is checked (sha256 / CRC-32) on the way out. At most one
datarange's DATA region (records), or one window of neighbouring datapoints up to WINDOW_BYTES or a
single larger one (files), is held in memory at a time.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from typing import Any

from connector.des import DesReader
from connector.serve.errors import ApiError
from connector.serve.uploads import DATAPOINT_NAME
from connector.store import Datarange, Store

FORMATS = ("jsonl", "tar", "urls")
MAX_EXPIRES = 7 * 24 * 3600  # S3's longest presigned URL
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,16})$")
READ_ATTEMPTS = 10  # a container replaced by a concurrent aggregate is looked up again
#: File datapoints read together in one ranged GET (bigger ones are read alone).
WINDOW_BYTES = 2 * 1024 * 1024


def covering(store: Store, dataset: str, first: int, last: int) -> list[Datarange]:
    """The dataranges holding ``[first, last]``; :class:`ApiError` 404 naming missing keys."""
    if first > last:
        raise ApiError(400, "bad_range", f"dataset {dataset!r}: range [{first}, {last}] is empty (start > end)")
    ranges = [d for d in store.dataranges(dataset) if d.last >= first and d.first <= last]
    missing, expected = [], first
    for d in ranges:
        if d.first > expected:
            missing.append(f"{expected}..{d.first - 1}")
        expected = d.last + 1
    if expected <= last:
        missing.append(f"{expected}..{last}")
    if missing:
        raise ApiError(404, "missing", f"dataset {dataset!r} has no datapoints {', '.join(missing)} "
                       f"(asked for {first}..{last})")
    return ranges


def default_format(ranges: list[Datarange]) -> str:
    """JSON Lines when every datarange holds records, else a tar."""
    return "jsonl" if all(d.kind == "records" for d in ranges) else "tar"


def jsonl_chunks(store: Store, dataset: str, first: int, last: int) -> Iterator[bytes]:
    """Records ``[first, last]`` as JSON Lines, one chunk per datarange."""
    yield from store.read_lines(dataset, first, last, whole=True)


def tar_chunks(store: Store, dataset: str, ranges: list[Datarange], first: int, last: int) -> Iterator[bytes]:
    """Datapoints ``[first, last]`` (held by ``ranges``, as listed) as a tar stream."""
    names: dict[str, list[str]] = {}
    for d in ranges:
        lo, hi = max(first, d.first), min(last, d.last)
        if d.kind == "records":
            key = lo
            for chunk in store.read_lines(dataset, lo, hi, whole=True):
                for line in chunk.split(b"\n")[:-1]:
                    yield _member(f"{key:020d}.json", line + b"\n")
                    key += 1
        else:
            yield from _file_members(store, dataset, d, lo, hi, names)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)  # the end-of-archive marker


def _file_members(store: Store, dataset: str, d: Datarange, lo: int, hi: int,
                  names: dict[str, list[str]]) -> Iterator[bytes]:
    """Tar members of file datapoints ``[lo, hi]`` of ``d``: read through one reader of the
    container, neighbours coalesced into one ranged GET per window of up to WINDOW_BYTES
    (each member verified). If the container is replaced meanwhile (merged by an aggregate), the
    rest is read datapoint by datapoint, each looked up again."""
    key = lo
    try:
        reader = store.storage.reader(d)
        stored = reader.names()[lo - d.first:hi - d.first + 1]
        while key <= hi:
            window: list[str] = []
            size = 0
            for name in stored[key - lo:]:
                length = reader.info(name).length
                if window and size + length > WINDOW_BYTES:
                    break
                window.append(name)
                size += length
            blobs = reader.read_many(window)
            for name in window:
                tar_name, kept = _tar_name(key, name)
                yield _member(tar_name, blobs[name], kept)
                key += 1
    except FileNotFoundError:
        pass
    for rest in range(key, hi + 1):
        tar_name, kept = _tar_name(rest, _stored_name(store, dataset, rest, names))
        yield _member(tar_name, store.read(dataset, rest), kept)


def presigned(store: Store, dataset: str, ranges: list[Datarange], first: int, last: int,
              expires: int) -> dict[str, Any]:
    """Datas3t's way to read a range: per container, a presigned GET URL and each datapoint's
    byte range in it, for the client to read the object store directly.

    Only for a root whose filesystem signs URLs (S3), and datapoints stored plain (not compressed,
    not in ``_bigFiles/``). A URL can outlive its container (an aggregate replaces it and deletes
    the old one): on 404 ask again."""
    out = []
    for d in ranges:
        path = store.fs._strip_protocol(d.url)
        try:
            url = store.fs.sign(path, expiration=expires)
        except NotImplementedError:
            raise ApiError(400, "no_presign", f"dataset {dataset!r}: presigned URLs need an object store root "
                           f"(S3), not {store.storage.url(store.root)}; download the bytes instead") from None
        reader = DesReader(path, fs=store.fs, size=d.size)
        names = reader.names()
        points = []
        for key in range(max(first, d.first), min(last, d.last) + 1):
            info = reader.info(names[key - d.first])
            if info.flags:  # compressed, external, encrypted: not a plain byte range of this object
                raise ApiError(409, "not_addressable", f"dataset {dataset!r}: datapoint {key} is not stored as "
                               "plain bytes in its container; download the bytes instead")
            points.append({"key": key, "name": info.name, "offset": info.offset, "length": info.length})
        out.append({"url": url, "start": d.first, "end": d.last, "bytes": d.size, "sha256": d.sha256,
                    "datapoints": points})
    return {"dataset": dataset, "start": first, "end": last, "expires_in": expires, "dataranges": out}


def _stored_name(store: Store, dataset: str, key: int, names: dict[str, list[str]]) -> str:
    """The member name datapoint ``key`` has in its container (``names``: container url -> names)."""
    for attempt in range(READ_ATTEMPTS):
        d = store.datarange_for(dataset, key)
        if d.url not in names:
            try:
                reader = DesReader(store.fs._strip_protocol(d.url), fs=store.fs, size=d.size)
            except FileNotFoundError:  # merged into a new container since it was looked up
                if attempt == READ_ATTEMPTS - 1:
                    raise
                continue
            names.clear()
            names[d.url] = reader.names()
        return names[d.url][key - d.first]
    raise AssertionError("unreachable")


def _tar_name(key: int, stored: str) -> tuple[str, str | None]:
    """(tar member name, stored name to keep in the PAX header or ``None``) of a file datapoint."""
    found = DATAPOINT_NAME.match(stored)
    if found is not None and int(found[1]) == key:
        return stored, None
    ext = _EXTENSION.search(stored.rsplit("/", 1)[-1])
    return f"{key:020d}.{ext[1] if ext else 'bin'}", stored


def _member(name: str, data: bytes, stored: str | None = None) -> bytes:
    """One tar member: header, content, padding to the block size."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    if stored is not None:
        info.pax_headers = {"DES.name": stored}
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)
