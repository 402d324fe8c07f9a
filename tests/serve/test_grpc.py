"""DatasetService over gRPC (``des serve --grpc``) through the generated stub, over loopback."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import grpc
import pytest

from connector.client import datapoints_tar
from connector.grpcapi import dataset_service_pb2 as pb
from connector.grpcapi import dataset_service_pb2_grpc as rpc

from .conftest import Principals, Server, start_server, unique


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory, principals: Principals) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("grpc")
    running = start_server(tmp, str(tmp / "root"), ["--tokens", str(principals.path), "--grpc", "127.0.0.1:0",
                                                    "--max-upload-bytes", str(4 << 20)])
    address = next(e["address"] for e in running.events() if e["event"] == "listening_grpc")
    yield running, address
    assert running.stop() == 0, running.log.read_text()


@pytest.fixture
def channel(grpc_server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(grpc_server[1], options=[("grpc.max_receive_message_length", 8 << 20)]) as ch:
        yield ch


def stub(channel) -> rpc.DatasetServiceStub:
    return rpc.DatasetServiceStub(channel)


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _upload(service, token: str, dataset: str, content: bytes, content_type: str, version: str = "",
            expected_hash: bytes = b"", total_size: int = 0, piece: int = 1000):
    messages = [pb.UploadContentRequest(metadata=pb.UploadMetadata(
        dataset_id=dataset, version=version, content_type=content_type, total_size=total_size,
        expected_hash=expected_hash))]
    messages += [pb.UploadContentRequest(chunk=content[i:i + piece]) for i in range(0, len(content), piece)]
    return service.UploadContent(iter(messages), metadata=auth(token))


def test_crud_versions_content_and_chunks(channel, principals: Principals):
    service = stub(channel)
    name = unique()
    created = service.CreateDataset(pb.CreateDatasetRequest(topic_id="genome", name=name, description="seq",
                                                            tags=["2025", "genome"], metadata={"lab": "x"}),
                                    metadata=auth(principals.editor)).dataset
    assert (created.id, created.topic_id, created.status, list(created.tags), dict(created.metadata)) == \
        (name, "genome", "draft", ["2025", "genome"], {"lab": "x"})
    tar = datapoints_tar({0: b"a" * 3000, 1: b"b" * 10})
    done = _upload(service, principals.editor, name, tar, "application/x-tar", version="1.0.0",
                   expected_hash=hashlib.sha256(tar).digest(), total_size=len(tar))
    assert (done.version_id, done.bytes_received, done.chunks_stored) == (f"{name}@1.0.0", len(tar), 1)
    assert done.content_hash == hashlib.sha256(tar).digest()
    _upload(service, principals.editor, name, b'{"r": 1}\n{"r": 2}\n', "application/x-ndjson", version="1.1.0")
    got = service.GetDataset(pb.GetDatasetRequest(id=name, include_versions=True), metadata=auth(principals.reader))
    assert [v.version for v in got.versions] == ["1.0.0", "1.1.0"]
    assert got.dataset.latest_version.version == "1.1.0" and got.dataset.stats.datapoints == 4
    version = service.GetVersion(pb.GetVersionRequest(dataset_id=name, version_id="latest"),
                                 metadata=auth(principals.reader)).version
    assert (version.id, version.chunk_count) == (f"{name}@1.1.0", 2)
    # the content: the version's containers laid end to end; chunks are those containers
    chunks = service.ListChunks(pb.ListChunksRequest(version_id=version.id), metadata=auth(principals.reader)).chunks
    assert [c.index for c in chunks] == [0, 1] and sum(c.size for c in chunks) == version.size_bytes
    stream = list(service.DownloadContent(pb.DownloadContentRequest(dataset_id=name, version_id="1.1.0"),
                                          metadata=auth(principals.reader)))
    meta, data = stream[0].metadata, b"".join(m.chunk for m in stream[1:])
    assert (meta.total_size, meta.total_chunks, meta.content_hash) == (len(data), 2, version.content_hash)
    parts = [service.GetChunk(pb.GetChunkRequest(version_id=version.id, chunk_index=i),
                              metadata=auth(principals.reader)).chunk for i in (0, 1)]
    assert b"".join(p.data for p in parts) == data
    assert all(hashlib.sha256(p.data).digest() == p.hash == c.hash for p, c in zip(parts, chunks))
    by_hash = service.GetChunk(pb.GetChunkRequest(version_id=version.id, chunk_hash=chunks[1].hash.hex()),
                               metadata=auth(principals.reader)).chunk
    assert by_hash.index == 1
    # resume: offset and length
    resumed = list(service.DownloadContent(pb.DownloadContentRequest(dataset_id=name, version_id="latest",
                                                                     offset=100, length=2000),
                                           metadata=auth(principals.reader)))
    assert b"".join(m.chunk for m in resumed[1:]) == data[100:2100]
    # a version's content hash is the store's: SHA-256 over the ordered container hashes (hex, newline-joined)
    assert hashlib.sha256("\n".join(c.hash.hex() for c in chunks).encode()).digest() == version.content_hash
    updated = service.UpdateDataset(pb.UpdateDatasetRequest(id=name, description="sequences", tags=["x"]),
                                    metadata=auth(principals.admin)).dataset
    assert (updated.description, list(updated.tags)) == ("sequences", ["x"])
    listed = service.ListDatasets(pb.ListDatasetsRequest(topic_id="genome"), metadata=auth(principals.reader))
    assert [d.id for d in listed.datasets] == [name]
    assert service.DeleteDataset(pb.DeleteDatasetRequest(id=name), metadata=auth(principals.admin)).id == name
    with pytest.raises(grpc.RpcError) as gone:
        service.GetDataset(pb.GetDatasetRequest(id=name), metadata=auth(principals.admin))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_error_codes(channel, principals: Principals):
    service = stub(channel)
    name = unique()
    service.CreateDataset(pb.CreateDatasetRequest(name=name), metadata=auth(principals.admin))

    def code(call) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as failed:
            call()
        return failed.value.code()

    assert code(lambda: service.CreateDataset(pb.CreateDatasetRequest(name=name), metadata=auth(principals.admin))) \
        == grpc.StatusCode.ALREADY_EXISTS
    assert code(lambda: service.GetDataset(pb.GetDatasetRequest(id=name))) == grpc.StatusCode.UNAUTHENTICATED
    assert code(lambda: service.GetDataset(pb.GetDatasetRequest(id=name), metadata=auth("nope"))) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert code(lambda: service.GetDataset(pb.GetDatasetRequest(id=name), metadata=auth(principals.outsider))) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: service.DeleteDataset(pb.DeleteDatasetRequest(id=name), metadata=auth(principals.editor))) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: _upload(service, principals.reader, name, b'{"a": 1}\n', "application/x-ndjson")) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: service.GetDataset(pb.GetDatasetRequest(id="../x"), metadata=auth(principals.admin))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: service.CreateVersion(pb.CreateVersionRequest(dataset_id=name, version="v1"),
                                              metadata=auth(principals.admin))) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: service.GetVersion(pb.GetVersionRequest(dataset_id=name, version_id="9.9.9"),
                                           metadata=auth(principals.admin))) == grpc.StatusCode.NOT_FOUND
    lines = b'{"a": 1}\n'
    assert code(lambda: _upload(service, principals.admin, name, lines, "application/x-ndjson",
                                expected_hash=hashlib.sha256(b"other").digest())) == grpc.StatusCode.DATA_LOSS
    assert code(lambda: _upload(service, principals.admin, name, b'{"a": \n', "application/x-ndjson")) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: _upload(service, principals.admin, name, b"x" * (5 << 20), "application/x-ndjson",
                                piece=1 << 20)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code(lambda: service.UploadContent(iter([pb.UploadContentRequest(chunk=b"x")]),
                                              metadata=auth(principals.admin))) == grpc.StatusCode.INVALID_ARGUMENT
    # nothing of the refused uploads was written
    got = service.GetDataset(pb.GetDatasetRequest(id=name), metadata=auth(principals.admin)).dataset
    assert got.stats.datapoints == 0
    service.CreateVersion(pb.CreateVersionRequest(dataset_id=name, version="1.0.0"), metadata=auth(principals.admin))
    assert code(lambda: service.CreateVersion(pb.CreateVersionRequest(dataset_id=name, version="1.0.0"),
                                              metadata=auth(principals.admin))) == grpc.StatusCode.ALREADY_EXISTS
    assert code(lambda: service.CreateVersion(pb.CreateVersionRequest(dataset_id=name, version="1.1.0",
                                                                      content_hash=b"\0" * 32),
                                              metadata=auth(principals.admin))) == grpc.StatusCode.DATA_LOSS
    versions = service.ListVersions(pb.ListVersionsRequest(dataset_id=name), metadata=auth(principals.admin))
    assert [v.version for v in versions.versions] == ["1.0.0"]  # the mismatched one was not kept


def test_list_pages_and_visibility(channel, principals: Principals):
    service = stub(channel)
    names = sorted(unique() for _ in range(3))
    for n in names:
        service.CreateDataset(pb.CreateDatasetRequest(name=n, topic_id="paged"), metadata=auth(principals.admin))
    first = service.ListDatasets(pb.ListDatasetsRequest(topic_id="paged", page=pb.PageRequest(page_size=2)),
                                 metadata=auth(principals.reader))
    second = service.ListDatasets(pb.ListDatasetsRequest(topic_id="paged", page=pb.PageRequest(
        page_size=2, page_token=first.page_info.next_page_token)), metadata=auth(principals.reader))
    assert [d.id for d in first.datasets] + [d.id for d in second.datasets] == names
    assert second.page_info.next_page_token == "" and first.page_info.total_size == 3
    outsider = service.ListDatasets(pb.ListDatasetsRequest(topic_id="paged"), metadata=auth(principals.outsider))
    assert list(outsider.datasets) == []
    with pytest.raises(grpc.RpcError) as anonymous:
        service.ListDatasets(pb.ListDatasetsRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_generated_modules_match_the_proto():
    from pathlib import Path

    from connector.grpcapi.generate import PACKAGE_DIR, generate

    for name, text in generate().items():
        assert (Path(PACKAGE_DIR) / name).read_text() == text, f"{name} is stale: python -m connector.grpcapi.generate"



def _calls(name: str) -> list[tuple[str, object]]:
    """Every method with a request about dataset ``name`` (streams as iterators)."""
    version_id = f"{name}@1.0.0"
    return [
        ("CreateDataset", pb.CreateDatasetRequest(name=name + "-new")),
        ("GetDataset", pb.GetDatasetRequest(id=name)),
        ("UpdateDataset", pb.UpdateDatasetRequest(id=name, description="d")),
        ("DeleteDataset", pb.DeleteDatasetRequest(id=name)),
        ("CreateVersion", pb.CreateVersionRequest(dataset_id=name, version="2.0.0")),
        ("GetVersion", pb.GetVersionRequest(dataset_id=name, version_id="1.0.0")),
        ("ListVersions", pb.ListVersionsRequest(dataset_id=name)),
        ("UploadContent", [pb.UploadContentRequest(metadata=pb.UploadMetadata(
            dataset_id=name, content_type="application/x-ndjson")), pb.UploadContentRequest(chunk=b'{"a": 1}\n')]),
        ("DownloadContent", pb.DownloadContentRequest(dataset_id=name, version_id="1.0.0")),
        ("GetChunk", pb.GetChunkRequest(version_id=version_id)),
        ("ListChunks", pb.ListChunksRequest(version_id=version_id)),
    ]


@pytest.mark.parametrize("method", [m for m, _ in _calls("x")])
def test_every_method_authenticates_and_checks_the_role(channel, principals: Principals, method):
    service = stub(channel)
    name = unique()
    service.CreateDataset(pb.CreateDatasetRequest(name=name), metadata=auth(principals.admin))
    _upload(service, principals.admin, name, b'{"a": 0}\n', "application/x-ndjson", version="1.0.0")
    request = dict(_calls(name))[method]

    def call(metadata) -> grpc.StatusCode | None:
        message = iter(request) if isinstance(request, list) else request
        try:
            result = getattr(service, method)(message, metadata=metadata)
            if method == "DownloadContent":
                list(result)
        except grpc.RpcError as exc:
            return exc.code()
        return None

    assert call(None) == grpc.StatusCode.UNAUTHENTICATED
    assert call(auth("not-a-token")) == grpc.StatusCode.UNAUTHENTICATED
    # the reader of team-* may read; writes (editor) and owner calls are denied to it
    takes = {"CreateDataset": "editor", "UpdateDataset": "owner", "DeleteDataset": "owner",
             "CreateVersion": "editor", "UploadContent": "editor"}.get(method, "reader")
    assert call(auth(principals.outsider)) == grpc.StatusCode.PERMISSION_DENIED
    assert call(auth(principals.reader)) == (None if takes == "reader" else grpc.StatusCode.PERMISSION_DENIED)
    if takes == "editor":
        assert call(auth(principals.editor)) is None
    if takes == "owner":
        assert call(auth(principals.editor)) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("method", [m for m, _ in _calls("x")])
def test_every_method_checks_the_topic(channel, principals: Principals, method):
    service = stub(channel)
    name = unique("t-")
    service.CreateDataset(pb.CreateDatasetRequest(name=name, topic_id="alpha"), metadata=auth(principals.admin))
    _upload(service, principals.admin, name, b'{"a": 0}\n', "application/x-ndjson", version="1.0.0")
    request = dict(_calls(name))[method]
    if method == "CreateDataset":  # a create names the topic it creates in
        request = pb.CreateDatasetRequest(name=name + "-new", topic_id="alpha")

    def call(token: str) -> grpc.StatusCode | None:
        message = iter(request) if isinstance(request, list) else request
        try:
            result = getattr(service, method)(message, metadata=auth(token))
            if method == "DownloadContent":
                list(result)
        except grpc.RpcError as exc:
            return exc.code()
        return None

    takes = {"CreateDataset": "editor", "UpdateDataset": "owner", "DeleteDataset": "owner",
             "CreateVersion": "editor", "UploadContent": "editor"}.get(method, "reader")
    # beta's owner holds {'*': owner} by name, yet nothing outside its topic
    assert call(principals.beta_owner) == grpc.StatusCode.PERMISSION_DENIED
    assert call(principals.alpha_member) == (None if takes == "reader" else grpc.StatusCode.PERMISSION_DENIED)
    assert call(principals.alpha_editor) == (grpc.StatusCode.PERMISSION_DENIED if takes == "owner" else None)


def test_topics_bound_create_list_and_update(channel, principals: Principals):
    service = stub(channel)
    in_alpha, in_beta = unique("t-"), unique("t-")

    def code(call) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as failed:
            call()
        return failed.value.code()

    service.CreateDataset(pb.CreateDatasetRequest(name=in_alpha, topic_id="alpha"), metadata=auth(principals.alpha_editor))
    service.CreateDataset(pb.CreateDatasetRequest(name=in_beta, topic_id="beta"), metadata=auth(principals.beta_owner))
    for token, request in [(principals.alpha_editor, pb.CreateDatasetRequest(name=unique("t-"), topic_id="beta")),
                           (principals.alpha_editor, pb.CreateDatasetRequest(name=unique("t-"))),
                           (principals.alpha_member, pb.CreateDatasetRequest(name=unique("t-"), topic_id="alpha"))]:
        assert code(lambda r=request, t=token: service.CreateDataset(r, metadata=auth(t))) == \
            grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: service.CreateDataset(pb.CreateDatasetRequest(name=unique("t-"), metadata={"topic_id": "alpha"}),
                                              metadata=auth(principals.alpha_editor))) == grpc.StatusCode.INVALID_ARGUMENT
    # an owner cannot move its dataset into another topic
    assert code(lambda: service.UpdateDataset(pb.UpdateDatasetRequest(id=in_beta, metadata={"topic_id": "alpha"}),
                                              metadata=auth(principals.beta_owner))) == grpc.StatusCode.INVALID_ARGUMENT
    for token, mine, theirs in [(principals.alpha_member, in_alpha, in_beta), (principals.beta_owner, in_beta, in_alpha)]:
        listed = [d.id for d in service.ListDatasets(pb.ListDatasetsRequest(page=pb.PageRequest(page_size=1000)),
                                                     metadata=auth(token)).datasets]
        assert mine in listed and theirs not in listed
        assert not service.ListDatasets(pb.ListDatasetsRequest(topic_id="alpha" if mine == in_beta else "beta"),
                                        metadata=auth(token)).datasets
