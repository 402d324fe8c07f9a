"""``des pack | ls | cat | info | verify | unpack``: DES containers from the command line."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import sys
import unicodedata
import uuid

import fsspec

from connector.errors import ConnectorError

# Members up to this size are read whole so they can be compressed; larger ones stream, stored plain.
COMPRESS_IN_MEMORY = 256 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    """Add the container commands (``pack``, ``ls``, ``cat``, ``info``, ``verify``, ``unpack``)
    to ``sub``."""
    p = sub.add_parser("pack", help="pack files or folders into a DES container")
    p.add_argument("sources", nargs="+", help="files or folders (paths or fsspec URLs)")
    p.add_argument("-o", "--output", required=True, help="the container to write (path or URL)")
    p.add_argument("--compress", choices=("zstd", "gzip"), help="compress members that shrink")
    p.add_argument("--big-file-threshold", type=int, default=None,
                   help="store members of at least this many bytes in _bigFiles/ (default: never)")
    p.add_argument("--glob", action="append", metavar="PATTERN",
                   help="pack only members whose name matches (shell-style, '*' also crosses '/'; repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing container")
    p.add_argument("--compat", choices=("reference",),
                   help="write a container the reference DES readers read correctly: no compression, "
                        "_bigFiles/ in the container's folder (object stores only); see spec/DES_FORMAT.md")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("ls", help="list the members of a container",
                       description="List member names, one a line. Control characters and backslashes in "
                                   "names are escaped as 'ls -b' does (\\n, \\t, \\\\, \\ooo octal bytes).")
    p.add_argument("container")
    p.add_argument("-l", "--long", action="store_true",
                   help="size, offset, flags (e external, z compressed, s an earlier copy of a duplicate name, "
                        "not the one read) and name of every index entry")
    p.set_defaults(func=cmd_ls)

    dash = ("A member whose name starts with '-' goes after '--', e.g. 'des %s box.des -- -name'; with -b, "
            "names are given as 'des ls' prints them (escaped), which also reaches names holding NUL.")
    escaped = "member names are escaped as 'des ls' prints them (\\n, \\t, \\\\, \\ooo)"
    p = sub.add_parser("cat", help="write members to stdout", description="Write members to stdout. " + dash % "cat")
    p.add_argument("-b", "--escaped", action="store_true", help=escaped)
    p.add_argument("container")
    p.add_argument("members", nargs="+")
    p.set_defaults(func=cmd_cat)

    p = sub.add_parser("info", help="footer and counts, or one member's index entry and META",
                       description="Footer and counts, or one member's index entry and META. " + dash % "info")
    p.add_argument("-b", "--escaped", action="store_true", help=escaped)
    p.add_argument("container")
    p.add_argument("member", nargs="?")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check every member's sha256 (crc32 for records); exit 1 naming the bad ones",
                       description="Check every index entry's size and sha256 (crc32 for record members, and "
                                   "the DATA region's data_crc32 where declared); exit 1 naming the bad ones. "
                                   "Names the index holds more than once are reported (the last entry is the "
                                   "one read, as in the reference) without failing.")
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
    items: list[tuple[str, str, fsspec.AbstractFileSystem]] = []
    seen: dict[str, str] = {}  # member name -> the path it comes from
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
    """``des pack``: pack files and folders into one container, written atomically."""
    from connector.des import DesWriter

    if args.big_file_threshold is not None and args.big_file_threshold < 1:
        raise ConnectorError(f"--big-file-threshold must be at least 1 byte, not {args.big_file_threshold}")
    if args.compat == "reference" and args.compress:
        raise ConnectorError("--compat reference cannot be combined with --compress: the reference's readers "
                             "ignore the compressed flag")
    items = _plan(args.sources, args.output, args.glob)
    progress = None
    if sys.stderr.isatty():  # a progress bar for people, nothing for pipes and logs
        from tqdm import tqdm

        progress = tqdm(total=len(items), unit="file", desc="pack", file=sys.stderr)
    try:
        writer = DesWriter(args.output, compression=args.compress, big_file_threshold=args.big_file_threshold,
                           overwrite=args.overwrite, compat=args.compat)
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


def escape_name(name: str) -> str:
    """``name`` on one line, as ``ls -b`` shows it: control characters (and line or paragraph
    separators) as ``\\n``, ``\\t``... or octal bytes, and backslashes doubled so the form is unambiguous."""
    if name.isprintable() and "\\" not in name:
        return name  # the common case: nothing to escape
    out = []
    for ch in name:
        if ch == "\\":
            out.append("\\\\")
        elif ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append("".join(f"\\{b:03o}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
_C_UNESCAPES = {v[1]: k for k, v in _C_ESCAPES.items()} | {"\\": "\\"}


def unescape_name(text: str) -> str:
    """The member name :func:`escape_name` printed as ``text``."""
    out, i = bytearray(), 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
        elif text[i + 1 : i + 2] in _C_UNESCAPES:
            out += _C_UNESCAPES[text[i + 1]].encode()
            i += 2
        elif len(text[i + 1 : i + 4]) == 3 and all(c in "01234567" for c in text[i + 1 : i + 4]) and text[i + 1] in "0123":
            out.append(int(text[i + 1 : i + 4], 8))  # \000 to \377: one byte
            i += 4
        else:
            raise ConnectorError(f"{text!r}: a backslash must start \\\\, \\n, \\t, \\r, \\a, \\b, \\v, \\f or "
                                 f"three octal digits (names are escaped as 'des ls' prints them)")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ConnectorError(f"{text!r}: the escaped bytes are not UTF-8") from None


def cmd_ls(args: argparse.Namespace) -> int:
    """``des ls``: the member names (``--long``: length, offset, flags)."""
    r = _reader(args.container)
    if not args.long:
        for name in r.names():
            print(escape_name(name))
        return 0
    read = {id(r.info(name)) for name in r.names()}  # the entry each name is read from
    for m in r.members():
        if m.deleted:
            continue
        flags = "".join(c for c, f in (("e", m.external), ("z", m.compressed), ("s", id(m) not in read)) if f) or "-"
        print(f"{m.length:>12} {m.offset:>12} {flags:<3} {escape_name(m.name)}")
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    """``des cat``: the bytes of the given members to stdout, in order; every name is checked
    before anything is written."""
    if args.escaped:
        args.members = [unescape_name(m) for m in args.members]
    r = _reader(args.container)
    for name in args.members:
        if name not in r:
            raise ConnectorError(f"{args.container}: no member named {name!r}"
                                 + (" (a name starting with '-' goes after '--')" if name.startswith("-") else ""))
    data = r.read_many(dict.fromkeys(args.members))  # one read of each, neighbours coalesced
    for name in args.members:
        sys.stdout.buffer.write(data[name])
    sys.stdout.buffer.flush()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``des info``: the footer and member counts of a container, or one member's entry and META,
    as JSON."""
    if args.escaped and args.member:
        args.member = unescape_name(args.member)
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
               "duplicate_names": len(r.duplicates()),
               "stored_bytes": sum(m.length for m in members if not m.external),
               "external_bytes": sum(m.length for m in members if m.external),
               "footer": {"data_start": f.data_start, "data_length": f.data_length, "meta_start": f.meta_start,
                          "meta_length": f.meta_length, "index_start": f.index_start,
                          "index_length": f.index_length, "file_count": f.file_count}}
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``des verify``: check every member against its META (sha256, crc32 or size) and the DATA
    region against ``data_crc32``; names held twice are listed (the last entry of each is read)."""
    r = _reader(args.container)
    counts = r.verify_counts()
    n = counts["sha256"] + counts["crc32"] + counts["size"]
    how = [f"{counts[k]} by {k}" for k in ("sha256", "crc32") if counts[k]]
    if counts["size"]:
        how.append(f"{counts['size']} by size only (no checksum in their META)")
    region = "; DATA region checked by data_crc32" if counts.get("data_crc32") else ""
    print(f"{args.container}: {n} members verified" + (f" ({', '.join(how)})" if how else "") + region)
    duplicates = r.duplicates()
    if duplicates:
        listed = ", ".join(f"'{escape_name(name)}' ({count} entries)" for name, count in list(duplicates.items())[:10])
        more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        print(f"{args.container}: {len(duplicates)} duplicate name(s), the last entry of each is the one read: "
              f"{listed}{more}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    """``des unpack``: write every member under the output folder; unsafe names and a name that
    would be both a file and a folder are refused before anything is written."""
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
