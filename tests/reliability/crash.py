"""Killing real subprocesses at seeded points (SIGKILL: no cleanup code runs, like a power cut)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.helpers import REPO


def seeded_points(seed: int, n: int, lo: int, hi: int) -> list[int]:
    """``n`` distinct points in ``[lo, hi]`` from ``seed``, sorted (the same list on every run)."""
    rng = random.Random(seed)
    return sorted(rng.sample(range(lo, hi + 1), min(n, hi - lo + 1)))


@dataclass
class Killed:
    """How a run ended: killed (at which point) or finished by itself, and what it printed."""

    killed: bool
    returncode: int
    stdout: bytes
    stderr: bytes


def kill_when(args: Sequence[str], trigger: Callable[[bytes], bool], *, stdin: bytes | None = None,
              stdin_chunk: int = 1 << 16, pace: float = 0.0, timeout: float = 60, cwd: Path = REPO,
              env: dict | None = None, poll: Callable[[], bool] | None = None) -> Killed:
    """Run ``args``; SIGKILL it as soon as ``trigger(stdout so far)`` or ``poll()`` is true.

    ``stdin`` is fed in chunks (``pace`` seconds apart) from a thread, so a kill can land while input
    is still arriving. Returns whether the kill happened before the process ended by itself.
    """
    proc = subprocess.Popen(list(args), cwd=cwd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    out = bytearray()
    err = bytearray()

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for i in range(0, len(stdin or b""), stdin_chunk):
                proc.stdin.write(stdin[i : i + stdin_chunk])  # type: ignore[index]
                proc.stdin.flush()
                if pace:
                    time.sleep(pace)
            proc.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def drain_err() -> None:
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            err.extend(chunk)

    threads = [threading.Thread(target=drain_err, daemon=True)]
    if stdin is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for t in threads:
        t.start()
    killed = False
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while True:
        chunk = (proc.stdout.read1(65536) if proc.poll() is None else proc.stdout.read()) or b""
        if chunk:
            out.extend(chunk)
        if trigger(bytes(out)) or (poll is not None and poll()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed = True
            break
        if proc.poll() is not None and not chunk:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{args} did not reach its kill point within {timeout}s")
        if not chunk:
            time.sleep(0.002)
    proc.wait(timeout=30)
    rest = proc.stdout.read() or b""
    out.extend(rest)
    for t in threads:
        t.join(timeout=5)
    return Killed(killed, proc.returncode, bytes(out), bytes(err))


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
