"""The helpers the packages share: atomic local writes, JSON config files, JSON Schema errors."""

from __future__ import annotations

import json
import os

import pytest

from connector.config import check_against, load_json_file, secret_fields
from connector.destination.config import DestinationConfig
from connector.destination.config import load_spec as destination_spec
from connector.errors import ConfigError
from connector.files import temp_name, write_atomically
from connector.source.config import SourceConfig
from connector.source.config import load_spec as source_spec
from connector.sync import load_state, save_state


def test_write_atomically_replaces_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "new" / "folder" / "f.json"
    write_atomically(str(target), b"one")
    write_atomically(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["f.json"]


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomically(str(target), "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_temp_name_is_a_hidden_sibling():
    assert temp_name("a/b/c.json").startswith("a/b/.c.json.") and temp_name("a/b/c.json").endswith(".partial")
    assert temp_name("c").startswith(".c.") and temp_name("c") != temp_name("c")


def test_state_file_round_trip(tmp_path):
    path = str(tmp_path / "s" / "state.json")
    save_state(path, {"b": {"x": 1}, "a": [1, "é"]})
    assert load_state(path) == {"b": {"x": 1}, "a": [1, "é"]}
    assert os.listdir(tmp_path / "s") == ["state.json"]


def test_config_files_fail_with_one_message_each(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a": 1}))
    assert load_json_file(str(good), "config") == {"a": 1}
    with pytest.raises(ConfigError, match=r"^catalog file not found: .*missing\.json$"):
        load_json_file(str(tmp_path / "missing.json"), "catalog")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match=r"^config file .*bad\.json is not valid JSON: "):
        load_json_file(str(bad), "config")
    with pytest.raises(ConfigError, match=r"^cannot read state file "):
        load_json_file(str(tmp_path), "state")


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET"


@pytest.mark.parametrize("spec", [source_spec, destination_spec])
def test_schema_errors_name_the_field_and_never_a_secret(spec):
    for raw, field in [({"root_url": "x", "access_key_id": "A", "secret_access_key": ["x", SECRET]}, "'secret_access_key'"),
                       ({"root_url": "x", "access_key_id": 12345, "secret_access_key": "s"}, "'access_key_id'"),
                       ({"root_url": "x", "retry_count": "many"}, "'retry_count'"),
                       ({"root_url": "x", "colour": "red"}, "colour")]:
        with pytest.raises(ConfigError) as info:
            check_against(spec(), raw)
        message = str(info.value)
        assert field in message and SECRET not in message and "12345" not in message


def test_both_configs_describe_errors_alike():
    raw = {"root_url": "x", "retry_count": "many"}
    messages = []
    for parse in (SourceConfig.from_dict, DestinationConfig.from_dict):
        with pytest.raises(ConfigError) as info:
            parse(raw)
        messages.append(str(info.value))
    assert messages[0] == messages[1] == "config field 'retry_count': 'many' is not of type 'integer'"


def test_every_secret_the_spec_marks_is_kept_out_of_messages():
    assert {"access_key_id", "secret_access_key", "session_token"} <= secret_fields(source_spec())
    with pytest.raises(ConfigError) as info:
        check_against(source_spec(), {"root_url": "x", "session_token": ["x", SECRET]})
    assert "'session_token'" in str(info.value) and SECRET not in str(info.value)
