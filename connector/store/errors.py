"""Errors of the dataset store; every one says which dataset (and range, version...) and why."""

from __future__ import annotations

from connector.errors import ConnectorError


class StoreError(ConnectorError):
    """Base class of store errors."""


class InvalidName(StoreError, ValueError):
    """A dataset name that could not be a safe object-key segment."""


class DatasetNotFound(StoreError, KeyError):
    """No dataset of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "dataset not found"


class DatasetExists(StoreError):
    """A dataset of that name exists already."""


class DatasetFrozen(StoreError):
    """The dataset is frozen: no write or key-space change until it is unfrozen."""


class DatasetLocked(StoreError):
    """Another writer holds the dataset's lock (after waiting), or this one lost it."""


class RangeError(StoreError, ValueError):
    """A key or key range the dataset does not hold, or that an operation cannot take."""


class VersionError(StoreError, ValueError):
    """A version that does not exist, exists already, or is not a semantic version."""
