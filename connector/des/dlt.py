"""Members of a DES container as files of dlt's filesystem source.

dlt's ``filesystem`` resource lists files with ``glob`` and reads each one's modification time
through a table keyed by URL scheme, which has no ``des`` entry; it also builds its filesystem
from ``bucket_url`` alone, which cannot carry a chained ``des://...::s3://...`` URL. So the
container's filesystem is handed to dlt as ``credentials`` and ``des`` is added to that table::

    from connector.des.dlt import des_files
    from dlt.sources.filesystem import read_csv

    rows = des_files("s3://bucket/x.des", "users/*.csv", target_options={...}) | read_csv()
    dlt.pipeline(...).run(rows.with_name("users"))

Every member's modification time is its container's (``incremental`` on ``modification_date``
then picks up members of a container rewritten since the last run).
"""

from __future__ import annotations

import datetime as dt
import importlib
from typing import Any

from connector.des.fs import DesFileSystem


def register() -> None:
    """Teach dlt's filesystem helpers the ``des`` scheme (idempotent)."""
    table = importlib.import_module("dlt.common.storages.fsspec_filesystem").MTIME_DISPATCH
    table.setdefault("des", _mtime)


def _mtime(info: dict[str, Any]) -> dt.datetime | None:
    value = info.get("mtime")
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC)


def des_files(container: str | DesFileSystem, file_glob: str = "**", *, folder: str = "",
              target_options: dict[str, Any] | None = None, **filesystem_kwargs: Any) -> Any:
    """dlt's ``filesystem`` resource over the members of ``container`` matching ``file_glob``
    (relative to ``folder`` inside the container, default its root). ``container`` is a path, a
    URL or a :class:`DesFileSystem`; further keyword arguments go to dlt's ``filesystem``."""
    from dlt.sources.filesystem import filesystem

    register()
    fs = container if isinstance(container, DesFileSystem) else DesFileSystem(fo=container, target_options=target_options)
    bucket_url = f"des://{folder.strip('/') or '.'}"  # dlt refuses a URL with no path
    return filesystem(bucket_url=bucket_url, credentials=fs, file_glob=file_glob, **filesystem_kwargs)
