"""A stream's ``validation_policy``: records whose values do not fit the stream's schema.

As Airbyte's file-based streams define it, a record fits when each of its values has its column's
JSON type (an integer also fits ``number``; null fits anything) and it has no value in a column the
schema lacks. Here a value fits a type when that type carries it exactly (see
:func:`connector.source.infer.cast_strings`): ``007`` is not an integer, ``2^53 + 1`` not a number.

The formats already read each column as its schema type, and keep a column whose values do not
all fit as text in that batch; only such batches are looked at row by row, so the check costs
nothing while the data fits. ``emit_record`` never comes here (the text is kept, and said so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.errors import ConfigError
from connector.scalars import bool_array
from connector.source.declared import NESTED
from connector.source.infer import TIMESTAMP, Booleans, cast_strings, json_type
from connector.source.listing import FileRef


class SchemaMismatchError(ConfigError):
    """A record does not fit the stream's schema and its ``validation_policy`` is wait_for_discover."""


@dataclass(frozen=True)
class Column:
    """What a column of the schema admits: JSON types (without null) and a string format."""

    types: frozenset[str]
    format: str | None = None
    #: An inferred nested column: the Arrow type its values must have (a struct of other field
    #: types, or a list of other items, does not fit the nested schema discover declared).
    nested: pa.DataType | None = None

    @classmethod
    def of(cls, prop: dict[str, Any]) -> Column:
        """The rule of one JSON Schema property: its types (``null`` aside) and ``format``."""
        types = prop.get("type", [])
        types = types if isinstance(types, list) else [types]
        return cls(frozenset(t for t in types if t != "null"), prop.get("format"))

    @classmethod
    def inferred(cls, t: pa.DataType) -> Column:
        """The column discover declared for an inferred Arrow type ``t``."""
        column = cls.of(json_type(t))
        return dataclasses.replace(column, nested=t) if _json_kind(t) in NESTED else column

    def admits(self, t: pa.DataType) -> bool:
        """Every value of an Arrow column of type ``t`` fits (a text column: its texts are strings)."""
        if pa.types.is_null(t):
            return True
        kind = _json_kind(t)
        if self.nested is not None and kind in NESTED and t != self.nested:
            return False
        if kind == "integer" and "number" in self.types:
            return True
        if kind == "string" and self.format and pa.types.is_string(t) and self.types == {"string"}:
            return False  # a date column read as text: some value is not a date
        return kind in self.types

    def targets(self) -> list[pa.DataType]:
        """The types a text value may be cast to, one of which it must fit."""
        out: list[pa.DataType] = []
        for kind in sorted(self.types - NESTED):
            if kind == "string":
                out.append({"date": pa.date32(), "date-time": TIMESTAMP}.get(self.format or "", pa.string()))
            else:
                out.append({"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}[kind])
        return out


def _json_kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return "object"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "array"
    return "string"


@dataclass(frozen=True)
class Validation:
    """The policy (skip_record or wait_for_discover) and the schema's columns."""

    policy: str
    columns: dict[str, Column]
    booleans: Booleans = None

    @classmethod
    def of(cls, policy: str, properties: dict[str, Any], booleans: Booleans = None) -> Validation:
        """The validation of a stream's schema ``properties`` under ``policy`` (``booleans``: the
        CSV texts of true and false, if configured)."""
        return cls(policy, {name: Column.of(prop) for name, prop in properties.items()}, booleans)

    def apply(self, batch: pa.RecordBatch, ref: FileRef, before: int) -> tuple[pa.RecordBatch, np.ndarray | None, str | None]:
        """``batch`` without the records that do not fit (skip_record), which rows it kept (None:
        all), and one example of a dropped one; wait_for_discover raises
        :class:`SchemaMismatchError` at the first one. ``before``: records of the file before this
        batch (to number the record)."""
        misfits: dict[str, tuple[np.ndarray, str]] = {}
        recast: dict[str, pa.DataType] = {}
        for name, column in zip(batch.schema.names, batch.columns):
            rule = self.columns.get(name)
            if rule is None:
                rows, reason = _valid(column), "is in a column the stream's schema does not have"
            elif rule.admits(column.type):
                continue
            elif pa.types.is_string(column.type) and rule.targets():
                rows, reason = self._misfits(column, rule.targets()), f"does not fit {'/'.join(sorted(rule.types))}"
                recast[name] = _best(rule.targets())
            else:
                rows, reason = _valid(column), f"does not fit {'/'.join(sorted(rule.types)) or 'null'}"
            if rows.any():
                misfits[name] = rows, reason
        if not misfits:
            return self._recast(batch, recast), None, None
        bad = np.logical_or.reduce([rows for rows, _ in misfits.values()])
        first = int(np.flatnonzero(bad)[0])
        name, (_, reason) = next((n, m) for n, m in misfits.items() if m[0][first])
        example = f"record {before + first + 1}: column {name!r} = {_short(batch.column(name)[first].as_py())} {reason}"
        if self.policy == "wait_for_discover":
            raise SchemaMismatchError(f"{ref.key}: {example}; validation_policy wait_for_discover stops the "
                                      "stream until discover is run again (or input_schema is changed)")
        kept = batch.filter(bool_array(~bad))
        return self._recast(kept, recast), ~bad, example

    def _misfits(self, column: pa.Array, targets: list[pa.DataType]) -> np.ndarray:
        """Rows whose text fits none of ``targets``."""
        bad = np.ones(len(column), bool)
        for target in targets:
            bad &= _misfits(column, target, self.booleans)
        return bad

    def _recast(self, batch: pa.RecordBatch, recast: dict[str, pa.DataType]) -> pa.RecordBatch:
        """The text columns whose every remaining value fits their type, cast to it."""
        if not recast:
            return batch
        columns, fields = [], []
        for field, column in zip(batch.schema, batch.columns):
            if field.name in recast and not pa.types.is_string(recast[field.name]):
                column = cast_strings(column, recast[field.name], self.booleans)
                field = pa.field(field.name, column.type)
            columns.append(column)
            fields.append(field)
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _best(targets: list[pa.DataType]) -> pa.DataType:
    """The one type a column of several admitted kinds is kept as: text, unless there is one kind."""
    return targets[0] if len(targets) == 1 else pa.string()


def _misfits(values: pa.Array, target: pa.DataType, booleans: Booleans) -> np.ndarray:
    """Rows of a string array whose value does not fit ``target``: halves of the array are cast
    until each failing piece is one value, so k bad values among n cost about 2k·log n casts."""
    bad = np.zeros(len(values), bool)
    pieces = [(0, len(values))]
    while pieces:
        start, n = pieces.pop()
        try:
            cast_strings(values.slice(start, n), target, booleans)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        if n == 1:
            bad[start] = True
        else:
            half = n // 2
            pieces += [(start, half), (start + half, n - half)]
    return bad


def _valid(column: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
