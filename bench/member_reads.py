"""Member reads from a DES container in a process of their own, so ``bench/run.py --profile`` can
profile them as it profiles the connector's commands (the random- and batch-read cases time their
reads inside the bench's process, beside the S3 server's client and the peers).

``cold``: for each name, nothing cached (index cache and fsspec instances cleared), a fresh
``des://`` filesystem opened on the container and the member read whole, as the cold rows of the
random-read case do. ``batch``: one ``DesReader.read_many`` of all the names, as the batch-read case.

    python -m bench.member_reads cold|batch URL OPTIONS_JSON NAMES_FILE

Prints how many members and bytes it read; exits non-zero if a member is missing or empty.
"""

from __future__ import annotations

import argparse
import json
import sys


def _cold(url: str, options: dict, names: list[str]) -> int:
    import fsspec

    from connector.des import DEFAULT_CACHE

    total = 0
    for name in names:
        DEFAULT_CACHE.clear()
        for protocol in ("s3", "des"):
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
        fs = fsspec.filesystem("des", fo=url, target_protocol="s3", target_options=options, skip_instance_cache=True)
        data = fs.cat_file(name)
        if not data:
            raise SystemExit(f"member {name!r} of {url} read back empty")
        total += len(data)
    return total


def _batch(url: str, options: dict, names: list[str]) -> int:
    from connector.des import DesReader, IndexCache

    got = DesReader(url, storage_options=options, cache=IndexCache()).read_many(names)
    missing = [n for n in names if not got.get(n)]
    if missing:
        raise SystemExit(f"{len(missing)} members of {url} missing or empty, first {missing[0]!r}")
    return sum(len(v) for v in got.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("cold", "batch"))
    p.add_argument("url", help="the container, s3://bucket/key.des")
    p.add_argument("options", help="a JSON file of s3fs storage options")
    p.add_argument("names", help="a file of member names, one per line")
    args = p.parse_args(argv)
    with open(args.options, encoding="utf-8") as f:
        options = json.load(f)
    with open(args.names, encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f if line.strip()]
    total = (_cold if args.mode == "cold" else _batch)(args.url, options, names)
    print(f"{len(names)} members, {total} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
