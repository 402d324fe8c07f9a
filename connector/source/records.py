"""The Arrow -> JSON encoder, where the source has always imported it from; it lives in
:mod:`connector.records`, shared with the store."""

from connector.records import json_texts, object_lines, record_lines

__all__ = ["json_texts", "object_lines", "record_lines"]
