"""Security: hostile names and containers, zip bombs, and credentials that must never leak.

- Member names with ``..``, absolute paths, backslashes, NUL or control characters are refused on
  write (fuzzed: any accepted name stays inside a target folder when joined).
- A hostile container cannot make the reader touch objects outside its own ``_bigFiles/`` folder
  (escaping external names, META external_key pointing elsewhere).
- Decompression is bounded by the declared size: a zip bomb is refused without expanding it, and
  an absurd declared size is refused before any allocation.
- Known fake credentials never appear in stdout (any message), stderr or TRACE internals of
  ``des-source`` runs, successful or failing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.des import DesFormatError, DesReader, DesWriter
from connector.des.names import safe_join
from connector.errors import MemberNameError
from tests.reliability.fuzzing import CASES, FUZZ, Counter
from tests.reliability.helpers import (
    FAKE_KEY,
    FAKE_SECRET,
    REPO,
    configured_catalog,
    put_objects,
    source,
    write_json,
)
from tests.reliability.hostile import Entry, container
from tests.support.faults import fault_proxy

# -- member names --------------------------------------------------------------------------------

HOSTILE_NAMES = ["../etc/passwd", "a/../../b", "/etc/passwd", "//server/share", "C:\\Windows\\x", "a\\..\\b",
                 "nul\x00byte", "tab\there", "new\nline", "cr\rx", "esc\x1b[2J", "del\x7f", "nel\x85",
                 "./a", "a/.", "a//b", "..", ".", "", "a/", "\udc80surrogate"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_member_names_refused_on_write(tmp_path, name):
    with DesWriter(tmp_path / "n.des") as w:
        with pytest.raises(MemberNameError):
            w.add(name, b"x")
        with pytest.raises(MemberNameError):
            safe_join(tmp_path / "out", name)
        w.add("fine/name.json", b"x")
    assert DesReader(tmp_path / "n.des").names() == ["fine/name.json"]


names = st.text(alphabet=st.one_of(st.sampled_from(list("./\\ab\x00\n\x1f\x7f\u202e:~ ")), st.characters()),
                min_size=0, max_size=24)


def test_fuzz_member_names_accepted_ones_stay_inside(tmp_path):
    ran = Counter()
    root = tmp_path / "root"
    root.mkdir()

    @settings(FUZZ, max_examples=CASES["large"] * 2)
    @given(name=names)
    def case(name):
        ran()
        path = tmp_path / f"{uuid.uuid4().hex}.des"
        with DesWriter(path) as w:
            try:
                w.add(name, b"payload")
            except MemberNameError:
                return
        assert DesReader(path).read(name) == b"payload"
        target = Path(safe_join(root, name))
        assert root.resolve() in target.parents
        assert "\\" not in name and "\x00" not in name and not name.startswith("/")
        assert ".." not in name.split("/")

    case()
    print(f"\n[reliability] member-name fuzz cases run: {ran.n}")


# -- hostile containers: _bigFiles/ confinement ---------------------------------------------------

def external_entry(name: str, body: bytes, key: str) -> Entry:
    meta = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "is_external": True, "external_key": key}
    return Entry(name, meta=meta, flags=0x1, length=len(body))


def test_external_key_pointing_elsewhere_is_refused(tmp_path):
    """An external_key may name only an object under a ``_bigFiles/`` folder inside the container's
    folder (the reference writes ``<prefix>/_bigFiles/<name>`` anywhere in its bucket, issue 20):
    never ``..``, another bucket or URL, a path outside the folder, or a non-``_bigFiles`` object."""
    secret = b"another dataset's private bytes"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    for folder in (tmp_path / "other", outside):
        (folder / "_bigFiles").mkdir(parents=True)
        (folder / "_bigFiles" / "m").write_bytes(secret)
        (folder / "m").write_bytes(secret)
    (tmp_path / "c" / "_bigFiles").mkdir(parents=True)
    (tmp_path / "c" / "_bigFiles" / "m").write_bytes(secret)
    path = tmp_path / "c.des"
    for key in ["../other/_bigFiles/m", "c/_bigFiles/../../other/_bigFiles/m", "/etc/passwd", "other/m",
                str(outside / "_bigFiles" / "m"), f"../{outside.name}/_bigFiles/m", "s3://elsewhere/_bigFiles/m",
                "file:///etc/_bigFiles/m"]:
        path.write_bytes(container([external_entry("m", secret, key)]))
        reader = DesReader(path, cache=None)
        with pytest.raises(DesFormatError, match="external_key"):
            reader.read("m")
        with pytest.raises(DesFormatError, match="external_key"):
            reader.open("m")
    # Keys as our writer and the reference store them are read: the container's own _bigFiles/,
    # and another _bigFiles/ folder under the same root.
    for key in ["c/_bigFiles/m", "other/_bigFiles/m"]:
        path.write_bytes(container([external_entry("m", secret, key)]))
        assert DesReader(path, cache=None).read("m") == secret


@pytest.mark.parametrize("name", ["../../victim", "a/../../../victim", "/victim", "..\\victim"])
def test_external_member_name_escaping_is_refused(tmp_path, name):
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (tmp_path / "deep" / "c" / "_bigFiles").mkdir(parents=True)
    path = tmp_path / "deep" / "c.des"
    path.write_bytes(container([external_entry(name, b"not yours", f"c/_bigFiles/{name}")]))
    with pytest.raises(DesFormatError, match="refused"):
        DesReader(path, cache=None).read(name)


def test_writer_external_members_on_s3_still_read(s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/ds/dataranges/0-1.des"
    body = os.urandom(3000)
    with DesWriter(url, storage_options=s3_endpoint.storage_options(), big_file_threshold=1000) as w:
        w.add("big/file.bin", body)
        w.add("small", b"s")
    reader = DesReader(url, storage_options=s3_endpoint.storage_options(), cache=None)
    assert reader.meta("big/file.bin")["external_key"] == "ds/dataranges/0-1/_bigFiles/big/file.bin"
    assert reader.read("big/file.bin") == body and reader.open("big/file.bin").read() == body


# -- zip bombs -----------------------------------------------------------------------------------

def compressed_entry(name: str, stored: bytes, codec: str, declared: int) -> Entry:
    return Entry(name, data=stored, meta={"size": declared, "codec": codec}, flags=0x2)


def zeros_compressed(n: int, codec: str) -> bytes:
    if codec == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        chunk = bytes(1 << 20)
        return b"".join(c.compress(chunk) for _ in range(n >> 20)) + c.flush()
    return pa.compress(bytes(n), codec="zstd", asbytes=True)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_zip_bomb_member_refused_with_bounded_memory(tmp_path, codec):
    """64 MiB of zeros compressed, META says 1000 bytes: refused, and the reading process's peak
    memory does not grow by anything near 64 MiB (measured in a fresh subprocess)."""
    stored = zeros_compressed(64 << 20, codec)
    path = tmp_path / "bomb.des"
    path.write_bytes(container([compressed_entry("bomb", stored, codec, 1000)]))
    script = textwrap.dedent(f"""
        import resource
        from connector.des import DesReader, DesFormatError
        reader = DesReader({str(path)!r}, cache=None)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            reader.read("bomb")
            print("READ")
        except DesFormatError as exc:
            print("REFUSED", exc)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True).stdout.splitlines()
    assert out[0].startswith("REFUSED") and "bomb" in out[0], out
    grown_mib = int(out[1])
    assert grown_mib < 16, f"peak memory grew by {grown_mib} MiB while refusing a 64 MiB bomb"


@pytest.mark.parametrize("declared", [2**40, 2**62, 2**63 - 1])
@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_absurd_declared_size_refused_before_allocating(codec, declared):
    stored = gzip.compress(b"x" * 100) if codec == "gzip" else pa.compress(b"x" * 100, codec="zstd", asbytes=True)
    blob = container([compressed_entry("m", stored, codec, declared)])
    with pytest.raises(DesFormatError, match="more than .* can expand to"):
        DesReader(blob).read("m")


# -- credentials never leak ------------------------------------------------------------------------

LEAKS = (FAKE_KEY, FAKE_SECRET, "fake%2Fsecret%2BKEY", "fake/secret", "FAKEKEY123")


def assert_no_leak(run, what: str) -> None:
    for text in (run.stdout, run.stderr):
        for needle in LEAKS:
            assert needle not in text, f"{what}: {needle!r} leaked"


@pytest.fixture(scope="module")
def leak_bucket(s3_endpoint):
    bucket = f"leak-{uuid.uuid4().hex[:12]}"
    client = s3_endpoint.boto3_client()
    client.create_bucket(Bucket=bucket)
    put_objects(client, bucket, {"in/good/a.csv": b"id,v\n1,x\n2,y\n", "in/bad/b.csv": b"id,v\n1,x\n2,y,z\n"})
    return bucket


def fake_config(endpoint: str, bucket: str, **extra) -> dict:
    return {"bucket_name": bucket, "path_prefix": "in", "endpoint": endpoint, "region": "us-east-1",
            "access_key_id": FAKE_KEY, "secret_access_key": FAKE_SECRET, "retry_count": 1, "request_timeout": 1,
            **extra}


@pytest.mark.slow
def test_fake_credentials_never_appear_in_any_des_source_output(s3_endpoint, leak_bucket, tmp_path):
    runs = []
    good = write_json(tmp_path / "good.json", fake_config(s3_endpoint.endpoint_url, leak_bucket))
    runs.append(("spec", source("spec")))
    runs.append(("check", source("check", "--config", good)))
    discovered = source("discover", "--config", good)
    runs.append(("discover", discovered))
    assert discovered.code == 0, discovered.stdout
    catalog = write_json(tmp_path / "catalog.json", configured_catalog(discovered.messages[0]["catalog"]["streams"]))
    read = source("read", "--config", good, "--catalog", catalog)
    runs.append(("read with a bad file", read))
    assert read.code == 1 and read.errors() and read.records()  # good stream read, bad one failed

    with fault_proxy(s3_endpoint.endpoint_url, fraction=1.0, seed=3, kinds=["500", "503", "reset"]) as proxy:
        dead = write_json(tmp_path / "dead.json", fake_config(proxy.url, leak_bucket))
        runs.append(("read, 100% faults", source("read", "--config", dead, "--catalog", catalog)))
    closed = write_json(tmp_path / "closed.json", fake_config("http://127.0.0.1:9", leak_bucket))
    runs.append(("discover, closed port", source("discover", "--config", closed)))
    missing = write_json(tmp_path / "missing.json", fake_config(s3_endpoint.endpoint_url, "no-such-bucket-xyz"))
    runs.append(("check, missing bucket", source("check", "--config", missing)))
    invalid = write_json(tmp_path / "invalid.json", {**fake_config(s3_endpoint.endpoint_url, leak_bucket),
                                                     "max_threads": "many", "secret_access_key": 12})
    runs.append(("discover, invalid config", source("discover", "--config", invalid)))
    typo = write_json(tmp_path / "typo.json", {**fake_config(s3_endpoint.endpoint_url, leak_bucket),
                                               "secret_acess_key": FAKE_SECRET})
    runs.append(("check, misspelt secret field", source("check", "--config", typo)))
    for what, run in runs:
        assert_no_leak(run, what)
    failing = [what for what, run in runs if run.code != 0 or run.errors()
               or any(m["connectionStatus"]["status"] == "FAILED" for m in run.of_type("CONNECTION_STATUS"))]
    assert len(failing) >= 5, failing  # the failing paths really failed (their messages were checked)
    print(f"\n[reliability] credentials: {len(runs)} des-source runs ({len(failing)} failing) grepped, no leak")


def test_fake_credentials_not_in_debug_tracebacks(s3_endpoint, leak_bucket, tmp_path):
    """DES_DEBUG=1 prints tracebacks of unexpected errors on stderr: still no secrets."""
    closed = write_json(tmp_path / "closed.json", fake_config("http://127.0.0.1:9", leak_bucket))
    env = {**os.environ, "DES_DEBUG": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "connector.airbyte.source_main", "discover", "--config", closed],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tempfile.gettempdir())
    assert proc.returncode == 1
    for needle in LEAKS:
        assert needle not in proc.stdout + proc.stderr
