"""Packing N small objects: des sync --mode files vs a boto3 get+put loop vs tar via s3fs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from cases.archives import get_objects
from core import BUCKET, DES, REPO, WORK, Ctx, log, our_destination_config, ratio, reset_catalog


def case_pack(ctx: Ctx) -> None:
    """Pack N small objects: des sync --mode files vs boto3 get+put loop vs tar streamed via s3fs.

    Run twice: on moto as it is, then with ``--latency-ms`` of modelled S3 latency per request
    (see ``bench/s3server.py``). On loopback moto answers in ~3 ms of its own CPU, one request at a
    time in effect (one Python process), so every tool is bound by the same server and a
    concurrent packer can beat a sequential loop only by needing fewer requests (10,000 GETs
    against 20,000 GET+PUTs). What concurrency buys against S3 is overlapping its per-request
    latency, which only the second run has. The sequential loop is run once there (it takes
    ~20,000 x (latency + 3 ms)); the other tools ``--repeat`` times.
    """
    import tarfile
    import io

    n = len(ctx.small)
    keys = sorted(ctx.small)

    def boto3_loop():
        client = ctx.server.boto3()
        for k in keys:
            body = client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            client.put_object(Bucket=BUCKET, Key="pack-boto3/" + k, Body=body)
        return "pack-boto3/"

    def tar_s3fs():
        fs = ctx.server.s3fs()
        with fs.open(f"{BUCKET}/pack-tar/small.tar", "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            for j in range(0, len(keys), 256):
                chunk = keys[j:j + 256]
                blobs = get_objects(fs, [f"{BUCKET}/{k}" for k in chunk])
                for k in chunk:
                    data = blobs[f"{BUCKET}/{k}"]
                    info = tarfile.TarInfo(k)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return "pack-tar/"

    ours, loop, tar = "des sync --mode files", "boto3 get+put loop (sequential)", "tar via s3fs (streamed, concurrent GETs)"
    tools: dict[str, Callable[[], str]] = {ours: lambda: _des_sync_files(ctx), loop: boto3_loop, tar: tar_s3fs}
    runs = [(f"pack {n:,} small objects", 0.0, {})]
    if ctx.args.latency_ms:
        runs.append((f"pack {n:,} small objects, {ctx.args.latency_ms:g} ms per request (modelled S3 latency)",
                     ctx.args.latency_ms, {loop: 1}))
    for case, latency_ms, repeats in runs:
        ctx.server.set_latency(latency_ms)
        try:
            _pack_runs(ctx, case, n, dict(tools), repeats)
        finally:
            ctx.server.set_latency(0)
        ratio(ctx.results, case, "files/s", ours, loop, target=5.0, target_text=">= 5x boto3 loop")
        ratio(ctx.results, case, "files/s", ours, tar)


def _pack_runs(ctx: Ctx, case: str, n: int, tools: dict[str, Callable[[], str] | None],
               repeats: dict[str, int]) -> None:
    """Each tool ``repeats.get(tool, --repeat)`` times, from an empty destination each time."""
    r = ctx.results
    for i in range(ctx.args.repeat):
        for tool, fn in tools.items():
            if fn is None or i >= repeats.get(tool, ctx.args.repeat):
                continue
            for p in ("pack-boto3", "pack-tar", "pack-des"):
                ctx.delete_prefix(p)
            reset_catalog(ctx)
            (WORK / "cfg" / "pack-state.json").unlink(missing_ok=True)
            ctx.server.reset()
            t0 = time.perf_counter()
            try:
                prefix = fn()
            except Exception as exc:  # noqa: BLE001
                r.add(case, tool, "errors", 1, note=str(exc)[:300])
                log(f"  {case} {tool}: failed: {exc}")
                tools[tool] = None
                continue
            t = time.perf_counter() - t0
            c = ctx.server.counts()
            objs = ctx.count_objects(prefix)
            r.add(case, tool, "files/s", n / t, "files/s")
            r.add(case, tool, "seconds", t, "s", higher_is_better=False)
            r.add(case, tool, "objects after", objs, higher_is_better=False)
            r.add(case, tool, "S3 requests", c.get("total", 0), higher_is_better=False)
            log(f"  {case} {tool}: {n / t:,.0f} files/s, {objs} objects after, {c.get('total', 0)} requests")


def _des_sync_files(ctx: Ctx) -> str:
    src = ctx.write_json("pack-src.json", ctx.our_source_config("small", "auto") | {"file_format": "auto"})
    dest = ctx.write_json("pack-dest.json", our_destination_config(ctx, "pack-des"))
    out = subprocess.run([*DES, "sync", "--config", src, "--destination", dest, "--mode", "files",
                          "--state", str(WORK / "cfg" / "pack-state.json")],
                         cwd=REPO, env=ctx.our_env, capture_output=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"des sync failed: {out.stderr.decode()[-300:]}")
    return "pack-des/"

