"""The documentation's sections: README.md and the pages under docs/ mark the parts the tests run
with ``<!-- section:NAME -->`` ... ``<!-- /section:NAME -->``. A section may move from the README
to a page (or back) without any test changing: it is found wherever it is, once.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def documents() -> list[Path]:
    """README.md, then the pages under docs/ (by name)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def section(name: str) -> str:
    """The text between the markers of section ``name``; AssertionError unless exactly one
    document holds it, once."""
    found = [(path, m.group(1)) for path in documents()
             for m in re.finditer(rf"<!-- section:{re.escape(name)} -->(.*?)<!-- /section:{re.escape(name)} -->",
                                  path.read_text(encoding="utf-8"), re.S)]
    where = ", ".join(str(p.relative_to(ROOT)) for p, _ in found)
    assert len(found) == 1, f"section {name!r}: expected once in README.md or docs/*.md, found {len(found)}: {where}"
    return found[0][1]


def blocks(name: str, lang: str) -> list[str]:
    """The fenced ``lang`` code blocks of section ``name``, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", section(name), re.S)
