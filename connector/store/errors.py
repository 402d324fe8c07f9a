"""Errors of the dataset store; every one says which dataset (and range, version...) and why."""

from __future__ import annotations

from connector.errors import ConnectorError


class StoreError(ConnectorError):
    """Base class of store errors."""


class InvalidName(StoreError, ValueError):
    """A dataset name that could not be a safe object-key segment."""


class DatasetNotFound(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "dataset not found"


class DatasetExists(StoreError):
    pass


class DatasetFrozen(StoreError):
    pass


class DatasetLocked(StoreError):
    pass


class RangeError(StoreError, ValueError):
    pass


class VersionError(StoreError, ValueError):
    pass
