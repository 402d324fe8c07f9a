"""Who may do what: every route checked with no token, an unknown token and each role."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from connector.client import Datas3tClient, ServerError, datapoints_tar
from connector.serve.auth import new_token

from .conftest import Principals, Server, raw_request, unique

TAR = datapoints_tar({0: b"x"})


# (method, path under the dataset, body, content type, the role it takes)
ROUTES = [
    ("GET", "", None, None, "reader"),
    ("PUT", "", b"{}", "application/json", "editor"),
    ("DELETE", "", None, None, "owner"),
    ("POST", "", TAR, "application/x-tar", "editor"),
    ("GET", "/dataranges", None, None, "reader"),
    ("GET", "/datarange/0/0", None, None, "reader"),
    ("POST", "/aggregate/0/0", None, None, "editor"),
    ("GET", "/missing-ranges", None, None, "reader"),
]


@pytest.mark.parametrize(("method", "tail", "body", "content_type", "role"), ROUTES)
def test_every_route_needs_a_known_token(server: Server, method, tail, body, content_type, role):
    path = f"/api/v1/datas3t/team-x{tail}"
    status, headers, answer = raw_request(server, method, path, None, body, content_type)
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")
    assert headers["WWW-Authenticate"] == 'Bearer realm="des"'
    secret = "not-a-known-token-1234567890"
    status, _, answer = raw_request(server, method, path, secret, body, content_type)
    assert (status, answer["error"]["message"]) == (401, "unknown bearer token")
    assert secret not in json.dumps(answer)
    status, _, _ = raw_request(server, "GET", "/api/v1/datas3t")
    assert status == 401


@pytest.mark.parametrize(("method", "tail", "body", "content_type", "role"), ROUTES)
def test_every_route_checks_the_role(server: Server, principals: Principals, method, tail, body, content_type, role):
    name = unique()
    admin = server.client(principals.admin)
    admin.create_dataset(name)
    admin.upload_tar(name, TAR)
    path = f"/api/v1/datas3t/{name}{tail}"
    order = ["reader", "editor", "owner"]
    # reader and editor of team-*; the outsider holds nothing on it
    for principal, held in [("outsider", None), ("reader", "reader"), ("editor", "editor")]:
        status, _, answer = raw_request(server, method, path, getattr(principals, principal), body, content_type)
        allowed = held is not None and order.index(held) >= order.index(role)
        if allowed:
            assert status < 400 or answer["error"]["code"] not in ("permission_denied", "unauthenticated"), answer
        else:
            assert (status, answer["error"]["code"]) == (403, "permission_denied"), (principal, answer)
            assert f"takes {role}" in answer["error"]["message"]
    assert admin.get_dataset(name)["next_key"] == 1  # no write got through (the editor's upload overlaps)


def test_roles_end_to_end(server: Server, principals: Principals):
    admin, editor, reader = (server.client(t) for t in (principals.admin, principals.editor, principals.reader))
    name = unique()
    editor.create_dataset(name)  # editors create
    editor.upload_records(name, [{"a": 1}])
    assert reader.download_bytes(name, 0, 0) == b'{"a":1}\n'
    for call in (lambda: reader.upload_records(name, [{"a": 2}]), lambda: reader.aggregate(name, 0, 0),
                 lambda: reader.create_dataset(unique()), lambda: editor.delete_dataset(name)):
        with pytest.raises(ServerError) as denied:
            call()
        assert denied.value.status == 403
    assert reader.get_dataset(name)["next_key"] == 1
    owner = server.client(principals.owner)
    owner.create_dataset("team-own")
    owner.delete_dataset("team-own")  # an owner deletes (a role above editor: creates too)
    admin.delete_dataset(name)


def test_a_principal_sees_only_what_it_may_read(server: Server, principals: Principals):
    admin, outsider = server.client(principals.admin), server.client(principals.outsider)
    team = unique()
    admin.create_dataset(team)
    if "other" not in [d["id"] for d in admin.list_datasets()]:
        admin.create_dataset("other")
    listed = [d["id"] for d in outsider.list_datasets()]
    assert listed == ["other"]
    assert team in [d["id"] for d in server.client(principals.reader).list_datasets()]
    for call in (lambda: outsider.get_dataset(team), lambda: outsider.dataranges(team),
                 lambda: outsider.missing_ranges(team), lambda: outsider.get_dataset("team-does-not-exist")):
        with pytest.raises(ServerError) as denied:
            call()
        assert denied.value.status == 403  # not 404: no access says nothing of existence


@pytest.mark.parametrize("raw_id", ["..", "%2E%2E", "a%2Fb", "a%2F..%2Fb", "%00", "a%00b", "x" * 201, ".hidden",
                                    "a%5Cb", "a%E2%80%8Bb", "a%0Ab"])
def test_unsafe_ids_are_refused(server: Server, principals: Principals, raw_id):
    for method, tail in [("GET", ""), ("PUT", ""), ("GET", "/dataranges")]:
        status, _, answer = raw_request(server, method, f"/api/v1/datas3t/{raw_id}{tail}", principals.admin)
        assert status in (400, 404), answer
        if status == 404:  # '..' resolved by the HTTP layer to another path: still nothing touched
            assert answer["error"]["code"] == "not_found"
        else:
            assert answer["error"]["code"] == "invalid_name"


def test_the_client_sends_ids_as_given(server: Server, principals: Principals):
    client = server.client(principals.admin)
    for bad in ("..", "a/b", "a\x00b", "x" * 201):
        with pytest.raises(ServerError) as refused:
            client.get_dataset(bad)
        assert (refused.value.status, refused.value.code) == (400, "invalid_name")


def test_public_paths_need_no_token(server: Server):
    assert raw_request(server, "GET", "/healthz")[0] == 200
    assert raw_request(server, "GET", "/api/v1/openapi.json")[2]["openapi"] == "3.1.0"


def test_tokens_never_reach_the_log(server: Server, principals: Principals):
    client = server.client(principals.editor)
    name = unique()
    client.create_dataset(name)
    raw_request(server, "GET", "/api/v1/datas3t", "wrong-token-abcdef")
    text = server.log.read_text()
    for token in (principals.admin, principals.editor, principals.reader, "wrong-token-abcdef"):
        assert token not in text
    access = [e for e in server.events() if e["event"] == "access"]
    assert any(e["principal"] == "editor" and e["path"] == f"/api/v1/datas3t/{name}" and e["status"] == 201
               for e in access)
    assert all(set(e) == {"event", "time", "remote", "method", "path", "status", "bytes", "ms", "principal"}
               for e in access)


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "connector.cli", "serve", *args], check=False, capture_output=True,
                          text=True, timeout=60)


def test_serve_refuses_to_start_without_auth_choice_or_with_a_bad_tokens_file(tmp_path):
    out = _serve("--root", str(tmp_path / "r"), "--listen", "127.0.0.1:0")
    assert out.returncode == 2 and "give exactly one of --tokens FILE and --no-auth" in out.stderr
    bad = tmp_path / "tokens.json"
    bad.write_text(json.dumps({"principals": [{"name": "x", "token_sha256": "secret-in-clear"}]}))
    out = _serve("--root", str(tmp_path / "r"), "--listen", "127.0.0.1:0", "--tokens", str(bad))
    assert out.returncode == 1
    assert "tokens file" in out.stderr and "token_sha256" in out.stderr
    dup = tmp_path / "dup.json"
    digest = "0" * 64
    dup.write_text(json.dumps({"principals": [{"name": "x", "token_sha256": digest},
                                              {"name": "y", "token_sha256": digest}]}))
    out = _serve("--root", str(tmp_path / "r"), "--listen", "127.0.0.1:0", "--tokens", str(dup))
    assert out.returncode == 1 and "appears twice" in out.stderr


def test_new_token_prints_a_token_and_its_hash():
    import hashlib

    out = _serve("--new-token")
    made = json.loads(out.stdout)
    assert hashlib.sha256(made["token"].encode()).hexdigest() == made["token_sha256"]
    assert len(made["token"]) >= 40


def test_client_without_token_gets_401(server: Server):
    with pytest.raises(ServerError) as denied:
        Datas3tClient(server.url).list_datasets()
    assert denied.value.status == 401


# principals on a dataset of topic alpha, and the role each holds there (beta_owner: none, the boundary)
TOPIC_HOLDERS = [("beta_owner", None), ("alpha_member", "reader"), ("alpha_editor", "editor"), ("outsider", None)]


@pytest.mark.parametrize(("method", "tail", "body", "content_type", "role"), ROUTES)
def test_every_route_checks_the_topic(server: Server, principals: Principals, method, tail, body, content_type,
                                      role):
    name = unique("t-")
    admin = server.client(principals.admin)
    admin.create_dataset(name, metadata={"topic_id": "alpha"})
    admin.upload_tar(name, TAR)
    path = f"/api/v1/datas3t/{name}{tail}"
    if method == "PUT":  # a create names the topic it creates in
        body = b'{"metadata": {"topic_id": "alpha"}}'
    order = ["reader", "editor", "owner"]
    for principal, held in TOPIC_HOLDERS:
        status, _, answer = raw_request(server, method, path, getattr(principals, principal), body, content_type)
        if held is not None and order.index(held) >= order.index(role):
            assert status < 400 or answer["error"]["code"] not in ("permission_denied", "unauthenticated"), answer
        else:
            assert (status, answer["error"]["code"]) == (403, "permission_denied"), (principal, answer)
            assert "alpha" not in answer["error"]["message"] or held is not None  # nothing of the topic leaks
    assert admin.get_dataset(name)["next_key"] == 1  # no write got through (the editor's upload overlaps)


def test_topic_editors_create_only_in_their_topics(server: Server, principals: Principals):
    alpha_editor, member = server.client(principals.alpha_editor), server.client(principals.alpha_member)
    made = alpha_editor.create_dataset(unique("t-"), metadata={"topic_id": "alpha-2"})
    assert made["metadata"] == {"topic_id": "alpha-2"}
    alpha_editor.upload_records(made["id"], [{"a": 1}])
    for call in (lambda: alpha_editor.create_dataset(unique("t-")),  # no topic: outside its topics
                 lambda: alpha_editor.create_dataset(unique("t-"), metadata={"topic_id": "beta"}),
                 lambda: member.create_dataset(unique("t-"), metadata={"topic_id": "alpha"}),  # members read only
                 lambda: alpha_editor.delete_dataset(made["id"])):  # deleting takes an owner
        with pytest.raises(ServerError) as denied:
            call()
        assert denied.value.status == 403
    for bad in ("", "../x", 7):
        with pytest.raises(ServerError) as refused:
            alpha_editor.create_dataset(unique("t-"), metadata={"topic_id": bad})
        assert (refused.value.status, refused.value.code) == (400, "bad_topic")
    beta = server.client(principals.beta_owner)
    other = beta.create_dataset(unique("t-"), metadata={"topic_id": "beta"})
    beta.delete_dataset(other["id"])  # the topic's owner deletes


def test_a_topic_token_lists_only_its_topics(server: Server, principals: Principals):
    admin = server.client(principals.admin)
    in_alpha, in_beta, no_topic = unique("t-"), unique("t-"), unique("t-")
    admin.create_dataset(in_alpha, metadata={"topic_id": "alpha"})
    admin.create_dataset(in_beta, metadata={"topic_id": "beta"})
    admin.create_dataset(no_topic)
    alpha = {d["id"] for d in server.client(principals.alpha_member).list_datasets()}
    beta = {d["id"] for d in server.client(principals.beta_owner).list_datasets()}
    assert in_alpha in alpha and not alpha & {in_beta, no_topic}
    assert in_beta in beta and not beta & {in_alpha, no_topic}  # its roles {'*': owner} stop at the boundary
    assert {d["metadata"].get("topic_id") for d in server.client(principals.alpha_member).list_datasets()} == {"alpha"}


def test_new_tokens_can_be_passed_as_a_command_line_argument():
    # secrets.token_urlsafe starts 1 in 64 tokens with "-", which `des --token <token>` took for an
    # option ("expected one argument"); 2,000 draws meet one all but surely.
    tokens = [new_token()[0] for _ in range(2000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert len(set(tokens)) == len(tokens) and all(len(t) == 43 for t in tokens)  # 256 bits each
