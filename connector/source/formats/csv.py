"""CSV: Arrow's streaming C++ reader, every cell read as text, then cast per column.

Reading as text and casting afterwards (rather than letting Arrow infer per block) keeps types
stable across blocks and files: the stream's types come from a sample at discover time, and a
later value that does not fit keeps its column as text in that batch instead of failing the read.

Quoted values may hold line breaks (RFC 4180): Arrow's chunker is told so, or it would cut blocks
inside such a value. A UTF-8 byte order mark is dropped; ``.tsv`` files are tab-separated unless
the config names a delimiter. An unquoted empty cell is null, a quoted one (``""``) an empty string
(null in every other type); no other text is null unless ``null_values`` names it. Files in
another ``encoding`` than UTF-8 are decoded into UTF-8 on the way in (:class:`Transcoded`); UTF-8
itself is parsed as it is.
"""

from __future__ import annotations

import codecs
import csv as pycsv
import dataclasses
from collections.abc import Generator, Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connector.scalars import string_array
from connector.source.compression import decompressed, split_compression
from connector.source.config import CsvOptions
from connector.source.errors import BadDataError
from connector.source.formats import (READ_BLOCK, SAMPLE_BLOCK, FileStats, FormatOptions, Prefixed, data_errors,
                                      open_raw, read_head, slices)
from connector.source.infer import cast_strings, infer_string_column, merge_types
from connector.source.listing import FileRef


#: The CSV options of a config that gives none.
DEFAULT_CSV = CsvOptions()
#: How far into a file the header line is looked for.
HEADER_LIMIT = 1 << 20
#: The longest row read (a block grows to hold it; see _text_batches).
MAX_ROW = 256 << 20
#: The largest block Arrow's CSV reader parses at a time (one batch per block). Its streaming
#: reader reads up to 32 blocks ahead on an I/O thread of its own (pyarrow has no setting for
#: that): with 4 MiB blocks a whole 16 MiB bench file was in memory before its first batch, so CSV
#: blocks are smaller than JSON's (issue 17: 1M bench rows in 4 objects on S3, peak RSS 214 MiB
#: with 512 KiB blocks against 228-237 MiB with 1 MiB, CPU within the noise of a shared machine).
CSV_BLOCK = 512 << 10
#: How Arrow says a row is longer than its block.
_STRADDLE = "straddling object"
#: The UTF-8 byte order mark some tools (Excel) write first: not part of the first column's name.
BOM = b"\xef\xbb\xbf"


def delimiter(ref: FileRef, options: FormatOptions) -> str:
    """The configured delimiter; a tab for ``.tsv`` files unless the config names one."""
    if not options.delimiter_given and split_compression(ref.key)[0].lower().endswith(".tsv"):
        return "\t"
    return options.csv.delimiter


def _header(head: bytes, options: FormatOptions, sep: str, final: bool) -> tuple[list[str], int] | None:
    """Column names from the first non-blank record after the skipped lines (without a header:
    generated or configured names) and the number of raw lines up to the end of that record (a
    quoted name may span lines); None when ``head`` holds no complete such record yet (``final``:
    ``head`` is the whole file, so none at all)."""
    csv = options.csv
    # bytes.splitlines ends lines where Arrow's reader does: CRLF, LF and a lone CR (old Mac).
    lines = head.splitlines(keepends=True)
    if not final and lines and not lines[-1].endswith(b"\n"):
        lines = lines[:-1]  # the last piece may be a line cut short (or a CR whose LF is to come)
    # Without a header row, the rows "after the header" are lines before the data (Airbyte's rule).
    skip = csv.skip_rows + (0 if csv.has_header else csv.skip_rows_after_header)
    for index in range(skip, len(lines)):
        if lines[index].strip():
            break
    else:
        return None
    if csv.column_names:
        return list(csv.column_names), index
    try:
        text = [line.decode("utf-8") for line in lines[index:]]
    except UnicodeDecodeError as exc:
        raise ValueError(f"line {index + 1}: header is not {csv.encoding if csv.transcoded else 'UTF-8'} "
                         f"({exc.reason} at byte {exc.start})") from None
    fields, span = _first_record(text, sep, csv, index)
    if fields is None:
        if final:
            raise ValueError(f"line {index + 1}: unreadable header (a quoted name is never closed)")
        return None
    if csv.has_header:
        return unique_names([name or f"column_{i + 1}" for i, name in enumerate(fields)]), index + span
    if csv.generated_names == "airbyte":
        return [f"f{i}" for i in range(len(fields))], index
    return [f"column_{i + 1}" for i in range(len(fields))], index


def _first_record(lines: list[str], sep: str, csv: CsvOptions, index: int) -> tuple[list[str] | None, int]:
    """The fields of the CSV record starting at ``lines[0]`` and the lines it spans; None when
    its last quoted field is still open at the end of ``lines``."""
    def reader(strict: bool):  # the csv module's reader type is private
        return pycsv.reader(iter(lines), delimiter=sep, quotechar=csv.quote_character, escapechar=csv.escape_char,
                            doublequote=csv.double_quote, strict=strict)

    strict = reader(True)
    try:
        return next(strict), strict.line_num
    except pycsv.Error as exc:
        if "unexpected end of data" in str(exc):
            return None, 0
    lenient = reader(False)  # as Arrow reads stray quotes
    try:
        return next(lenient), lenient.line_num
    except pycsv.Error as exc:
        raise ValueError(f"line {index + 1}: unreadable header ({exc})") from None


def unique_names(names: list[str]) -> list[str]:
    """Header names made unique (``a, a`` -> ``a, a_2``): a record cannot hold one key twice."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _find_header(stream, options: FormatOptions, sep: str) -> tuple[bytes, tuple[list[str], int] | None]:
    """Read from ``stream`` until the header record is complete; (bytes read, without a leading
    byte order mark, and the header or None)."""
    head = read_head(stream, options.csv.skip_rows + options.csv.skip_rows_after_header + 1)
    while len(head) < len(BOM) and BOM.startswith(head) and (more := stream.read(len(BOM))):
        head += more
    head = head.removeprefix(BOM)
    final = False
    while (found := _header(head, options, sep, final)) is None and not final:
        if len(head) > HEADER_LIMIT:
            raise ValueError(f"no header line within the first {HEADER_LIMIT} bytes")
        more = stream.read(64 << 10)
        final = not more
        head += more
    if final and head and not head.endswith((b"\n", b"\r")):
        head += b"\n"  # the whole file, its last line unterminated: Arrow cannot skip a header-only file
    return head, found


class Transcoded:
    """A byte stream in another encoding read as UTF-8 (decoded incrementally, strictly: a byte
    the encoding does not have is an error, never replaced)."""

    def __init__(self, stream, encoding: str) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._pending = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the file as UTF-8 (all that is left for -1)."""
        while not self._done and (size < 0 or len(self._pending) < size):
            chunk = self._stream.read(size if size > 0 else 1 << 20)
            self._done = not chunk
            self._pending += self._decoder.decode(chunk, final=self._done).encode("utf-8")
        if size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


class _Tail:
    """A stream that remembers the last bytes read from it: whether the file ends inside quotes."""

    KEEP = 4096

    def __init__(self, stream, head: bytes) -> None:
        self._stream = stream
        self.tail = head[-self.KEEP:]

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self.tail = (self.tail + bytes(data[-self.KEEP:]))[-self.KEEP:]
        return data


class _Reader:
    """An open CSV file: the raw handle, Arrow's streaming reader (None when empty), the names,
    and the stream's tail once read."""

    def __init__(self, raw, reader, names: list[str], bad_rows: list[str], tail: _Tail | None = None) -> None:
        self.raw, self.reader, self.names, self.bad_rows, self.tail = raw, reader, names, bad_rows, tail


def _open(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, stats: FileStats | None,
          block_size: int) -> _Reader:
    raw = open_raw(fs, ref, block_size=block_size)
    stream = decompressed(raw, ref.compression)
    if options.csv.transcoded:
        stream = Transcoded(stream, options.csv.encoding)
    sep = delimiter(ref, options)
    head, found = _find_header(stream, options, sep)
    if found is None:
        return _Reader(raw, None, [], [])
    names, skip = found
    bad_rows: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        where = f"line {row.number}" if row.number is not None and row.number >= 0 else "a row"
        problem = f"{where}: expected {row.expected_columns} columns, got {row.actual_columns}"
        if (options.on_bad_record == "skip" or options.csv.skip_mismatched_rows) and stats is not None:
            stats.skip(problem)
            return "skip"
        bad_rows.append(problem)
        return "error"

    tail = _Tail(stream, head)
    try:
        reader = _open_arrow(head, tail, names, skip, sep, options, on_invalid)
    except pa.ArrowInvalid:
        if bad_rows:  # Arrow reads the first block on open: the bad row may already be there
            raise BadDataError(f"{ref.key}: {bad_rows[0]}") from None
        raise
    return _Reader(raw, reader, names, bad_rows, tail)


def _open_arrow(head: bytes, stream, names: list[str], skip: int, sep: str, options: FormatOptions,
                on_invalid) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        Prefixed(head, stream),
        read_options=pacsv.ReadOptions(
            block_size=options.block_size,
            # Arrow skips raw lines here (blank ones too, quotes not considered): all lines up to
            # the end of the header record, as _header counted them.
            skip_rows=skip,
            # Rows, not lines (a quoted value may span lines), as Airbyte's skip_rows_after_header.
            skip_rows_after_names=options.csv.skip_rows_after_header if options.csv.has_header else 0,
            column_names=names,
            use_threads=False,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=sep,
            quote_char=options.csv.quote_character,
            escape_char=options.csv.escape_char or False,
            double_quote=options.csv.double_quote,
            # Without it, blocks are cut at any line end, also inside a quoted value (and the
            # value is then cut short, or the stream fails). Measured: no slower on the bench file.
            newlines_in_values=True,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            # Only an empty unquoted cell is null: Arrow's default list also nulls "NA", "null",
            # "nan", "N/A"..., which are values (a country code, a word) in someone's file.
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def _next(reader: _Reader, ref: FileRef) -> pa.RecordBatch | None:
    try:
        with data_errors(ref):
            return reader.reader.read_next_batch()
    except StopIteration:
        return None
    except BadDataError:
        if reader.bad_rows:
            raise BadDataError(f"{ref.key}: {reader.bad_rows[0]}") from None
        raise


def _text_batches(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, stats: FileStats,
                  raw_block: int, names: list[str], whole: bool = True) -> Generator[pa.RecordBatch, None, None]:
    """Every row of the file as text columns, in order; ``names`` is filled with the column names
    once the header is read. ``whole``: the file will be read to its end, so its last batch is
    held back until then and checked (:func:`_closed_rows`); a sample yields each batch at once. A row longer than a block (Arrow cannot parse it: "straddling
    object") re-opens the file with blocks 4x larger, up to :data:`MAX_ROW`, and skips the rows
    already yielded, so long values are read whole rather than failing the file."""
    block, done = min(options.block_size, CSV_BLOCK), 0
    attempt = FileStats()
    try:
        while True:
            attempt, seen = FileStats(), 0  # a re-open meets (and counts) the same bad rows again
            try:
                with data_errors(ref):
                    reader = _open(fs, ref, dataclasses.replace(options, block_size=block), attempt, raw_block)
                with reader.raw:
                    names[:] = reader.names
                    held = None  # one batch behind: the last one is checked once the file has ended
                    while reader.reader is not None and (batch := _next(reader, ref)) is not None:
                        if seen + batch.num_rows > done:
                            if held is not None:
                                done += held.num_rows
                                yield held
                            held = batch.slice(max(0, done - seen))
                            if not whole:
                                done += held.num_rows
                                yield held
                                held = None
                        seen += batch.num_rows
                    if held is not None:
                        yield _closed_rows(held, reader, ref, options, attempt)
                return
            except BadDataError as exc:
                if _STRADDLE not in str(exc):
                    raise
                if block >= MAX_ROW:
                    raise BadDataError(f"{ref.key}: a row longer than {MAX_ROW >> 20} MiB") from None
                block = min(block * 4, MAX_ROW)
    finally:
        stats.skipped += attempt.skipped
        stats.skipped_examples.extend(attempt.skipped_examples[: max(0, 3 - len(stats.skipped_examples))])


def _closed_rows(batch: pa.RecordBatch, reader: _Reader, ref: FileRef, options: FormatOptions,
                 stats: FileStats) -> pa.RecordBatch:
    """The file's last batch, unless its last row ends inside a quoted value that is never
    closed: Arrow then takes the rest of the file, line breaks and all, as that one value (the
    rows after the stray quote would silently become text). Such a row is an error (or skipped).

    Only a quoted value holds a line break, and a closed one is followed by the quote (then at
    most whitespace) at the very end of the file."""
    if not batch.num_rows or not batch.num_columns or reader.tail is None:
        return batch
    last = batch.column(batch.num_columns - 1)[batch.num_rows - 1].as_py()
    if not isinstance(last, str) or not ("\n" in last or "\r" in last):
        return batch
    if reader.tail.tail.rstrip(b" \t\r\n").endswith(options.csv.quote_character.encode()):
        return batch
    problem = "the last row: a quoted value is never closed (the rest of the file would be one value)"
    if options.on_bad_record != "skip":
        raise BadDataError(f"{ref.key}: {problem}")
    stats.skip(problem)
    return batch.slice(0, batch.num_rows - 1)


def infer(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, max_rows: int) -> pa.Schema:
    """Column types from the first ``max_rows`` rows (see :func:`infer_string_column`); cells
    equal to a configured null value count as null (in every column: a string column keeps them
    as text at read only when ``strings_can_be_null`` is false)."""
    names: list[str] = []
    types: dict[str, pa.DataType] = {}
    seen = 0
    csv = options.csv
    rows = _text_batches(fs, ref, options, FileStats(), SAMPLE_BLOCK, names, whole=False)
    try:
        for batch in rows:
            types = types or {name: pa.null() for name in names}
            batch = batch.slice(0, max_rows - seen)
            seen += batch.num_rows
            for name, column in zip(batch.schema.names, batch.columns):
                column = _nulled(column, csv.null_values)
                types[name] = merge_types(types[name], infer_string_column(column, csv.booleans))
            if seen >= max_rows:
                break
    finally:
        rows.close()
    if not csv.infer_types:  # Airbyte's inference_type "None": every column is text
        return pa.schema([pa.field(name, pa.string()) for name in names])
    return pa.schema([pa.field(name, types.get(name, pa.null())) for name in names])


def _nulled(column: pa.Array, null_values: tuple[str, ...]) -> pa.Array:
    """``column`` with the cells equal to one of ``null_values`` (exactly) null."""
    if not null_values:
        return column
    hit = pc.is_in(column, string_array(list(null_values)))
    if not pc.any(hit).as_py():
        return column
    return pc.if_else(hit, pa.nulls(len(column), column.type), column)


def convert(batch: pa.RecordBatch, schema: pa.Schema, stats: FileStats, csv: CsvOptions = DEFAULT_CSV) -> pa.RecordBatch:
    """Cast each text column to its stream type; a column whose values do not fit stays text.
    Configured null values become null first (in a string column only if ``strings_can_be_null``)."""
    columns, fields = [], []
    for name, column in zip(batch.schema.names, batch.columns):
        target = schema.field(name).type if name in schema.names else pa.string()
        if pa.types.is_null(target):
            target = pa.string()
        if csv.strings_can_be_null or not pa.types.is_string(target):
            column = _nulled(column, csv.null_values)
        try:
            column = cast_strings(column, target, csv.booleans)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            stats.type_conflicts.add(name)
            target = pa.string()
        columns.append(column)
        fields.append(pa.field(name, target))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
            stats: FileStats) -> Iterator[pa.RecordBatch]:
    """Every row of the file, in order, typed per ``schema``."""
    for batch in _text_batches(fs, ref, options, stats, READ_BLOCK, []):
        if batch.num_rows:
            yield from slices(convert(batch, schema, stats, options.csv), options.batch_size)
