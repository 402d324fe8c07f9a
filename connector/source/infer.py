"""Type inference and type mapping.

- CSV cells arrive as strings; :func:`infer_string_column` picks the narrowest type that parses
  every non-null sampled value: integer, number, boolean, timestamp, else string.
- :func:`merge_types` unifies the types seen in several samples/files: null + T -> T,
  int + double -> double, any other disagreement -> string (values are kept, never dropped).
- :func:`json_schema` maps an Arrow schema to the JSON Schema used in the Airbyte catalog.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from connector.scalars import string_array

TIMESTAMP = pa.timestamp("us", tz="UTC")
_TRUE = string_array(["true", "t", "yes", "y"])
_FALSE = string_array(["false", "f", "no", "n"])


def cast_strings(values: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast a string array to ``target``; raises ``pa.ArrowInvalid`` when a value does not fit."""
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return values
    if pa.types.is_null(target):
        if values.null_count != len(values):
            raise pa.ArrowInvalid("non-null value in a null column")
        return pa.nulls(len(values))
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        is_true = pc.is_in(lowered, _TRUE)
        is_false = pc.is_in(lowered, _FALSE)
        if not pc.all(pc.or_kleene(pc.or_(is_true, is_false), pc.is_null(values))).as_py():
            raise pa.ArrowInvalid("not a boolean")
        return pc.if_else(pc.is_null(values), pa.nulls(len(values), pa.bool_()), is_true)
    if pa.types.is_timestamp(target):
        return parse_timestamps(values)
    return pc.cast(values, target)


def parse_timestamps(values: pa.Array) -> pa.Array:
    """ISO-8601 strings -> ``timestamp[us, UTC]``; naive values are taken as UTC.

    Arrow refuses to mix zoned and naive strings in one cast, so each form is tried in turn.
    """
    try:
        return pc.cast(values, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.cast(pc.cast(values, pa.timestamp("us")), TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Both forms in one column: cast each part separately and recombine.
    zoned = pc.match_substring_regex(values, r"\d:\d\d(:\d\d(\.\d*)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$")
    none = pa.nulls(len(values), values.type)
    with_zone = pc.cast(pc.if_else(zoned, values, none), TIMESTAMP)
    naive = pc.cast(pc.cast(pc.if_else(zoned, none, values), pa.timestamp("us")), TIMESTAMP)
    return pc.coalesce(with_zone, naive)


# Narrowest first: "1" must become an integer, not a boolean or a number.
_CANDIDATES: tuple[pa.DataType, ...] = (pa.int64(), pa.float64(), pa.bool_(), TIMESTAMP)


def infer_string_column(values: pa.Array) -> pa.DataType:
    """The narrowest type every non-null value of a string array parses as (null if all null)."""
    if values.null_count == len(values):
        return pa.null()
    present = values.drop_null()
    for candidate in _CANDIDATES:
        try:
            cast_strings(present, candidate)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if pa.types.is_floating(candidate) and not pc.all(pc.is_finite(pc.cast(present, candidate))).as_py():
            continue  # "nan"/"inf" are not JSON numbers: keep such a column as text
        return candidate
    return pa.string()


def merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The type holding values of both ``a`` and ``b``; string when they disagree."""
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_decimal(a) or pa.types.is_decimal(b):
        return _merge_decimal(a, b)
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in numeric) and any(f(b) for f in numeric):
        return pa.float64()
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return TIMESTAMP
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {f.name: f.type for f in a}
        for f in b:
            fields[f.name] = merge_types(fields[f.name], f.type) if f.name in fields else f.type
        return pa.struct([pa.field(n, t) for n, t in fields.items()])
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(merge_types(a.value_type, b.value_type))
    return pa.string()


def _merge_decimal(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """A decimal holding both exactly (an integer counts as its 19 or 20 digits); text when none
    can, or when the other side is a double (a double beside an exact decimal would round it)."""
    def digits_scale(t: pa.DataType) -> tuple[int, int] | None:
        if pa.types.is_decimal(t):
            return t.precision - t.scale, t.scale
        if pa.types.is_integer(t):
            return (20 if t == pa.uint64() else 19), 0
        return None

    da, db = digits_scale(a), digits_scale(b)
    if da is None or db is None:
        return pa.string()
    scale = max(da[1], db[1])
    precision = max(da[0], db[0]) + scale
    if precision <= 38:
        return pa.decimal128(precision, scale)
    return pa.decimal256(precision, scale) if precision <= 76 else pa.string()


def merge_schemas(schemas: list[pa.Schema]) -> pa.Schema:
    """Union of fields, in first-seen order, with :func:`merge_types` on common names."""
    fields: dict[str, pa.DataType] = {}
    for schema in schemas:
        for f in schema:
            fields[f.name] = merge_types(fields[f.name], f.type) if f.name in fields else f.type
    return pa.schema([pa.field(n, t) for n, t in fields.items()])


def json_type(t: pa.DataType) -> dict:
    """JSON Schema for one Arrow type; every column is nullable."""
    if pa.types.is_null(t):
        return {"type": ["null", "string"]}
    if pa.types.is_boolean(t):
        return {"type": ["null", "boolean"]}
    if pa.types.is_integer(t):
        return {"type": ["null", "integer"]}
    if pa.types.is_floating(t):
        return {"type": ["null", "number"]}
    if pa.types.is_decimal(t):
        return {"type": ["null", "number"]}
    if pa.types.is_timestamp(t):
        return {"type": ["null", "string"], "format": "date-time"}
    if pa.types.is_date(t):
        return {"type": ["null", "string"], "format": "date"}
    if pa.types.is_time(t):  # a time of day without an offset (RFC 3339's full-time would want one)
        return {"type": ["null", "string"], "format": "time", "airbyte_type": "time_without_timezone"}
    if pa.types.is_duration(t):  # ISO 8601, exact in the column's unit: PT90.5S
        return {"type": ["null", "string"], "format": "duration"}
    if pa.types.is_struct(t):
        return {"type": ["null", "object"], "properties": {f.name: json_type(f.type) for f in t}}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return {"type": ["null", "array"], "items": json_type(t.value_type)}
    if pa.types.is_map(t):
        return {"type": ["null", "object"], "additionalProperties": json_type(t.item_type)}
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return {"type": ["null", "string"], "contentEncoding": "base64"}
    if pa.types.is_dictionary(t):
        return json_type(t.value_type)
    return {"type": ["null", "string"]}


def json_schema(schema: pa.Schema) -> dict:
    """The Airbyte ``json_schema`` of a stream whose batches have ``schema``."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {f.name: json_type(f.type) for f in schema},
    }
