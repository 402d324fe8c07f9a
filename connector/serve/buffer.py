"""The DT data buffer's endpoints (seed 003), each mapped onto one dataset ``{id}``.

===============================================  =========================================  ======
path                                             does                                       role
===============================================  =========================================  ======
``GET  /api/v1/buffer/{id}/stat``                ``n_itm`` (datapoints), ``buff_size`` bytes reader
``GET  /api/v1/buffer/{id}/dstat``               ``dstatus``: ``OPERATIONAL`` or ``FROZEN``  reader
``GET  /api/v1/buffer/{id}/dumpF``               the stored datapoints (``offset``/``limit``) reader
``GET  /api/v1/buffer/{id}/dumpLogF``            the dataset's operation log                 reader
``POST /api/v1/buffer/{id}/sendF``               store one JSON document as a datapoint      editor
``POST /api/v1/buffer/{id}/upddsc``              ``{"dstatus": "FROZEN"}`` freezes (or back) owner
``POST /api/v1/buffer/{id}/cleanall``            unfreeze, keep the data as a version, start  owner
                                                 an empty key space (the buffer's new folder)
===============================================  =========================================  ======

``dstat`` never carries a token (the seed's ``Dsstat.json`` did): ``user`` is the caller's principal.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connector.des import DesReader
from connector.serve.errors import ApiError
from connector.serve.routes import authorized, in_worker, json_fields, principal_of
from connector.serve.uploads import check_records
from connector.store import Store, Version

PREFIX = "/api/v1/buffer/{id}"
DUMP_LIMIT = 10_000  # datapoints listed per dumpF call at most


class BufferApi:
    """The data buffer's handlers over a store; :meth:`routes` lists them."""

    def __init__(self, store: Store, max_document_bytes: int, lock_wait: float) -> None:
        self.store, self.max_document_bytes, self.lock_wait = store, max_document_bytes, lock_wait

    def routes(self) -> list[web.RouteDef]:
        """The buffer's routes under ``/api/v1/buffer/{id}``."""
        return [web.get(PREFIX + "/stat", self.stat), web.get(PREFIX + "/dstat", self.dstat),
                web.get(PREFIX + "/dumpF", self.dump_files), web.get(PREFIX + "/dumpLogF", self.dump_log),
                web.post(PREFIX + "/sendF", self.send_file), web.post(PREFIX + "/upddsc", self.update_status),
                web.post(PREFIX + "/cleanall", self.clean_all)]

    async def stat(self, request: web.Request) -> web.Response:
        """``GET .../stat``: datapoints and bytes of the dataset (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        stats = await in_worker(self.store.stats, name)
        return web.json_response({"n_itm": stats["datapoints"], "buff_size": stats["bytes"]})

    async def dstat(self, request: web.Request) -> web.Response:
        """``GET .../dstat``: whether the dataset is frozen, and the caller's principal (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        dataset = await in_worker(self.store.get_dataset, name)
        return web.json_response(_dstat(dataset.frozen, principal_of(request).name))

    async def dump_files(self, request: web.Request) -> web.Response:
        """``GET .../dumpF``: a page of the dataset's datapoints with their member names (``offset``,
        ``limit``; role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        offset, limit = _int(request, "offset", 0, 0, 2**63 - 1), _int(request, "limit", DUMP_LIMIT, 1, DUMP_LIMIT)
        return web.json_response(await in_worker(_files, self.store, name, offset, limit))

    async def dump_log(self, request: web.Request) -> web.Response:
        """``GET .../dumpLogF``: the dataset's operation log (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        return web.json_response({"log": await in_worker(self.store.log_entries, name)})

    async def send_file(self, request: web.Request) -> web.Response:
        """``POST .../sendF``: store one JSON document as a record; 201 with its key (role editor)."""
        name = await authorized(request, self.store, "editor", "send data")
        document = await _bounded_body(request, self.max_document_bytes)
        record = check_records(name, [document], 0)[0]  # one JSON object, however laid out
        key = await in_worker(_write_one, self.store, name, record, self.lock_wait)
        return web.json_response({"key": key}, status=201)

    async def update_status(self, request: web.Request) -> web.Response:
        """``POST .../upddsc``: freeze (``FROZEN``) or unfreeze (``OPERATIONAL``) the dataset (role owner)."""
        name = await authorized(request, self.store, "owner", "freeze or unfreeze")
        fields = await json_fields(request, {"dstatus": str})
        wanted = fields.get("dstatus")
        if wanted not in ("FROZEN", "OPERATIONAL"):
            raise ApiError(400, "bad_json", 'give {"dstatus": "FROZEN"} or {"dstatus": "OPERATIONAL"}')
        change = self.store.freeze if wanted == "FROZEN" else self.store.unfreeze
        dataset = await in_worker(change, name)
        return web.json_response(_dstat(dataset.frozen, principal_of(request).name))

    async def clean_all(self, request: web.Request) -> web.Response:
        """``POST .../cleanall``: unfreeze, then keep the data as the next major version and start
        an empty key space (role owner)."""
        name = await authorized(request, self.store, "owner", "clean all")
        kept = await in_worker(_clean_all, self.store, name, self.lock_wait)
        return web.json_response({**_dstat(False, principal_of(request).name), "version": kept.version,
                                  "kept_dataranges": len(kept.dataranges)})


def _dstat(frozen: bool, user: str) -> dict[str, str]:
    return {"dstatus": "FROZEN" if frozen else "OPERATIONAL", "user": user}


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, "bad_query", f"{name} must be a whole number from {low} to {high}")
    return int(text)


async def _bounded_body(request: web.Request, limit: int) -> bytes:
    """The whole body (a sendF document is one datapoint: it is kept whole), at most ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"document of {request.content_length} bytes is larger than the limit of "
                       f"{limit} bytes")
    pieces, size = [], 0
    while piece := await request.content.readany():
        size += len(piece)
        if size > limit:
            raise ApiError(413, "too_large", f"document larger than the limit of {limit} bytes")
        pieces.append(piece)
    return b"".join(pieces)


def _write_one(store: Store, name: str, record: bytes, wait: float) -> int:
    with store.writer(name, "records", wait=wait) as writer:
        key = writer.next_key
        writer.write_json_lines([record])
    return key


def _files(store: Store, name: str, offset: int, limit: int) -> dict[str, Any]:
    """Datapoints ``offset..offset+limit-1`` (by position) with their member names."""
    ranges = store.dataranges(name)
    total = sum(d.count for d in ranges)
    files: list[dict[str, Any]] = []
    skipped = 0
    for d in ranges:
        if skipped + d.count <= offset:
            skipped += d.count
            continue
        names = (None if d.kind == "records"
                 else DesReader(store.fs._strip_protocol(d.url), fs=store.fs, size=d.size).names())
        for i in range(max(offset - skipped, 0), d.count):
            if len(files) == limit:
                break
            key = d.first + i
            files.append({"key": key, "name": f"{key:020d}.json" if names is None else names[i], "kind": d.kind})
        skipped += d.count
        if len(files) == limit:
            break
    return {"total": total, "offset": offset, "files": files}


def _clean_all(store: Store, name: str, wait: float) -> Version:
    """Unfreeze, then keep the data as the next major version and start an empty key space."""
    if store.get_dataset(name).frozen:
        store.unfreeze(name)
    return store.rotate(name, wait=wait)
