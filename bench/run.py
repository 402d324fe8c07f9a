"""des-connector against its peers, in one run, on the same objects in the same S3 server.

    python bench/run.py [--quick] [--rows N] [--files N] [--repeat K] [--cases a,b,...]

Starts moto's S3 server (with a request counter) on 127.0.0.1, loads seeded data, runs every case
``--repeat`` times (at least 3), and writes ``bench/RESULTS.md``: ratios and targets first,
absolute figures (median and min-max spread) second. Nothing here is run by CI's test command.
Cases: source_read, discover, incremental, destination, sync, random_read, batch_read, pack.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

import datagen  # noqa: E402
import peers  # noqa: E402
from procs import Run, last_states, run_connector  # noqa: E402
from s3server import S3Server  # noqa: E402

BUCKET = "bench"
ALL_CASES = ["source_read", "discover", "incremental", "destination", "sync", "random_read", "batch_read", "pack"]
FORMATS = ["csv", "jsonl", "parquet"]
DES = [sys.executable, "-m", "connector.cli"]  # the ``des`` command, from this checkout


# -- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity of one tool in one case: every repeat's value."""

    case: str
    tool: str
    metric: str
    values: list[float] = field(default_factory=list)
    unit: str = ""
    higher_is_better: bool = True
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self) -> str:
        if len(self.values) < 2:
            return "-"
        return f"{fmt(min(self.values))} – {fmt(max(self.values))}"


@dataclass
class Results:
    figures: dict[tuple[str, str, str], Figure] = field(default_factory=dict)
    not_run: list[tuple[str, str, str]] = field(default_factory=list)  # (case, tool, why)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, case: str, tool: str, metric: str, value: float, unit: str = "", higher_is_better: bool = True,
            note: str = "") -> None:
        key = (case, tool, metric)
        fig = self.figures.get(key)
        if fig is None:
            fig = self.figures[key] = Figure(case, tool, metric, unit=unit, higher_is_better=higher_is_better)
        fig.values.append(float(value))
        if note and note not in fig.note:
            fig.note = (fig.note + "; " + note).strip("; ")

    def get(self, case: str, tool: str, metric: str) -> Figure | None:
        return self.figures.get((case, tool, metric))

    def skip(self, case: str, tool: str, why: str) -> None:
        self.not_run.append((case, tool, why))
        log(f"  not run: {case} / {tool}: {why}")


def fmt(x: float) -> str:
    if x != x:  # nan
        return "n/a"
    ax = abs(x)
    if x == int(x) and ax < 1e15:
        return f"{int(x):,}"
    if ax >= 100_000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax == 0:
        return "0"
    return f"{x:.3g}"


T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


# -- context ---------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    server: S3Server
    results: Results
    data: Path
    airbyte: Path | None = None
    airbyte_error: str = ""
    small: dict[str, bytes] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return peers.env_for(self.server)

    def ours(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "connector.airbyte.source_main", *args]

    def write_json(self, name: str, obj: Any) -> str:
        path = WORK / "cfg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=1))
        return str(path)

    def our_source_config(self, prefix: str, fmt: str, **extra: Any) -> dict:
        return {"bucket_name": BUCKET, "region": self.server.region, "endpoint": self.server.endpoint_url,
                "access_key_id": self.server.key, "secret_access_key": self.server.secret,
                "path_prefix": prefix, "file_format": "json" if fmt == "jsonl" else fmt, **extra}

    def airbyte_config(self, streams: list[tuple[str, str, str]]) -> dict:
        """streams: (name, glob, filetype)."""
        return {"bucket": BUCKET, "endpoint": self.server.endpoint_url, "region_name": self.server.region,
                "credentials": {"auth_type": "iam_user", "aws_access_key_id": self.server.key,
                                "aws_secret_access_key": self.server.secret},
                "streams": [{"name": n, "globs": [g], "format": {"filetype": t}, "validation_policy": "Emit Record",
                             "days_to_sync_if_history_is_full": 3} for n, g, t in streams]}

    def run_airbyte(self, *args: str) -> Run:
        assert self.airbyte is not None
        cwd = WORK / "airbyte-cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        return run_connector([str(self.airbyte), *args], cwd=cwd, env=self.env)

    @property
    def our_env(self) -> dict[str, str]:
        """Environment for our connectors and ``des``, imported from this checkout."""
        return {**self.env, "PYTHONPATH": str(REPO)}

    def run_ours(self, *args: str, stdin_path: str | None = None, module: str = "connector.airbyte.source_main") -> Run:
        return run_connector([sys.executable, "-m", module, *args], cwd=REPO, env=self.our_env, stdin_path=stdin_path)

    def put_many(self, objects: dict[str, bytes | Path], threads: int = 8) -> None:
        client = self.server.boto3()

        def put(item):
            key, body = item
            if isinstance(body, Path):
                client.upload_file(str(body), BUCKET, key)
            else:
                client.put_object(Bucket=BUCKET, Key=key, Body=body)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, objects.items()))

    def delete_prefix(self, prefix: str) -> None:
        fs = self.server.s3fs()
        if fs.exists(f"{BUCKET}/{prefix}"):
            fs.rm(f"{BUCKET}/{prefix}", recursive=True)

    def count_objects(self, prefix: str) -> int:
        client = self.server.boto3()
        n = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            n += page.get("KeyCount", 0)
        return n


def configured_catalog(catalog: dict, mode: str) -> dict:
    streams = []
    for s in catalog["streams"]:
        entry = {"stream": s, "sync_mode": mode, "destination_sync_mode": "append" if mode == "incremental" else "overwrite"}
        if mode == "incremental":
            entry["cursor_field"] = s.get("default_cursor_field") or ["_last_modified_time"]
        streams.append(entry)
    return {"streams": streams}


# -- cases -----------------------------------------------------------------------------------


def _label(file_format: str) -> str:
    return "JSONL" if file_format == "jsonl" else file_format.upper()


def _our_read_files(ctx: Ctx, name: str, file_format: str) -> tuple[str, str | None, str]:
    """des-source config for the bench's ``file_format`` objects and a full-refresh configured
    catalog from its discover: (config path, catalog path or None, why discover failed)."""
    cfg = ctx.write_json(f"{name}-{file_format}.json", ctx.our_source_config(file_format, file_format))
    disc = ctx.run_ours("discover", "--config", cfg)
    if not disc.ok() or not disc.catalog:
        return cfg, None, f"discover failed: {disc.error()}"
    return cfg, ctx.write_json(f"{name}-{file_format}-catalog.json",
                               configured_catalog(disc.catalog, "full_refresh")), ""


def case_source_read(ctx: Ctx) -> None:
    """des-source read vs airbyte-source-s3 read, full refresh, same objects, records/s and peak RSS."""
    r = ctx.results
    rows = ctx.args.rows
    for file_format in FORMATS:
        case = f"source read {_label(file_format)}"
        ours_cfg, ours_cat, why = _our_read_files(ctx, "ours-read", file_format)
        if ours_cat is None:
            r.skip(case, "des-source", why)
        ab_cat = None
        if ctx.airbyte:
            ab_cfg = ctx.write_json(f"ab-read-{file_format}.json", ctx.airbyte_config([("rows", f"{file_format}/rows/*", file_format)]))
            disc = ctx.run_airbyte("discover", "--config", ab_cfg)
            if not disc.catalog:
                r.skip(case, "airbyte-source-s3", f"discover failed: {disc.error()}")
            else:
                ab_cat = ctx.write_json(f"ab-read-{file_format}-catalog.json", configured_catalog(disc.catalog, "full_refresh"))
        else:
            r.skip(case, "airbyte-source-s3", ctx.airbyte_error)
        for i in range(ctx.args.repeat):
            # Alternate who goes first so drift in machine load does not favour one side.
            order = [("des-source", ours_cat), ("airbyte-source-s3", ab_cat)]
            if i % 2:
                order.reverse()
            for tool, cat in order:
                if cat is None:
                    continue
                ctx.server.reset()
                if tool == "des-source":
                    run = ctx.run_ours("read", "--config", ours_cfg, "--catalog", cat)
                else:
                    run = ctx.run_airbyte("read", "--config", ab_cfg, "--catalog", cat)
                counts = ctx.server.counts()
                if not run.ok() or run.records != rows:
                    why = run.error() if not run.ok() else f"emitted {run.records} records, expected {rows}"
                    r.add(case, tool, "errors", 1, note=why)
                    log(f"  {case} {tool}: {why}")
                    if not run.ok():
                        continue
                r.add(case, tool, "records/s", run.records / run.seconds, "rec/s")
                r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
                r.add(case, tool, "peak RSS", run.max_rss_mb, "MiB", higher_is_better=False)
                r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
                log(f"  {case} {tool}: {run.records} records in {run.seconds:.2f}s "
                    f"({run.records / run.seconds:,.0f}/s), peak RSS {run.max_rss_mb:.0f} MiB, {counts.get('total', 0)} requests")
        ratio(r, case, "records/s", "des-source", "airbyte-source-s3", target=10.0, target_text=">= 10x airbyte-source-s3")
    # Start-up alone (``spec``), to read the small-size figures: a fixed cost inside every run above.
    for i in range(ctx.args.repeat):
        run = ctx.run_ours("spec")
        r.add("start-up (spec)", "des-source", "seconds", run.seconds, "s", higher_is_better=False)
        if ctx.airbyte:
            run = ctx.run_airbyte("spec")
            r.add("start-up (spec)", "airbyte-source-s3", "seconds", run.seconds, "s", higher_is_better=False)
    a, b = r.get("start-up (spec)", "des-source", "seconds"), r.get("start-up (spec)", "airbyte-source-s3", "seconds")
    if a and b:
        r.notes.append(f"Every source figure includes process start-up, measured alone with `spec`: des-source "
                       f"{fmt(a.median)} s, airbyte-source-s3 {fmt(b.median)} s. At small sizes (--quick) it dominates "
                       "the records/s ratio; the full 1,000,000-row run is the one that measures throughput.")


def _types(catalog: dict | None, stream: str) -> dict[str, str]:
    if not catalog:
        return {}
    for s in catalog["streams"]:
        if s["name"] == stream:
            out = {}
            for col, sch in (s.get("json_schema", {}).get("properties") or {}).items():
                t = sch.get("type")
                t = [x for x in t if x != "null"] if isinstance(t, list) else [t]
                text = "|".join(str(x) for x in t)
                if sch.get("format"):
                    text += f" ({sch['format']})"
                elif sch.get("airbyte_type"):
                    text += f" ({sch['airbyte_type']})"
                out[col] = text
            return out
    return {}


def case_discover(ctx: Ctx) -> None:
    """200 CSV files in 5 streams: discover time, and the CSV types each tool infers."""
    r = ctx.results
    case = "discover 200 files / 5 streams"
    streams = [f"s{i}" for i in range(5)]
    objects = {}
    for si, s in enumerate(streams):
        for f in range(40):
            table = datagen.rows_table(50, seed=1000 + si * 100 + f, start_id=f * 50)
            objects[f"disc/{s}/f{f:03d}.csv"] = datagen.csv_bytes(table)
    ctx.put_many(objects)
    ours_cfg = ctx.write_json("ours-disc.json", ctx.our_source_config("disc", "csv"))
    ab_cfg = ctx.write_json("ab-disc.json", ctx.airbyte_config([(s, f"disc/{s}/*.csv", "csv") for s in streams])) if ctx.airbyte else None
    if not ctx.airbyte:
        r.skip(case, "airbyte-source-s3", ctx.airbyte_error)
    cats: dict[str, dict | None] = {}
    for i in range(ctx.args.repeat):
        tools = [("des-source", lambda: ctx.run_ours("discover", "--config", ours_cfg))]
        if ab_cfg:
            tools.append(("airbyte-source-s3", lambda: ctx.run_airbyte("discover", "--config", ab_cfg)))
        if i % 2:
            tools.reverse()
        for tool, fn in tools:
            ctx.server.reset()
            run = fn()
            counts = ctx.server.counts()
            if not run.catalog:
                r.add(case, tool, "errors", 1, note=run.error())
                continue
            cats[tool] = run.catalog
            r.add(case, tool, "seconds", run.seconds, "s", higher_is_better=False)
            r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
            r.add(case, tool, "streams found", len(run.catalog["streams"]), "")
            log(f"  {case} {tool}: {len(run.catalog['streams'])} streams in {run.seconds:.2f}s, {counts.get('total', 0)} requests")
    ratio(r, case, "seconds", "des-source", "airbyte-source-s3", lower_is_better=True)
    ours_t, ab_t = _types(cats.get("des-source"), "s0"), _types(cats.get("airbyte-source-s3"), "s0")
    src = datagen.rows_table(1, seed=0).schema
    r.extra["discover_types"] = [(c, str(src.field(c).type) if c in src.names else "-", ours_t.get(c, "-"), ab_t.get(c, "-"))
                                 for c in list(dict.fromkeys(list(src.names) + list(ours_t) + list(ab_t)))]


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
            r.add(case, tool, "records emitted", run.records, "", note=note)
            r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
            log(f"  {case} {tool}: {run.records} records in {run.seconds:.2f}s, {counts.get('total', 0)} requests")
    ratio(r, case, "seconds", "des-source", "airbyte-source-s3", lower_is_better=True)


def _records_file(ctx: Ctx) -> Path:
    """1 RECORD message per row of the JSONL dataset (and a STATE at the end), cached."""
    import orjson

    path = ctx.data / f"records-{ctx.args.rows}.jsonl"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    emitted = 1_700_000_000_000
    with open(tmp, "wb") as out:
        for key, src in sorted(datagen.row_files(ctx.data, ctx.args.rows, ctx.args.seed)["jsonl"].items()):
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
    dest_cfg = ctx.write_json("dest-ours.json", _our_destination_config(ctx, "dest-ours"))
    for i in range(ctx.args.repeat):
        order = ["des-destination", "s3fs JSONL writer"]
        if i % 2:
            order.reverse()
        for tool in order:
            if tool == "des-destination":
                ctx.delete_prefix("dest-ours")
                _reset_catalog(ctx)
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
    ratio(r, case, "records/s", "des-destination", "s3fs JSONL writer")
    fig = r.get(case, "des-destination", "records/s")
    r.ratios.append({"case": case, "what": "des-destination records/s (absolute target)",
                     "value": fmt(fig.median) + " rec/s" if fig else "not run", "target": ">= 200,000 rec/s",
                     "met": None if not fig else fig.median >= 200_000})


def case_sync(ctx: Ctx) -> None:
    """S3 -> store on S3: ``des sync`` (one process, Arrow batches) vs the same two connectors
    piped through the Airbyte protocol (``des-source read | des-destination write``)."""
    r = ctx.results
    rows = ctx.args.rows
    dest = _our_destination_config(ctx, "sync-des")
    dest_cfg = ctx.write_json("sync-dest.json", dest)
    state = WORK / "cfg" / "sync-state.json"
    for file_format in FORMATS:
        case = f"sync {_label(file_format)} {rows:,} rows, S3 -> S3"
        src_cfg, cat, why = _our_read_files(ctx, "sync-src", file_format)
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
                _reset_catalog(ctx)
                state.unlink(missing_ok=True)  # a full sync each time, not an incremental one
                ctx.server.reset()
                run = run_connector(commands[tool], cwd=REPO, env=ctx.our_env)
                counts = ctx.server.counts()
                landed = _datapoints(ctx, dest, "rows")
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
        ratio(r, case, "records/s", "des sync", "des-source piped to des-destination")


def _datapoints(ctx: Ctx, dest: dict, dataset: str) -> int:
    """Records committed to ``dataset`` of the store a destination config points at (0 if none)."""
    from connector.store import Store

    with Store(dest["root_url"], dest["catalog_path"], storage_options=ctx.server.storage_options()) as store:
        try:
            return int(store.stats(dataset)["datapoints"])
        except Exception:  # noqa: BLE001 - no dataset: nothing landed
            return 0


def _dest_spec() -> dict:
    out = subprocess.run([sys.executable, "-m", "connector.airbyte.destination_main", "spec"], cwd=REPO,
                         capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("type") == "SPEC":
            return msg["spec"]["connectionSpecification"]
    return {}


def _our_destination_config(ctx: Ctx, prefix: str) -> dict:
    """Built from des-destination's own spec: root URL on the bench bucket, endpoint, keys."""
    props = _dest_spec().get("properties", {})
    cfg: dict[str, Any] = {}
    if "root_url" in props:
        cfg["root_url"] = f"s3://{BUCKET}/{prefix}"
    elif "root" in props:
        cfg["root"] = f"s3://{BUCKET}/{prefix}"
    else:
        cfg.update({"bucket_name": BUCKET, "path_prefix": prefix})
    for name, value in (("endpoint", ctx.server.endpoint_url), ("endpoint_url", ctx.server.endpoint_url),
                        ("region", ctx.server.region), ("access_key_id", ctx.server.key),
                        ("secret_access_key", ctx.server.secret)):
        if name in props:
            cfg[name] = value
    if "catalog" in props:
        cfg["catalog"] = str(WORK / "dest-catalog.sqlite")
    elif "catalog_path" in props:
        cfg["catalog_path"] = str(WORK / "dest-catalog.sqlite")
    return cfg


def _reset_catalog(ctx: Ctx) -> None:
    for p in WORK.glob("dest-catalog.sqlite*"):
        p.unlink()


# -- archives: random and batch reads ---------------------------------------------------------


def _des_reader(ctx: Ctx, **kw: Any):
    from connector.des import DesReader, IndexCache

    return DesReader(f"s3://{BUCKET}/pack/small.des", storage_options=ctx.server.storage_options(), cache=IndexCache(), **kw)


def _des_fs(ctx: Ctx):
    """``des://`` over s3fs, opened on the container (as zip:// and tar:// are)."""
    import fsspec

    return fsspec.filesystem("des", fo=f"s3://{BUCKET}/pack/small.des", target_protocol="s3",
                             target_options=ctx.server.storage_options(), skip_instance_cache=True)


def _clear_des_cache() -> None:
    try:
        from connector.des import DEFAULT_CACHE

        for attr in ("clear",):
            if hasattr(DEFAULT_CACHE, attr):
                getattr(DEFAULT_CACHE, attr)()
        if not hasattr(DEFAULT_CACHE, "clear"):
            DEFAULT_CACHE._entries.clear()  # noqa: SLF001
    except Exception:  # noqa: BLE001
        pass
    try:
        import fsspec

        for protocol in ("s3", "des"):
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
    except Exception:  # noqa: BLE001
        pass


def _archive_fs(ctx: Ctx, kind: str):
    import fsspec

    return fsspec.filesystem(kind, fo=f"s3://{BUCKET}/pack/small.{kind}", target_protocol="s3",
                             target_options=ctx.server.storage_options(), skip_instance_cache=True)


def _upload_archives(ctx: Ctx) -> None:
    if getattr(ctx, "_archives_up", False):
        return
    paths = datagen.build_archives(ctx.data, ctx.small, f"{ctx.args.files}-s{ctx.args.seed}")
    ctx.put_many({f"pack/small.{k}": p for k, p in paths.items()}, threads=3)
    ctx._archives_up = True  # type: ignore[attr-defined]
    ctx.results.extra["archive_sizes"] = {k: p.stat().st_size for k, p in paths.items()}


def case_random_read(ctx: Ctx) -> None:
    """One member by name from a 10,000-member archive: cold (fresh process state) and warm."""
    r = ctx.results
    _upload_archives(ctx)
    names = sorted(ctx.small)
    cold_n, warm_n = (5, 20) if ctx.args.quick else (10, 50)
    tools: dict[str, tuple[Callable[[], Any], Callable[[Any, str], bytes]]] = {}
    ours = "des:// over s3fs"
    tools[ours] = (lambda: _des_fs(ctx), lambda fs, n: fs.cat_file(n))
    tools["DesReader"] = (lambda: _des_reader(ctx), lambda rd, n: rd.read(n))
    tools["DesReader, tail_size=4 MiB (not the default)"] = (lambda: _des_reader(ctx, tail_size=4 << 20), lambda rd, n: rd.read(n))
    tools.update({
        "zip:// over s3fs": (lambda: _archive_fs(ctx, "zip"), lambda fs, n: fs.cat_file(n)),
        "tar:// over s3fs": (lambda: _archive_fs(ctx, "tar"), lambda fs, n: fs.cat_file(n)),
    })
    for opener, reader in tools.values():  # warm-up (imports, first connections), not measured
        reader(opener(), names[0])
    for i in range(ctx.args.repeat):
        rng = random.Random(ctx.args.seed + i)
        picks = rng.sample(names, cold_n + warm_n)
        for tool, (opener, reader) in tools.items():
            # cold: nothing cached anywhere, open + read one member, per member
            gets = reqs = nbytes = 0
            t = 0.0
            for name in picks[:cold_n]:
                _clear_des_cache()
                ctx.server.reset()
                t0 = time.perf_counter()
                fs = opener()
                data = reader(fs, name)
                t += time.perf_counter() - t0
                c = ctx.server.counts()
                gets += c.get("GET", 0)
                reqs += c.get("total", 0)
                nbytes += c.get("bytes_out", 0)
                assert data == ctx.small[name], f"{tool}: wrong bytes for {name}"
            r.add("random member read, cold", tool, "GET per member", gets / cold_n, higher_is_better=False)
            r.add("random member read, cold", tool, "requests per member", reqs / cold_n, higher_is_better=False)
            r.add("random member read, cold", tool, "ms per member", 1000 * t / cold_n, "ms", higher_is_better=False)
            r.add("random member read, cold", tool, "KiB transferred per member", nbytes / 1024 / cold_n, "KiB", higher_is_better=False)
            # warm: archive already opened (index cached), then read other members
            _clear_des_cache()
            fs = opener()
            reader(fs, picks[0])
            ctx.server.reset()
            t0 = time.perf_counter()
            for name in picks[cold_n:]:
                assert reader(fs, name) == ctx.small[name]
            t = time.perf_counter() - t0
            c = ctx.server.counts()
            r.add("random member read, warm", tool, "GET per member", c.get("GET", 0) / warm_n, higher_is_better=False)
            r.add("random member read, warm", tool, "requests per member", c.get("total", 0) / warm_n, higher_is_better=False)
            r.add("random member read, warm", tool, "ms per member", 1000 * t / warm_n, "ms", higher_is_better=False)
            r.add("random member read, warm", tool, "KiB transferred per member", c.get("bytes_out", 0) / 1024 / warm_n, "KiB", higher_is_better=False)
            log(f"  random read {tool}: cold {gets / cold_n:.1f} GET/member, warm {c.get('GET', 0) / warm_n:.2f} GET/member")
    try:
        from connector.des import DesReader
        from connector.des.reader import DEFAULT_TAIL_SIZE

        paths = datagen.build_archives(ctx.data, ctx.small, f"{ctx.args.files}-s{ctx.args.seed}")
        foot = DesReader(str(paths["des"]), cache=None).footer
        r.notes.append(
            f"Cold DES open: the {len(ctx.small):,}-member container's INDEX is {foot.index_length / 1024:,.0f} KiB and its "
            f"META {foot.meta_length / 1024:,.0f} KiB, more than the reader's default tail read of "
            f"{DEFAULT_TAIL_SIZE / 1024:,.0f} KiB, so a cold open costs a second GET (INDEX+META) before the member's "
            "own GET. The `tail_size=4 MiB` row shows the 2-GET path and what it costs in bytes.")
    except Exception:  # noqa: BLE001
        pass
    r.notes.append("Warm ZIP and TAR reads can need fewer than one GET per member because s3fs keeps whole blocks of "
                   "the archive (several MiB, or for TAR the whole archive it scanned to build its index) in memory; "
                   "'KiB transferred per member' shows what each approach pulls over the network.")
    for case, target in (("random member read, cold", 2), ("random member read, warm", 1)):
        fig = r.get(case, ours, "GET per member")
        others = [r.get(case, t, "GET per member") for t in ("zip:// over s3fs", "tar:// over s3fs")]
        # Warm, ZIP and TAR may issue < 1 GET per member only because s3fs keeps whole multi-MiB
        # blocks of the archive in memory (see KiB transferred); "fewer than" is judged cold.
        fewer = case.endswith("warm") or (fig is not None and all(o is not None and fig.median < o.median for o in others))
        r.ratios.append({"case": case, "what": f"{ours}: GET requests per member",
                         "value": fmt(fig.median) if fig else "not run",
                         "target": f"<= {target} GET" + (", fewer than ZIP and TAR" if case.endswith("cold") else ""),
                         "met": None if fig is None else (fig.median <= target and fewer),
                         "peers": ", ".join(f"{t.split(':')[0].upper()} {fmt(o.median)}" for t, o in
                                            zip(("zip", "tar"), others) if o is not None)})
        for peer in ("zip:// over s3fs", "tar:// over s3fs"):
            ratio(r, case, "ms per member", ours, peer, lower_is_better=True)


def case_batch_read(ctx: Ctx) -> None:
    """1,000 adjacent members: DesReader.read_many vs zip via fsspec vs plain per-object GETs."""
    from connector.des import DesReader, IndexCache

    r = ctx.results
    _upload_archives(ctx)
    names = sorted(ctx.small)
    n = min(1000, len(names) // 2)
    case = f"batch read of {n:,} adjacent members"
    fs_s3 = ctx.server.s3fs()

    def ours(batch):
        rd = DesReader(f"s3://{BUCKET}/pack/small.des", storage_options=ctx.server.storage_options(), cache=IndexCache())
        return rd.read_many(batch)

    def zip_(batch):
        fs = _archive_fs(ctx, "zip")
        return fs.cat(batch)

    def plain(batch):
        fs = ctx.server.s3fs()
        got = fs.cat([f"{BUCKET}/{k}" for k in batch])
        return {k[len(BUCKET) + 1:]: v for k, v in got.items()}

    tools = {"DesReader.read_many": ours, "zip:// over s3fs (fs.cat of the list)": zip_,
             "plain per-object GETs (s3fs.cat, concurrent)": plain}
    del fs_s3
    for fn in tools.values():  # warm-up (imports, first connections), not measured
        fn(names[:10])
    for i in range(ctx.args.repeat):
        start = random.Random(ctx.args.seed + 100 + i).randrange(0, len(names) - n)
        batch = names[start:start + n]
        for tool, fn in tools.items():
            _clear_des_cache()
            ctx.server.reset()
            t0 = time.perf_counter()
            got = fn(batch)
            t = time.perf_counter() - t0
            c = ctx.server.counts()
            assert len(got) == n and all(got[k] == ctx.small[k] for k in batch), f"{tool}: wrong data"
            r.add(case, tool, "GET requests", c.get("GET", 0), higher_is_better=False)
            r.add(case, tool, "requests", c.get("total", 0), higher_is_better=False)
            r.add(case, tool, "seconds", t, "s", higher_is_better=False)
            r.add(case, tool, "MiB transferred", c.get("bytes_out", 0) / 1048576, "MiB", higher_is_better=False)
            log(f"  {case} {tool}: {c.get('GET', 0)} GET, {c.get('total', 0)} requests, {t:.3f}s")
    fig = r.get(case, "DesReader.read_many", "GET requests")
    r.ratios.append({"case": case, "what": "DesReader.read_many: GET requests (open included)",
                     "value": fmt(fig.median) if fig else "not run", "target": "<= 3 GET",
                     "met": None if fig is None else fig.median <= 3,
                     "peers": ", ".join(f"{t.split(' (')[0]} {fmt(r.get(case, t, 'GET requests').median)}"
                                        for t in list(tools)[1:] if r.get(case, t, "GET requests"))})
    for peer in list(tools)[1:]:
        ratio(r, case, "seconds", "DesReader.read_many", peer, lower_is_better=True)


def case_pack(ctx: Ctx) -> None:
    """Pack N small objects: des sync --mode files vs boto3 get+put loop vs tar streamed via s3fs.

    Run twice: on moto as it is, then with ``--latency-ms`` of modelled S3 latency per request
    (see ``bench/s3server.py``). On loopback moto answers in ~3 ms of its own CPU, one request at a
    time in effect (one Python process), so every tool is bound by the same server and a
    concurrent packer can beat a sequential loop only by needing fewer requests (10,000 GETs
    against 20,000 GET+PUTs). What concurrency buys against S3 is overlapping its per-request
    latency, which only the second run has. The sequential loop is run once there (it takes
    ~20,000 x (latency + 3 ms)); the other tools ``--repeat`` times.
    """
    import tarfile
    import io

    n = len(ctx.small)
    keys = sorted(ctx.small)

    def boto3_loop():
        client = ctx.server.boto3()
        for k in keys:
            body = client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            client.put_object(Bucket=BUCKET, Key="pack-boto3/" + k, Body=body)
        return "pack-boto3/"

    def tar_s3fs():
        fs = ctx.server.s3fs()
        with fs.open(f"{BUCKET}/pack-tar/small.tar", "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            for j in range(0, len(keys), 256):
                chunk = keys[j:j + 256]
                blobs = fs.cat([f"{BUCKET}/{k}" for k in chunk])
                for k in chunk:
                    data = blobs[f"{BUCKET}/{k}"]
                    info = tarfile.TarInfo(k)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return "pack-tar/"

    ours, loop, tar = "des sync --mode files", "boto3 get+put loop (sequential)", "tar via s3fs (streamed, concurrent GETs)"
    tools: dict[str, Callable[[], str]] = {ours: lambda: _des_sync_files(ctx), loop: boto3_loop, tar: tar_s3fs}
    runs = [(f"pack {n:,} small objects", 0.0, {})]
    if ctx.args.latency_ms:
        runs.append((f"pack {n:,} small objects, {ctx.args.latency_ms:g} ms per request (modelled S3 latency)",
                     ctx.args.latency_ms, {loop: 1}))
    for case, latency_ms, repeats in runs:
        ctx.server.set_latency(latency_ms)
        try:
            _pack_runs(ctx, case, n, dict(tools), repeats)
        finally:
            ctx.server.set_latency(0)
        ratio(ctx.results, case, "files/s", ours, loop, target=5.0, target_text=">= 5x boto3 loop")
        ratio(ctx.results, case, "files/s", ours, tar)


def _pack_runs(ctx: Ctx, case: str, n: int, tools: dict[str, Callable[[], str] | None],
               repeats: dict[str, int]) -> None:
    """Each tool ``repeats.get(tool, --repeat)`` times, from an empty destination each time."""
    r = ctx.results
    for i in range(ctx.args.repeat):
        for tool, fn in tools.items():
            if fn is None or i >= repeats.get(tool, ctx.args.repeat):
                continue
            for p in ("pack-boto3", "pack-tar", "pack-des"):
                ctx.delete_prefix(p)
            _reset_catalog(ctx)
            (WORK / "cfg" / "pack-state.json").unlink(missing_ok=True)
            ctx.server.reset()
            t0 = time.perf_counter()
            try:
                prefix = fn()
            except Exception as exc:  # noqa: BLE001
                r.add(case, tool, "errors", 1, note=str(exc)[:300])
                log(f"  {case} {tool}: failed: {exc}")
                tools[tool] = None
                continue
            t = time.perf_counter() - t0
            c = ctx.server.counts()
            objs = ctx.count_objects(prefix)
            r.add(case, tool, "files/s", n / t, "files/s")
            r.add(case, tool, "seconds", t, "s", higher_is_better=False)
            r.add(case, tool, "objects after", objs, higher_is_better=False)
            r.add(case, tool, "S3 requests", c.get("total", 0), higher_is_better=False)
            log(f"  {case} {tool}: {n / t:,.0f} files/s, {objs} objects after, {c.get('total', 0)} requests")


def _des_sync_files(ctx: Ctx) -> str:
    src = ctx.write_json("pack-src.json", ctx.our_source_config("small", "auto") | {"file_format": "auto"})
    dest = ctx.write_json("pack-dest.json", _our_destination_config(ctx, "pack-des"))
    out = subprocess.run([*DES, "sync", "--config", src, "--destination", dest, "--mode", "files",
                          "--state", str(WORK / "cfg" / "pack-state.json")],
                         cwd=REPO, env=ctx.our_env, capture_output=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"des sync failed: {out.stderr.decode()[-300:]}")
    return "pack-des/"


# -- ratios and report ------------------------------------------------------------------------


def ratio(r: Results, case: str, metric: str, ours: str, peer: str, *, lower_is_better: bool = False,
          target: float | None = None, target_text: str = "") -> None:
    a, b = r.get(case, ours, metric), r.get(case, peer, metric)
    entry: dict[str, Any] = {"case": case, "what": f"{ours} vs {peer}: {metric}", "target": target_text or "-",
                             "met": None}
    if a is None or b is None or not a.values or not b.values:
        missing = ours if a is None else peer
        why = next((w for c, t, w in r.not_run if c == case and t == missing), "no measurement")
        entry["value"] = f"not run: {missing}: {why}"
    else:
        x = (b.median / a.median) if lower_is_better else (a.median / b.median)
        if lower_is_better:
            entry["value"] = f"{x:.2f}x faster" if x >= 1 else f"{1 / x:.2f}x slower"
        else:
            entry["value"] = f"{x:.2f}x"
        entry["ratio"] = x
        if target is not None:
            entry["met"] = x >= target
    r.ratios.append(entry)


def machine() -> dict[str, str]:
    import pyarrow

    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("s3fs", "fsspec", "moto", "orjson", "boto3"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem, "python": platform.python_version(),
            "pyarrow": pyarrow.__version__, "os": platform.platform(), "commit": commit,
            **{k: v for k, v in versions.items()}}


def write_report(ctx: Ctx, path: Path, started: datetime, elapsed: float, load: tuple[tuple, tuple]) -> None:
    r = ctx.results
    m = machine()
    a = ctx.args
    mode = "QUICK (reduced sizes; not the published full run)" if a.quick else "full"
    lines = [
        "# des-connector benchmark results",
        "",
        f"Generated by `python bench/run.py{' --quick' if a.quick else ''}` on {started:%Y-%m-%d %H:%M} UTC "
        f"(run took {elapsed / 60:.1f} min). Mode: **{mode}**. Every figure below was measured in this run; "
        "nothing is copied from elsewhere.",
        "",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory']} RAM; {m['os']}",
        f"- Load average at start / end: {', '.join(f'{x:.2f}' for x in load[0])} / {', '.join(f'{x:.2f}' for x in load[1])} "
        "(the machine is shared: other work was running, so absolute figures are noisy; ratios come from "
        "interleaved runs of both sides)",
        f"- Python {m['python']}, pyarrow {m['pyarrow']}, s3fs {m['s3fs']}, fsspec {m['fsspec']}, boto3 {m['boto3']}, "
        f"moto {m['moto']} (S3 server on 127.0.0.1, one process), orjson {m['orjson']}",
        f"- Peer: {peers.airbyte_version(WORK) if ctx.airbyte else 'airbyte-source-s3 not installed: ' + ctx.airbyte_error}",
        f"- des-connector commit {m['commit']}",
        f"- Data (seed {a.seed}): {a.rows:,} rows × 7 columns (int, float with 5% nulls, string with 3% nulls, bool, int, "
        f"timestamp, string) as CSV, JSONL and Parquet (split into parts of ≤ 250,000 rows); {a.files:,} small files of 1–20 KiB. "
        f"Each case repeated {a.repeat}×: median, spread = min – max.",
        "- Requests are counted at the S3 server (a counting middleware around moto's app), so every "
        "HEAD/GET/PUT/LIST a client makes is included. moto's server (werkzeug's) answers every request "
        "with `Connection: close`, so each request opens a TCP connection and a server thread, for every tool alike; "
        "it adds no latency of its own (~3 ms of CPU per request on loopback)"
        + (f", except in the pack case's second run, where each request waits {a.latency_ms:g} ms at the server to model "
           "S3's latency (AWS's S3 performance guide: small requests' median latency is 'in the range of tens of "
           "milliseconds')." if a.latency_ms and "pack" in a.cases.split(",") else "."),
        "",
        "## Ratios and targets",
        "",
        "| case | comparison | measured | target | met? |",
        "|---|---|---|---|---|",
    ]
    for e in r.ratios:
        met = "—" if e.get("met") is None else ("**yes**" if e["met"] else "**NO**")
        what = e["what"] + (f" (peers: {e['peers']})" if e.get("peers") else "")
        lines.append(f"| {e['case']} | {what} | {e['value']} | {e['target']} | {met} |")
    if r.not_run:
        lines += ["", "### Not run", ""]
        for case, tool, why in r.not_run:
            lines.append(f"- {case} / {tool}: not run: {why}")
    lines += ["", "## Absolute figures", "", "| case | tool | metric | median | spread (min – max) | runs | note |",
              "|---|---|---|---|---|---|---|"]
    for fig in r.figures.values():
        unit = f" {fig.unit}" if fig.unit else ""
        lines.append(f"| {fig.case} | {fig.tool} | {fig.metric} | {fmt(fig.median)}{unit} | {fig.spread()} | "
                     f"{len(fig.values)} | {fig.note} |")
    if r.extra.get("discover_types"):
        lines += ["", "## Inferred CSV column types (discover, stream s0)", "",
                  "| column | type in the generator | des-source | airbyte-source-s3 (default config) |", "|---|---|---|---|"]
        for col, src, ours, ab in r.extra["discover_types"]:
            lines.append(f"| {col} | {src} | {ours} | {ab} |")
    if r.extra.get("archive_sizes"):
        sizes = r.extra["archive_sizes"]
        lines += ["", "Archive sizes for the member-read cases: " + ", ".join(
            f"{k.upper()} {v / 1024 / 1024:.1f} MiB" for k, v in sizes.items()) + "."]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    path.write_text("\n".join(lines) + "\n")
    (WORK / f"results-{'quick' if a.quick else 'full'}.json").write_text(json.dumps({
        "figures": [fig.__dict__ for fig in r.figures.values()], "ratios": r.ratios, "not_run": r.not_run,
        "extra": r.extra}, indent=1, default=str))


CASES: dict[str, Callable[[Ctx], None]] = {
    "source_read": case_source_read, "discover": case_discover, "incremental": case_incremental,
    "destination": case_destination, "sync": case_sync, "random_read": case_random_read, "batch_read": case_batch_read,
    "pack": case_pack,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (20,000 rows, 400 files): under 5 minutes")
    p.add_argument("--rows", type=int, help="rows in the read/write dataset (default 1,000,000; quick 20,000)")
    p.add_argument("--files", type=int, help="small files to pack/read (default 10,000; quick 400)")
    p.add_argument("--repeat", type=int, default=3, help="repeats per case (at least 3 for the published table)")
    p.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated subset of {','.join(ALL_CASES)}")
    p.add_argument("--latency-ms", type=float, default=10.0,
                   help="modelled S3 latency per request for the pack case's second run (0: skip it)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="Markdown output (default bench/RESULTS.md)")
    p.add_argument("--no-airbyte", action="store_true", help="skip installing/running airbyte-source-s3")
    args = p.parse_args(argv)
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    args.files = args.files or (400 if args.quick else 10_000)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases: {', '.join(sorted(unknown))}")
    started = datetime.now(timezone.utc)
    load0 = os.getloadavg()
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "data"
    data.mkdir(exist_ok=True)

    ctx = Ctx(args=args, server=S3Server(), results=Results(), data=data)
    if not args.no_airbyte and {"source_read", "discover", "incremental"} & set(cases):
        try:
            ctx.airbyte = peers.airbyte_venv(WORK, log)
        except Exception as exc:  # noqa: BLE001
            ctx.airbyte_error = f"could not install airbyte-source-s3: {exc}"
            log(ctx.airbyte_error)
    elif args.no_airbyte:
        ctx.airbyte_error = "--no-airbyte given"

    log(f"generating data ({args.rows:,} rows, {args.files:,} small files, seed {args.seed})")
    row_files = datagen.row_files(data, args.rows, args.seed) if {"source_read", "destination", "sync"} & set(cases) else {}
    ctx.small = datagen.small_files(data, args.files, args.seed) if {"random_read", "batch_read", "pack"} & set(cases) else {}
    ctx.server.start()
    log(f"moto S3 server at {ctx.server.endpoint_url}")
    try:
        ctx.server.boto3().create_bucket(Bucket=BUCKET)
        ctx.put_many({k: v for files in row_files.values() for k, v in files.items()}, threads=4)
        if ctx.small:
            ctx.put_many(ctx.small)
        log("data loaded")
        for name in cases:
            log(f"case {name}")
            try:
                CASES[name](ctx)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                ctx.results.skip(name, "all", f"case crashed: {type(exc).__name__}: {exc}")
    finally:
        ctx.server.stop()
    elapsed = time.time() - T0
    write_report(ctx, Path(args.out), started, elapsed, (load0, os.getloadavg()))
    log(f"wrote {args.out} in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
