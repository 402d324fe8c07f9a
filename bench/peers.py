"""The peers: airbyte-source-s3 in its own virtualenv, and small s3fs/boto3 programs.

``airbyte-source-s3`` 4.16.1 on PyPI pins ``smart-open[s3]==4.16.1``, a version of smart-open
that does not exist (its release tooling wrote the connector's own version into that pin), so
``pip install airbyte-source-s3`` fails. The venv is therefore built as: the connector with
``--no-deps``, then its declared requirements with that one pin relaxed to any smart-open[s3].
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

AIRBYTE_VERSION = "4.16.1"
#: How the peer was installed, for the report: it cannot be installed as published.
INSTALL_NOTE = (f"installed in its own virtualenv as `airbyte-source-s3=={AIRBYTE_VERSION}` with --no-deps, then its "
                "declared requirements with the one broken pin `smart-open[s3]==4.16.1` (a release that does not exist) "
                "relaxed to `smart-open[s3]`")


def airbyte_venv(work: Path, log=print) -> Path:
    """Create (first run) or reuse ``bench/work/airbyte-venv``; return the ``source-s3`` path."""
    venv = work / "airbyte-venv"
    exe = venv / "bin" / "source-s3"
    marker = venv / f".ok-{AIRBYTE_VERSION}"
    if exe.exists() and marker.exists():
        return exe
    log(f"creating {venv} with airbyte-source-s3=={AIRBYTE_VERSION} (first run only)")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", f"airbyte-source-s3=={AIRBYTE_VERSION}"], check=True)
    meta = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import importlib.metadata as m; print('\\n'.join(m.requires('airbyte-source-s3') or []))"],
                          check=True, capture_output=True, text=True).stdout.splitlines()
    reqs = []
    for req in meta:
        req = req.split(";")[0].strip()
        if not req:
            continue
        if re.match(r"smart-open", req, re.I):
            req = "smart-open[s3]"  # the published pin (==4.16.1) names a release that does not exist
        reqs.append(req.replace(" (", "").replace(")", "") if "(" in req else req)
    subprocess.run([*pip, *reqs], check=True)
    marker.write_text("ok\n")
    return exe


def airbyte_version(work: Path) -> str:
    try:
        out = subprocess.run([str(work / "airbyte-venv" / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('airbyte-source-s3'), m.version('airbyte-cdk'))"],
                             capture_output=True, text=True, check=True).stdout.split()
        return f"airbyte-source-s3 {out[0]} (airbyte-cdk {out[1]})"
    except Exception:  # noqa: BLE001
        return "airbyte-source-s3 (unknown version)"


# A plain S3 destination: RECORD messages on stdin -> JSONL objects on S3 through s3fs.
S3FS_JSONL_WRITER = r'''
import os, sys, orjson, s3fs
endpoint, root, per_file = sys.argv[1], sys.argv[2], int(sys.argv[3])
fs = s3fs.S3FileSystem(key=os.environ["AWS_ACCESS_KEY_ID"], secret=os.environ["AWS_SECRET_ACCESS_KEY"],
                       client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
buffers, counts, parts = {}, {}, {}
def flush(stream):
    n = parts.get(stream, 0)
    with fs.open(f"{root}/{stream}/part-{n:05d}.jsonl", "wb") as f:
        f.write(b"".join(buffers[stream]))
    parts[stream] = n + 1
    buffers[stream] = []
    counts[stream] = 0
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    msg = orjson.loads(line)
    kind = msg.get("type")
    if kind == "RECORD":
        rec = msg["record"]
        s = rec["stream"]
        buffers.setdefault(s, []).append(orjson.dumps(rec["data"]) + b"\n")
        counts[s] = counts.get(s, 0) + 1
        if counts[s] >= per_file:
            flush(s)
    elif kind == "STATE":
        for s in list(buffers):
            if buffers[s]:
                flush(s)
        out.write(line)
for s in list(buffers):
    if buffers[s]:
        flush(s)
out.flush()
'''


def write_peer_scripts(work: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "s3fs_jsonl_writer.py"
    path.write_text(S3FS_JSONL_WRITER)
    return {"s3fs_jsonl_writer": path}


def env_for(server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": server.key, "AWS_SECRET_ACCESS_KEY": server.secret,
                "AWS_DEFAULT_REGION": server.region, "AWS_EC2_METADATA_DISABLED": "true",
                "NLTK_DATA": str(Path(__file__).resolve().parent / "work" / "nltk_data")})
    return env
