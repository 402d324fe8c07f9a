"""``des pack | ls | cat | info | verify | unpack``: DES containers from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

import fsspec

from connector.errors import ConnectorError

# Members up to this size are read whole so they can be compressed; larger ones stream, stored plain.
COMPRESS_IN_MEMORY = 256 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="pack files or folders into a DES container")
    p.add_argument("sources", nargs="+", help="files or folders (paths or fsspec URLs)")
    p.add_argument("-o", "--output", required=True, help="the container to write (path or URL)")
    p.add_argument("--compress", choices=("zstd", "gzip"), help="compress members that shrink")
    p.add_argument("--big-file-threshold", type=int, default=None,
                   help="store members of at least this many bytes in _bigFiles/ (default: never)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("ls", help="list the members of a container")
    p.add_argument("container")
    p.add_argument("-l", "--long", action="store_true", help="sizes, offsets and flags")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("cat", help="write members to stdout")
    p.add_argument("container")
    p.add_argument("members", nargs="+")
    p.set_defaults(func=cmd_cat)

    p = sub.add_parser("info", help="footer and counts, or one member's index entry and META")
    p.add_argument("container")
    p.add_argument("member", nargs="?")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check every member's sha256; exit 1 naming the bad ones")
    p.add_argument("container")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("unpack", help="extract every member into a folder (unsafe names refused)")
    p.add_argument("container")
    p.add_argument("-o", "--output", required=True, help="folder to extract into")
    p.set_defaults(func=cmd_unpack)


def _reader(container: str):
    from connector.des import DesReader

    return DesReader(container)


def _walk(source: str) -> list[tuple[str, str, fsspec.AbstractFileSystem]]:
    """(member name, path, fs) of every file under ``source``, names relative to it."""
    fs, path = fsspec.core.url_to_fs(source)
    path = path.rstrip("/")
    if not fs.exists(path):
        raise ConnectorError(f"{source}: no such file or folder")
    if fs.isdir(path):
        return [(p[len(path) + 1:], p, fs) for p in sorted(fs.find(path))]
    return [(path.rsplit("/", 1)[-1], path, fs)]


def cmd_pack(args: argparse.Namespace) -> int:
    from connector.des import DesWriter

    items = [item for source in args.sources for item in _walk(source)]
    with DesWriter(args.output, compression=args.compress, big_file_threshold=args.big_file_threshold,
                   overwrite=args.overwrite) as w:
        for name, path, fs in items:
            info = fs.info(path)
            meta = {"source": path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)}
            size = info.get("size")
            with fs.open(path, "rb") as f:
                if args.compress and size is not None and size <= COMPRESS_IN_MEMORY:
                    w.add(name, f.read(), meta)  # compression works on whole members
                else:
                    w.add_stream(name, f, meta, size=size)
    print(f"{args.output}: {w.count} members, {w.size} bytes, sha256 {w.sha256}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    r = _reader(args.container)
    for name in r.names():
        if args.long:
            m = r.info(name)
            flags = "".join(c for c, f in (("e", m.external), ("z", m.compressed)) if f) or "-"
            print(f"{m.length:>12} {m.offset:>12} {flags:<3} {name}")
        else:
            print(name)
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    r = _reader(args.container)
    for name in args.members:
        if name not in r:
            raise ConnectorError(f"{args.container}: no member named {name!r}")
    for name, data in r.read_many(args.members).items():
        sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    r = _reader(args.container)
    if args.member:
        m = r.info(args.member)
        out = {"name": m.name, "offset": m.offset, "length": m.length, "flags": m.flags, "meta": r.meta(args.member)}
    else:
        f = r.footer
        out = {"container": r.url, "size": r.size, "members": len(r.names()), "data_start": f.data_start,
               "data_length": f.data_length, "meta_start": f.meta_start, "meta_length": f.meta_length,
               "index_start": f.index_start, "index_length": f.index_length, "file_count": f.file_count}
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    n = _reader(args.container).verify()
    print(f"{args.container}: {n} members verified")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from connector.des.names import safe_join

    r = _reader(args.container)
    names = r.names()
    targets = {name: safe_join(args.output, name) for name in names}  # refuses every unsafe name first
    for name in names:
        target = targets[name]
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as dst:
            dst.write(r.read(name))  # read() checks the member's sha256
    print(f"{args.container}: {len(names)} members unpacked into {args.output}")
    return 0
