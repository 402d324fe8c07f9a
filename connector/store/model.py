"""What the store hands out: datasets, dataranges and versions as plain frozen records."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("draft", "active", "archived")


@dataclass(frozen=True)
class Dataset:
    """A dataset as the catalog holds it: description, tags, metadata, status, frozen, times (s
    since the epoch), the next key to write and the key space (``epoch``)."""
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "draft"
    frozen: bool = False
    created: float = 0.0
    updated: float = 0.0
    last_write: float | None = None
    next_key: int = 0
    epoch: int = 0  # key space: 0, then +1 at every rotation (see connector.store.layout)

    @classmethod
    def from_row(cls, row) -> Dataset:
        """The dataset of a catalog row (columns by name; tags and metadata as JSON text)."""
        return cls(row["name"], row["description"], tuple(json.loads(row["tags"])), json.loads(row["metadata"]),
                   row["status"], bool(row["frozen"]), row["created"], row["updated"], row["last_write"],
                   row["next_key"], row["epoch"])

    def to_dict(self) -> dict[str, Any]:
        """The dataset as a JSON-ready dict."""
        out = asdict(self)
        out["tags"] = list(self.tags)
        return out


@dataclass(frozen=True)
class Datarange:
    """One DES container holding datapoints ``[first, last]`` of ``dataset``."""

    dataset: str
    first: int
    last: int
    url: str
    size: int
    sha256: str
    count: int
    kind: str = "records"
    data_length: int | None = None  # bytes of the DATA region (which starts at byte 16), if known

    def to_dict(self) -> dict[str, Any]:
        """The datarange as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Version:
    """A named snapshot of a dataset's dataranges: ``sha256`` over their hashes in order, ``size``
    the sum of their sizes."""
    dataset: str
    version: str
    message: str
    created: float
    sha256: str
    size: int
    dataranges: tuple[Datarange, ...]

    def to_dict(self) -> dict[str, Any]:
        """The version as a JSON-ready dict, its dataranges included."""
        return {"dataset": self.dataset, "version": self.version, "message": self.message,
                "created": self.created, "sha256": self.sha256, "size": self.size,
                "dataranges": [d.to_dict() for d in self.dataranges]}


@dataclass(frozen=True)
class WriteResult:
    """What one write added: its first and last key (None if nothing), datapoints, bytes and
    dataranges."""
    first: int | None
    last: int | None
    count: int
    bytes: int
    dataranges: int
