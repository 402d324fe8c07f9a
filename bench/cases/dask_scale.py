"""Issue 18's bench: ``des sync`` in one process vs ``des sync --dask`` on a
``distributed.LocalCluster`` of 1 and 2 worker processes, and a group-by through
``Store.to_dask`` vs ``Store.to_table``: seconds and peak RSS of every process.

The size is ``--dask-rows`` (CSV files of <= ``PART_ROWS`` rows, so Dask has files to spread).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import datagen
from core import DES, REPO, WORK, Ctx, datapoints, log, our_destination_config, ratio
from procs import run_connector

PART_ROWS = 125_000
PREFIX = "dasksync"
DATASET = "rows"

#: Run in its own process (so its peak RSS is its own): a group-by over the synced dataset, through
#: ``to_table`` (pyarrow) or ``to_dask`` (on a fresh LocalCluster of 2 worker processes). Prints
#: one JSON line: seconds of the group-by, the result, and the peak RSS (KiB) of every process.
GROUPBY = r'''
import json, resource, sys, time
from connector.store import Store


def main():
    mode, root, catalog, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    out = {}
    with Store(root, catalog, storage_options=options) as store:
        if mode == "table":
            t0 = time.perf_counter()
            table = store.to_table("rows")
            grouped = table.group_by("category").aggregate([("qty", "sum"), ("id", "count")])
            out["seconds"] = time.perf_counter() - t0
            out["result"] = {r["category"]: [r["qty_sum"], r["id_count"]] for r in grouped.to_pylist()}
        else:
            import distributed
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                          silence_logs=40) as cluster, distributed.Client(cluster) as client:
                t0 = time.perf_counter()
                frame = store.to_dask("rows")  # all columns, as to_table reads them
                grouped = frame.groupby("category").agg({"qty": "sum", "id": "count"}).compute()
                out["seconds"] = time.perf_counter() - t0
                out["result"] = {str(k): [int(v["qty"]), int(v["id"])] for k, v in grouped.iterrows()}
                out["workers_kib"] = sorted(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
    out["self_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


if __name__ == "__main__":  # the LocalCluster's workers are spawned: they import this file
    main()
'''


def _files(cache: Path, rows: int, seed: int) -> dict[str, Path]:
    """``rows`` rows as CSV files of <= PART_ROWS rows, cached on disk: {key: path}."""
    base = cache / f"dask-{rows}-s{seed}"
    base.mkdir(parents=True, exist_ok=True)
    parts = max(2, -(-rows // PART_ROWS))
    per = -(-rows // parts)
    out = {}
    for p in range(parts):
        key = f"{PREFIX}/{DATASET}/part-{p:03d}.csv"
        path = base / key.replace("/", "__")
        if not path.exists():
            path.write_bytes(datagen.csv_bytes(datagen.rows_table(min(per, rows - p * per), seed + p, start_id=p * per)))
        out[key] = path
    return out


def _reset(ctx: Ctx, dest: dict, state: Path) -> None:
    ctx.delete_prefix(f"{PREFIX}-store")
    for p in Path(dest["catalog_path"]).parent.glob(Path(dest["catalog_path"]).name + "*"):
        p.unlink()
    state.unlink(missing_ok=True)


def _sync(ctx: Ctx, case: str, tool: str, argv: list[str], dest: dict, rows: int, cluster: Any = None) -> bool:
    """One sync; record its seconds, records/s and peak RSS (coordinator, and each worker)."""
    r = ctx.results
    run = run_connector(argv, cwd=REPO, env=ctx.our_env)
    landed = datapoints(ctx, dest, DATASET)
    if run.rc != 0 or landed != rows:
        why = run.error() if run.rc != 0 else f"{landed} records landed, expected {rows}"
        r.add(case, tool, "errors", 1, note=why)
        log(f"  {case} {tool}: {why}")
        return False
    r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
    r.add(case, tool, "records/s", rows / run.seconds, "rec/s")
    r.add(case, tool, "peak RSS, des sync process", run.max_rss_mb, "MiB", higher_is_better=False)
    workers = ""
    if cluster is not None:
        import distributed

        with distributed.Client(cluster) as client:
            kib = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()
        r.add(case, tool, "peak RSS, largest worker", max(kib) / 1024, "MiB", higher_is_better=False,
              note="a fresh LocalCluster per run; workers = separate processes, 1 thread each")
        workers = f", workers {', '.join(f'{k / 1024:.0f}' for k in kib)} MiB"
    log(f"  {case} {tool}: {run.seconds:.2f}s, des sync {run.max_rss_mb:.0f} MiB{workers}")
    return True


def _groupby(ctx: Ctx, case: str, dest: dict, repeat: int) -> None:
    script = WORK / "dask_groupby.py"
    script.write_text(GROUPBY)
    root = dest.get("root_url") or f"s3://{dest['bucket_name']}/{dest['path_prefix']}"
    options = {k: v for k, v in ctx.server.storage_options().items() if k != "skip_instance_cache"}
    results: dict[str, Any] = {}
    for i in range(repeat):
        order = ["to_table", "to_dask"] if i % 2 == 0 else ["to_dask", "to_table"]
        for tool in order:
            proc = subprocess.run([sys.executable, str(script), "table" if tool == "to_table" else "dask", root,
                                   dest["catalog_path"], json.dumps(options)], cwd=REPO, env=ctx.our_env,
                                  capture_output=True, text=True, timeout=1800)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                ctx.results.add(case, tool, "errors", 1, note=f"exit {proc.returncode}: {proc.stderr[-300:]}")
                log(f"  {case} {tool}: exit {proc.returncode}: {proc.stderr[-300:]}")
                continue
            out = json.loads(lines[-1])
            results[tool] = out["result"]
            ctx.results.add(case, tool, "group-by seconds", out["seconds"], "s", higher_is_better=False,
                            note="" if tool == "to_table" else "cluster start-up excluded")
            ctx.results.add(case, tool, "peak RSS, calling process", out["self_kib"] / 1024, "MiB", higher_is_better=False,
                            note="" if tool == "to_table" else "holds the LocalCluster's scheduler too")
            if "workers_kib" in out:
                ctx.results.add(case, tool, "peak RSS, largest worker", max(out["workers_kib"]) / 1024, "MiB",
                                higher_is_better=False)
            log(f"  {case} {tool}: {out['seconds']:.2f}s, {out['self_kib'] / 1024:.0f} MiB"
                + (f", workers {[round(k / 1024) for k in out['workers_kib']]} MiB" if "workers_kib" in out else ""))
    if len(results) == 2 and results["to_table"] != results["to_dask"]:
        ctx.results.add(case, "to_dask", "errors", 1, note="group-by result differs from to_table's")
    ratio(ctx.results, case, "group-by seconds", "to_dask", "to_table", lower_is_better=True)


def case_dask(ctx: Ctx) -> None:
    """des sync: one process vs --dask on 1 and 2 worker processes; then to_dask vs to_table group-by."""
    import distributed

    rows = ctx.args.dask_rows
    files = _files(ctx.data, rows, ctx.args.seed)
    ctx.put_many(files, threads=4)
    src_cfg = ctx.write_json("dask-src.json", ctx.our_source_config(PREFIX, "csv"))
    dest = {**our_destination_config(ctx, f"{PREFIX}-store"), "catalog_path": str(WORK / "dask-catalog.sqlite")}
    dest.pop("catalog", None)
    dest_cfg = ctx.write_json("dask-dest.json", dest)
    state = WORK / "cfg" / "dask-state.json"
    case = f"des sync {rows:,} rows in {len(files)} CSV files, S3 -> S3"
    base = [*DES, "sync", "--config", src_cfg, "--destination", dest_cfg, "--state", str(state), "--no-progress"]
    for i in range(ctx.args.repeat):
        for tool in (["single process", "--dask, 1 worker", "--dask, 2 workers"][:: 1 if i % 2 == 0 else -1]):
            _reset(ctx, dest, state)
            if tool == "single process":
                _sync(ctx, case, tool, base, dest, rows)
                continue
            n = 1 if "1 worker" in tool else 2
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                          silence_logs=40) as cluster:
                _sync(ctx, case, tool, [*base, "--dask", cluster.scheduler_address], dest, rows, cluster)
    ratio(ctx.results, case, "seconds", "--dask, 2 workers", "single process", lower_is_better=True)
    ratio(ctx.results, case, "seconds", "--dask, 2 workers", "--dask, 1 worker", lower_is_better=True)
    # The group-by reads what the last sync left (a full dataset of `rows` records).
    if datapoints(ctx, dest, DATASET) == rows:
        _groupby(ctx, f"group-by of {rows:,} records (store on S3)", dest, ctx.args.repeat)
    else:
        ctx.results.skip(f"group-by of {rows:,} records", "all", "no complete dataset after the syncs")
    _reset(ctx, dest, state)
