"""Where things live under a store root: object keys of dataranges, versions, metadata and log.

```
<root>/<dataset>/dataset.json                                   metadata (survives a lost catalog)
<root>/<dataset>/dataranges/<first:020d>-<last:020d>.des        one DES container per datarange
<root>/<dataset>/dataranges/checkpoint-<next key:020d>.json     the writer's checkpoint at that key
<root>/<dataset>/dataranges/epoch-<n>/...                       the same, key space n (after n rotations)
<root>/<dataset>/versions/<version>.json                        version manifests
<root>/<dataset>/log/<utc time>-<pid>-<n>.jsonl                 operation log segments (JSON Lines)
```

Key spaces ("epochs"): ``rotate`` starts an empty key space whose keys begin at 0 again. Its
containers go under ``dataranges/epoch-<n>/`` so they never reuse an object key of the previous
key spaces, whose containers stay where they are, referenced by version manifests (a rotation
moves or copies nothing). Epoch 0 is the plain ``dataranges/`` folder.

Object stores have no append, so the log is one small JSON Lines object per operation (compacted
from time to time); reading the segments in name order gives it back in time order.
"""

from __future__ import annotations

import re
import unicodedata

from connector.store.errors import InvalidName

MAX_NAME = 200
_RANGE_NAME = re.compile(r"^(\d{20})-(\d{20})\.des$")
_EPOCH_NAME = re.compile(r"^epoch-([1-9]\d{0,8})$")
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d{20})\.json$")
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

    def ranges_dir(self, dataset: str, epoch: int = 0) -> str:
        """Folder of the containers of key space ``epoch``."""
        base = f"{self.dataset_dir(dataset)}/dataranges"
        return base if epoch == 0 else f"{base}/epoch-{epoch}"

    def datarange(self, dataset: str, first: int, last: int, epoch: int = 0) -> str:
        return f"{self.ranges_dir(dataset, epoch)}/{first:020d}-{last:020d}.des"

    def checkpoint(self, dataset: str, epoch: int, next_key: int) -> str:
        """The writer checkpoint valid when the key space's next key is ``next_key``."""
        return f"{self.ranges_dir(dataset, epoch)}/checkpoint-{next_key:020d}.json"

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
