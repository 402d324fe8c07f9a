"""Per-record metadata columns kept beside record datapoints (connector.store.columns)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.store import Store
from connector.store.columns import ColumnsBuilder, Constant, concat, expand, expand_arrays

values = st.one_of(st.integers(-2**70, 2**70), st.none(), st.booleans(), st.text(max_size=3),
                   st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@given(st.lists(st.lists(values, min_size=1, max_size=20), min_size=1, max_size=4))
@settings(max_examples=60, deadline=None)
def test_columns_round_trip_through_runs_and_concat(calls):
    parts, flat = [], []
    for call in calls:
        builder = ColumnsBuilder("_id")
        builder.add(len(call), {"c": call, "k": Constant(7)})
        parts.append((len(call), builder.meta()))
        flat.extend(call)
    got = expand(concat(parts), 0, len(flat))
    assert got["c"] == flat and all(type(a) is type(b) for a, b in zip(got["c"], flat))
    assert got["k"] == [7] * len(flat)
    ids = got["_id"]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i).version == 4 for i in ids)
    lo, hi = len(flat) // 3, len(flat) - len(flat) // 4
    assert expand(concat(parts), lo, hi)["c"] == flat[lo:hi]
    # The Arrow expansion (to_table(meta=True)) gives the same ids and values.
    ints = [(len(call), {"row_ids": m["row_ids"], "columns": {"k": m["columns"]["k"]}}) for call, (_, m) in zip(calls, parts)]
    arrays = expand_arrays(concat(ints), lo, hi)
    assert arrays["_id"].to_pylist() == ids[lo:hi] and arrays["k"].to_pylist() == [7] * (hi - lo)


def test_columns_kept_through_store_reads_and_aggregate(tmp_path):
    with Store(str(tmp_path), max_datapoints=3) as store:
        store.ensure_dataset("d")
        with store.writer("d", row_ids="_id") as w:
            w.write_json_lines([b'{"a":1}', b'{"a":2}'], columns={"at": [5, 5], "g": Constant(1)})
            w.write_json_lines([b'{"a":3}'], columns={"at": [6], "g": Constant(1)})
            w.write_json_lines([b'{"a":4}', b'{"a":5}'], columns={"at": [7, 8], "g": Constant(2)})
        before = store.to_table("d", meta=True).to_pylist()
        assert [(r["a"], r["at"], r["g"]) for r in before] == [(1, 5, 1), (2, 5, 1), (3, 6, 1), (4, 7, 2), (5, 8, 2)]
        assert store.read("d", 3) == b'{"a":4}\n'  # the record's bytes are untouched
        assert store.read_meta("d", 3) == {"_id": before[3]["_id"], "at": 7, "g": 2}
        assert store.read_range("d", 1, 3, meta=True).column("at").to_pylist() == [5, 6, 7]
        store.aggregate("d", 0, 4)
        assert len(store.dataranges("d")) == 1
        assert store.to_table("d", meta=True).to_pylist() == before
        assert store.to_table("d").column_names == ["a"]


def test_latest_by_keeps_the_last_record_of_each_key_in_order(tmp_path):
    import pytest

    from connector.store.errors import StoreError

    with Store(str(tmp_path), max_datapoints=2) as store:
        store.ensure_dataset("d")
        store.write_records("d", [[{"id": 1, "k": "x", "v": 0}, {"id": 2, "k": "x", "v": 1}, {"id": 1, "k": "y", "v": 2},
                                   {"id": 1, "k": "x", "v": 3}, {"id": None, "k": "x", "v": 4}]])
        assert store.to_table("d", latest_by=["id"]).column("v").to_pylist() == [1, 3, 4]
        assert store.to_table("d", latest_by=["id", "k"]).column("v").to_pylist() == [1, 2, 3, 4]
        assert store.read_range("d", 0, 2, latest_by=["id"]).column("v").to_pylist() == [1, 2]
        with pytest.raises(StoreError, match="no field 'nope'"):
            store.to_table("d", latest_by=["nope"])


def test_data_region_check_still_runs_when_the_first_member_carries_columns(tmp_path):
    """The first member's META with columns is longer than the few bytes read after DATA: the
    DATA region's CRC must still be found and checked (a corrupt byte is an error, not data)."""
    import pytest

    from connector.errors import DesFormatError

    with Store(str(tmp_path)) as store:
        store.ensure_dataset("d")
        with store.writer("d", row_ids="_id") as w:
            w.write_json_lines([b'{"a":1}', b'{"a":2}'], columns={"at": [5, 6], "m": Constant({"x": {"y": 1}})})
        (d,) = store.dataranges("d")
        path = store.fs._strip_protocol(d.url)
        blob = bytearray(open(path, "rb").read())
        blob[16 + 5] = ord("7")  # {"a":1} -> {"a":7}: still JSON, wrong bytes
        open(path, "wb").write(bytes(blob))
        with pytest.raises(DesFormatError, match="data_crc32"):
            store.to_table("d")
