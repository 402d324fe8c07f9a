"""Datas3t's REST API over a real ``des serve`` (local root), through connector.client and curl."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.client import Datas3tClient, ServerError, datapoints_tar
from connector.serve import Limits, build_app
from connector.serve.openapi import document
from connector.store import Store

from .conftest import Principals, Server, raw_request, unique


def _tar_members(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def _untouched(client: Datas3tClient, name: str, next_key: int, ranges: int) -> None:
    """Nothing of a refused upload is visible."""
    assert client.get_dataset(name)["next_key"] == next_key
    assert len(client.dataranges(name)) == ranges


def test_dataset_crud(admin: Datas3tClient):
    name = unique()
    created = admin.create_dataset(name, description="sensor", tags=["b", "a"], metadata={"k": 1}, status="active")
    assert (created["id"], created["description"], created["tags"], created["metadata"], created["status"]) == \
        (name, "sensor", ["a", "b"], {"k": 1}, "active")
    assert name in [d["id"] for d in admin.list_datasets()]
    got = admin.get_dataset(name)
    assert got["stats"] == {"datapoints": 0, "bytes": 0, "dataranges": 0, "versions": 0}
    with pytest.raises(ServerError) as exists:
        admin.create_dataset(name)
    assert (exists.value.status, exists.value.code) == (409, "already_exists")
    assert admin.delete_dataset(name) == {"deleted": name}
    with pytest.raises(ServerError) as gone:
        admin.get_dataset(name)
    assert (gone.value.status, gone.value.code) == (404, "not_found")
    with pytest.raises(ServerError) as again:
        admin.delete_dataset(name)
    assert again.value.status == 404


def test_create_refuses_unknown_fields_and_bad_status(server: Server, admin: Datas3tClient, principals):
    name = unique()
    with pytest.raises(ServerError) as bad:
        admin.create_dataset(name, status="published")
    assert bad.value.status == 400 and "status" in bad.value.message
    out = subprocess.run(["curl", "-s", "-X", "PUT", "-H", f"Authorization: Bearer {principals.admin}",
                          "--data", '{"owner": "x"}', f"{server.url}/api/v1/datas3t/{name}"],
                         capture_output=True, check=True)
    assert json.loads(out.stdout)["error"] == {"code": "bad_json",
                                               "message": "unknown field 'owner' (allowed: description, tags, metadata, status)"}
    with pytest.raises(ServerError):
        admin.get_dataset(name)  # nothing was created


def test_tar_upload_list_download_round_trip(admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    first = {k: f"point {k}".encode() * (k + 1) for k in range(5)}
    second = {k: bytes(range(k % 256)) for k in range(5, 12)}
    up1 = admin.upload_tar(name, datapoints_tar(first, "bin"))
    up2 = admin.upload_tar(name, io.BytesIO(datapoints_tar(second, "png")))  # a file object: chunked body
    assert (up1["start"], up1["end"], up1["datapoints"], up1["kind"]) == (0, 4, 5, "files")
    assert (up2["start"], up2["end"], up2["datapoints"]) == (5, 11, 7)
    ranges = admin.dataranges(name)
    assert [(r["start"], r["end"]) for r in ranges] == [(0, 4), (5, 11)]
    assert all(r["object"].startswith(f"{name}/dataranges/") for r in ranges)
    got = _tar_members(admin.download_bytes(name, 3, 7))
    assert got == [(f"{k:020d}.{'bin' if k < 5 else 'png'}", {**first, **second}[k]) for k in range(3, 8)]
    assert admin.missing_ranges(name) == []
    merged = admin.aggregate(name, 0, 11)
    assert (merged["start"], merged["end"], merged["datapoints"]) == (0, 11, 12)
    assert [(r["start"], r["end"]) for r in admin.dataranges(name)] == [(0, 11)]
    assert _tar_members(admin.download_bytes(name, 0, 11)) == \
        [(f"{k:020d}.{'bin' if k < 5 else 'png'}", {**first, **second}[k]) for k in range(12)]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uploads=st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=6), min_size=1, max_size=4),
       data=st.data())
def test_any_datapoints_read_back_exactly(admin: Datas3tClient, uploads, data):
    name = unique()
    admin.create_dataset(name)
    stored: list[bytes] = []
    for points in uploads:
        admin.upload_tar(name, datapoints_tar({len(stored) + i: p for i, p in enumerate(points)}))
        stored += points
    start = data.draw(st.integers(0, len(stored) - 1))
    end = data.draw(st.integers(start, len(stored) - 1))
    assert [body for _, body in _tar_members(admin.download_bytes(name, start, end))] == stored[start:end + 1]


def test_json_lines_upload_keeps_values_exactly(admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    lines = [b'{"id": 1, "big": 123456789012345678901234567890, "f": 1.0, "e": 1e400}',
             b'{ "s" : "caf\\u00e9 \xc3\xa9", "n": null, "nested": {"a": [1, 2.50]} }']
    up = admin.upload_records(name, lines)
    assert (up["start"], up["end"], up["kind"]) == (0, 1, "records")
    assert admin.download_bytes(name, 0, 1) == (b'{"id":1,"big":123456789012345678901234567890,"f":1.0,"e":1e400}\n'
                                                b'{"s":"caf\\u00e9 \xc3\xa9","n":null,"nested":{"a":[1,2.50]}}\n')
    admin.upload_records(name, [{"id": 3}])
    assert admin.download_bytes(name, 1, 2, "jsonl").splitlines()[1] == b'{"id":3}'
    assert _tar_members(admin.download_bytes(name, 2, 2, "tar")) == [(f"{2:020d}.json", b'{"id":3}\n')]


@pytest.mark.parametrize(("lines", "why"), [
    ([b'{"a": 1}', b'{"a": '], "line 2 is not JSON"),
    ([b'{"a": 1}', b'[1, 2]'], "line 2 is not a JSON object"),
    ([b'{"a": 1, "a": 2}'], "line 1 holds the key 'a' twice"),
    ([b'{"a": "\xff"}'], "line 1 is not UTF-8"),
    ([b'{"a": NaN}'], "line 1 is not JSON"),
    ([b'{"a": 1}', b''], "line 2 is not JSON"),
    ([b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"], "line 1 is not JSON"),  # nested past the parser's limit
])
def test_bad_json_lines_write_nothing(admin: Datas3tClient, lines, why):
    name = unique()
    admin.create_dataset(name)
    admin.upload_records(name, [b'{"ok": 0}'])
    with pytest.raises(ServerError) as bad:
        admin.upload_records(name, lines)
    assert (bad.value.status, bad.value.code) == (400, "bad_record")
    assert why in bad.value.message
    _untouched(admin, name, 1, 1)


def _tar(members: list[tuple[str, bytes]], kind: bytes = tarfile.REGTYPE) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for member_name, body in members:
            info = tarfile.TarInfo(member_name)
            info.size, info.type = len(body), kind
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _k(key: int, ext: str = "bin") -> str:
    return f"{key:020d}.{ext}"


@pytest.mark.parametrize(("members", "status", "code"), [
    ([(_k(2), b"x"), (_k(4), b"y")], 400, "gap"),  # a gap inside the upload
    ([(_k(2), b"x"), (_k(3), b"y"), (_k(3), b"z")], 400, "order"),  # repeated
    ([(_k(2), b"x"), (_k(4), b"y"), (_k(3), b"z")], 400, "gap"),  # out of order
    ([(_k(1), b"x"), (_k(2), b"y")], 409, "overlap"),  # overlaps stored keys 0..1
    ([(_k(3), b"x")], 409, "gap"),  # would leave key 2 missing
    ([("2.bin", b"x")], 400, "bad_name"),
    ([(f"{2:019d}.bin", b"x")], 400, "bad_name"),
    ([(f"./{2:020d}.bin", b"x")], 400, "bad_name"),
    ([(f"{2:020d}", b"x")], 400, "bad_name"),  # no extension
    ([(f"{2:020d}.b/n", b"x")], 400, "bad_name"),
    ([(_k(2), b"x"), ("00000000000000000003.bin/", b"")], 400, "bad_name"),
    ([], 400, "empty_upload"),
])
def test_bad_tar_uploads_write_nothing(admin: Datas3tClient, members, status, code):
    name = unique()
    admin.create_dataset(name)
    admin.upload_tar(name, datapoints_tar({0: b"a", 1: b"b"}))
    with pytest.raises(ServerError) as bad:
        admin.upload_tar(name, _tar(members))
    assert (bad.value.status, bad.value.code) == (status, code), bad.value.message
    _untouched(admin, name, 2, 1)


def test_tar_with_links_or_folders_or_garbage_writes_nothing(admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    for body, code in [(_tar([(_k(0), b"")], tarfile.SYMTYPE), "bad_member"),
                       (_tar([(_k(0), b"")], tarfile.DIRTYPE), "bad_member"),
                       (b"this is not a tar archive at all" * 40, "bad_tar"),
                       (_tar([(_k(0), b"abc" * 300)])[:900], "bad_tar")]:  # cut inside the member's data
        with pytest.raises(ServerError) as bad:
            admin.upload_tar(name, body)
        assert (bad.value.status, bad.value.code) == (400, code), bad.value.message
        _untouched(admin, name, 0, 0)


def test_upload_needs_a_known_content_type_and_dataset(admin: Datas3tClient, server: Server, principals):
    name = unique()
    with pytest.raises(ServerError) as missing:
        admin.upload_tar(name, datapoints_tar({0: b"a"}))
    assert missing.value.status == 404
    admin.create_dataset(name)
    out = subprocess.run(["curl", "-s", "-X", "POST", "-H", f"Authorization: Bearer {principals.admin}",
                          "-H", "Content-Type: text/plain", "--data-binary", "x", f"{server.url}/api/v1/datas3t/{name}"],
                         capture_output=True, check=True)
    assert json.loads(out.stdout)["error"]["code"] == "unsupported_media_type"


def test_download_of_missing_keys_is_404_before_any_byte(admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    admin.upload_records(name, [{"i": i} for i in range(3)])
    for start, end in [(2, 3), (5, 9)]:
        with pytest.raises(ServerError) as missing:
            admin.download_bytes(name, start, end)
        assert (missing.value.status, missing.value.code) == (404, "missing")
        assert f"asked for {start}..{end}" in missing.value.message
    with pytest.raises(ServerError) as empty:
        admin.download_bytes(name, 2, 1)
    assert empty.value.status == 400
    with pytest.raises(ServerError) as fmt:
        admin.download_bytes(name, 0, 1, "csv")
    assert fmt.value.code == "bad_format"


def test_aggregate_refuses_gaps_and_cuts(admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    for i in range(3):
        admin.upload_records(name, [{"i": 2 * i}, {"i": 2 * i + 1}])
    with pytest.raises(ServerError) as cut:
        admin.aggregate(name, 1, 5)
    assert cut.value.status == 400 and "cuts datarange" in cut.value.message
    assert len(admin.dataranges(name)) == 3
    assert admin.aggregate(name, 0, 3)["datapoints"] == 4


def test_missing_ranges_of_a_store_that_lost_a_container(tmp_path):
    from .conftest import start_server

    root = tmp_path / "root"
    with Store(str(root), max_datapoints=2) as store:
        store.write_records("lost", [[{"i": 2 * i}, {"i": 2 * i + 1}] for i in range(3)])
        lost = store.dataranges("lost")[1]
        assert (lost.first, lost.last) == (2, 3)
        os.unlink(lost.url)
        store.restore()
    running = start_server(tmp_path, str(root), ["--no-auth"])
    try:
        client = running.client()
        assert client.missing_ranges("lost") == [(2, 3)]
        assert client.download_bytes("lost", 4, 5) == b'{"i":4}\n{"i":5}\n'
    finally:
        assert running.stop() == 0


def test_openapi_document_lists_every_route(admin: Datas3tClient, tmp_path):
    served = admin.openapi()
    assert served == json.loads(json.dumps(document()))
    with Store(str(tmp_path / "r")) as store:
        app = build_app(store, None, Limits())
        routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()  # type: ignore[union-attr]
                  if r.method != "HEAD"}
    documented = {(method, path) for path, ops in served["paths"].items() for method in ops if method != "parameters"}
    assert routes == documented


def test_openapi_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate

    validate(json.loads(json.dumps(document())))


def test_presigned_urls_need_an_object_store_root(admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    admin.upload_records(name, [{"a": 1}])
    with pytest.raises(ServerError) as local:
        admin.presigned(name, 0, 0)
    assert (local.value.status, local.value.code) == (400, "no_presign")
    with pytest.raises(ServerError) as expires:
        admin.presigned(name, 0, 0, expires=0)
    assert expires.value.code == "bad_expires"


def test_jsonl_of_a_range_holding_files_is_refused_before_the_first_byte(server: Server, principals: Principals):
    client = server.client(principals.admin)
    name = unique()
    client.create_dataset(name)
    client.upload_records(name, [{"a": 1}])
    client.upload_tar(name, datapoints_tar({1: b"file"}))
    status, _, answer = raw_request(server, "GET", f"/api/v1/datas3t/{name}/datarange/0/1?format=jsonl",
                                    principals.admin)
    assert (status, answer["error"]["code"]) == (409, "not_records")
    assert "keys 1..1 hold files" in answer["error"]["message"]
    assert client.download_bytes(name, 0, 0, "jsonl") == b'{"a":1}\n'


def test_a_download_cut_short_is_a_server_error(tmp_path):
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def answer_half() -> None:  # a stream that ends without its last chunk, as des serve's after an error
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")

    thread = threading.Thread(target=answer_half)
    thread.start()
    try:
        with pytest.raises(ServerError) as cut:
            Datas3tClient(f"http://127.0.0.1:{listener.getsockname()[1]}").download_bytes("d", 0, 9)
        assert cut.value.code == "incomplete" and "keys 0..9 was cut short" in cut.value.message
    finally:
        thread.join(10)
        listener.close()
