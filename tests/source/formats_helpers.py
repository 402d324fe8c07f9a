"""Helpers for the Avro / Excel / zip tests: the fixture root, uploading it, records as Airbyte
would see them (RECORD lines validated against the stream's json_schema)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema

from connector.source import FileBatch, Source
from connector.records import record_lines
from tests.source.helpers import put, s3_config

ROOT = Path(__file__).resolve().parents[2]
#: The bundled testdata, whose avro/, excel/ and zipped/ streams are the fixtures of these tests.
FORMATS = ROOT / "testdata"
#: Every stream of the bundled testdata, in the order discover lists them.
STREAMS = ["avro", "events", "excel", "orders", "users", "zipped"]
#: Every format check but "time": a time of day has no offset (airbyte_type time_without_timezone),
#: which RFC 3339's full-time, and so jsonschema's check, would want.
CHECKER = jsonschema.FormatChecker([f for f in jsonschema.Draft7Validator.FORMAT_CHECKER.checkers if f != "time"])


def upload_formats(endpoint, bucket: str, prefix: str = "") -> None:
    """Every data file of testdata/ to ``bucket`` (same keys under ``prefix``)."""
    put(endpoint, bucket, {prefix + p.relative_to(FORMATS).as_posix(): p.read_bytes()
                           for p in sorted(FORMATS.glob("*/*")) if p.is_file() and p.parent.name != "__pycache__"})


def source_for(where: str, endpoint=None, bucket: str | None = None, **extra) -> Source:
    """The bundled testdata read locally (``where == "local"``) or from the S3 test server."""
    if where == "local":
        return Source({"root_url": str(FORMATS), **extra})
    upload_formats(endpoint, bucket)
    return Source(s3_config(endpoint, bucket, **extra))


def validated_records(source: Source, stream: str, state=None) -> list[dict]:
    """Every record of ``stream`` as the JSON an Airbyte destination receives (numbers parsed as
    Decimal, so exactness is checked), each validated against the discovered json_schema."""
    schema = source.airbyte_stream(stream)["json_schema"]
    validator = jsonschema.Draft7Validator(schema, format_checker=CHECKER)
    rows = []
    for event in source.read(stream, state):
        if isinstance(event, FileBatch):
            for line in record_lines(stream, event.batch, 0).splitlines():
                data = json.loads(line, parse_float=Decimal)["record"]["data"]
                errors = list(validator.iter_errors(json.loads(line)["record"]["data"]))
                assert not errors, (data, errors[0].message)
                rows.append(data)
    return rows
