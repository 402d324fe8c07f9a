"""``des-destination``: datasets of DES dataranges as an Airbyte destination.

``des-destination spec | check --config F | write --config F --catalog F`` (messages on stdin)

stdout carries Airbyte messages only: the STATE messages of stdin, echoed once everything before
them is committed (see :mod:`connector.destination.write`), LOG messages, and a TRACE error naming
the stdin line or config field when something is wrong. Never a traceback on stdout.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from connector.airbyte import messages
from connector.airbyte.entrypoint import EXIT_OK, ArgParser, Output, run
from connector.config import load_json_file
from connector.errors import ConfigError, ConnectorError
from connector.storage import describe


def build_parser() -> argparse.ArgumentParser:
    """The ``des-destination`` command line: ``spec``, ``check``, ``write``."""
    parser = ArgParser(prog="des-destination", description="Airbyte records into DES dataranges, one dataset per stream.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgParser, required=True)
    sub.add_parser("spec", help="print the configuration spec")
    p = sub.add_parser("check", help="validate the config and prove the root is writable")
    p.add_argument("--config", required=True, help="destination config JSON file")
    p = sub.add_parser("write", help="read RECORD/STATE messages on stdin, write them, echo STATE")
    p.add_argument("--config", required=True, help="destination config JSON file")
    p.add_argument("--catalog", required=True, help="configured catalog JSON file")
    return parser


def cmd_spec(out: Output, args: argparse.Namespace) -> int:
    """Print the destination's SPEC message (its config schema and sync modes)."""
    from connector.destination.config import load_spec

    out.message(messages.spec(load_spec(), supported_destination_sync_modes=["append", "overwrite", "append_dedup"],
                              supportsIncremental=True, supportsRefreshes=True,
                              documentationUrl="https://github.com/des-connector/des-connector#destination"))
    return EXIT_OK


def cmd_check(out: Output, args: argparse.Namespace) -> int:
    """Validate the config and prove the store root is writable (writes and deletes one probe
    object); a CONNECTION_STATUS message says which."""
    from connector.destination import DestinationConfig

    config = DestinationConfig.from_dict(load_json_file(args.config, "config"))
    try:
        store = config.open_store()
        probe = f"{store.root}/.des-check-{uuid.uuid4().hex}"
        store.fs.pipe_file(probe, b"ok")
        store.fs.rm_file(probe)
        store.close()
    except ConnectorError:
        raise
    except Exception as exc:  # noqa: BLE001 - any storage failure is a failed check
        out.message(messages.connection_status(False, f"cannot write under {config.root_url}: {describe(exc)}"))
        return EXIT_OK
    out.message(messages.connection_status(True))
    return EXIT_OK


def cmd_write(out: Output, args: argparse.Namespace) -> int:
    """Write the RECORD messages on stdin into datasets, echoing each STATE once everything before
    it is committed; a LOG line per dataset at the end."""
    from connector.destination import DestinationConfig, write_messages

    config = DestinationConfig.from_dict(load_json_file(args.config, "config"))
    catalog = load_json_file(args.catalog, "catalog")
    if not isinstance(catalog, dict):
        raise ConfigError(f"catalog {args.catalog} must be a JSON object with 'streams'")

    def emit(line: bytes) -> None:
        out.raw(line)
        out.flush()

    written = write_messages(config, catalog, sys.stdin.buffer, emit)
    for dataset, n in written.items():
        out.message(messages.log(f"dataset {dataset}: {n} records written"))
    return EXIT_OK


COMMANDS = {"spec": cmd_spec, "check": cmd_check, "write": cmd_write}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``des-destination`` with ``argv`` (default: the process's); returns the exit code."""
    return run(build_parser().parse_args(argv), COMMANDS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
