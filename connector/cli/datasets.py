"""``des datasets ...``: the store from the command line (see :class:`connector.store.Store`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.store import Store


#: Commands that only look: they open the store read-only and create nothing (no root, no catalog).
#: (`verify` is not one: it records its result in the operation log.)
READ_ONLY = frozenset({"list", "get", "ranges", "missing", "read", "cat", "chunks", "stats", "log",
                       "versions list", "versions get"})


DEFAULT_ROOT = "out/store"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``des datasets`` and its subcommands (list, create, ranges, read, cat, versions,
    aggregate, restore...) to ``sub``."""
    p = sub.add_parser("datasets", help="datasets, dataranges and versions of a store",
                       description="Manage the datasets of a store root (local folder or fsspec URL).")
    p.add_argument("--root", default=None, help="store root (default: out/store)")
    p.add_argument("--catalog", help="SQLite catalog file (default: <root>/.des-catalog.sqlite, or the user cache dir) "
                   "or a postgresql://user@host/db URL")
    p.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON",
                   help="fsspec options of the root, e.g. '{\"client_kwargs\": {\"endpoint_url\": ...}}'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    cmds = p.add_subparsers(dest="datasets_command", metavar="COMMAND", required=True,
                            parser_class=type(p))

    def cmd(name: str, help_text: str, func, *args: tuple[tuple, dict]) -> argparse.ArgumentParser:
        c = cmds.add_parser(name, help=help_text, description=help_text)
        for a, kw in args:
            c.add_argument(*a, **kw)
        c.set_defaults(func=lambda ns: _run(ns, func, read_only=name in READ_ONLY, command=name))
        return c

    name = (("name",), {"help": "dataset name"})
    cmd("list", "list datasets", _list, (("--status",), {"choices": ("draft", "active", "archived")}),
        (("--tag",), {"action": "append", "default": [], "help": "keep datasets with this tag (repeatable)"}),
        (("--limit",), {"type": int, "default": 100}), (("--offset",), {"type": int, "default": 0}))
    cmd("create", "create a dataset", _create, name, (("--description",), {"default": ""}),
        (("--tag",), {"action": "append", "default": []}), (("--status",), {"default": "draft"}),
        (("--metadata",), {"type": json.loads, "default": None, "metavar": "JSON"}))
    cmd("get", "show one dataset", lambda s, a: _dataset_dict(s.get_dataset(a.name)), name)
    cmd("update", "change description, tags, metadata or status", _update, name, (("--description",), {}),
        (("--tag",), {"action": "append", "help": "replaces the tags (repeatable)"}), (("--status",), {}),
        (("--metadata",), {"type": json.loads, "metavar": "JSON", "help": "merged; null removes a key"}))
    cmd("delete", "delete a dataset and all its objects", lambda s, a: s.delete_dataset(a.name) or {"deleted": a.name}, name)
    cmd("ranges", "list dataranges", lambda s, a: [d.to_dict() for d in s.dataranges(a.name)], name)
    cmd("missing", "gaps in the key space", lambda s, a: [list(g) for g in s.missing_ranges(a.name)], name)
    cmd("aggregate", "merge the dataranges inside [first, last] into one; --compact: keep only the latest "
        "record per primary key (a new key space)", _aggregate,
        name, (("first",), {"type": _key, "nargs": "?"}), (("last",), {"type": _key, "nargs": "?"}),
        (("--compact",), {"action": "store_true", "help": "drop superseded records of an append_dedup dataset"}),
        (("--key",), {"default": None, "help": "primary key fields, comma-separated (default: metadata primary_key)"}),
        (("--cursor",), {"default": None, "help": "cursor field (default: metadata cursor_field; none: latest key)"}))
    version_opt = (("--version",), {"default": None, "help": "as of this version (semver or 'latest')"})
    cmd("read", "write datapoint KEY to stdout (a record's JSON line or a file's bytes)", _read, name,
        (("key",), {"type": _key}), version_opt,
        (("--meta",), {"action": "store_true", "help": "write the metadata kept beside the record instead "
                                                       "(e.g. des-destination's _airbyte_* fields), as one JSON line"}))
    cmd("cat", "write records FIRST..LAST to stdout as JSON Lines; every key in the range must exist "
        "(LAST defaults to the last key; no range: every record there is)", _cat, name,
        (("first",), {"type": _key, "nargs": "?", "default": None}),
        (("last",), {"type": _key, "nargs": "?", "default": None}), version_opt,
        (("--latest-by",), {"action": "append", "metavar": "FIELD",
                            "help": "only the latest record (highest key) per value of FIELD (repeatable: a "
                                    "composite key), e.g. the primary key des-destination records in the "
                                    "dataset's metadata for append_dedup; the whole dataset, no range"}))
    cmd("restore", "rebuild the catalog from storage", lambda s, a: s.restore())
    cmd("version", "snapshot the current dataranges as a version (same as `versions create`)",
        lambda s, a: _version_row(s.create_version(a.name, a.version, a.message)),
        name, (("version",), {"help": "semver, e.g. 1.2.0"}), (("-m", "--message"), {"default": ""}))
    versions = cmds.add_parser("versions", help="list, create, get or delete versions",
                               description="Versions: named snapshots of a dataset's dataranges.")
    vcmds = versions.add_subparsers(dest="versions_command", metavar="ACTION", required=True,
                                    parser_class=type(p))

    def vcmd(action: str, help_text: str, func, *args: tuple[tuple, dict]) -> None:
        c = vcmds.add_parser(action, help=help_text, description=help_text)
        for a, kw in (name, *args):
            c.add_argument(*a, **kw)
        c.set_defaults(func=lambda ns: _run(ns, func, read_only=f"versions {action}" in READ_ONLY,
                                            command=f"versions {action}"))

    vcmd("list", "versions of a dataset, in semver order", lambda s, a: [_version_row(v) for v in s.list_versions(a.name)])
    vcmd("create", "snapshot the current dataranges", lambda s, a: _version_row(s.create_version(a.name, a.version, a.message)),
         (("version",), {"help": "semver, e.g. 1.2.0"}), (("-m", "--message"), {"default": ""}))
    vcmd("get", "one version with its dataranges", lambda s, a: _with_iso_times(s.get_version(a.name, a.version).to_dict()),
         (("version",), {"nargs": "?", "default": "latest", "help": "semver or 'latest' (default)"}))
    vcmd("delete", "delete a version (and the containers only it kept)",
         lambda s, a: s.delete_version(a.name, a.version) or {"deleted": a.version}, (("version",), {}))
    cmd("chunks", "a version's dataranges with index, sha256 and size (one with --index or --sha256)", _chunks,
        name, (("--version",), {"default": "latest"}), (("--index",), {"type": int}), (("--sha256",), {}))
    cmd("verify", "re-hash every container; exit 1 on a mismatch (DATA_LOSS)", _verify, name)
    cmd("freeze", "refuse writes until unfrozen", lambda s, a: _dataset_dict(s.freeze(a.name)), name)
    cmd("unfreeze", "allow writes again", lambda s, a: _dataset_dict(s.unfreeze(a.name)), name)
    cmd("rotate", "snapshot as VERSION (default: next major), then start an empty key space",
        lambda s, a: _version_row(s.rotate(a.name, a.version, a.message)), name,
        (("version",), {"nargs": "?", "default": None}), (("-m", "--message"), {"default": "rotate"}))
    cmd("truncate", "drop the current data (versions keep theirs) and start an empty key space",
        lambda s, a: {"dataset": a.name, "dropped_dataranges": s.truncate(a.name)}, name)
    cmd("gc", "delete container objects nothing uses (cut-short aggregations, leftovers, old checkpoints)",
        lambda s, a: {"dataset": a.name, "deleted": s.gc(a.name)}, name)
    cmd("stats", "datapoints, bytes, dataranges, versions, last write", lambda s, a: _with_iso_times(s.stats(a.name)), name)
    cmd("log", "the dataset's operation log (JSON Lines with --json)", _log, name)

def _run(args: argparse.Namespace, func, read_only: bool, command: str) -> int:
    if getattr(args, "server", None):  # des --server URL: the same command through des serve's REST API
        from connector.cli.remote import run_remote

        result = run_remote(command, args)
    else:
        from connector.store import Store

        with Store(args.root or DEFAULT_ROOT, args.catalog, storage_options=args.storage_options,
                   read_only=read_only) as store:
            result = func(store, args)
    if isinstance(result, bytes):
        sys.stdout.buffer.write(result)
        return 0
    if isinstance(result, int):  # the command wrote its own output
        return result
    code = 0
    if isinstance(result, tuple):
        result, code = result
    _print(result, args.json)
    return code


def _list(store, args) -> list[dict[str, Any]]:
    return [_dataset_row(store, d) for d in store.list_datasets(args.status, args.tag, args.limit, args.offset)]


def _dataset_row(store, d) -> dict[str, Any]:
    ranges = store.dataranges(d.name)
    return {"name": d.name, "status": d.status, "frozen": d.frozen, "tags": ",".join(d.tags),
            "datapoints": sum(r.count for r in ranges), "dataranges": len(ranges),
            "bytes": sum(r.size for r in ranges), "description": d.description}


#: Fields holding a Unix time in the store's records; the CLI prints them as ISO-8601 UTC.
TIME_FIELDS = ("created", "updated", "last_write")


def iso_time(t: float | None) -> str | None:
    """One time format for every command: ISO-8601 UTC to the second, ``None`` kept."""
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _with_iso_times(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso_time(v) if k in TIME_FIELDS else v for k, v in row.items()}


def _dataset_dict(d) -> dict[str, Any]:
    return _with_iso_times(d.to_dict())


def _version_row(v) -> dict[str, Any]:
    return {"version": v.version, "created": iso_time(v.created),
            "dataranges": len(v.dataranges), "size": v.size, "sha256": v.sha256, "message": v.message}


def _create(store, args):
    return _dataset_dict(store.create_dataset(args.name, args.description, args.tag, args.metadata, args.status))


def _update(store, args):
    return _dataset_dict(store.update_dataset(args.name, args.description, args.tag, args.metadata, args.status))


def _aggregate(store, args) -> dict[str, Any]:
    from connector.errors import ConfigError

    if args.compact:
        if args.first is not None or args.last is not None:
            raise ConfigError("datasets aggregate --compact compacts the whole dataset; give no FIRST/LAST with it")
        from connector.store.compaction import compact_superseded

        key = [f for f in args.key.split(",") if f] if args.key else None
        return compact_superseded(store, args.name, key, args.cursor)
    if args.first is None or args.last is None or args.key or args.cursor:
        raise ConfigError("datasets aggregate: give FIRST and LAST (or --compact, which takes --key and --cursor)")
    return store.aggregate(args.name, args.first, args.last).to_dict()


def _read(store, args) -> bytes:
    if args.meta:
        return json.dumps(store.read_meta(args.name, args.key, args.version), separators=(",", ":")).encode() + b"\n"
    return store.read(args.name, args.key, args.version)


def _key(text: str) -> int:
    """A datapoint key argument: a whole number from 0 to 2^63-1 (what the catalog holds)."""
    from connector.store.reading import MAX_KEY

    try:
        key = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a key (a whole number from 0 to {MAX_KEY})") from None
    if not 0 <= key <= MAX_KEY:
        raise argparse.ArgumentTypeError(f"{text!r} is not a key (keys are whole numbers from 0 to {MAX_KEY})")
    return key


def _cat(store, args) -> int:
    if args.latest_by:
        if args.first is not None:
            from connector.errors import ConfigError

            raise ConfigError("datasets cat: --latest-by reads the whole dataset; give no FIRST/LAST with it")
        sys.stdout.buffer.write(store.latest_lines(args.name, args.latest_by, args.version))
        sys.stdout.buffer.flush()
        return 0
    first = 0 if args.first is None else args.first
    # The range is checked before the first chunk: a bad range prints nothing.
    for chunk in store.read_lines(args.name, first, args.last, args.version, whole=args.first is not None):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return 0


def _chunks(store, args):
    if args.index is not None or args.sha256 is not None:
        return store.chunk(args.name, args.version, index=args.index, sha256=args.sha256)
    return [{k: c[k] for k in ("index", "first", "last", "count", "size", "sha256", "url")}
            for c in store.chunks(args.name, args.version)]


def _log(store, args):
    entries = store.log_entries(args.name)
    if args.json:
        for e in entries:
            print(json.dumps(e))
        return 0
    return [{"time": e.get("time"), "op": e.get("op"),
             "details": {k: v for k, v in e.items() if k not in ("time", "op", "id", "pid")}} for e in entries]


def _verify(store: Store, args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    checked: dict[str, Any] = {}
    bad = store.verify(args.name, checked)
    return ({"dataset": args.name, "ok": not bad, "checked": checked, "mismatches": bad}, 1 if bad else 0)


def _print(result: Any, as_json: bool) -> None:
    if as_json or not isinstance(result, list) or not result or not all(isinstance(r, dict) for r in result):
        if not as_json and isinstance(result, list) and not result:
            print("(none)")
            return
        print(json.dumps(result, indent=None if as_json else 2, default=str))
        return
    cols = list(result[0])
    rows = [[_cell(r.get(c)) for c in cols] for r in result]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)
