"""The exact Arrow schema discover inferred for a stream, carried in the stream's ``json_schema``.

JSON Schema cannot say which Arrow type a column was read as (a timestamp's unit and zone, a
decimal's precision, an integer's width), so discover adds the inferred schema itself, as Arrow's
IPC serialization in base64, under :data:`KEYWORD`. A configured catalog passes ``json_schema``
back unchanged, and ``read`` then parses every file with the schema that catalog declared instead
of sampling the files again: a sample taken later (newer files, the oldest one gone) can type a
column otherwise, and a value read as that other type would break the schema the destination was
given. JSON Schema validators ignore keywords they do not know, as they do Airbyte's ``airbyte_type``.
"""

from __future__ import annotations

import base64
import binascii

import pyarrow as pa

from connector.errors import ConfigError

#: The ``json_schema`` keyword holding the stream's Arrow schema.
KEYWORD = "x-des-arrow-schema"


def encode(schema: pa.Schema) -> str:
    """``schema`` as the text :data:`KEYWORD` holds."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def decode(text: object, stream: str) -> pa.Schema:
    """The schema :func:`encode` wrote as ``text``; :class:`ConfigError` naming ``stream`` if it
    is not one (a catalog edited by hand, or cut short)."""
    try:
        if not isinstance(text, str):
            raise ValueError(f"a {type(text).__name__}, not text")
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text.encode("ascii"), validate=True)))
    except (ValueError, binascii.Error, pa.ArrowException) as exc:
        raise ConfigError(f"catalog: stream {stream!r}: json_schema's {KEYWORD!r} is not an Arrow schema "
                          f"written by discover ({exc}); run discover again") from None
