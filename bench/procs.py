"""Run an Airbyte-protocol connector as a child process: wall time, peak RSS, messages counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


TIME = "/usr/bin/time"
#: stdout of a run lands here: memory-backed where the machine has it, so writing it costs about
#: what writing to /dev/null does.
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_RECORD_TOKENS = (b'"type":"RECORD"', b'"type": "RECORD"')
_OTHER_TOKENS = tuple(t for kind in (b"STATE", b"TRACE", b"CATALOG", b"CONNECTION_STATUS")
                      for t in (b'"type":"' + kind + b'"', b'"type": "' + kind + b'"'))


@dataclass
class Run:
    argv: list[str]
    rc: int
    seconds: float
    max_rss_mb: float
    records: int
    #: user + system CPU seconds of the connector (GNU time's %U + %S; NaN without GNU time). Less
    #: sensitive to other load on a shared machine than wall time.
    cpu_seconds: float = float("nan")
    states: list[dict] = field(default_factory=list)
    catalog: dict | None = None
    traces: list[dict] = field(default_factory=list)
    stderr_tail: str = ""

    def ok(self) -> bool:
        return self.rc == 0 and not any(t.get("trace", {}).get("type") == "ERROR" for t in self.traces)

    def error(self) -> str:
        for t in self.traces:
            err = t.get("trace", {}).get("error")
            if err:
                return str(err.get("message"))[:300]
        return f"exit {self.rc}: {self.stderr_tail[-300:]}"


def run_connector(argv: list[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                  stdin_path: str | Path | None = None, timeout: float = 3600) -> Run:
    """Run ``argv``; count RECORD lines on stdout, keep STATE/CATALOG/TRACE messages.

    stdout goes to an (unlinked) temporary file in memory, read after the process ends: the
    issues define source speed as ``read > /dev/null``, and such a file is the closest to that
    which can still be checked. (Draining a pipe in this process cost des-source ~20% of its wall
    time; a file on disk ~15%.)

    Peak RSS comes from GNU time's ``%M`` (or ``wait4``), so it is the connector's own high-water
    mark, not the benchmark's.
    """
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    err = tempfile.TemporaryFile()
    out = tempfile.TemporaryFile(dir=_SCRATCH)
    rss_file = None
    if os.path.exists(TIME):
        # ru_maxrss from our own wait4 would include this (large) benchmark process: Linux carries
        # the pre-exec memory of a (v)forked child into its maxrss. GNU time forks from a tiny
        # process, so its %M is the connector's own high-water mark.
        fd, rss_file = tempfile.mkstemp(prefix="rss-", dir=tempfile.gettempdir())
        os.close(fd)
        argv = [TIME, "-f", "%M %U %S", "-o", rss_file, *argv]
    t0 = time.perf_counter()
    # Own process group, so the timeout kills the connector and not only GNU time above it.
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=out, stderr=err, start_new_session=True)
    watchdog = threading.Timer(timeout, _kill_group, (proc.pid,))  # a hung connector fails its case
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watchdog.cancel()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        if stdin_path:
            stdin.close()  # type: ignore[union-attr]
    out.seek(0)
    records, states, catalog, traces = _tally(out)
    out.close()
    err.seek(0)
    tail = err.read()[-4000:].decode("utf-8", "replace")
    err.close()
    if proc.returncode < 0 and seconds >= timeout:  # the watchdog's kill (cancel() sets finished too)
        tail += f"\nkilled: still running after the {timeout:g} s timeout"
    max_rss_kb = cpu = float("nan")
    if rss_file:
        try:
            # The last line (a failing command's status line comes first): "%M %U %S".
            rss, user, system = Path(rss_file).read_text().split()[-3:]
            max_rss_kb, cpu = float(rss), float(user) + float(system)
        except (OSError, ValueError):
            pass
        os.unlink(rss_file)
    else:
        max_rss_kb = usage.ru_maxrss
        cpu = usage.ru_utime + usage.ru_stime
    return Run(argv=argv, rc=proc.returncode, seconds=seconds, max_rss_mb=max_rss_kb / 1024.0,
               records=records, cpu_seconds=cpu, states=states, catalog=catalog, traces=traces, stderr_tail=tail)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # ended as the timer fired
        pass


def _tally(stream) -> tuple[int, list[dict], dict | None, list[dict]]:
    """RECORD lines counted in 1 MiB blocks at C speed (``bytes.count``); only the few other
    messages (STATE, CATALOG, TRACE, CONNECTION_STATUS) are parsed."""
    records = 0
    states: list[dict] = []
    catalog = None
    traces: list[dict] = []
    leftover = b""
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            block, leftover = leftover + b"\n", b""
        else:
            data = leftover + chunk
            cut = data.rfind(b"\n") + 1
            block, leftover = data[:cut], data[cut:]
        for token in _RECORD_TOKENS:
            records += block.count(token)
        for token in _OTHER_TOKENS:
            pos = block.find(token)
            while pos >= 0:
                start = block.rfind(b"\n", 0, pos) + 1
                end = block.find(b"\n", pos)
                try:
                    msg: dict[str, Any] = json.loads(block[start:end])
                except ValueError:
                    msg = {}
                kind = msg.get("type")
                if kind == "STATE":
                    states.append(msg)
                elif kind == "CATALOG":
                    catalog = msg["catalog"]
                elif kind == "TRACE":
                    traces.append(msg)
                elif kind == "CONNECTION_STATUS":
                    traces.append({"trace": {}, "connectionStatus": msg["connectionStatus"]})
                pos = block.find(token, end)
        if not chunk:
            return records, states, catalog, traces


def last_states(run: Run) -> list[dict]:
    """The last STATE per stream, as an Airbyte ``--state`` file holds them (list of STREAM states)."""
    by_stream: dict[str, dict] = {}
    legacy = None
    for msg in run.states:
        state = msg["state"]
        if state.get("type") == "STREAM":
            name = state["stream"]["stream_descriptor"]["name"]
            by_stream[name] = {"type": "STREAM", "stream": state["stream"]}
        elif "data" in state:
            legacy = state["data"]
    if by_stream:
        return list(by_stream.values())
    return legacy  # type: ignore[return-value]
