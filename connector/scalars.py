"""Arrow scalars and small constant arrays built from raw buffers.

``pa.scalar(value)`` and every other conversion of a Python object make pyarrow import pandas on
first use (~0.25 s of a single-threaded import under the import lock). The read path only ever
needs a few constant scalars, so it builds them from bytes and never pays for pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def string_array(texts: Sequence[str]) -> pa.StringArray:
    """``texts`` as an Arrow string array (no nulls)."""
    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def string_scalar(text: str) -> pa.StringScalar:
    """``text`` as an Arrow string scalar."""
    return string_array([text])[0]


def timestamp_us_utc(moment: datetime) -> pa.TimestampScalar:
    """``moment`` (naive means UTC) as a ``timestamp[us, tz=UTC]`` scalar."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    values = np.array([micros], np.int64)
    return pa.Array.from_buffers(pa.timestamp("us", tz="UTC"), 1, [None, pa.py_buffer(values)])[0]


def rows_without_columns(num_rows: int) -> pa.RecordBatch:
    """A batch of ``num_rows`` rows and no column: what a run of ``{}`` objects parses to.

    ``RecordBatch.from_arrays([])`` takes its length from its columns and has none, and
    ``concat_tables`` of column-less tables drops their rows, so these are built explicitly.
    """
    return pa.RecordBatch.from_struct_array(pa.Array.from_buffers(pa.struct([]), num_rows, [None], children=[]))


def bool_array(mask: np.ndarray) -> pa.BooleanArray:
    """A NumPy boolean mask as an Arrow boolean array (no nulls)."""
    bits = np.packbits(np.asarray(mask, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])
