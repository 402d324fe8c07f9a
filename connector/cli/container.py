"""``des pack | ls | cat | info | verify | unpack``: DES containers from the command line."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import sys
import uuid

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
    p.add_argument("--glob", action="append", metavar="PATTERN",
                   help="pack only members whose name matches (shell-style, '*' also crosses '/'; repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing container")
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
    path = path.rstrip("/") or path
    if not fs.exists(path):
        raise ConnectorError(f"{source}: no such file or folder")
    if fs.isdir(path):
        return [(p[len(path) + 1:], p, fs) for p in sorted(fs.find(path))]
    return [(path.rsplit("/", 1)[-1], path, fs)]


def _plan(sources: list[str], output: str,
          patterns: list[str] | None = None) -> list[tuple[str, str, fsspec.AbstractFileSystem]]:
    """Every file to pack (matching one of ``patterns`` if given), names checked before writing."""
    from connector.des.names import validate_member_name
    from connector.errors import MemberNameError

    out_fs, out_path = fsspec.core.url_to_fs(output)
    items, seen = [], {}
    for source in sources:
        for name, path, fs in _walk(source):
            if type(fs) is type(out_fs) and path == out_path:
                continue  # packing a folder into a container inside it: not the container itself
            if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            try:
                validate_member_name(name)
            except MemberNameError as exc:
                raise ConnectorError(f"{source}: cannot pack {path}: {exc}") from None
            if name in seen:
                raise ConnectorError(f"member name {name!r} comes from both {seen[name]} and {path}")
            seen[name] = path
            items.append((name, path, fs))
    return items


def cmd_pack(args: argparse.Namespace) -> int:
    from connector.des import DesWriter

    if args.big_file_threshold is not None and args.big_file_threshold < 1:
        raise ConnectorError(f"--big-file-threshold must be at least 1 byte, not {args.big_file_threshold}")
    items = _plan(args.sources, args.output, args.glob)
    progress = None
    if sys.stderr.isatty():  # a progress bar for people, nothing for pipes and logs
        from tqdm import tqdm

        progress = tqdm(total=len(items), unit="file", desc="pack", file=sys.stderr)
    try:
        writer = DesWriter(args.output, compression=args.compress, big_file_threshold=args.big_file_threshold,
                           overwrite=args.overwrite)
    except FileExistsError:
        raise ConnectorError(f"{args.output}: container already exists (add --overwrite to replace it)") from None
    with writer as w:
        for name, path, fs in items:
            info = fs.info(path)
            meta = {"source": path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)}
            size = info.get("size")
            with fs.open(path, "rb") as f:
                if args.compress and size is not None and size <= COMPRESS_IN_MEMORY:
                    w.add(name, f.read(), meta)  # compression works on whole members
                else:
                    w.add_stream(name, f, meta, size=size)
            if progress is not None:
                progress.update()
    if progress is not None:
        progress.close()
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
    data = r.read_many(dict.fromkeys(args.members))  # one read of each, neighbours coalesced
    for name in args.members:
        sys.stdout.buffer.write(data[name])
    sys.stdout.buffer.flush()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    r = _reader(args.container)
    if args.member:
        if args.member not in r:
            raise ConnectorError(f"{args.container}: no member named {args.member!r}")
        m = r.info(args.member)
        out = {"name": m.name, "offset": m.offset, "length": m.length, "flags": m.flags,
               "external": m.external, "compressed": m.compressed, "meta": r.meta(args.member)}
    else:
        f = r.footer
        members = r.members()
        out = {"container": r.url, "size": r.size, "version": 1,
               "members": len(r.names()),
               "compressed": sum(1 for m in members if m.compressed),
               "external": sum(1 for m in members if m.external),
               "deleted": sum(1 for m in members if m.deleted),
               "stored_bytes": sum(m.length for m in members if not m.external),
               "external_bytes": sum(m.length for m in members if m.external),
               "footer": {"data_start": f.data_start, "data_length": f.data_length, "meta_start": f.meta_start,
                          "meta_length": f.meta_length, "index_start": f.index_start,
                          "index_length": f.index_length, "file_count": f.file_count}}
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
    folders = {name.rsplit("/", 1)[0] for name in names if "/" in name}
    folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
    clash = sorted(folders.intersection(names))
    if clash:  # "a" and "a/b": one would be a file and a folder; refuse before writing anything
        raise ConnectorError(f"{args.container}: member {clash[0]!r} is both a file and a folder of other members")
    created_output = not os.path.exists(args.output)
    os.makedirs(args.output, exist_ok=True)
    # Every member is read (and its sha256 checked) into a staging folder on the same filesystem;
    # only when all of them are good are they renamed into place, so a bad member leaves nothing.
    staging = os.path.join(args.output, f".des-unpack-{uuid.uuid4().hex[:12]}")
    try:
        staged = _stage_members(r, names, staging)
        for name in names:
            os.makedirs(os.path.dirname(targets[name]), exist_ok=True)
            os.replace(staged[name], targets[name])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_output and not os.listdir(args.output):
            with contextlib.suppress(OSError):
                os.rmdir(args.output)
    print(f"{args.container}: {len(names)} members unpacked into {args.output}")
    return 0


def _stage_members(reader, names: list[str], staging: str) -> dict[str, str]:
    """Write every member, verified, under ``staging`` (flat, numbered); name -> staged path."""
    os.makedirs(staging)
    staged = {}
    for i, name in enumerate(names):
        path = os.path.join(staging, str(i))
        with open(path, "xb") as dst:
            dst.write(reader.read(name))  # raises on a sha256 mismatch before anything is moved
        staged[name] = path
    return staged
