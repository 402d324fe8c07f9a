"""``des-source``: the file source speaking the Airbyte protocol.

``des-source spec | check --config F | discover --config F | read --config F --catalog F [--state F]``

stdout carries Airbyte messages only, one JSON object per line (anything else a library might print
is sent to stderr). Problems become CONNECTION_STATUS FAILED (check) or a TRACE error (discover,
read) naming the config field, the stream or the file, never a traceback on stdout.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from connector.airbyte import messages
from connector.airbyte.entrypoint import EXIT_FAILURE, EXIT_OK, ArgParser, Output, exit_now, run
from connector.config import load_json_file
from connector.errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    import pyarrow as pa  # imported by ``read`` (through the source), not by ``spec``


def build_parser() -> argparse.ArgumentParser:
    """The ``des-source`` command line: ``spec``, ``check``, ``discover``, ``read``."""
    parser = ArgParser(prog="des-source", description="CSV/JSON/Parquet/Avro/Excel files (also in .zip archives) from S3 or any fsspec URL, as an Airbyte source.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgParser, required=True)
    sub.add_parser("spec", help="print the configuration spec")
    for name, help_text in (("check", "list the root and open one file"), ("discover", "print the catalog")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="source config JSON file")
    p = sub.add_parser("read", help="emit records and state")
    p.add_argument("--config", required=True, help="source config JSON file")
    p.add_argument("--catalog", required=True, help="configured catalog JSON file")
    p.add_argument("--state", help="state JSON file (list of STREAM state messages, or legacy)")
    return parser


def cmd_spec(out: Output, args: argparse.Namespace) -> int:
    """Print the source's SPEC message (its config schema)."""
    from connector.source.config import load_spec

    out.message(messages.spec(load_spec(), supportsIncremental=True,
                              documentationUrl="https://github.com/des-connector/des-connector#source"))
    return EXIT_OK


def cmd_check(out: Output, args: argparse.Namespace) -> int:
    """List the root and open one file; a CONNECTION_STATUS message says whether that worked."""
    from connector.source import Source

    try:
        Source(load_json_file(args.config, "config")).check()
    except ConnectorError as exc:
        out.message(messages.connection_status(False, str(exc)))
        return EXIT_OK
    out.message(messages.connection_status(True))
    return EXIT_OK


def cmd_discover(out: Output, args: argparse.Namespace) -> int:
    """Print the CATALOG of the streams the config finds, with their inferred schemas."""
    from connector.source import Source

    out.message(messages.catalog(Source(load_json_file(args.config, "config")).discover()))
    return EXIT_OK


class _Projection:
    """The columns of a configured stream's ``json_schema``: what its records carry (Airbyte's
    column selection). A column a file has and the catalog lacks is left out and said once per
    stream: at INFO if discover declared it (``declared``, the catalog schema's names: the user
    deselected it), else as a WARN naming the first file that has it (new since discover)."""

    def __init__(self, stream: dict[str, Any], declared: pa.Schema | None) -> None:
        props = (stream.get("json_schema") or {}).get("properties")
        self.name = stream.get("name")
        self.columns = set(props) if isinstance(props, dict) and props else None
        self.declared = set(declared.names) if declared is not None else set()
        self.said: set[str] = set()

    def __call__(self, batch: pa.RecordBatch, file: str) -> pa.RecordBatch:
        if self.columns is None:
            return batch
        keep = [name for name in batch.schema.names if name in self.columns]
        if len(keep) == batch.num_columns:
            return batch
        for name in batch.schema.names:
            if name not in self.columns and name not in self.said:
                self.said.add(name)
                if name in self.declared:
                    logging.getLogger("connector.source").info(
                        "stream %r: column %r is not selected in the configured catalog; not emitted", self.name, name)
                else:
                    logging.getLogger("connector.source").warning(
                        "stream %r: column %r (first in %s) is not in the configured catalog's json_schema, so its "
                        "values are not emitted; run discover again to add it", self.name, name, file)
        return batch.select(keep)


def _estimate(out: Output, source: Any, stream: str, files: list[Any], state: dict[str, Any] | None) -> None:
    """ESTIMATE trace (bytes) and a LOG (files and bytes) of what ``stream`` (its listed ``files``)
    is about to read."""
    pending = source.state(state).pending(files)
    size = sum(ref.size for ref in pending)
    out.message(messages.log(f"stream {stream}: {len(pending)} file(s), {size} byte(s) to read"))
    out.message(messages.trace_estimate(stream, size))


def _file_record(stream: str, staged: Any) -> dict[str, Any]:
    """The RECORD of a staged file: its metadata, and a ``file_reference`` when it was copied."""
    message = messages.record(stream, staged.record_data())
    if staged.path is not None:
        message["record"]["file_reference"] = staged.file_reference()
    return message


#: A state whose history holds more keys than this is emitted at most every STATE_EVERY seconds
#: (and after the stream's last file): each STATE carries the whole history, so one per file
#: would cost O(files x keys) in a backfill of many small files.
BIG_STATE = 100
STATE_EVERY = 1.0


#: Batches under both bounds (rows, Arrow bytes) are held and encoded together, up to the same
#: bounds: encoding costs per batch and per column (Arrow compute calls) about as much for the 10
#: rows of a tiny file as for thousands, and a backfill of tiny files paid it once per file.
GATHER_ROWS = 8192
GATHER_BYTES = 1 << 20


class _Records:
    """The RECORD lines of one stream, small batches (of consecutive files) encoded together. Held
    rows are written by :meth:`flush`, which :class:`_Checkpoints` calls before every STATE."""

    def __init__(self, out: Output, stream: str, *, rows: int = GATHER_ROWS, nbytes: int = GATHER_BYTES) -> None:
        from connector.source.read import FILE_COLUMNS

        self.out, self.stream, self.file_columns = out, stream, FILE_COLUMNS
        self.max_rows, self.max_bytes = rows, nbytes
        self.held: list[pa.RecordBatch] = []
        self.rows = self.held_bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self.held and not batch.schema.equals(self.held[0].schema):
            self.flush()
        # Not batch.nbytes: pyarrow computes it anew on every call (16-26 us for a 10-row batch),
        # which was 6% of a read of 10,000 tiny objects. The buffers' size (whole buffers, each
        # counted once) serves the same purpose: bounding what is held; the bytes written are the same.
        size = batch.get_total_buffer_size()
        if batch.num_rows >= self.max_rows or size >= self.max_bytes:
            self.flush()
            self._write(batch, self.file_columns)
            return
        self.held.append(batch)
        self.rows += batch.num_rows
        self.held_bytes += size
        if self.rows >= self.max_rows or self.held_bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        if len(self.held) == 1:
            self._write(self.held[0], self.file_columns)
        elif self.held:
            import pyarrow as pa

            # Rows of several files: _file and _last_modified_time are not one value throughout.
            self._write(pa.Table.from_batches(self.held).combine_chunks().to_batches()[0], ())
        self.held, self.rows, self.held_bytes = [], 0, 0

    def _write(self, batch: pa.RecordBatch, constant: Collection[str]) -> None:
        from connector.records import record_chunks

        # In pieces of about CHUNK_BYTES: a batch's lines are never all in memory at once.
        for piece in record_chunks(self.stream, batch, messages.now_ms(), constant):
            self.out.raw(piece)


class _Checkpoints:
    """The STATE messages of one stream: after each file while the state is small, each after the
    RECORDs of the files it covers (``records``, flushed first)."""

    def __init__(self, out: Output, stream: str, records: _Records) -> None:
        self.out, self.stream, self.pending = out, stream, records
        self.held: Any = None  # a StreamState not emitted yet
        self.last = time.monotonic()
        self.sent = False
        self.records = 0  # emitted since the previous STATE: its sourceStats.recordCount

    def file_done(self, state: Any) -> None:
        self.held = state
        if len(state.history) <= BIG_STATE or time.monotonic() - self.last >= STATE_EVERY:
            self.flush()

    def flush(self) -> None:
        self.pending.flush()
        if self.held is not None:
            self.out.message(messages.stream_state(self.stream, self.held.to_dict(), self.records))
            self.held, self.last, self.sent, self.records = None, time.monotonic(), True, 0


def _lean_memory_pool() -> None:
    """Arrow buffers from jemalloc where pyarrow has it: the default (mimalloc) keeps per-thread
    heaps that left ~80-100 MiB more peak RSS on 1M rows read by 4 file threads, and more system
    CPU. A process-wide choice, so made by the command, not by the library."""
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc: keep its default
        pass


def cmd_read(out: Output, args: argparse.Namespace) -> int:
    """Emit the RECORD messages of the configured streams, a STATE after the files read (per
    stream, resuming from ``--state``) and stream status traces; exit code 1 if a stream failed."""
    from connector.source import FileBatch, FileDone, Source, TransientError
    from connector.source.state import parse_input_state
    from connector.source.transfer import StagedFile

    _lean_memory_pool()
    config = load_json_file(args.config, "config")
    catalog = load_json_file(args.catalog, "catalog")
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise ConfigError("catalog: expected a configured catalog object with a 'streams' list")
    states = parse_input_state(load_json_file(args.state, "state")) if args.state else {}
    source = Source(config)
    # One listing for the whole command (it was one per stream and one more per estimate: each a
    # LIST request on S3, part of the fixed cost small incremental runs pay).
    available = source.listing()
    failed = False
    for configured in catalog["streams"]:
        try:
            stream = configured["stream"]
            name = stream["name"]
        except (KeyError, TypeError):
            raise ConfigError("catalog: each entry of 'streams' needs stream.name") from None
        mode = configured.get("sync_mode", "full_refresh")
        incremental = mode == "incremental"
        out.message(messages.trace_stream_status(name, "STARTED"))
        if name not in available:
            logging.getLogger("connector.source").warning("stream %r has no files any more; nothing to read", name)
            if incremental and states.get(name):
                out.message(messages.stream_state(name, source.state(states[name]).to_dict(), 0))
            out.message(messages.trace_stream_status(name, "COMPLETE"))
            continue
        running = False
        records = _Records(out, name)
        checkpoints = _Checkpoints(out, name, records)
        try:
            # The types discover declared in the catalog, not a new sample: a value read as
            # another type would break the schema the destination was given.
            declared = source.catalog_schema(name, stream.get("json_schema"))
            project = _Projection(stream, declared)
            _estimate(out, source, name, available[name], states.get(name) if incremental else None)
            events: Iterator[FileBatch | FileDone | StagedFile]
            if source.config.file_transfer:
                events = source.stage(name, states.get(name), sync_mode=mode,
                                      include_files=configured.get("include_files") is not False)
            else:
                events = source.read(name, states.get(name), sync_mode=mode, files=available[name], schema=declared)
            # Closed on the way out, also on an error (stdout closed): its reader threads stop; left
            # open, a thread blocked on a full read-ahead queue kept the process from exiting.
            try:
                for event in events:
                    if isinstance(event, StagedFile):
                        if not running:
                            out.message(messages.trace_stream_status(name, "RUNNING"))
                            running = True
                        out.message(_file_record(name, event))
                        checkpoints.records += 1
                        continue
                    if isinstance(event, FileBatch):
                        if not running:
                            out.message(messages.trace_stream_status(name, "RUNNING"))
                            running = True
                        records.add(project(event.batch, event.file.key))
                        checkpoints.records += event.batch.num_rows
                    elif incremental:
                        checkpoints.file_done(event.stream_state)
            finally:
                getattr(events, "close", lambda: None)()  # a generator: stops its reader threads
            checkpoints.flush()
            if incremental and not checkpoints.sent and states.get(name):
                # Nothing new: repeat the state so the platform keeps it.
                out.message(messages.stream_state(name, source.state(states[name]).to_dict(), checkpoints.records))
            out.message(messages.trace_stream_status(name, "COMPLETE"))
        except ConnectorError as exc:
            checkpoints.flush()  # the files finished before the error are synced
            failed = True
            kind: messages.FailureType = "transient_error" if isinstance(exc, TransientError) else (
                "config_error" if isinstance(exc, ConfigError) else "system_error")
            out.message(messages.trace_error(f"stream {name}: {exc}", kind, stream=name))
            out.message(messages.trace_stream_status(name, "INCOMPLETE"))
        out.flush()
    return EXIT_FAILURE if failed else EXIT_OK


COMMANDS = {"spec": cmd_spec, "check": cmd_check, "discover": cmd_discover, "read": cmd_read}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``des-source`` with ``argv`` (default: the process's); returns the exit code."""
    return run(build_parser().parse_args(argv), COMMANDS)


def entry() -> None:
    """The ``des-source`` command: :func:`main`, then :func:`~connector.airbyte.entrypoint.exit_now`
    (the output is complete; Arrow's threads must not see the interpreter torn down)."""
    exit_now(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
