"""des-source vs DuckDB doing the same conversion on local files: every row of the bench's files out
as JSON, whole process each (DuckDB: ``COPY (SELECT * FROM read_<fmt>(...)) TO ... (FORMAT json)``).

DuckDB is the limit a C++ engine sets for this work; it writes plain JSON lines, des-source writes
Airbyte RECORD messages (the same values wrapped in an envelope), so DuckDB's output is the smaller.
"""

from __future__ import annotations

import os
import sys

from core import FORMATS, WORK, Ctx, configured_catalog, label, log, profile, ratio
from procs import run_connector

#: DuckDB's reader for each bench format.
READERS = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}
#: DuckDB writes its output here: memory-backed where the machine has it, as des-source's stdout is.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(WORK)


def local_root(ctx: Ctx, file_format: str) -> str:
    """``<WORK>/local/<fmt>/rows/part-*``: the bench's cached files, linked into a stream folder."""
    import datagen

    root = WORK / "local" / f"{ctx.args.rows}-s{ctx.args.seed}" / file_format
    stream = root / "rows"
    stream.mkdir(parents=True, exist_ok=True)
    files = datagen.row_files(ctx.data, ctx.args.rows, ctx.args.seed)[file_format]
    wanted = {key.rsplit("/", 1)[1]: path for key, path in files.items()}
    # Links of another run's files (other sizes) must not stay: both tools would read them.
    for link in stream.iterdir():
        if link.name not in wanted or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, path in wanted.items():
        if not (stream / name).exists():
            (stream / name).symlink_to(path)
    return str(root)


def duckdb_argv(file_format: str, root: str, out: str) -> list[str]:
    ext = "jsonl" if file_format == "jsonl" else file_format
    sql = (f"COPY (SELECT * FROM {READERS[file_format]}('{root}/rows/*.{ext}')) TO '{out}' (FORMAT json)")
    return [sys.executable, "-c", f"import duckdb; duckdb.sql({sql!r})"]


def case_duckdb(ctx: Ctx) -> None:
    r = ctx.results
    rows = ctx.args.rows
    try:
        import duckdb  # noqa: F401
    except ImportError:
        for file_format in FORMATS:
            r.skip(f"vs DuckDB {label(file_format)}, local", "DuckDB", "duckdb is not installed (pip install duckdb)")
        return
    for file_format in FORMATS:
        case = f"vs DuckDB {label(file_format)}, local"
        root = local_root(ctx, file_format)
        cfg = ctx.write_json(f"duck-{file_format}.json", {"root_url": root,
                                                            "file_format": "json" if file_format == "jsonl" else file_format})
        disc = ctx.run_ours("discover", "--config", cfg)
        if not disc.catalog:
            r.skip(case, "des-source", f"discover failed: {disc.error()}")
            continue
        cat = ctx.write_json(f"duck-{file_format}-catalog.json", configured_catalog(disc.catalog, "full_refresh"))
        out = f"{SCRATCH}/des-bench-duckdb.json"
        for i in range(ctx.args.repeat):
            order = ["des-source", "DuckDB"] if i % 2 == 0 else ["DuckDB", "des-source"]
            for tool in order:
                if tool == "des-source":
                    run = ctx.run_ours("read", "--config", cfg, "--catalog", cat)
                    got = run.records
                else:
                    run = run_connector(duckdb_argv(file_format, root, out), env=ctx.env)
                    with open(out, "rb") as f:
                        got = sum(1 for _ in f)
                if run.rc != 0 or got != rows:
                    why = run.error() if run.rc != 0 else f"wrote {got} rows, expected {rows}"
                    r.add(case, tool, "errors", 1, note=why)
                    log(f"  {case} {tool}: {why}")
                    continue
                r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
                r.add(case, tool, "peak RSS", run.max_rss_mb, "MiB", higher_is_better=False)
                log(f"  {case} {tool}: {rows} rows in {run.seconds:.2f}s, peak RSS {run.max_rss_mb:.0f} MiB")
        ratio(r, case, "seconds", "des-source", "DuckDB", lower_is_better=True,
              target=1 / 1.2, target_text="within 1.2x of DuckDB")
        profile(ctx, case, "connector.airbyte.source_main", "read", "--config", cfg, "--catalog", cat)
