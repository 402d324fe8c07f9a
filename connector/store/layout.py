"""Where things live under a store root: object keys of dataranges, versions, metadata and log.

```
<root>/<dataset>/dataset.json                                   metadata (survives a lost catalog)
<root>/<dataset>/dataranges/<first:020d>-<last:020d>.<tag>.des  one DES container per datarange
<root>/<dataset>/dataranges/checkpoint-<next key:020d>.<tag>.json  the writer's checkpoint at that key
<root>/<dataset>/dataranges/epoch-<n>/...                       the same, key space n (after n rotations)
<root>/<dataset>/versions/<version>.json                        version manifests
<root>/<dataset>/log/<utc time>-<pid>-<n>.jsonl                 operation log segments (JSON Lines)
```

Key spaces ("epochs"): ``rotate`` starts an empty key space whose keys begin at 0 again. Its
containers go under ``dataranges/epoch-<n>/`` so they never reuse an object key of the previous
key spaces, whose containers stay where they are, referenced by version manifests (a rotation
moves or copies nothing). Epoch 0 is the plain ``dataranges/`` folder.

Every lock session (a writer, an aggregate...) names what it publishes with its own ``<tag>``
(16 hex digits: the microsecond it started, then a random byte), so no two sessions ever share an
object key: a writer that outlived its lock can publish or delete only its own objects, never
those of the session that took the lock over. Tags sort by session start; when storage holds two
containers of the same range (a stale session's leftover), restore keeps the newest. Names
without a tag (written before tags existed) are read as the oldest.

Everything stored (catalog rows, version manifests) names objects by their path relative to the
root (``<dataset>/dataranges/...``), so a root can be moved, copied or served from another URL;
absolute paths of older catalogs and manifests are resolved with :func:`relative_path`.

Object stores have no append, so the log is one small JSON Lines object per operation (compacted
from time to time); reading the segments in name order gives it back in time order.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata

from connector.store.errors import InvalidName

MAX_NAME = 200
# A name is one file name on a local root (the dataset's folder): 255 bytes on every common
# filesystem. Checked in bytes, as the filesystem counts them.
MAX_NAME_BYTES = 255
_RANGE_NAME = re.compile(r"^(\d{20})-(\d{20})(?:\.([0-9a-f]{16}))?\.des$")
_EPOCH_NAME = re.compile(r"^epoch-([1-9]\d{0,8})$")
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d{20})(?:\.([0-9a-f]{16}))?\.json$")
# Letters, digits and a few separators; no '/', '\\', '..', control or whitespace characters.
_SAFE = re.compile(r"^[\w][\w.\-=+@]*$", re.UNICODE)


def validate_dataset_name(name: str) -> str:
    """``name`` if it is safe as one object-key segment, else :class:`InvalidName` saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidName("dataset name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise InvalidName(f"dataset name {name[:40]!r}... is {len(name)} characters; the limit is {MAX_NAME}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise InvalidName(f"dataset name {name[:40]!r}... is {size} bytes in UTF-8; the limit is {MAX_NAME_BYTES} "
                          "bytes (it names a folder, and file names are limited in bytes)")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidName(f"dataset name {name!r} contains control characters")
    if "/" in name or "\\" in name:
        raise InvalidName(f"dataset name {name!r} contains a path separator")
    if ".." in name or name.startswith("."):
        raise InvalidName(f"dataset name {name!r} may not start with '.' or contain '..'")
    if not _SAFE.match(name):
        raise InvalidName(f"dataset name {name!r}: use letters, digits, '_', '-', '.', '=', '+', '@' "
                          "(starting with a letter, digit or '_')")
    return name


def new_tag() -> str:
    """A fresh session tag: 14 hex digits of the current time in microseconds, then a random
    byte; later sessions sort after earlier ones."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(1)}"


def relative_path(dataset: str, path: str) -> str:
    """``<dataset>/...`` of an object of ``dataset``, given either that relative path or an
    absolute path / URL of it under any root (catalogs and manifests written before paths were
    relative, or a root that was moved or copied since)."""
    if path.startswith(f"{dataset}/"):
        return path
    marker = f"/{dataset}/"
    at = path.rfind(f"{marker}dataranges/")
    if at < 0:
        at = path.rfind(marker)
    if at < 0:
        raise ValueError(f"{path!r} is not an object of dataset {dataset!r}")
    return path[at + 1:]


class Layout:
    """Object paths under ``root`` (a path on the store's filesystem, no protocol)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def dataset_dir(self, dataset: str) -> str:
        """The folder of ``dataset`` (its name checked)."""
        return f"{self.root}/{validate_dataset_name(dataset)}"

    def dataset_json(self, dataset: str) -> str:
        """The ``dataset.json`` of ``dataset``."""
        return f"{self.dataset_dir(dataset)}/dataset.json"

    def ranges_dir(self, dataset: str, epoch: int = 0) -> str:
        """Folder of the containers of key space ``epoch``."""
        base = f"{self.dataset_dir(dataset)}/dataranges"
        return base if epoch == 0 else f"{base}/epoch-{epoch}"

    def datarange(self, dataset: str, first: int, last: int, epoch: int = 0, tag: str | None = None) -> str:
        """The container of ``[first, last]`` published by the session ``tag`` (``None``: the
        untagged name of containers written before tags)."""
        suffix = f".{tag}" if tag else ""
        return f"{self.ranges_dir(dataset, epoch)}/{first:020d}-{last:020d}{suffix}.des"

    def checkpoint(self, dataset: str, epoch: int, next_key: int, tag: str | None = None) -> str:
        """The writer checkpoint valid when the key space's next key is ``next_key``, written by
        the session ``tag`` (``None``: the untagged name of older stores)."""
        suffix = f".{tag}" if tag else ""
        return f"{self.ranges_dir(dataset, epoch)}/checkpoint-{next_key:020d}{suffix}.json"

    def relative(self, path: str) -> str:
        """``path`` (under this root) relative to the root: what the catalog and manifests keep."""
        if not path.startswith(f"{self.root}/"):
            raise ValueError(f"{path!r} is not under the store root {self.root!r}")
        return path[len(self.root) + 1:]

    def absolute(self, dataset: str, stored: str) -> str:
        """The path under this root of an object of ``dataset`` as stored (relative, or an
        absolute path / URL from older catalogs or another root)."""
        return f"{self.root}/{relative_path(dataset, stored)}"

    def versions_dir(self, dataset: str) -> str:
        """The folder of the version manifests of ``dataset``."""
        return f"{self.dataset_dir(dataset)}/versions"

    def version(self, dataset: str, version: str) -> str:
        """The manifest of ``version`` of ``dataset``."""
        return f"{self.versions_dir(dataset)}/{version}.json"

    def log_dir(self, dataset: str) -> str:
        """The folder of the operation log segments of ``dataset``."""
        return f"{self.dataset_dir(dataset)}/log"

    @staticmethod
    def parse_range(basename: str) -> tuple[int, int] | None:
        """(first, last) of a datarange object name, or None for anything else."""
        m = _RANGE_NAME.match(basename)
        return (int(m.group(1)), int(m.group(2))) if m else None

    @staticmethod
    def tag_of(basename: str) -> str:
        """The session tag of a container or checkpoint name ("" for untagged, older names)."""
        m = _RANGE_NAME.match(basename) or _CHECKPOINT_NAME.match(basename)
        return (m.group(m.re.groups) or "") if m else ""

    @staticmethod
    def parse_epoch(basename: str) -> int | None:
        """n of an ``epoch-<n>`` folder name, or None."""
        m = _EPOCH_NAME.match(basename)
        return int(m.group(1)) if m else None

    @staticmethod
    def parse_checkpoint(basename: str) -> int | None:
        """The next key of a ``checkpoint-<key>.json`` name, or None."""
        m = _CHECKPOINT_NAME.match(basename)
        return int(m.group(1)) if m else None
