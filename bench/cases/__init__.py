"""One module per bench case; ``CASES`` maps a case's name to its function (run in this order)."""

from __future__ import annotations

from collections.abc import Callable

from cases.batch_read import case_batch_read
from cases.catalog_scale import case_catalog
from cases.dask_scale import case_dask
from cases.destination import case_destination
from cases.discover import case_discover
from cases.duckdb_peer import case_duckdb
from cases.incremental import case_incremental
from cases.pack import case_pack
from cases.random_read import case_random_read
from cases.scale import case_scale
from cases.serve import case_serve
from cases.small_input import case_small_input
from cases.source_formats import case_discover_declared, case_source_formats
from cases.source_read import case_source_read
from cases.sync import case_sync
from core import Ctx

CASES: dict[str, Callable[[Ctx], None]] = {
    "source_read": case_source_read, "small_input": case_small_input, "discover": case_discover, "incremental": case_incremental,
    "destination": case_destination, "sync": case_sync, "random_read": case_random_read, "batch_read": case_batch_read,
    "pack": case_pack, "duckdb": case_duckdb, "scale": case_scale, "serve": case_serve,
    "source_formats": case_source_formats, "discover_declared": case_discover_declared, "dask": case_dask,
    "catalog": case_catalog,
}
