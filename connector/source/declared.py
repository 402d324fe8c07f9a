"""Declared stream schemas (a stream's ``input_schema``): parsed, normalized, and turned into the
Arrow types the formats cast to.

Accepted forms, as in Airbyte's file-based streams: a ``{"column": "type"}`` mapping (or its JSON
text, Airbyte's own form), types ``string``, ``integer``, ``number`` (or ``float``), ``boolean``,
``object``, ``array``, ``null``, plus ``date`` and ``date-time``; or a JSON Schema object with
``properties`` whose ``type`` is one of those or a list of them (``format`` date / date-time).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from connector.errors import ConfigError
from connector.source.infer import TIMESTAMP

#: JSON types of a declared column.
JSON_TYPES = frozenset({"null", "boolean", "integer", "number", "string", "object", "array"})
#: Names of the mapping form -> (JSON type, format).
_NAMES: dict[str, tuple[str, str | None]] = {
    **{t: (t, None) for t in JSON_TYPES},
    "float": ("number", None),
    "date": ("string", "date"),
    "date-time": ("string", "date-time"),
    "timestamp": ("string", "date-time"),
}
#: JSON types whose values are read as the file gives them (no cast).
NESTED = frozenset({"object", "array"})


def declared_properties(raw: Any, field: str, context: str = "") -> dict[str, dict[str, Any]]:
    """``input_schema`` in any accepted form -> JSON Schema ``properties``, each column nullable
    (``{"type": ["null", T...], "format"?}``); :class:`ConfigError` naming ``field`` and the column
    (``context``, e.g. `` (stream 'x')``, follows the field's name)."""
    try:
        return _properties(raw, field)
    except _Bad as bad:
        raise ConfigError(f"config field '{bad.field}'{context}: {bad.problem}") from None


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _properties(raw: Any, field: str) -> dict[str, dict[str, Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise _Bad(field, f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise _Bad(field, "expected a non-empty object of columns, or a JSON Schema with properties")
    if isinstance(raw.get("properties"), dict):
        properties = {name: _from_json_schema(spec, f"{field}.properties.{name}") for name, spec in raw["properties"].items()}
    else:
        properties = {name: _from_name(spec, f"{field}.{name}") for name, spec in raw.items()}
    if not properties:
        raise _Bad(field, "declares no column")
    blank = [name for name in properties if not name.strip()]
    if blank:
        raise _Bad(field, "a column name is blank")
    return properties


def _from_name(spec: Any, field: str) -> dict[str, Any]:
    if not isinstance(spec, str):
        raise _Bad(field, f"expected a type name (string, integer, number, boolean, "
                          f"date, date-time, object, array), not {json.dumps(spec)}")
    found = _NAMES.get(spec.strip().casefold())
    if found is None:
        raise _Bad(field, f"unknown type {spec!r} "
                          f"(one of {', '.join(sorted(_NAMES))})")
    kind, fmt = found
    return _nullable([kind], fmt)


def _from_json_schema(spec: Any, field: str) -> dict[str, Any]:
    if isinstance(spec, str):
        return _from_name(spec, field)
    if not isinstance(spec, dict) or "type" not in spec:
        raise _Bad(field, "expected a JSON Schema with a 'type'")
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    unknown = [t for t in types if t not in JSON_TYPES]
    if unknown or not types:
        raise _Bad(f"{field}.type", f"unknown JSON type {unknown[0] if unknown else None!r}")
    fmt = spec.get("format")
    if fmt not in (None, "date", "date-time"):
        fmt = None  # other formats are not checked (as Airbyte's validation does not check them)
    if fmt is not None and "string" not in types:
        raise _Bad(f"{field}.format", f"{fmt!r} applies to type 'string'")
    return _nullable(types, fmt)


def _nullable(types: list[str], fmt: str | None) -> dict[str, Any]:
    ordered = ["null"] + [t for t in dict.fromkeys(types) if t != "null"]
    return {"type": ordered, "format": fmt} if fmt else {"type": ordered}


def arrow_type(prop: dict[str, Any]) -> pa.DataType | None:
    """The type a declared column is read as; None: as the file gives it (objects, arrays)."""
    types = set(prop["type"]) - {"null"}
    if types and types <= NESTED:
        return None
    kinds = {"number" if t == "integer" else t for t in types - NESTED}
    if "string" in types or len(kinds) > 1 or (types & NESTED):
        fmt = prop.get("format") if types == {"string"} else None
        return {"date": pa.date32(), "date-time": TIMESTAMP}.get(fmt or "", pa.string())
    if "number" in types:
        return pa.float64()
    if "integer" in types:
        return pa.int64()
    if "boolean" in types:
        return pa.bool_()
    return pa.string()  # declared null only: anything present does not fit


def arrow_schema(properties: dict[str, dict[str, Any]]) -> pa.Schema:
    """The Arrow schema the formats read a declared stream with (objects and arrays left out: the
    formats then keep them as the files give them)."""
    fields = [(name, arrow_type(prop)) for name, prop in properties.items()]
    return pa.schema([pa.field(name, t) for name, t in fields if t is not None])
