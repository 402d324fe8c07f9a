"""A process-wide cache of parsed container tails, so a warm open costs no request.

Keyed by (filesystem identity, path). Each entry remembers the container's identity (size and
mtime for local files, size/ETag where the caller or the filesystem's listing cache knows it): when
the current identity is known and differs, the entry is stale and dropped. Containers are treated
as immutable by name otherwise; writers invalidate the entry of the path they commit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import fsspec

from connector.des.format import Footer, MemberInfo


@dataclass(frozen=True, slots=True)
class CachedIndex:
    """What a reader keeps of a container it opened: footer, size, INDEX entries (in order and by
    name), the META region if it came with the tail, and the object identity they belong to."""
    footer: Footer
    size: int
    members: tuple[MemberInfo, ...]
    by_name: dict[str, MemberInfo]
    meta_region: bytes | None  # the whole META region, when it came with the tail
    identity: Any


def fs_identity(fs: fsspec.AbstractFileSystem) -> tuple[Any, ...]:
    """Protocol plus endpoint: two S3 endpoints may hold the same bucket and key."""
    options = getattr(fs, "storage_options", {}) or {}
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return (protocol, endpoint)


class IndexCache:
    """A thread-safe LRU of :class:`CachedIndex` entries."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[Any, ...], CachedIndex] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(fs: fsspec.AbstractFileSystem, path: str) -> tuple[Any, ...]:
        """The cache key of ``path`` on ``fs``: protocol, endpoint and path."""
        return (*fs_identity(fs), path)

    def get(self, key: tuple[Any, ...], identity: Any = None) -> CachedIndex | None:
        """The entry of ``key``, or None; an entry of another ``identity`` (the object changed) is
        dropped and None returned."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if identity is not None and entry.identity is not None and identity != entry.identity:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[Any, ...], entry: CachedIndex) -> None:
        """Store ``entry`` under ``key`` (the least recently used entries go beyond ``maxsize``)."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, key: tuple[Any, ...]) -> None:
        """Forget the entry of ``key``, if any."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


DEFAULT_CACHE = IndexCache()


def invalidate(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Forget the cached index of one container (call after replacing it in place)."""
    DEFAULT_CACHE.discard(IndexCache.key(fs, path))
