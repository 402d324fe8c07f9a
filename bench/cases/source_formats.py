"""Issue 15's bench: Avro and zipped CSV read by des-source vs airbyte-source-s3 (records/s, peak
RSS), and discover of many files with ``input_schema`` vs with inference (seconds, requests), with
the listing's cost per ListObjectsV2 page measured on its own."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import datagen
from core import Ctx, add_without_startup, configured_catalog, log, ratio, startup_seconds
from procs import Run

#: Rows per Avro file / zip member: the read's rows split into a few objects.
PART_ROWS = 250_000


def avro_bytes(table) -> bytes:
    """``table`` (datagen's columns) as an Avro object container file, deflate-compressed.

    No column is a ``["null", ...]`` union: airbyte-source-s3 4.16.1 (airbyte-cdk 7.39.1) refuses
    one at discover ("Unsupported avro type: ['null', 'double']"), so datagen's nulls are written
    as 0.0 and "" here, the same objects for both tools."""
    import fastavro
    import pyarrow.compute as pc

    schema = fastavro.parse_schema({"type": "record", "name": "row", "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "active", "type": "boolean"},
        {"name": "qty", "type": "long"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "category", "type": "string"},
    ]})
    table = table.set_column(1, "amount", pc.fill_null(table["amount"], 0.0))
    table = table.set_column(2, "name", pc.fill_null(table["name"], ""))
    sink = io.BytesIO()
    fastavro.writer(sink, schema, table.to_pylist(), codec="deflate")
    return sink.getvalue()


def zip_csv_bytes(table, member: str) -> bytes:
    """``table`` as one CSV member of a deflated zip archive (zip's usual compression)."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(member, date_time=(2024, 1, 1, 0, 0, 0)), datagen.csv_bytes(table),
                   compress_type=zipfile.ZIP_DEFLATED)
    return sink.getvalue()


def _objects(cache: Path, rows: int, seed: int, kinds: set[str]) -> dict[str, dict[str, Path]]:
    """{"avro"|"zip": {key: local path}} of the ``kinds`` asked for: ``rows`` rows in parts of
    <= PART_ROWS, cached on disk."""
    base = cache / f"srcfmt2-{rows}-s{seed}"
    base.mkdir(parents=True, exist_ok=True)
    parts = max(1, -(-rows // PART_ROWS))
    per = -(-rows // parts)
    out: dict[str, dict[str, Path]] = {"avro": {}, "zip": {}}
    for p in range(parts):
        n = min(per, rows - p * per)
        table = None
        for kind, key in (("avro", f"srcfmt-avro/rows/part-{p:03d}.avro"), ("zip", f"srcfmt-zip/rows/part-{p:03d}.zip")):
            if kind not in kinds:
                continue
            path = base / key.replace("/", "__")
            if not path.exists():
                if table is None:
                    table = datagen.rows_table(n, seed + p, start_id=p * per)
                data = avro_bytes(table) if kind == "avro" else zip_csv_bytes(table, f"part-{p:03d}.csv")
                path.write_bytes(data)
            out[kind][key] = path
    return out


def _record(ctx: Ctx, case: str, tool: str, run: Run, expected: int) -> None:
    r = ctx.results
    counts = ctx.server.counts()
    if not run.ok() or run.records != expected:
        why = run.error() if not run.ok() else f"emitted {run.records} records, expected {expected}"
        r.add(case, tool, "errors", 1, note=why)
        log(f"  {case} {tool}: {why}")
        return
    r.add(case, tool, "records/s", run.records / run.seconds, "rec/s")
    r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
    add_without_startup(ctx, case, tool, run.seconds)
    r.add(case, tool, "peak RSS", run.max_rss_mb, "MiB", higher_is_better=False)
    r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
    log(f"  {case} {tool}: {run.records} records in {run.seconds:.2f}s ({run.records / run.seconds:,.0f}/s), "
        f"peak RSS {run.max_rss_mb:.0f} MiB, {counts.get('total', 0)} requests")


def case_source_formats(ctx: Ctx) -> None:
    """Avro and zipped CSV, the same objects for both tools: full-refresh read, records/s."""
    r = ctx.results
    rows = ctx.args.rows
    objects = _objects(ctx.data, rows, ctx.args.seed, set(ctx.args.source_formats.split(",")))
    ctx.put_many({k: v for files in objects.values() for k, v in files.items()}, threads=4)
    # airbyte-source-s3 matches its globs against `archive.zip#member.csv` for a zip's members.
    wanted = set(ctx.args.source_formats.split(","))
    for kind, filetype, glob in (("avro", "avro", "*.avro"), ("zip", "csv", "*.zip#*.csv")):
        if kind not in wanted:
            continue
        case = f"source read {'Avro' if kind == 'avro' else 'zipped CSV'} {rows:,} rows"
        prefix = f"srcfmt-{kind}"
        ours_cfg = ctx.write_json(f"srcfmt-{kind}.json", ctx.our_source_config(prefix, "auto"))
        disc = ctx.run_ours("discover", "--config", ours_cfg)
        ours_cat = (ctx.write_json(f"srcfmt-{kind}-catalog.json", configured_catalog(disc.catalog, "full_refresh"))
                    if disc.ok() and disc.catalog else None)
        if ours_cat is None:
            r.skip(case, "des-source", f"discover failed: {disc.error()}")
        ab_cat = ab_cfg = None
        if ctx.airbyte:
            ab_cfg = ctx.write_json(f"ab-srcfmt-{kind}.json", ctx.airbyte_config([("rows", f"{prefix}/rows/{glob}", filetype)]))
            ab_disc = ctx.run_airbyte("discover", "--config", ab_cfg)
            if ab_disc.catalog:
                ab_cat = ctx.write_json(f"ab-srcfmt-{kind}-catalog.json", configured_catalog(ab_disc.catalog, "full_refresh"))
            else:
                r.skip(case, "airbyte-source-s3", f"discover failed: {ab_disc.error()}")
        else:
            r.skip(case, "airbyte-source-s3", ctx.airbyte_error)
        for i in range(ctx.args.repeat):
            order = [("des-source", ours_cat), ("airbyte-source-s3", ab_cat)]
            if i % 2:  # alternate who goes first so drift in machine load favours neither
                order.reverse()
            for tool, cat in order:
                if cat is None:
                    continue
                ctx.server.reset()
                run = (ctx.run_ours("read", "--config", ours_cfg, "--catalog", cat) if tool == "des-source"
                       else ctx.run_airbyte("read", "--config", str(ab_cfg), "--catalog", cat))
                _record(ctx, case, tool, run, rows)
        ratio(r, case, "records/s", "des-source", "airbyte-source-s3", target=10.0, target_text=">= 10x airbyte-source-s3")
        ratio(r, case, "seconds, start-up excluded", "des-source", "airbyte-source-s3", lower_is_better=True)


#: The declared schema of the discover case's CSV files (datagen's columns).
DECLARED = {"id": "integer", "amount": "number", "name": "string", "active": "boolean", "qty": "integer",
            "created_at": "date-time", "category": "string"}


def case_discover_declared(ctx: Ctx) -> None:
    """``--files`` small CSV files in one stream: des-source discover with ``input_schema`` vs with
    inference (seconds, requests), and the listing alone per ListObjectsV2 page (in process)."""
    r = ctx.results
    n = ctx.args.files
    case = f"discover {n:,} files, input_schema vs inference"
    objects = {f"disc10k/s0/f{i:05d}.csv": datagen.csv_bytes(datagen.rows_table(5, seed=i, start_id=i * 5))
               for i in range(n)}
    t0 = time.perf_counter()
    ctx.put_many(objects, threads=8)
    log(f"  uploaded {n:,} files in {time.perf_counter() - t0:.1f}s")
    stream = {"name": "s0", "globs": ["s0/*.csv"], "format": {"filetype": "csv"}}
    configs = {
        "des-source input_schema": ctx.write_json("disc-declared.json", ctx.our_source_config(
            "disc10k", "csv", streams=[{**stream, "input_schema": DECLARED}])),
        "des-source inference": ctx.write_json("disc-inferred.json", ctx.our_source_config(
            "disc10k", "csv", streams=[stream])),
    }
    for i in range(ctx.args.repeat):
        order = list(configs) if i % 2 == 0 else list(reversed(configs))
        for tool in order:
            ctx.server.reset()
            run = ctx.run_ours("discover", "--config", configs[tool])
            counts = ctx.server.counts()
            if not run.catalog:
                r.add(case, tool, "errors", 1, note=run.error())
                log(f"  {case} {tool}: {run.error()}")
                continue
            r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
            startup = startup_seconds(ctx)["des-source"]
            r.add(case, tool, "seconds, start-up excluded", max(run.seconds - startup, 0.0), "s", higher_is_better=False)
            r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
            r.add(case, tool, "LIST requests", counts.get("LIST", 0), "", higher_is_better=False)
            r.add(case, tool, "GET requests", counts.get("GET", 0), "", higher_is_better=False)
            log(f"  {case} {tool}: {run.seconds:.2f}s, {counts.get('total', 0)} requests ({counts.get('LIST', 0)} LIST)")
    ratio(r, case, "seconds", "des-source input_schema", "des-source inference", lower_is_better=True)
    _listing_per_page(ctx, n)


def _listing_per_page(ctx: Ctx, n: int) -> None:
    """des-source's listing of the ``n`` files alone (``Source.streams()``, in this process): seconds
    per ListObjectsV2 page of 1,000 keys, for the README's scale estimate."""
    from connector.source import Source

    case = f"listing {n:,} keys (des-source, in process)"
    config = ctx.our_source_config("disc10k", "csv")
    for _ in range(ctx.args.repeat):
        ctx.server.reset()
        t0, cpu0 = time.perf_counter(), time.process_time()
        streams = Source(config).streams()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        pages = ctx.server.counts().get("LIST", 0)
        if streams != ["s0"] or not pages:
            ctx.results.add(case, "des-source", "errors", 1, note=f"streams {streams}, {pages} LIST requests")
            continue
        ctx.results.add(case, "des-source", "seconds", seconds, "s", higher_is_better=False)
        ctx.results.add(case, "des-source", "LIST requests", pages, "", higher_is_better=False)
        ctx.results.add(case, "des-source", "ms per LIST page", seconds / pages * 1000, "ms", higher_is_better=False,
                        note="wall time: moto's server answering included; first connection and grouping too")
        ctx.results.add(case, "des-source", "client CPU ms per LIST page", cpu / pages * 1000, "ms",
                        higher_is_better=False, note="this process's CPU: parsing the answers, building FileRefs")
        log(f"  {case}: {seconds:.2f}s, {pages} LIST pages, {seconds / pages * 1000:.0f} ms/page, "
            f"client CPU {cpu / pages * 1000:.0f} ms/page")
    # Memory of the listing per file (Python objects, tracemalloc), once, not timed: held after
    # Source.files() returns, and the peak while listing (s3fs's info dicts of every key coexist
    # with the FileRefs built from them). Each Source also holds a fixed ~12 MB (its S3 client),
    # so the per-file figure is the slope between this listing and one of a fifth as many keys.
    small = max(n // 5, 1)
    ctx.put_many({f"disc10k-fifth/s0/f{i:05d}.csv": b"id\n1\n" for i in range(small)}, threads=8)
    held_n, peak_n = _listing_memory(ctx.our_source_config("disc10k", "csv"))
    held_s, peak_s = _listing_memory(ctx.our_source_config("disc10k-fifth", "csv"))
    per_held, per_peak = (held_n - held_s) / (n - small), (peak_n - peak_s) / (n - small)
    ctx.results.add(case, "des-source", "bytes held per listed file", per_held, "B", higher_is_better=False,
                    note=f"tracemalloc, the list Source.files() returns: slope between {small:,} and {n:,} keys")
    ctx.results.add(case, "des-source", "peak bytes per listed file while listing", per_peak, "B",
                    higher_is_better=False, note="tracemalloc, the same slope")
    ctx.results.add(case, "des-source", "fixed bytes per listing (intercept)", held_n - per_held * n, "B",
                    higher_is_better=False)
    log(f"  {case}: {per_held:.0f} bytes held, {per_peak:.0f} peak, per listed file "
        f"(slope {small:,} -> {n:,} keys), fixed {(held_n - per_held * n) / 1e6:.1f} MB")


def _listing_memory(config: dict) -> tuple[int, int]:
    """(held, peak) bytes traced for ``Source(config).files("s0")``, after a warm-up listing."""
    import tracemalloc

    from connector.source import Source

    Source(config).streams()  # imports and first-use caches out of the measurement
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    refs = Source(config).files("s0")
    held, peak = (x - before for x in tracemalloc.get_traced_memory())
    tracemalloc.stop()
    del refs
    return held, peak
