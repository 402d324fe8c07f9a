"""discover of 200 CSV files in 5 streams: time, requests and the types each tool infers."""

from __future__ import annotations

import datagen
from core import Ctx, add_without_startup, log, profile, ratio


def _type_text(sch: dict) -> str:
    """A column's JSON schema in a few words: its types without null, with format or airbyte_type;
    the alternatives of an ``anyOf`` joined by " or " (a date-time column that keeps text it could
    not parse is declared that way)."""
    if "anyOf" in sch:
        return " or ".join(dict.fromkeys(_type_text(alt) for alt in sch["anyOf"]))
    t = sch.get("type")
    t = [x for x in t if x != "null"] if isinstance(t, list) else [t]
    text = "|".join(str(x) for x in t)
    if sch.get("format"):
        text += f" ({sch['format']})"
    elif sch.get("airbyte_type"):
        text += f" ({sch['airbyte_type']})"
    return text


def _types(catalog: dict | None, stream: str) -> dict[str, str]:
    if not catalog:
        return {}
    for s in catalog["streams"]:
        if s["name"] == stream:
            return {col: _type_text(sch) for col, sch in (s.get("json_schema", {}).get("properties") or {}).items()}
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
            add_without_startup(ctx, case, tool, run.seconds)
            r.add(case, tool, "S3 requests", counts.get("total", 0), "", higher_is_better=False)
            r.add(case, tool, "streams found", len(run.catalog["streams"]), "")
            log(f"  {case} {tool}: {len(run.catalog['streams'])} streams in {run.seconds:.2f}s, {counts.get('total', 0)} requests")
    ratio(r, case, "seconds", "des-source", "airbyte-source-s3", lower_is_better=True)
    ratio(r, case, "seconds, start-up excluded", "des-source", "airbyte-source-s3", lower_is_better=True)
    profile(ctx, case, "connector.airbyte.source_main", "discover", "--config", ours_cfg)
    ours_t, ab_t = _types(cats.get("des-source"), "s0"), _types(cats.get("airbyte-source-s3"), "s0")
    src = datagen.rows_table(1, seed=0).schema
    r.extra["discover_types"] = [(c, str(src.field(c).type) if c in src.names else "-", ours_t.get(c, "-"), ab_t.get(c, "-"))
                                 for c in list(dict.fromkeys(list(src.names) + list(ours_t) + list(ab_t)))]

