"""16 concurrent clients uploading and reading for a bounded time: every datapoint exactly once,
no 5xx, latency percentiles printed (``pytest -s``)."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time

from connector.client import ServerError

from .conftest import start_server

CLIENTS, DATASETS, SECONDS = 16, 4, 6.0


def test_sixteen_clients_upload_and_read_every_datapoint_once(tmp_path):
    running = start_server(tmp_path, str(tmp_path / "root"), ["--no-auth"])
    try:
        setup = running.client()
        names = [f"load-{i}" for i in range(DATASETS)]
        for name in names:
            setup.create_dataset(name)
        latencies: dict[str, list[float]] = {"upload": [], "read": []}
        sent: list[tuple[str, int, int]] = []  # (dataset, client, seq) of every record acknowledged
        failures: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + SECONDS

        def work(client_id: int) -> None:
            client, rng, seq = running.client(), random.Random(client_id), 0
            while time.monotonic() < deadline:
                name = names[rng.randrange(DATASETS)]
                try:
                    if rng.random() < 0.5:
                        batch = [{"client": client_id, "seq": seq + i} for i in range(rng.randint(1, 20))]
                        began = time.perf_counter()
                        client.upload_records(name, batch)
                        took = time.perf_counter() - began
                        with lock:
                            latencies["upload"].append(took)
                            sent.extend((name, client_id, r["seq"]) for r in batch)
                        seq += len(batch)
                    else:
                        next_key = client.get_dataset(name)["next_key"]
                        if next_key:
                            start = rng.randrange(next_key)
                            began = time.perf_counter()
                            lines = client.download_bytes(name, start, min(next_key - 1, start + 50)).splitlines()
                            took = time.perf_counter() - began
                            assert len(lines) == min(next_key - 1, start + 50) - start + 1
                            with lock:
                                latencies["read"].append(took)
                except (ServerError, AssertionError) as exc:
                    with lock:
                        failures.append(f"client {client_id}: {exc}")
                    return

        threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 120)
        assert not failures, failures[:5]
        stored = []
        for name in names:
            next_key = setup.get_dataset(name)["next_key"]
            if next_key:
                stored += [(name, r["client"], r["seq"]) for r in map(json.loads, setup.download_bytes(
                    name, 0, next_key - 1).splitlines())]
        assert sorted(stored) == sorted(sent)  # every acknowledged record once, nothing else
        statuses = [e["status"] for e in running.events() if e["event"] == "access"]
        assert statuses and max(statuses) < 500
        for kind, values in latencies.items():
            q = statistics.quantiles(values, n=100)
            print(f"{kind}: {len(values)} requests, p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, "
                  f"p99 {q[98] * 1000:.0f} ms")
    finally:
        assert running.stop() == 0
