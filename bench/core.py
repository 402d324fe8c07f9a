"""What every bench case shares: where things live, the results table, the run context, and the
configs and catalogs our connectors are given."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peers
from procs import Run, run_connector
from s3server import S3Server

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
BUCKET = "bench"
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

    def write_lines(self, name: str, lines: list[str]) -> str:
        """``lines`` into a file of the bench's work folder, one per line; returns its path."""
        path = WORK / "cfg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return str(path)

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


def startup_seconds(ctx: Ctx) -> dict[str, float]:
    """Median process start-up of each source (``spec`` alone), measured once per run.

    Every source figure includes it; where it dominates (discover, incremental, small inputs) the
    cases also show their figures without it.
    """
    cached = ctx.results.extra.get("startup")
    if cached is not None:
        return cached
    tools = {"des-source": lambda: ctx.run_ours("spec")}
    if ctx.airbyte:
        tools["airbyte-source-s3"] = lambda: ctx.run_airbyte("spec")
    for _ in range(ctx.args.repeat):
        for tool, fn in tools.items():
            ctx.results.add("start-up (spec)", tool, "seconds", fn().seconds, "s", higher_is_better=False)
    medians = {tool: ctx.results.get("start-up (spec)", tool, "seconds").median for tool in tools}
    ctx.results.extra["startup"] = medians
    return medians


def add_without_startup(ctx: Ctx, case: str, tool: str, seconds: float) -> None:
    """The same run's seconds less the tool's measured start-up (see :func:`startup_seconds`)."""
    startup = startup_seconds(ctx).get(tool)
    if startup is not None:
        ctx.results.add(case, tool, "seconds, start-up excluded", max(seconds - startup, 0.0), "s",
                        higher_is_better=False)


def _pyspy() -> str | None:
    """py-spy's executable (beside this Python, or on PATH), None if it is not installed."""
    import shutil

    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


#: py-spy's sampling rate for ``--profile`` (samples per second per thread).
PYSPY_RATE = 200


def profile(ctx: Ctx, case: str, module: str, *args: str, stdin_path: str | None = None, top: int = 12,
            sort: str = "tottime") -> None:
    """With ``--profile``: run ``python -m module args`` once more under a profiler and keep its top
    lines for the report.

    With py-spy installed (``pip install py-spy``): every thread of every process of the command,
    sampled while running (a C call that released the GIL counts as running), top innermost frames
    by samples: where the CPU goes, reader and writer threads included. Without it: cProfile, which
    sees the main thread only (work in other threads shows as the main thread's waits); ``sort``
    picks its order (own time; ``cumulative`` where imports and set-up are the question).
    """
    if not ctx.args.profile:
        return
    name = case.replace(" ", "_").replace("/", "_").replace(",", "").replace(":", "")
    spy = _pyspy()
    if spy is not None:
        _pyspy_profile(ctx, case, spy, WORK / "profiles" / f"{name}.pyspy.txt", module, args, stdin_path, top)
        return
    import io
    import pstats

    out = WORK / "profiles" / f"{name}.prof"
    out.parent.mkdir(parents=True, exist_ok=True)
    run = run_connector([sys.executable, "-m", "cProfile", "-o", str(out), "-m", module, *args], cwd=REPO,
                        env=ctx.our_env, stdin_path=stdin_path)
    if run.rc != 0 or not out.exists():
        ctx.results.notes.append(f"profile of {case} failed: {run.error()}")
        return
    text = io.StringIO()
    pstats.Stats(str(out), stream=text).sort_stats(sort).print_stats(top)
    lines = text.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    title = f"{case} (cProfile, main thread, by {'own' if sort == 'tottime' else sort} time)"
    ctx.results.extra.setdefault("profiles", {})[title] = [line for line in lines[start:] if line.strip()]


def _pyspy_profile(ctx: Ctx, case: str, spy: str, out: Path, module: str, args: tuple[str, ...],
                   stdin_path: str | None, top: int) -> None:
    import pyspy_top

    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    run = run_connector([spy, "record", "--rate", str(PYSPY_RATE), "--subprocesses", "--format", "raw",
                         "--output", str(out), "--", sys.executable, "-m", module, *args], cwd=REPO,
                        env=ctx.our_env, stdin_path=stdin_path)
    if run.rc != 0 or not out.exists():
        ctx.results.notes.append(f"profile of {case} failed: {run.error()}")
        return
    by_process, waits = pyspy_top.parse(out.read_text(encoding="utf-8", errors="replace"))
    total = sum(sum(c.values()) for c in by_process.values())
    lines = [f"{run.seconds:.2f} s wall under py-spy; {total / PYSPY_RATE:.2f} s of running thread time in all"
             + (", waits set apart: " + ", ".join(f"{who} {n / PYSPY_RATE:.2f} s" for who, n in waits.most_common())
                if waits else "")]
    for (_role, pid), frames in sorted(by_process.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(frames.values())
        lines.append(f"process {pid}: {n / PYSPY_RATE:.2f} s, {100 * n / max(total, 1):.0f}% of all")
        lines += [f"  {100 * count / n:5.1f}%  {frame}" for frame, count in frames.most_common(top)]
    ctx.results.extra.setdefault("profiles", {})[f"{case} (py-spy, every thread, innermost frames)"] = lines


def configured_catalog(catalog: dict, mode: str) -> dict:
    streams = []
    for s in catalog["streams"]:
        entry = {"stream": s, "sync_mode": mode, "destination_sync_mode": "append" if mode == "incremental" else "overwrite"}
        if mode == "incremental":
            entry["cursor_field"] = s.get("default_cursor_field") or ["_last_modified_time"]
        streams.append(entry)
    return {"streams": streams}


def label(file_format: str) -> str:
    return "JSONL" if file_format == "jsonl" else file_format.upper()


def our_read_files(ctx: Ctx, name: str, file_format: str) -> tuple[str, str | None, str]:
    """des-source config for the bench's ``file_format`` objects and a full-refresh configured
    catalog from its discover: (config path, catalog path or None, why discover failed)."""
    cfg = ctx.write_json(f"{name}-{file_format}.json", ctx.our_source_config(file_format, file_format))
    disc = ctx.run_ours("discover", "--config", cfg)
    if not disc.ok() or not disc.catalog:
        return cfg, None, f"discover failed: {disc.error()}"
    return cfg, ctx.write_json(f"{name}-{file_format}-catalog.json",
                               configured_catalog(disc.catalog, "full_refresh")), ""


def datapoints(ctx: Ctx, dest: dict, dataset: str) -> int:
    """Records committed to ``dataset`` of the store a destination config points at (0 if none)."""
    from connector.store import Store

    with Store(dest["root_url"], dest["catalog_path"], storage_options=ctx.server.storage_options()) as store:
        try:
            return int(store.stats(dataset)["datapoints"])
        except Exception:  # noqa: BLE001 - no dataset: nothing landed
            return 0


def dest_spec() -> dict:
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


def our_destination_config(ctx: Ctx, prefix: str) -> dict:
    """Built from des-destination's own spec: root URL on the bench bucket, endpoint, keys."""
    props = dest_spec().get("properties", {})
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


def reset_catalog(ctx: Ctx) -> None:
    for p in WORK.glob("dest-catalog.sqlite*"):
        p.unlink()


def ratio(r: Results, case: str, metric: str, ours: str, peer: str, *, lower_is_better: bool = False,
          target: float | None = None, target_text: str = "", words: tuple[str, str] = ("faster", "slower")) -> None:
    """``ours`` against ``peer`` on ``metric`` into the ratio table; with ``lower_is_better`` the
    ratio reads "<x> <words[0]>" (or "<1/x> <words[1]>"), e.g. faster / slower, lower / higher."""
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
            entry["value"] = f"{x:.2f}x {words[0]}" if x >= 1 else f"{1 / x:.2f}x {words[1]}"
        else:
            entry["value"] = f"{x:.2f}x"
        entry["ratio"] = x
        if target is not None:
            entry["met"] = x >= target
    r.ratios.append(entry)

