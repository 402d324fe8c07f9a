"""connector.client.grpc_client.DatasetServiceClient against a real ``des serve --grpc``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from connector.client import Datas3tClient, datapoints_tar
from connector.client.grpc_client import DatasetServiceClient, GrpcError

from .conftest import Principals, Server, start_server, unique


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory, principals: Principals) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("grpc-client")
    running = start_server(tmp, str(tmp / "root"), ["--tokens", str(principals.path), "--grpc", "127.0.0.1:0",
                                                    "--max-upload-bytes", str(4 << 20)])
    yield running, next(e["address"] for e in running.events() if e["event"] == "listening_grpc")
    assert running.stop() == 0, running.log.read_text()


def test_the_client_round_trip(grpc_server, principals: Principals):
    server, address = grpc_server
    name = unique()
    with DatasetServiceClient(address, principals.alpha_editor) as editor, \
            DatasetServiceClient(address, principals.alpha_member) as member:
        made = editor.create_dataset(name, topic_id="alpha", description="seq", tags=["x"], metadata={"lab": "1"})
        assert (made.id, made.topic_id, made.status) == (name, "alpha", "draft")
        tar = datapoints_tar({0: bytes(range(256)) * 2000, 1: b""})  # larger than one upload chunk
        done = editor.upload(name, tar, "application/x-tar", version="1.0.0")
        assert (done.version_id, done.bytes_received, done.content_hash) == \
            (f"{name}@1.0.0", len(tar), hashlib.sha256(tar).digest())
        editor.upload(name, b'{"r": 1}\n', "application/x-ndjson")
        assert editor.create_version(name, "1.1.0", "two").chunk_count == 2
        assert [v.version for v in member.list_versions(name, page_size=1)] == ["1.0.0", "1.1.0"]
        assert member.get_version(name).version == "1.1.0"
        meta, content = member.download(name, "1.1.0")
        chunks = member.list_chunks(f"{name}@1.1.0")
        assert meta.total_size == len(content) == sum(c.size for c in chunks)
        assert b"".join(member.get_chunk(f"{name}@1.1.0", c.index).data for c in chunks) == content
        assert member.download(name, "latest", offset=10, length=100)[1] == content[10:110]
        # the same data through the REST API
        assert Datas3tClient(server.url, principals.alpha_member).download_bytes(name, 2, 2) == b'{"r":1}\n'
        got = member.get_dataset(name, include_versions=True)
        assert got.dataset.stats.datapoints == 3 and len(got.versions) == 2
        assert name in [d.id for d in member.list_datasets(topic_id="alpha", page_size=1)]
        with pytest.raises(GrpcError) as denied:
            member.delete_dataset(name)
        assert denied.value.code == "PERMISSION_DENIED" and "takes owner" in denied.value.message
        with pytest.raises(GrpcError) as exists:
            editor.create_dataset(name, topic_id="alpha")
        assert exists.value.code == "ALREADY_EXISTS"
    with DatasetServiceClient(address) as anonymous, pytest.raises(GrpcError) as unauthenticated:
        anonymous.get_dataset(name)
    assert unauthenticated.value.code == "UNAUTHENTICATED"
    # a container changed on disk under the server: the client's check of the whole content says so
    obj = Datas3tClient(server.url, principals.admin).dataranges(name)[0]["object"]
    path = server.log.parent / "root" / obj
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with DatasetServiceClient(address, principals.admin) as admin:
        with pytest.raises(GrpcError) as lost:
            admin.download(name, "1.1.0")
        assert lost.value.code == "DATA_LOSS" and "chunk 0 does not hash" in lost.value.message
        assert admin.update_dataset(name, description="sequences").description == "sequences"
        assert admin.delete_dataset(name) == name
        with pytest.raises(GrpcError) as gone:
            admin.get_dataset(name)
        assert gone.value.code == "NOT_FOUND"
