"""Per-stream incremental state.

Shape (one JSON object per stream)::

    {"_last_modified_time": "2024-01-15T10:30:00Z",
     "_files_at_cursor": ["users/2024-01-15/b.csv", "users/2024-01-15/c.csv"]}

``_last_modified_time`` is Olake's cursor: the largest ``LastModified`` of the files synced so far.
``_files_at_cursor`` lists the keys already synced whose ``LastModified`` equals the cursor
exactly. A file is pending when it is newer than the cursor, or exactly at the cursor and not in
that list; so a file written in the same second as the cursor, after the last sync, is not lost
(a strictly-greater comparison would lose it). The list only ever holds the files of one
timestamp, so the state stays small.

An Olake state without ``_files_at_cursor`` is accepted and read as Olake does: files at the cursor
count as synced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from connector.errors import ConfigError
from connector.source.listing import FileRef

CURSOR_FIELD = "_last_modified_time"
FILES_AT_CURSOR = "_files_at_cursor"


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` (microseconds only when present), as in Olake's state."""
    value = value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class StreamState:
    """The cursor and the keys synced exactly at it. ``cursor=None``: nothing synced yet."""

    cursor: datetime | None = None
    at_cursor: frozenset[str] = frozenset()
    #: False for an Olake state (no key list): files at the cursor are taken as synced.
    exact: bool = True

    @classmethod
    def from_dict(cls, state: Mapping[str, Any] | None) -> StreamState:
        if state is not None and not isinstance(state, Mapping):
            raise ConfigError(f"state: a stream's state must be an object, not {type(state).__name__}")
        if not state or state.get(CURSOR_FIELD) in (None, ""):
            return cls()
        try:
            cursor = parse_time(str(state[CURSOR_FIELD]))
        except (ValueError, OverflowError):
            raise ConfigError(f"state: {CURSOR_FIELD} {state[CURSOR_FIELD]!r} is not an ISO-8601 time") from None
        if FILES_AT_CURSOR not in state:
            return cls(cursor, frozenset(), exact=False)
        keys = state[FILES_AT_CURSOR]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"state: {FILES_AT_CURSOR} must be a list of file keys (strings)")
        return cls(cursor, frozenset(keys))

    def to_dict(self) -> dict[str, Any]:
        if self.cursor is None:
            return {}
        return {CURSOR_FIELD: format_time(self.cursor), FILES_AT_CURSOR: sorted(self.at_cursor)}

    def is_pending(self, ref: FileRef) -> bool:
        """True when ``ref`` has not been synced according to this state."""
        if self.cursor is None or ref.last_modified > self.cursor:
            return True
        if ref.last_modified < self.cursor:
            return False
        return self.exact and ref.key not in self.at_cursor

    def pending(self, refs: Iterable[FileRef]) -> list[FileRef]:
        """The files still to sync, in (last_modified, key) order."""
        return sorted((r for r in refs if self.is_pending(r)), key=lambda r: r.sort_key)

    def advance(self, ref: FileRef) -> StreamState:
        """The state once ``ref`` (and every file before it in order) is synced."""
        if self.cursor is None or ref.last_modified > self.cursor:
            return StreamState(ref.last_modified, frozenset({ref.key}))
        if ref.last_modified == self.cursor:
            return StreamState(self.cursor, self.at_cursor | {ref.key}, exact=True)
        return self  # older than the cursor (full refresh re-reading old files): nothing moves


def _put_stream_state(out: dict[str, dict[str, Any]], stream: Any) -> None:
    """One ``{"stream_descriptor": {"name": ...}, "stream_state": {...}}`` into ``out``."""
    name = stream["stream_descriptor"]["name"]
    state = stream.get("stream_state") or {}
    if not isinstance(name, str) or not isinstance(state, dict):
        raise TypeError("stream_descriptor.name must be a string and stream_state an object")
    out[name] = dict(state)


def parse_input_state(raw: Any) -> dict[str, dict[str, Any]]:
    """Per-stream states from an Airbyte ``--state`` file.

    Accepts a list of STREAM state messages (``[{"type": "STREAM", "stream": {...}}]``), a GLOBAL
    state's ``stream_states``, the legacy ``{"type": "LEGACY", "data": {...}}`` / ``{"data": {...}}``
    and Olake's plain ``{"<stream>": {"_last_modified_time": ...}}``.
    """
    if raw is None or raw == [] or raw == {}:
        return {}
    out: dict[str, dict[str, Any]] = {}
    if isinstance(raw, list):
        for number, item in enumerate(raw):
            if not isinstance(item, dict):
                raise ConfigError("state: each entry must be a JSON object (an AirbyteStateMessage)")
            kind = item.get("type")
            try:
                if kind == "STREAM" or (kind is None and "stream" in item):
                    _put_stream_state(out, item["stream"])
                elif kind == "GLOBAL":
                    for s in item["global"].get("stream_states", []):
                        _put_stream_state(out, s)
                elif kind == "LEGACY" or "data" in item:
                    out.update(parse_input_state(item.get("data") or {}))
                else:
                    raise ConfigError(f"state: unsupported state message type {kind!r}")
            except ConfigError:
                raise
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                # A hand-edited or truncated state file: say which entry, not a traceback.
                raise ConfigError(f"state: entry {number} is not a valid {kind or 'STREAM'} state message "
                                  f"({type(exc).__name__}: {exc})") from None
        return out
    if isinstance(raw, dict):
        if raw.get("type") in ("STREAM", "GLOBAL", "LEGACY") or ("data" in raw and isinstance(raw["data"], dict)):
            return parse_input_state([raw])
        for name, value in raw.items():
            if not isinstance(value, dict):
                raise ConfigError(f"state: stream {name!r} must map to an object")
            out[name] = dict(value)
        return out
    raise ConfigError("state: must be a JSON list of state messages or an object")
