"""What the source's and the destination's configurations share: JSON files read with clear
errors, and JSON Schema violations described by field (never echoing a secret)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError

if TYPE_CHECKING:
    import jsonschema


def load_json_file(path: str, what: str) -> Any:
    """The JSON value in file ``path``; :class:`ConfigError` naming ``what`` (``"config"``,
    ``"catalog"``...) and the path when the file is missing, unreadable or not JSON."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except ValueError as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None


def secret_fields(spec: Mapping[str, Any]) -> frozenset[str]:
    """The top-level properties a connector spec marks ``airbyte_secret``."""
    properties = spec.get("properties", {})
    return frozenset(k for k, v in properties.items() if isinstance(v, dict) and v.get("airbyte_secret"))


def check_against(spec: Mapping[str, Any], raw: Any, *, formats: bool = False) -> None:
    """Validate ``raw`` against the JSON Schema ``spec``; :class:`ConfigError` describing the
    first violation (the shallowest, then by path). ``formats`` also checks ``format``s."""
    import jsonschema  # ~0.2 s: imported when a config is checked, not by ``spec``

    checker = jsonschema.FormatChecker() if formats else None
    validator = jsonschema.Draft7Validator(spec, format_checker=checker)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        raise ConfigError(describe(errors[0], secret_fields(spec)))


def describe(error: jsonschema.ValidationError, secrets: frozenset[str] = frozenset()) -> str:
    """One line naming the field of ``error``; the value of a field in ``secrets`` is never quoted
    (jsonschema's messages quote the offending value)."""
    path = ".".join(str(p) for p in error.path)
    if not path and error.validator == "additionalProperties":
        return f"config: {error.message}"
    if error.validator == "required":
        return f"config{' field ' + repr(path) if path else ''}: {error.message}"
    if any(str(p) in secrets for p in error.path):
        return f"config field {path!r}: invalid value ({error.validator} check failed)"
    return f"config field {path!r}: {error.message}"
