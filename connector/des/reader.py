"""DesReader: random and batched access to a DES v1 container by range reads.

A cold open costs one ranged read of the container's tail (footer + index, and META where it
fits in ``tail_size``); a second read happens only when the index is larger than the tail. The
parsed tail goes into a process-wide cache, so the next open of the same container costs nothing.
Members are then read by range; :meth:`DesReader.read_many` coalesces nearby members into few
requests. Every inconsistency raises :class:`~connector.errors.DesFormatError`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, Literal, TypeVar, cast, overload

import fsspec

from connector.des.blob import Blob, ContainerChanged, blob_for
from connector.des.cache import DEFAULT_CACHE, CachedIndex, IndexCache
from connector.des.codecs import decompress
from connector.des.format import (
    EXTERNAL_FOLDER,
    FLAG_ENCRYPTED,
    FOOTER_SIZE,
    HEADER_SIZE,
    Footer,
    MemberInfo,
    parse_footer,
    parse_header,
    parse_index,
    duplicate_names,
    parse_meta,
)
from connector.des.target import is_bucketed, is_local, resolve, url_of
from connector.des.names import validate_member_name
from connector.des.writer import external_prefix
from connector.errors import DesFormatError, MemberNameError
from connector.storage import storage_errors

# The first GET of a cold open: footer, INDEX and META of a container of up to ~10,000 members
# (~150 bytes of INDEX + META each) in one suffix range, so a cold member read is 2 GETs. A
# container smaller than this comes whole; a bigger INDEX costs one more GET for what was missing.
DEFAULT_TAIL_SIZE = 2 * 1024 * 1024
DEFAULT_MAX_GAP = 1024 * 1024  # like the reference: merge members closer than 1 MiB
MAX_COALESCED = 64 * 1024 * 1024
META_PREFETCH_LIMIT = 16 * 1024 * 1024  # fetch META with the index when it is at most this big
_NO_CACHE: Any = object()
T = TypeVar("T")


def _refreshing(method: Callable[..., T]) -> Callable[..., T]:
    """Retry a read once with a fresh index when it failed on a cached one that turns out stale,
    or when the container changed under its name (a read by member name then reads the new one)."""

    @functools.wraps(method)
    def wrapper(self: DesReader, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except ContainerChanged:
            self.reload()
        except (DesFormatError, KeyError):
            if not self._reload_if_replaced():
                raise
        return method(self, *args, **kwargs)

    return wrapper


class DesReader:
    """Read a DES v1 container.

    ``source`` is a local path, an fsspec URL, the container's bytes, or an open binary file
    (an fsspec file is read through its filesystem by range). ``size`` may be passed when the
    caller already knows it (from a listing); ``cache=None`` disables the shared index cache.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes],
        *,
        fs: fsspec.AbstractFileSystem | None = None,
        storage_options: dict[str, Any] | None = None,
        tail_size: int = DEFAULT_TAIL_SIZE,
        cache: IndexCache | None = DEFAULT_CACHE,
        size: int | None = None,
        max_gap: int = DEFAULT_MAX_GAP,
    ) -> None:
        if tail_size < FOOTER_SIZE:
            raise ValueError(f"tail_size must be at least {FOOTER_SIZE}")
        self.tail_size, self.max_gap = tail_size, max_gap
        self.fs: fsspec.AbstractFileSystem | None = None
        self.path: str | None = None
        self._buf: bytes | None = None
        self._fileobj: IO[bytes] | None = None
        self._blob: Blob | None = None
        self._lock = threading.Lock()
        self._size = size
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._buf = bytes(source)
            self._size = len(self._buf)
            self.url = "<bytes>"
        elif hasattr(source, "read") and hasattr(source, "seek"):
            inner_fs, inner_path = getattr(source, "fs", None), getattr(source, "path", None)
            if isinstance(inner_fs, fsspec.AbstractFileSystem) and isinstance(inner_path, str):
                self.fs, self.path = inner_fs, inner_fs._strip_protocol(inner_path)
                self.url = url_of(self.fs, self.path)
                self._size = self._size if self._size is not None else getattr(source, "size", None)
            else:
                self._fileobj = cast("IO[bytes]", source)  # it reads and seeks: a binary file
                self.url = getattr(source, "name", None) or "<file>"
                self._size = source.seek(0, os.SEEK_END)
        else:
            self.fs, self.path = resolve(source, fs, storage_options)
            self.url = url_of(self.fs, self.path)
        if self.fs is not None and self.path is not None:
            self._blob = blob_for(self.fs, self.path, self.url)
        self._cache = cache
        self._meta_region: bytes | None = None
        self._external_at: dict[MemberInfo, str] = {}  # entry -> where its _bigFiles/ object was found
        self._external_blobs: dict[str, Blob] = {}  # each _bigFiles/ object's version, from its first read
        self._expected_size: int | None = None  # the size the footer describes, once known
        self._load()

    # -- public API ---------------------------------------------------------------------------

    @property
    def footer(self) -> Footer:
        """The container's footer (region offsets and lengths, member count)."""
        return self._index.footer

    @property
    def size(self) -> int:
        """Size of the container in bytes."""
        return self._index.size

    def names(self) -> list[str]:
        """Member names in the order they were written, each once (members flagged deleted are
        left out). A name the index holds more than once is listed where it first appears and
        read from its last entry, as the reference reader does."""
        return [name for name, m in self._index.by_name.items() if not m.deleted]

    def members(self) -> tuple[MemberInfo, ...]:
        """Every INDEX entry in write order, earlier copies of a duplicate name included."""
        return self._index.members

    def duplicates(self) -> dict[str, int]:
        """Names held by more than one INDEX entry, with how many each (only the last is read)."""
        return duplicate_names(self._index.members) if len(self._index.by_name) != len(self._index.members) else {}

    def __len__(self) -> int:
        return len(self._index.members)

    def __contains__(self, name: object) -> bool:
        entry = self._index.by_name.get(name) if isinstance(name, str) else None
        return entry is not None and not entry.deleted

    def __iter__(self):
        return iter(self.names())

    def info(self, name: str) -> MemberInfo:
        """The INDEX entry ``name`` is read from; KeyError naming the container if there is none."""
        entry = self._index.by_name.get(name)
        if entry is None or entry.deleted:
            raise KeyError(f"{self.url}: no member named {name!r}")
        return entry

    @_refreshing
    def meta(self, name: str) -> dict[str, Any]:
        """The member's META object (``size``, ``sha256``, ``codec``... and the writer's keys)."""
        return self._meta_of(self.info(name), fetch=True)

    @_refreshing
    def read(self, name: str) -> bytes:
        """The member's bytes: decompressed, fetched from ``_bigFiles/`` if external, verified."""
        return self._read_entry(self.info(name))

    @_refreshing
    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """Read several members, coalescing neighbours into few range requests."""
        entries = [self.info(n) for n in names]
        out: dict[str, bytes] = {}
        internal = sorted((e for e in entries if not e.external), key=lambda e: e.offset)
        spans = _coalesce(internal, self.max_gap)
        # A span ends where its furthest member ends: in a hostile index a later-starting member
        # may end before an earlier, overlapping one.
        blobs = self._read_ranges([(s[0].offset, max(e.offset + e.length for e in s)) for s in spans])
        for span, blob in zip(spans, blobs):
            base = span[0].offset
            for e in span:
                out[e.name] = self._finish(e, blob[e.offset - base : e.offset - base + e.length])
        for e in entries:
            if e.external:
                out[e.name] = self._finish(e, self._read_external(e))
        return {e.name: out[e.name] for e in entries}

    def read_range(self, start: int, end: int) -> bytes:
        """Raw bytes ``[start, end)`` of the container (e.g. the whole DATA region)."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"{self.url}: range [{start}, {end}) outside the container (size {self.size})")
        return self._read_range(start, end)

    @_refreshing
    def read_member_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of one member's content (clamped to it), fetching only those.

        Plain members, inside the container or in ``_bigFiles/``, cost one range request and are
        not checksummed (the hash covers the whole member); compressed ones are read whole.
        """
        entry = self.info(name)
        if entry.compressed or entry.flags & FLAG_ENCRYPTED:
            return self.read(name)[max(start, 0) : max(end, 0)]
        lo, hi = min(max(start, 0), entry.length), min(max(end, 0), entry.length)
        if hi <= lo:
            return b""
        if not entry.external:
            return self._read_range(entry.offset + lo, entry.offset + hi)
        return self._read_external_range(entry, lo, hi)

    def open(self, name: str, block_size: int = 1024 * 1024) -> IO[bytes]:
        """A seekable binary file over one member, reading by range (no full download)."""
        from connector.des.fs import DesFileSystem  # the file is fsspec's; fs imports this module

        self.info(name)
        return DesFileSystem(fo=self).open(name, block_size=block_size)

    def verify(self) -> int:
        """Re-read every INDEX entry (earlier copies of a duplicate name too) and check its sha256
        (crc32 for record members) and size; return how many were checked. Duplicates are not an
        error here: see :meth:`duplicates`. Raises :class:`DesFormatError` listing the members
        that do not match."""
        return sum(n for check, n in self.verify_counts().items() if check != "data_crc32")

    @_refreshing
    def verify_counts(self) -> dict[str, int]:
        """:meth:`verify`, returning how many members each check covered: ``sha256``, ``crc32``
        (record members), ``size`` (META with no checksum: only the length could be checked); and
        ``data_crc32`` 1 when the DATA region's own CRC-32 was checked too."""
        if self._buf is not None or self._fileobj is not None or (self.fs is not None and is_local(self.fs)):
            parse_header(self._read_range(0, HEADER_SIZE), self.url)
        self._load_meta_region()
        bad: list[str] = []
        entries = [m for m in self._index.members if not m.deleted]
        counts = {"sha256": 0, "crc32": 0, "size": 0}
        for entry in entries:
            try:
                counts[self._verify_one(entry)] += 1
            except DesFormatError as exc:
                bad.append(str(exc))
        if entries:
            try:
                counts["data_crc32"] = self._verify_data_crc(entries[0])
            except DesFormatError as exc:
                bad.append(str(exc))
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise DesFormatError(f"{self.url}: {len(bad)} member(s) failed verification: " + "; ".join(bad[:5]) + more)
        return counts

    def close(self) -> None:
        """Nothing to release (reads are stateless range requests); kept for ``with``."""

    def __enter__(self) -> DesReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DesReader({self.url!r}, members={len(self)})"

    # -- opening ------------------------------------------------------------------------------

    @property
    def identity(self) -> Any:
        """The version of the container the index belongs to (ETag; size and mtime locally)."""
        return self._index.identity

    def modified(self) -> Any:
        """The container's modification time (a timezone-aware datetime)."""
        if self._blob is None:
            raise NotImplementedError(f"{self.url}: a container given as bytes or a plain file has no modification time")
        with self._storage("reading the modification time"):
            return self._blob.stat_modified()

    def reload(self) -> None:
        """Forget the index (also in the shared cache) and read the container's tail again."""
        if self._cache is not None and self.fs is not None and self.path is not None:
            self._cache.discard(IndexCache.key(self.fs, self.path))
        old = self._blob, self._size, self._expected_size
        self._external_blobs = {}
        if self._blob is not None:
            assert self.path is not None  # a blob is only ever made for a container at a path
            self._blob = blob_for(self.fs, self.path, self.url)
            self._size = None
        try:
            self._load()
        except BaseException:
            # The old index stays with the old version's identity, so its reads keep failing
            # instead of reading the new object at the old offsets.
            self._blob, self._size, self._expected_size = old
            raise

    def refresh(self) -> bool:
        """Make sure the index is the container's current version (at most one small request;
        a read costs none for this, as every read checks it). True when it had to be reloaded."""
        if self._blob is None:
            return False
        with self._storage("checking the container's version"):
            if self._blob.unchanged():
                return False
        self.reload()
        return True

    def _identity(self) -> Any:
        if self._blob is not None:
            with self._storage("reading the container's identity"):
                identity = self._blob.current_identity()
            if self._blob.size is not None:
                self._size = self._blob.size
            return identity
        return self._size

    def _load(self) -> None:
        key = None
        if self._cache is not None and self.fs is not None and self.path is not None:
            key = IndexCache.key(self.fs, self.path)
            identity = self._identity()
            cached = self._cache.get(key, identity)
            if cached is not None:
                if self._blob is not None:
                    self._blob.expect(cached.identity, cached.size)
                self._index = cached
                self._meta_region = cached.meta_region
                self._expected_size = cached.size
                self._from_cache = True
                return
        else:
            identity = self._identity() if self.fs is not None else self._size
        self._from_cache = False
        if self._blob is not None:
            self._blob.expect(identity, self._size)
        self._index = self._read_tail(identity)
        self._meta_region = self._index.meta_region
        if key is not None and self._cache is not None:
            self._cache.put(key, self._index)

    def _reload_if_replaced(self) -> bool:
        """After an error on an index that came from the cache, read the tail again: True when the
        container changed under its name (its footer differs; the caller retries once), False
        when the index was right and the error stands. Remote objects carry no cheap identity on
        a ranged GET, so this is how a container replaced by another process is noticed."""
        if not getattr(self, "_from_cache", False) or self._cache is None or self.fs is None or self.path is None:
            return False
        old = self._index
        self.reload()
        return (self._index.footer, self._index.size) != (old.footer, old.size)

    def _read_tail(self, identity: Any) -> CachedIndex:
        size = self._size
        if size is not None:
            if size < HEADER_SIZE + FOOTER_SIZE:
                raise DesFormatError(f"{self.url}: truncated: {size} bytes, a DES container has at least {HEADER_SIZE + FOOTER_SIZE}")
            tail_start = max(0, size - self.tail_size)
            tail = self._read_range(tail_start, size)
        else:
            tail = self._read_suffix(self.tail_size)
            if len(tail) < self.tail_size:
                size = len(tail)
        footer = parse_footer(tail, self.url, size)
        if size is None:
            size = footer.end  # writers lay the regions out back to back
            if size < len(tail):
                raise DesFormatError(f"{self.url}: footer regions end at {size} but the container is larger (corrupt footer)")
        self._expected_size = size
        tail_start = size - len(tail)
        if tail_start == 0:
            parse_header(tail, self.url)
        # One more read, only when the index (and META, if small) did not fit in the tail.
        lo = footer.index_start
        if footer.meta_length <= META_PREFETCH_LIMIT:
            lo = min(lo, footer.meta_start)
        if lo < tail_start:
            tail = self._read_range(lo, tail_start) + tail
            tail_start = lo
        view = memoryview(tail)
        index_raw = view[footer.index_start - tail_start : footer.index_start - tail_start + footer.index_length]
        members = parse_index(index_raw, footer, self.url)
        if self._blob is not None:
            identity = self._blob.identity  # S3: the ETag the tail's GET answered with
        meta_region = None
        if footer.meta_start >= tail_start:
            meta_region = bytes(view[footer.meta_start - tail_start : footer.meta_start - tail_start + footer.meta_length])
        return CachedIndex(
            footer=footer,
            size=size,
            members=tuple(members),
            by_name={m.name: m for m in members},
            meta_region=meta_region,
            identity=identity,
        )

    # -- byte access --------------------------------------------------------------------------

    def _storage(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Storage failures as OSError naming the container and the operation (the storage policy's
        :func:`connector.storage.storage_errors`)."""
        return storage_errors(self.url, what)

    @contextlib.contextmanager
    def _size_checked_on_failure(self) -> Iterator[None]:
        """A failed range read of a remote container whose size was taken from its own footer (no
        HEAD on open) may mean the object is shorter than the footer says (e.g. cut at the front):
        S3 answers "range not satisfiable". One size request then tells a corrupt container
        (:class:`DesFormatError`) from a storage failure (the original OSError)."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, ContainerChanged)) or self._expected_size is None:
                raise
            try:
                actual = self.fs.size(self.path) if self.fs is not None else None
            except Exception:  # noqa: BLE001 - the original failure is the one to report
                raise exc from None
            if isinstance(actual, int) and actual != self._expected_size:
                raise DesFormatError(f"{self.url}: truncated or corrupt: the footer describes a container of "
                                     f"{self._expected_size} bytes, the object holds {actual}") from exc
            raise

    def _read_suffix(self, n: int) -> bytes:
        assert self.fs is not None
        try:
            with self._storage("reading the tail"):
                assert self._blob is not None
                tail = self._blob.read_suffix(n)
                if self._blob.size is not None:
                    self._size = self._blob.size
                return tail
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}: no such container") from None
        except ContainerChanged:
            raise
        except (ValueError, OSError) as exc:
            # Some stores refuse a suffix range on objects shorter than it, or do not do suffixes.
            try:
                with self._storage("reading the size"):
                    self._size = self.fs.size(self.path)
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.url}: no such container") from None
            if self._size is None:
                raise DesFormatError(f"{self.url}: cannot read the tail ({exc})") from exc
            return self._read_range(max(0, self._size - n), self._size)

    def _read_range(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        if self._buf is not None:
            data = self._buf[start:end]
        elif self._fileobj is not None:
            with self._lock:
                self._fileobj.seek(start)
                data = self._fileobj.read(end - start)
        else:
            assert self.fs is not None
            assert self._blob is not None
            with self._size_checked_on_failure(), self._storage(f"reading bytes [{start}, {end})"):
                data = self._blob.read(start, end)
        if len(data) != end - start:
            raise DesFormatError(f"{self.url}: truncated: wanted bytes [{start}, {end}), got {len(data)} bytes")
        return data

    def _read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        if not ranges:
            return []
        if self.fs is None or len(ranges) == 1:
            return [self._read_range(s, e) for s, e in ranges]
        assert self._blob is not None
        with self._size_checked_on_failure(), self._storage(f"reading {len(ranges)} byte ranges"):
            blobs = self._blob.read_ranges(ranges)
        for (s, e), blob in zip(ranges, blobs):
            if len(blob) != e - s:
                raise DesFormatError(f"{self.url}: truncated: wanted bytes [{s}, {e}), got {len(blob)} bytes")
        return blobs

    def _read_entry(self, entry: MemberInfo) -> bytes:
        """One INDEX entry's bytes: decompressed, fetched from ``_bigFiles/`` if external, verified."""
        if entry.external:
            return self._finish(entry, self._read_external(entry))
        return self._finish(entry, self._read_range(entry.offset, entry.offset + entry.length))

    def _external_candidates(self, entry: MemberInfo) -> list[str]:
        """Where an external member's object may be, in the order tried: the object META's
        ``external_key`` names (checked, never followed blindly), then ``<container without
        .des>/_bigFiles/<name>`` (this project's writer), then ``<folder of the
        container>/_bigFiles/<name>`` (where the reference's S3 reader looks)."""
        if self.fs is None or self.path is None:
            raise DesFormatError(f"{self.url}: member {entry.name!r} is stored in _bigFiles/, which needs the container's location")
        try:
            validate_member_name(entry.name)
        except MemberNameError as exc:
            raise DesFormatError(f"{self.url}: external member name refused: {exc}") from None
        candidates: list[str] = []
        declared = (self._meta_of(entry, fetch=True) or {}).get("external_key")
        if declared is not None:
            candidates.append(self._declared_external(entry, declared))
        folder = self.path.rpartition("/")[0]
        for base in (external_prefix(self.path), folder):
            path = f"{base}/{EXTERNAL_FOLDER}/{entry.name}" if base else f"{EXTERNAL_FOLDER}/{entry.name}"
            if path not in candidates:
                candidates.append(path)
        return candidates

    def _declared_external(self, entry: MemberInfo, key: object) -> str:
        """The path META's ``external_key`` designates, or :class:`DesFormatError` when it may not be
        followed: it must end in ``_bigFiles/<name>``, hold no ``..`` and name an object in the
        container's own bucket (object stores: the key is bucket-relative) or, elsewhere, under
        the container's folder (the key is relative to it, or absolute inside it)."""
        assert self.fs is not None and self.path is not None
        suffix = f"{EXTERNAL_FOLDER}/{entry.name}"
        refused = DesFormatError(f"{self.url}: member {entry.name!r}: META external_key {key!r} points outside "
                                 f"a {EXTERNAL_FOLDER}/ folder of the container's {_scope(self.fs)}")
        if not isinstance(key, str) or "\\" in key or "://" in key or not (key == suffix or key.endswith("/" + suffix)):
            raise refused
        if any(part in ("", ".", "..") for part in key.lstrip("/").split("/")):
            raise refused
        if is_bucketed(self.fs):
            if key.startswith("/"):
                raise refused
            return f"{self.path.partition('/')[0]}/{key}"
        folder = self.path.rpartition("/")[0]
        path = key if key.startswith("/") else (f"{folder}/{key}" if folder else key)
        if not (path.startswith(folder + "/") if folder else not key.startswith("/")):
            raise refused
        if is_local(self.fs):
            real_folder = os.path.realpath(folder or ".")
            real = os.path.realpath(path)
            if os.path.commonpath([real_folder, real]) != real_folder:
                raise refused  # a symlink leading out of the folder
        return path

    def _read_external_range(self, entry: MemberInfo, lo: int, hi: int | None) -> bytes:
        """Bytes ``[lo, hi)`` of an external member's object (``hi=None``: all of it), from the
        first candidate location that holds it; the location found is remembered."""
        assert self.fs is not None
        found = self._external_at.get(entry)
        candidates = [found] if found is not None else self._external_candidates(entry)
        for path in candidates:
            try:
                with self._storage(f"reading external object {path}"):
                    if hi is None:
                        data = self.fs.cat_file(path)
                    else:
                        data = self._external_blob(path).read(lo, hi)
            except FileNotFoundError:
                continue
            self._external_at[entry] = path
            if len(data) < min(entry.length if hi is None else hi, entry.length) - lo:
                raise DesFormatError(f"{self.url}: member {entry.name!r}: external object {path} is shorter than "
                                     f"the {entry.length} bytes the index says")
            return data
        tried = ", ".join(candidates)
        raise DesFormatError(f"{self.url}: member {entry.name!r}: external object is missing (looked for {tried})")

    def _external_blob(self, path: str) -> Blob:
        """Ranged reads of one ``_bigFiles/`` object, checked against the version first read (an
        object replaced between two ranges of one member raises ``ContainerChanged``)."""
        blob = self._external_blobs.get(path)
        if blob is None:
            assert self.fs is not None
            blob = self._external_blobs[path] = blob_for(self.fs, path, f"{self.url} (external object {path})")
        return blob

    def _read_external(self, entry: MemberInfo) -> bytes:
        # One ranged GET: the length is in the index, and a whole-object read would first ask the
        # store for the size (s3fs: a HEAD). One byte more than the index says catches an object
        # that grew; an empty member cannot be asked for by range.
        if entry.length == 0:
            data = self._read_external_range(entry, 0, None)
        else:
            data = self._read_external_range(entry, 0, entry.length + 1)
        if len(data) != entry.length:
            raise DesFormatError(f"{self.url}: member {entry.name!r}: external object {self._external_at.get(entry)} "
                                 f"is longer than the {entry.length} bytes the index says")
        return data

    # -- META and verification ----------------------------------------------------------------

    def _load_meta_region(self) -> None:
        if self._meta_region is None:
            f = self.footer
            self._meta_region = self._read_range(f.meta_start, f.meta_start + f.meta_length)

    @overload
    def _meta_of(self, entry: MemberInfo, fetch: Literal[True]) -> dict[str, Any]: ...

    @overload
    def _meta_of(self, entry: MemberInfo, fetch: bool) -> dict[str, Any] | None: ...

    def _meta_of(self, entry: MemberInfo, fetch: bool) -> dict[str, Any] | None:
        """The member's META; None when it is not in memory and ``fetch`` is false."""
        if self._meta_region is not None:
            lo = entry.meta_offset - self.footer.meta_start
            raw = self._meta_region[lo : lo + entry.meta_length]
        elif fetch:
            raw = self._read_range(entry.meta_offset, entry.meta_offset + entry.meta_length)
        else:
            return None
        return parse_meta(raw, self.url, entry.name)

    def _finish(self, entry: MemberInfo, stored: bytes) -> bytes:
        """Decompress and verify one member's stored bytes."""
        if entry.flags & FLAG_ENCRYPTED:
            raise DesFormatError(f"{self.url}: member {entry.name!r} is encrypted (flag 0x4), which this reader does not decrypt")
        need_meta = entry.compressed
        meta = self._meta_of(entry, fetch=need_meta)
        data = stored
        if entry.compressed:
            assert meta is not None
            size = meta.get("size")
            codec = meta.get("codec")
            if not isinstance(size, int) or size < 0 or not isinstance(codec, str):
                raise DesFormatError(f"{self.url}: compressed member {entry.name!r} lacks a valid 'size' and 'codec' in META")
            data = decompress(stored, codec, size, f"{self.url}: member {entry.name!r}")
        if meta is not None:
            self._check(entry, meta, data)
        return data

    def _check(self, entry: MemberInfo, meta: dict[str, Any], data: bytes) -> None:
        size = meta.get("size")
        if isinstance(size, int) and size != len(data):
            raise DesFormatError(f"{self.url}: member {entry.name!r} has {len(data)} bytes, META says {size}")
        expected = meta.get("sha256")
        if isinstance(expected, str) and hashlib.sha256(data).hexdigest() != expected:
            raise DesFormatError(f"{self.url}: member {entry.name!r}: checksum mismatch (sha256)")
        crc = meta.get("crc32")
        if isinstance(crc, int) and not isinstance(crc, bool) and zlib.crc32(data) != crc:
            raise DesFormatError(f"{self.url}: member {entry.name!r}: checksum mismatch (crc32)")

    def _verify_one(self, entry: MemberInfo) -> str:
        """Check one member; which check covered it (``sha256``, ``crc32`` or only ``size``)."""
        meta = self._meta_of(entry, fetch=True)
        assert meta is not None
        data = self._read_entry(entry)
        self._check(entry, meta, data)
        if isinstance(meta.get("sha256"), str):
            return "sha256"
        return "crc32" if isinstance(meta.get("crc32"), int) else "size"

    def _verify_data_crc(self, first: MemberInfo) -> int:
        """1 if the first member's META carries ``data_crc32`` and the DATA region matches it."""
        expected = data_crc32_of(self._meta_of(first, fetch=True))
        if expected is None:
            return 0
        f = self.footer
        if zlib.crc32(self._read_range(f.data_start, f.data_start + f.data_length)) != expected:
            raise DesFormatError(f"{self.url}: DATA region: checksum mismatch (data_crc32)")
        return 1


def data_crc32_of(meta: dict[str, Any] | None) -> int | None:
    """The DATA region's CRC-32 a first member's META declares (8 hex digits), or None."""
    value = (meta or {}).get("data_crc32")
    if isinstance(value, str) and len(value) == 8:
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


def _scope(fs: fsspec.AbstractFileSystem) -> str:
    return "bucket" if is_bucketed(fs) else "folder"


def _coalesce(entries: list[MemberInfo], max_gap: int) -> list[list[MemberInfo]]:
    """Group offset-sorted members into spans whose gaps are at most ``max_gap`` bytes."""
    spans: list[list[MemberInfo]] = []
    end = 0  # furthest end of the current span
    for e in entries:
        if spans:
            span = spans[-1]
            if e.offset - end <= max_gap and max(end, e.offset + e.length) - span[0].offset <= MAX_COALESCED:
                span.append(e)
                end = max(end, e.offset + e.length)
                continue
        spans.append([e])
        end = e.offset + e.length
    return spans
