"""Per-stream incremental state.

Shape (one JSON object per stream)::

    {"_last_modified_time": "2024-01-15T10:30:00Z",
     "_files_at_cursor": ["users/2024-01-15/b.csv", "users/2024-01-15/c.csv"],
     "_history": {"users/2024-01-14/late.csv": "2024-01-14T23:50:00Z"},
     "_history_start": "2024-01-12T10:30:00Z"}

``_last_modified_time`` is Olake's cursor: the largest ``LastModified`` of the files synced so far.
``_files_at_cursor`` lists the keys already synced whose ``LastModified`` equals the cursor
exactly, and ``_history`` the other keys synced with their ``LastModified`` at or after
``_history_start`` (the look-back window: ``lookback_window_days`` before the cursor). A file is
pending when it is newer than the cursor, or not older than ``_history_start`` and not recorded
with that same time. So a file written in the same second as the cursor after the last sync is not
lost, and neither is a *late* file: one that becomes visible after a sync with an older
``LastModified`` (slow multipart uploads, replication, copies that keep the source time), as long
as it is inside the window. Files older than ``_history_start`` count as synced.

The history is bounded: entries older than the window are dropped, and beyond
:data:`MAX_HISTORY` keys the oldest go too (``_history_start`` moves up with them); the keys at the
cursor are always kept, as they must be for same-second files.

Older forms are accepted and keep their meaning: ``{_last_modified_time, _files_at_cursor}`` (files
before the cursor count as synced), and Olake's ``{_last_modified_time}`` (files at the cursor count
as synced too; so does a ``_files_at_cursor`` of ``[]``, which only ever stood for that). A state
that nothing advanced is written back in the form that means the same.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from connector.errors import ConfigError
from connector.source.listing import FileRef

CURSOR_FIELD = "_last_modified_time"
FILES_AT_CURSOR = "_files_at_cursor"
HISTORY = "_history"
HISTORY_START = "_history_start"
#: Keys the history keeps (``_files_at_cursor`` and ``_history``), like airbyte-source-s3's; more
#: only when they share the newest time, as the keys at the cursor must all be kept.
MAX_HISTORY = 10_000
#: Default look-back window (``lookback_window_days``).
DEFAULT_LOOKBACK = timedelta(days=3)

_TICK = timedelta(microseconds=1)  # the resolution of every time here
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` (microseconds only when present), as in Olake's state."""
    value = value.astimezone(timezone.utc).replace(tzinfo=None)
    # isoformat, not strftime: "%Y" writes year 1 as "1", which no ISO-8601 parser takes back.
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"


@lru_cache(maxsize=1 << 16)
def _format_cached(value: datetime) -> str:
    # A history holds up to MAX_HISTORY times and is written out after every file: format each once.
    return format_time(value)


def parse_time(value: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without zone is taken as UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _state_time(value: Any, name: str) -> datetime:
    try:
        return parse_time(str(value))
    except (ValueError, OverflowError):
        raise ConfigError(f"state: {name} {value!r} is not an ISO-8601 time") from None


def _before(value: datetime, delta: timedelta) -> datetime:
    """``value - delta``, the earliest time instead of an OverflowError near year 1."""
    try:
        return value - delta
    except OverflowError:
        return _EARLIEST


@dataclass(frozen=True)
class StreamState:
    """What has been synced of one stream. ``cursor=None``: nothing yet.

    ``history`` maps the keys synced with a ``LastModified`` in ``[start, cursor]`` to that time;
    files older than ``start`` count as synced. ``lookback`` and ``max_history`` bound the history
    as the state advances (configuration, not state).
    """

    cursor: datetime | None = None
    history: Mapping[str, datetime] = field(default_factory=dict)
    start: datetime | None = None
    lookback: timedelta = field(default=DEFAULT_LOOKBACK, compare=False)
    max_history: int = field(default=MAX_HISTORY, compare=False)
    #: The oldest time in ``history`` when known (None: to be computed), so that advancing a
    #: state by one file does not scan its whole history to find nothing to prune.
    oldest: datetime | None = field(default=None, compare=False, repr=False)

    @property
    def at_cursor(self) -> frozenset[str]:
        """The keys synced whose ``LastModified`` is the cursor."""
        return frozenset(k for k, t in self.history.items() if t == self.cursor)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any] | None, *, lookback: timedelta = DEFAULT_LOOKBACK,
                  max_history: int = MAX_HISTORY) -> StreamState:
        """Any accepted form (see the module docstring); :class:`ConfigError` names what is wrong."""
        if state is not None and not isinstance(state, Mapping):
            raise ConfigError(f"state: a stream's state must be an object, not {type(state).__name__}")
        if not state or state.get(CURSOR_FIELD) in (None, ""):
            return cls(lookback=lookback, max_history=max_history)
        cursor = _state_time(state[CURSOR_FIELD], CURSOR_FIELD)
        keys = state.get(FILES_AT_CURSOR, [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"state: {FILES_AT_CURSOR} must be a list of file keys (strings)")
        history = _parse_history(state.get(HISTORY, {}), cursor)
        history.update((k, cursor) for k in keys)
        if HISTORY_START in state:
            start = _state_time(state[HISTORY_START], HISTORY_START)
        elif HISTORY in state:
            raise ConfigError(f"state: {HISTORY} needs {HISTORY_START} (from when the history is complete)")
        elif keys:
            start = cursor  # {cursor, files at cursor}: files before the cursor are synced
        elif cursor == _LATEST:
            raise ConfigError(f"state: {CURSOR_FIELD} {state[CURSOR_FIELD]!r} is the latest time there is")
        else:
            start = cursor + _TICK  # Olake's {cursor}: files at the cursor are synced too
        if any(t < start for t in history.values()):
            raise ConfigError(f"state: {HISTORY} holds a time before {HISTORY_START}")
        return cls(cursor, history, start, lookback, max_history)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; a state read by :meth:`from_dict` and not advanced means the same again."""
        if self.cursor is None:
            return {}
        out: dict[str, Any] = {CURSOR_FIELD: format_time(self.cursor)}
        if self.start is not None and self.start > self.cursor:
            return out  # Olake's form: everything up to the cursor is synced
        start = _EARLIEST if self.start is None else self.start  # None: no file before the cursor is synced
        older = {k: _format_cached(t) for k, t in sorted(self.history.items()) if t != self.cursor}
        out[FILES_AT_CURSOR] = sorted(self.at_cursor)
        if older or start != self.cursor:
            out[HISTORY] = older
            out[HISTORY_START] = format_time(start)
        return out

    def is_pending(self, ref: FileRef) -> bool:
        """True when ``ref`` has not been synced according to this state."""
        if self.cursor is None or ref.last_modified > self.cursor:
            return True
        if self.start is not None and ref.last_modified < self.start:
            return False
        return self.history.get(ref.key) != ref.last_modified

    def pending(self, refs: Iterable[FileRef]) -> list[FileRef]:
        """The files still to sync, in (last_modified, key) order."""
        return sorted((r for r in refs if self.is_pending(r)), key=lambda r: r.sort_key)

    def advance(self, ref: FileRef) -> StreamState:
        """The state once ``ref`` (and every file before it in order) is synced."""
        return self.advance_all([ref])

    def advance_all(self, refs: Iterable[FileRef]) -> StreamState:
        """The state once ``refs``, synced in this order (that of :meth:`pending`), are synced.

        The history is pruned to the window and to ``max_history`` keys, but never above the
        last file synced: every pending file not synced yet is at least as new as it (files are
        synced in order), so an interrupted sync resumed from any intermediate state skips none.
        """
        cursor, start = self.cursor, self.start
        oldest = self.oldest if self.oldest is not None else min(self.history.values(), default=None)
        history = dict(self.history)
        frontier = None
        for ref in refs:
            history[ref.key] = ref.last_modified
            cursor = ref.last_modified if cursor is None else max(cursor, ref.last_modified)
            oldest = ref.last_modified if oldest is None else min(oldest, ref.last_modified)
            frontier = ref.last_modified
        if frontier is None or cursor is None:
            return self
        floor = min(_before(cursor, self.lookback), frontier)
        start = floor if start is None else max(start, floor)
        start = max(start, _count_floor(history, start, min(cursor, frontier), self.max_history))
        # ``oldest`` may be too low (a key synced again with a newer time), never too high: at
        # worst this scans for nothing.
        if oldest is not None and oldest < start:
            history = {k: t for k, t in history.items() if t >= start}
            oldest = min(history.values(), default=None)
        return StreamState(cursor, history, start, self.lookback, self.max_history, oldest)


def _count_floor(history: Mapping[str, datetime], start: datetime, limit: datetime, keep: int) -> datetime:
    """The earliest time >= ``start`` from which the history holds at most ``keep`` keys, but no
    later than ``limit`` (the keys from ``limit`` on all stay, however many). A time's keys are
    kept or dropped together."""
    if len(history) <= keep:
        return start
    times = sorted(t for t in history.values() if t >= start)
    if len(times) <= keep:
        return start
    keep -= keep // 10  # down to 90%: sorting the history is then needed once per many files, not each
    first = len(times) - keep  # index of the oldest time that fits
    if keep == 0:
        cut = times[-1] + _TICK
    elif times[first - 1] != times[first]:
        cut = times[first]
    else:  # that time has more keys before the cut: drop it whole
        after = bisect.bisect_right(times, times[first])
        cut = times[after] if after < len(times) else times[-1] + _TICK
    return min(cut, limit)


def _parse_history(raw: Any, cursor: datetime) -> dict[str, datetime]:
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise ConfigError(f"state: {HISTORY} must be an object of file key -> ISO-8601 time")
    history = {key: _state_time(value, f"{HISTORY}[{key!r}]") for key, value in raw.items()}
    if any(t > cursor for t in history.values()):
        raise ConfigError(f"state: {HISTORY} holds a time after {CURSOR_FIELD}")
    return history


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
