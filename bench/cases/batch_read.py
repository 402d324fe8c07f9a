"""1,000 adjacent members: DesReader.read_many vs zip via fsspec vs plain per-object GETs."""

from __future__ import annotations

import random
import time

from cases.archives import archive_fs, clear_des_cache, get_objects, upload_archives
from core import BUCKET, Ctx, fmt, log, profile, ratio


def case_batch_read(ctx: Ctx) -> None:
    """1,000 adjacent members: DesReader.read_many vs zip via fsspec vs plain per-object GETs."""
    from connector.des import DesReader, IndexCache

    r = ctx.results
    upload_archives(ctx)
    names = sorted(ctx.small)
    n = min(1000, len(names) // 2)
    case = f"batch read of {n:,} adjacent members"
    fs_s3 = ctx.server.s3fs()

    def ours(batch):
        rd = DesReader(f"s3://{BUCKET}/pack/small.des", storage_options=ctx.server.storage_options(), cache=IndexCache())
        return rd.read_many(batch)

    def zip_(batch):
        fs = archive_fs(ctx, "zip")
        return fs.cat(batch)

    def plain(batch):
        fs = ctx.server.s3fs()
        got = get_objects(fs, [f"{BUCKET}/{k}" for k in batch])
        return {k[len(BUCKET) + 1:]: v for k, v in got.items()}

    tools = {"DesReader.read_many": ours, "zip:// over s3fs (fs.cat of the list)": zip_,
             "plain per-object GETs (s3fs.cat_ranges, concurrent)": plain}
    del fs_s3
    for fn in tools.values():  # warm-up (imports, first connections), not measured
        fn(names[:10])
    for i in range(ctx.args.repeat):
        start = random.Random(ctx.args.seed + 100 + i).randrange(0, len(names) - n)
        batch = names[start:start + n]
        for tool, fn in tools.items():
            clear_des_cache()
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
    if ctx.args.profile:
        start = random.Random(ctx.args.seed + 100).randrange(0, len(names) - n)
        profile(ctx, case + ", DesReader.read_many", "bench.member_reads", "batch", f"s3://{BUCKET}/pack/small.des",
                ctx.write_json("member-reads-options.json", ctx.server.storage_options()),
                ctx.write_lines("member-reads-batch.txt", names[start:start + n]))
