"""``des --server URL --token TOKEN datasets ...``: the ``datasets`` commands against ``des serve``.

Each command the REST API serves calls :class:`connector.client.Datas3tClient` and returns what
the local command returns (same fields, same ISO-8601 times to the second), so the CLI prints
both alike. Where the server does not carry a field the local command shows, it is left out
(``epoch`` of a dataset) or named as the server names it (a datarange's ``url`` is the object's
path under the root). A command or option the server cannot serve is a :class:`ConfigError`
naming it; nothing is done then.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from connector.client import Datas3tClient
from connector.errors import ConfigError

TOKEN_ENV = "DES_TOKEN"  # the token from the environment keeps it out of the process list

Result = Any


def client_of(args: argparse.Namespace) -> Datas3tClient:
    """A client for ``--server`` as ``--token`` (else ``$DES_TOKEN``)."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        return Datas3tClient(args.server, token)
    except ValueError as exc:
        raise ConfigError(f"--server: {exc}") from None


def run_remote(command: str, args: argparse.Namespace) -> Result:
    """The result of ``des datasets <command>`` against ``--server``."""
    for option in ("root", "catalog", "storage_options"):
        if getattr(args, option, None) is not None:
            raise ConfigError(f"datasets --{option.replace('_', '-')} names a local store; with --server the "
                              "server's store is used: give one or the other")
    func = COMMANDS.get(command)
    if func is None:
        raise ConfigError(f"des datasets {command} is not served by des serve's REST API; run it on the store "
                          f"itself (--root), or one of: {', '.join(sorted(COMMANDS))}")
    return func(client_of(args), args)


def _unsupported(args: argparse.Namespace, command: str, **options: bool) -> None:
    given = [name for name, present in options.items() if present]
    if given:
        raise ConfigError(f"des datasets {command} {given[0]} is not served by des serve's REST API; "
                          "run it on the store itself (--root)")


def _iso(text: str | None) -> str | None:
    """The server's ISO-8601 time (microseconds) as the local commands print it (seconds)."""
    return None if text is None else text[:19] + "Z"


def _dataset(d: dict[str, Any]) -> dict[str, Any]:
    return {"name": d["id"], "description": d["description"], "tags": d["tags"], "metadata": d["metadata"],
            "status": d["status"], "frozen": d["frozen"], "created": _iso(d["created"]),
            "updated": _iso(d["updated"]), "last_write": _iso(d["last_write"]), "next_key": d["next_key"]}


def _datarange(name: str, d: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": name, "first": d["start"], "last": d["end"], "url": d["object"], "size": d["bytes"],
            "sha256": d["sha256"], "count": d["datapoints"], "kind": d["kind"]}


def _list(client: Datas3tClient, args: argparse.Namespace) -> Result:
    found = [d for d in client.list_datasets()
             if (args.status is None or d["status"] == args.status) and set(args.tag) <= set(d["tags"])]
    rows = []
    for d in found[args.offset: args.offset + args.limit]:
        stats = client.get_dataset(d["id"])["stats"]
        rows.append({"name": d["id"], "status": d["status"], "frozen": d["frozen"], "tags": ",".join(d["tags"]),
                     "datapoints": stats["datapoints"], "dataranges": stats["dataranges"], "bytes": stats["bytes"],
                     "description": d["description"]})
    return rows


def _create(client: Datas3tClient, args: argparse.Namespace) -> Result:
    return _dataset(client.create_dataset(args.name, description=args.description, tags=args.tag,
                                          metadata=args.metadata, status=args.status))


def _get(client: Datas3tClient, args: argparse.Namespace) -> Result:
    return _dataset(client.get_dataset(args.name))


def _stats(client: Datas3tClient, args: argparse.Namespace) -> Result:
    d = client.get_dataset(args.name)
    s = d["stats"]
    return {"dataset": args.name, "datapoints": s["datapoints"], "bytes": s["bytes"], "dataranges": s["dataranges"],
            "versions": s["versions"], "next_key": d["next_key"],
            "missing": [list(g) for g in client.missing_ranges(args.name)], "frozen": d["frozen"],
            "status": d["status"], "last_write": _iso(d["last_write"])}


def _delete(client: Datas3tClient, args: argparse.Namespace) -> Result:
    return client.delete_dataset(args.name)


def _ranges(client: Datas3tClient, args: argparse.Namespace) -> Result:
    return [_datarange(args.name, d) for d in client.dataranges(args.name)]


def _missing(client: Datas3tClient, args: argparse.Namespace) -> Result:
    return [list(g) for g in client.missing_ranges(args.name)]


def _aggregate(client: Datas3tClient, args: argparse.Namespace) -> Result:
    _unsupported(args, "aggregate", **{"--compact": args.compact, "--key": bool(args.key),
                                       "--cursor": bool(args.cursor)})
    if args.first is None or args.last is None:
        raise ConfigError("datasets aggregate: give FIRST and LAST")
    return _datarange(args.name, client.aggregate(args.name, args.first, args.last))


def _read(client: Datas3tClient, args: argparse.Namespace) -> Result:
    _unsupported(args, "read", **{"--version": args.version is not None, "--meta": args.meta})
    # A one-member tar carries a record's line and a file's bytes alike.
    with tarfile.open(fileobj=io.BytesIO(client.download_bytes(args.name, args.key, args.key, "tar"))) as tar:
        members = tar.getmembers()
        extracted = tar.extractfile(members[0]) if len(members) == 1 else None
        if extracted is None:
            raise ConfigError(f"datasets read: the server answered {len(members)} members for key {args.key}")
        return extracted.read()


def _cat(client: Datas3tClient, args: argparse.Namespace) -> Result:
    _unsupported(args, "cat", **{"--version": args.version is not None, "--latest-by": bool(args.latest_by)})
    for piece in _cat_pieces(client, args.name, args.first, args.last):
        sys.stdout.buffer.write(piece)
    sys.stdout.buffer.flush()
    return 0


def _cat_pieces(client: Datas3tClient, name: str, first: int | None, last: int | None) -> Iterator[bytes]:
    """As the local ``cat``: a range must be whole; no range reads every record there is (gaps skipped)."""
    if first is not None:
        end = last if last is not None else client.get_dataset(name)["next_key"] - 1
        if end >= first:
            yield from client.download(name, first, end, "jsonl")
        return
    for d in client.dataranges(name):
        yield from client.download(name, d["start"], d["end"], "jsonl")


COMMANDS: dict[str, Callable[[Datas3tClient, argparse.Namespace], Result]] = {
    "list": _list, "create": _create, "get": _get, "stats": _stats, "delete": _delete, "ranges": _ranges,
    "missing": _missing, "aggregate": _aggregate, "read": _read, "cat": _cat,
}
