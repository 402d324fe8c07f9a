"""Datasets of numbered datapoints stored as DES dataranges under any fsspec root.

See :class:`Store`. Storage is the source of truth; the SQLite catalog is an index rebuilt from it
by :meth:`Store.restore`.
"""

from connector.store.api import Store, default_catalog
from connector.store.errors import (
    DatasetExists,
    DatasetFrozen,
    DatasetLocked,
    DatasetNotFound,
    InvalidName,
    RangeError,
    StoreError,
    VersionError,
)
from connector.store.model import Dataset, Datarange, Version, WriteResult
from connector.store.writer import DatasetWriter

__all__ = ["Dataset", "DatasetExists", "DatasetFrozen", "DatasetLocked", "DatasetNotFound", "DatasetWriter",
           "Datarange", "InvalidName", "RangeError", "Store", "StoreError", "Version", "VersionError",
           "WriteResult", "default_catalog"]
