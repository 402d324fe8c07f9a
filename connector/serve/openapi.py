"""The OpenAPI 3.1 document of the REST API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from connector import __version__

_ID = {"name": "id", "in": "path", "required": True, "description": "dataset id (a safe name: letters, digits, "
       "'_ - . = + @'; no '/', '..', control characters; at most 200 characters)", "schema": {"type": "string"}}
_START = {"name": "start", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
_END = {"name": "end", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}


def _answer(description: str, schema: str | None = None, media: str = "application/json") -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    what = {400: "bad request (invalid id, key, body)", 401: "no or unknown bearer token",
            403: "the principal lacks the role", 404: "no such dataset or datapoints",
            409: "conflict (exists, frozen, overlap or gap with stored keys)", 413: "body over the limit",
            415: "unsupported Content-Type", 503: "dataset locked by another writer; retry"}
    return {str(s): _answer(what[s], "Error") for s in (400, 401, 403, *statuses)}


def document() -> dict[str, Any]:
    """The OpenAPI document (a JSON-serialisable dict)."""
    dataset_ops = {
        "get": {"summary": "Get a dataset and its stats (reader)", "operationId": "getDataset",
                "responses": {"200": _answer("the dataset", "DatasetWithStats"), **_errors(404)}},
        "put": {"summary": "Create a dataset (editor)", "operationId": "createDataset",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/NewDataset"}}}},
                "responses": {"201": _answer("created", "Dataset"), **_errors(409)}},
        "delete": {"summary": "Delete a dataset and all its data (owner)", "operationId": "deleteDataset",
                   "responses": {"200": _answer("deleted"), **_errors(404, 503)}},
        "post": {"summary": "Upload one datarange (editor): a tar of <key:020d>.<ext> files from the dataset's "
                            "next key, in order, without gaps; or JSON Lines records (keys assigned from the "
                            "next key). All or nothing.",
                 "operationId": "uploadDatarange",
                 "requestBody": {"required": True, "content": {
                     "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                     "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}}}},
                 "responses": {"201": _answer("the new datarange", "Upload"), **_errors(404, 409, 413, 415, 503)}},
        "parameters": [_ID],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "des serve: Datas3t REST API", "version": __version__,
                 "description": "Datasets of numbered datapoints stored as DES dataranges."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/datas3t": {"get": {"summary": "List the datasets the caller may read", "operationId": "listDatasets",
                                        "responses": {"200": _answer("datasets", "DatasetList"), **_errors()}}},
            "/api/v1/datas3t/{id}": dataset_ops,
            "/api/v1/datas3t/{id}/dataranges": {"parameters": [_ID], "get": {
                "summary": "List dataranges (reader)", "operationId": "listDataranges",
                "responses": {"200": _answer("dataranges", "DatarangeList"), **_errors(404)}}},
            "/api/v1/datas3t/{id}/datarange/{start}/{end}": {"parameters": [_ID, _START, _END], "get": {
                "summary": "Download datapoints start..end (reader): JSON Lines when all are records, else a tar; "
                           "format=urls: presigned URLs and byte ranges instead (S3 roots)",
                "operationId": "downloadDatarange",
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "schema": {"enum": ["jsonl", "tar", "urls"]}},
                               {"name": "expires", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 604800, "default": 3600}}],
                "responses": {"200": {"description": "the datapoints, streamed (or, format=urls, where to read them)",
                                      "content": {"application/x-ndjson": {}, "application/x-tar": {},
                                                  "application/json": {}}}, **_errors(404, 409)}}},
            "/api/v1/datas3t/{id}/aggregate/{start}/{end}": {"parameters": [_ID, _START, _END], "post": {
                "summary": "Merge the whole dataranges inside start..end into one (editor)",
                "operationId": "aggregate",
                "responses": {"200": _answer("the merged datarange"), **_errors(404, 503)}}},
            "/api/v1/datas3t/{id}/missing-ranges": {"parameters": [_ID], "get": {
                "summary": "Gaps in the key space (reader)", "operationId": "missingRanges",
                "responses": {"200": _answer("gaps", "MissingRanges"), **_errors(404)}}},
            **_buffer_paths(),
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                             "responses": {"200": _answer("OpenAPI 3.1")}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": _answer("ok")}}},
        },
    }


def _buffer_paths() -> dict[str, Any]:
    """The data buffer's endpoints (seed 003), one set per dataset."""
    base = "/api/v1/buffer/{id}"

    def op(method: str, summary: str, ident: str, *errors: int, body: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary, "operationId": ident,
                               "responses": {"200" if method == "get" or ident != "sendF" else "201":
                                             _answer("done"), **_errors(404, *errors)}}
        if body is not None:
            out["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object",
                                                                                                "description": body}}}}
        return {"parameters": [_ID], method: out}

    paging = [{"name": n, "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}}
              for n in ("offset", "limit")]
    dump = op("get", "Stored datapoints with their names, by position (reader)", "dumpF")
    dump["get"]["parameters"] = paging
    return {
        f"{base}/stat": op("get", "n_itm (datapoints) and buff_size (bytes) (reader)", "stat"),
        f"{base}/dstat": op("get", "dstatus OPERATIONAL or FROZEN, and the caller (reader)", "dstat"),
        f"{base}/dumpF": dump,
        f"{base}/dumpLogF": op("get", "The dataset's operation log (reader)", "dumpLogF"),
        f"{base}/sendF": op("post", "Store one JSON document as a datapoint (editor)", "sendF", 409, 413,
                            body="any JSON object"),
        f"{base}/upddsc": op("post", "Freeze or unfreeze (owner)", "upddsc", body='{"dstatus": "FROZEN"|"OPERATIONAL"}'),
        f"{base}/cleanall": op("post", "Unfreeze, keep the data as a version, start an empty key space (owner)",
                               "cleanall", 503),
    }


def _schemas() -> dict[str, Any]:
    obj = {"type": "object"}
    dataset = {"type": "object", "properties": {
        "id": {"type": "string"}, "description": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
        "metadata": obj, "status": {"enum": ["draft", "active", "archived"]}, "frozen": {"type": "boolean"},
        "created": {"type": "string"}, "updated": {"type": "string"}, "last_write": {"type": ["string", "null"]},
        "next_key": {"type": "integer"}}}
    datarange = {"type": "object", "properties": {
        "start": {"type": "integer"}, "end": {"type": "integer"}, "datapoints": {"type": "integer"},
        "bytes": {"type": "integer"}, "sha256": {"type": "string"}, "kind": {"enum": ["records", "files"]},
        "object": {"type": "string"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Dataset": dataset,
        "NewDataset": {"type": "object", "additionalProperties": False, "properties": {
            "description": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
            "metadata": obj, "status": {"enum": ["draft", "active", "archived"]}}},
        "DatasetWithStats": {"allOf": [{"$ref": "#/components/schemas/Dataset"}, {"type": "object", "properties": {
            "stats": obj}}]},
        "DatasetList": {"type": "object", "properties": {"datasets": {"type": "array", "items": {
            "$ref": "#/components/schemas/Dataset"}}}},
        "Datarange": datarange,
        "DatarangeList": {"type": "object", "properties": {"dataset": {"type": "string"}, "dataranges": {
            "type": "array", "items": {"$ref": "#/components/schemas/Datarange"}}}},
        "Upload": {"allOf": [{"$ref": "#/components/schemas/Datarange"}, {"type": "object", "properties": {
            "dataset": {"type": "string"}}}]},
        "MissingRanges": {"type": "object", "properties": {"dataset": {"type": "string"}, "next_key": {"type": "integer"},
                          "missing": {"type": "array", "items": {"type": "object", "properties": {
                              "start": {"type": "integer"}, "end": {"type": "integer"}}}}}},
    }
