"""``des serve`` over an S3 root (moto's server over HTTP): the same API, objects in the bucket."""

from __future__ import annotations

import io
import json
import tarfile

from connector.client import datapoints_tar

from .conftest import start_server


def test_serve_an_s3_root(tmp_path, s3_endpoint, s3_bucket, s3):
    options = {k: v for k, v in s3_endpoint.storage_options().items() if k != "skip_instance_cache"}
    running = start_server(tmp_path, f"s3://{s3_bucket}/store", [
        "--no-auth", "--catalog", str(tmp_path / "catalog.sqlite"), "--storage-options", json.dumps(options)])
    try:
        client = running.client()
        client.create_dataset("images", tags=["s3"])
        client.upload_tar("images", datapoints_tar({0: b"\x89PNG 0", 1: b"\x89PNG 1"}, "png"))
        client.upload_tar("images", datapoints_tar({2: b"\x89PNG 2"}, "png"))
        client.create_dataset("rows")
        client.upload_records("rows", [{"n": 10**30}, {"n": 0.1}])
        ranges = client.dataranges("images")
        assert [(r["start"], r["end"]) for r in ranges] == [(0, 1), (2, 2)]
        assert all(s3.exists(f"{s3_bucket}/store/{r['object']}") for r in ranges)  # the objects are in the bucket
        with tarfile.open(fileobj=io.BytesIO(client.download_bytes("images", 1, 2))) as tar:
            assert [(m.name, tar.extractfile(m).read()) for m in tar] == [  # type: ignore[union-attr]
                (f"{1:020d}.png", b"\x89PNG 1"), (f"{2:020d}.png", b"\x89PNG 2")]
        assert client.download_bytes("rows", 0, 1) == b'{"n":1000000000000000000000000000000}\n{"n":0.1}\n'
        assert client.aggregate("images", 0, 2)["datapoints"] == 3
        assert client.missing_ranges("images") == []
        client.delete_dataset("rows")
        assert not s3.exists(f"{s3_bucket}/store/rows")
        assert [d["id"] for d in client.list_datasets()] == ["images"]
    finally:
        assert running.stop() == 0


def test_presigned_urls_and_byte_ranges_read_the_bucket_directly(tmp_path, s3_endpoint, s3_bucket):
    import urllib.request

    options = {k: v for k, v in s3_endpoint.storage_options().items() if k != "skip_instance_cache"}
    running = start_server(tmp_path, f"s3://{s3_bucket}/store", [
        "--no-auth", "--catalog", str(tmp_path / "catalog.sqlite"), "--storage-options", json.dumps(options)])
    try:
        client = running.client()
        client.create_dataset("mixed")
        client.upload_tar("mixed", datapoints_tar({0: b"zero", 1: b"one!", 2: bytes(range(256))}))
        client.upload_records("mixed", [{"k": 3}, {"k": 4}])
        answer = client.presigned("mixed", 1, 4, expires=600)
        assert answer["expires_in"] == 600 and [(r["start"], r["end"]) for r in answer["dataranges"]] == [(0, 2), (3, 4)]
        got = {}
        for container in answer["dataranges"]:
            assert "X-Amz-Signature=" in container["url"] or "Signature=" in container["url"]
            for point in container["datapoints"]:
                request = urllib.request.Request(container["url"], headers={
                    "Range": f"bytes={point['offset']}-{point['offset'] + point['length'] - 1}"})
                with urllib.request.urlopen(request, timeout=30) as response:  # no token: the URL is the grant
                    got[point["key"]] = response.read()
        assert got == {1: b"one!", 2: bytes(range(256)), 3: b'{"k":3}\n', 4: b'{"k":4}\n'}
    finally:
        assert running.stop() == 0
