"""Every public definition of the package says what it is: a docstring on each public module, class,
function and method.

Public: a name without a leading underscore, in a module whose dotted path has no part with one.
Read with ``ast`` (nothing is imported): top-level classes and functions, and the methods (and
properties) of public classes. ``__init__`` and other dunders are covered by their class's docstring;
``@overload`` stubs by the implementation's.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "connector"

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _public(name: str) -> bool:
    return not name.startswith("_")


def _is_overload(node: Definition) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "overload" or isinstance(d, ast.Attribute) and d.attr == "overload"
               for d in node.decorator_list)


def _definitions(body: list[ast.stmt]) -> list[Definition]:
    return [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def missing_docstrings(module: str, source: str) -> list[str]:
    """``module.qualname`` of every public definition of ``source`` without a docstring."""
    tree = ast.parse(source)
    missing = [] if ast.get_docstring(tree) else [module]
    for node in _definitions(tree.body):
        if not _public(node.name) or _is_overload(node):
            continue
        if not ast.get_docstring(node):
            missing.append(f"{module}.{node.name}")
        if isinstance(node, ast.ClassDef):
            missing += [f"{module}.{node.name}.{m.name}" for m in _definitions(node.body)
                        if _public(m.name) and not _is_overload(m) and not ast.get_docstring(m)]
    return missing


def _public_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if all(_public(p) for p in parts):
            out[".".join(parts)] = path
    return out


def test_the_walk_finds_what_lacks_a_docstring():
    source = ('"""m."""\n'
              "def f(): pass\n"
              "def _hidden(): pass\n"
              'class C:\n    """c."""\n    def m(self): pass\n    def _p(self): pass\n    def __init__(self): pass\n'
              "class _D:\n    def m(self): pass\n"
              'def g():\n    """g."""\n    def inner(): pass\n')
    assert missing_docstrings("m", source) == ["m.f", "m.C.m"]
    assert missing_docstrings("n", "x = 1\n") == ["n"]


def test_public_modules_are_walked():
    modules = _public_modules()
    assert "connector.store.api" in modules and "connector.des" in modules
    assert not any(part.startswith("_") for m in modules for part in m.split("."))


def test_every_public_definition_has_a_docstring():
    missing = [name for module, path in _public_modules().items()
               for name in missing_docstrings(module, path.read_text(encoding="utf-8"))]
    assert missing == [], f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)
