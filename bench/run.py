"""des-connector against its peers, in one run, on the same objects in the same S3 server.

    python bench/run.py [--quick] [--rows N] [--files N] [--repeat K] [--cases a,b,...]

Starts moto's S3 server (with a request counter) on 127.0.0.1, loads seeded data, runs every case
``--repeat`` times (at least 3), and writes ``bench/RESULTS.md``: ratios and targets first,
absolute figures (median and min-max spread) second. Nothing here is run by CI's test command.
Cases (one module each in bench/cases/): source_read, small_input, discover, incremental, destination, sync, random_read,
batch_read, pack, duckdb, scale, serve, source_formats, discover_declared, dask, catalog. bench/core.py holds what they
share, bench/report.py writes the report.
"""

from __future__ import annotations

import argparse
import compileall
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import datagen  # noqa: E402
import peers  # noqa: E402
from cases import CASES  # noqa: E402
from core import BUCKET, T0, WORK, Ctx, Results, log  # noqa: E402
from report import write_report  # noqa: E402
from s3server import S3Server  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (20,000 rows, 400 files) for a first look, not for the published "
                        "table: every case in about 25 minutes on 2 cores (most of it airbyte-source-s3's fixed cost per run and "
                        "its zipped-CSV read; --cases picks fewer), plus about 3 minutes on the first run to create the peer's "
                        "virtualenv")
    p.add_argument("--rows", type=int, help="rows in the read/write dataset (default 1,000,000; quick 20,000)")
    p.add_argument("--files", type=int, help="small files to pack/read (default 10,000; quick 400)")
    p.add_argument("--repeat", type=int, default=3, help="repeats per case (at least 3 for the published table)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--latency-ms", type=float, default=10.0,
                   help="modelled S3 latency per request for the pack case's second run (0: skip it)")
    p.add_argument("--scale-rows", help="row counts of the scale case (default 100000,1000000,10000000; quick 10000,100000)")
    p.add_argument("--scale-files", help="object counts of the scale case (default 1000,10000,100000; quick 100,1000)")
    p.add_argument("--scale-timeout", type=float, default=900.0, help="seconds one scale run may take (default 900)")
    p.add_argument("--profile", action="store_true",
                   help="run each of our main commands once more under py-spy (every thread and process; "
                        "pip install py-spy) or, without it, cProfile (main thread only); top lines go into the report")
    p.add_argument("--dask-rows", type=int, help="records of the dask case (default 1,000,000; quick 100,000)")
    p.add_argument("--catalog-rows", help="datarange counts the catalog case grows through (default 5000,10000,20000,40000; quick 2000,4000)")
    p.add_argument("--source-formats", default="avro,zip",
                   help="formats of the source_formats case (default avro,zip; airbyte-source-s3 reads zipped CSV at "
                        "~500 rec/s, so a large --rows run is usually avro only)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="Markdown output (default bench/RESULTS.md)")
    p.add_argument("--no-airbyte", action="store_true", help="skip installing/running airbyte-source-s3")
    p.add_argument("--s3-keepalive", action="store_true",
                   help="serve moto behind aiohttp's HTTP/1.1 server, which keeps connections open between requests "
                        "as S3 does (default: werkzeug's, which closes each one, as `python -m moto.server` does)")
    args = p.parse_args(argv)
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    args.files = args.files or (400 if args.quick else 10_000)
    args.dask_rows = args.dask_rows or (100_000 if args.quick else 1_000_000)
    args.catalog_rows = args.catalog_rows or ("2000,4000" if args.quick else "5000,10000,20000,40000")
    args.scale_rows = args.scale_rows or ("10000,100000" if args.quick else "100000,1000000,10000000")
    args.scale_files = args.scale_files or ("100,1000" if args.quick else "1000,10000,100000")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases: {', '.join(sorted(unknown))}")
    # Our commands run from this checkout, the peer from a pip-installed virtualenv whose modules pip
    # compiled at install. Compile ours too, so neither pays bytecode compilation on every start-up
    # (PYTHONDONTWRITEBYTECODE, set on some machines, would otherwise make ours pay it each time).
    compileall.compile_dir(str(BENCH.parent / "connector"), quiet=1)
    started = datetime.now(timezone.utc)
    load0 = os.getloadavg()
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "data"
    data.mkdir(exist_ok=True)

    ctx = Ctx(args=args, server=S3Server(keepalive=args.s3_keepalive), results=Results(), data=data)
    if not args.no_airbyte and {"source_read", "small_input", "discover", "incremental", "scale", "source_formats"} & set(cases):
        try:
            ctx.airbyte = peers.airbyte_venv(WORK, log)
        except Exception as exc:  # noqa: BLE001
            ctx.airbyte_error = f"could not install airbyte-source-s3: {exc}"
            log(ctx.airbyte_error)
    elif args.no_airbyte:
        ctx.airbyte_error = "--no-airbyte given"

    log(f"generating data ({args.rows:,} rows, {args.files:,} small files, seed {args.seed})")
    row_files = datagen.row_files(data, args.rows, args.seed) if {"source_read", "destination", "sync", "duckdb"} & set(cases) else {}
    ctx.small = datagen.small_files(data, args.files, args.seed) if {"random_read", "batch_read", "pack"} & set(cases) else {}
    ctx.server.start()
    log(f"moto S3 server at {ctx.server.endpoint_url}")
    try:
        ctx.server.boto3().create_bucket(Bucket=BUCKET)
        ctx.put_many({k: v for files in row_files.values() for k, v in files.items()}, threads=4)
        if ctx.small:
            ctx.put_many(ctx.small)
        log("data loaded")
        for i, name in enumerate(cases):
            log(f"case {name}")
            try:
                CASES[name](ctx)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                ctx.results.skip(name, "all", f"case crashed: {type(exc).__name__}: {exc}")
            # After every case: a long run stopped part-way still leaves what it measured.
            write_report(ctx, Path(args.out), started, time.time() - T0, (load0, os.getloadavg()),
                         cases[:i + 1], cases[i + 1:])
    finally:
        ctx.server.stop()
    elapsed = time.time() - T0
    write_report(ctx, Path(args.out), started, elapsed, (load0, os.getloadavg()), cases)
    log(f"wrote {args.out} in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
