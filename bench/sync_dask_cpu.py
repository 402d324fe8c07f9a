"""CPU seconds of every process of a ``--dask`` sync (coordinator, scheduler, each worker, and the
S3 server with ``--s3``), and wall time: where a sync's CPU goes on this machine.

    python bench/sync_dask_cpu.py [--rows 200000] [--files 40] [--workers 2] [--repeat 3] [--s3]

Writes ``--files`` CSV files of ``--rows`` records in all, starts a ``distributed.LocalCluster``
of ``--workers`` worker processes in a process of its own (so its scheduler's CPU is not counted
as the coordinator's), and runs ``Sync(..., dask=address)`` in this process into a fresh store,
``--repeat`` times. ``--workers 0`` runs the single-process sync instead (no cluster). Without
``--s3`` the files and the store are local; with it both are on moto's S3 server
(``bench/s3server.py``, in a process of its own) and the files are the bench's ``datagen`` rows
(as the ``dask`` case of ``bench/run.py``), the catalog a local SQLite file.

Prints, per run, the wall time and the CPU seconds (user + system) of each process: this one
(the coordinator: every thread, the Dask client's too), the cluster's (its scheduler and
nannies), each worker, the S3 server; and their sum over the wall time (cores busy on average).
``--pyspy PY_SPY`` profiles the first run's sync (not the set-up) with that py-spy binary, this
process and its children (cluster, workers, S3 server) at 100 samples/s, into ``--profile-out``
(py-spy's raw format; ``bench/pyspy_top.py`` summarises it). Not run by CI.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import psutil  # noqa: E402 - a dependency of distributed

from connector.destination import DestinationConfig  # noqa: E402
from connector.sync import Sync  # noqa: E402

CLUSTER = """
import sys
from distributed import LocalCluster

if __name__ == "__main__":  # the workers are spawned: they import this file
    with LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as c:
        print(c.scheduler_address, flush=True)
        sys.stdin.read()
"""
BUCKET = "cpu"
STREAM = "users"


def write_files(root: Path, rows: int, files: int) -> None:
    """``files`` CSV files of one stream ``users`` under ``root``, ``rows`` records in all."""
    folder = root / STREAM
    folder.mkdir(parents=True)
    per = rows // files
    for n in range(files):
        lines = "".join(f"{n * per + i},user {n}-{i},{(n * 7 + i) % 11 / 4},{i % 3 == 0},2024-01-{i % 28 + 1:02d}\n"
                        for i in range(per))
        (folder / f"part-{n:04d}.csv").write_text("id,name,score,active,day\n" + lines)


def put_datagen_files(server: Any, rows: int, files: int, seed: int = 42) -> None:
    """``rows`` rows of the bench's ``datagen`` as ``files`` CSV objects of stream ``users``."""
    import datagen

    client = server.boto3()
    client.create_bucket(Bucket=BUCKET)
    per = -(-rows // files)
    for n in range(files):
        count = min(per, rows - n * per)
        if count > 0:
            body = datagen.csv_bytes(datagen.rows_table(count, seed + n, start_id=n * per))
            client.put_object(Bucket=BUCKET, Key=f"src/{STREAM}/part-{n:04d}.csv", Body=body)


def cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads, not its children)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def worker_cpu(client: Any) -> dict[str, float]:
    """CPU seconds of each worker process so far, by worker address."""
    return client.run(time.process_time) if client is not None else {}


def start_pyspy(binary: str, out: str) -> subprocess.Popen:
    """py-spy recording this process and its children until it gets SIGINT."""
    spy = subprocess.Popen([binary, "record", "--pid", str(os.getpid()), "--subprocesses", "--rate", "100",
                            "--format", "raw", "--output", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # attached to every process before the sync starts
    return spy


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--workers", type=int, default=2, help="worker processes (0: the single-process sync)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--s3", action="store_true", help="source and store on moto's S3 server, files from datagen")
    p.add_argument("--pyspy", help="a py-spy binary: profile the first run's sync with it")
    p.add_argument("--profile-out", default="sync-profile.txt", help="where --pyspy writes (default sync-profile.txt)")
    args = p.parse_args()
    server = cluster = client = None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            if args.s3:
                from s3server import S3Server

                server = S3Server().start()
                put_datagen_files(server, args.rows, args.files)
                access = {"endpoint": server.endpoint_url, "region": server.region,
                          "access_key_id": server.key, "secret_access_key": server.secret}
                source: dict[str, Any] = {"bucket_name": BUCKET, "path_prefix": "src", "file_format": "csv", **access}
            else:
                write_files(root / "src", args.rows, args.files)
                source = {"root_url": str(root / "src"), "file_format": "csv", "stream_depth": 1}
            if args.workers:
                script = root / "dask_cluster.py"  # a file, not -c: a profiler's command lines stay one line
                script.write_text(CLUSTER)
                cluster = subprocess.Popen([sys.executable, str(script), str(args.workers)], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True)
                assert cluster.stdout is not None
                address = cluster.stdout.readline().strip()
                from distributed import Client

                client = Client(address)
            for run in range(args.repeat):
                if args.s3:
                    config = DestinationConfig.from_dict({"root_url": f"s3://{BUCKET}/store-{run}", **access,
                                                          "catalog_path": str(root / f"catalog-{run}.sqlite")})
                else:
                    config = DestinationConfig.from_dict({"root_url": str(root / f"store-{run}")})
                procs = {"cluster (scheduler)": cluster.pid if cluster else None,
                         "S3 server": server.proc.pid if server else None}
                before = {name: cpu(pid) for name, pid in procs.items() if pid}
                workers0 = worker_cpu(client)
                spy = start_pyspy(args.pyspy, args.profile_out) if args.pyspy and run == 0 else None
                own, wall = time.process_time(), time.perf_counter()
                (summary,) = Sync(source, config, dask=client).run([STREAM])
                own, wall = time.process_time() - own, time.perf_counter() - wall
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its profile when interrupted
                    spy.wait(60)
                spent = {"coordinator": own, **{name: cpu(procs[name]) - t for name, t in before.items()}}
                workers1 = worker_cpu(client)
                for n, addr in enumerate(sorted(workers1)):
                    spent[f"worker {n + 1}"] = workers1[addr] - workers0.get(addr, 0.0)
                total = sum(spent.values())
                print(f"run {run}: {summary.records} records, {summary.files} files, "
                      f"{'single process' if not args.workers else f'{args.workers} workers'}: wall {wall:.2f} s; "
                      f"CPU s {', '.join(f'{k} {v:.2f}' for k, v in spent.items())}; "
                      f"total {total:.2f} = {total / wall:.2f} cores busy", flush=True)
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.communicate("")
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
