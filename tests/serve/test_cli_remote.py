"""``des --server URL --token TOKEN datasets ...`` as real subprocesses against a real ``des serve``,
compared with the same commands run on the server's store directly (``--root``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.client import datapoints_tar

from .conftest import Principals, Server, unique


def des(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], capture_output=True, timeout=60,
                          check=False, env={**os.environ, **(env or {})})


def remote(server: Server, token: str, *args: str) -> subprocess.CompletedProcess:
    return des("--server", server.url, "--token", token, "datasets", *args)


def local(server: Server, *args: str) -> subprocess.CompletedProcess:
    root = Path(server.log).parent / "root"  # start_server's root in the module's server fixture
    return des("datasets", "--root", str(root), *args)


def ok(out: subprocess.CompletedProcess) -> bytes:
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@pytest.fixture
def filled(server: Server, principals: Principals) -> str:
    """A dataset with two record dataranges and one of files, made through the server."""
    name = unique()
    ok(remote(server, principals.editor, "create", name, "--description", "d", "--tag", "a", "--tag", "b",
              "--metadata", '{"lab": "x"}'))
    client = server.client(principals.editor)
    client.upload_records(name, [{"a": 1}, {"b": "é", "n": 12345678901234567890}])
    client.upload_records(name, [{"c": [1.5, None]}])
    client.upload_tar(name, datapoints_tar({3: b"\x00bin\xff", 4: b""}))
    return name


def test_commands_print_what_the_local_commands_print(server: Server, principals: Principals, filled: str):
    token = principals.reader
    for args in (["stats", filled], ["missing", filled], ["read", filled, "1"], ["read", filled, "3"],
                 ["read", filled, "4"], ["cat", filled, "0", "2"], ["cat", filled, "1", "2"]):
        assert ok(remote(server, token, "--json", *args)) == ok(local(server, "--json", *args)), args
    for args in (["stats", filled], ["missing", filled]):  # the human form too
        assert ok(remote(server, token, *args)) == ok(local(server, *args)), args
    assert ok(remote(server, token, "read", filled, "3")) == b"\x00bin\xff"
    for run in (lambda *a: remote(server, token, *a), lambda *a: local(server, *a)):  # files are no records
        refused = run("cat", filled, "1")
        assert refused.returncode == 1 and b"files" in refused.stderr
    got, want = (json.loads(ok(run("--json", "get", filled))) for run in (lambda *a: remote(server, token, *a),
                                                                            lambda *a: local(server, *a)))
    assert got == {k: v for k, v in want.items() if k != "epoch"}  # the key-space epoch is not served
    got, want = (json.loads(ok(run("--json", "ranges", filled))) for run in (lambda *a: remote(server, token, *a),
                                                                               lambda *a: local(server, *a)))
    assert [{k: v for k, v in r.items() if k != "url"} for r in got] == \
        [{k: v for k, v in r.items() if k not in ("url", "data_length")} for r in want]
    assert all(w["url"].endswith("/" + g["url"]) for g, w in zip(got, want))
    # the table of `list`: the admin sees every dataset, as the store does
    assert ok(remote(server, principals.admin, "list", "--limit", "100000")) == \
        ok(local(server, "list", "--limit", "100000"))
    assert ok(remote(server, principals.admin, "--json", "list", "--tag", "b")) == \
        ok(local(server, "--json", "list", "--tag", "b"))


def test_cat_without_a_range_and_aggregate_and_delete(server: Server, principals: Principals):
    name = unique()
    ok(remote(server, principals.editor, "create", name))
    client = server.client(principals.editor)
    for i in range(3):
        client.upload_records(name, [{"i": i}, {"i": i, "j": True}])
    assert ok(remote(server, principals.reader, "cat", name)) == ok(local(server, "cat", name))
    assert ok(remote(server, principals.reader, "cat", name, "3")) == ok(local(server, "cat", name, "3"))
    merged = json.loads(ok(remote(server, principals.editor, "--json", "aggregate", name, "0", "5")))
    assert (merged["first"], merged["last"], merged["count"]) == (0, 5, 6)
    assert len(json.loads(ok(local(server, "--json", "ranges", name)))) == 1
    assert ok(remote(server, principals.reader, "cat", name)) == ok(local(server, "cat", name))
    denied = remote(server, principals.editor, "delete", name)
    assert denied.returncode == 1 and b"403 permission_denied" in denied.stderr and b"takes owner" in denied.stderr
    assert json.loads(ok(remote(server, principals.admin, "--json", "delete", name))) == {"deleted": name}
    assert local(server, "get", name).returncode == 1


def test_errors_are_clear_and_nothing_is_done(server: Server, principals: Principals, filled: str):
    token = principals.admin
    for args, named in [(["versions", "list", filled], b"des datasets versions list is not served"),
                        (["freeze", filled], b"des datasets freeze is not served"),
                        (["cat", filled, "0", "1", "--version", "1.0.0"], b"des datasets cat --version is not served"),
                        (["read", filled, "0", "--meta"], b"des datasets read --meta is not served"),
                        (["aggregate", filled, "--compact"], b"des datasets aggregate --compact is not served"),
                        (["--root", "/tmp/x", "list"], b"datasets --root names a local store")]:
        out = remote(server, token, *args)
        assert out.returncode == 1 and named in out.stderr, (args, out.stderr)
    assert json.loads(ok(local(server, "--json", "get", filled)))["frozen"] is False
    out = des("--server", server.url, "--token", token, "serve", "--new-token")
    assert out.returncode == 2 and b"--server and --token serve the datasets commands, not serve" in out.stderr
    out = des("--token", token, "datasets", "list")
    assert out.returncode == 2 and b"--token needs --server" in out.stderr
    out = des("--server", server.url, "datasets", "list")  # no token
    assert out.returncode == 1 and b"401 unauthenticated" in out.stderr
    out = des("--server", "ftp://x", "--token", token, "datasets", "list")
    assert out.returncode == 1 and b"--server: server url 'ftp://x'" in out.stderr
    missing = remote(server, token, "read", filled, "99")
    assert missing.returncode == 1 and b"404" in missing.stderr and missing.stdout == b""


def test_the_token_from_the_environment(server: Server, principals: Principals, filled: str):
    out = des("--server", server.url, "datasets", "--json", "get", filled, env={"DES_TOKEN": principals.reader})
    assert json.loads(ok(out))["name"] == filled
    outsider = des("--server", server.url, "datasets", "get", filled, env={"DES_TOKEN": principals.outsider})
    assert outsider.returncode == 1 and b"403 permission_denied" in outsider.stderr
