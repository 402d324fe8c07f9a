"""Member names of record datapoints inside a container: ``<key, 20 digits>.json``.

Its own module because the writer, the reader side of the Store and maintenance all need it.
"""

from __future__ import annotations

import numpy as np


def record_name(key: int) -> str:
    """Member name of record datapoint ``key``."""
    return f"{key:020d}.json"


_POWERS = np.array([10 ** p for p in range(19, -1, -1)], dtype=np.uint64)
_SUFFIX = np.frombuffer(b".json", np.uint8)


def record_names(first: int, count: int) -> np.ndarray:
    """Member names of record datapoints ``first .. first+count-1`` as a NumPy ``S25`` array,
    built without a Python loop (the writer's hot path)."""
    keys = np.arange(first, first + count, dtype=np.uint64)
    out = np.empty((count, 25), np.uint8)
    # Only the digit positions the largest key reaches vary; the leading ones are all "0".
    width = len(str(first + count - 1)) if count else 1
    out[:, :20 - width] = 48
    out[:, 20 - width:20] = (keys[:, None] // _POWERS[None, 20 - width:]) % 10 + 48
    out[:, 20:] = _SUFFIX
    return out.view("S25").ravel()
