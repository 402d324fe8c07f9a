"""File formats: each module turns one file into Arrow record batches.

A format module is a :class:`FormatReader` (a ``typing.Protocol``; mypy checks every module
:func:`get` hands out against it): two functions, both taking the fsspec filesystem, the
:class:`FileRef` and the :class:`FormatOptions`:

- ``infer(fs, ref, options, max_rows) -> pa.Schema``: the file's columns from a sample (CSV/JSON)
  or from the footer alone (Parquet).
- ``batches(fs, ref, schema, options, stats) -> Iterator[pa.RecordBatch]``: the whole file, in
  order, in batches of at most ``options.batch_size`` rows, memory bounded by a few blocks (CSV:
  the 32 that Arrow's reader reads ahead, see ``csv.CSV_BLOCK``), not by the file.

Malformed content raises :class:`BadDataError` naming the file and line/row/row group (or, with
``on_bad_record="skip"``, is dropped and counted in ``stats``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol, cast, runtime_checkable

import fsspec
import pyarrow as pa

from connector.source.config import AvroOptions, CsvOptions, ExcelOptions
from connector.source.errors import BadDataError, FileChangedError, FileVanishedError, TransientError
from connector.source.listing import FileRef
from connector.storage import is_s3fs, is_transient, one_line

#: Bytes of (decoded) text parsed per JSON block (CSV: at most this, see csv.CSV_BLOCK), one batch
#: per block; a JSON file being read holds about one. Each block costs a parse call and a few
#: kernels of fixed cost: on the bench's JSON Lines 1 MiB blocks took ~12% more CPU than 4 MiB,
#: while 4 MiB held 40-70 MiB more at the peak (issue 17); 2 MiB is between the two.
BLOCK_SIZE = 2 << 20
#: Raw bytes fetched per request while sampling a CSV/JSON file for its schema: the sample, not the
#: object (s3fs's default block, 50 MiB, would download whole files at discover).
SAMPLE_BLOCK = BLOCK_SIZE + (64 << 10)
#: Raw bytes fetched per request beyond the block being read, while reading CSV/JSON data (s3fs's
#: read-ahead: a request fetches the block asked for plus this, 3.5-5 MiB in all; it was 12): the
#: first batch does not wait for a whole object, and each file being read holds one such fetch.
READ_BLOCK = 3 << 20


@dataclass(frozen=True)
class FormatOptions:
    """Everything a format reader needs from the config: CSV, Excel and Avro options, what to do with
    a bad record, batch and block sizes."""
    csv: CsvOptions = CsvOptions()
    #: The config names ``csv.delimiter`` (else ``.tsv`` files are read with tabs).
    delimiter_given: bool = False
    on_bad_record: str = "fail"
    batch_size: int = 65536
    block_size: int = BLOCK_SIZE
    excel: ExcelOptions = ExcelOptions()
    avro: AvroOptions = AvroOptions()


@dataclass
class FileStats:
    """What happened while reading one file, reported after its last batch."""

    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    type_conflicts: set[str] = field(default_factory=set)
    #: Records dropped by validation_policy skip_record, and the first few of them.
    invalid: int = 0
    invalid_examples: list[str] = field(default_factory=list)

    def skip(self, where: str) -> None:
        """Count one skipped record; the first three places (``where``) are kept as examples."""
        self.skipped += 1
        if len(self.skipped_examples) < 3:
            self.skipped_examples.append(where)


@runtime_checkable
class FormatReader(Protocol):
    """What a format plug-in provides; each module of this package (csv, json, ...) is one."""

    def infer(self, fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions,
              max_rows: int) -> pa.Schema:
        """The file's columns, from at most ``max_rows`` rows (or from metadata alone)."""
        ...

    def batches(self, fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
                stats: FileStats) -> Iterator[pa.RecordBatch]:
        """Every row of the file, in order, typed per ``schema``, at most ``options.batch_size`` a batch;
        malformed content raises :class:`BadDataError` (or, with ``on_bad_record="skip"``, is
        counted in ``stats``)."""
        ...


#: The format modules of this package, by format name.
READERS = ("csv", "json", "parquet", "avro", "excel")

if TYPE_CHECKING:  # mypy checks every module :func:`get` hands out against the protocol
    from connector.source.formats import avro, csv, excel, json, parquet

    _CHECKED: tuple[FormatReader, ...] = (csv, json, parquet, avro, excel)


def get(name: str) -> FormatReader:
    """The reader of format ``name`` (csv, json, parquet, avro, excel)."""
    if name not in READERS:
        raise KeyError(name)
    # Only the module asked for, on first use (each imports this module): pyarrow.csv and
    # python-calamine take ~0.1 s each to import, a good part of a small Avro read's start-up.
    return cast(FormatReader, importlib.import_module(f"connector.source.formats.{name}"))


def open_raw(fs: fsspec.AbstractFileSystem, ref: FileRef, **kwargs) -> IO[bytes]:
    """Open ``ref`` for binary reading; a missing file is :class:`FileVanishedError`, an object
    replaced since the listing :class:`FileChangedError`. A member of a zip archive is opened
    inside it (``kwargs`` then apply to the archive)."""
    if ref.member is not None:
        from connector.source.archive import open_member

        return open_member(fs, ref, **kwargs)
    try:
        raw = _open_s3_as_listed(fs, ref, kwargs) or fs.open(ref.path, "rb", **kwargs)
    except FileNotFoundError:
        raise FileVanishedError(f"{ref.key}: file no longer exists (deleted after listing)") from None
    # s3fs reads every range of an open file against the ETag its open saw (IfMatch); make sure
    # that is the version listed, whose LastModified the state will record.
    opened = (getattr(raw, "details", None) or {}).get("ETag")
    if ref.etag and isinstance(opened, str) and opened.strip('"') != ref.etag:
        raw.close()
        raise FileChangedError(f"{ref.key}: replaced since it was listed (ETag {ref.etag} -> {opened.strip(chr(34))})")
    return raw


def _open_s3_as_listed(fs: fsspec.AbstractFileSystem, ref: FileRef, kwargs: dict) -> IO[bytes] | None:
    """An s3fs object opened without the HEAD s3fs sends to learn its size and ETag (None: not
    such an object; open it the usual way).

    The listing gave both, so the HEAD only doubled the requests: for small objects, one GET each
    instead of a HEAD and a GET (on the bench's 1,000-object read, the HEADs were 43% of the S3
    client's busy event-loop thread). The file is left as s3fs leaves it after its own HEAD: every
    ranged GET carries ``If-Match`` with the listed ETag, so an object replaced since the listing
    answers 412 (:class:`FileChangedError`, through :func:`data_errors`), never another version's
    bytes. Version-aware filesystems keep s3fs's own open (it asks for the VersionId)."""
    if (not is_s3fs(fs) or getattr(fs, "version_aware", True) or getattr(fs, "local_expiry_check", False)
            or not ref.etag or "size" in kwargs):
        return None
    etag = f'"{ref.etag}"'
    raw = fs.open(ref.path, "rb", size=ref.size, **kwargs)
    if not isinstance(getattr(raw, "read_kw", None), dict):
        # An s3fs older than its If-Match reads (the range pyproject allows): its HEAD is then
        # the only check of the version, so keep it.
        raw.close()
        return None
    # The state s3fs's S3File.__init__ sets from its HEAD: ``details`` (fsspec's public setter;
    # read lazily, it would send the HEAD after all) and the If-Match of every ranged GET.
    raw.details = {"name": ref.path, "size": ref.size, "ETag": etag, "type": "file"}
    raw.read_kw = {**raw.read_kw, "IfMatch": etag}
    return raw


def _replaced(exc: BaseException) -> bool:
    """s3fs's answer to a ranged GET whose If-Match no longer holds: the object was replaced."""
    utils = sys.modules.get("s3fs.utils")
    return utils is not None and isinstance(exc, utils.FileExpired)


@contextlib.contextmanager
def data_errors(ref: FileRef, where: str = "") -> Iterator[None]:
    """Turn parser/codec failures into :class:`BadDataError`, storage failures into the right kind."""
    try:
        yield
    except (BadDataError, TransientError, FileVanishedError, FileChangedError):
        raise
    except FileNotFoundError:
        raise FileVanishedError(f"{ref.key}: file no longer exists (deleted after listing)") from None
    except Exception as exc:
        if _replaced(exc):
            raise FileChangedError(f"{ref.key}: replaced since it was listed (ETag {ref.etag} no longer matches)") from None
        if is_transient(exc):
            raise TransientError(f"{ref.key}: {type(exc).__name__}: {exc}") from exc
        if isinstance(exc, RecursionError):
            # Deeply nested JSON ([[[[...) exhausts Python's stack in the decoder or in schema code.
            raise BadDataError(f"{ref.key}{': ' + where if where else ''}: values nested too deeply") from None
        if isinstance(exc, (pa.ArrowException, OSError, EOFError, ValueError, UnicodeDecodeError)):
            raise BadDataError(f"{ref.key}{': ' + where if where else ''}: {one_line(exc)}") from exc
        raise


def slices(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    """``batch`` cut into consecutive pieces of at most ``size`` rows (zero-copy)."""
    for start in range(0, batch.num_rows, size):
        yield batch.slice(start, size)


class Prefixed(io.RawIOBase):
    """A stream that replays ``head`` then continues with ``rest``: lets us peek at the first lines
    of a (possibly compressed, non-seekable) stream and still hand the whole stream to Arrow.

    Arrow's streaming readers read it ahead from their own I/O threads, and keep doing so after we
    stop reading (a schema sample, an error). Such a thread calling into Python while the
    interpreter finalizes aborts or deadlocks the process, so every instance is closed at exit and
    the exit waits until no thread is reading any of them (:func:`_release_streams`).
    """

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest
        self._reading = 0
        self._last_read = time.monotonic()
        _LIVE.add(self)

    def readable(self) -> bool:
        """Always True."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1): the head first, then the rest of the stream."""
        self._reading += 1  # under the GIL: Arrow's reader threads call in one at a time
        try:
            if self.closed:
                raise ValueError("stream closed")
            if not self._head.nbytes and size is not None and size >= 0:
                # The rest's own bytes, as they are: RawIOBase.read would fill a fresh bytearray
                # and copy it into bytes again, two more blocks of memory per block read.
                data = self._rest.read(size)
                return data if isinstance(data, bytes) else bytes(data)
            return super().read(size)
        finally:
            self._reading -= 1
            self._last_read = time.monotonic()

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` from the head, then from the rest; returns the number of bytes."""
        if self._head.nbytes:
            n = min(len(buffer), self._head.nbytes)
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def quiet(self, for_seconds: float) -> bool:
        """No read in progress, and none for ``for_seconds``."""
        return not self._reading and time.monotonic() - self._last_read >= for_seconds


_LIVE: weakref.WeakSet[Prefixed] = weakref.WeakSet()


@atexit.register
def _release_streams(timeout: float = 10.0, quiet: float = 0.05) -> None:
    """Before finalization: close every stream Arrow may still read ahead from (its next read fails,
    which stops its reader thread) and wait until none has been read for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    for stream in list(_LIVE):
        stream.close()
    while time.monotonic() < deadline and not all(stream.quiet(quiet) for stream in list(_LIVE)):
        time.sleep(0.01)


def read_head(stream: IO[bytes], lines: int, limit: int = 1 << 20) -> bytes:
    """Read from ``stream`` until it holds ``lines`` newlines (or EOF, or ``limit`` bytes)."""
    head = bytearray()
    while head.count(b"\n") < lines and len(head) < limit:
        chunk = stream.read(64 << 10)
        if not chunk:
            break
        head += chunk
    return bytes(head)
