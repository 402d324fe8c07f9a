"""Where things live under a store root: object keys of dataranges, versions, metadata and log.

```
<root>/<dataset>/dataset.json                                   metadata (survives a lost catalog)
<root>/<dataset>/dataranges/<first:020d>-<last:020d>.des        one DES container per datarange
<root>/<dataset>/dataranges/<first:020d>-<last:020d>/_bigFiles/ its external members, if any
<root>/<dataset>/versions/<version>.json                        version manifests
<root>/<dataset>/log/<utc time>-<pid>-<n>.json                   operation log, one object per entry
```

Object stores have no append, so the log is one small object per operation; listing the folder in
name order gives it back in time order.
"""

from __future__ import annotations

import re
import unicodedata

from connector.store.errors import InvalidName

MAX_NAME = 200
_RANGE_NAME = re.compile(r"^(\d{20})-(\d{20})\.des$")
# Letters, digits and a few separators; no '/', '\\', '..', control or whitespace characters.
_SAFE = re.compile(r"^[\w][\w.\-=+@]*$", re.UNICODE)


def validate_dataset_name(name: str) -> str:
    """``name`` if it is safe as one object-key segment, else :class:`InvalidName` saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidName("dataset name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise InvalidName(f"dataset name {name[:40]!r}... is {len(name)} characters; the limit is {MAX_NAME}")
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


class Layout:
    """Object paths under ``root`` (a path on the store's filesystem, no protocol)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def dataset_dir(self, dataset: str) -> str:
        return f"{self.root}/{validate_dataset_name(dataset)}"

    def dataset_json(self, dataset: str) -> str:
        return f"{self.dataset_dir(dataset)}/dataset.json"

    def ranges_dir(self, dataset: str) -> str:
        return f"{self.dataset_dir(dataset)}/dataranges"

    def datarange(self, dataset: str, first: int, last: int) -> str:
        return f"{self.ranges_dir(dataset)}/{first:020d}-{last:020d}.des"

    def versions_dir(self, dataset: str) -> str:
        return f"{self.dataset_dir(dataset)}/versions"

    def version(self, dataset: str, version: str) -> str:
        return f"{self.versions_dir(dataset)}/{version}.json"

    def log_dir(self, dataset: str) -> str:
        return f"{self.dataset_dir(dataset)}/log"

    @staticmethod
    def parse_range(basename: str) -> tuple[int, int] | None:
        """(first, last) of a datarange object name, or None for anything else."""
        m = _RANGE_NAME.match(basename)
        return (int(m.group(1)), int(m.group(2))) if m else None
