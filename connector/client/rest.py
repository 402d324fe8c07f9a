"""A client of ``des serve``'s REST API (Datas3t's paths), on the standard library's HTTP client.

Bodies stream both ways: an upload can be a file or an iterable of byte pieces (sent with chunked
transfer encoding), a download is an iterator of pieces that fails (``http.client.IncompleteRead``)
when the server's stream was cut. Every error answer is raised as :class:`ServerError` with the
server's status, code and message; the token is sent only in the ``Authorization`` header.
"""

from __future__ import annotations

import http.client
import io
import json
import ssl
import tarfile
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, cast

from connector.errors import ConnectorError

PIECE = 1 << 16
TAR_TYPE = "application/x-tar"
JSONL_TYPE = "application/x-ndjson"
Body = bytes | IO[bytes] | Iterable[bytes]


class ServerError(ConnectorError):
    """An error answer of the server (``status`` 0: no answer, the connection failed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Datas3tClient:
    """Datas3t's operations against ``url`` (``http://host:port``), as principal ``token``."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server url {url!r} must be http://HOST:PORT or https://HOST:PORT")
        self._scheme, self._netloc = parts.scheme, parts.netloc
        self._base = parts.path.rstrip("/")
        self._token, self._timeout, self._ssl = token, timeout, ssl_context

    # -- datasets --------------------------------------------------------------------------------

    def list_datasets(self) -> list[dict[str, Any]]:
        """The datasets the token may read (``GET /api/v1/datas3t``)."""
        return self._json("GET", "/api/v1/datas3t")["datasets"]

    def create_dataset(self, dataset: str, *, description: str | None = None, tags: Iterable[str] | None = None,
                       metadata: Mapping[str, Any] | None = None, status: str | None = None) -> dict[str, Any]:
        """Create ``dataset`` with the given fields (``PUT``); the created dataset."""
        fields = {"description": description, "tags": None if tags is None else list(tags),
                  "metadata": None if metadata is None else dict(metadata), "status": status}
        body = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
        return self._json("PUT", _path(dataset), body, "application/json")

    def get_dataset(self, dataset: str) -> dict[str, Any]:
        """One dataset with its stats."""
        return self._json("GET", _path(dataset))

    def delete_dataset(self, dataset: str) -> dict[str, Any]:
        """Delete ``dataset`` and everything under it."""
        return self._json("DELETE", _path(dataset))

    # -- dataranges ------------------------------------------------------------------------------

    def upload_tar(self, dataset: str, tar: Body) -> dict[str, Any]:
        """Upload a tar of ``<key:020d>.<ext>`` datapoint files (see :func:`datapoints_tar`) as
        one datarange starting at the dataset's next key."""
        return self._json("POST", _path(dataset), tar, TAR_TYPE)

    def upload_records(self, dataset: str, records: Iterable[bytes | Mapping[str, Any]]) -> dict[str, Any]:
        """Upload records (JSON objects, as dicts or as encoded lines) as one datarange."""
        lines = (r.rstrip(b"\n") + b"\n" if isinstance(r, bytes) else json.dumps(r).encode() + b"\n"
                 for r in records)
        return self._json("POST", _path(dataset), lines, JSONL_TYPE)

    def dataranges(self, dataset: str) -> list[dict[str, Any]]:
        """The dataset's dataranges."""
        return self._json("GET", _path(dataset, "dataranges"))["dataranges"]

    def download(self, dataset: str, start: int, end: int, fmt: str | None = None) -> Iterator[bytes]:
        """Datapoints ``start..end`` as pieces of JSON Lines (records) or of a tar (``fmt``:
        ``"jsonl"`` or ``"tar"``; by default the server's choice)."""
        query = f"?format={urllib.parse.quote(fmt)}" if fmt else ""
        connection, response = self._send("GET", _path(dataset, "datarange", str(start), str(end)) + query)
        try:
            if response.status >= 400:
                raise _error(response)
            while piece := _read_piece(response, dataset, start, end):
                yield piece
        finally:
            connection.close()

    def presigned(self, dataset: str, start: int, end: int, expires: int = 3600) -> dict[str, Any]:
        """Presigned URLs of the containers holding ``start..end`` and each datapoint's byte range
        (``offset``, ``length``) in them: read them from the object store directly (S3 roots)."""
        return self._json("GET", _path(dataset, "datarange", str(start), str(end)) + f"?format=urls&expires={expires}")

    def download_bytes(self, dataset: str, start: int, end: int, fmt: str | None = None) -> bytes:
        """Datapoints ``start..end`` in one piece (see :meth:`download`)."""
        return b"".join(self.download(dataset, start, end, fmt))

    def aggregate(self, dataset: str, start: int, end: int) -> dict[str, Any]:
        """Merge the dataranges inside ``[start, end]`` into one; the merged datarange."""
        return self._json("POST", _path(dataset, "aggregate", str(start), str(end)))["datarange"]

    def missing_ranges(self, dataset: str) -> list[tuple[int, int]]:
        """Gaps in the dataset's key space, as ``(start, end)`` pairs."""
        return [(g["start"], g["end"]) for g in self._json("GET", _path(dataset, "missing-ranges"))["missing"]]

    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI document."""
        return self._json("GET", "/api/v1/openapi.json")

    # -- plumbing --------------------------------------------------------------------------------

    def _json(self, method: str, path: str, body: Body | None = None, content_type: str | None = None) -> Any:
        connection, response = self._send(method, path, body, content_type)
        try:
            if response.status >= 400:
                raise _error(response)
            return json.loads(response.read())
        finally:
            connection.close()

    def _send(self, method: str, path: str, body: Body | None = None, content_type: str | None = None
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request; its response (the server may answer before it has read a whole
        upload: an error it found early is still returned, not a broken pipe)."""
        connection = (http.client.HTTPSConnection(self._netloc, timeout=self._timeout, context=self._ssl)
                      if self._scheme == "https" else http.client.HTTPConnection(self._netloc, timeout=self._timeout))
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        sized = body is None or isinstance(body, (bytes, bytearray))
        lost: OSError | None = None
        try:
            connection.request(method, self._base + path, body=_pieces(body) if not sized else body,
                               headers=headers, encode_chunked=not sized)
        except (BrokenPipeError, ConnectionResetError) as exc:
            lost = exc  # the server answered early and closed: its answer may be there to read
        except OSError as exc:  # no connection at all (refused, TLS verification, timeout)
            connection.close()
            raise ServerError(0, "connection", f"{method} {path}: {exc}") from None
        try:
            return connection, connection.getresponse()
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            raise ServerError(0, "connection", f"{method} {path}: {lost or exc}") from None


def _pieces(body: Body | None) -> Iterator[bytes]:
    if body is None:
        return
    if hasattr(body, "read"):
        while piece := body.read(PIECE):
            yield piece
        return
    for piece in cast(Iterable[bytes], body):
        if piece:  # an empty piece would end a chunked body
            yield piece


def _read_piece(response: http.client.HTTPResponse, dataset: str, start: int, end: int) -> bytes:
    try:
        return response.read(PIECE)
    except (http.client.IncompleteRead, ConnectionError) as exc:
        # the server met an error after the first byte: it ends the stream without its last chunk
        raise ServerError(0, "incomplete", f"download of {dataset!r} keys {start}..{end} was cut short by the "
                          f"server ({type(exc).__name__}); the server's log names the error") from None


def _path(dataset: str, *parts: str) -> str:
    # Every reserved character and '.' percent-encoded: the id reaches the server as given
    # ('..' or '/' in it are refused there, not resolved on the way).
    quoted = urllib.parse.quote(dataset, safe="").replace(".", "%2E")
    return "/".join(("/api/v1/datas3t", quoted, *parts))


def _error(response: http.client.HTTPResponse) -> ServerError:
    text = response.read()
    try:
        error = json.loads(text)["error"]
        return ServerError(response.status, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ServerError(response.status, "http", text[:200].decode("utf-8", "replace") or response.reason)


def datapoints_tar(datapoints: Mapping[int, bytes], ext: str = "bin") -> bytes:
    """A Datas3t upload: members ``<key:020d>.<ext>`` in key order holding ``datapoints``' bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key in sorted(datapoints):
            info = tarfile.TarInfo(f"{key:020d}.{ext}")
            info.size = len(datapoints[key])
            tar.addfile(info, io.BytesIO(datapoints[key]))
    return out.getvalue()
