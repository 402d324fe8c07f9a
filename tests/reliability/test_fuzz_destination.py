"""Fuzzing the destination's stdin: any line gives either a stored record, an ignored message or an
InputError naming the line; never another exception, and committed data is never lost."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.destination import DestinationConfig, write_messages
from connector.destination.write import InputError
from connector.errors import ConnectorError
from connector.store import Store

CATALOG = {"streams": [{"stream": {"name": "s", "json_schema": {}}, "sync_mode": "full_refresh",
                        "destination_sync_mode": "append"}]}

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=10)
messages = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"type": st.sampled_from(["RECORD", "STATE", "LOG", "TRACE", "X"]),
                           "record": st.fixed_dictionaries({"stream": st.sampled_from(["s", "t", 1]), "data": json_values}),
                           "state": json_values}).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(messages, max_size=6))
def test_any_input_lines(tmp_path, lines):
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(dir=tmp_path)) / "store"  # fresh per example: a re-run would be deduplicated
    config = DestinationConfig.from_dict({"root_url": str(root)})
    good = b'{"type": "RECORD", "record": {"stream": "s", "data": {"k": 1}}}\n'
    try:
        write_messages(config, CATALOG, [good, *[line.replace(b"\n", b" ") + b"\n" for line in lines]], lambda b: None)
    except InputError as exc:
        assert "stdin line" in str(exc)
    except ConnectorError:
        pass  # e.g. a namespace that makes an invalid dataset name: named, not a crash
    assert _count(root) >= 1  # the good first line is committed in every case


def _count(root) -> int:
    if not root.exists():
        return 0
    with Store(str(root)) as store:
        return store.get_dataset("s").next_key if [d for d in store.list_datasets() if d.name == "s"] else 0


@pytest.mark.parametrize("line", [b"[" * 100_000 + b"]" * 100_000, b'{"type": "RECORD", "record": ' * 5000])
def test_deep_nesting_is_an_input_error(tmp_path, line):
    config = DestinationConfig.from_dict({"root_url": str(tmp_path / "store")})
    with pytest.raises(InputError, match="stdin line 1"):
        write_messages(config, CATALOG, [line + b"\n"], lambda b: None)
