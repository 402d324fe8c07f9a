"""A new user's ordinary mistakes: each fails with an error naming the thing (non-zero exit), read-only
commands create nothing, and the README and examples hold for a new user. The CLI and the Airbyte entry
points run as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.docs import blocks, documents

ROOT = Path(__file__).resolve().parents[1]
DES = [sys.executable, "-m", "connector.cli"]
SOURCE = [sys.executable, "-m", "connector.airbyte.source_main"]


def run(argv: list[str], cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, **kw)


def write_json(path: Path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def trace_errors(stdout: str) -> list[dict]:
    messages = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


# -- a root that does not exist ----------------------------------------------------------------------


def test_discover_of_a_missing_folder_fails_naming_it(tmp_path):
    out = run(DES + ["discover", str(tmp_path / "nosuchdir")])
    assert out.returncode == 1
    assert f"{tmp_path / 'nosuchdir'} does not exist" in out.stderr


@pytest.mark.parametrize("command", ["discover", "read"])
def test_des_source_on_a_missing_folder_fails_like_check(tmp_path, command):
    config = write_json(tmp_path / "source.json", {"root_url": str(tmp_path / "nosuchdir")})
    check = run(SOURCE + ["check", "--config", config])
    status = [json.loads(line) for line in check.stdout.splitlines()][-1]["connectionStatus"]
    assert status["status"] == "FAILED" and "nosuchdir does not exist" in status["message"]
    args = ["--catalog", write_json(tmp_path / "catalog.json", {"streams": []})] if command == "read" else []
    out = run(SOURCE + [command, "--config", config, *args])
    assert out.returncode == 1
    [error] = trace_errors(out.stdout)
    assert "nosuchdir does not exist" in error["message"] and error["failure_type"] == "config_error"


@pytest.mark.parametrize("command", ["discover", "read"])
def test_des_source_on_a_missing_bucket_fails(tmp_path, s3_endpoint, command):
    config = write_json(tmp_path / "source.json", {
        "bucket_name": "no-such-bucket-here", "endpoint": s3_endpoint.endpoint_url,
        "access_key_id": s3_endpoint.key, "secret_access_key": s3_endpoint.secret, "region": s3_endpoint.region})
    args = ["--catalog", write_json(tmp_path / "catalog.json", {"streams": []})] if command == "read" else []
    out = run(SOURCE + [command, "--config", config, *args])
    assert out.returncode == 1
    [error] = trace_errors(out.stdout)
    assert "bucket 'no-such-bucket-here' does not exist" in error["message"]


def test_sync_of_a_missing_folder_fails_naming_it(tmp_path):
    source = write_json(tmp_path / "source.json", {"root_url": str(tmp_path / "nosuchdir")})
    destination = write_json(tmp_path / "destination.json", {"root_url": str(tmp_path / "store")})
    out = run(DES + ["sync", "--config", source, "--destination", destination, "--no-progress"])
    assert out.returncode == 1 and "nosuchdir does not exist" in out.stderr


def test_sync_of_a_root_without_streams_fails_with_the_hint(tmp_path):
    (tmp_path / "flat").mkdir()
    shutil.copy(ROOT / "testdata" / "users" / "users_2024-01.csv", tmp_path / "flat")
    source = write_json(tmp_path / "source.json", {"root_url": str(tmp_path / "flat")})
    destination = write_json(tmp_path / "destination.json", {"root_url": str(tmp_path / "store")})
    out = run(DES + ["sync", "--config", source, "--destination", destination, "--no-progress"])
    assert out.returncode == 1 and '"stream_depth": 0' in out.stderr


# -- flat folders: stream_depth 0 ----------------------------------------------------------------------


def test_a_flat_folder_says_how_to_read_it_and_depth_0_reads_it(tmp_path):
    flat = tmp_path / "exports"
    flat.mkdir()
    for name in ("users_2024-01.csv", "users_2024-02.csv.gz"):
        shutil.copy(ROOT / "testdata" / "users" / name, flat)
    (flat / "nested").mkdir()
    shutil.copy(ROOT / "testdata" / "users" / "users_2024-01.csv", flat / "nested" / "skip.csv")

    out = run(DES + ["discover", str(flat / "nested"), "--json"])  # the files are directly in it
    assert out.returncode == 1 and 'set "stream_depth": 0 to read them as one stream' in out.stderr

    config = write_json(tmp_path / "source.json", {"root_url": str(flat), "stream_depth": 0})
    out = run(DES + ["discover", "--config", config, "--json"])
    assert out.returncode == 0, out.stderr
    [stream] = json.loads(out.stdout)
    assert stream["name"] == "exports"  # named after the root; files in sub-folders are not part of it

    catalog = write_json(tmp_path / "configured.json", {"streams": [
        {"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "append"}]})
    out = run(SOURCE + ["read", "--config", config, "--catalog", catalog])
    records = [json.loads(line)["record"] for line in out.stdout.splitlines() if '"type":"RECORD"' in line]
    assert out.returncode == 0 and {r["data"]["_file"] for r in records} == {"users_2024-01.csv", "users_2024-02.csv.gz"}


# -- read-only commands create nothing ---------------------------------------------------------------


@pytest.mark.parametrize("argv", [["list"], ["get", "users"], ["stats", "users"], ["cat", "users"],
                                  ["versions", "list", "users"]])
def test_read_only_datasets_commands_create_nothing(tmp_path, argv):
    out = run(DES + ["datasets", "--root", "nosuchroot", *argv], cwd=tmp_path)
    assert out.returncode == 1 and "store root" in out.stderr and "nosuchroot does not exist" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_only_commands_on_a_root_without_catalog_read_storage_and_leave_no_catalog(tmp_path):
    from connector.store import Store

    with Store(tmp_path / "store") as store:
        store.create_dataset("users")
        with store.writer("users") as w:
            w.write_json_lines([b'{"id":1}'])
    (tmp_path / "store" / ".des-catalog.sqlite").unlink()
    for leftover in (tmp_path / "store").glob(".des-catalog.sqlite-*"):
        leftover.unlink()
    out = run(DES + ["datasets", "--root", str(tmp_path / "store"), "--json", "list"])
    assert out.returncode == 0, out.stderr
    assert [d["name"] for d in json.loads(out.stdout)] == ["users"]
    assert not list((tmp_path / "store").glob(".des-catalog*"))


# -- messages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["source", "destination"])
def test_sync_with_a_bad_config_names_the_file(tmp_path, bad):
    good_source = {"root_url": str(ROOT / "testdata")}
    good_destination = {"root_url": str(tmp_path / "store")}
    source = write_json(tmp_path / "source.json", {**good_source, "no_such_option": 1} if bad == "source" else good_source)
    destination = write_json(tmp_path / "destination.json",
                             {**good_destination, "max_datapoints": "many"} if bad == "destination" else good_destination)
    out = run(DES + ["sync", "--config", source, "--destination", destination, "--no-progress"])
    assert out.returncode == 1
    named = source if bad == "source" else destination
    assert f"{bad} config {named}: " in out.stderr, out.stderr


def test_des_url_without_container_explains_the_form(tmp_path):
    import pandas as pd

    with pytest.raises(ValueError, match=r"des://<member>::<container URL>"):
        pd.read_csv("des://out/testdata.des/users/a.csv")


def test_pack_onto_an_existing_container_names_the_flag(tmp_path):
    box = str(tmp_path / "x.des")
    assert run(DES + ["pack", str(ROOT / "testdata" / "users"), "-o", box]).returncode == 0
    out = run(DES + ["pack", str(ROOT / "testdata" / "users"), "-o", box])
    assert out.returncode == 1 and "--overwrite" in out.stderr and "overwrite=True" not in out.stderr


def test_datasets_get_prints_the_same_time_format_as_versions(tmp_path):
    store = str(tmp_path / "store")
    assert run(DES + ["datasets", "--root", store, "create", "users"]).returncode == 0
    got = json.loads(run(DES + ["datasets", "--root", store, "--json", "get", "users"]).stdout)
    assert run(DES + ["datasets", "--root", store, "versions", "create", "users", "1.0.0"]).returncode == 0
    [version] = json.loads(run(DES + ["datasets", "--root", store, "--json", "versions", "list", "users"]).stdout)
    iso = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
    import re

    assert re.match(iso, got["created"]) and re.match(iso, got["updated"]) and re.match(iso, version["created"])


def test_a_second_sync_says_who_holds_the_lock_while_it_waits(tmp_path):
    from connector.store import Store

    store_root = tmp_path / "store"
    with Store(store_root) as store:
        store.create_dataset("users")
    hold = ("import sys, time\nfrom connector.store import Store\n"
            f"with Store({str(store_root)!r}) as s, s.writer('users'):\n"
            "    print('held', flush=True)\n    time.sleep(3)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        source = write_json(tmp_path / "source.json", {"root_url": str(ROOT / "testdata")})
        destination = write_json(tmp_path / "destination.json", {"root_url": str(store_root)})
        started = time.monotonic()
        out = run(DES + ["sync", "--config", source, "--destination", destination, "--streams", "users",
                         "--no-progress"])
    finally:
        holder.wait(timeout=30)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started >= 1  # it did wait, and said so while waiting:
    assert f"dataset 'users' is being written by another writer (pid {holder.pid} on" in out.stderr
    assert "waiting for it" in out.stderr


# -- documents and examples ----------------------------------------------------------------------------


def test_readme_links_point_into_the_repository():
    import re

    for page in documents():  # README.md and the docs/ pages it links
        links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text())
        assert links or page.name != "README.md", "README.md links nothing"
        missing = [link for link in links if not (page.parent / link).exists()]
        assert not missing, (page.name, missing)
    readme = (ROOT / "README.md").read_text()
    assert all(f"](docs/{page.name})" in readme for page in documents()[1:]), "a docs/ page the README does not link"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and 'license = { text = "Apache-2.0" }' in (
        ROOT / "pyproject.toml").read_text()


def test_the_repository_stands_on_its_own():
    # Code, tests and documents point only inside the repository: no notes or checkouts kept on one
    # machine (a test once sent its readers to a notes file outside the repository).
    import re

    outside = re.compile(r"(?:^|[^\w.~-])/(?:work|home|Users|root)/|\.\./shared/")
    texts = [ROOT / "README.md", *ROOT.glob("*.toml")]
    for folder in ("connector", "tests", "docs", "examples", "bench", "spec", ".ci"):
        texts += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".json", ".sh", "")]
    found = [f"{p.relative_to(ROOT)}:{n}" for p in texts if "work" not in p.relative_to(ROOT).parts
             for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if outside.search(line) and p != Path(__file__)]
    assert found == []


def test_zst_members_read_with_pandas_out_of_the_box(tmp_path):
    import pandas as pd
    import zstandard

    from connector.des import DesWriter

    csv = (ROOT / "testdata" / "users" / "users_2024-01.csv").read_bytes()
    box = str(tmp_path / "x.des")
    with DesWriter(box) as w:
        w.add("users.csv.zst", zstandard.ZstdCompressor().compress(csv))
    assert pd.read_csv(f"des://users.csv.zst::{box}").equals(pd.read_csv(ROOT / "testdata" / "users" / "users_2024-01.csv"))


def test_local_s3_script_starts_fills_and_stops_a_server(tmp_path):
    import s3fs

    port = free_port()
    script = [sys.executable, str(ROOT / "examples" / "s3" / "local_s3.py")]
    out = run(script + ["start", "--port", str(port)])
    try:
        assert out.returncode == 0, out.stderr
        s3 = s3fs.S3FileSystem(key="testing", secret="testing", skip_instance_cache=True,
                               client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"})
        assert "analytics/data/users/users_2024-01.csv" in s3.find("analytics/data")
        import pandas as pd

        users = pd.read_csv("des://users/users_2024-01.csv::s3://bucket/testdata.des",
                            storage_options={"s3": {"key": "testing", "secret": "testing",
                                                    "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}})
        assert len(users) == 40
        assert run(script + ["status", "--port", str(port)]).returncode == 0
    finally:
        stopped = run(script + ["stop", "--port", str(port)])
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run(script + ["status", "--port", str(port)]).returncode == 1


@pytest.mark.slow
def test_readme_sections_run_after_command_1(tmp_path):
    """README command 1's job (examples/local/run.sh), then every local section in the same folder."""
    for name in ("examples", "testdata"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = run(["bash", "examples/local/run.sh"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    for section in ("store", "sync", "destination"):
        for python in blocks(section, "python"):
            out = run([sys.executable, "-c", python], cwd=tmp_path, env=env)
            assert out.returncode == 0, (section, out.stderr[-2000:])
        for bash in blocks(section, "bash"):
            out = run(["bash", "-euo", "pipefail", "-c", bash], cwd=tmp_path, env=env)
            assert out.returncode == 0, (section, bash, out.stderr[-2000:])
            if section == "sync":  # the first run writes every stream, not "0 files"
                assert " 0 files" not in out.stdout.splitlines()[0], out.stdout
