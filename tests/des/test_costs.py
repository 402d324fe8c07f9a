"""What reading a container in S3 really costs, counted request by request at an HTTP proxy.

Every request s3fs makes (GET, HEAD, LIST...) passes through :class:`CountingProxy`, so these
tests also catch a stray HEAD or listing, not only extra GETs.
"""

from __future__ import annotations

import pandas as pd
import pytest

from connector.des import DesFormatError, DesReader, DesWriter, IndexCache
from connector.des.fs import DesFileSystem
from connector.des.reader import DEFAULT_TAIL_SIZE
from tests.support.s3proxy import CountingProxy, Respond

SMALL = {f"m/{i:04d}.txt": b"row %d\n" % i for i in range(300)}
BIG = bytes(range(256)) * 8192  # 2 MiB, one plain member


@pytest.fixture
def container(s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/many.des"
    with DesWriter(url, fs=s3_endpoint.s3fs()) as w:
        w.add("a.csv", b"id,name\n1,ada\n2,bo\n")
        for name, data in SMALL.items():
            w.add(name, data)
        w.add("big.bin", BIG)
    return url


def test_cold_read_is_two_gets_warm_is_one_warm_open_is_free(container, s3_endpoint, s3_proxy):
    so = s3_proxy.storage_options(s3_endpoint)
    cache = IndexCache()  # private: no other test has warmed it
    with s3_proxy.window() as cold:
        assert DesReader(container, storage_options=so, cache=cache).read("m/0007.txt") == SMALL["m/0007.txt"]
    assert cold.count() == cold.count("GET") == 2, cold
    assert cold.ranges()[0] == f"bytes=-{DEFAULT_TAIL_SIZE}"  # a suffix range: no HEAD for the size

    with s3_proxy.window() as warm_open:
        reader = DesReader(container, storage_options=so, cache=cache)
        fs = DesFileSystem(fo=container, target_options=so, index_cache=cache)
        assert len(fs.find("m")) == 300
    assert warm_open.count() == 0, warm_open

    with s3_proxy.window() as warm:
        assert reader.read("m/0123.txt") == SMALL["m/0123.txt"]
    assert warm.count() == warm.count("GET") == 1, warm


def test_cat_of_100_adjacent_members_cold_is_at_most_three_requests(container, s3_endpoint, s3_proxy):
    so = s3_proxy.storage_options(s3_endpoint)
    names = [f"m/{i:04d}.txt" for i in range(100, 200)]
    with s3_proxy.window() as w:
        fs = DesFileSystem(fo=container, target_options=so, index_cache=None)
        assert fs.cat(names) == {n: SMALL[n] for n in names}
    assert w.count() == w.count("GET") <= 3, w
    # The members came in one coalesced range, not 100.
    assert w.count("GET") == 2 and w.sent < DEFAULT_TAIL_SIZE + 2000, w

    with s3_proxy.window() as w:
        assert fs.cat("m/01[0-4]?.txt") == {f"m/{i:04d}.txt": SMALL[f"m/{i:04d}.txt"] for i in range(100, 150)}
    assert w.count() == 1, w


def test_open_reads_by_range_not_the_whole_member(container, s3_endpoint, s3_proxy):
    so = s3_proxy.storage_options(s3_endpoint)
    fs = DesFileSystem(fo=container, target_options=so, index_cache=IndexCache())
    fs.ls("")  # the open is not what is measured here
    with s3_proxy.window() as w:
        with fs.open("big.bin", block_size=64 * 1024) as f:
            f.seek(1_500_000)
            assert f.read(100) == BIG[1_500_000:1_500_100]
            f.seek(-10, 2)
            assert f.read() == BIG[-10:]
    assert w.count("GET") == 2 and w.sent <= 2 * 64 * 1024, w
    with s3_proxy.window() as w:
        assert fs.cat_file("big.bin", 1000, 1010) == BIG[1000:1010]
    assert w.count() == w.count("GET") == 1 and w.sent == 10, w


def test_pandas_through_des_url_costs_two_gets_cold(container, s3_endpoint, s3_proxy):
    # A fresh endpoint URL is a fresh cache key: this is a cold open through the process cache.
    so = s3_proxy.storage_options(s3_endpoint)
    with s3_proxy.window() as w:
        df = pd.read_csv(f"des://a.csv::{container}", storage_options={"s3": so})
    assert df["name"].tolist() == ["ada", "bo"]
    assert w.count() == w.count("GET") == 2, w
    with s3_proxy.window() as w:
        pd.read_csv(f"des://a.csv::{container}", storage_options={"s3": so})
    assert w.count() == 1, w


def test_cold_read_of_one_member_of_10000_is_two_gets(s3_endpoint, s3_bucket, s3_proxy):
    """The bench's random-read case in small: 10,000 members (names and sha256 METAs like its
    container: INDEX + META ~1.4 MiB), DATA bigger than the tail. Cold, one member costs the tail
    (footer, INDEX and META in one suffix range) and the member: 2 GETs, not 3."""
    url = f"s3://{s3_bucket}/ten-thousand.des"
    names = [f"small/obj/{i:05d}.json" for i in range(10_000)]
    body = {n: (b"%05d" % i) * 100 for i, n in enumerate(names)}  # 500 bytes each: 5 MB of DATA
    with DesWriter(url, fs=s3_endpoint.s3fs()) as w:
        for name, data in body.items():
            w.add(name, data)
    so = s3_proxy.storage_options(s3_endpoint)
    for name in (names[0], names[4321], names[-1]):
        with s3_proxy.window() as w:
            r = DesReader(url, storage_options=so, cache=None)
            assert r.read(name) == body[name]
        assert w.count() == w.count("GET") == 2, w
        assert w.ranges()[0] == f"bytes=-{DEFAULT_TAIL_SIZE}" and w.sent <= DEFAULT_TAIL_SIZE + 500, w
    assert r.size - r.footer.meta_start < DEFAULT_TAIL_SIZE < r.size  # what made it 2: INDEX + META fit
    with s3_proxy.window() as w:
        fs = DesFileSystem(fo=url, target_options=so, index_cache=None)
        assert fs.cat_file(names[7]) == body[names[7]]
    assert w.count() == w.count("GET") == 2, w


def test_index_bigger_than_the_tail_costs_one_more_get_for_what_it_lacked(s3_endpoint, s3_bucket, s3_proxy):
    """Read more only when needed: an INDEX + META past the tail costs exactly one more GET, for
    the bytes the tail lacked; a tail that covers them opens in one GET."""
    url = f"s3://{s3_bucket}/small-tail.des"
    names = [f"logs/2024/day-{i:05d}.jsonl" for i in range(10_000)]
    with DesWriter(url, fs=s3_endpoint.s3fs()) as w:
        w.add_many(names, b"".join(b"{}\n" for _ in names), [3] * len(names))
    so = s3_proxy.storage_options(s3_endpoint)
    tail = 64 * 1024
    with s3_proxy.window() as w:
        r = DesReader(url, storage_options=so, cache=None, tail_size=tail)
    assert r.footer.index_length > tail and len(r.names()) == 10_000
    assert w.count() == w.count("GET") == 2, w
    lo, hi = (int(x) for x in w.ranges()[1].removeprefix("bytes=").split("-"))
    assert hi + 1 == r.size - tail  # the second GET is exactly what the tail lacked

    tail = r.size - r.footer.meta_start
    with s3_proxy.window() as w:
        r2 = DesReader(url, storage_options=so, cache=None, tail_size=tail)
        fs = DesFileSystem(fo=url, target_options=so, index_cache=None, tail_size=tail)
    assert w.count("GET") == 2 and len(fs.find("logs")) == 10_000, w  # one per open
    assert r2.read("logs/2024/day-09999.jsonl") == b"{}\n"


def test_front_truncated_container_in_s3_is_a_format_error(s3_endpoint, s3_bucket, s3):
    # The size comes from the footer (no HEAD on open), so S3 answers "range not satisfiable" for
    # members past the real end; the reader must call that a truncated container, not a network error.
    # Bigger than the tail read, so the size is the footer's (a smaller object comes whole and is
    # refused at open: DATA outside the body).
    with DesWriter(f"s3://{s3_bucket}/whole.des", fs=s3) as w:
        w.add("a", b"a" * (DEFAULT_TAIL_SIZE + 100_000))
        w.add("b", b"b" * 10)
    s3.pipe(f"s3://{s3_bucket}/cut.des", s3.cat(f"s3://{s3_bucket}/whole.des")[5000:])
    r = DesReader(f"s3://{s3_bucket}/cut.des", fs=s3, cache=None)
    with pytest.raises(DesFormatError, match="truncated or corrupt.*footer describes a container of 2197507 bytes"):
        r.read("b")


def test_storage_failure_stays_an_oserror_naming_the_container(container, s3_endpoint):
    # The fault hook: every GET of the container answers 503 after the open.
    with CountingProxy(s3_endpoint.endpoint_url) as proxy:
        r = DesReader(container, storage_options=dict(proxy.storage_options(s3_endpoint),
                                                  config_kwargs={"retries": {"max_attempts": 1}}), cache=None)
        proxy.fault = lambda req: Respond(503, b"<Error><Code>SlowDown</Code></Error>") if req.method == "GET" else None
        with pytest.raises(OSError, match="many.des") as info:
            r.read("a.csv")
        assert not isinstance(info.value, DesFormatError)


def test_big_file_member_on_s3_through_des_urls(s3_endpoint, s3_bucket, s3_proxy):
    url = f"s3://{s3_bucket}/withbig.des"
    csv = b"id,v\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(20_000))
    with DesWriter(url, fs=s3_endpoint.s3fs(), big_file_threshold=100_000) as w:
        w.add("small.txt", b"s")
        w.add("big.csv", csv)
    assert s3_endpoint.s3fs().cat(f"{s3_bucket}/withbig/_bigFiles/big.csv") == csv
    so = s3_proxy.storage_options(s3_endpoint)
    with s3_proxy.window() as w:
        df = pd.read_csv(f"des://big.csv::{url}", storage_options={"s3": so})
    assert len(df) == 20_000 and df["v"].iloc[-1] == 19_999**2
    fs = DesFileSystem(fo=url, target_options=so, index_cache=IndexCache())
    assert fs.info("big.csv")["size"] == len(csv)
    with s3_proxy.window() as w:
        assert fs.cat_file("big.csv", 100_000, 100_050) == csv[100_000:100_050]
    assert w.count() == 1 and w.sent == 50, w  # a range of the _bigFiles object, not all of it
    with s3_proxy.window() as w:
        assert fs.cat(["small.txt", "big.csv"]) == {"small.txt": b"s", "big.csv": csv}
    assert w.count() == w.count("GET") == 2, w  # one per member: the size is in the index, no HEAD


def test_open_of_a_big_file_member_reads_by_range_without_a_head(s3_endpoint, s3_bucket, s3_proxy):
    url = f"s3://{s3_bucket}/withbig2.des"
    with DesWriter(url, fs=s3_endpoint.s3fs(), big_file_threshold=100_000) as w:
        w.add("big.bin", BIG)
    fs = DesFileSystem(fo=url, target_options=s3_proxy.storage_options(s3_endpoint), index_cache=IndexCache())
    fs.ls("")
    with s3_proxy.window() as w:
        with fs.open("big.bin", block_size=64 * 1024) as f:
            f.seek(1_000_000)
            assert f.read(10) == BIG[1_000_000:1_000_010]
    assert w.count() == w.count("GET") and w.sent <= 2 * 64 * 1024, w


def test_a_container_replaced_under_its_name_is_noticed_by_a_warm_reader(s3_endpoint, s3_bucket, s3_proxy, tmp_path):
    # Another process replaces the object (no cache invalidation in this process): the cached
    # index is stale. The first read that fails its checks re-reads the tail once and succeeds.
    url = f"s3://{s3_bucket}/replaced.des"
    with DesWriter(url, fs=s3_endpoint.s3fs()) as w:
        w.add("a.txt", b"old a\n")
        w.add("b.txt", b"old b\n")
    so = s3_proxy.storage_options(s3_endpoint)
    cache = IndexCache()
    assert DesReader(url, storage_options=so, cache=cache).read("b.txt") == b"old b\n"
    other = tmp_path / "new.des"
    with DesWriter(str(other)) as w:
        w.add("z.txt", b"a new first member, longer\n")
        w.add("b.txt", b"new b\n")
        w.add("c.txt", b"new c\n")
    s3_endpoint.s3fs().pipe(url, other.read_bytes())

    with s3_proxy.window() as w:
        warm = DesReader(url, storage_options=so, cache=cache)  # free: the stale index
        assert warm.read("b.txt") == b"new b\n"
    assert w.count("GET") == 3, w  # the stale member range, the tail again, the member
    assert warm.names() == ["z.txt", "b.txt", "c.txt"] and warm.read("c.txt") == b"new c\n"
    assert DesReader(url, storage_options=so, cache=cache).read_many(["b.txt", "c.txt"])["c.txt"] == b"new c\n"
    with pytest.raises(KeyError):
        DesReader(url, storage_options=so, cache=cache).read("absent.txt")

    # A corrupted replacement is read once more, not again and again: the member's GET answers 412
    # (the ETag changed), the tail is read again, the member once more, then the checksum error.
    data = bytearray(other.read_bytes())
    data[data.index(b"new c")] ^= 0x20
    s3_endpoint.s3fs().pipe(url, bytes(data))
    with s3_proxy.window() as w, pytest.raises(DesFormatError, match="'c.txt': checksum mismatch"):
        DesReader(url, storage_options=so, cache=cache).read("c.txt")
    assert w.count("GET") == 3, w


def test_reading_a_whole_member_through_open_is_one_get(container, s3_endpoint, s3_proxy):
    # pandas read_json(lines=True), Polars and Dask's JSON readers call open(member).read():
    # it was one GET per 8 KiB (256 for this 2 MiB member).
    so = s3_proxy.storage_options(s3_endpoint)
    fs = DesFileSystem(fo=container, target_options=so, index_cache=IndexCache())
    with s3_proxy.window() as w:
        with fs.open("big.bin") as f:
            assert f.read() == BIG
    assert w.count() == w.count("GET") == 1 and w.sent == len(BIG), w
    with s3_proxy.window() as w:
        with fs.open("big.bin", block_size=4096) as f:  # a small block size does not split it either
            assert f.read() == BIG
    assert w.count() == 1, w
