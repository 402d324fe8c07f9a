"""Clients of ``des serve``: :class:`Datas3tClient` speaks its REST API (Datas3t's paths)."""

from connector.client.rest import Datas3tClient, ServerError, datapoints_tar

__all__ = ["Datas3tClient", "ServerError", "datapoints_tar"]
