"""CPU seconds of the coordinator (the ``des sync`` process) of a ``--dask`` sync, and wall time.

    python bench/sync_dask_cpu.py [--rows 200000] [--files 40] [--workers 2] [--repeat 3]

Writes ``--files`` local CSV files of ``--rows`` records in all, starts a ``distributed.LocalCluster``
of ``--workers`` worker processes in a process of its own (so its scheduler's CPU is not counted),
and runs ``Sync(..., dask=address)`` in this process into a fresh local store, ``--repeat`` times.
Prints this process's CPU seconds (every thread: the Dask client's too) and the wall time of each
run. Not run by CI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.destination import DestinationConfig
from connector.sync import Sync

CLUSTER = """
import sys, time
from distributed import LocalCluster
with LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True, dashboard_address=None,
                  silence_logs=40) as c:
    print(c.scheduler_address, flush=True)
    sys.stdin.read()
"""


def write_files(root: Path, rows: int, files: int) -> None:
    """``files`` CSV files of one stream ``users`` under ``root``, ``rows`` records in all."""
    folder = root / "users"
    folder.mkdir(parents=True)
    per = rows // files
    for n in range(files):
        lines = "".join(f"{n * per + i},user {n}-{i},{(n * 7 + i) % 11 / 4},{i % 3 == 0},2024-01-{i % 28 + 1:02d}\n"
                        for i in range(per))
        (folder / f"part-{n:04d}.csv").write_text("id,name,score,active,day\n" + lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_files(root / "src", args.rows, args.files)
        cluster = subprocess.Popen([sys.executable, "-c", CLUSTER, str(args.workers)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert cluster.stdout is not None
            address = cluster.stdout.readline().strip()
            from distributed import Client

            with Client(address) as client:
                for run in range(args.repeat):
                    config = DestinationConfig.from_dict({"root_url": str(root / f"store-{run}")})
                    source = {"root_url": str(root / "src"), "file_format": "csv", "stream_depth": 1}
                    cpu, wall = time.process_time(), time.perf_counter()
                    (summary,) = Sync(source, config, dask=client).run(["users"])
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    print(f"run {run}: {summary.records} records, {summary.files} files: "
                          f"coordinator CPU {cpu:.2f} s, wall {wall:.2f} s", flush=True)
        finally:
            cluster.communicate("")
    return 0


if __name__ == "__main__":
    sys.exit(main())
