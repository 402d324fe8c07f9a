"""Two checkouts of des-connector against the same peers, in one session, runs alternated.

    python bench/compare.py [NAME=]BASE_DIR [NAME=]NEW_DIR... [--rows N] [--repeat K] [--cases source_read,destination]
                            [--formats csv,jsonl,parquet] [--json OUT]

BASE_DIR and NEW_DIR are source trees (e.g. ``git archive 668197e | tar -x -C /tmp/base``); each
runs with its own directory first on PYTHONPATH. Each repeat runs base, new and the peer
(airbyte-source-s3 for source reads, the s3fs JSONL writer for the destination) in a rotating
order, so drift in machine load does not favour one side. Printed per tool: wall seconds,
user+sys CPU seconds (GNU time), peak RSS, and each checkout's ratio to the peer measured in the
same repeat. On a shared machine CPU seconds and same-repeat ratios are the figures to compare;
wall time moves with other load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import datagen  # noqa: E402
import peers  # noqa: E402
from cases.destination import _records_file  # noqa: E402
from core import BUCKET, WORK, Ctx, Results, configured_catalog, log  # noqa: E402
from procs import Run, run_connector  # noqa: E402
from s3server import S3Server  # noqa: E402


def _env(ctx: Ctx, tree: Path) -> dict[str, str]:
    return {**ctx.env, "PYTHONPATH": str(tree)}


def _ours(ctx: Ctx, tree: Path, module: str, *args: str, stdin_path: str | None = None) -> Run:
    return run_connector([sys.executable, "-m", module, *args], cwd=tree, env=_env(ctx, tree), stdin_path=stdin_path)


def _dest_config(ctx: Ctx, tree: Path, prefix: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "connector.airbyte.destination_main", "spec"], cwd=tree,
                         capture_output=True, timeout=120, env=_env(ctx, tree))
    props: dict = {}
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("type") == "SPEC":
            props = msg["spec"]["connectionSpecification"].get("properties", {})
    cfg = {"root_url": f"s3://{BUCKET}/{prefix}", "catalog_path": str(WORK / f"cmp-{prefix}.sqlite")}
    for name, value in (("endpoint", ctx.server.endpoint_url), ("region", ctx.server.region),
                        ("access_key_id", ctx.server.key), ("secret_access_key", ctx.server.secret)):
        if name in props:
            cfg[name] = value
    return cfg


def _row(samples: dict[str, list[Run]], rows: int) -> None:
    for tool, runs in samples.items():
        wall = [r.seconds for r in runs]
        cpu = [r.cpu_seconds for r in runs]
        rss = [r.max_rss_mb for r in runs]
        print(f"    {tool:22s} wall {statistics.median(wall):6.2f} s ({min(wall):.2f}-{max(wall):.2f})  "
              f"cpu {statistics.median(cpu):6.2f} s ({min(cpu):.2f}-{max(cpu):.2f})  "
              f"rec/s {rows / statistics.median(wall):>9,.0f}  peak RSS {statistics.median(rss):5.0f} MiB", flush=True)


def _ratios(samples: dict[str, list[Run]], peer: str, ours: list[str]) -> dict[str, dict[str, float]]:
    """Per checkout: median over repeats of (peer seconds / our seconds) from the same repeat."""
    out = {}
    for tool in ours:
        pairs = list(zip(samples[tool], samples[peer]))
        wall = statistics.median(p.seconds / o.seconds for o, p in pairs)
        cpu = statistics.median(p.cpu_seconds / o.cpu_seconds for o, p in pairs)
        out[tool] = {"wall_ratio": wall, "cpu_ratio": cpu}
        print(f"    {tool} vs {peer}: wall ratio {wall:.2f}x, CPU ratio {cpu:.2f}x (median of same-repeat ratios)")
    return out


def source_read(ctx: Ctx, trees: dict[str, Path], formats: list[str], report: dict) -> None:
    rows = ctx.args.rows
    for fmt in formats:
        tools: dict[str, tuple] = {}
        for name, tree in trees.items():
            cfg = ctx.write_json(f"cmp-{name}-{fmt}.json", ctx.our_source_config(fmt, fmt))
            disc = _ours(ctx, tree, "connector.airbyte.source_main", "discover", "--config", cfg)
            assert disc.ok() and disc.catalog, disc.error()
            cat = ctx.write_json(f"cmp-{name}-{fmt}-cat.json", configured_catalog(disc.catalog, "full_refresh"))
            tools[name] = ("ours", tree, cfg, cat)
        if ctx.airbyte:
            ab_cfg = ctx.write_json(f"cmp-ab-{fmt}.json", ctx.airbyte_config([("rows", f"{fmt}/rows/*", fmt)]))
            disc = ctx.run_airbyte("discover", "--config", ab_cfg)
            assert disc.catalog, disc.error()
            tools["airbyte-source-s3"] = ("peer", None, ab_cfg,
                                          ctx.write_json(f"cmp-ab-{fmt}-cat.json", configured_catalog(disc.catalog, "full_refresh")))
        samples: dict[str, list[Run]] = {t: [] for t in tools}
        names = list(tools)
        for i in range(ctx.args.repeat):
            order = names[i % len(names):] + names[:i % len(names)]
            for tool in order:
                kind, tree, cfg, cat = tools[tool]
                if kind == "ours":
                    run = _ours(ctx, tree, "connector.airbyte.source_main", "read", "--config", cfg, "--catalog", cat)
                else:
                    run = ctx.run_airbyte("read", "--config", cfg, "--catalog", cat)
                assert run.ok() and run.records == rows, (tool, run.error(), run.records)
                samples[tool].append(run)
                log(f"  {fmt} {tool}: wall {run.seconds:.2f} s cpu {run.cpu_seconds:.2f} s rss {run.max_rss_mb:.0f} MiB")
        print(f"  source read {fmt}, {rows:,} rows, {ctx.args.repeat} repeats:")
        _row(samples, rows)
        entry: dict[str, Any] = {t: [{"wall": r.seconds, "cpu": r.cpu_seconds, "rss": r.max_rss_mb} for r in rs]
                                 for t, rs in samples.items()}
        if "airbyte-source-s3" in samples:
            entry["ratios"] = _ratios(samples, "airbyte-source-s3", list(trees))
        report[f"source_read {fmt}"] = entry


def destination(ctx: Ctx, trees: dict[str, Path], report: dict) -> None:
    rows = ctx.args.rows
    records = str(_records_file(ctx))
    scripts = peers.write_peer_scripts(WORK)
    catalog = ctx.write_json("cmp-dest-catalog.json", {"streams": [{
        "stream": {"name": "rows", "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append"}]})
    cfgs = {name: _dest_config(ctx, tree, f"cmp-dest-{name}") for name, tree in trees.items()}
    names = [*trees, "s3fs JSONL writer"]
    samples: dict[str, list[Run]] = {t: [] for t in names}
    for i in range(ctx.args.repeat):
        order = names[i % len(names):] + names[:i % len(names)]
        for tool in order:
            if tool in trees:
                cfg = cfgs[tool]
                ctx.delete_prefix(f"cmp-dest-{tool}")
                Path(cfg["catalog_path"]).unlink(missing_ok=True)
                run = _ours(ctx, trees[tool], "connector.airbyte.destination_main", "write", "--config",
                            ctx.write_json(f"cmp-dest-{tool}.json", cfg), "--catalog", catalog, stdin_path=records)
            else:
                ctx.delete_prefix("cmp-dest-peer")
                run = run_connector([sys.executable, str(scripts["s3fs_jsonl_writer"]), ctx.server.endpoint_url,
                                     f"{BUCKET}/cmp-dest-peer", "100000"], env=ctx.env, stdin_path=records)
            assert run.rc == 0 and not any(t.get("trace", {}).get("type") == "ERROR" for t in run.traces), (tool, run.error())
            samples[tool].append(run)
            log(f"  destination {tool}: wall {run.seconds:.2f} s cpu {run.cpu_seconds:.2f} s rss {run.max_rss_mb:.0f} MiB")
    print(f"  destination, {rows:,} records, {ctx.args.repeat} repeats:")
    _row(samples, rows)
    entry: dict[str, Any] = {t: [{"wall": r.seconds, "cpu": r.cpu_seconds, "rss": r.max_rss_mb} for r in rs]
                             for t, rs in samples.items()}
    entry["ratios"] = _ratios(samples, "s3fs JSONL writer", list(trees))
    report["destination"] = entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", type=Path, nargs="+", help="source trees, compared in the order given (NAME=DIR names one)")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cases", default="source_read,destination")
    p.add_argument("--formats", default="csv,jsonl,parquet")
    p.add_argument("--no-airbyte", action="store_true")
    p.add_argument("--json", type=Path, help="write every sample here")
    args = p.parse_args(argv)
    trees = {}
    for i, spec in enumerate(map(str, args.trees)):
        name, _, path = spec.rpartition("=")
        trees[name or ("base" if i == 0 else f"new{i if i > 1 else ''}")] = Path(path).resolve()
    cases = args.cases.split(",")
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "data"
    data.mkdir(exist_ok=True)
    ctx = Ctx(args=args, server=S3Server(), results=Results(), data=data)
    if "source_read" in cases and not args.no_airbyte:
        ctx.airbyte = peers.airbyte_venv(WORK, log)
    files = datagen.row_files(data, args.rows, args.seed)
    ctx.server.start()
    report: dict = {"load_start": os.getloadavg()}
    try:
        ctx.server.boto3().create_bucket(Bucket=BUCKET)
        if "source_read" in cases:
            ctx.put_many({k: v for fmt, fs in files.items() for k, v in fs.items()}, threads=4)
            source_read(ctx, trees, args.formats.split(","), report)
        if "destination" in cases:
            destination(ctx, trees, report)
    finally:
        ctx.server.stop()
    report["load_end"] = os.getloadavg()
    print(f"load average start {report['load_start']} end {report['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
