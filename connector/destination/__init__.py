"""The destination: Airbyte RECORD/STATE messages -> datasets in a :class:`connector.store.Store`."""

from connector.destination.config import DestinationConfig
from connector.destination.write import write_messages

__all__ = ["DestinationConfig", "write_messages"]
