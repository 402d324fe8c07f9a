"""The data buffer's endpoints (seed 003) over a real ``des serve``: stat, dstat, dumpF, dumpLogF,
sendF, upddsc (freeze) and cleanall (unfreeze, new key space), and who may call them."""

from __future__ import annotations

import json

import pytest

from connector.client import Datas3tClient

from .conftest import Principals, Server, raw_request, unique


def _call(server: Server, token: str, method: str, name: str, endpoint: str, body: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, dict]:
    status, _, answer = raw_request(server, method, f"/api/v1/buffer/{name}/{endpoint}", token, body,
                             content_type if body is not None else None)
    return status, answer


def test_the_buffer_cycle(server: Server, principals: Principals, admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    token = principals.admin
    assert _call(server, token, "GET", name, "stat") == (200, {"n_itm": 0, "buff_size": 0})
    assert _call(server, token, "GET", name, "dstat") == (200, {"dstatus": "OPERATIONAL", "user": "admin"})
    document = b'{\n  "detector": "H1",\n  "strain": [1.5e-21, -2.25e-21],\n  "gps": 1187008882\n}\n'
    assert _call(server, token, "POST", name, "sendF", document) == (201, {"key": 0})
    assert _call(server, token, "POST", name, "sendF", b'{"detector": "L1"}') == (201, {"key": 1})
    status, stat = _call(server, token, "GET", name, "stat")
    assert status == 200 and stat["n_itm"] == 2 and stat["buff_size"] > 0
    assert admin.download_bytes(name, 0, 1) == (b'{"detector":"H1","strain":[1.5e-21,-2.25e-21],"gps":1187008882}\n'
                                                b'{"detector":"L1"}\n')
    assert _call(server, token, "GET", name, "dumpF") == (200, {"total": 2, "offset": 0, "files": [
        {"key": 0, "name": f"{0:020d}.json", "kind": "records"}, {"key": 1, "name": f"{1:020d}.json", "kind": "records"}]})
    assert _call(server, token, "GET", name, "dumpF?offset=1&limit=5")[1]["files"] == [
        {"key": 1, "name": f"{1:020d}.json", "kind": "records"}]
    # freeze: sendF refused, nothing written
    assert _call(server, token, "POST", name, "upddsc", b'{"dstatus": "FROZEN"}')[1]["dstatus"] == "FROZEN"
    status, refused = _call(server, token, "POST", name, "sendF", b'{"late": true}')
    assert (status, refused["error"]["code"]) == (409, "frozen")
    assert _call(server, token, "GET", name, "stat")[1]["n_itm"] == 2
    # cleanall: unfrozen, the data kept as version 1.0.0, an empty key space
    status, cleaned = _call(server, token, "POST", name, "cleanall")
    assert status == 200 and cleaned == {"dstatus": "OPERATIONAL", "user": "admin", "version": "1.0.0",
                                         "kept_dataranges": 2}
    assert _call(server, token, "GET", name, "stat")[1] == {"n_itm": 0, "buff_size": 0}
    assert _call(server, token, "POST", name, "sendF", b'{"after": 1}') == (201, {"key": 0})
    ops = [e["op"] for e in _call(server, token, "GET", name, "dumpLogF")[1]["log"]]
    assert ops[0] == "create" and {"write", "freeze", "unfreeze", "rotate"} <= set(ops)


@pytest.mark.parametrize(("body", "code"), [(b'[1, 2]', "bad_record"), (b'{"a": 1, "a": 2}', "bad_record"),
                                            (b'{"a": ', "bad_record"), (b"", "bad_record")])
def test_send_refuses_what_is_not_one_json_object(server: Server, principals: Principals, admin: Datas3tClient,
                                                   body, code):
    name = unique()
    admin.create_dataset(name)
    status, answer = _call(server, principals.admin, "POST", name, "sendF", body)
    assert (status, answer["error"]["code"]) == (400, code)
    assert _call(server, principals.admin, "GET", name, "stat")[1]["n_itm"] == 0


def test_send_over_the_limit_is_413(server: Server, principals: Principals, admin: Datas3tClient):
    name = unique()
    admin.create_dataset(name)
    big = json.dumps({"pad": "x" * (5 << 20)}).encode()  # the module's server takes 4 MiB
    status, answer = _call(server, principals.admin, "POST", name, "sendF", big)
    assert (status, answer["error"]["code"]) == (413, "too_large")


BUFFER_ENDPOINTS = [
    ("GET", "stat", None, "reader"), ("GET", "dstat", None, "reader"), ("GET", "dumpF", None, "reader"),
    ("GET", "dumpLogF", None, "reader"), ("POST", "sendF", b'{"a": 1}', "editor"),
    ("POST", "upddsc", b'{"dstatus": "OPERATIONAL"}', "owner"), ("POST", "cleanall", None, "owner")]


@pytest.mark.parametrize(("method", "endpoint", "body", "role"), BUFFER_ENDPOINTS)
def test_every_buffer_endpoint_checks_token_and_role(server: Server, principals: Principals, admin: Datas3tClient,
                                                     method, endpoint, body, role):
    name = unique()
    admin.create_dataset(name)
    status, _, answer = raw_request(server, method, f"/api/v1/buffer/{name}/{endpoint}", None, body)
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")
    order = ["reader", "editor", "owner"]
    for principal, held in [("outsider", None), ("reader", "reader"), ("editor", "editor")]:
        status, answer = _call(server, getattr(principals, principal), method, name, endpoint, body)
        if held is not None and order.index(held) >= order.index(role):
            assert status < 400, answer
        else:
            assert (status, answer["error"]["code"]) == (403, "permission_denied"), (principal, answer)
    assert _call(server, principals.admin, "GET", name, "dstat")[1]["dstatus"] == "OPERATIONAL"


@pytest.mark.parametrize(("method", "endpoint", "body", "role"), BUFFER_ENDPOINTS)
def test_every_buffer_endpoint_checks_the_topic(server: Server, principals: Principals, admin: Datas3tClient,
                                                method, endpoint, body, role):
    name = unique("t-")
    admin.create_dataset(name, metadata={"topic_id": "alpha"})
    order = ["reader", "editor", "owner"]
    for principal, held in [("beta_owner", None), ("alpha_member", "reader"), ("alpha_editor", "editor")]:
        status, answer = _call(server, getattr(principals, principal), method, name, endpoint, body)
        if held is not None and order.index(held) >= order.index(role):
            assert status < 400, answer
        else:
            assert (status, answer["error"]["code"]) == (403, "permission_denied"), (principal, answer)
    assert _call(server, principals.admin, "GET", name, "dstat")[1]["dstatus"] == "OPERATIONAL"
