"""Destination configuration: validated against ``spec/destination.json``, turned into a Store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from connector.config import check_against
from connector.errors import ConfigError
from connector.storage import S3Access, is_s3_url, s3_options
from connector.store import Store
from connector.store.layout import validate_dataset_name
from connector.store.errors import InvalidName


SYNC_MODES = ("append", "overwrite", "append_dedup")


@dataclass(frozen=True)
class StreamPlan:
    """How one configured stream is written: its sync mode and its Airbyte generation fields.

    ``truncate``: data of older generations goes once the sync succeeds (``overwrite``, or a refresh
    whose ``minimum_generation_id`` is its ``generation_id``); otherwise everything is kept (append,
    or a refresh that retains data: ``minimum_generation_id`` 0)."""

    mode: str
    generation_id: int | None
    minimum_generation_id: int | None
    sync_id: int | None
    primary_key: tuple[str, ...] = ()  # append_dedup: top-level fields
    cursor_field: str | None = None  # append_dedup: a top-level cursor field, if the catalog names one

    @property
    def truncate(self) -> bool:
        """Whether the stream's earlier data is replaced (overwrite mode, or a refresh that drops
        older generations)."""
        return self.mode == "overwrite" or bool(self.minimum_generation_id)

    @classmethod
    def from_entry(cls, stream: str, entry: dict[str, Any]) -> StreamPlan:
        """The plan of a configured catalog entry; :class:`ConfigError` names the stream and field."""
        mode = entry.get("destination_sync_mode", "append")
        if mode not in SYNC_MODES:
            raise ConfigError(f"stream {stream!r}: destination_sync_mode {mode!r} is not supported; "
                              f"use one of {', '.join(SYNC_MODES)}")
        key = _primary_key(stream, entry) if mode == "append_dedup" else ()
        cursor = _cursor_field(entry) if mode == "append_dedup" else None
        fields = {}
        for name in ("generation_id", "minimum_generation_id", "sync_id"):
            value = entry.get(name)
            if value is not None and (type(value) is not int or value < 0):
                raise ConfigError(f"stream {stream!r}: {name} must be a whole number >= 0, not {value!r}")
            fields[name] = value
        gen, minimum = fields["generation_id"], fields["minimum_generation_id"]
        if minimum not in (None, 0) and minimum != gen:
            # Airbyte sends 0 (keep every generation) or generation_id (keep only this one).
            raise ConfigError(f"stream {stream!r}: minimum_generation_id {minimum} must be 0 or the "
                              f"generation_id ({gen})")
        return cls(mode, gen, minimum, fields["sync_id"], key, cursor)


def _cursor_field(entry: dict[str, Any]) -> str | None:
    """The configured ``cursor_field`` (else the source's ``default_cursor_field``) when it is one
    top-level field; compaction (``connector.store.compaction``) orders records by it."""
    path = entry.get("cursor_field") or (entry.get("stream") or {}).get("default_cursor_field")
    return path[0] if isinstance(path, list) and len(path) == 1 and isinstance(path[0], str) else None


def _primary_key(stream: str, entry: dict[str, Any]) -> tuple[str, ...]:
    """The top-level fields of an append_dedup stream's primary key: the configured ``primary_key``,
    else the source's ``source_defined_primary_key``."""
    paths = entry.get("primary_key") or (entry.get("stream") or {}).get("source_defined_primary_key")
    if not paths:
        raise ConfigError(f"stream {stream!r}: destination_sync_mode 'append_dedup' needs a primary_key "
                          f"(none configured and none defined by the source)")
    if not isinstance(paths, list) or not all(isinstance(p, list) and p and all(isinstance(x, str) for x in p)
                                              for p in paths):
        raise ConfigError(f"stream {stream!r}: primary_key must be a list of field paths (lists of names), "
                          f"not {paths!r}")
    nested = [p for p in paths if len(p) > 1]
    if nested:
        raise ConfigError(f"stream {stream!r}: primary_key path {nested[0]!r} is nested; only top-level "
                          f"fields are supported")
    return tuple(p[0] for p in paths)


def load_spec() -> dict[str, Any]:
    """The JSON Schema of the destination configuration."""
    return json.loads((files("connector") / "spec" / "destination.json").read_text("utf-8"))


@dataclass(frozen=True)
class DestinationConfig:
    """A validated destination config (see ``spec/destination.json``)."""

    root_url: str
    storage_options: dict[str, Any]
    catalog_path: str | None
    dataset_name: str
    max_datapoints: int
    max_bytes: int
    flush_seconds: float
    compression: str | None = None

    @classmethod
    def from_dict(cls, raw: Any) -> DestinationConfig:
        """Validate ``raw``; :class:`ConfigError` names the first bad field (never a secret's value)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a JSON object, not {type(raw).__name__}")
        check_against(load_spec(), raw)
        if ("root_url" in raw) == ("bucket_name" in raw):
            raise ConfigError("config: give exactly one of 'root_url' or 'bucket_name'")
        if ("access_key_id" in raw) != ("secret_access_key" in raw):
            raise ConfigError("config fields 'access_key_id' and 'secret_access_key' go together: give both or neither")
        template = raw.get("dataset_name", "{stream}")
        try:
            template.format(stream="s", namespace="n")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"config field 'dataset_name': bad template {template!r} ({exc})") from None
        options: dict[str, Any] = {}
        if "bucket_name" in raw:
            root = f"s3://{raw['bucket_name']}/{raw.get('path_prefix', '').strip('/')}".rstrip("/")
        else:
            root = raw["root_url"]
        if is_s3_url(root):
            # Bounded retries by the storage policy; the Store opens it with s3fs's own layer off.
            options = s3_options(S3Access(endpoint=raw.get("endpoint"), region=raw.get("region"),
                                          key=raw.get("access_key_id"), secret=raw.get("secret_access_key"),
                                          retry_count=raw.get("retry_count", 3),
                                          request_timeout=raw.get("request_timeout")))
        codec = raw.get("compression", "none")
        return cls(root, options, raw.get("catalog_path"), template, raw.get("max_datapoints", 100_000),
                   raw.get("max_bytes", 256 * 1024 * 1024), float(raw.get("flush_seconds", 10)),
                   None if codec == "none" else codec)

    def open_store(self) -> Store:
        """The configured :class:`Store` (a storage failure while opening it propagates)."""
        try:
            store = Store(self.root_url, self.catalog_path, storage_options=self.storage_options,
                          max_datapoints=self.max_datapoints, max_bytes=self.max_bytes, compression=self.compression)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"config field 'root_url': cannot open {self.root_url!r}: {exc}") from None
        return store

    def dataset_for(self, stream: str, namespace: str | None) -> str:
        """The dataset of ``stream`` (``dataset_name`` filled with the stream and namespace);
        :class:`ConfigError` if that is not a valid dataset name."""
        name = self.dataset_name.format(stream=stream, namespace=namespace or "")
        try:
            return validate_dataset_name(name)
        except InvalidName as exc:
            raise ConfigError(f"stream {stream!r}: dataset name from 'dataset_name' is invalid: {exc}") from None
