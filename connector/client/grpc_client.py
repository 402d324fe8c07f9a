"""A thin Python client for DatasetService over gRPC (``des serve --grpc``).

It wraps the generated stub (:mod:`connector.grpcapi`): it sends the bearer token with
every call, pages through lists, frames an upload (metadata first, then chunks, with its SHA-256
and size so the server checks them before committing) and joins a download, and turns a failed
call into :class:`GrpcError` (the status code's name and the server's message). Results are the
protocol's messages (``pb.Dataset``, ``pb.DatasetVersion``, ...). Needs the ``grpc`` extra.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]

from connector.errors import ConnectorError
from connector.grpcapi import dataset_service_pb2 as pb
from connector.grpcapi import dataset_service_pb2_grpc as rpc

PIECE = 256 * 1024  # bytes per UploadContent chunk message
T = TypeVar("T")


class GrpcError(ConnectorError):
    """A call the server answered with a status other than OK."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class DatasetServiceClient:
    """DatasetService at ``address`` (``host:port``) as the principal of ``token``; TLS when given
    the server's certificate (or its CA's) as PEM bytes. Use as a context manager, or :meth:`close`."""

    def __init__(self, address: str, token: str | None = None, *, root_certificate: bytes | None = None,
                 max_message_bytes: int = 64 << 20) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = (grpc.insecure_channel(address, options=options) if root_certificate is None else
                         grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificate), options=options))
        self._stub = rpc.DatasetServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> DatasetServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- datasets --------------------------------------------------------------------------------

    def create_dataset(self, name: str, topic_id: str = "", description: str = "", tags: Iterable[str] = (),
                       metadata: Mapping[str, str] | None = None) -> pb.Dataset:
        """``CreateDataset``: a new dataset (in ``topic_id``, which the caller must edit); the created one."""
        request = pb.CreateDatasetRequest(topic_id=topic_id, name=name, description=description, tags=list(tags),
                                          metadata=dict(metadata or {}))
        return self._call(self._stub.CreateDataset, request).dataset

    def get_dataset(self, dataset_id: str, include_versions: bool = False) -> pb.GetDatasetResponse:
        """``GetDataset``: the dataset (with its versions when ``include_versions``)."""
        return self._call(self._stub.GetDataset, pb.GetDatasetRequest(id=dataset_id, include_versions=include_versions))

    def list_datasets(self, topic_id: str = "", status: str = "", tags: Iterable[str] = (),
                      page_size: int = 100) -> list[pb.Dataset]:
        """Every dataset the caller may read (all pages)."""
        def page(token: str) -> pb.ListDatasetsResponse:
            return self._call(self._stub.ListDatasets, pb.ListDatasetsRequest(
                topic_id=topic_id, status=status, tags=list(tags),
                page=pb.PageRequest(page_size=page_size, page_token=token)))
        return _all_pages(page, lambda r: r.datasets)

    def update_dataset(self, dataset_id: str, description: str = "", tags: Iterable[str] = (),
                       metadata: Mapping[str, str] | None = None) -> pb.Dataset:
        """``UpdateDataset``: new description, tags and metadata; the updated dataset."""
        request = pb.UpdateDatasetRequest(id=dataset_id, description=description, tags=list(tags),
                                          metadata=dict(metadata or {}))
        return self._call(self._stub.UpdateDataset, request).dataset

    def delete_dataset(self, dataset_id: str) -> str:
        """``DeleteDataset``: delete it with its data; its id."""
        return self._call(self._stub.DeleteDataset, pb.DeleteDatasetRequest(id=dataset_id)).id

    # -- versions --------------------------------------------------------------------------------

    def create_version(self, dataset_id: str, version: str, message: str = "") -> pb.DatasetVersion:
        """``CreateVersion``: keep the dataset's current data as ``version`` (semver)."""
        request = pb.CreateVersionRequest(dataset_id=dataset_id, version=version, message=message)
        return self._call(self._stub.CreateVersion, request).version

    def get_version(self, dataset_id: str, version_id: str = "latest") -> pb.DatasetVersion:
        """``GetVersion``: one version of the dataset (``latest`` by default)."""
        request = pb.GetVersionRequest(dataset_id=dataset_id, version_id=version_id)
        return self._call(self._stub.GetVersion, request).version

    def list_versions(self, dataset_id: str, page_size: int = 100) -> list[pb.DatasetVersion]:
        """``ListVersions``: every version of the dataset (all pages)."""
        def page(token: str) -> pb.ListVersionsResponse:
            return self._call(self._stub.ListVersions, pb.ListVersionsRequest(
                dataset_id=dataset_id, page=pb.PageRequest(page_size=page_size, page_token=token)))
        return _all_pages(page, lambda r: r.versions)

    # -- content ---------------------------------------------------------------------------------

    def upload(self, dataset_id: str, content: bytes, content_type: str, version: str = "") -> pb.UploadContentResponse:
        """Write ``content`` (a tar of datapoint files, ``application/x-tar``, or JSON Lines,
        ``application/x-ndjson``) as one datarange; snapshot ``version`` if given. Its SHA-256 and
        size travel along: a corrupted or cut stream is DATA_LOSS and writes nothing."""
        def messages() -> Iterator[pb.UploadContentRequest]:
            yield pb.UploadContentRequest(metadata=pb.UploadMetadata(
                dataset_id=dataset_id, version=version, content_type=content_type, total_size=len(content),
                expected_hash=hashlib.sha256(content).digest()))
            for start in range(0, len(content), PIECE):
                yield pb.UploadContentRequest(chunk=content[start:start + PIECE])
        return self._call(self._stub.UploadContent, messages())

    def download(self, dataset_id: str, version_id: str = "latest", offset: int = 0,
                 length: int = 0) -> tuple[pb.DownloadMetadata, bytes]:
        """A version's content (its containers end to end; ``offset``/``length`` for a part) and
        its metadata; a whole content is checked against the version's chunks and hash."""
        request = pb.DownloadContentRequest(dataset_id=dataset_id, version_id=version_id, offset=offset,
                                            length=length)
        try:
            stream = iter(self._stub.DownloadContent(request, metadata=self._metadata))
            head = next(stream)
            data = b"".join(message.chunk for message in stream)
        except grpc.RpcError as exc:
            raise _error(exc) from None
        if head.WhichOneof("data") != "metadata":
            raise GrpcError("DATA_LOSS", "DownloadContent did not start with its metadata")
        meta = head.metadata
        if offset == 0 and (length == 0 or length >= meta.total_size):
            self._check_content(meta, data)
        return meta, data

    def _check_content(self, meta: pb.DownloadMetadata, data: bytes) -> None:
        """A whole content against its version: the size, each container's SHA-256 (its chunk's
        hash) and the version's hash (SHA-256 of the containers' hex hashes, newline-joined)."""
        hashes, position = [], 0
        for chunk in self.list_chunks(meta.version_id):
            piece = data[position:position + chunk.size]
            if hashlib.sha256(piece).digest() != chunk.hash:
                raise GrpcError("DATA_LOSS", f"{meta.version_id}: chunk {chunk.index} does not hash to "
                                f"{chunk.hash.hex()}")
            hashes.append(chunk.hash.hex())
            position += chunk.size
        if position != len(data) or len(data) != meta.total_size:
            raise GrpcError("DATA_LOSS", f"{meta.version_id}: {len(data)} bytes, the version holds {meta.total_size}")
        if hashlib.sha256("\n".join(hashes).encode()).digest() != meta.content_hash:
            raise GrpcError("DATA_LOSS", f"{meta.version_id}: its chunks do not make the version's hash")

    def list_chunks(self, version_id: str) -> list[pb.ChunkInfo]:
        """``ListChunks``: the chunks of a version, in order."""
        return list(self._call(self._stub.ListChunks, pb.ListChunksRequest(version_id=version_id)).chunks)

    def get_chunk(self, version_id: str, index: int = 0, chunk_hash: str = "") -> pb.Chunk:
        """``GetChunk``: one chunk of a version, by ``index``, or by its SHA-256 when ``chunk_hash`` is given."""
        request = pb.GetChunkRequest(version_id=version_id, chunk_index=index, chunk_hash=chunk_hash)
        return self._call(self._stub.GetChunk, request).chunk

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc) from None


def _all_pages(page: Callable[[str], Any], items: Callable[[Any], Iterable[T]]) -> list[T]:
    out: list[T] = []
    token = ""
    while True:
        answer = page(token)
        out.extend(items(answer))
        token = answer.page_info.next_page_token
        if not token:
            return out


def _error(exc: grpc.RpcError) -> GrpcError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return GrpcError(code.name if code is not None else "UNKNOWN", details or "")
