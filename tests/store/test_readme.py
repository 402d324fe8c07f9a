"""The README's ``store`` section runs as written: its Python block in a subprocess, then every
``des datasets`` line through the real CLI entry point (one subprocess runs them all in order, to
keep the suite fast; each line gets its own argv and exit code)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support.docs import blocks

ROOT = Path(__file__).resolve().parents[2]

RUN_LINES = r"""
import io, json, sys
from connector.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, real = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), sys.stdout
    sys.stdout = out
    try:
        code = main(argv)
    finally:
        sys.stdout = real
    out.flush()
    results.append({"argv": argv, "code": code, "out": out.buffer.getvalue().decode()})
print(json.dumps(results))
"""


def test_readme_store_section_runs(tmp_path):
    (python,) = blocks("store", "python")
    (shell,) = blocks("store", "bash")
    out = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "{'id': 41, 'name': 'u41'}" in out.stdout and "{'source': 'offset 91'} 91" in out.stdout

    commands = [shlex.split(line) for line in shell.splitlines() if line.strip()]
    assert all(c[:2] == ["des", "datasets"] for c in commands)
    out = subprocess.run([sys.executable, "-c", RUN_LINES, json.dumps([c[1:] for c in commands])], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    results = {" ".join(r["argv"][1:]): r for r in json.loads(out.stdout)}
    failed = {k: r["code"] for k, r in results.items() if r["code"] != 0}
    assert not failed, (failed, out.stderr[-2000:])
    assert [json.loads(x)["id"] for x in results["cat users 38 41"]["out"].splitlines()] == [38, 39, 40, 41]
    assert len(results["cat users --version 2.0.0"]["out"].splitlines()) == 91
    assert '"ok": true' in results["verify users"]["out"]
    assert "rotate" in results["log users"]["out"]
    assert not (tmp_path / "out" / "store" / "users").exists()  # the last line deleted it
