"""The file object of one member opened through ``des://``: fsspec's buffered file interface.

:class:`DesMemberFile` is an :class:`fsspec.spec.AbstractBufferedFile`, so clients get what they
expect of an fsspec file: ``size``, ``path``, ``seek``/``tell``, a choice of read-ahead cache
(``cache_type``/``block_size``), and pickling (a Dask task can carry an open member to another
process, where it is reopened by name). ``read()`` of a whole plain member is one ranged read.

Reads are checked against the container version the index came from (see
:mod:`connector.des.blob`): when the container was replaced before this file served any byte and
the member has the same length in the new version, the file reads the new version (all its bytes
come from one version); otherwise it raises :class:`~connector.des.blob.ContainerChanged`.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractBufferedFile

from connector.des.blob import ContainerChanged
from connector.des.format import FLAG_ENCRYPTED, MemberInfo
from connector.errors import DesFormatError

DEFAULT_BLOCK_SIZE = 1024 * 1024


class DesMemberFile(AbstractBufferedFile):
    """A read-only, seekable file over one member of a DES container."""

    DEFAULT_BLOCK_SIZE = DEFAULT_BLOCK_SIZE

    def __init__(self, fs: Any, path: str, block_size: int | str | None = None, cache_type: str = "readahead",
                 cache_options: dict | None = None, size: int | None = None, **kwargs: Any) -> None:
        reader = fs.reader
        entry = reader.info(path)
        self._entry = entry
        self._stored_whole = bool(entry.compressed or entry.flags & FLAG_ENCRYPTED)
        self._whole: bytes | None = None
        self._served = False
        if self._stored_whole:
            size = _logical_size(reader, path)  # compressed: the bytes are decoded whole on first read
        else:
            size = entry.length
            if entry.external:
                reader._external_candidates(entry)  # a refused external_key fails the open, not a later read
        kwargs.pop("autocommit", None)
        super().__init__(fs, path, mode="rb", block_size=block_size, cache_type=cache_type,
                         cache_options=cache_options, size=size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        reader = self.fs.reader
        if self._stored_whole:
            if self._whole is None:
                self._whole = reader.read(self.path)
            return self._whole[start:end]
        try:
            data = self._read(reader, self._entry, start, end)
        except ContainerChanged:
            if self._served:
                raise  # bytes of the old version were handed out: never mix versions
            data = self._read(reader, self._follow(reader), start, end)
        self._served = True
        return data

    def _read(self, reader: Any, entry: MemberInfo, start: int, end: int) -> bytes:
        end = min(end, entry.length)
        if end <= start:
            return b""
        if entry.external:
            return reader._read_external_range(entry, start, end)
        return reader._read_range(entry.offset + start, entry.offset + end)

    def _follow(self, reader: Any) -> MemberInfo:
        """The container was replaced before this file served a byte: read the new index and go on
        with the member's new entry, if it still is the same size (the only thing a reader may
        have learnt of it so far)."""
        reader.reload()
        try:
            entry = reader.info(self.path)
        except KeyError:
            raise ContainerChanged(reader.url, f"member {self.path!r} is gone from the new version") from None
        if entry.length != self.size or entry.compressed or entry.flags & FLAG_ENCRYPTED or entry.external:
            raise ContainerChanged(reader.url, f"member {self.path!r} differs in the new version")
        self._entry = entry
        return entry


def _logical_size(reader: Any, name: str) -> int:
    size = reader.meta(name).get("size")
    if type(size) is not int or size < 0:
        raise DesFormatError(f"{reader.url}: member {name!r} is compressed or external but its META has no valid 'size' ({size!r})")
    return size
