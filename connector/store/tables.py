"""Record chunks (JSON Lines) -> one Arrow table, with every value as it was stored.

pyarrow.json parses a chunk fast but not always exactly: an integer beyond int64, or beyond 2**53
in a column that also holds fractions, becomes a double, and so does a fraction with more digits
than a double holds (a decimal's ``1004413618748.9399``); text that looks like a date or time
(``2024-01-31``) becomes a timestamp (an offset converted away); a list of nulls comes out with
the wrong values (pyarrow 26 miscounts them; its table then fails ``validate``); a number beyond
the double range, a duplicate key, or a column that is a number in one record and text in another
(a CSV column whose later rows are not numbers) is an error for the whole read. Text is re-read as
text, and the rest goes by the exact path. Such a chunk is parsed again by the
exact path below, which keeps every number as the text it was stored as and decides each column's
type from all its values: a column whose values do not all fit one Arrow type exactly becomes a
string column holding each value's JSON text (strings as they are), and says so in its field
metadata (``des:text``) and in a log warning. The same happens across chunks whose column types do
not merge exactly.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from connector.jsontext import first_repeated
from connector.scalars import rows_without_columns
from connector.store.errors import StoreError

log = logging.getLogger("connector.store")
# Big blocks: a container's DATA region is parsed in few, large, multi-threaded pieces.
_JSON_READ = pajson.ReadOptions(block_size=16 * 1024 * 1024)
EXACT_DOUBLE = 2 ** 53  # every integer of smaller magnitude is a double exactly
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
TEXT_KEY = b"des:text"  # field metadata of a column kept as JSON text


class _Number:
    """A JSON number as the text it was stored as."""

    __slots__ = ("text", "is_int")

    def __init__(self, text: str, is_int: bool) -> None:
        self.text, self.is_int = text, is_int


def _int(text: str) -> _Number:
    return _Number(text, True)


def _float(text: str) -> _Number:
    return _Number(text, False)


def _number_fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, _Number):
        return orjson.Fragment(value.text)
    raise TypeError(type(value).__name__)


def _json_text(value: Any) -> str:
    """Compact JSON of a parsed value, numbers as their stored text."""
    return orjson.dumps(value, default=_number_fragment).decode()


def table_of(chunks: Iterable[tuple[int, bytes]]) -> pa.Table:
    """``(first key, JSON Lines)`` chunks, one per container, as one table (see the module doc)."""
    parts = [(first, data, _chunk_table(first, data)) for first, data in chunks if data and not data.isspace()]
    if not parts:
        return pa.table({})
    tables = [t for _, _, t in parts]
    if all(t.num_columns == 0 for t in tables):  # every record is {}: concat_tables would drop the rows
        return pa.Table.from_batches([rows_without_columns(sum(t.num_rows for t in tables))])
    text = _unmergeable(tables)
    if text:
        tables = [t if all(_is_text(t, c) for c in text & set(t.column_names)) else _exact_table(first, data, text)
                  for first, data, t in parts]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Nested types that do not merge: those columns as JSON text too.
        names = {n for t in tables for n in t.column_names}
        nested = {n for n in names if len({str(t.schema.field(n).type) for t in tables if n in t.column_names}) > 1}
        tables = [_exact_table(first, data, text | nested) for first, data, _ in parts]
        return pa.concat_tables(tables, promote_options="permissive")


def _chunk_table(first: int, data: bytes) -> pa.Table:
    """pyarrow's parse when it is exact, else the exact path."""
    table = _arrow_table(data)
    return _exact_table(first, data, set()) if table is None else table


def _arrow_table(data: bytes) -> pa.Table | None:
    """JSON Lines ``data`` parsed by pyarrow, strings kept as written; None when that parse is
    not exactly the values (see the module doc)."""
    try:
        table = pajson.read_json(io.BytesIO(data), read_options=_JSON_READ)
        if any(_has_timestamp(f.type) for f in table.schema):
            # Inferred from text: read those fields again declared as the text they are.
            texts = pa.schema([f.with_type(_untimed(f.type)) for f in table.schema])
            table = pajson.read_json(io.BytesIO(data), read_options=_JSON_READ,
                                     parse_options=pajson.ParseOptions(explicit_schema=texts))
        table.validate()
    except (pa.ArrowInvalid, pa.ArrowIndexError):
        return None
    if any(_rounded(col.type, col) for col in table.columns):
        return None
    if any(_has_double(f.type) for f in table.schema) and not _doubles_exact(data):
        return None
    return table


def _has_double(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return any(_has_double(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_double(t.value_type)
    return pa.types.is_floating(t)


def _has_timestamp(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return any(_has_timestamp(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_timestamp(t.value_type)
    return pa.types.is_timestamp(t)


def _untimed(t: pa.DataType) -> pa.DataType:
    """``t`` with string in place of every timestamp, at any depth."""
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_untimed(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_untimed(t.value_type))
    return pa.string() if pa.types.is_timestamp(t) else t


# JSON fractions a double may not hold exactly: 16 significant digits or more (15 always survive a
# double) take 17 characters with the point; a negative three-digit exponent may be subnormal or
# zero. Integers are :func:`_rounded`'s. Text inside strings may match too: it is only checked,
# never trusted. Two plain patterns: one scan each, far faster than one with alternatives.
_LONG_NUMBER = re.compile(rb"[0-9][0-9.eE+-]{16,}")
_TINY_NUMBER = re.compile(rb"[0-9][0-9.]*[eE]-[0-9]{3,}")


def _doubles_exact(data: bytes) -> bool:
    """Every long or tiny number text in ``data`` that is a fraction is, as a decimal, the double
    pyarrow reads it as."""
    suspects = _LONG_NUMBER.findall(data)
    if b"e-" in data or b"E-" in data:
        suspects += _TINY_NUMBER.findall(data)
    if not suspects:
        return True
    texts = pa.array(suspects, pa.binary()).cast(pa.string())
    texts = texts.filter(pc.match_substring_regex(texts, _FRACTION))  # not integers, not other text
    try:
        shown = pc.cast(pc.cast(texts, pa.float64()), pa.string())
    except pa.ArrowInvalid:  # out of range, say: let the exact path decide
        return False
    differ = pc.invert(pc.equal(shown, texts))
    return all(_exact_double(t) for t in texts.filter(differ).to_pylist())


_FRACTION = r"^[0-9]+(\.[0-9]+([eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)$"


def _exact_double(text: str) -> bool:
    """The number ``text`` is a finite double exactly (as its shortest text, which the encoder
    writes and ``to_pylist`` gives back)."""
    value = float(text)
    if not math.isfinite(value):
        return False
    return repr(value) == text or Decimal(repr(value)) == Decimal(text)


def _rounded(t: pa.DataType, column: pa.Array | pa.ChunkedArray) -> bool:
    """True if a double (at any depth) is at least 2**53: it may be a rounded integer."""
    if pa.types.is_floating(t):
        top = pc.max(pc.abs(column)).as_py()
        return top is not None and top >= EXACT_DOUBLE
    if pa.types.is_struct(t):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        return any(_rounded(t.field(i).type, column.field(i)) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        return _rounded(t.value_type, column.flatten())
    return False


def _is_text(table: pa.Table, name: str) -> bool:
    return pa.types.is_string(table.schema.field(name).type) or pa.types.is_null(table.schema.field(name).type)


def _unmergeable(tables: list[pa.Table]) -> set[str]:
    """Top-level columns whose types differ between chunks in a way no exact type covers."""
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    out = set()
    for name, kinds in types.items():
        if len(kinds) <= 1:
            continue
        if kinds == {pa.int64(), pa.float64()}:
            big = any(pa.types.is_integer(t.schema.field(name).type)
                      and (pc.max(pc.abs(t.column(name))).as_py() or 0) > EXACT_DOUBLE
                      for t in tables if name in t.column_names)
            if not big:
                continue  # promoted to double exactly
        if all(pa.types.is_nested(k) for k in kinds):
            continue  # left to concat_tables's struct/list merging (text if that fails)
        out.add(name)
    if out:
        log.warning("columns %s hold values of different types in different containers: read as JSON text",
                    ", ".join(sorted(out)))
    return out



def _no_duplicates(first: int, line: int):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            dup = first_repeated(k for k, _ in pairs)
            raise StoreError(f"datapoint {first + line} holds key {dup!r} twice: it has no exact table form "
                             "(read it with Store.read)")
        return out
    return hook


def _parse_lines(first: int, data: bytes) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")):
        try:
            row = json.loads(line, parse_int=_int, parse_float=_float, parse_constant=_float,
                             object_pairs_hook=_no_duplicates(first, i))
        except ValueError as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"datapoint {first + i} is not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise StoreError(f"datapoint {first + i} is a JSON {type(row).__name__}, not an object")
        rows.append(row)
    return rows


def _exact_table(first: int, data: bytes, force_text: set[str]) -> pa.Table:
    """The slow, exact parse of one chunk: every column typed from all its values."""
    rows = _parse_lines(first, data)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    if not names:
        return pa.Table.from_batches([rows_without_columns(len(rows))])
    arrays, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        array, why = _column(values, name in force_text)
        if why:
            log.warning("column %r of datapoints %d-%d kept as JSON text: %s", name, first, first + len(rows) - 1, why)
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata={TEXT_KEY: why.encode()} if why else None))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _column(values: list[Any], force_text: bool) -> tuple[pa.Array, str]:
    """An exact Arrow array for one column's values, and why it is JSON text ('' if it is not)."""
    kinds = {_kind(v) for v in values} - {"null"}
    if force_text:
        return _texts(values), "its type differs between containers"
    if not kinds:
        return pa.nulls(len(values)), ""
    if kinds == {"int"}:
        ints = [None if v is None else int(v.text) for v in values]
        if all(v is None or INT64_MIN <= v <= INT64_MAX for v in ints):
            return pa.array(ints, pa.int64()), ""
        return _texts(values), "an integer does not fit int64"
    if kinds <= {"int", "float"}:
        doubles = [None if v is None else float(v.text) for v in values]
        exact = all(v is None or (not v.is_int and _exact_double(v.text))
                    or (v.is_int and abs(int(v.text)) <= EXACT_DOUBLE) for v in values)
        if exact:
            return pa.array(doubles, pa.float64()), ""
        return _texts(values), "a number is not exactly a double (beyond 2**53, the double range or its digits)"
    if kinds in ({"str"}, {"bool"}):
        return pa.array(values, pa.string() if kinds == {"str"} else pa.bool_()), ""
    if kinds in ({"dict"}, {"list"}):
        nested = _nested(values)
        if nested is not None:
            return nested, ""
        return _texts(values), "its nested values have no exact common type"
    return _texts(values), f"it holds {' and '.join(sorted(kinds))} values"


_KINDS: dict[type, str] = {str: "str", dict: "dict", list: "list"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, _Number):
        return "int" if value.is_int else "float"
    if isinstance(value, bool):
        return "bool"
    return _KINDS[type(value)]


def _texts(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else v if isinstance(v, str) else
                     ("true" if v else "false") if isinstance(v, bool) else
                     v.text if isinstance(v, _Number) else _json_text(v) for v in values], pa.string())


def _nested(values: list[Any]) -> pa.Array | None:
    """Objects or arrays through pyarrow (one column), if that is exact."""
    lines = b"".join(b'{"v":' + (b"null" if v is None else _json_text(v).encode()) + b"}\n" for v in values)
    table = _arrow_table(lines)
    return _converted(values) if table is None else table.column("v").combine_chunks()


def _converted(values: list[Any]) -> pa.Array | None:
    """Objects or arrays through pyarrow's conversion of Python values (which counts the nulls of
    a list right, see the module doc), if every number is exact in the type it infers."""
    try:
        plain = [_plain(v) for v in values]
        array = pa.array(plain)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError):
        return None  # beyond int64, not exactly a double, or types that do not merge
    # pyarrow also takes true for 1.0 in a list of numbers: keep only what reads back the same.
    return array if all(_same(a, b) for a, b in zip(array.to_pylist(), plain)) else None


def _same(got: Any, value: Any) -> bool:
    """``got`` (read back from Arrow) is ``value``: booleans stay booleans, an object's missing
    keys read back as null."""
    if isinstance(value, dict):
        return (isinstance(got, dict) and all(_same(got.get(k), v) for k, v in value.items())
                and all(got[k] is None for k in got.keys() - value.keys()))
    if isinstance(value, list):
        return isinstance(got, list) and len(got) == len(value) and all(map(_same, got, value))
    return (isinstance(got, bool) == isinstance(value, bool)) and got == value


def _plain(value: Any) -> Any:
    """A parsed value with its numbers as int / float; ValueError when a fraction's digits are
    more than a double holds (pyarrow refuses the integers a double cannot hold)."""
    if isinstance(value, _Number):
        if value.is_int:
            return int(value.text)
        if not _exact_double(value.text):
            raise ValueError(f"{value.text} is not exactly a double")
        return float(value.text)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
