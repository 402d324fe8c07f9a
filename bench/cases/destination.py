"""RECORD messages on stdin -> S3: des-destination write vs a plain s3fs JSONL writer."""

from __future__ import annotations

import sys
from pathlib import Path

import datagen
import peers
from core import BUCKET, WORK, Ctx, fmt, log, our_destination_config, profile, ratio, reset_catalog
from procs import run_connector


def _records_file(ctx: Ctx) -> Path:
    """1 RECORD message per row of the JSONL dataset (and a STATE at the end), cached."""
    import orjson

    path = ctx.data / f"records-{ctx.args.rows}.jsonl"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    emitted = 1_700_000_000_000
    with open(tmp, "wb") as out:
        for _key, src in sorted(datagen.row_files(ctx.data, ctx.args.rows, ctx.args.seed)["jsonl"].items()):
            with open(src, "rb") as f:
                for line in f:
                    out.write(b'{"type":"RECORD","record":{"stream":"rows","data":' + line.rstrip(b"\n")
                              + b',"emitted_at":' + str(emitted).encode() + b"}}\n")
        out.write(orjson.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "rows"}, "stream_state": {"done": True}}}}) + b"\n")
    tmp.rename(path)
    return path


def case_destination(ctx: Ctx) -> None:
    """RECORD messages on stdin -> S3: des-destination write vs a plain s3fs JSONL writer."""
    r = ctx.results
    case = f"destination write {ctx.args.rows:,} records"
    records = _records_file(ctx)
    rows = ctx.args.rows
    scripts = peers.write_peer_scripts(WORK)
    catalog = ctx.write_json("dest-catalog.json", {"streams": [{
        "stream": {"name": "rows", "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append"}]})
    dest_cfg = ctx.write_json("dest-ours.json", our_destination_config(ctx, "dest-ours"))
    for i in range(ctx.args.repeat):
        order = ["des-destination", "s3fs JSONL writer"]
        if i % 2:
            order.reverse()
        for tool in order:
            if tool == "des-destination":
                ctx.delete_prefix("dest-ours")
                reset_catalog(ctx)
                ctx.server.reset()
                run = ctx.run_ours("write", "--config", dest_cfg, "--catalog", catalog, stdin_path=str(records),
                                   module="connector.airbyte.destination_main")
                prefix = "dest-ours/"
            else:
                ctx.delete_prefix("dest-peer")
                ctx.server.reset()
                run = run_connector([sys.executable, str(scripts["s3fs_jsonl_writer"]), ctx.server.endpoint_url,
                                     f"{BUCKET}/dest-peer", "100000"], env=ctx.env, stdin_path=str(records))
                prefix = "dest-peer/"
            counts = ctx.server.counts()
            if run.rc != 0 or any(t.get("trace", {}).get("type") == "ERROR" for t in run.traces):
                r.add(case, tool, "errors", 1, note=run.error())
                log(f"  {case} {tool}: failed: {run.error()}")
                continue
            objects = ctx.count_objects(prefix)
            r.add(case, tool, "records/s", rows / run.seconds, "rec/s")
            r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
            r.add(case, tool, "objects created", objects, "", higher_is_better=False)
            r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
            r.add(case, tool, "peak RSS", run.max_rss_mb, "MiB", higher_is_better=False)
            log(f"  {case} {tool}: {rows / run.seconds:,.0f} rec/s, {objects} objects, {counts.get('total', 0)} requests")
    ratio(r, case, "records/s", "des-destination", "s3fs JSONL writer", target=1.0, target_text=">= 1.0x the plain writer")
    ctx.delete_prefix("dest-ours")
    reset_catalog(ctx)
    profile(ctx, case, "connector.airbyte.destination_main", "write", "--config", dest_cfg, "--catalog", catalog,
            stdin_path=str(records))
    fig = r.get(case, "des-destination", "records/s")
    r.ratios.append({"case": case, "what": "des-destination records/s (absolute target)",
                     "value": fmt(fig.median) + " rec/s" if fig else "not run", "target": ">= 200,000 rec/s",
                     "met": None if not fig else fig.median >= 200_000})

