"""A real PostgreSQL server for the tests: initdb into a temporary folder, postgres on a free port.

The server binaries come from the system (``/usr/lib/postgresql/<N>/bin``, or ``PG_BIN``). Run as
root, initdb and postgres refuse to start, so they then run as the ``postgres`` user in a folder
it owns (started directly with that uid, not through runuser or su, so that the signal that
stops it reaches it). Every test gets a database of its own (:meth:`PostgresServer.new_database`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

STARTUP_SECONDS = 60.0


def find_bin() -> str | None:
    """The folder holding initdb and postgres, or None if this machine has no server."""
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(on_path))
    for folder in candidates:
        if os.access(os.path.join(folder, "initdb"), os.X_OK) and os.access(os.path.join(folder, "postgres"), os.X_OK):
            return folder
    return None


def _major(folder: str) -> int:
    version = folder.rstrip("/").split("/")[-2]
    return int(version) if version.isdigit() else 0


class PostgresServer:
    """One running server; :meth:`stop` shuts it down and removes its files."""

    def __init__(self, bin_dir: str, port: int) -> None:
        self.bin_dir, self.port = bin_dir, port
        self.user = "postgres"
        self._as_user = os.geteuid() == 0  # root: run the server as the postgres user
        self.dir = tempfile.mkdtemp(prefix="des-pg-")
        if self._as_user:
            os.chmod(self.dir, 0o700)
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self._proc: subprocess.Popen[bytes] | None = None

    def _as(self) -> dict:
        """Popen arguments that run a program as the server's user."""
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if self._as_user else {}

    def start(self) -> None:
        subprocess.run([os.path.join(self.bin_dir, "initdb"), "-D", self.data, "-U", self.user, "--auth=trust",
                        "--encoding=UTF8", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir, **self._as())
        # Durability settings off: a test server loses nothing that matters in a crash.
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                [os.path.join(self.bin_dir, "postgres"), "-D", self.data, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir, **self._as())
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}: {self._log_tail()}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready after {STARTUP_SECONDS:g} s: {self._log_tail()}") from None
                time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            with open(self.log, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, stop
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running_server(port: int) -> Iterator[PostgresServer]:
    """A started server, stopped and removed afterwards; RuntimeError if there are no binaries."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb, postgres) found")
    server = PostgresServer(bin_dir, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
