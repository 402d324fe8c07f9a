"""``des serve``: the store over HTTP, as Datas3t's REST API (seed 000), with bearer-token auth.

Modules, one job each: ``app`` (the aiohttp application, middlewares, running and stopping it),
``routes`` (the Datas3t handlers), ``uploads`` / ``downloads`` (datarange bodies in and out),
``bodies`` (a request body as a blocking stream for worker threads), ``auth`` (tokens, principals,
roles), ``errors`` (answers as JSON), ``openapi`` (the API document).
"""

from connector.serve.app import ServeOptions, build_app, open_store, serve
from connector.serve.routes import Limits

__all__ = ["Limits", "ServeOptions", "build_app", "open_store", "serve"]
