"""The catalog at many dataranges (issue 18's scale estimate): SQLite bytes per datarange row, and
the lookup a datapoint read makes (``datarange_at``), at each ``--catalog-rows`` size, written through
the catalog module the store uses (no containers: only the catalog is measured)."""

from __future__ import annotations

import os
import random
import statistics
import time

from core import WORK, Ctx, log

#: Datapoints per datarange of the simulated dataset (a files container cut at 256 MiB of 1 MB objects).
PER_RANGE = 268
TAG = "0123456789abcdef"  # a lock session tag, 16 hex digits, as every published container has


def _fill(catalog, start: int, stop: int) -> None:
    """Datarange rows ``start`` .. ``stop - 1`` of dataset ``objects``, 1,000 per transaction."""
    for lo in range(start, stop, 1000):
        with catalog.transaction() as db:
            for i in range(lo, min(lo + 1000, stop)):
                first, last = i * PER_RANGE, (i + 1) * PER_RANGE - 1
                catalog.insert_datarange(db, "objects", first, last,
                                         f"objects/dataranges/{first:020d}-{last:020d}.{TAG}.des",
                                         268_000_000 + i % 1000, f"{i:064x}", PER_RANGE, "files", None)


def case_catalog(ctx: Ctx) -> None:
    """Grow one dataset's catalog through ``--catalog-rows`` sizes; at each, the cost of one more
    datarange insert (the overlap check included) and of a ``datarange_at`` lookup."""
    from connector.store.catalog import Catalog

    sizes = sorted(int(x) for x in str(ctx.args.catalog_rows).split(","))
    path = WORK / "catalog-scale.sqlite"
    for p in WORK.glob("catalog-scale.sqlite*"):
        p.unlink()
    catalog = Catalog(str(path))
    rng = random.Random(ctx.args.seed)
    try:
        with catalog.transaction() as db:
            catalog.insert_dataset(db, "objects")
        have = 0
        for n in sizes:
            case = f"catalog at {n:,} dataranges (SQLite)"
            _fill(catalog, have, n - 1000)
            t0 = time.perf_counter()
            _fill(catalog, n - 1000, n)  # the last 1,000 timed: the cost of an insert at this size
            ctx.results.add(case, "catalog", "ms per datarange insert", (time.perf_counter() - t0), "ms",
                            higher_is_better=False, note="1,000 inserts timed, 1,000 per transaction; x1000 / 1000")
            have = n
            size = sum(os.path.getsize(p) for p in WORK.glob("catalog-scale.sqlite*"))
            ctx.results.add(case, "catalog", "bytes per datarange row", size / n, "B", higher_is_better=False,
                            note="SQLite file (+WAL) / rows; path and sha256 as the store writes them")
            for _ in range(ctx.args.repeat):
                times = []
                for key in (rng.randrange(n * PER_RANGE) for _ in range(300)):
                    t = time.perf_counter()
                    row = catalog.datarange_at("objects", key)
                    times.append(time.perf_counter() - t)
                    if row is None or not row["first"] <= key <= row["last"]:
                        ctx.results.add(case, "catalog", "errors", 1, note=f"no datarange found for key {key}")
                        return
                ctx.results.add(case, "catalog", "datarange_at lookup, median", statistics.median(times) * 1000, "ms",
                                higher_is_better=False, note="300 random keys per run")
            log(f"  {case}: {size / n:.0f} B/row, insert {ctx.results.get(case, 'catalog', 'ms per datarange insert').median:.2f} ms, "
                f"lookup {ctx.results.get(case, 'catalog', 'datarange_at lookup, median').median:.2f} ms")
    finally:
        catalog.close()
