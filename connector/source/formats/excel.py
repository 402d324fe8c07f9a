"""Excel workbooks (``.xlsx``), read with python-calamine.

One sheet per file: the first, or the one named by ``excel.sheet_name``. Its first row is the
header (blank names become ``column_N``, repeated names get ``_2``...), every other row a record.

Cells are typed by Excel: numbers, text, booleans, dates and date-times. A column's type is the
narrowest holding every cell of the sheet: integer (whole numbers up to 2**53, which a double
holds exactly), number, boolean, date, timestamp (Excel has no zone: taken as UTC, as for CSV),
time, else string, where each cell keeps its text (``1`` for a whole number, ISO-8601 for dates).
Empty cells are null.

An xlsx file is a zip archive whose central directory sits at its end and whose sheet XML is
compressed, so a workbook is fetched whole before parsing; memory is bounded by the workbook
(Excel caps a sheet at 1,048,576 rows).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import fsspec
import pyarrow as pa
import python_calamine

from connector.errors import ConfigError
from connector.source.formats import FileStats, FormatOptions, data_errors, open_raw, slices
from connector.source.formats.csv import unique_names
from connector.source.listing import FileRef

#: Bytes fetched per request while downloading a workbook.
READ_BLOCK = 8 << 20
#: Whole numbers beyond this are not exact in a double: such a column is a number, not an integer.
MAX_EXACT = 2**53
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _sheet(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions) -> list[list[Any]]:
    """The rows of the configured sheet (first row: the header), trailing empty rows dropped."""
    with data_errors(ref, "workbook"), open_raw(fs, ref, block_size=READ_BLOCK, cache_type="readahead") as raw:
        data = raw.read()
        try:
            book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        except python_calamine.CalamineError as exc:
            raise ValueError(f"not a readable xlsx workbook: {exc}") from None
    wanted = options.excel.sheet_name
    if wanted is not None and wanted not in book.sheet_names:
        raise ConfigError(f"config field 'excel.sheet_name': {ref.key} has no sheet {wanted!r} "
                          f"(sheets: {', '.join(map(repr, book.sheet_names)) or 'none'})")
    if not book.sheet_names:
        return []
    with data_errors(ref, f"sheet {wanted or book.sheet_names[0]!r}"):
        sheet = book.get_sheet_by_index(0) if wanted is None else book.get_sheet_by_name(wanted)
        try:
            rows = sheet.to_python(skip_empty_area=False)
        except python_calamine.CalamineError as exc:
            raise ValueError(str(exc)) from None
    while rows and all(_empty(v) for v in rows[-1]):
        rows.pop()
    return rows


def _empty(value: Any) -> bool:
    return value is None or value == ""


def _header(rows: list[list[Any]]) -> list[str]:
    names = [] if not rows else [_text(v) if not _empty(v) else "" for v in rows[0]]
    width = max((len(r) for r in rows), default=0)
    names += [""] * (width - len(names))
    return unique_names([name or f"column_{i + 1}" for i, name in enumerate(names)])


def column_type(values: list[Any]) -> pa.DataType:
    """The narrowest Arrow type holding every non-empty cell of ``values``."""
    present = [v for v in values if not _empty(v)]
    if not present:
        return pa.null()
    kinds = {_kind(v) for v in present}
    if kinds == {"bool"}:
        return pa.bool_()
    if kinds == {"number"}:
        exact = all(float(v).is_integer() and abs(v) <= MAX_EXACT for v in present)
        return pa.int64() if exact else pa.float64()
    if kinds == {"date"}:
        return pa.date32()
    if kinds <= {"date", "datetime"}:
        return TIMESTAMP
    if kinds == {"time"}:
        return pa.time64("us")
    return pa.string()


def _kind(value: Any) -> str:
    # bool before number: True is an int in Python; datetime before date: it is a date subclass.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time"
    return "text"


def _text(value: Any) -> str:
    """A cell as text: whole numbers without ``.0``, dates in ISO-8601, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT:
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _column(values: list[Any], t: pa.DataType) -> pa.Array:
    """Cells as an array of type ``t`` (one that :func:`column_type` allows for them)."""
    cells = [None if _empty(v) else v for v in values]
    if pa.types.is_null(t):
        return pa.nulls(len(cells))
    if pa.types.is_string(t):
        return pa.array([None if v is None else _text(v) for v in cells], pa.string())
    if pa.types.is_integer(t):
        return pa.array([None if v is None else int(v) for v in cells], t)
    if pa.types.is_timestamp(t):
        return pa.array([None if v is None else _utc(v) for v in cells], t)
    return pa.array(cells, t)


def _utc(value: date) -> datetime:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=timezone.utc)


def _fits(file_type: pa.DataType, stream_type: pa.DataType) -> bool:
    """Cells typed ``file_type`` can be written as ``stream_type`` without changing a value."""
    if file_type == stream_type or pa.types.is_null(file_type) or pa.types.is_string(stream_type):
        return True
    if pa.types.is_integer(file_type) and pa.types.is_floating(stream_type):
        return True  # whole numbers up to 2**53: exact in a double
    return pa.types.is_date(file_type) and pa.types.is_timestamp(stream_type)


def infer(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, max_rows: int) -> pa.Schema:
    """The sheet's columns, typed from every cell (the workbook is read whole anyway)."""
    rows = _sheet(fs, ref, options)
    names = _header(rows)
    return pa.schema([pa.field(name, column_type([r[i] if i < len(r) else None for r in rows[1:]]))
                      for i, name in enumerate(names)])


def batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
            stats: FileStats) -> Iterator[pa.RecordBatch]:
    """Every row after the header, in batches of at most ``options.batch_size`` rows, typed as the
    stream's ``schema``; a column whose cells do not fit it keeps them as text (noted in ``stats``)."""
    rows = _sheet(fs, ref, options)
    names = _header(rows)
    body = rows[1:]
    if not body:
        return
    columns, fields = [], []
    for i, name in enumerate(names):
        values = [r[i] if i < len(r) else None for r in body]
        own = column_type(values)
        wanted = schema.field(name).type if name in schema.names else own
        if pa.types.is_null(wanted):
            wanted = pa.string()
        if not _fits(own, wanted):
            stats.type_conflicts.add(name)
            wanted = pa.string()
        columns.append(_column(values, wanted))
        fields.append(pa.field(name, wanted))
    yield from slices(pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields)), options.batch_size)
