"""The member-read cases' shared parts: the archives on S3 and the readers opened on them."""

from __future__ import annotations

from typing import Any

import datagen
from core import BUCKET, Ctx


def des_reader(ctx: Ctx, **kw: Any):
    from connector.des import DesReader, IndexCache

    return DesReader(f"s3://{BUCKET}/pack/small.des", storage_options=ctx.server.storage_options(), cache=IndexCache(), **kw)


def des_fs(ctx: Ctx):
    """``des://`` over s3fs, opened on the container (as zip:// and tar:// are)."""
    import fsspec

    return fsspec.filesystem("des", fo=f"s3://{BUCKET}/pack/small.des", target_protocol="s3",
                             target_options=ctx.server.storage_options(), skip_instance_cache=True)


def clear_des_cache() -> None:
    try:
        from connector.des import DEFAULT_CACHE

        for attr in ("clear",):
            if hasattr(DEFAULT_CACHE, attr):
                getattr(DEFAULT_CACHE, attr)()
        if not hasattr(DEFAULT_CACHE, "clear"):
            DEFAULT_CACHE._entries.clear()  # private: the cache has no clear() in this version
    except Exception:  # noqa: BLE001
        pass
    try:
        import fsspec

        for protocol in ("s3", "des"):
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
    except Exception:  # noqa: BLE001
        pass


#: s3fs reads ahead 50 MiB by default, which pulls ~36 MB per cold member of a zip:// or tar://
#: archive; a user reading small members would set a small block, as here.
ARCHIVE_BLOCK_SIZE = 256 * 1024


def archive_fs(ctx: Ctx, kind: str):
    """``zip://`` or ``tar://`` over s3fs with the block size a user of small members would choose."""
    import fsspec

    options = {**ctx.server.storage_options(), "default_block_size": ARCHIVE_BLOCK_SIZE}
    return fsspec.filesystem(kind, fo=f"s3://{BUCKET}/pack/small.{kind}", target_protocol="s3",
                             target_options=options, skip_instance_cache=True)


def get_objects(fs, paths: list[str]) -> dict[str, bytes]:
    """One plain GET per object, the objects concurrently, as a user who knows s3fs would write it:
    ``max_concurrency=1`` stops s3fs from asking each object's size (a HEAD) before a whole-object
    GET, which it does to split large objects into parallel ranges."""
    return dict(zip(paths, fs.cat_ranges(paths, [None] * len(paths), [None] * len(paths), max_concurrency=1)))


def upload_archives(ctx: Ctx) -> None:
    if getattr(ctx, "_archives_up", False):
        return
    paths = datagen.build_archives(ctx.data, ctx.small, f"{ctx.args.files}-s{ctx.args.seed}")
    ctx.put_many({f"pack/small.{k}": p for k, p in paths.items()}, threads=3)
    ctx._archives_up = True  # type: ignore[attr-defined]
    ctx.results.extra["archive_sizes"] = {k: p.stat().st_size for k, p in paths.items()}

