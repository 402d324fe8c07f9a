"""Config validation: every bad field is named, secrets are never echoed."""

from __future__ import annotations

import pytest

from connector.errors import ConfigError
from connector.source import Source
from connector.source.config import SourceConfig, load_spec


def test_spec_is_draft7_and_marks_secrets():
    spec = load_spec()
    assert spec["$schema"].startswith("http://json-schema.org/draft-07")
    for field in ("access_key_id", "secret_access_key"):
        assert spec["properties"][field]["airbyte_secret"] is True
    for olake_field in ("bucket_name", "region", "file_format", "path_prefix", "endpoint", "max_threads",
                        "retry_count", "csv"):
        assert olake_field in spec["properties"]


def test_defaults():
    c = SourceConfig.from_dict({"root_url": "testdata"})
    assert (c.max_threads, c.retry_count, c.stream_depth, c.on_bad_record, c.file_format) == (10, 3, 1, "fail", "auto")
    assert c.csv.delimiter == "," and c.csv.has_header is True


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"root_url": "x", "max_threads": "ten"}, "'max_threads'"),
        ({"root_url": "x", "max_threads": 0}, "'max_threads'"),
        ({"root_url": "x", "file_format": "xml"}, "'file_format'"),
        ({"root_url": "x", "on_bad_record": "ignore"}, "'on_bad_record'"),
        ({"root_url": "x", "csv": {"delimiter": ";;"}}, "'csv.delimiter'"),
        ({"root_url": "x", "streams": [{"name": "a"}]}, "globs"),
        ({"root_url": "x", "start_date": "yesterday"}, "start_date"),
        ({"root_url": "x", "colour": "red"}, "colour"),
        ({}, "root_url"),
        ({"root_url": "x", "bucket_name": "b"}, "exactly one"),
        ({"bucket_name": "b", "access_key_id": "AKIA"}, "secret_access_key"),
        ([], "JSON object"),
    ],
)
def test_bad_config_names_the_field(config, needle):
    with pytest.raises(ConfigError) as info:
        Source(config)
    assert needle in str(info.value)


def test_secret_values_never_in_messages():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET"
    with pytest.raises(ConfigError) as info:
        Source({"bucket_name": "b", "access_key_id": 12345, "secret_access_key": secret})
    assert "12345" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        Source({"bucket_name": "b", "access_key_id": "AKIA", "secret_access_key": ["x", secret]})
    assert secret not in str(info.value)
    assert secret not in repr(SourceConfig.from_dict({"bucket_name": "b", "access_key_id": "A", "secret_access_key": secret}))


def test_start_date_filters_old_files(tmp_path):
    from datetime import datetime, timezone

    from tests.source.helpers import write_local

    write_local(tmp_path, {"s/old.csv": b"a\n1\n"}, datetime(2020, 1, 1, tzinfo=timezone.utc))
    write_local(tmp_path, {"s/new.csv": b"a\n2\n"}, datetime(2024, 1, 1, tzinfo=timezone.utc))
    src = Source({"root_url": str(tmp_path), "start_date": "2023-01-01T00:00:00Z"})
    assert [f.key for f in src.files("s")] == ["s/new.csv"]


@pytest.mark.parametrize("spec", ["source.json", "destination.json"])
def test_every_option_of_the_spec_is_described(spec):
    """Airbyte's UI shows each option's description; an option without one is undocumented."""
    import json
    from pathlib import Path

    def undescribed(node, path: str):
        if not isinstance(node, dict):
            return
        for name, prop in node.get("properties", {}).items():
            if "description" not in prop:
                yield f"{path}{name}"
            yield from undescribed(prop, f"{path}{name}.")
        for key in ("items", "oneOf", "anyOf"):
            for sub in (node[key] if isinstance(node.get(key), list) else [node.get(key)]):
                yield from undescribed(sub, f"{path}[].")

    root = json.loads((Path(__file__).resolve().parents[2] / "spec" / spec).read_text())
    assert list(undescribed(root, "")) == []
