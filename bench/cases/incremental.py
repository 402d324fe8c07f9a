"""One new file among 200: the incremental re-read with saved state."""

from __future__ import annotations

import time
from collections.abc import Callable

import datagen
from core import Ctx, add_without_startup, configured_catalog, log, profile, ratio
from procs import Run, last_states


def case_incremental(ctx: Ctx) -> None:
    """200 CSV files read once; 1 new file arrives; re-read with the saved state (timed)."""
    r = ctx.results
    case = "incremental: 1 new file among 200"
    objects = {f"inc/events/f{f:03d}.csv": datagen.csv_bytes(datagen.rows_table(500, seed=5000 + f, start_id=f * 500))
               for f in range(200)}
    ctx.put_many(objects)
    tools: dict[str, tuple[Callable[..., Run], str, str]] = {}
    ours_cfg = ctx.write_json("ours-inc.json", ctx.our_source_config("inc", "csv"))
    tools["des-source"] = (ctx.run_ours, ours_cfg, "")
    if ctx.airbyte:
        tools["airbyte-source-s3"] = (ctx.run_airbyte, ctx.write_json("ab-inc.json", ctx.airbyte_config([("events", "inc/events/*.csv", "csv")])), "")
    else:
        r.skip(case, "airbyte-source-s3", ctx.airbyte_error)
    prepared: dict[str, tuple[str, str]] = {}
    for tool, (fn, cfg, _) in tools.items():
        disc = fn("discover", "--config", cfg)
        if not disc.catalog:
            r.skip(case, tool, f"discover failed: {disc.error()}")
            continue
        cat = ctx.write_json(f"{tool}-inc-catalog.json", configured_catalog(disc.catalog, "incremental"))
        first = fn("read", "--config", cfg, "--catalog", cat)
        if not first.ok():
            r.skip(case, tool, f"first read failed: {first.error()}")
            continue
        state = last_states(first)
        prepared[tool] = (cat, ctx.write_json(f"{tool}-inc-state.json", state))
        log(f"  {case} {tool}: first read {first.records} records in {first.seconds:.2f}s")
    time.sleep(1.2)  # LastModified has one-second resolution: the new file is strictly newer
    new_rows = 500
    ctx.put_many({"inc/events/new-0001.csv": datagen.csv_bytes(datagen.rows_table(new_rows, seed=9999, start_id=10**7))})
    for i in range(ctx.args.repeat):
        order = list(prepared)
        if i % 2:
            order.reverse()
        for tool in order:
            fn, cfg, _ = tools[tool]
            cat, state = prepared[tool]
            ctx.server.reset()
            run = fn("read", "--config", cfg, "--catalog", cat, "--state", state)
            counts = ctx.server.counts()
            if not run.ok():
                r.add(case, tool, "errors", 1, note=run.error())
                continue
            note = "" if run.records == new_rows else f"emitted {run.records}, the new file has {new_rows}"
            r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
            add_without_startup(ctx, case, tool, run.seconds)
            r.add(case, tool, "records emitted", run.records, "", note=note)
            r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
            log(f"  {case} {tool}: {run.records} records in {run.seconds:.2f}s, {counts.get('total', 0)} requests")
    ratio(r, case, "seconds", "des-source", "airbyte-source-s3", lower_is_better=True)
    ratio(r, case, "seconds, start-up excluded", "des-source", "airbyte-source-s3", lower_is_better=True)
    if "des-source" in prepared:
        cat, state = prepared["des-source"]
        profile(ctx, case, "connector.airbyte.source_main", "read", "--config", ours_cfg, "--catalog", cat, "--state", state)
