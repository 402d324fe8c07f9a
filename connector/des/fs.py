"""``des://``: an fsspec filesystem over the members of one DES container.

Like fsspec's ``zip://``, the container is the filesystem and its members are the files::

    fsspec.open("des://data/a.csv::s3://bucket/x.des", s3={"anon": False})
    fsspec.filesystem("des", fo="s3://bucket/x.des", target_options={...}).ls("data")

Opening costs one ranged GET of the container's tail (two if the index outgrows the tail), and
nothing once the index is in the shared :class:`~connector.des.cache.IndexCache`. A member is read
by range, ``cat`` of many members coalesces neighbours into few requests, and ``open`` gives a
seekable file that fetches only the blocks read. Read-only.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.archive import AbstractArchiveFileSystem
from fsspec.core import split_protocol

from connector.des.cache import DEFAULT_CACHE, IndexCache
from connector.des.reader import DEFAULT_TAIL_SIZE, DesReader
from connector.errors import DesFormatError


#: What a ``des://`` URL without its container (no ``::``) is told.
NO_CONTAINER = ("des:// needs the container after '::': 'des://<member>::<container URL>', e.g. "
                "pd.read_csv('des://users/a.csv::out/testdata.des'), or fsspec.filesystem('des', fo=<container URL>)")


class DesFileSystem(AbstractArchiveFileSystem):
    """Read-only view of a DES v1 container.

    Parameters
    ----------
    fo:
        The container: a path or URL (``s3://bucket/x.des``), or an open binary file.
    target_protocol, target_options:
        Filesystem of the container when ``fo`` is a path (inferred from the URL otherwise) and
        the options to build it with (credentials, ``endpoint_url``...).
    tail_size:
        Bytes fetched from the end on a cold open (footer + index + META where they fit).
    index_cache:
        Where parsed indexes are kept, shared across instances so a warm open costs no request
        (default: the process-wide cache; ``None`` disables it).
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        cache = index_cache
        if isinstance(fo, (str, os.PathLike)):
            fo = os.fspath(fo)
            if not fo:
                raise ValueError(NO_CONTAINER)
            protocol, _ = split_protocol(fo)
            target = fsspec.filesystem(target_protocol or protocol or "file", **(target_options or {}))
            self.reader = DesReader(target._strip_protocol(fo), fs=target, tail_size=tail_size, cache=cache)
        else:
            self.reader = DesReader(fo, tail_size=tail_size, cache=cache)
        self.dir_cache: dict[str, dict[str, Any]] | None = None

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        # Member paths are relative to the container's root.
        return super()._strip_protocol(path).lstrip("/")

    def __repr__(self) -> str:
        return f"<DesFileSystem {self.reader.url}>"

    # -- listing ---------------------------------------------------------------------------------

    def _get_dirs(self) -> None:
        if self.dir_cache is not None:
            return
        names = self.reader.names()
        cache: dict[str, dict[str, Any]] = {
            d.rstrip("/"): {"name": d.rstrip("/"), "size": 0, "type": "directory"}
            for d in self._all_dirnames(names)
        }
        for name in names:
            entry = self.reader.info(name)
            cache[name] = {
                "name": name,
                "type": "file",
                # Plain members: the stored length is the size. Compressed or external ones say
                # theirs in META, fetched only when asked for (see ``info``).
                "size": None if entry.compressed or entry.external else entry.length,
                "offset": entry.offset,
                "flags": entry.flags,
            }
        self.dir_cache = cache

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        out = super().info(path, **kwargs)
        if out["type"] == "file" and out["size"] is None:
            size = self.reader.meta(out["name"]).get("size")
            if type(size) is not int or size < 0:
                raise DesFormatError(f"{self.reader.url}: member {out['name']!r} is compressed or external "
                                     f"but its META has no valid 'size' ({size!r})")
            out["size"] = size
            self.dir_cache[out["name"]]["size"] = size  # type: ignore[index]
        return out

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        entries = super().ls(path, detail=True, **kwargs)
        for e in entries:
            if e["type"] == "file" and e["size"] is None:
                e["size"] = self.info(e["name"])["size"]
        return entries if detail else [e["name"] for e in entries]

    # -- reading ---------------------------------------------------------------------------------

    def _member(self, path: str) -> str:
        name = self._strip_protocol(path)
        if name not in self.reader:
            if self.isdir(name):
                raise IsADirectoryError(f"{self.reader.url}: {name!r} is a directory")
            raise FileNotFoundError(f"{self.reader.url}: no member named {name!r}")
        return name

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
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
        except Exception:  # noqa: BLE001 - fsspec's on_error contract
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
        if mode != "rb":
            raise NotImplementedError("des:// is read-only; write containers with connector.des.DesWriter")
        name = self._member(path)
        return self.reader.open(name, block_size=block_size or 1024 * 1024)


def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    lo = 0 if start is None else (max(size + start, 0) if start < 0 else min(start, size))
    hi = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
    return lo, max(lo, hi)


def _slice(data: bytes, start: int | None, end: int | None) -> bytes:
    lo, hi = _bounds(len(data), start, end)
    return data[lo:hi]
