"""Seeded benchmark data: rows of mixed types as CSV, JSONL and Parquet, and many small files.

Everything is a pure function of (seed, sizes), cached under ``bench/work/data/`` so a second
run does not regenerate it.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
         "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]
CATEGORIES = ["books", "games", "garden", "music", "tools", "toys"]
EPOCH = np.datetime64("2024-01-01T00:00:00", "s")


def rows_table(n: int, seed: int, start_id: int = 0) -> pa.Table:
    """``n`` rows: ints, floats, strings, booleans, timestamps, with some nulls."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start_id, start_id + n, dtype=np.int64)
    amount = np.round(rng.normal(100.0, 40.0, n), 2)
    amount_null = rng.random(n) < 0.05
    words = np.array(WORDS)[rng.integers(0, len(WORDS), n)]
    nums = rng.integers(0, 100_000, n).astype(str)
    names = np.char.add(np.char.add(words, "-"), nums)
    name_null = rng.random(n) < 0.03
    active = rng.random(n) < 0.5
    qty = rng.integers(0, 1000, n, dtype=np.int64)
    created = EPOCH + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
    category = np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)]
    return pa.table({
        "id": pa.array(ids),
        "amount": pa.array(amount, mask=amount_null),
        "name": pa.array(names.tolist(), type=pa.string(), mask=name_null),
        "active": pa.array(active),
        "qty": pa.array(qty),
        "created_at": pa.array(created, type=pa.timestamp("s", tz="UTC")),
        "category": pa.array(category.tolist(), type=pa.string()),
    })


def _iso(table: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 strings (``2024-03-01T12:00:00Z``), as CSV and JSON files carry them."""
    import pyarrow.compute as pc

    idx = table.schema.get_field_index("created_at")
    col = pc.strftime(table["created_at"], format="%Y-%m-%dT%H:%M:%SZ")
    return table.set_column(idx, "created_at", col)


def csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(_iso(table), sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def jsonl_bytes(table: pa.Table) -> bytes:
    rows = _iso(table).to_pylist()
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=100_000, compression="snappy")
    return sink.getvalue()


ENCODERS = {"csv": csv_bytes, "jsonl": jsonl_bytes, "parquet": parquet_bytes}


def row_files(cache: Path, rows: int, seed: int, part_rows: int = 250_000) -> dict[str, dict[str, Path]]:
    """{format: {object_key: local_path}} for ``rows`` rows split into parts of <= ``part_rows``."""
    parts = max(1, (rows + part_rows - 1) // part_rows)
    out: dict[str, dict[str, Path]] = {f: {} for f in ENCODERS}
    base = cache / (f"rows-{rows}-s{seed}" if part_rows == 250_000 else f"rows-{rows}-p{part_rows}-s{seed}")
    base.mkdir(parents=True, exist_ok=True)
    per = (rows + parts - 1) // parts
    for p in range(parts):
        n = min(per, rows - p * per)
        table = None
        for fmt, enc in ENCODERS.items():
            ext = "jsonl" if fmt == "jsonl" else fmt
            key = f"{fmt}/rows/part-{p:03d}.{ext}"
            path = base / key.replace("/", "__")
            if not path.exists():
                if table is None:
                    table = rows_table(n, seed + p, start_id=p * per)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(enc(table))
                tmp.rename(path)
            out[fmt][key] = path
    return out


def small_files(cache: Path, count: int, seed: int) -> dict[str, bytes]:
    """``count`` files of 1-20 KiB of JSON-ish text, keyed ``small/obj/NNNNN.json``."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1024, 20 * 1024 + 1, count)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789 ,:{}\"\n", dtype=np.uint8)
    blob = alphabet[rng.integers(0, len(alphabet), int(sizes.sum()))].tobytes()
    out, pos = {}, 0
    for i, size in enumerate(sizes):
        out[f"small/obj/{i:05d}.json"] = blob[pos : pos + int(size)]
        pos += int(size)
    return out


def build_archives(cache: Path, files: dict[str, bytes], tag: str) -> dict[str, Path]:
    """The small files as a DES container, a ZIP (stored) and a TAR, built locally once."""
    from connector.des import DesWriter

    base = cache / f"archives-{tag}"
    base.mkdir(parents=True, exist_ok=True)
    paths = {"des": base / "small.des", "zip": base / "small.zip", "tar": base / "small.tar"}
    if not paths["des"].exists():
        tmp = base / "small.des.tmp.des"
        if tmp.exists():
            tmp.unlink()
        with DesWriter(str(tmp)) as w:
            for name, data in files.items():
                w.add(name, data)
        tmp.rename(paths["des"])
    if not paths["zip"].exists():
        tmp = base / "small.zip.tmp"
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for name, data in files.items():
                z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
        tmp.rename(paths["zip"])
    if not paths["tar"].exists():
        tmp = base / "small.tar.tmp"
        with tarfile.open(tmp, "w") as t:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1704067200
                t.addfile(info, io.BytesIO(data))
        tmp.rename(paths["tar"])
    return paths
