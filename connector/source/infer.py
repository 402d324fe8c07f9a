"""Type inference and type mapping.

- CSV cells arrive as strings; :func:`infer_string_column` picks the narrowest type that parses
  every non-null sampled value: integer, number, boolean, date, timestamp, else string.
- A value is only cast when its type carries it exactly (:func:`cast_strings` refuses the rest):
  integers fit int64 and are written canonically (``007``, ``0x1f`` stay text); numbers are finite
  and equal, as decimals, to the double they become (``2**53 + 1`` stays text).
- :func:`merge_types` unifies the types seen in several samples/files: null + T -> T,
  int + double -> double, any other disagreement -> string (values are kept, never dropped).
- :func:`json_schema` maps an Arrow schema to the JSON Schema used in the Airbyte catalog.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.scalars import bool_array, string_array

TIMESTAMP = pa.timestamp("us", tz="UTC")
_TRUE = string_array(["true", "t", "yes", "y"])
_FALSE = string_array(["false", "f", "no", "n"])


#: Configured boolean texts: (true texts, false texts), matched exactly; None: the default ones.
Booleans = tuple[tuple[str, ...], tuple[str, ...]] | None


def cast_strings(values: pa.Array, target: pa.DataType, booleans: Booleans = None) -> pa.Array:
    """Cast a string array to ``target``; raises ``pa.ArrowInvalid`` when a value does not fit it
    exactly. Empty texts are nulls in every type but text (a quoted ``""`` cell is a string).
    ``booleans``: the texts of true and false (exact matches) instead of the default ones."""
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return values
    values = _empty_to_null(values)
    if pa.types.is_null(target):
        if values.null_count != len(values):
            raise pa.ArrowInvalid("non-null value in a null column")
        return pa.nulls(len(values))
    if pa.types.is_boolean(target) and booleans is not None:
        return _exact_booleans(values, booleans)
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(values)  # not trimmed: " yes" stays text, as " 5" does
        is_true = pc.is_in(lowered, _TRUE)
        is_false = pc.is_in(lowered, _FALSE)
        if not pc.all(pc.or_kleene(pc.or_(is_true, is_false), pc.is_null(values))).as_py():
            raise pa.ArrowInvalid("not a boolean")
        return pc.if_else(pc.is_null(values), pa.nulls(len(values), pa.bool_()), is_true)
    if pa.types.is_timestamp(target):
        if _has_date_only(values):
            raise pa.ArrowInvalid("a date without a time is not an instant")
        return parse_timestamps(values)
    if pa.types.is_integer(target):
        return _integers(values, target)
    if pa.types.is_floating(target):
        return _numbers(values, target)
    return pc.cast(values, target)


def _exact_booleans(values: pa.Array, booleans: tuple[tuple[str, ...], tuple[str, ...]]) -> pa.Array:
    """``values`` as booleans by exact (case-sensitive) membership in the configured texts."""
    is_true = pc.is_in(values, string_array(list(booleans[0])))
    is_false = pc.is_in(values, string_array(list(booleans[1])))
    if not pc.all(pc.or_kleene(pc.or_(is_true, is_false), pc.is_null(values))).as_py():
        raise pa.ArrowInvalid("not a configured true or false value")
    return pc.if_else(pc.is_null(values), pa.nulls(len(values), pa.bool_()), is_true)


def _text_layout(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data bytes, start offset, byte length) of each slot of a string array, as NumPy views."""
    _, offsets, data = values.buffers()
    bounds = np.frombuffer(offsets, np.int32)[values.offset: values.offset + len(values) + 1]
    if data is None or not len(values):
        return np.zeros(0, np.uint8), bounds[:-1] * 0, np.diff(bounds)
    raw = np.frombuffer(data, np.uint8)[bounds[0]:bounds[-1]]
    return raw, bounds[:-1] - bounds[0], np.diff(bounds)


def _has_date_only(values: pa.Array) -> bool:
    """Some value is too short to hold a time of day (``2024-01-31`` is 10 bytes): Arrow would
    read it as midnight UTC, which the text does not say."""
    _, _, lengths = _text_layout(values)
    if values.null_count:
        lengths = lengths[_valid(values)]
    return bool(len(lengths)) and int(lengths.min()) <= 10


def _empty_to_null(values: pa.Array) -> pa.Array:
    _, _, lengths = _text_layout(values)
    empty = lengths == 0
    if not empty.any():
        return values
    return pc.if_else(bool_array(empty), pa.nulls(len(values), values.type), values)


def _zero_padded(values: pa.Array, allow_point: bool) -> bool:
    """Some value has a leading zero followed by more (``007``, ``-01``, ``0x1f``; ``0.5`` is fine
    when ``allow_point``): a number would drop what such text says (zip codes, codes, hex)."""
    raw, starts, lengths = _text_layout(values)
    if not len(raw):
        return False
    end = len(raw) - 1
    first = raw[np.minimum(starts, end)]
    # Only a text starting with '0' or a sign can be padded: look closer at those alone.
    maybe = np.flatnonzero(((first == 0x30) | (first == 0x2D) | (first == 0x2B)) & (lengths > 1))
    if values.null_count and len(maybe):
        maybe = maybe[_valid(values)[maybe]]
    if not len(maybe):
        return False
    at, size = starts[maybe], lengths[maybe]
    signed = (raw[at] != 0x30).astype(np.int32)
    lead = raw[np.minimum(at + signed, end)]
    after = raw[np.minimum(at + signed + 1, end)]
    padded = (lead == 0x30) & (size > signed + 1)
    if allow_point:
        padded &= (after != ord(".")) & ((after | 0x20) != ord("e"))
    return bool(padded.any())


def _valid(values: pa.Array) -> np.ndarray:
    """The validity bitmap as a NumPy mask (``np.asarray`` of Arrow arrays would import pandas)."""
    bits = np.unpackbits(np.frombuffer(values.buffers()[0], np.uint8), bitorder="little")
    return bits[values.offset: values.offset + len(values)].astype(bool)


def _integers(values: pa.Array, target: pa.DataType) -> pa.Array:
    ints = pc.cast(values, target)  # refuses non-integers and values beyond the type
    if _zero_padded(values, allow_point=False):
        raise pa.ArrowInvalid("zero-padded or non-decimal integer text")
    return ints


#: Decimal texts of at most this many bytes and without an exponent have at most 15 significant
#: digits inside the normal double range, so a double carries them exactly (DBL_DIG = 15).
_SHORT_NUMBER = 15


def _numbers(values: pa.Array, target: pa.DataType) -> pa.Array:
    floats = pc.cast(values, target)
    if not pc.all(pc.is_finite(floats)).as_py():
        raise pa.ArrowInvalid("nan or infinity is not a JSON number")
    if _zero_padded(values, allow_point=True):
        raise pa.ArrowInvalid("zero-padded number text")
    raw, _, lengths = _text_layout(values)
    text = raw.tobytes()  # bytes.find is memchr: far faster than comparing a NumPy array twice
    if b"e" in text or b"E" in text:
        _check_exact(values, floats, None)
    elif (long := lengths > _SHORT_NUMBER).any():
        _check_exact(values, floats, long)
    return floats


def _check_exact(texts: pa.Array, floats: pa.Array, suspects: np.ndarray | None) -> None:
    """Raise unless every text (or each flagged by ``suspects``) is, as a decimal, the double it
    became, as the encoder will write it (Arrow's shortest round-trip form)."""
    if suspects is not None:
        mask = bool_array(suspects)
        texts, floats = texts.filter(mask), floats.filter(mask)
    written = pc.cast(floats, pa.string())
    differ = pc.invert(pc.fill_null(pc.equal(written, texts), True))
    for text, shown in zip(texts.filter(differ).to_pylist(), written.filter(differ).to_pylist()):
        try:
            same = Decimal(text) == Decimal(shown)
        except InvalidOperation:
            same = False
        if not same:
            raise pa.ArrowInvalid(f"{text!r} is not exactly a double")


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


# Narrowest first: "1" must become an integer, not a boolean or a number; "2024-01-01" a date,
# not the instant of its midnight in UTC.
_CANDIDATES: tuple[pa.DataType, ...] = (pa.int64(), pa.float64(), pa.bool_(), pa.date32(), TIMESTAMP)


def infer_string_column(values: pa.Array, booleans: Booleans = None) -> pa.DataType:
    """The narrowest type every non-null value of a string array parses as (null if all null).
    With configured ``booleans`` (exact texts), boolean is tried first, as Airbyte infers them:
    ``0``/``1`` configured as false/true make a boolean column, not an integer one."""
    if values.null_count == len(values):
        return pa.null()
    present = _empty_to_null(values).drop_null()
    if not len(present):
        return pa.null()
    candidates = _CANDIDATES if booleans is None else (pa.bool_(),) + tuple(c for c in _CANDIDATES if c != pa.bool_())
    for candidate in candidates:
        try:
            cast_strings(present, candidate, booleans)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if pa.types.is_floating(candidate) and _integer_texts(present):
            # Whole numbers that int64 refused (beyond its range, or with a '+'): a double would
            # round most of them, so such a column is text, not number.
            return pa.string()
        return candidate
    return pa.string()


def _integer_texts(values: pa.Array) -> bool:
    """Every value is digits with an optional sign (given that each parses as a number)."""
    raw, _, _ = _text_layout(values)
    return not np.any((raw == ord(".")) | (raw == ord("e")) | (raw == ord("E")))


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


def json_schema(schema: pa.Schema, text_fallback: bool = False) -> dict:
    """The Airbyte ``json_schema`` of a stream whose batches have ``schema``.

    ``text_fallback``: the types came from a sample, and a later value that does not fit its
    column's type is kept as text (see :func:`cast_strings`), so every column also admits a string.
    """
    properties = {f.name: json_type(f.type) for f in schema}
    if text_fallback:
        properties = {name: or_text(t) for name, t in properties.items()}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": properties,
    }


#: Keywords that narrow which strings a string column admits (a date, base64, a time).
STRING_ANNOTATIONS = ("format", "contentEncoding", "airbyte_type")


def or_text(declared: dict) -> dict:
    """``declared`` widened to admit any string value too: a string column with a ``format`` (a
    date column whose later value is not a date is kept as that text) becomes ``anyOf`` the
    declared column and a plain string."""
    types = declared.get("type")
    if isinstance(types, list) and "string" not in types:
        return {**declared, "type": types + ["string"]}
    if any(k in declared for k in STRING_ANNOTATIONS):
        return {"anyOf": [declared, {"type": "string"}]}
    return declared


def declared_column(prop: dict) -> dict:
    """The column a property declares, through :func:`or_text`'s ``anyOf`` (its first branch)."""
    any_of = prop.get("anyOf")
    return any_of[0] if isinstance(any_of, list) and any_of and isinstance(any_of[0], dict) else prop
