"""DatasetService (seed 002) over gRPC, on the same store and tokens as the REST API.

See ``connector/spec/dataset_service.proto`` for how its messages map onto the store. Every
method authenticates the call (metadata ``authorization: Bearer <token>``, else UNAUTHENTICATED)
and checks the principal's role on the dataset, by its name and its topic (PERMISSION_DENIED; see
:mod:`connector.serve.auth`): reader for Get/List/Download/
chunks, editor for CreateDataset/CreateVersion/UploadContent, owner for Update/DeleteDataset.
Store errors become NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION,
RESOURCE_EXHAUSTED, UNAVAILABLE; a hash that does not match is DATA_LOSS.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

import grpc  # type: ignore[import-untyped]
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from connector.serve import uploads
from connector.serve.auth import ANONYMOUS_ADMIN, Principal, Tokens, bearer_token, topic_of
from connector.serve.errors import ApiError, api_error
from connector.grpcapi import dataset_service_pb2 as pb
from connector.grpcapi import dataset_service_pb2_grpc as rpc
from connector.serve.routes import dataset_topic, new_topic
from connector.store import Dataset, Store, Version, VersionError
from connector.store.layout import validate_dataset_name
from connector.store.versions import check_semver

PIECE = 256 * 1024  # DownloadContent chunk size, as the seed's example client sends
MAX_PAGE = 1000
CONTENT_TYPE = "application/vnd.des.containers"  # a version's content: its DES containers in key order
UPLOAD_TYPES: dict[str, Callable[..., Any]] = {"application/x-tar": uploads.upload_tar,
                                                "application/x-ndjson": uploads.upload_lines}
_STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                 403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
                 409: grpc.StatusCode.FAILED_PRECONDITION, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                 415: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE}
_log = logging.getLogger("connector.serve.grpc")
T = TypeVar("T")


class DatasetService(rpc.DatasetServiceServicer):
    """The servicer: one store, the tokens (``None``: everyone is admin) and the upload limit."""

    def __init__(self, store: Store, tokens: Tokens | None, max_upload_bytes: int, lock_wait: float) -> None:
        self.store, self.tokens = store, tokens
        self.max_upload_bytes, self.lock_wait = max_upload_bytes, lock_wait

    # -- CRUD ------------------------------------------------------------------------------------

    def CreateDataset(self, request: pb.CreateDatasetRequest, context: grpc.ServicerContext) -> pb.CreateDatasetResponse:  # noqa: N802 - gRPC's method name
        """Create a dataset (role editor); ``topic_id`` is kept in its metadata."""
        def run() -> pb.CreateDatasetResponse:
            principal, name = self._principal(context), _valid_name(request.name)
            if "topic_id" in request.metadata:
                raise ApiError(400, "bad_topic", "the topic is the request's topic_id, not a metadata key")
            metadata: dict[str, Any] = dict(request.metadata)
            if request.topic_id:
                metadata["topic_id"] = request.topic_id
            topic = new_topic(metadata)
            if not principal.may(name, topic, "editor"):
                raise ApiError(403, "permission_denied", principal.denial(name, topic, "editor", "create a dataset"))
            created = self.store.create_dataset(name, request.description, list(request.tags), metadata)
            return pb.CreateDatasetResponse(dataset=self._dataset(created, self._principal(context)))
        return _answer(context, run)

    def GetDataset(self, request: pb.GetDatasetRequest, context: grpc.ServicerContext) -> pb.GetDatasetResponse:  # noqa: N802 - gRPC's method name
        """One dataset, with its versions if asked (role reader)."""
        def run() -> pb.GetDatasetResponse:
            name = self._authorized(context, request.id, "reader", "read")
            out = pb.GetDatasetResponse(dataset=self._dataset(self.store.get_dataset(name), self._principal(context)))
            if request.include_versions:
                out.versions.extend(_version(v) for v in self.store.list_versions(name))
            return out
        return _answer(context, run)

    def ListDatasets(self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext) -> pb.ListDatasetsResponse:  # noqa: N802 - gRPC's method name
        """The datasets the caller may read, filtered by status, tags and topic, sorted and paged."""
        def run() -> pb.ListDatasetsResponse:
            principal = self._principal(context)
            found = [d for d in self.store.list_datasets(request.status or None, list(request.tags) or None,
                                                         limit=1 << 62)
                     if principal.may(d.name, topic_of(d.metadata), "reader")
                     and (not request.topic_id or d.metadata.get("topic_id") == request.topic_id)]
            field = request.sort.field or "name"
            keys: dict[str, Callable[[Dataset], Any]] = {"name": lambda d: d.name, "created_at": lambda d: d.created,
                                                         "updated_at": lambda d: d.updated}
            if field not in keys:
                raise ApiError(400, "bad_sort", f"sort field must be one of {', '.join(keys)}, not {field!r}")
            found.sort(key=keys[field], reverse=request.sort.descending)
            page, info = _page(found, request.page)
            return pb.ListDatasetsResponse(datasets=[self._dataset(d, principal) for d in page], page_info=info)
        return _answer(context, run)

    def UpdateDataset(self, request: pb.UpdateDatasetRequest, context: grpc.ServicerContext) -> pb.UpdateDatasetResponse:  # noqa: N802 - gRPC's method name
        """Change description, tags or metadata (role owner); datasets are not renamed."""
        def run() -> pb.UpdateDatasetResponse:
            name = self._authorized(context, request.id, "owner", "update")
            if "topic_id" in request.metadata:  # moving a dataset would carry it across the topic boundary
                raise ApiError(400, "bad_topic", f"dataset {name!r}: the topic is fixed when the dataset is created")
            if request.name and request.name != name:
                raise ApiError(400, "rename", f"dataset {name!r}: datasets are not renamed (name must be empty or the id)")
            updated = self.store.update_dataset(name, description=request.description or None,
                                                tags=list(request.tags) or None, metadata=dict(request.metadata) or None)
            return pb.UpdateDatasetResponse(dataset=self._dataset(updated, self._principal(context)))
        return _answer(context, run)

    def DeleteDataset(self, request: pb.DeleteDatasetRequest, context: grpc.ServicerContext) -> pb.DeleteDatasetResponse:  # noqa: N802 - gRPC's method name
        """Delete a dataset (role owner)."""
        def run() -> pb.DeleteDatasetResponse:
            name = self._authorized(context, request.id, "owner", "delete")
            self.store.delete_dataset(name, wait=self.lock_wait)
            return pb.DeleteDatasetResponse(id=name)
        return _answer(context, run)

    # -- versions --------------------------------------------------------------------------------

    def CreateVersion(self, request: pb.CreateVersionRequest, context: grpc.ServicerContext) -> pb.CreateVersionResponse:  # noqa: N802 - gRPC's method name
        """Snapshot the dataset as a version (role editor); a ``content_hash`` that does not match
        the content removes the version again and fails with DATA_LOSS."""
        def run() -> pb.CreateVersionResponse:
            name = self._authorized(context, request.dataset_id, "editor", "create a version")
            self._new_version(name, request.version)
            v = self.store.create_version(name, request.version, request.message)
            if request.content_hash and request.content_hash != bytes.fromhex(v.sha256):
                self.store.delete_version(name, v.version)
                raise _DataLoss(f"dataset {name!r}: content_hash {request.content_hash.hex()} is not the content's "
                                f"{v.sha256}; no version was kept")
            return pb.CreateVersionResponse(version=_version(v))
        return _answer(context, run)

    def GetVersion(self, request: pb.GetVersionRequest, context: grpc.ServicerContext) -> pb.GetVersionResponse:  # noqa: N802 - gRPC's method name
        """One version of a dataset (role reader)."""
        def run() -> pb.GetVersionResponse:
            name, version = self._version_of(context, request.dataset_id, request.version_id)
            return pb.GetVersionResponse(version=_version(_find_version(self.store, name, version)))
        return _answer(context, run)

    def ListVersions(self, request: pb.ListVersionsRequest, context: grpc.ServicerContext) -> pb.ListVersionsResponse:  # noqa: N802 - gRPC's method name
        """The dataset's versions, paged (role reader)."""
        def run() -> pb.ListVersionsResponse:
            name = self._authorized(context, request.dataset_id, "reader", "read")
            page, info = _page(self.store.list_versions(name), request.page)
            return pb.ListVersionsResponse(versions=[_version(v) for v in page], page_info=info)
        return _answer(context, run)

    # -- content ---------------------------------------------------------------------------------

    def UploadContent(self, request_iterator: Iterator[pb.UploadContentRequest], context: grpc.ServicerContext  # noqa: N802 - gRPC's method name
                      ) -> pb.UploadContentResponse:
        """Append the streamed content to a dataset: the first message carries the metadata, the
        others the bytes (role editor)."""
        def run() -> pb.UploadContentResponse:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("data") != "metadata":
                raise ApiError(400, "no_metadata", "the first UploadContent message must carry the metadata")
            meta = first.metadata
            name = self._authorized(context, meta.dataset_id, "editor", "upload")
            write = UPLOAD_TYPES.get(meta.content_type)
            if write is None:
                raise ApiError(400, "content_type", f"content_type must be one of {', '.join(UPLOAD_TYPES)}, "
                               f"not {meta.content_type!r}")
            if meta.version:
                self._new_version(name, meta.version)
            body = _ChunkStream(request_iterator, self.max_upload_bytes)

            def check() -> None:  # the whole content is in: its size and hash, before anything is committed
                if meta.total_size and body.received != meta.total_size:
                    raise ApiError(400, "total_size", f"received {body.received} bytes, total_size says {meta.total_size}")
                if meta.expected_hash and body.sha256.digest() != meta.expected_hash:
                    raise _DataLoss(f"upload to {name!r}: SHA-256 {body.sha256.hexdigest()} is not the expected "
                                    f"{meta.expected_hash.hex()}; nothing was written")

            write(self.store, name, io.BufferedReader(body, 1 << 16), wait=self.lock_wait, before_commit=check)
            version_id = ""
            if meta.version:
                version_id = _version_id(self.store.create_version(name, meta.version, "UploadContent"))
            return pb.UploadContentResponse(version_id=version_id, content_hash=body.sha256.digest(),
                                            bytes_received=body.received, chunks_stored=1)
        return _answer(context, run)

    def DownloadContent(self, request: pb.DownloadContentRequest, context: grpc.ServicerContext  # noqa: N802 - gRPC's method name
                        ) -> Iterator[pb.DownloadContentResponse]:
        """Stream the bytes ``[offset, offset + length)`` of a version's content (role reader)."""
        try:
            name, version = self._version_of(context, request.dataset_id, request.version_id or "latest")
            v = _find_version(self.store, name, version)
            if request.offset < 0 or request.length < 0 or request.offset > v.size:
                raise ApiError(400, "bad_range", f"offset {request.offset} / length {request.length} outside the "
                               f"content of {v.size} bytes")
        except Exception as exc:  # noqa: BLE001 - answered as a status
            _abort(context, exc)
        yield pb.DownloadContentResponse(metadata=pb.DownloadMetadata(
            version_id=_version_id(v), content_type=CONTENT_TYPE, total_size=v.size,
            content_hash=bytes.fromhex(v.sha256), total_chunks=len(v.dataranges)))
        end = v.size if request.length == 0 else min(v.size, request.offset + request.length)
        try:
            for piece in _content(self.store, v, request.offset, end):
                yield pb.DownloadContentResponse(chunk=piece)
        except Exception as exc:  # noqa: BLE001 - answered as a status
            _abort(context, exc)

    def GetChunk(self, request: pb.GetChunkRequest, context: grpc.ServicerContext) -> pb.GetChunkResponse:  # noqa: N802 - gRPC's method name
        """One chunk (datarange) of a version, by index or by hash."""
        def run() -> pb.GetChunkResponse:
            name, version = self._version_of(context, "", request.version_id)
            ranges = _find_version(self.store, name, version).dataranges
            if request.chunk_hash:
                found = [i for i, d in enumerate(ranges) if d.sha256 == request.chunk_hash.lower()]
                if not found:
                    raise ApiError(404, "no_chunk", f"version {request.version_id}: no chunk with hash {request.chunk_hash}")
                index = found[0]
            else:
                index = request.chunk_index
                if not 0 <= index < len(ranges):
                    raise ApiError(404, "no_chunk", f"version {request.version_id}: no chunk {index} (it has {len(ranges)})")
            d = ranges[index]
            data = self.store.fs.cat_file(self.store.fs._strip_protocol(d.url))
            if hashlib.sha256(data).hexdigest() != d.sha256:
                raise _DataLoss(f"chunk {index} of {request.version_id}: its bytes do not hash to {d.sha256}")
            return pb.GetChunkResponse(chunk=pb.Chunk(index=index, data=data, hash=bytes.fromhex(d.sha256), size=d.size))
        return _answer(context, run)

    def ListChunks(self, request: pb.ListChunksRequest, context: grpc.ServicerContext) -> pb.ListChunksResponse:  # noqa: N802 - gRPC's method name
        """The chunks (dataranges) of a version: index, hash, size."""
        def run() -> pb.ListChunksResponse:
            name, version = self._version_of(context, "", request.version_id)
            ranges = _find_version(self.store, name, version).dataranges
            return pb.ListChunksResponse(chunks=[pb.ChunkInfo(index=i, hash=bytes.fromhex(d.sha256), size=d.size,
                                                              available=True) for i, d in enumerate(ranges)])
        return _answer(context, run)

    # -- helpers ---------------------------------------------------------------------------------

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        if self.tokens is None:
            return ANONYMOUS_ADMIN
        header = dict(context.invocation_metadata()).get("authorization")
        token = bearer_token(header if isinstance(header, str) else None)
        principal = self.tokens.principal(token) if token else None
        if principal is None:
            raise ApiError(401, "unauthenticated", "unknown bearer token" if token else
                           "missing bearer token (metadata authorization: Bearer <token>)")
        return principal

    def _authorized(self, context: grpc.ServicerContext, name: str, role: str, action: str) -> str:
        principal = self._principal(context)
        _valid_name(name)
        topic = None if principal.admin else dataset_topic(self.store, name)
        if not principal.may(name, topic, role):
            raise ApiError(403, "permission_denied", principal.denial(name, topic, role, action))
        return name

    def _version_of(self, context: grpc.ServicerContext, dataset_id: str, version_id: str) -> tuple[str, str]:
        """(dataset, version) of a version id ``<dataset>@<version>``, or of ``dataset_id`` and a
        version (or ``latest``), once the caller may read the dataset."""
        name, at, version = version_id.rpartition("@")
        if not at:
            name, version = dataset_id, version_id
        elif dataset_id and dataset_id != name:
            raise ApiError(400, "version_id", f"version {version_id!r} is not of dataset {dataset_id!r}")
        name = self._authorized(context, name, "reader", "read")
        if not version:
            raise ApiError(400, "version_id", "give a version id (<dataset>@<semver>), a version or 'latest'")
        return name, version

    def _new_version(self, name: str, version: str) -> None:
        """Refuse a version name that is taken (ALREADY_EXISTS) or not semver, before anything is written."""
        check_semver(version)
        if any(v.version == version for v in self.store.list_versions(name)):
            raise ApiError(409, "already_exists", f"dataset {name!r} already has version {version}")

    def _dataset(self, d: Dataset, principal: Principal) -> pb.Dataset:
        stats = self.store.stats(d.name)
        versions = self.store.list_versions(d.name)
        out = pb.Dataset(id=d.name, topic_id=str(d.metadata.get("topic_id", "")), name=d.name,
                         description=d.description, status=d.status, tags=list(d.tags),
                         metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in d.metadata.items()
                                   if k != "topic_id"},
                         created_at=_timestamp(d.created), updated_at=_timestamp(d.updated),
                         stats=pb.DatasetStats(datapoints=stats["datapoints"], size_bytes=stats["bytes"],
                                               dataranges=stats["dataranges"], versions=stats["versions"]))
        if versions:
            out.latest_version.CopyFrom(_version(versions[-1]))
        return out


def _valid_name(name: str) -> str:
    try:
        validate_dataset_name(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None
    return name


class _DataLoss(Exception):
    """A hash that does not match."""


class _ChunkStream(io.RawIOBase):
    """The ``chunk`` messages of an UploadContent stream as a blocking binary stream, hashed and
    bounded by the upload limit."""

    def __init__(self, requests: Iterator[pb.UploadContentRequest], limit: int) -> None:
        super().__init__()
        self._requests, self._limit = requests, limit
        self._piece = memoryview(b"")
        self.received = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._piece:
            message = next(self._requests, None)
            if message is None:
                return 0
            if message.WhichOneof("data") != "chunk":
                raise ApiError(400, "metadata_twice", "only the first UploadContent message carries metadata")
            self.received += len(message.chunk)
            if self.received > self._limit:
                raise ApiError(413, "too_large", f"upload larger than the limit of {self._limit} bytes")
            self.sha256.update(message.chunk)
            self._piece = memoryview(message.chunk)
        n = min(len(buffer), len(self._piece))
        buffer[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n


def _content(store: Store, v: Version, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of the version's containers laid end to end, in pieces."""
    position = 0
    for d in v.dataranges:
        lo, hi = max(start, position), min(end, position + d.size)
        path = store.fs._strip_protocol(d.url)
        while lo < hi:
            piece = store.fs.cat_file(path, start=lo - position, end=min(hi, lo + PIECE) - position)
            if not piece:
                raise _DataLoss(f"container {d.url} ends before its recorded size {d.size}")
            yield piece
            lo += len(piece)
        position += d.size
        if position >= end:
            return


def _page(items: list[T], page: pb.PageRequest) -> tuple[list[T], pb.PageInfo]:
    size = page.page_size or 100
    if not 1 <= size <= MAX_PAGE:
        raise ApiError(400, "page_size", f"page_size must be from 1 to {MAX_PAGE}")
    token = page.page_token or "0"
    if not token.isdigit():
        raise ApiError(400, "page_token", "page_token is not one this server gave")
    offset = int(token)
    rest = offset + size
    return items[offset:rest], pb.PageInfo(next_page_token=str(rest) if rest < len(items) else "",
                                           total_size=len(items))


def _find_version(store: Store, name: str, version: str) -> Version:
    """``version`` (or the latest) of dataset ``name``; NOT_FOUND when it has none such."""
    if version == "latest":
        try:
            return store.get_version(name, "latest")
        except VersionError as exc:  # it has none
            raise ApiError(404, "not_found", str(exc)) from None
    check_semver(version)
    found = [v for v in store.list_versions(name) if v.version == version]
    if not found:
        raise ApiError(404, "not_found", f"dataset {name!r} has no version {version}")
    return found[0]


def _version_id(v: Version) -> str:
    return f"{v.dataset}@{v.version}"


def _version(v: Version) -> pb.DatasetVersion:
    return pb.DatasetVersion(id=_version_id(v), dataset_id=v.dataset, version=v.version, message=v.message,
                             content_hash=bytes.fromhex(v.sha256), size_bytes=v.size, chunk_count=len(v.dataranges),
                             created_at=_timestamp(v.created))


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _answer(context: grpc.ServicerContext, run: Callable[[], T]) -> T:
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - every error becomes a status
        _abort(context, exc)


def _abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    if isinstance(exc, _DataLoss):
        context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
    if isinstance(exc, VersionError) and "already has version" in str(exc):
        context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
    error = api_error(exc)
    code = (grpc.StatusCode.ALREADY_EXISTS if error.code == "already_exists"
            else _STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL))
    context.abort(code, error.message)
    raise AssertionError("unreachable")  # context.abort raises


def start_grpc(store: Store, tokens: Tokens | None, address: str, *, max_upload_bytes: int, lock_wait: float,
               threads: int = 16, tls: tuple[bytes, bytes] | None = None) -> tuple[grpc.Server, int]:
    """Start DatasetService on ``address`` (``host:port``; port 0 picks one); the server and its port."""
    limit = max_upload_bytes + (1 << 20)  # GetChunk answers a whole container
    server = grpc.server(ThreadPoolExecutor(threads, thread_name_prefix="des-grpc"),
                         options=[("grpc.max_send_message_length", limit),
                                  ("grpc.max_receive_message_length", 16 << 20)])
    rpc.add_DatasetServiceServicer_to_server(DatasetService(store, tokens, max_upload_bytes, lock_wait), server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
    server.start()
    return server, port
