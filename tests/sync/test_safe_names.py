"""safe_member_name: any object key becomes a valid member name that decodes back to it."""

from __future__ import annotations

from urllib.parse import unquote

import hypothesis.strategies as st
from hypothesis import given, settings

from connector.des.names import safe_member_name, validate_member_name


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_every_key_gets_a_valid_reversible_name(key):
    name = safe_member_name(key)
    validate_member_name(name)
    try:
        validate_member_name(key)
        assert name == key  # valid names are kept as they are
    except ValueError:
        assert unquote(name) == key


def test_examples():
    assert safe_member_name("a//b") == "a%2F%2Fb" and safe_member_name("..") == "%2E%2E"
    assert safe_member_name("x\\y\x01") == "x%5Cy%01" and safe_member_name("docs/ok.json") == "docs/ok.json"
