"""Parquet: schema from the footer alone, rows read row group by row group.

The file is opened with a small read-ahead block so that reading the footer costs a ranged GET of
the tail, not a download of the file; row groups are then read one at a time, which bounds memory
by the row-group size and lets an error name the row group.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connector.source.errors import BadDataError
from connector.source.formats import FileStats, FormatOptions, data_errors, open_raw
from connector.source.infer import json_type
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
                        yield _as_declared(batch, schema)
            except BadDataError:
                if options.on_bad_record != "skip":
                    raise
                # A corrupt row group cannot be split into good and bad rows: skip it whole.
                stats.skip(f"row group {group}")


def _as_declared(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with what the stream declares as text, because its files disagree on its type
    (int64 in one, string in another), as text, at any depth: a record matches the declared schema.
    Other differences need nothing: an int64 column is a valid ``number``, a narrower struct a
    valid object."""
    columns = list(batch.columns)
    changed = False
    for i, name in enumerate(batch.schema.names):
        at = schema.get_field_index(name)
        if at >= 0 and columns[i].type != schema.field(at).type:
            column = _declared(columns[i], schema.field(at).type)
            changed |= column is not columns[i]
            columns[i] = column
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names) if changed else batch


def _declared(array: pa.Array, declared: pa.DataType) -> pa.Array:
    """``array`` with its values where ``declared`` has text as text (``array`` itself if none)."""
    t = array.type
    if pa.types.is_string(declared):
        return array if _is_text(t) else as_text(array)
    if pa.types.is_struct(declared) and pa.types.is_struct(t):
        originals = [array.field(i) for i in range(t.num_fields)]
        children = [_declared(child, declared.field(declared.get_field_index(f.name)).type)
                    if declared.get_field_index(f.name) >= 0 else child for f, child in zip(t, originals)]
        if all(new is old for new, old in zip(children, originals)):
            return array
        return pa.StructArray.from_arrays(children, fields=[pa.field(f.name, c.type) for f, c in zip(t, children)],
                                          mask=array.is_null())
    if pa.types.is_list(declared) and (pa.types.is_list(t) or pa.types.is_large_list(t)):
        offsets = array.offsets
        start = offsets[0].as_py()
        values = array.values.slice(start, offsets[-1].as_py() - start)
        converted = _declared(values, declared.value_type)
        if converted is values:
            return array
        rebased = pc.subtract(offsets, offsets[0])
        return type(array).from_arrays(rebased, converted, mask=array.is_null())
    return array


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def as_text(column: pa.Array) -> pa.Array:
    """Each value as its JSON text, a JSON string's without the quotes (a date as 2024-01-02)."""
    from connector.records import json_texts

    texts = json_texts(column)
    if "string" in json_type(column.type)["type"]:
        texts = pc.utf8_slice_codeunits(texts, 1, -1)
    return pc.if_else(pc.is_null(column), pa.nulls(len(column), pa.string()), texts)
