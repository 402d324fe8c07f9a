"""Summarise a ``py-spy record --subprocesses -f raw`` profile: samples per process, and each
process's top lines by own samples (the innermost Python frame, with its line number, so a
``hash.update`` and the ``file.write`` beside it count apart).

    python bench/pyspy_top.py PROFILE.txt [--rate 100] [--top 12]

py-spy samples only threads it sees running (not waiting) unless ``--idle`` was given; a thread
inside a C call that released the GIL counts as running, so samples / rate is thread time, above
the process's CPU seconds when several threads run at once (``bench/sync_dask_cpu.py`` prints
those); the shares within a process are what to read. Processes are named by their command line:
``spawn_main`` = a Dask worker (or a LocalCluster's), ``s3server.py`` = the bench's S3 server,
the cluster script of ``bench/sync_dask_cpu.py`` = the scheduler, anything else = the coordinator.
Command lines must be one line each (``bench/sync_dask_cpu.py`` runs its cluster from a file).
Not run by CI.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict

PROCESS = re.compile(r'process (\d+):"([^"]*)";?')


def role(cmdline: str) -> str:
    """What a sampled process is, from its command line."""
    if "spawn_main" in cmdline:
        return "worker"
    if "s3server.py" in cmdline:
        return "S3 server"
    if "dask_cluster.py" in cmdline:
        return "scheduler"
    return "coordinator"


#: Innermost frames of a thread that waits (py-spy's idle detection misses some of them here):
#: counted apart, not as CPU.
WAITS = ("select (selectors.py", "Condition.wait (threading.py", "_worker (concurrent/futures/thread.py",
         "_worker (distributed/threadpoolexecutor.py", "Event.wait", "Queue.get", "sleep", "accept (socket.py",
         "Connection._recv (multiprocessing", "_poll (multiprocessing", "Thread.join", "_wait_for_tstate_lock",
         "serve_forever", "read (selectors.py", "SocketIO.readinto (socket.py")


def parse(text: str) -> tuple[dict[tuple[str, str], Counter], Counter]:
    """({(role, pid): Counter of innermost frames}, Counter of waiting samples by role); a stack is
    ``process ...;[process ...;][thread ...;]frame;frame;... count``, the last process its own."""
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    waits: Counter = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        heads = list(PROCESS.finditer(stack))  # a command line may hold ';': not split on
        if not heads:
            continue
        who = (role(heads[-1].group(2)), heads[-1].group(1))
        rest = [f for f in stack[heads[-1].end():].split(";") if f and not f.startswith("thread (")]
        leaf = rest[-1] if rest else "(no Python frame)"
        if any(w in leaf for w in WAITS):
            waits[who[0]] += int(count)
        else:
            out[who][leaf] += int(count)
    return out, waits


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile")
    p.add_argument("--rate", type=float, default=100.0, help="py-spy's sampling rate (its --rate, default 100)")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()
    with open(args.profile, encoding="utf-8", errors="replace") as f:
        by_process, waits = parse(f.read())
    total = sum(sum(c.values()) for c in by_process.values())
    print(f"{total} samples = {total / args.rate:.1f} s of thread time in all; set apart as waiting: "
          + ", ".join(f"{name} {n / args.rate:.1f} s" for name, n in waits.most_common()))
    for (name, pid), frames in sorted(by_process.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(frames.values())
        print(f"\n{name} (pid {pid}): {n} samples = {n / args.rate:.1f} s, {100 * n / total:.0f}% of all")
        for frame, count in frames.most_common(args.top):
            print(f"  {100 * count / n:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
