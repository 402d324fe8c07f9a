"""``des sync``: source config -> store, in one process (see :mod:`connector.sync`)."""

from __future__ import annotations

import argparse
import sys

from connector.config import load_json_file
from connector.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``des sync`` to ``sub``."""
    p = sub.add_parser("sync", help="sync a source into the store (records or whole files)",
                       description="Read every stream of a source config and write it into datasets of a store.")
    p.add_argument("--config", required=True, help="source config JSON (spec/source.json)")
    p.add_argument("--destination", required=True, help="destination config JSON (spec/destination.json)")
    p.add_argument("--catalog", help="configured catalog JSON: sync only its streams")
    p.add_argument("--streams", help="comma-separated stream names (default: all)")
    p.add_argument("--state", help="state file, read at start and rewritten after every commit "
                                   "(default: <root>.state.json beside a local root)")
    p.add_argument("--full-refresh", action="store_true",
                   help="read every file again, ignoring the state (the data is appended; a --catalog "
                        "stream with destination_sync_mode overwrite replaces it)")
    p.add_argument("--mode", choices=("records", "files"), default="records",
                   help="records: one datapoint per record; files: the source objects themselves")
    p.add_argument("--dask", metavar="SCHEDULER",
                   help="read and parse the files on the workers of this Dask scheduler (address, e.g. "
                        "tcp://host:8786); records mode. Keys and commits stay in file order in this process")
    p.add_argument("--no-progress", action="store_true", help="no progress bars even on a terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``des sync``: read the source's streams into the destination's store, one summary line per
    stream."""
    from connector.destination import DestinationConfig
    from connector.sync import StreamMode, Sync, default_state_path, tqdm_progress

    streams = [s for s in args.streams.split(",") if s] if args.streams else None
    modes = {}
    if args.catalog:
        catalog = load_json_file(args.catalog, "catalog")
        streams = [s["stream"]["name"] for s in catalog.get("streams", [])]
        # Read as des-source and des-destination read it: full_refresh (the default) ignores the
        # state, overwrite replaces the data.
        modes = {e["stream"]["name"]: StreamMode(e.get("sync_mode", "full_refresh"), e.get("destination_sync_mode", "append"))
                 for e in catalog.get("streams", [])}
    destination_raw = load_json_file(args.destination, "destination config")
    source_raw = load_json_file(args.config, "source config")
    try:
        destination = DestinationConfig.from_dict(destination_raw)
    except ConfigError as exc:
        raise ConfigError(f"destination config {args.destination}: {exc}") from None
    update, close = tqdm_progress(sys.stderr.isatty() and not args.no_progress)
    try:
        sync = Sync(source_raw, destination, state_path=args.state or default_state_path(destination),
                    mode=args.mode, progress=update, dask=args.dask)
    except ConfigError as exc:
        close()
        raise ConfigError(f"source config {args.config}: {exc}") from None
    try:
        summaries = sync.run(streams, modes, full_refresh=args.full_refresh)
    finally:
        close()
    for s in summaries:
        print(s.line())
    return 0
