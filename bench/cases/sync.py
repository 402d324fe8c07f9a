"""S3 -> store on S3: des sync vs des-source piped to des-destination."""

from __future__ import annotations

import shlex
import sys

from core import DES, FORMATS, REPO, WORK, Ctx, datapoints, label, log, our_destination_config, our_read_files, profile, ratio, reset_catalog
from procs import run_connector


def case_sync(ctx: Ctx) -> None:
    """S3 -> store on S3: ``des sync`` (one process, Arrow batches) vs the same two connectors
    piped through the Airbyte protocol (``des-source read | des-destination write``)."""
    r = ctx.results
    rows = ctx.args.rows
    dest = our_destination_config(ctx, "sync-des")
    dest_cfg = ctx.write_json("sync-dest.json", dest)
    state = WORK / "cfg" / "sync-state.json"
    for file_format in FORMATS:
        case = f"sync {label(file_format)} {rows:,} rows, S3 -> S3"
        src_cfg, cat, why = our_read_files(ctx, "sync-src", file_format)
        if cat is None:
            r.skip(case, "all", why)
            continue
        commands = {
            "des sync": [*DES, "sync", "--config", src_cfg, "--destination", dest_cfg, "--state", str(state)],
            "des-source piped to des-destination": ["bash", "-c", "set -o pipefail; " + " ".join(shlex.quote(a) for a in [
                sys.executable, "-m", "connector.airbyte.source_main", "read", "--config", src_cfg, "--catalog", cat])
                + " | " + " ".join(shlex.quote(a) for a in [
                sys.executable, "-m", "connector.airbyte.destination_main", "write", "--config", dest_cfg,
                "--catalog", cat])],
        }
        for i in range(ctx.args.repeat):
            order = list(commands) if i % 2 == 0 else list(reversed(commands))
            for tool in order:
                ctx.delete_prefix("sync-des")
                reset_catalog(ctx)
                state.unlink(missing_ok=True)  # a full sync each time, not an incremental one
                ctx.server.reset()
                run = run_connector(commands[tool], cwd=REPO, env=ctx.our_env)
                counts = ctx.server.counts()
                landed = datapoints(ctx, dest, "rows")
                if run.rc != 0 or landed != rows:
                    why = run.error() if run.rc != 0 else f"{landed} records landed, expected {rows}"
                    r.add(case, tool, "errors", 1, note=why)
                    log(f"  {case} {tool}: {why}")
                    continue
                r.add(case, tool, "records/s", rows / run.seconds, "rec/s")
                r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
                r.add(case, tool, "peak RSS", run.max_rss_mb, "MiB", higher_is_better=False,
                      note="" if tool == "des sync" else "the larger of the two processes")
                r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
                log(f"  {case} {tool}: {rows / run.seconds:,.0f} rec/s, {counts.get('total', 0)} requests")
        ratio(r, case, "records/s", "des sync", "des-source piped to des-destination", target=2.0,
              target_text=">= 2x the pipe")
        ctx.delete_prefix("sync-des")
        reset_catalog(ctx)
        state.unlink(missing_ok=True)
        profile(ctx, case, "connector.cli", *commands["des sync"][3:])

