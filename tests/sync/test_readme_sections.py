"""The README's ``destination`` and ``sync`` sections run as written (bash, in a scratch folder
holding the bundled testdata and examples), and examples/local/run.sh runs twice."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.docs import blocks

ROOT = Path(__file__).resolve().parents[2]


def _blocks(section: str) -> list[str]:
    return blocks(section, "bash")


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "testdata").symlink_to(ROOT / "testdata")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def _bash(script: str, cwd: Path) -> str:
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, (script, out.stderr[-3000:])
    return out.stdout


def test_destination_section(workdir):
    [block] = _blocks("destination")
    out = _bash(block, workdir)
    assert '"status":"SUCCEEDED"' in out
    assert out.count('"type":"STATE"') >= 3  # echoed once committed
    listing = out.splitlines()[-6:]
    assert [line.split()[0] for line in listing] == ["avro", "events", "excel", "orders", "users", "zipped"]
    assert [n in line.split() for line, n in zip(listing, ["50", "250", "25", "100", "90", "40"])] == [True] * 6


def test_sync_section(workdir):
    [block] = _blocks("sync")
    out = _bash(block, workdir).splitlines()
    assert out[:6] == [line for line in out[:6] if " 0 files" not in line]  # the first run writes every stream
    assert all(" 0 files, 0 datapoints" in line for line in out[6:12])  # the second finds nothing new
    assert out[12].startswith("users -> users_files: 3 files, 3 datapoints")
    assert out[13].startswith("orders -> orders_files: 5 files, 5 datapoints")
    assert (workdir / "out" / "state.json").exists() and (workdir / "out" / "files-state.json").exists()


def test_example_run_sh_twice(tmp_path):
    for name in ("connector", "examples", "testdata", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    script = tmp_path / "run.sh"
    shutil.copy(ROOT / "examples" / "local" / "run.sh", script)
    # run.sh cds to ../.. of itself: give it the same layout under tmp_path.
    (tmp_path / "ex" / "local").mkdir(parents=True)
    shutil.copy(script, tmp_path / "ex" / "local" / "run.sh")
    for _ in range(2):
        out = _bash(f"bash {tmp_path / 'ex' / 'local' / 'run.sh'}", tmp_path)
        assert "record 0 of dataset orders" in out
