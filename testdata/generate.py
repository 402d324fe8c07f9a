"""Regenerate the bundled sample files (deterministic). Run from anywhere: python testdata/generate.py

Streams (folders at depth 1):
  users/   CSV: plain, .csv.gz, .csv.xz  - ints, floats, bools, timestamps, empty cells (nulls)
  orders/  JSON: JSON Lines, a top-level array, a single object, .jsonl.zst, .jsonl.bz2 - nested objects, lists
  events/  Parquet: two files, several row groups, timestamps, decimals, lists, structs
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)


def users(rng: random.Random, start: int, n: int) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "name", "age", "score", "active", "signup_at", "country"])
    for i in range(start, start + n):
        w.writerow([
            i,
            rng.choice(["Ada", "Bo", "Chen, Li", 'Dee "D"', "Émile", "Farah"]),
            rng.randint(18, 90) if rng.random() > 0.1 else "",
            round(rng.uniform(0, 100), 2),
            rng.choice(["true", "false"]),
            (BASE + timedelta(minutes=37 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            rng.choice(["FR", "DE", "US", "JP", ""]),
        ])
    return out.getvalue().encode()


def order(rng: random.Random, i: int) -> dict:
    return {
        "order_id": i,
        "user_id": rng.randint(1, 60),
        "amount": round(rng.uniform(1, 500), 2),
        "paid": rng.random() > 0.3,
        "created_at": (BASE + timedelta(hours=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "shipping": {"city": rng.choice(["Paris", "Berlin", "Austin"]), "express": rng.random() > 0.5},
        "items": [{"sku": f"SKU-{rng.randint(1, 99):02d}", "qty": rng.randint(1, 4)} for _ in range(rng.randint(1, 3))],
        "coupon": rng.choice([None, "WELCOME", None]),
    }


def jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def events(rng: random.Random, start: int, n: int) -> pa.Table:
    return pa.table({
        "event_id": pa.array(range(start, start + n), pa.int64()),
        "kind": pa.array([rng.choice(["view", "click", "buy"]) for _ in range(n)]),
        "at": pa.array([BASE + timedelta(seconds=97 * i) for i in range(start, start + n)], pa.timestamp("us", tz="UTC")),
        "price": pa.array([Decimal(f"{rng.uniform(0, 99):.2f}") for _ in range(n)], pa.decimal128(8, 2)),
        "tags": pa.array([[rng.choice(["a", "b", "c"]) for _ in range(rng.randint(0, 2))] for _ in range(n)]),
        "device": pa.array([{"os": rng.choice(["ios", "android"]), "version": rng.randint(10, 17)} for _ in range(n)]),
        "latency_ms": pa.array([rng.uniform(1, 900) if rng.random() > 0.2 else None for _ in range(n)]),
    })


def main() -> None:
    rng = random.Random(42)
    for d in ("users", "orders", "events"):
        (HERE / d).mkdir(exist_ok=True)
    (HERE / "users/users_2024-01.csv").write_bytes(users(rng, 1, 40))
    (HERE / "users/users_2024-02.csv.gz").write_bytes(gzip.compress(users(rng, 41, 30), mtime=0))
    (HERE / "users/users_2024-03.csv.xz").write_bytes(lzma.compress(users(rng, 71, 20)))

    rows = [order(rng, i) for i in range(1, 101)]
    (HERE / "orders/orders_01.jsonl").write_bytes(jsonl(rows[:40]))
    (HERE / "orders/orders_02.json").write_bytes(json.dumps(rows[40:60], indent=1).encode())
    (HERE / "orders/orders_03.json").write_bytes(json.dumps(rows[60], indent=2).encode())
    with pa.CompressedOutputStream(str(HERE / "orders/orders_04.jsonl.zst"), "zstd") as out:
        out.write(jsonl(rows[61:80]))
    (HERE / "orders/orders_05.jsonl.bz2").write_bytes(bz2.compress(jsonl(rows[80:])))

    pq.write_table(events(rng, 1, 150), HERE / "events/events_01.parquet", row_group_size=50)
    pq.write_table(events(rng, 151, 100), HERE / "events/events_02.parquet", row_group_size=50)


if __name__ == "__main__":
    main()
