"""The objects of one store root: paths (see :mod:`connector.store.layout`), atomic writes,
publishing spooled containers, and listings of what a dataset holds in storage.

A :class:`Storage` knows nothing of the catalog: it is what a server, a client or a second catalog
backend needs to read and write a root's objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import fsspec

from connector.des import DesReader
from connector.des.target import is_local, url_of
from connector.files import is_temp_name, replace_durably, write_atomically
from connector.store.catalog import process_alive
from connector.store.errors import StoreError
from connector.store.layout import Layout, validate_dataset_name
from connector.store.model import Datarange
from connector.store.objects import remove_quietly

SPOOL_DIR = ".spool"  # containers being built, on the root's own disk so publishing is a rename


class Storage:
    """Objects under ``root`` (a path on ``fs``, no protocol)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.layout = Layout(self.root)

    def url(self, path: str) -> str:
        """The URL (with protocol) of ``path`` on this root's filesystem."""
        return url_of(self.fs, path)

    def path_of(self, url: str) -> str:
        """The filesystem path of ``url`` (the inverse of :meth:`url`)."""
        return self.fs._strip_protocol(url)

    # -- whole objects -----------------------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace the object ``path`` with ``data`` in one step (never seen half-written; durable
        once this returns on a local root)."""
        if is_local(self.fs):
            write_atomically(path, data)
        else:
            self.fs.pipe_file(path, data)

    def write_json(self, path: str, value: Any) -> None:
        """:meth:`write_bytes` of ``value`` as indented JSON with sorted keys."""
        self.write_bytes(path, json.dumps(value, indent=2, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        """The JSON document stored at ``path``; FileNotFoundError if there is none."""
        return json.loads(self.fs.cat_file(path))

    def remove(self, path: str) -> None:
        """Delete ``path``; already gone is fine, any other failure is raised."""
        remove_quietly(self.fs, path)

    def reader(self, datarange: Datarange) -> DesReader:
        """A reader of ``datarange``'s container."""
        return DesReader(self.path_of(datarange.url), fs=self.fs, size=datarange.size)

    # -- spooling and publishing containers ----------------------------------------------------------

    def spool_dir(self, dataset: str) -> str:
        """Where containers are built before they are published: beside their final place on a
        local root (so publishing is a rename), a temporary folder otherwise."""
        if is_local(self.fs):
            os.makedirs(self.layout.ranges_dir(dataset), exist_ok=True)
            path = os.path.join(self.root, SPOOL_DIR)
        else:
            path = os.path.join(tempfile.gettempdir(), "des-connector-spool")
        os.makedirs(path, exist_ok=True)
        return path

    def spool_prefix(self, dataset: str) -> str:
        """Spool files are named ``<sha256(dataset)[:16]>.<pid>.<random>.des`` so stale ones can
        be recognised."""
        return f"{_spool_id(dataset)}.{os.getpid()}."

    def new_spool(self, dataset: str) -> str:
        """A new, empty spool file for a container of ``dataset`` (the caller removes it)."""
        fd, path = tempfile.mkstemp(prefix=self.spool_prefix(dataset), suffix=".des", dir=self.spool_dir(dataset))
        os.close(fd)
        return path

    @contextlib.contextmanager
    def spooled(self, dataset: str, path: str) -> Iterator[str]:
        """A spool file for one container of ``dataset``: the body writes it, and on a clean exit
        it is published under ``path``; the spool is gone afterwards either way."""
        spool = self.new_spool(dataset)
        try:
            yield spool
            self.publish(spool, path)
        finally:
            if os.path.exists(spool):
                os.unlink(spool)

    def remove_stale_spools(self, dataset: str) -> None:
        """Delete spool files of ``dataset`` left by processes that died (a crash mid-container)."""
        folder = self.spool_dir(dataset)
        for name in os.listdir(folder):
            # "<id>.<pid>.<random>.des", or DesWriter's hidden ".<that>.<hex>.partial".
            head, _, rest = name.lstrip(".").partition(f"{_spool_id(dataset)}.")
            pid = rest.split(".", 1)[0]
            if head == "" and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass

    def publish(self, local_file: str, path: str) -> None:
        """Make a finished container visible under ``path`` in one step."""
        if is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            replace_durably(local_file, path)  # the spool file was fsynced when its container was
        else:
            self.fs.put_file(local_file, path)

    # -- listings ----------------------------------------------------------------------------------

    def dataset_names(self) -> list[str]:
        """The datasets storage holds (folders under the root with a valid dataset name), by name."""
        try:
            entries = self.fs.ls(self.root, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        names = []
        for e in entries:
            base = e["name"].rstrip("/").rsplit("/", 1)[-1]
            if e["type"] == "directory" and not base.startswith("."):
                try:
                    validate_dataset_name(base)
                except StoreError:
                    continue
                names.append(base)
        return sorted(names)

    def list_range_objects(self, dataset: str, epoch: int = 0, *, checkpoints: bool = False,
                           temporaries: bool = False) -> list[str]:
        """Container objects (and with ``checkpoints``, checkpoint files; with ``temporaries``,
        unfinished atomic writes, see :func:`connector.files.temp_name`) of one key space."""
        try:
            paths = self.fs.ls(self.layout.ranges_dir(dataset, epoch), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        layout = self.layout
        return sorted(p for p in paths if layout.parse_range(p.rsplit("/", 1)[-1])
                      or (checkpoints and layout.parse_checkpoint(p.rsplit("/", 1)[-1]) is not None)
                      or (temporaries and is_temp_name(p.rsplit("/", 1)[-1])))

    def epochs(self, dataset: str) -> list[int]:
        """Key spaces with a folder in storage (0 when ``dataranges/`` holds containers)."""
        try:
            entries = self.fs.ls(self.layout.ranges_dir(dataset), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in entries]
        found = {e for e in map(self.layout.parse_epoch, names) if e is not None}
        if any(self.layout.parse_range(n) for n in names):
            found.add(0)
        return sorted(found)

    def checkpoint_files(self, objects: list[str], next_key: int) -> list[str]:
        """The checkpoint files among ``objects`` valid at ``next_key``, oldest session first (the
        last one is in effect; the others are leftovers of sessions cut short)."""
        found = [p for p in objects if self.layout.parse_checkpoint(p.rsplit("/", 1)[-1]) == next_key]
        return sorted(found, key=lambda p: self.layout.tag_of(p.rsplit("/", 1)[-1]))

    def version_documents(self, dataset: str) -> list[Any]:
        """The version manifests stored for ``dataset`` (parsed JSON), in name order."""
        try:
            paths = self.fs.ls(self.layout.versions_dir(dataset), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [self.read_json(p) for p in sorted(paths) if p.endswith(".json")]


def _spool_id(dataset: str) -> str:
    # A digest, not the name: a name of up to 255 bytes plus a suffix would not fit in a file name.
    return hashlib.sha256(dataset.encode("utf-8", "surrogatepass")).hexdigest()[:16]
