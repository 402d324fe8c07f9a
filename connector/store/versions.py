"""Versions: semver names, the content hash over ordered datarange hashes, manifests as JSON."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from connector.store.errors import VersionError
from connector.store.model import Datarange, Version

OVERWRITE_VERSION_PREFIX = "0.0.0-overwrite."  # versions kept by begin_overwrite until finish_overwrite

# semver.org's own pattern (2.0.0), anchored.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def check_semver(version: str) -> str:
    """``version`` if it is a semantic version (semver.org 2.0.0), else :class:`VersionError`."""
    if not isinstance(version, str) or not _SEMVER.match(version):
        raise VersionError(f"version {version!r} is not a semantic version like 1.2.0 (semver.org)")
    return version


def semver_key(version: str) -> tuple:
    """Sort key: numeric major.minor.patch, a pre-release sorting before its release."""
    m = _SEMVER.match(version)
    assert m is not None
    pre = m.group(4)
    pre_key = (1,) if pre is None else (0, *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")])
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre_key


def content_hash(dataranges: Sequence[Datarange]) -> str:
    """SHA-256 over the ordered datarange hashes (hex digests joined by newlines)."""
    return hashlib.sha256("\n".join(d.sha256 for d in dataranges).encode()).hexdigest()


def manifest(version: Version, relative: Callable[[str], str]) -> dict[str, Any]:
    """The stored form of a version (catalog row and manifest in storage): each datarange names its
    container by ``path``, relative to the store root (``relative(url)``), so that a root can be
    moved or copied without its versions pointing elsewhere."""
    doc = version.to_dict() | {"format": "des-connector/version/1"}
    for d in doc["dataranges"]:
        d["path"] = relative(d.pop("url"))
    return doc


def from_manifest(doc: dict[str, Any], locate: Callable[[str, str], str]) -> Version:
    """The version of a stored manifest; ``locate(dataset, stored)`` turns a datarange's stored
    ``path`` (or the absolute ``url`` of older manifests) into its URL under this root."""
    try:
        ranges = []
        for d in doc["dataranges"]:
            fields = dict(d)
            stored = fields.pop("path", None) or fields.pop("url")
            fields.pop("url", None)
            ranges.append(Datarange(**fields, url=locate(fields["dataset"], stored)))
        return Version(doc["dataset"], doc["version"], doc.get("message", ""), float(doc["created"]),
                       doc["sha256"], int(doc["size"]), tuple(ranges))
    except (KeyError, TypeError, ValueError) as exc:
        raise VersionError(f"version manifest is malformed: {exc}") from None
