"""Regenerate the bundled sample files (deterministic). Run from anywhere: python testdata/generate.py

Streams (folders at depth 1; the main job, examples/local/run.sh, syncs every one):
  users/   CSV: plain, .csv.gz, .csv.xz  - ints, floats, bools, timestamps, empty cells (nulls)
  orders/  JSON: JSON Lines, a top-level array, a single object, .jsonl.zst, .jsonl.bz2 - nested objects, lists
  events/  Parquet: two files, several row groups, timestamps, decimals, lists, structs
  avro/    Avro: two files (deflate, several blocks; then an evolved schema) - logical types,
           unions with null, nested records, arrays, maps, enums, fixed, a multi-type union
  excel/   .xlsx: a workbook whose first sheet has numbers, text, booleans, dates, date-times, blanks
  zipped/  .zip archives whose members are CSV, JSON Lines, .csv.gz and a stored CSV
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import random
import uuid
import zipfile
from datetime import date, datetime, time, timedelta, timezone
from xml.sax.saxutils import escape
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


# -- Avro ------------------------------------------------------------------------------------------

ADDRESS = {"type": "record", "name": "Address", "fields": [
    {"name": "city", "type": "string"},
    {"name": "zip", "type": ["null", "string"], "default": None},
]}
READING = {
    "type": "record", "name": "Reading", "namespace": "des.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "sensor", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "ratio", "type": "float"},
        {"name": "value", "type": ["null", "double"]},
        {"name": "ok", "type": "boolean"},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 4}},
        {"name": "huge", "type": {"type": "fixed", "name": "Huge", "size": 20, "logicalType": "decimal",
                                  "precision": 45, "scale": 6}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "at_ms", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        {"name": "local_at", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "time_ms", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "time_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["TEMP", "HUMIDITY", "PRESSURE"]}},
        {"name": "raw", "type": "bytes"},
        {"name": "tag4", "type": {"type": "fixed", "name": "Tag4", "size": 4}},
        {"name": "labels", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "long"]}},
        {"name": "home", "type": ADDRESS},
        {"name": "work", "type": ["null", "Address"]},
        {"name": "extra", "type": ["null", "long", "string"]},
    ],
}


def reading(rng: random.Random, i: int) -> dict:
    return {
        "id": i,
        "sensor": rng.choice(["s-1", "s-2", 'quote "q"', "ünï\\code"]),
        "count": rng.randint(-2**31, 2**31 - 1),
        "ratio": rng.choice([0.5, 1.25, -3.0]),
        "value": rng.choice([None, 1e-300, 12345.678901234567, 2.0**60]),
        "ok": rng.random() > 0.5,
        # Built from text: Decimal arithmetic (scaleb...) would round to the context's 28 digits.
        "price": Decimal(f"{rng.randint(-10**12 + 1, 10**12 - 1)}E-4"),
        "huge": Decimal(f"{rng.randint(-10**45 + 1, 10**45 - 1)}E-6"),
        "day": date(2024, 1, 1) + timedelta(days=i),
        "at": BASE + timedelta(seconds=11 * i, microseconds=i),
        "at_ms": None if i % 4 == 0 else BASE + timedelta(milliseconds=1001 * i),
        "local_at": datetime(2024, 6, 1, 12, 0) + timedelta(microseconds=7 * i),
        "time_ms": time(i % 24, 30, 15, 123000),
        "time_us": time(23, 59, 59, i),
        "uid": uuid.UUID(int=rng.getrandbits(128)),
        "kind": rng.choice(["TEMP", "HUMIDITY", "PRESSURE"]),
        "raw": bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 5))),
        "tag4": bytes([i % 256, 1, 2, 3]),
        "labels": [rng.choice(["a", "b", "c"]) for _ in range(rng.randint(0, 3))],
        "attrs": {f"k{j}": (None if j == 2 else j * i) for j in range(rng.randint(0, 3))},
        "home": {"city": rng.choice(["Paris", "Berlin"]), "zip": rng.choice([None, "75001"])},
        "work": None if i % 3 else {"city": "Austin", "zip": None},
        "extra": [None, i, f"text-{i}"][i % 3],
    }


def avro(schema: dict, rows: list[dict], codec: str, sync_interval: int = 1 << 14) -> bytes:
    import fastavro

    out = io.BytesIO()
    # A fixed sync marker keeps the file byte-identical from run to run.
    fastavro.writer(out, fastavro.parse_schema(schema), rows, codec=codec, sync_interval=sync_interval,
                    sync_marker=b"des-test-sync-01")
    return out.getvalue()


def evolved_reading_schema() -> dict:
    """READING with one more top-level field and one more field in the nested record."""
    schema = json.loads(json.dumps(READING))
    schema["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    home = next(f for f in schema["fields"] if f["name"] == "home")
    home["type"]["fields"].append({"name": "country", "type": ["null", "string"], "default": None})
    return schema


def avro_files(rng: random.Random) -> dict[str, bytes]:
    first = [reading(rng, i) for i in range(1, 31)]
    second = [dict(reading(rng, i), note=rng.choice([None, "checked"])) for i in range(31, 51)]
    for row in second:
        row["home"] = dict(row["home"], country="FR")
    return {
        "avro/readings_01.avro": avro(READING, first, "deflate", sync_interval=512),
        "avro/readings_02.avro": avro(evolved_reading_schema(), second, "null"),
    }


# -- Excel (a minimal xlsx writer: inline strings, two number formats for dates) -------------------

EXCEL_EPOCH = datetime(1899, 12, 30)
_SPREADSHEET = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"


def _cell(ref: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    if isinstance(value, datetime):  # style 2: a date-time format
        return f'<c r="{ref}" s="2"><v>{(value - EXCEL_EPOCH).total_seconds() / 86400!r}</v></c>'
    if isinstance(value, date):  # style 1: built-in date format 14
        return f'<c r="{ref}" s="1"><v>{(value - EXCEL_EPOCH.date()).days}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(str(value))}</t></is></c>'


def _column_letters(index: int) -> str:
    letters, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def xlsx(sheets: dict[str, list[list]]) -> bytes:
    """A workbook with one sheet per entry (rows of Python values), as Excel would store them."""
    xml = '<?xml version="1.0" encoding="UTF-8"?>'
    parts = {
        "[Content_Types].xml": xml + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        + "".join(f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" ContentType="application/'
                  'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>' for i in range(len(sheets)))
        + "</Types>",
        "_rels/.rels": xml + f'<Relationships xmlns="{_PACKAGE_RELS}"><Relationship Id="rId1" '
        f'Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": xml + f'<workbook xmlns="{_SPREADSHEET}" xmlns:r="{_RELS}"><sheets>'
        + "".join(f'<sheet name="{escape(name)}" sheetId="{i + 1}" r:id="rId{i + 1}"/>' for i, name in enumerate(sheets))
        + "</sheets></workbook>",
        "xl/_rels/workbook.xml.rels": xml + f'<Relationships xmlns="{_PACKAGE_RELS}">'
        + "".join(f'<Relationship Id="rId{i + 1}" Type="{_RELS}/worksheet" Target="worksheets/sheet{i + 1}.xml"/>'
                  for i in range(len(sheets)))
        + f'<Relationship Id="rId{len(sheets) + 1}" Type="{_RELS}/styles" Target="styles.xml"/></Relationships>',
        "xl/styles.xml": xml + f'<styleSheet xmlns="{_SPREADSHEET}"><numFmts count="1"><numFmt numFmtId="164" '
        'formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts><fonts count="1"><font/></fonts><fills count="1"><fill/></fills>'
        '<borders count="1"><border/></borders><cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="3"><xf/>'
        '<xf numFmtId="14" applyNumberFormat="1"/><xf numFmtId="164" applyNumberFormat="1"/></cellXfs></styleSheet>',
    }
    for i, rows in enumerate(sheets.values()):
        body = "".join(f'<row r="{r + 1}">' + "".join(_cell(f"{_column_letters(c)}{r + 1}", v) for c, v in enumerate(row))
                       + "</row>" for r, row in enumerate(rows))
        parts[f"xl/worksheets/sheet{i + 1}.xml"] = xml + f'<worksheet xmlns="{_SPREADSHEET}"><sheetData>{body}</sheetData></worksheet>'
    return zipped({name: text.encode() for name, text in parts.items()})


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of ``members`` with fixed timestamps (byte-identical from run to run)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return out.getvalue()


def excel_rows(rng: random.Random, n: int) -> list[list]:
    header = ["id", "name", "amount", "qty", "paid", "day", "at", "mixed", None, "name"]
    rows: list[list] = [header]
    for i in range(1, n + 1):
        rows.append([
            i,
            rng.choice(["Ada", "Bo", 'Dee "D"', "Émile", None]),
            rng.choice([1.5, 2.25, 1e-7, 123456.789]),
            rng.randint(0, 10**6),
            rng.random() > 0.5,
            date(2024, 2, 1) + timedelta(days=i),
            datetime(2024, 2, 1, 8, 0) + timedelta(minutes=90 * i, seconds=i),
            [i, f"t{i}", True][i % 3],
            None if i % 2 else "x",
            "second name",
        ])
    return rows


def excel_files(rng: random.Random) -> dict[str, bytes]:
    return {"excel/sheets_01.xlsx": xlsx({"data": excel_rows(rng, 25), "notes": [["note"], ["not data"]]})}


def zip_files(rng: random.Random) -> dict[str, bytes]:
    rows = [{"id": i, "name": rng.choice(["a", "b", "c,d"]), "amount": round(rng.uniform(0, 9), 2)} for i in range(1, 41)]

    def csv_of(part: list[dict]) -> bytes:
        out = io.StringIO()
        w = csv.DictWriter(out, ["id", "name", "amount"], lineterminator="\n")
        w.writeheader()
        w.writerows(part)
        return out.getvalue().encode()

    return {
        "zipped/batch_01.zip": zipped({
            "part-1.csv": csv_of(rows[:10]),
            "part-2.jsonl": jsonl(rows[10:20]),
            "nested/part-3.csv.gz": gzip.compress(csv_of(rows[20:30]), mtime=0),
            "README.txt": b"not a data file",
            "nested/": b"",
        }),
        "zipped/batch_02.zip": zipped({"part-4.csv": csv_of(rows[30:])}, zipfile.ZIP_STORED),
    }


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

    rng = random.Random(7)  # its own seed: the files above stay as they were
    for key, data in {**avro_files(rng), **excel_files(rng), **zip_files(rng)}.items():
        (HERE / key).parent.mkdir(parents=True, exist_ok=True)
        (HERE / key).write_bytes(data)


if __name__ == "__main__":
    main()
