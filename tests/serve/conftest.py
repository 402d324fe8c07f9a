"""A real ``des serve`` subprocess on a free loopback port, and principals to call it as.

The server is started with ``--listen 127.0.0.1:0`` (it picks the port and prints it in its
``listening`` log line, so no port can be taken in between); its stderr goes to a file the tests
read (access log, events).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.client import Datas3tClient
from connector.serve.auth import new_token

START_SECONDS = 30.0


@dataclass
class Server:
    """A running ``des serve``: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def client(self, token: str | None = None) -> Datas3tClient:
        return Datas3tClient(self.url, token)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_server(tmp_path: Path, root: str, args: Sequence[str], name: str = "server") -> Server:
    """Start ``des serve --root root <args>`` and wait until it listens."""
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "connector.cli", "serve", "--root", root,
                                    "--listen", "127.0.0.1:0", *args], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"listening"' in line:
                return Server(json.loads(line)["url"], process, log)
        if process.poll() is not None:
            raise AssertionError(f"des serve exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"des serve did not listen within {START_SECONDS} s:\n{log.read_text()}")


@dataclass(frozen=True)
class Principals:
    """Tokens of the test principals (see :func:`tokens_file`)."""

    admin: str
    editor: str  # editor of team-*
    reader: str  # reader of team-*
    owner: str  # owner of team-own, reader of other
    outsider: str  # reader of other only
    alpha_member: str  # member of topic alpha
    alpha_editor: str  # editor of topic alpha
    beta_owner: str  # owner of topic beta, and of every dataset by name: confined to beta all the same
    path: Path


@pytest.fixture(scope="module")
def principals(tmp_path_factory) -> Principals:
    tokens = {name: new_token() for name in ("admin", "editor", "reader", "owner", "outsider", "alpha_member",
                                             "alpha_editor", "beta_owner")}
    roles: dict[str, dict] = {
        "admin": {"admin": True}, "editor": {"roles": {"team-*": "editor"}},
        "reader": {"roles": {"team-*": "reader"}},
        "owner": {"roles": {"team-own": "owner", "other": "reader"}}, "outsider": {"roles": {"other": "reader"}},
        "alpha_member": {"topics": {"alpha": "member"}}, "alpha_editor": {"topics": {"alpha*": "editor"}},
        "beta_owner": {"topics": {"beta": "owner"}, "roles": {"*": "owner"}}}
    entries = [{"name": name, "token_sha256": digest, **roles[name]} for name, (_, digest) in tokens.items()]
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    path.write_text(json.dumps({"principals": entries}))
    return Principals(**{name: token for name, (token, _) in tokens.items()}, path=path)


@pytest.fixture(scope="module")
def server(tmp_path_factory, principals: Principals) -> Iterator[Server]:
    """One server over a local root for a module's tests (each test uses its own datasets)."""
    tmp = tmp_path_factory.mktemp("serve")
    running = start_server(tmp, str(tmp / "root"), ["--tokens", str(principals.path), "--max-upload-bytes",
                                                    str(4 << 20)])
    yield running
    assert running.stop() == 0, running.log.read_text()


@pytest.fixture
def admin(server: Server, principals: Principals) -> Datas3tClient:
    return server.client(principals.admin)


def unique(prefix: str = "team-") -> str:
    """A dataset name no other test of the module uses."""
    return f"{prefix}{os.getpid()}-{time.monotonic_ns()}"


def raw_request(server: Server, method: str, path: str, token: str | None = None, body: bytes | None = None,
         content_type: str | None = None) -> tuple[int, dict[str, str], dict]:
    """One request with the path sent exactly as given."""
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.netloc, timeout=30)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type:
        headers["Content-Type"] = content_type
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, dict(response.getheaders()), json.loads(data) if is_json else {"bytes": len(data)}
    finally:
        connection.close()
