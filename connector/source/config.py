"""Source configuration: validation against ``spec/source.json`` and the filesystem it names."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib.resources import files
from typing import Any

import fsspec

from connector.config import check_against
from connector.errors import ConfigError

#: Where Airbyte's platform puts the external ID for role_arn; used when the config gives none.
EXTERNAL_ID_ENV = "AWS_ASSUME_ROLE_EXTERNAL_ID"


@cache
def load_spec() -> dict[str, Any]:
    """The JSON Schema of the source configuration (``spec/source.json``)."""
    return json.loads((files("connector") / "spec" / "source.json").read_text("utf-8"))


@dataclass(frozen=True)
class CsvOptions:
    delimiter: str = ","
    has_header: bool = True
    skip_rows: int = 0
    quote_character: str = '"'


@dataclass(frozen=True)
class ExcelOptions:
    #: The sheet read from each workbook; None: the first.
    sheet_name: str | None = None


@dataclass(frozen=True)
class AvroOptions:
    #: Float and double values as strings (Airbyte's option of the same name).
    double_as_string: bool = False


#: Airbyte's ``streams[].format.filetype`` -> our format name.
FILETYPES = {"csv": "csv", "jsonl": "json", "parquet": "parquet", "avro": "avro", "excel": "excel"}


@dataclass(frozen=True)
class StreamGlobs:
    name: str
    globs: tuple[str, ...]
    #: Only files of this format belong to the stream (Airbyte's ``format.filetype``); None: any.
    format: str | None = None
    #: Avro options of this stream (``format.double_as_string``); None: the top-level ``avro``.
    avro: AvroOptions | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StreamGlobs:
        spec = raw.get("format") or {}
        avro = AvroOptions(spec["double_as_string"]) if "double_as_string" in spec else None
        if avro is not None and spec.get("filetype") != "avro":
            raise ConfigError(f"config field 'streams.format.double_as_string' (stream {raw['name']!r}) "
                              "applies to filetype 'avro' only")
        return cls(raw["name"], tuple(raw["globs"]), FILETYPES.get(spec.get("filetype", "")), avro)


@dataclass(frozen=True)
class SourceConfig:
    """A validated configuration, with defaults filled in."""

    root_url: str | None = None
    bucket_name: str | None = None
    region: str | None = None
    path_prefix: str = ""
    endpoint: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    sts_endpoint: str | None = None
    anonymous: bool = False
    file_format: str = "auto"
    max_threads: int = 10
    retry_count: int = 3
    request_timeout: float | None = None
    csv: CsvOptions = CsvOptions()
    excel: ExcelOptions = ExcelOptions()
    avro: AvroOptions = AvroOptions()
    stream_depth: int = 1
    streams: tuple[StreamGlobs, ...] = ()
    start_date: datetime | None = None
    schema_sample_rows: int = 1000
    on_bad_record: str = "fail"
    batch_size: int = 65536
    #: How far before the cursor a file that appears late is still read (see connector.source.state).
    lookback_window: timedelta = timedelta(days=3)

    @classmethod
    def from_dict(cls, raw: Any) -> SourceConfig:
        """Validate ``raw`` against the spec; :class:`ConfigError` names the first bad field."""
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a JSON object, not {type(raw).__name__}")
        check_against(load_spec(), raw, formats=True)
        has_root, has_bucket = "root_url" in raw, "bucket_name" in raw
        if has_root == has_bucket:
            raise ConfigError("config: give exactly one of 'root_url' or 'bucket_name'")
        if ("access_key_id" in raw) != ("secret_access_key" in raw):
            raise ConfigError("config fields 'access_key_id' and 'secret_access_key' go together: give both or neither")
        _check_access(raw)
        start = _parse_time(raw["start_date"], "start_date") if "start_date" in raw else None
        return cls(
            root_url=raw.get("root_url"),
            bucket_name=raw.get("bucket_name"),
            region=raw.get("region"),
            path_prefix=raw.get("path_prefix", ""),
            endpoint=raw.get("endpoint"),
            access_key_id=raw.get("access_key_id"),
            secret_access_key=raw.get("secret_access_key"),
            session_token=raw.get("session_token"),
            role_arn=raw.get("role_arn"),
            external_id=raw.get("external_id"),
            sts_endpoint=raw.get("sts_endpoint"),
            anonymous=raw.get("anonymous", False),
            file_format=raw.get("file_format", "auto"),
            max_threads=raw.get("max_threads", 10),
            retry_count=raw.get("retry_count", 3),
            request_timeout=raw.get("request_timeout"),
            csv=CsvOptions(**raw.get("csv", {})),
            excel=ExcelOptions(**raw.get("excel", {})),
            avro=AvroOptions(**raw.get("avro", {})),
            stream_depth=raw.get("stream_depth", 1),
            streams=tuple(StreamGlobs.from_dict(s) for s in raw.get("streams", ())),
            start_date=start,
            schema_sample_rows=raw.get("schema_sample_rows", 1000),
            on_bad_record=raw.get("on_bad_record", "fail"),
            batch_size=raw.get("batch_size", 65536),
            lookback_window=timedelta(days=raw.get("lookback_window_days", 3)),
        )

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec filesystem and the root path (no protocol) that streams live under."""
        s3_options = self._s3_options()
        if self.bucket_name is not None:
            fs = literal_s3_filesystem(**s3_options)
            root = f"{self.bucket_name}/{self.path_prefix.strip('/')}".rstrip("/")
            return fs, root
        assert self.root_url is not None
        if self.root_url.startswith(("s3://", "s3a://")):
            fs = literal_s3_filesystem(**s3_options)
            root = fs._strip_protocol(self.root_url)
        else:
            try:
                fs, root = fsspec.core.url_to_fs(self.root_url)
            except (ValueError, ImportError) as exc:
                raise ConfigError(f"config field 'root_url': cannot open {self.root_url!r}: {exc}") from None
        if self.path_prefix.strip("/"):
            root = f"{root.rstrip('/')}/{self.path_prefix.strip('/')}"
        return fs, root.rstrip("/") or root

    def _s3_options(self) -> dict[str, Any]:
        # Fresh instance and no listing cache: incremental state depends on seeing current listings.
        options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
        client_kwargs: dict[str, Any] = {}
        if self.endpoint:
            client_kwargs["endpoint_url"] = self.endpoint
        if self.region:
            client_kwargs["region_name"] = self.region
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        # Retries are bounded by retry_count at two levels only: each request (botocore, standard
        # mode: backoff and a retry quota) and each file or listing (connector.source.retry, which
        # resumes a file where it broke). s3fs's own third layer is switched off (_single_attempt),
        # or attempts would multiply and a dead endpoint would take many minutes to report.
        config_kwargs: dict[str, Any] = {"retries": {"mode": "standard", "total_max_attempts": self.retry_count + 1}}
        if self.request_timeout is not None:
            config_kwargs["connect_timeout"] = config_kwargs["read_timeout"] = self.request_timeout
        # botocore pools 10 connections per client: more GETs than that only queue, so files mode
        # (one GET per object) could never overlap more than 10 whatever max_threads said.
        config_kwargs["max_pool_connections"] = max(10, self.max_threads)
        options["config_kwargs"] = config_kwargs
        if self.anonymous:
            options["anon"] = True  # unsigned requests: public buckets
        elif self.role_arn is not None:
            from connector.source.credentials import assumed_role_session

            # STS at the S3 endpoint by default: MinIO and LocalStack serve both on one port.
            options["session"] = assumed_role_session(
                self.role_arn, external_id=self.external_id or os.environ.get(EXTERNAL_ID_ENV) or None,
                key=self.access_key_id,
                secret=self.secret_access_key, token=self.session_token, region=self.region,
                sts_endpoint=self.sts_endpoint or self.endpoint, retries=self.retry_count)
        elif self.access_key_id is not None:
            options["key"] = self.access_key_id
            options["secret"] = self.secret_access_key
            if self.session_token is not None:
                options["token"] = self.session_token
        return options


def _check_access(raw: dict[str, Any]) -> None:
    """The credential fields that only make sense together (the spec checks each one alone)."""
    if "session_token" in raw and "access_key_id" not in raw:
        raise ConfigError("config field 'session_token' goes with 'access_key_id' and 'secret_access_key' "
                          "(temporary credentials are all three)")
    for name in ("external_id", "sts_endpoint"):
        if name in raw and "role_arn" not in raw:
            raise ConfigError(f"config field {name!r} needs 'role_arn' (it only applies to assuming a role)")
    if raw.get("anonymous"):
        given = [name for name in ("access_key_id", "session_token", "role_arn") if name in raw]
        if given:
            raise ConfigError(f"config field 'anonymous': unsigned access cannot be combined with {given[0]!r}")


@cache
def _literal_s3_class() -> type:
    import s3fs

    class LiteralKeyS3FileSystem(s3fs.S3FileSystem):
        """s3fs taking every key literally: s3fs cuts ``?versionId=...`` off a path and opens the
        object named by what is left (another object, or none), so a key containing it was read
        wrong or not at all. We list and read current objects only, never versions."""

        def split_path(self, path: str) -> tuple[str, str, None]:
            trail = path[len(path.rstrip("/")):]
            path = self._strip_protocol(path).lstrip("/")
            if "/" not in path:
                return path, "", None
            bucket, key = self._find_bucket_key(path)
            return bucket, key + trail, None

    return LiteralKeyS3FileSystem


def literal_s3_filesystem(**options: Any) -> fsspec.AbstractFileSystem:
    """An s3fs filesystem that opens keys literally, one s3fs-level attempt per call."""
    fs = _literal_s3_class()(**options)
    _single_attempt(fs)
    return fs


def is_s3fs(fs: fsspec.AbstractFileSystem) -> bool:
    """An s3fs filesystem, ours (:func:`literal_s3_filesystem`) included."""
    return any(cls.__module__.startswith("s3fs") for cls in type(fs).__mro__)


def _single_attempt(fs: fsspec.AbstractFileSystem) -> None:
    """One s3fs-level attempt per call (see ``_s3_options``); other filesystems are left alone."""
    if is_s3fs(fs):
        fs.retries = 1  # an instance attribute (s3fs reads self.retries), not a constructor option


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"config field {name!r}: {value!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is a valid date-time before year 1 in UTC
        raise ConfigError(f"config field {name!r}: {value!r} is out of range once converted to UTC") from None
