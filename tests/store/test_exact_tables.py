"""Store.to_table / read_range give back every stored value exactly, or a clear error."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from connector.store import Store
from connector.store.errors import StoreError
from connector.store.tables import TEXT_KEY


def _store(tmp_path, lines: list[bytes], per_call: int = 1 << 30) -> Store:
    store = Store(str(tmp_path / "store"), max_datapoints=per_call)
    store.create_dataset("d")
    with store.writer("d") as w:
        for i in range(0, len(lines), per_call):
            w.write_json_lines(lines[i:i + per_call])
    return store


@pytest.mark.parametrize("per_call", [1, 2, 100])  # in one container, and spread over several
def test_big_integers_come_back_as_their_text_not_as_doubles(tmp_path, per_call):
    lines = [b'{"i":1,"f":0.5}', b'{"i":123456789012345678901234,"f":9007199254740993}', b'{"i":-3,"f":1e400}']
    with _store(tmp_path, lines, per_call) as store:
        t = store.to_table("d")
        assert t.column("i").to_pylist() == ["1", "123456789012345678901234", "-3"]
        assert t.column("f").to_pylist() == ["0.5", "9007199254740993", "1e400"]
        assert TEXT_KEY in t.schema.field("i").metadata
        assert store.read_range("d", 1, 1).column("i").to_pylist() == ["123456789012345678901234"]


def test_exact_columns_keep_their_types(tmp_path):
    lines = [b'{"i":9007199254740992,"f":1.5,"s":"x","n":{"a":[1,2]}}', b'{"i":-9223372036854775808,"f":2,"s":null}']
    with _store(tmp_path, lines, 1) as store:
        t = store.to_table("d")
        assert t.column("i").to_pylist() == [9007199254740992, -9223372036854775808]
        assert t.column("f").to_pylist() == [1.5, 2.0] and t.column("s").to_pylist() == ["x", None]
        assert t.schema.field("i").metadata is None


@pytest.mark.parametrize("per_call", [1, 100])
def test_a_column_that_turns_to_text_reads_back(tmp_path, per_call):
    lines = [b'{"c":17}', b'{"c":18.5}', b'{"c":"A-17"}', b'{"c":true}', b'{"c":{"x":1}}', b'{"c":null}']
    with _store(tmp_path, lines, per_call) as store:
        assert store.to_table("d").column("c").to_pylist() == ["17", "18.5", "A-17", "true", '{"x":1}', None]


@pytest.mark.parametrize("per_call", [1, 100])
def test_text_that_looks_like_a_date_or_time_stays_text(tmp_path, per_call):
    """pyarrow.json takes such text for timestamp[s]: a date became a midnight, an offset was
    converted away (issue 13's round trip found it on a synced CSV date column)."""
    lines = [b'{"d":"2024-01-31","t":"2024-01-31T10:00:00+05:00","n":{"d":"0001-01-01","l":["2024-01-31 10:00"]}}',
             b'{"d":"1999-12-31","t":"2024-01-31T10:00","n":null}']
    with _store(tmp_path, lines, per_call) as store:
        t = store.to_table("d")
        assert t.column("d").to_pylist() == ["2024-01-31", "1999-12-31"]
        assert t.column("t").to_pylist() == ["2024-01-31T10:00:00+05:00", "2024-01-31T10:00"]
        assert t.column("n").to_pylist() == [{"d": "0001-01-01", "l": ["2024-01-31 10:00"]}, None]


@pytest.mark.parametrize("per_call", [1, 100])
def test_fractions_a_double_cannot_hold_come_back_as_their_text(tmp_path, per_call):
    """A decimal(20,4) of 17 digits became the nearest double (1004413618748.94)."""
    lines = [b'{"f":1004413618748.9399,"o":{"f":0.1}}', b'{"f":0.5,"o":{"f":12345678901234.5678}}',
             b'{"f":1.5e-320,"o":null}']
    with _store(tmp_path, lines, per_call) as store:
        t = store.to_table("d")
        assert t.column("f").to_pylist() == ["1004413618748.9399", "0.5", "1.5e-320"]
        assert t.column("o").to_pylist() == ['{"f":0.1}', '{"f":12345678901234.5678}', None]
    lines = [b'{"f":0.30000000000000004,"g":1e+16,"h":5e-324}']  # exact doubles stay doubles
    with _store(tmp_path / "exact", lines) as store:
        assert store.to_table("d").to_pylist() == [{"f": 0.30000000000000004, "g": 1e16, "h": 5e-324}]


@pytest.mark.parametrize("per_call", [1, 100])
def test_lists_of_nulls_come_back_as_stored(tmp_path, per_call):
    """pyarrow 26's JSON reader miscounts nulls in a list whose items are all null so far: [null,1]
    read as [1,0], [[null,null],[1]] as [[null,1],[null]], or an invalid array."""
    lines = [b'{"a":[null,1],"b":[null,null],"c":{"l":[null,null,null]}}', b'{"a":[null],"b":[2],"c":{"l":[null]}}',
             b'{"a":null,"b":[null,3],"c":{"l":["x",null]}}']
    with _store(tmp_path, lines, per_call) as store:
        assert store.to_table("d").to_pylist() == [
            {"a": [None, 1], "b": [None, None], "c": {"l": [None, None, None]}},
            {"a": [None], "b": [2], "c": {"l": [None]}},
            {"a": None, "b": [None, 3], "c": {"l": ["x", None]}}]


def test_duplicate_key_is_a_clear_error_naming_the_datapoint(tmp_path):
    with _store(tmp_path, [b'{"a":1}', b'{"b":{"a":1,"a":2}}']) as store:
        with pytest.raises(StoreError, match="datapoint 1 holds key 'a' twice"):
            store.to_table("d")
        assert store.read("d", 1) == b'{"b":{"a":1,"a":2}}\n'  # the bytes stay readable


_ints = st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
_values = st.one_of(st.none(), st.booleans(), _ints, st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=5))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.dictionaries(st.sampled_from("abc"), _values, max_size=3), min_size=1, max_size=12),
       per_call=st.sampled_from([1, 3, 50]))
def test_every_stored_value_reads_back_exactly(tmp_path_factory, rows, per_call):
    """Whatever the mix of values, each cell is the stored value, or (in a text column) its JSON text."""
    tmp_path = tmp_path_factory.mktemp("prop")
    lines = [json.dumps(r, separators=(",", ":")).encode() for r in rows]
    with _store(tmp_path, lines, per_call) as store:
        table = store.to_table("d")
    assert table.num_rows == len(rows)
    for name in table.column_names:
        text = table.schema.field(name).metadata is not None and TEXT_KEY in table.schema.field(name).metadata
        for row, got in zip(rows, table.column(name).to_pylist()):
            want = row.get(name)
            if want is None or got is None:
                assert want is None and got is None
            elif text:
                assert got == (want if isinstance(want, str) else json.dumps(want))
            elif isinstance(want, bool) or isinstance(got, bool):
                assert got is want
            elif isinstance(want, (int, float)):
                assert got == want and (not isinstance(want, int) or int(got) == want)
            else:
                assert got == want


def test_a_batch_with_two_columns_of_one_name_is_refused(tmp_path):
    """It would be stored as {"a":1,"a":2}, which no table reads back."""
    import pyarrow as pa

    with Store(str(tmp_path / "store")) as store:
        store.create_dataset("d")
        dup = pa.table([pa.array([1]), pa.array([2])], names=["a", "a"])
        nested = pa.table({"s": pa.array([{"x": 1, "y": 2}]).cast(pa.struct([("x", pa.int64()), ("x", pa.int64())]))})
        for batch, name in ((dup, "a"), (nested, "x")):
            with store.writer("d") as w:
                with pytest.raises(StoreError, match=f"two columns .* named '{name}'"):
                    w.write_batch(batch)
        assert store.dataranges("d") == []


def test_nested_booleans_beside_numbers_stay_booleans(tmp_path):
    """The exact path's conversion of nested values took true for 1.0 in a list of numbers."""
    lines = [b'{"l":[null,1.5,true],"m":[null,2]}', b'{"l":[2],"m":[null]}']
    with _store(tmp_path, lines) as store:
        t = store.to_table("d")
        assert t.column("l").to_pylist() == ["[null,1.5,true]", "[2]"]
        assert t.column("m").to_pylist() == [[None, 2], [None]]
