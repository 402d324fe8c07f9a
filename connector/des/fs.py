"""``des://``: an fsspec filesystem over the members of one DES container.

Like fsspec's ``zip://``, the container is the filesystem and its members are the files::

    fsspec.open("des://data/a.csv::s3://bucket/x.des", s3={"anon": False})
    fsspec.filesystem("des", fo="s3://bucket/x.des", target_options={...}).ls("data")

Opening costs one ranged GET of the container's tail (two if the index outgrows the tail), and
nothing once the index is in the shared :class:`~connector.des.cache.IndexCache`. A member is read
by range, ``cat`` of many members coalesces neighbours into few requests, and ``open`` gives an
fsspec buffered file (:class:`~connector.des.file.DesMemberFile`) whose ``read()`` of a whole
member is one request. Every read is checked against the container's version
(:mod:`connector.des.blob`). Listing is linear in the member count.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.archive import AbstractArchiveFileSystem
from fsspec.core import split_protocol
from fsspec.utils import tokenize

from connector.des.cache import DEFAULT_CACHE, IndexCache
from connector.des.file import DesMemberFile
from connector.des.fswrite import MemberOptions, WriteSession, write_one_member
from connector.des.reader import DEFAULT_TAIL_SIZE, DesReader
from connector.des.target import url_of
from connector.des.writer import DEFAULT_BIG_FILE_THRESHOLD
from connector.errors import DesFormatError

#: What a ``des://`` URL without its container (no ``::``) is told.
NO_CONTAINER = ("des:// needs the container after '::': 'des://<member>::<container URL>', e.g. "
                "pd.read_csv('des://users/a.csv::out/testdata.des'), or fsspec.filesystem('des', fo=<container URL>)")


class DesFileSystem(AbstractArchiveFileSystem):
    """A DES v1 container as a filesystem.

    Parameters
    ----------
    fo:
        The container: a path or URL (``s3://bucket/x.des``), an open binary file, or a
        :class:`~connector.des.reader.DesReader`.
    target_protocol, target_options:
        Filesystem of the container when ``fo`` is a path (inferred from the URL otherwise) and
        the options to build it with (credentials, ``endpoint_url``...).
    tail_size:
        Bytes fetched from the end on a cold open (footer + index + META where they fit).
    index_cache:
        Where parsed indexes are kept, shared across instances so a warm open costs no request
        (default: the process-wide cache; ``None`` disables it).
    mode:
        ``"r"`` (default) reads; a member opened with ``"wb"`` then creates the container holding
        just that member, which must not exist yet. ``"w"`` is a write session: members opened with
        ``"wb"`` are added as they close and the container (replacing any of that name) appears
        when the filesystem is closed (``close()`` or the end of a ``with`` block); an exception
        in the block or ``discard()`` leaves nothing. See :mod:`connector.des.fswrite`.
    compression, big_file_threshold:
        How written members are stored (as in :class:`~connector.des.writer.DesWriter`).
    """

    protocol = "des"
    root_marker = ""
    cachable = False

    def __init__(
        self,
        fo: str | os.PathLike[str] | Any = "",
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        tail_size: int = DEFAULT_TAIL_SIZE,
        index_cache: IndexCache | None = DEFAULT_CACHE,
        mode: str = "r",
        compression: str | None = None,
        big_file_threshold: int | None = DEFAULT_BIG_FILE_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("r", "w"):
            raise ValueError(f"des:// mode must be 'r' or 'w', not {mode!r}")
        self.mode = mode
        self._tail_size, self._cached = tail_size, index_cache is not None
        self._write_options = MemberOptions(compression=compression, big_file_threshold=big_file_threshold)
        self._reader: DesReader | None = None
        self._missing: FileNotFoundError | None = None
        self._session: WriteSession | None = None
        self.target: fsspec.AbstractFileSystem | None = None
        self.target_path: str | None = None
        if isinstance(fo, DesReader):
            self._reader = fo
            self._tail_size, self._cached = fo.tail_size, fo._cache is not None
            self.target, self.target_path = fo.fs, fo.path
        elif isinstance(fo, (str, os.PathLike)):
            fo = os.fspath(fo)
            if not fo:
                raise ValueError(NO_CONTAINER)
            protocol, _ = split_protocol(fo)
            self.target = fsspec.filesystem(target_protocol or protocol or "file", **(target_options or {}))
            self.target_path = self.target._strip_protocol(fo)
            if mode == "w":
                self._session = WriteSession(self.target, self.target_path, overwrite=True, **self._write_options)
            else:
                try:
                    self._reader = DesReader(self.target_path, fs=self.target, tail_size=tail_size, cache=index_cache)
                except FileNotFoundError as exc:
                    self._missing = exc  # writing one member may create it; reading says it is missing
        else:
            if mode == "w":
                raise ValueError("des:// mode 'w' needs the container's path or URL, not a file object")
            self._reader = DesReader(fo, tail_size=tail_size, cache=index_cache)
        # What fsspec's archive helpers expect.
        if self._reader is not None:
            self.fo = self._reader.url
        else:
            assert self.target_path is not None  # a container given as bytes or a file object has a reader
            self.fo = url_of(self.target, self.target_path)
        self.dir_cache: dict[str, dict[str, Any]] | None = None
        self._children: dict[str, dict[str, dict[str, Any]]] = {}
        self._indexed: Any = None  # the index the listing was built from

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        # Member paths are relative to the container's root, which "" and "." both name
        # ("des://." is a root URL for clients that refuse an empty one, such as dlt).
        path = super()._strip_protocol(path).lstrip("/")
        if path == "." or path.startswith("./"):
            path = path[2:]
        return path

    def __repr__(self) -> str:
        return f"<DesFileSystem {self.fo}{' (writing)' if self.mode == 'w' else ''}>"

    __str__ = __repr__

    @property
    def reader(self) -> DesReader:
        """The container's reader (``FileNotFoundError`` when it does not exist)."""
        if self._reader is None:
            if self.mode == "w":
                raise ValueError(f"{self.fo}: des:// opened for writing (mode='w') cannot read the container")
            assert self._missing is not None
            raise FileNotFoundError(self._missing.errno, str(self._missing)) from None
        return self._reader

    def __reduce__(self):
        # Rebuilt from the container's filesystem and path (picklable for Dask workers); a
        # container given as bytes or a plain open file, or a write session, cannot travel.
        if self.mode == "w" or self.target is None or self.target_path is None:
            raise TypeError(f"{self.fo}: a des:// write session, or a filesystem over bytes or a plain file "
                            f"object, cannot be pickled")
        return _rebuild, (self.target, self.target_path, self._tail_size, self._cached)

    # -- writing -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Publish the container of a write session (nothing to do when reading)."""
        if self._session is not None:
            self._session.commit()

    def discard(self) -> None:
        """Drop a write session: no container, no ``_bigFiles/`` object is left."""
        if self._session is not None:
            self._session.discard()

    def __enter__(self) -> DesFileSystem:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Folders are implied by member names: nothing to create."""

    mkdirs = makedirs

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders are implied by member names: nothing to create."""

    # -- identity ----------------------------------------------------------------------------------

    def ukey(self, path: str) -> str:
        """Changes when the member or the container's version (ETag; size and mtime locally) does:
        caches keyed by it never serve an older container's bytes. The version is checked first
        (S3: a 1-byte GET with If-Match; locally a stat), since the index may come from the cache."""
        self.reader.refresh()
        name = self._member(path)
        entry = self.reader.info(name)
        return tokenize(self.protocol, self.reader.url, self.reader.identity, name, entry.offset, entry.length, entry.flags)

    def modified(self, path: str):
        """The container's modification time (members have no time of their own)."""
        self.info(path)  # a missing member is FileNotFoundError
        return self.reader.modified()

    # -- listing (linear in the member count) -------------------------------------------------------

    def _get_dirs(self) -> None:
        index = self.reader._index
        if self.dir_cache is not None and self._indexed is index:
            return
        names = self.reader.names()
        cache: dict[str, dict[str, Any]] = {}
        children: dict[str, dict[str, dict[str, Any]]] = {"": {}}
        for name in names:
            entry = self.reader.info(name)
            cache[name] = {
                "name": name,
                "type": "file",
                # Plain members: the stored length is the size. Compressed or external ones say
                # theirs in META, fetched only when asked for (see ``_sized``).
                "size": None if entry.compressed or entry.external else entry.length,
                "offset": entry.offset,
                "flags": entry.flags,
            }
            child = name
            while True:
                parent = child.rpartition("/")[0]
                siblings = children.setdefault(parent, {})
                if child in siblings:
                    break
                siblings[child] = cache[child]
                if not parent:
                    break
                if parent not in cache:
                    cache[parent] = {"name": parent, "size": 0, "type": "directory"}
                elif cache[parent]["type"] == "file":
                    raise DesFormatError(f"{self.reader.url}: {parent!r} is both a member and a folder")
                child = parent
        self.dir_cache, self._children, self._indexed = cache, children, index

    def _sized(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill in the sizes that live in META (compressed, external members), META read once, and
        the container's modification time as every member's ``mtime`` (a POSIX timestamp)."""
        if any("mtime" not in e for e in entries) and self.reader.fs is not None:
            mtime = self.reader.modified().timestamp()  # a container given as bytes has none
            for e in entries:
                e["mtime"] = mtime
        missing = [e for e in entries if e["type"] == "file" and e["size"] is None]
        if missing:
            self.reader._load_meta_region()
            for e in missing:
                size = self.reader.meta(e["name"]).get("size")
                if type(size) is not int or size < 0:
                    raise DesFormatError(f"{self.reader.url}: member {e['name']!r} is compressed or external "
                                         f"but its META has no valid 'size' ({size!r})")
                e["size"] = size
        return entries

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """The entry of a member or folder; FileNotFoundError naming the container if there is none."""
        self._get_dirs()
        assert self.dir_cache is not None
        name = self._strip_protocol(path).rstrip("/")
        if not name:
            return {"name": "", "type": "directory", "size": 0}
        if name not in self.dir_cache:
            raise FileNotFoundError(f"{self.reader.url}: no member or folder named {name!r}")
        return self._sized([self.dir_cache[name]])[0]

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        """The entries under folder ``path`` (a member lists as itself); names only unless ``detail``."""
        self._get_dirs()
        name = self._strip_protocol(path).rstrip("/")
        if name in self._children:
            entries = sorted(self._children[name].values(), key=lambda e: e["name"])
        else:
            entries = [self.info(name)]  # a member lists as itself; missing: FileNotFoundError
        entries = self._sized(entries)
        return entries if detail else [e["name"] for e in entries]

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any):
        """Every member (and folder, with ``withdirs``) under ``path``, in one pass over the index."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        self._get_dirs()
        assert self.dir_cache is not None
        root = self._strip_protocol(path).rstrip("/")
        if root in self.dir_cache and self.dir_cache[root]["type"] == "file":
            found = {root: self.dir_cache[root]}
        elif root and root not in self.dir_cache:
            found = {}
        else:
            prefix = root + "/" if root else ""
            base = prefix.count("/")
            found = {}
            for name, entry in self.dir_cache.items():
                if not name.startswith(prefix) or (not withdirs and entry["type"] != "file"):
                    continue
                if maxdepth is not None and name.count("/") - base >= maxdepth:
                    continue
                found[name] = entry
        names = sorted(found)
        if not detail:
            return names
        self._sized([found[n] for n in names])
        return {n: found[n] for n in names}

    # -- reading ---------------------------------------------------------------------------------

    def _member(self, path: str) -> str:
        name = self._strip_protocol(path)
        if name not in self.reader:
            if self.isdir(name):
                raise IsADirectoryError(f"{self.reader.url}: {name!r} is a directory")
            raise FileNotFoundError(f"{self.reader.url}: no member named {name!r}")
        return name

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The bytes of a member, or of ``[start, end)`` of it (only those bytes are fetched for a
        plain member)."""
        name = self._member(path)
        entry = self.reader.info(name)
        if start is None and end is None:
            return self.reader.read(name)
        if entry.compressed:
            return _slice(self.reader.read(name), start, end)
        # A plain member, inside the container or in _bigFiles/: fetch just the requested bytes.
        lo, hi = _bounds(entry.length, start, end)
        return self.reader.read_member_range(name, lo, hi)

    def cat(self, path, recursive: bool = False, on_error: str = "raise", **kwargs: Any):
        """Many members in few range requests (neighbours are coalesced); one member as bytes.

        A path that names a member is taken literally, never as a glob (``"report [final].pdf"``)."""
        given = [path] if isinstance(path, str) else list(path)
        literal = [n for n in map(self._strip_protocol, given) if n in self.reader]
        patterns = [p for p in given if self._strip_protocol(p) not in self.reader]
        expanded = [self._strip_protocol(p) for p in self.expand_path(patterns, recursive=recursive)] if patterns else []
        paths = sorted(set(literal + expanded))
        if isinstance(path, str) and len(paths) == 1 and paths[0] == self._strip_protocol(path):
            return self.cat_file(paths[0], **kwargs)  # one plain path: bytes, as fsspec's cat does
        out: dict[str, Any] = {}
        names: list[str] = []
        for name in paths:
            if name in self.reader:
                names.append(name)
            elif not self.isdir(name):  # directories (from globs or recursion) have no bytes
                missing = FileNotFoundError(f"{self.reader.url}: no member named {name!r}")
                if on_error == "raise":
                    raise missing
                if on_error == "return":
                    out[name] = missing
        try:
            out.update(self.reader.read_many(names))
        except Exception:  # fsspec's on_error contract
            if on_error == "raise":
                raise
            # One bad member fails the batch: read one by one so the good ones still come back.
            for name in names:
                try:
                    out[name] = self.reader.read(name)
                except Exception as exc:  # noqa: BLE001
                    if on_error == "return":
                        out[name] = exc
        return {p: out[p] for p in paths if p in out}  # in the order fsspec expanded them

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, **kwargs: Any):
        if mode in ("wb", "xb"):
            return self._open_for_write(self._strip_protocol(path))
        if mode != "rb":
            raise NotImplementedError(f"des:// opens members with 'rb' or 'wb', not {mode!r} (members cannot be appended to)")
        name = self._member(path)
        return DesMemberFile(self, name, block_size=block_size, cache_options=cache_options, **kwargs)


    def _open_for_write(self, name: str):
        from connector.des.names import validate_member_name

        validate_member_name(name)
        if self._session is not None:
            return self._session.open_member(name)
        if self.target is None or self.target_path is None:
            raise NotImplementedError(f"{self.fo}: a container given as bytes or a file object cannot be written")
        return write_one_member(self.target, self.target_path, name, **self._write_options)


def _rebuild(target: fsspec.AbstractFileSystem, path: str, tail_size: int, cached: bool) -> DesFileSystem:
    reader = DesReader(path, fs=target, tail_size=tail_size, cache=DEFAULT_CACHE if cached else None)
    return DesFileSystem(fo=reader)


def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    lo = 0 if start is None else (max(size + start, 0) if start < 0 else min(start, size))
    hi = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
    return lo, max(lo, hi)


def _slice(data: bytes, start: int | None, end: int | None) -> bytes:
    lo, hi = _bounds(len(data), start, end)
    return data[lo:hi]
