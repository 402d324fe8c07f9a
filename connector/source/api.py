"""The Python API of the file source: :class:`Source`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import pyarrow as pa

from connector.errors import ConfigError
from connector.source import catalog_schema, declared, formats
from connector.source.config import SourceConfig, StreamGlobs
from connector.source.errors import (BadDataError, FileChangedError, FileVanishedError, RootNotFoundError, SourceError,
                                     TransientError)
from connector.source.formats import FormatOptions
from connector.source.infer import json_schema, merge_schemas, or_text
from connector.source.listing import FileRef, group_streams, list_files, no_streams_hint
from connector.source.read import ROW_COLUMN, FileBatch, FileDone, read_files, reserved_renames
from connector.source.retry import BASE_DELAY, call_with_retry
from connector.source.state import CURSOR_FIELD, StreamState
from connector.source.transfer import FILE_SCHEMA, StagedFile, stage_files, staging_directory
from connector.source.validate import Column, Validation
from connector.storage import describe, is_library_error

log = logging.getLogger("connector.source")

#: Columns added to every record.
META_FIELDS = pa.schema([pa.field(CURSOR_FIELD, pa.timestamp("us", tz="UTC")), pa.field("_file", pa.string())])
#: Files whose samples make a stream's schema: the oldest, and the newest few.
SAMPLE_NEWEST = 2

SyncMode = str  # "incremental" | "full_refresh"


class Source:
    """CSV/JSON/Parquet files under a root (S3 or any fsspec URL), grouped into streams.

    >>> src = Source({"root_url": "testdata"})          # doctest: +SKIP
    >>> for event in src.read("users"):                 # doctest: +SKIP
    ...     ...

    ``config`` is validated against ``spec/source.json`` (:class:`ConfigError` names the field).
    ``fs`` overrides the filesystem the config would build (the root path is still taken from the
    config); useful to add caching or instrumentation.
    """

    def __init__(self, config: Mapping[str, Any], *, fs: fsspec.AbstractFileSystem | None = None,
                 retry_base_delay: float = BASE_DELAY) -> None:
        self.config = SourceConfig.from_dict(dict(config) if isinstance(config, Mapping) else config)
        built_fs, self.root = self.config.filesystem() if fs is None else (fs, self._root_for(fs))
        self.fs: fsspec.AbstractFileSystem = built_fs
        csv_given = config.get("csv") if isinstance(config, Mapping) else None
        self.options = FormatOptions(csv=self.config.csv, on_bad_record=self.config.on_bad_record,
                                     batch_size=self.config.batch_size, excel=self.config.excel,
                                     avro=self.config.avro,
                                     delimiter_given=isinstance(csv_given, Mapping) and "delimiter" in csv_given)
        self._retry_base = retry_base_delay
        self._schemas: dict[tuple[str, tuple[Any, ...]], pa.Schema] = {}

    def _root_for(self, fs: fsspec.AbstractFileSystem) -> str:
        c = self.config
        base = c.root_url if c.root_url is not None else f"{c.bucket_name}/"
        root = fs._strip_protocol(base).rstrip("/")
        prefix = c.path_prefix.strip("/")
        return f"{root}/{prefix}" if prefix else root

    # -- listing ---------------------------------------------------------------------------------

    def _list(self) -> dict[str, list[FileRef]]:
        """Stream -> files; :class:`SourceError` when the root (bucket, folder, prefix) does not exist."""
        refs = self._list_files()
        if not refs:
            missing = self._missing_root()
            if missing:
                raise RootNotFoundError(f"{missing} does not exist (or these credentials cannot see it)")
        return group_streams(refs, self.config, self.root)

    def _list_files(self) -> list[FileRef]:
        def attempt() -> list[FileRef]:
            # A filesystem given by the caller may cache listings (fsspec's dircache): state
            # decisions need what is there now, or new and late files would be missed.
            self.fs.invalidate_cache(self.root)
            return list_files(self.fs, self.root, self.config)

        try:
            return call_with_retry(attempt, self.config.retry_count, self._retry_base)
        except (PermissionError, OSError) as exc:
            raise SourceError(f"cannot list {self._where()}: {describe(exc)}") from exc
        except Exception as exc:  # botocore's NoCredentialsError and friends are not OSErrors
            if is_library_error(exc):
                raise SourceError(f"cannot list {self._where()}: {describe(exc)}") from exc
            raise

    def _missing_root(self) -> str | None:
        """The bucket or folder of the root that does not exist, if any (to say so, not "no files")."""
        try:
            if "s3" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)):
                bucket = self.root.split("/", 1)[0]
                if not self.fs.exists(bucket):
                    return f"bucket {bucket!r}"
            if not self.fs.exists(self.root):
                return self._where()
        except Exception:  # noqa: BLE001 - only refines the message; the listing error path reports failures
            return None
        return None

    def _where(self) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.root}"

    def streams(self) -> list[str]:
        """Stream names, sorted: folders at ``stream_depth`` (or configured streams) holding data files."""
        return list(self._list())

    def listing(self) -> dict[str, list[FileRef]]:
        """Every stream's files, listed now (one listing of the root): pass a stream's list to
        :meth:`read` as ``files`` to read what was listed without listing again."""
        return self._list()

    def _stream_files(self, stream: str) -> list[FileRef]:
        grouped = self._list()
        if stream not in grouped:
            raise SourceError(f"stream {stream!r} not found under {self._where()} (streams: {', '.join(grouped) or 'none'})")
        return grouped[stream]

    def files(self, stream: str, state: Mapping[str, Any] | None = None) -> list[FileRef]:
        """Files of ``stream`` still pending after ``state``, sorted by (last_modified, key)."""
        return self.state(state).pending(self._stream_files(stream))

    def state(self, state: Mapping[str, Any] | None = None) -> StreamState:
        """``state`` (any accepted form, or None) with this config's look-back window."""
        return StreamState.from_dict(state, lookback=self.config.lookback_window)

    # -- schema ----------------------------------------------------------------------------------

    def schema(self, stream: str, files: list[FileRef] | None = None) -> pa.Schema:
        """The stream's Arrow schema (inferred columns + ``_last_modified_time`` + ``_file``; a
        source column of one of those names is renamed, see :func:`reserved_renames`)."""
        refs = files if files is not None else self._stream_files(stream)
        return self._full_schema(self._data_schema(stream, refs))

    def _full_schema(self, data: pa.Schema) -> pa.Schema:
        """``data`` with the source's own columns added (and a data column of one of their names renamed)."""
        renames = reserved_renames(data.names)
        data = pa.schema([f.with_name(renames.get(f.name, f.name)) for f in data])
        if self.config.row_column:
            data = data.append(pa.field(ROW_COLUMN, pa.int64()))
        return data.append(META_FIELDS.field(0)).append(META_FIELDS.field(1))

    def _data_schema(self, stream: str, refs: list[FileRef]) -> pa.Schema:
        own = self._stream_config(stream)
        if own is not None and own.input_schema is not None:
            return declared.arrow_schema(own.input_schema)  # declared: no file is opened
        if own is not None and own.schemaless:
            return pa.schema([])  # each file's columns as it gives them, no cast
        sample = list(dict.fromkeys(refs[:1] + refs[-SAMPLE_NEWEST:]))
        # Keyed by each sample's identity, not its name: an object rewritten under the same key
        # must be sampled again.
        key = (stream, tuple((r.key, r.last_modified, r.size, r.etag) for r in sample))
        if key in self._schemas:
            return self._schemas[key]
        schemas, errors = [], []
        for ref in sample:
            try:
                schemas.append(self._infer(ref, stream))
            except (FileVanishedError, FileChangedError) as exc:
                log.warning("%s (ignored for schema inference)", exc)
            except (BadDataError, TransientError) as exc:
                log.warning("schema inference: %s", exc)
                errors.append(exc)
        if not schemas and errors and self.config.on_bad_record == "fail":
            raise errors[0]
        merged = merge_schemas(schemas)
        # Columns only ever null in the sample: declare them text, the type anything can be read as.
        merged = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in merged])
        self._schemas[key] = merged
        return merged

    def _stream_config(self, stream: str | None) -> StreamGlobs | None:
        """The configured stream named ``stream`` (None: a folder stream, or none)."""
        return next((s for s in self.config.streams if s.name == stream), None)

    def _options(self, stream: str | None) -> FormatOptions:
        """The format options of ``stream``: the top-level ones, with its own Avro and CSV options if any."""
        own = self._stream_config(stream)
        options = self.options
        if own is not None and own.avro is not None:
            options = dataclasses.replace(options, avro=own.avro)
        if own is not None and own.csv is not None:
            options = dataclasses.replace(options, csv=own.csv,
                                          delimiter_given=options.delimiter_given or own.delimiter_given)
        return options

    def _infer(self, ref: FileRef, stream: str | None = None) -> pa.Schema:
        fmt = formats.get(ref.format)
        # Sampling tolerates bad rows: the read reports them (or skips them) with their line numbers.
        options = dataclasses.replace(self._options(stream), on_bad_record="skip")
        return call_with_retry(lambda: fmt.infer(self.fs, ref, options, self.config.schema_sample_rows),
                               self.config.retry_count, self._retry_base)

    def discover(self) -> list[dict[str, Any]]:
        """One Airbyte ``AirbyteStream`` dict per stream."""
        return [self.airbyte_stream(name, files) for name, files in self._list().items()]

    def airbyte_stream(self, name: str, files: list[FileRef] | None = None) -> dict[str, Any]:
        """The Airbyte stream object of ``name``: its JSON Schema (from ``files``, default: the
        stream's files), sync modes and cursor field. A schema inferred from the files carries the
        Arrow schema they are read as (:mod:`connector.source.catalog_schema`), which
        :meth:`catalog_schema` takes back from a configured catalog."""
        refs = files if files is not None else self._stream_files(name)
        stream = {
            "name": name,
            "json_schema": FILE_SCHEMA if self.config.file_transfer else self._json_schema(name, refs),
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": True,
            "default_cursor_field": [CURSOR_FIELD],
        }
        if self.config.file_transfer:
            stream["is_file_based"] = True
        return stream

    def _json_schema(self, stream: str, refs: list[FileRef]) -> dict[str, Any]:
        """The stream's ``json_schema``: declared (``input_schema``), schemaless, or inferred. Under
        emit_record a value that does not fit its column is kept as text, so the columns whose
        types may meet such a value (inferred from a sample, or declared) admit a string too."""
        own = self._stream_config(stream)
        meta = json_schema(self._meta_fields())["properties"]
        if own is not None and own.schemaless:
            return {**json_schema(pa.schema([])), "properties": {"data": {"type": "object"}, **meta}}
        keeps_text = own is None or own.validation_policy == "emit_record"
        if own is not None and own.input_schema is not None:
            renames = reserved_renames(list(own.input_schema))
            properties = {renames.get(k, k): (or_text(v) if keeps_text else v) for k, v in own.input_schema.items()}
            return {**json_schema(pa.schema([])), "properties": {**properties, **meta}}
        data = self._data_schema(stream, refs)
        return {**self._inferred_json_schema(stream, data), catalog_schema.KEYWORD: catalog_schema.encode(data)}

    def _inferred_json_schema(self, stream: str, data: pa.Schema) -> dict[str, Any]:
        """The ``json_schema`` of a stream whose files are read as ``data`` (inferred, not declared)."""
        own = self._stream_config(stream)
        keeps_text = own is None or own.validation_policy == "emit_record"
        meta = json_schema(self._meta_fields())["properties"]
        # Every format's types come from a sample of the files (even Parquet's: a later file may type
        # a column otherwise), so a column admits the text a value that does not fit is kept as.
        # Ours (_file, _last_modified_time, _row) always fit: they keep their exact types.
        inferred = json_schema(self._full_schema(data), text_fallback=keeps_text)
        inferred["properties"].update({k: v for k, v in meta.items() if k in inferred["properties"]})
        return inferred

    def catalog_schema(self, stream: str, stream_json_schema: Any) -> pa.Schema | None:
        """The Arrow schema discover declared for ``stream`` in ``stream_json_schema`` (a configured
        catalog's), for :meth:`read`'s ``schema``; None where there is none to take (a declared,
        schemaless or file-transfer stream, a catalog written by another discover) or where the
        catalog's columns are no longer the ones that schema declares (the catalog was edited, or
        the config's ``validation_policy`` changed): the read then samples the files. A deselected
        column is not a change. :class:`ConfigError` if the keyword holds no schema."""
        own = self._stream_config(stream)
        if self.config.file_transfer or (own is not None and (own.schemaless or own.input_schema is not None)):
            return None
        if not isinstance(stream_json_schema, Mapping) or catalog_schema.KEYWORD not in stream_json_schema:
            return None
        data = catalog_schema.decode(stream_json_schema[catalog_schema.KEYWORD], stream)
        expected = self._inferred_json_schema(stream, data)["properties"]
        given = stream_json_schema.get("properties")
        changed = [name for name, spec in given.items() if expected.get(name) != spec] if isinstance(given, Mapping) else ["properties"]
        if changed:
            log.warning("stream %r: the configured catalog's columns %s are not what its %s declares; sampling the "
                        "files for the schema instead (run discover again to keep the catalog and the read in step)",
                        stream, ", ".join(map(repr, changed[:5])) + (" ..." if len(changed) > 5 else ""),
                        catalog_schema.KEYWORD)
            return None
        return data

    def _meta_fields(self) -> pa.Schema:
        """The columns every record gets besides its data (``_row`` first, with ``row_column``)."""
        if self.config.row_column:
            return pa.schema([pa.field(ROW_COLUMN, pa.int64()), *META_FIELDS])
        return META_FIELDS

    def _rules(self, stream: str, data_schema: pa.Schema) -> Validation | None:
        """The stream's validation (None under emit_record, or schemaless: every record goes out)."""
        own = self._stream_config(stream)
        if own is None or own.schemaless or own.validation_policy == "emit_record":
            return None
        properties = own.input_schema if own.input_schema is not None else json_schema(data_schema)["properties"]
        return Validation.of(own.validation_policy, properties, self._options(stream).csv.booleans)

    @staticmethod
    def _declared_columns(own: StreamGlobs | None) -> dict[str, Column] | None:
        """Under emit_record, a declared stream's columns (a value of another type becomes text)."""
        if own is None or own.input_schema is None or own.validation_policy != "emit_record":
            return None
        return {name: Column.of(prop) for name, prop in own.input_schema.items()}

    @staticmethod
    def _inferred_columns(own: StreamGlobs | None, schema: pa.Schema) -> dict[str, Column] | None:
        """Under emit_record, an inferred stream's columns: a file whose column has a type discover
        did not declare (a later Parquet file with text in an integer column) gives it as text."""
        if own is not None and (own.schemaless or own.input_schema is not None or own.validation_policy != "emit_record"):
            return None
        return {field.name: Column.inferred(field.type) for field in schema}

    # -- check / read ----------------------------------------------------------------------------

    def check(self) -> None:
        """List the root and open one file; raises :class:`ConnectorError` saying what failed."""
        grouped = self._list()
        if not grouped:
            raise SourceError(self.no_streams_message())
        stream, files = list(grouped.items())[-1]
        if self.config.file_transfer:
            with formats.open_raw(self.fs, files[-1]) as f:  # files are copied, not parsed: readable is enough
                f.read(1)
            return
        self._infer(files[-1], stream)  # with that stream's options (its encoding, dialect...)

    def no_streams_message(self) -> str:
        """What to tell a user whose root holds no stream: where we looked and, if data files lie
        above ``stream_depth``, which depth would read them."""
        return (f"no data files found under {self._where()} (file_format={self.config.file_format}, "
                f"stream_depth={self.config.stream_depth})" + no_streams_hint(self._list_files(), self.config))

    def read(self, stream: str, state: Mapping[str, Any] | None = None, *, sync_mode: SyncMode = "incremental",
             files: list[FileRef] | None = None, schema: pa.Schema | None = None) -> Iterator[FileBatch | FileDone]:
        """Batches of every pending file of ``stream``, a :class:`FileDone` after each file.

        ``incremental`` skips files already covered by ``state``; ``full_refresh`` reads every file
        (the returned states then start from scratch). Batches carry every inferred column plus
        ``_last_modified_time`` and ``_file``. ``files``: the stream's files from :meth:`listing`
        (default: list them now). ``schema``: the data columns' types as discover declared them
        (:meth:`catalog_schema`); default: inferred from a sample of the files. Ignored for a
        stream whose config declares its schema or reads it schemaless.
        """
        if sync_mode not in ("incremental", "full_refresh"):
            raise ValueError(f"sync_mode must be 'incremental' or 'full_refresh', not {sync_mode!r}")
        if self.config.file_transfer:
            raise ConfigError("config field 'delivery_method': use_file_transfer copies files unchanged, it does not "
                              "parse them into records; use Source.stage (des-source read does)")
        all_files = files if files is not None else self._stream_files(stream)
        current = self.state(state if sync_mode == "incremental" else None)
        pending = current.pending(all_files)
        own = self._stream_config(stream)
        if schema is None or (own is not None and (own.schemaless or own.input_schema is not None)):
            schema = self._data_schema(stream, all_files) if pending else pa.schema([])
        return read_files(stream, self.fs, pending, schema, current, self._options(stream),
                          max_threads=self.config.max_threads, retries=self.config.retry_count,
                          retry_base=self._retry_base, validation=self._rules(stream, schema) if pending else None,
                          schemaless=own is not None and own.schemaless, declared=self._declared_columns(own),
                          inferred=self._inferred_columns(own, schema),
                          row_column=self.config.row_column)

    def stage(self, stream: str, state: Mapping[str, Any] | None = None, *, sync_mode: SyncMode = "incremental",
              directory: str | None = None, include_files: bool = True) -> Iterator[StagedFile | FileDone]:
        """``delivery_method: use_file_transfer``: each pending file of ``stream`` copied unchanged
        into ``directory`` (default: Airbyte's staging directory, see
        :func:`connector.source.transfer.staging_directory`) as a :class:`StagedFile`, a
        :class:`FileDone` after each. ``include_files=False``: the files' metadata only, nothing copied."""
        if sync_mode not in ("incremental", "full_refresh"):
            raise ValueError(f"sync_mode must be 'incremental' or 'full_refresh', not {sync_mode!r}")
        current = self.state(state if sync_mode == "incremental" else None)
        pending = current.pending(self._stream_files(stream))
        target = (directory or staging_directory()) if include_files else None
        return stage_files(stream, self.fs, pending, current, directory=target,
                           preserve_directories=self.config.preserve_directory_structure,
                           retries=self.config.retry_count, retry_base=self._retry_base)

