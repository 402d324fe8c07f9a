"""Object names without their session tag, for tests that check which containers exist."""

from __future__ import annotations

import re

_TAG = re.compile(r"\.[0-9a-f]{16}(?=\.(?:des|json)$)")


def untagged(name: str) -> str:
    """``00..0-00..9.des`` for ``00..0-00..9.<tag>.des`` (and the same for checkpoint files)."""
    return _TAG.sub("", name.rsplit("/", 1)[-1])
