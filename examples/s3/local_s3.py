"""A local S3 test server for the README's S3 examples: moto's server on 127.0.0.1:9000.

    python3 examples/s3/local_s3.py start    # start it, create and fill the example buckets
    python3 examples/s3/local_s3.py status   # is it running, and where
    python3 examples/s3/local_s3.py stop     # stop it (its data lives in memory and goes with it)

``start`` creates the buckets the examples use:

- ``analytics``: ``testdata/`` under ``data/`` (``examples/s3/source.json`` reads it, and
  ``examples/s3/destination.json`` writes its store under ``des-store/``);
- ``bucket``: ``testdata.des``, the bundled testdata packed into one container (the ``des://``
  examples read it).

It needs moto's server (``pip install -e '.[test]'`` installs it). The server's process id is kept
in ``out/local-s3-<port>.pid``; the server runs until ``stop``, and any credentials are accepted.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST, DEFAULT_PORT = "127.0.0.1", 9000
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out"
CREDENTIALS = {"key": "testing", "secret": "testing"}


def _pid_file(port: int) -> Path:
    return OUT / f"local-s3-{port}.pid"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _running_pid(port: int) -> int | None:
    try:
        pid = int(_pid_file(port).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(port: int) -> int:
    endpoint = f"http://{HOST}:{port}"
    if _running_pid(port) is not None:
        print(f"local S3 already running at {endpoint} (pid {_running_pid(port)})")
        return 0
    if _listening(port):
        print(f"error: something else listens on {HOST}:{port}; stop it first", file=sys.stderr)
        return 1
    try:
        import moto.server  # noqa: F401
    except ImportError:
        print("error: moto's server is not installed: python3 -m pip install -e '.[test]'", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    log_path = OUT / f"local-s3-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            print(f"error: moto's server did not start (see {log_path})", file=sys.stderr)
            return 1
        time.sleep(0.1)
    _pid_file(port).write_text(str(proc.pid))
    _fill(endpoint)
    stop_hint = "python3 examples/s3/local_s3.py stop" + ("" if port == DEFAULT_PORT else f" --port {port}")
    print(f"local S3 running at {endpoint} (pid {proc.pid}): buckets 'analytics' (testdata under data/) and "
          f"'bucket' (testdata.des). Stop it with: {stop_hint}")
    return 0


def _fill(endpoint: str) -> None:
    import s3fs

    from connector.des import DesWriter

    s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True, **CREDENTIALS)
    for bucket in ("analytics", "bucket"):
        s3.mkdir(bucket)
    testdata = REPO / "testdata"
    files = sorted(p for p in testdata.rglob("*") if p.is_file() and p.suffix != ".py")
    for path in files:
        s3.put_file(str(path), f"analytics/data/{path.relative_to(testdata).as_posix()}")
    with DesWriter("s3://bucket/testdata.des", fs=s3, overwrite=True) as w:
        for path in files:
            with open(path, "rb") as f:
                w.add_stream(path.relative_to(testdata).as_posix(), f)


def stop(port: int) -> int:
    pid = _running_pid(port)
    _pid_file(port).unlink(missing_ok=True)
    if pid is None:
        print("local S3 is not running")
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"local S3 stopped (pid {pid})")
    return 0


def status(port: int) -> int:
    pid = _running_pid(port)
    print(f"local S3 running at http://{HOST}:{port} (pid {pid})" if pid else "local S3 is not running")
    return 0 if pid else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    return {"start": start, "stop": stop, "status": status}[args.command](args.port)


if __name__ == "__main__":
    sys.exit(main())
