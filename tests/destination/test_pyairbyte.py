"""PyAirbyte (the ``airbyte`` package, in a virtualenv of its own, offline mode) drives des-source
into des-destination through its local-executable connectors: append, overwrite, refreshes.

The virtualenv is made once under the repository's ``.venv-pyairbyte`` (ignored by git) with pip
from the package registry; without it (no registry), the test is skipped and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.store import Store

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-pyairbyte"
DRIVE = Path(__file__).with_name("pyairbyte") / "drive.py"
USERS = 90  # records of testdata/users

pytestmark = pytest.mark.slow


def _pyairbyte() -> Path:
    """The Python of a virtualenv with PyAirbyte, made if missing; skips the test if it cannot be."""
    python = VENV / "bin" / "python"
    if not python.exists() or subprocess.run([python, "-c", "import airbyte"], capture_output=True).returncode:
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], capture_output=True, text=True)
        pip = made.returncode == 0 and subprocess.run(
            [python, "-m", "pip", "install", "-q", "airbyte>=0.71"], capture_output=True, text=True, timeout=900)
        if not pip or pip.returncode != 0:
            pytest.skip("PyAirbyte (pip install airbyte) could not be installed into .venv-pyairbyte: "
                        + (pip.stderr[-500:] if pip else made.stderr[-500:]))
    return python


def _wrappers(tmp: Path) -> Path:
    """des-source / des-destination executables running this checkout with this test's Python."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name in ("source", "destination"):
        path = bin_dir / f"des-{name}"
        path.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m connector.airbyte.{name}_main "$@"\n')
        path.chmod(0o755)
    return bin_dir


def test_pyairbyte_writes_through_des_destination(tmp_path):
    python = _pyairbyte()
    bin_dir, store_root = _wrappers(tmp_path), tmp_path / "store"
    env = {**os.environ, "AIRBYTE_OFFLINE_MODE": "1", "DO_NOT_TRACK": "1", "AIRBYTE_PROJECT_DIR": str(tmp_path),
           "AIRBYTE_TEMP_DIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)  # PyAirbyte's own interpreter imports only its own packages

    def write(strategy: str, *generation: int) -> None:
        out = subprocess.run([python, DRIVE, bin_dir, REPO / "testdata", store_root, strategy,
                              *map(str, generation)], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0 and '"ok": true' in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]

    def generations() -> list[int]:
        with Store(str(store_root)) as store:
            assert store.list_versions("users") == []  # nothing an overwrite kept aside is left
            return store.to_table("users", meta=True).column("_airbyte_generation_id").to_pylist()

    # PyAirbyte's defaults: generation 1 with minimum 1, which Airbyte's destinations (and this one)
    # read as a truncate refresh: even its "append" replaces the stream's data.
    write("append")
    assert generations() == [1] * USERS
    write("append")
    assert generations() == [1] * USERS
    # An append that keeps older generations (minimum_generation_id 0), as the platform sends it.
    write("append", 2, 0, 5)
    assert generations() == [1] * USERS + [2] * USERS
    # A refresh with a new generation that removes the older ones.
    write("append", 3, 3, 6)
    assert generations() == [3] * USERS
    # PyAirbyte's replace strategy: destination_sync_mode overwrite.
    write("replace")
    assert generations() == [1] * USERS
    write("replace", 4, 0, 7)  # overwrite replaces whatever the minimum generation says
    assert generations() == [4] * USERS
