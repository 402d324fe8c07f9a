"""How time and memory grow with the work: rows 10x (default 100k -> 1M -> 10M, CSV) and objects 10x
(default 1k -> 10k -> 100k small CSV files), des-source read vs airbyte-source-s3, one run per size.

Each step reports the growth of seconds and peak RSS against the 10x growth of the input: ~10x time
is linear, memory should stay flat (streaming). A peer run that exceeds ``--scale-timeout`` is
reported as not finished rather than waited for.
"""

from __future__ import annotations

import datagen
from core import Ctx, configured_catalog, log, profile
from procs import run_connector

ROWS_PREFIX, FILES_PREFIX = "scale-rows", "scale-files"
#: A 10x step is linear if its time grows at most 10x, plus this much for a shared machine's noise.
NOISE = 0.10


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _load_rows(ctx: Ctx, n: int) -> str:
    """The CSV files of ``n`` rows under ``scale-rows-<n>/csv/rows/``; returns the path prefix."""
    prefix = f"{ROWS_PREFIX}-{n}/csv"
    files = datagen.row_files(ctx.data, n, ctx.args.seed)["csv"]
    ctx.put_many({f"{prefix}/{key.split('/', 1)[1]}": path for key, path in files.items()}, threads=4)
    return prefix


def _load_files(ctx: Ctx, n: int) -> str:
    """``n`` small CSV files of 10 rows under ``scale-files-<n>/small/``; returns the path prefix."""
    prefix = f"{FILES_PREFIX}-{n}"
    ctx.put_many({f"{prefix}/small/f{i:06d}.csv": datagen.csv_bytes(datagen.rows_table(10, seed=i, start_id=10 * i))
                  for i in range(n)}, threads=16)
    return prefix


def _run_both(ctx: Ctx, case: str, size: int, path_prefix: str, stream: str, expected: int,
              profiled: bool = False) -> None:
    """des-source and the peer read stream ``stream`` under ``path_prefix`` once each; ``profiled``:
    with ``--profile``, des-source's read once more under the profiler."""
    r = ctx.results
    tag = path_prefix.replace("/", "_")
    tools = {"des-source": (ctx.run_ours, ctx.write_json(f"scale-ours-{tag}.json", ctx.our_source_config(path_prefix, "csv")))}
    if ctx.airbyte:
        tools["airbyte-source-s3"] = (ctx.run_airbyte, ctx.write_json(
            f"scale-ab-{tag}.json", ctx.airbyte_config([(stream, f"{path_prefix}/{stream}/*.csv", "csv")])))
    for tool, (fn, cfg) in tools.items():
        disc = fn("discover", "--config", cfg)
        streams = [s for s in (disc.catalog or {}).get("streams", []) if s["name"] == stream]
        if not streams:
            r.skip(case, tool, f"{size:,}: discover found no stream {stream!r}: {disc.error()}")
            continue
        cat = ctx.write_json(f"scale-{tool}-{tag}-cat.json", configured_catalog({"streams": streams}, "full_refresh"))
        if tool == "des-source":
            argv, env = ctx.ours("read", "--config", cfg, "--catalog", cat), ctx.our_env
        else:
            argv, env = [str(ctx.airbyte), "read", "--config", cfg, "--catalog", cat], ctx.env
        run = run_connector(argv, env=env, timeout=ctx.args.scale_timeout)
        if run.rc != 0 or run.records != expected:
            why = (f"not finished in {ctx.args.scale_timeout:g} s" if run.seconds >= ctx.args.scale_timeout
                   else run.error() if run.rc != 0 else f"emitted {run.records}, expected {expected}")
            r.skip(case, tool, f"{size:,}: {why}")
            continue
        r.add(case, tool, f"seconds at {size:,}", run.seconds, "s", higher_is_better=False)
        r.add(case, tool, f"peak RSS at {size:,}", run.max_rss_mb, "MiB", higher_is_better=False)
        log(f"  {case} {tool} {size:,}: {run.seconds:.1f} s, {run.max_rss_mb:.0f} MiB")
        if profiled and tool == "des-source":
            profile(ctx, f"{case}, {size:,}", "connector.airbyte.source_main", *argv[3:])


def _growth(ctx: Ctx, case: str, sizes: list[int]) -> None:
    """Time and memory factors from one size to the next, per tool, into the ratio table."""
    r = ctx.results
    for tool in ("des-source", "airbyte-source-s3"):
        for a, b in zip(sizes, sizes[1:]):
            ta, tb = r.get(case, tool, f"seconds at {a:,}"), r.get(case, tool, f"seconds at {b:,}")
            ma, mb = r.get(case, tool, f"peak RSS at {a:,}"), r.get(case, tool, f"peak RSS at {b:,}")
            if not (ta and tb and ma and mb):
                continue
            step = b / a
            time_x, mem_x = tb.median / ta.median, mb.median / ma.median
            r.ratios.append({"case": case, "what": f"{tool}: {a:,} -> {b:,} ({step:g}x): time x{time_x:.1f}, "
                                                   f"peak RSS x{mem_x:.2f}",
                             "value": f"time x{time_x:.1f}", "target": f"<= x{step:g} (linear or better; met allows {NOISE:.0%} for noise)",
                             "met": time_x <= step * (1 + NOISE)})


def _middle(sizes: list[int]) -> int | None:
    """The size whose run ``--profile`` profiles: the middle one, so the profile sees the work
    grown without taking as long as the largest run."""
    return sizes[len(sizes) // 2] if sizes else None


def case_scale(ctx: Ctx) -> None:
    rows, files = _sizes(ctx.args.scale_rows), _sizes(ctx.args.scale_files)
    case = "scale: rows (CSV in objects of <= 250,000 rows)"
    for n in rows:
        _run_both(ctx, case, n, _load_rows(ctx, n), "rows", n, profiled=n == _middle(rows))
    _growth(ctx, case, rows)
    case = "scale: objects (small CSV files of 10 rows)"
    for n in files:
        _run_both(ctx, case, n, _load_files(ctx, n), "small", 10 * n, profiled=n == _middle(files))
    _growth(ctx, case, files)
