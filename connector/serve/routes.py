"""Datas3t's REST API, path for path (seed 000), over a :class:`connector.store.Store`.

=========================================================  ======================  =======
path                                                       does                    role
=========================================================  ======================  =======
``GET    /api/v1/datas3t``                                 list datasets           (any)
``PUT    /api/v1/datas3t/{id}``                            create a dataset        editor
``GET    /api/v1/datas3t/{id}``                            dataset and its stats   reader
``DELETE /api/v1/datas3t/{id}``                            delete it, and its data owner
``POST   /api/v1/datas3t/{id}``                            upload one datarange    editor
``GET    /api/v1/datas3t/{id}/dataranges``                 list dataranges         reader
``GET    /api/v1/datas3t/{id}/datarange/{start}/{end}``    download datapoints     reader
``POST   /api/v1/datas3t/{id}/aggregate/{start}/{end}``    merge dataranges        editor
``GET    /api/v1/datas3t/{id}/missing-ranges``             gaps in the key space   reader
=========================================================  ======================  =======

Roles count by the dataset's name and its topic (:mod:`connector.serve.auth`); a create's topic is
its ``metadata.topic_id``. The list shows only the datasets the caller may read. Every store call runs in the server's
worker threads; the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from connector.serve import downloads, uploads
from connector.serve.auth import Principal, topic_of
from connector.serve.bodies import BlockingBody
from connector.serve.errors import ApiError
from connector.store import Datarange, Dataset, RangeError, Store
from connector.store.errors import DatasetNotFound
from connector.store.layout import validate_dataset_name

PREFIX = "/api/v1/datas3t"
MAX_KEY = 2**63 - 1
TAR_TYPES = frozenset({"application/x-tar", "application/tar"})
JSONL_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines",
                         "application/x-jsonlines"})
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server."""

    max_upload_bytes: int = 1 << 30
    lock_wait: float = 30.0  # seconds a write waits for another writer of the dataset
    idle_seconds: float = 120.0  # an upload body that stops arriving for this long is dropped


class Datas3tApi:
    """The handlers; :meth:`routes` lists them for an aiohttp application."""

    def __init__(self, store: Store, limits: Limits) -> None:
        self.store, self.limits = store, limits

    def routes(self) -> list[web.RouteDef]:
        """The REST routes under ``/api/v1/datas3t``."""
        return [
            web.get(PREFIX, self.list_datasets),
            web.put(PREFIX + "/{id}", self.create_dataset),
            web.get(PREFIX + "/{id}", self.get_dataset),
            web.delete(PREFIX + "/{id}", self.delete_dataset),
            web.post(PREFIX + "/{id}", self.upload),
            web.get(PREFIX + "/{id}/dataranges", self.list_dataranges),
            web.get(PREFIX + "/{id}/datarange/{start}/{end}", self.download),
            web.post(PREFIX + "/{id}/aggregate/{start}/{end}", self.aggregate),
            web.get(PREFIX + "/{id}/missing-ranges", self.missing_ranges),
        ]

    async def _run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await in_worker(func, *args, **kwargs)

    # -- datasets --------------------------------------------------------------------------------

    async def list_datasets(self, request: web.Request) -> web.Response:
        """``GET /api/v1/datas3t``: the datasets the caller may read."""
        principal = principal_of(request)
        found = await self._run(self.store.list_datasets, limit=1 << 62)
        return web.json_response({"datasets": [_dataset_json(d) for d in found
                                               if principal.may(d.name, topic_of(d.metadata), "reader")]})

    async def create_dataset(self, request: web.Request) -> web.Response:
        """``PUT .../{id}``: create a dataset from the JSON fields given; 201 (role editor)."""
        principal, name = principal_of(request), valid_name(request)
        fields = await json_fields(request, {"description": str, "tags": list, "metadata": dict, "status": str})
        topic = new_topic(fields.get("metadata", {}))
        if not principal.may(name, topic, "editor"):
            raise ApiError(403, "permission_denied", principal.denial(name, topic, "editor", "create a dataset"))
        created = await self._run(self.store.create_dataset, name, **fields)
        return web.json_response(_dataset_json(created), status=201)

    async def get_dataset(self, request: web.Request) -> web.Response:
        """``GET .../{id}``: the dataset with its stats (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        dataset, stats = await self._run(_with_stats, self.store, name)
        return web.json_response({**_dataset_json(dataset), "stats": stats})

    async def delete_dataset(self, request: web.Request) -> web.Response:
        """``DELETE .../{id}``: delete the dataset and its objects (role owner)."""
        name = await authorized(request, self.store, "owner", "delete")
        await self._run(self.store.delete_dataset, name, wait=self.limits.lock_wait)
        return web.json_response({"deleted": name})

    # -- dataranges ------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        """``POST .../{id}``: append the body (JSON Lines of records, or a tar of files), streamed into
        a writer (role editor)."""
        name = await authorized(request, self.store, "editor", "upload")
        write = _uploader(request.content_type)
        if request.content_length is not None and request.content_length > self.limits.max_upload_bytes:
            raise ApiError(413, "too_large", f"request body of {request.content_length} bytes is larger than the "
                           f"limit of {self.limits.max_upload_bytes} bytes")
        body = BlockingBody(request.content, asyncio.get_running_loop(), limit=self.limits.max_upload_bytes,
                            idle_seconds=self.limits.idle_seconds)
        try:
            datarange = await self._run(write, self.store, name, io.BufferedReader(body, 1 << 16),
                                        wait=self.limits.lock_wait)
        finally:
            body.abandon()  # a thread still reading (this task was cancelled) stops at once
        return web.json_response({"dataset": name, **self._datarange_json(datarange)}, status=201)

    async def list_dataranges(self, request: web.Request) -> web.Response:
        """``GET .../{id}/dataranges``: the dataset's dataranges (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        ranges = await self._run(self.store.dataranges, name)
        return web.json_response({"dataset": name, "dataranges": [self._datarange_json(d) for d in ranges]})

    async def download(self, request: web.Request) -> web.StreamResponse:
        """``GET .../{id}/datarange/{start}/{end}``: datapoints ``start..end`` in the asked
        ``format`` (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        first, last = _key(request, "start"), _key(request, "end")
        ranges = await self._run(downloads.covering, self.store, name, first, last)
        fmt = request.query.get("format") or downloads.default_format(ranges)
        if fmt not in downloads.FORMATS:
            raise ApiError(400, "bad_format", f"format must be one of {', '.join(downloads.FORMATS)}, not {fmt!r}")
        files = [d for d in ranges if d.kind != "records"]
        if fmt == "jsonl" and files:  # refused before the first byte, not as a stream cut short
            raise ApiError(409, "not_records", f"dataset {name!r}: keys {files[0].first}..{files[0].last} hold files, "
                           "which JSON Lines cannot carry; ask for format=tar")
        if fmt == "urls":
            expires = _expires(request.query.get("expires", "3600"))
            return web.json_response(await self._run(downloads.presigned, self.store, name, ranges, first, last,
                                                     expires))
        chunks = (downloads.jsonl_chunks(self.store, name, first, last) if fmt == "jsonl"
                  else downloads.tar_chunks(self.store, name, ranges, first, last))
        head = await self._next(chunks)  # errors before the first byte are answered as errors
        response = web.StreamResponse(headers={
            "Content-Type": "application/x-ndjson" if fmt == "jsonl" else "application/x-tar",
            "X-Des-First": str(first), "X-Des-Last": str(last), "X-Des-Count": str(last - first + 1)})
        response.enable_chunked_encoding()  # a stream cut by an error lacks the last chunk: clients see it
        await response.prepare(request)
        while head is not None:
            await response.write(head)
            head = await self._next(chunks)
        await response.write_eof()
        return response

    async def _next(self, chunks: Iterator[bytes]) -> bytes | None:
        try:
            return await self._run(next, chunks, None)
        except RangeError as exc:  # keys gone since they were listed (a concurrent delete)
            raise ApiError(404, "missing", str(exc)) from None

    async def aggregate(self, request: web.Request) -> web.Response:
        """``POST .../{id}/aggregate/{start}/{end}``: merge the dataranges inside the range (role
        editor)."""
        name = await authorized(request, self.store, "editor", "aggregate")
        first, last = _key(request, "start"), _key(request, "end")
        merged = await self._run(self.store.aggregate, name, first, last, wait=self.limits.lock_wait)
        return web.json_response({"dataset": name, "datarange": self._datarange_json(merged)})

    async def missing_ranges(self, request: web.Request) -> web.Response:
        """``GET .../{id}/missing-ranges``: the next key and the gaps of the key space (role reader)."""
        name = await authorized(request, self.store, "reader", "read")
        dataset, gaps = await self._run(_with_gaps, self.store, name)
        return web.json_response({"dataset": name, "next_key": dataset.next_key,
                                  "missing": [{"start": a, "end": b} for a, b in gaps]})

    def _datarange_json(self, d: Datarange) -> dict[str, Any]:
        root = self.store.storage.url(self.store.root).rstrip("/") + "/"
        return {"start": d.first, "end": d.last, "datapoints": d.count, "bytes": d.size, "sha256": d.sha256,
                "kind": d.kind, "object": d.url.removeprefix(root)}


async def in_worker(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in the server's worker threads (store calls block)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(func, *args, **kwargs))


def principal_of(request: web.Request) -> Principal:
    """The principal the auth middleware found for ``request``."""
    principal = request.get("principal")
    if not isinstance(principal, Principal):  # the auth middleware sets it on every API route
        raise ApiError(401, "unauthenticated", "no principal")
    return principal


def valid_name(request: web.Request) -> str:
    """The dataset id of the path, once it is a valid name (400 otherwise)."""
    name = request.match_info["id"]
    try:
        validate_dataset_name(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None
    return name


async def authorized(request: web.Request, store: Store, role: str, action: str) -> str:
    """The dataset id of the path, once it is a valid name and the caller holds ``role`` on it
    (by its name and its topic)."""
    principal, name = principal_of(request), valid_name(request)
    topic = None if principal.admin else await in_worker(dataset_topic, store, name)
    if not principal.may(name, topic, role):
        raise ApiError(403, "permission_denied", principal.denial(name, topic, role, action))
    return name


def dataset_topic(store: Store, name: str) -> str | None:
    """The topic of dataset ``name`` (``None``: it has none or does not exist, which the caller's
    answer must not tell apart)."""
    try:
        return topic_of(store.get_dataset(name).metadata)
    except DatasetNotFound:
        return None


def new_topic(metadata: dict[str, Any]) -> str | None:
    """The topic a new dataset's metadata names; 400 for a ``topic_id`` that is not a topic name."""
    if "topic_id" not in metadata:
        return None
    topic = metadata["topic_id"]
    if not isinstance(topic, str) or not topic:
        raise ApiError(400, "bad_topic", "metadata topic_id must be a non-empty string")
    try:
        validate_dataset_name(topic)  # the same rules as a dataset name: no '/', '..', NUL, no overlong value
    except ValueError as exc:
        raise ApiError(400, "bad_topic", f"topic_id: {exc}") from None
    return topic


def _key(request: web.Request, part: str) -> int:
    text = request.match_info[part]
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_KEY:
        raise ApiError(400, "bad_key", f"{part} {text[:40]!r} is not a datapoint key (a whole number from 0 to {MAX_KEY})")
    return int(text)


def _expires(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= downloads.MAX_EXPIRES:
        raise ApiError(400, "bad_expires", f"expires {text[:20]!r} must be seconds from 1 to {downloads.MAX_EXPIRES}")
    return int(text)


def _uploader(content_type: str) -> Callable[..., Datarange]:
    if content_type in TAR_TYPES:
        return uploads.upload_tar
    if content_type in JSONL_TYPES:
        return uploads.upload_lines
    raise ApiError(415, "unsupported_media_type",
                   f"upload a tar (Content-Type: application/x-tar) or JSON Lines (application/x-ndjson), "
                   f"not {content_type!r}")


async def json_fields(request: web.Request, allowed: dict[str, type]) -> dict[str, Any]:
    """The JSON object body (empty body: ``{}``), with only ``allowed`` fields of the right types."""
    if not request.can_read_body:
        return {}
    try:
        value = await request.json()
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", "request body must be a JSON object")
    for key, item in value.items():
        if key not in allowed:
            raise ApiError(400, "bad_json", f"unknown field {key!r} (allowed: {', '.join(allowed)})")
        if not isinstance(item, allowed[key]):
            raise ApiError(400, "bad_json", f"field {key!r} must be {allowed[key].__name__}")
    return value


def _with_stats(store: Store, name: str) -> tuple[Dataset, dict[str, Any]]:
    stats = store.stats(name)
    return store.get_dataset(name), {k: stats[k] for k in ("datapoints", "bytes", "dataranges", "versions")}


def _with_gaps(store: Store, name: str) -> tuple[Dataset, list[tuple[int, int]]]:
    return store.get_dataset(name), store.missing_ranges(name)


def _dataset_json(d: Dataset) -> dict[str, Any]:
    return {"id": d.name, "description": d.description, "tags": list(d.tags), "metadata": d.metadata,
            "status": d.status, "frozen": d.frozen, "created": iso(d.created), "updated": iso(d.updated),
            "last_write": iso(d.last_write), "next_key": d.next_key}


def iso(seconds: float | None) -> str | None:
    """``seconds`` since the epoch as ISO 8601 UTC with microseconds (None stays None)."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"
