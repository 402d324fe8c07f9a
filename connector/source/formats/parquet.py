"""Parquet: schema from the footer alone, rows read row group by row group.

The file is opened with a small read-ahead block so that reading the footer costs a ranged GET of
the tail, not a download of the file; row groups are then read one at a time, which bounds memory
by the row-group size and lets an error name the row group.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from connector.source.errors import BadDataError
from connector.source.formats import FileStats, FormatOptions, data_errors, open_raw
from connector.source.listing import FileRef

#: Read-ahead for footer-only opens: Arrow reads the last 64 KiB first.
FOOTER_BLOCK = 64 << 10
#: Read-ahead while reading row groups (column chunks are read in large sequential ranges).
DATA_BLOCK = 8 << 20


def infer(fs: fsspec.AbstractFileSystem, ref: FileRef, options: FormatOptions, max_rows: int) -> pa.Schema:
    """The Arrow schema stored in the footer (no data pages are read)."""
    with data_errors(ref, "footer"), open_raw(fs, ref, block_size=FOOTER_BLOCK, cache_type="readahead") as raw:
        if ref.size == 0:
            return pa.schema([])
        return pq.ParquetFile(raw).schema_arrow


def batches(fs: fsspec.AbstractFileSystem, ref: FileRef, schema: pa.Schema, options: FormatOptions,
            stats: FileStats) -> Iterator[pa.RecordBatch]:
    """Every row, row group by row group, in batches of at most ``options.batch_size`` rows."""
    if ref.size == 0:
        return
    with open_raw(fs, ref, block_size=DATA_BLOCK, cache_type="readahead") as raw:
        with data_errors(ref, "footer"):
            pf = pq.ParquetFile(raw)
        for group in range(pf.num_row_groups):
            try:
                with data_errors(ref, f"row group {group}"):
                    for batch in pf.iter_batches(batch_size=options.batch_size, row_groups=[group], use_threads=False):
                        yield batch
            except BadDataError:
                if options.on_bad_record != "skip":
                    raise
                # A corrupt row group cannot be split into good and bad rows: skip it whole.
                stats.skip(f"row group {group}")
