"""``des discover``: the streams, files and inferred columns under a root, for people."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from connector.config import load_json_file
from connector.errors import ConfigError, ConnectorError
from connector.source.infer import declared_column


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``des discover`` to ``subparsers``."""
    p = subparsers.add_parser("discover", help="list streams and their inferred schemas",
                              description="List the streams under a root (a folder, s3://bucket/prefix, any fsspec "
                                          "URL, or a source config file) and the column types inferred for each.")
    p.add_argument("root_url", nargs="?", help="where the files are (default: root_url of --config)")
    p.add_argument("--config", help="source config JSON file (spec/source.json)")
    p.add_argument("--json", action="store_true", help="print the Airbyte streams as JSON")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace) -> dict[str, Any]:
    """The source config of ``des discover``: ``--config``, with ``root_url`` replaced by the
    positional root if given; :class:`ConfigError` if neither is given."""
    config: dict[str, Any] = {}
    if args.config:
        config = load_json_file(args.config, "config")
    if args.root_url:
        config.pop("bucket_name", None)
        config["root_url"] = args.root_url
    if not config:
        raise ConfigError("give a root URL or --config")
    return config


def run(args: argparse.Namespace) -> int:
    """``des discover``: each stream with its files and inferred column types (``--json``: the
    Airbyte streams)."""
    from connector.source import Source

    source = Source(load_config(args))
    streams = source.discover()
    if not streams:
        raise ConnectorError(source.no_streams_message())
    if args.json:
        json.dump(streams, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for stream in streams:
        files = source.files(stream["name"])
        print(f"{stream['name']}  ({len(files)} files, {sum(f.size for f in files)} bytes)")
        for column, schema in stream["json_schema"]["properties"].items():
            declared = declared_column(schema)
            types = declared.get("type", [])
            types = [t for t in types if t != "null"] if isinstance(types, list) else [types]
            kind = "/".join(types) + (f" ({declared['format']})" if "format" in declared else "")
            if declared is not schema:  # a string with a format, or any text
                kind += " or text"
            print(f"  {column:<28} {kind}")
    return 0
