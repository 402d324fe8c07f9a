"""Helpers for the source tests: put objects on the test S3 server, build configs, drain reads."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from connector.source import FileBatch, FileDone, Source


def s3_config(endpoint, bucket: str, **extra) -> dict:
    """A bucket_name-style config for the moto server (credentials in the config, as a user would)."""
    return {
        "bucket_name": bucket,
        "region": endpoint.region,
        "endpoint": endpoint.endpoint_url,
        "access_key_id": endpoint.key,
        "secret_access_key": endpoint.secret,
        **extra,
    }


def put(endpoint, bucket: str, objects: dict[str, bytes]) -> None:
    client = endpoint.boto3_client()
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def compress(data: bytes, codec: str) -> bytes:
    if codec == "gz":
        return gzip.compress(data, mtime=0)
    if codec == "bz2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data)
    if codec == "zst":
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as out:
            out.write(data)
        return sink.getvalue().to_pybytes()
    raise ValueError(codec)


def write_local(root: Path, files: dict[str, bytes], mtime: datetime | None = None) -> None:
    """Write files under ``root``; ``mtime`` pins their modification time (same-second tests)."""
    for key, body in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        if mtime is not None:
            ts = mtime.replace(tzinfo=timezone.utc).timestamp() if mtime.tzinfo is None else mtime.timestamp()
            os.utime(path, (ts, ts))


def drain(source: Source, stream: str, state=None, sync_mode: str = "incremental"):
    """(rows as dicts in order, FileDone events) of a whole read."""
    rows, done = [], []
    for event in source.read(stream, state, sync_mode=sync_mode):
        if isinstance(event, FileBatch):
            rows.extend(event.batch.to_pylist())
        else:
            assert isinstance(event, FileDone)
            done.append(event)
    return rows, done
