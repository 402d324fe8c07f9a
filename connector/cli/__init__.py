"""``des``: the human command line.

Each sub-module registers its own sub-commands (``register(subparsers)``) and keeps one job:
``container`` (pack/ls/cat/info/verify/unpack), ``discover``, ``datasets``, ``sync``, ``serve``.

Exit codes: 0 ok, 1 runtime failure, 2 usage error. Errors go to stderr as one line; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from connector import __version__
from connector.errors import ConnectorError

# Modules that contribute sub-commands, in the order they appear in ``des --help``.
COMMAND_MODULES: tuple[str, ...] = ("connector.cli.sync", "connector.cli.datasets", "connector.cli.container",
                                     "connector.cli.discover", "connector.cli.serve")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``des`` command line, each command registered by its module (``COMMAND_MODULES``)."""
    parser = _Parser(prog="des", description="DES containers, datasets and syncs from object storage.")
    parser.add_argument("--version", action="version", version=f"des-connector {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--server", metavar="URL", help="run the datasets commands against des serve at URL "
                        "(http[s]://HOST:PORT) instead of a local store")
    parser.add_argument("--token", metavar="TOKEN", help="bearer token for --server (default: $DES_TOKEN)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``des`` with ``argv`` (default: the process's); returns the exit code. An error prints
    one line ``des: error: ...`` (and its traceback with ``--debug``) and exits 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Warnings of the library (a lock being waited for, a file skipped) reach people as one line each.
    logging.basicConfig(format="des: %(message)s", level=logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        print("des: error: a command is required (see des --help)", file=sys.stderr)
        return EXIT_USAGE
    if (args.server or args.token) and args.command != "datasets":
        print(f"des: error: --server and --token serve the datasets commands, not {args.command}", file=sys.stderr)
        return EXIT_USAGE
    if args.token and not args.server:
        print("des: error: --token needs --server URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("des: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `des cat ... | head` closes our stdout early; that is not an error.
        sys.stderr.close()
        return EXIT_OK
    except (ConnectorError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"des: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - last line of defence for the CLI
        if args.debug:
            traceback.print_exc()
        print(f"des: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
