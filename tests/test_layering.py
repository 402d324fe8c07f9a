"""The package's import graph: no cycle between modules, and data flows one way.

Read with ``ast`` over connector/**/*.py (nothing is imported). Imports under ``if TYPE_CHECKING``
are for type hints only and never run. An import inside a function runs after both modules are
loaded (a package loading its plugins on first use, e.g. source.formats), so it counts for the
layering rules but not for cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "connector"

# (importer package, packages it must not import): source -> Arrow -> store -> des, one way.
FORBIDDEN = [
    ("connector.store", ("connector.source",)),
    ("connector.source", ("connector.store",)),
    ("connector.des", ("connector.store", "connector.source")),
    # the server is a shell over the store; its clients stand alone (standard library HTTP, and the
    # generated gRPC code in connector.grpcapi, the contract both sides share)
    ("connector.store", ("connector.serve", "connector.client")),
    ("connector.serve", ("connector.source", "connector.client")),
    ("connector.client", ("connector.store", "connector.serve", "connector.des", "connector.source")),
    ("connector.grpcapi", ("connector.store", "connector.serve", "connector.client", "connector.des",
                           "connector.source")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module ``name`` refers to: itself, or the nearest package holding it (an attribute)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str) -> set[tuple[str, bool]]:
    """(imported module of this package, imported lazily inside a function) pairs of ``module``."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[tuple[str, bool]] = set()

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                visit_body(child.orelse, lazy)
            elif isinstance(child, ast.Import):
                found.update((_resolve(a.name), lazy) for a in child.names if a.name.split(".")[0] == "connector")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                if base.split(".")[0] == "connector":
                    for alias in child.names:
                        full = f"{base}.{alias.name}"
                        found.add((full if full in MODULES else _resolve(base), lazy))
            else:
                visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    def visit_body(body: list[ast.stmt], lazy: bool) -> None:
        for statement in body:
            visit(ast.Module(body=[statement], type_ignores=[]), lazy)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    found.discard((module, False))
    found.discard((module, True))
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges`` as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := walk(start)):
            return found
    return None


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_is_read():
    # The test is only as good as its parsing: known edges must be seen.
    assert ("connector.records", False) in GRAPH["connector.store.writer"]
    assert ("connector.store.names", False) in GRAPH["connector.store.reading"]
    assert ("connector.des", False) in GRAPH["connector.store.storage"]
    assert ("connector.records", True) in GRAPH["connector.source.formats.parquet"]


def test_no_import_cycle_between_modules():
    eager = {m: {t for t, lazy in imports if not lazy} for m, imports in GRAPH.items()}
    cycle = _cycle(eager)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(("importer", "forbidden"), FORBIDDEN)
def test_data_flows_one_way(importer, forbidden):
    wrong = sorted(f"{m} -> {t}" for m, imports in GRAPH.items() if _in(m, importer)
                   for t, _ in imports if any(_in(t, f) for f in forbidden))
    assert not wrong, "imports against the data flow: " + ", ".join(wrong)


def _private_imports() -> list[str]:
    """``module -> other.name`` for every ``from other import _name`` between two modules."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "connector":
                found += [f"{module} -> {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__") and node.module != module]
    return found


def test_no_module_imports_another_modules_private_names():
    # What a module needs from another is public there (named without "_"), or lives elsewhere.
    assert _private_imports() == []


# -- one storage policy (connector.storage) ---------------------------------------------------------

POLICY = "connector.storage"
#: Names of the storage stack: checking an exception's module against them is the policy's job.
STORAGE_LIBRARIES = {"aiohttp", "botocore", "aiobotocore", "s3fs", "fsspec", "asyncio"}


def _policy_copies(tree: ast.AST) -> list[str]:
    """What in ``tree`` re-implements a part of the storage policy, each as a short description."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"line {node.lineno}: sets .retries" for t in targets
                      if isinstance(t, ast.Attribute) and t.attr == "retries"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "startswith":
                constants = [c.value for a in node.args for c in ast.walk(a) if isinstance(c, ast.Constant)]
                if any(isinstance(c, str) and c in STORAGE_LIBRARIES for c in constants):
                    found.append(f"line {node.lineno}: tells storage-library exceptions apart by module")
            elif node.func.attr == "splitlines":
                receiver = node.func.value
                while isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute):
                    receiver = receiver.func.value  # str(exc).strip().splitlines()
                if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and receiver.func.id == "str":
                    found.append(f"line {node.lineno}: renders an error on one line")
        elif isinstance(node, ast.Constant) and node.value in ("total_max_attempts", "SlowDown", "Throttl"):
            found.append(f"line {node.lineno}: spells botocore's retry options or a transient-error marker")
    return found


def test_the_storage_policy_lives_in_one_module():
    # Retries, the library-error and transient-error tests, and the one-line error text are
    # connector.storage's; a second copy is how the three filters and the two builders drifted apart.
    copies = {m: c for m, path in MODULES.items() if m != POLICY
              for c in [_policy_copies(ast.parse(path.read_text(encoding="utf-8")))] if c}
    assert copies == {}


def test_the_policy_check_finds_copies():
    source = '''
fs.retries = 1
if type(exc).__module__.startswith(("botocore", "s3fs")): pass
first = str(exc).strip().splitlines()
config = {"retries": {"mode": "standard", "total_max_attempts": 4}}
'''
    assert len(_policy_copies(ast.parse(source))) == 4
    assert _policy_copies(ast.parse(MODULES[POLICY].read_text(encoding="utf-8")))  # the policy itself


def test_the_storage_policy_depends_on_no_package_of_ours():
    # Every package uses it, so it may use only the package's shared leaves.
    assert {t for t, _ in GRAPH[POLICY]} <= {"connector.errors"}


# The store is made of parts (connector.store.api); the facade Store is built from them, not they from it.
STORE_PARTS = ("storage", "oplog", "datasets", "history", "reading", "writer", "maintenance")
# Private names of other libraries' documented API: fsspec's protocol stripping (a classmethod every
# fsspec filesystem has) and namedtuple's methods.
FOREIGN_PRIVATE = {"_strip_protocol", "_replace", "_asdict", "_fields", "_make"}


def _own_names(tree: ast.AST) -> set[str]:
    """Attribute names a module defines itself: methods, class attributes, ``x.name = ...`` targets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.attr for t in targets if isinstance(t, ast.Attribute))
    return names


def _private_accesses(name: str, source: str) -> list[str]:
    """``name:line: expr._attr`` for every private attribute read from anything but ``self``/``cls``
    that the module does not define itself (another module's private field)."""
    tree = ast.parse(source)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr not in FOREIGN_PRIVATE and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_access_finder_sees_one():
    source = ("x = self.part._hidden\ny = self._own\nz = fs._strip_protocol(u)\nw = store._reader(d)\n"
              "class R:\n    _names: dict\n    def new(cls):\n        row = object()\n        return row._names\n")
    assert _private_accesses("m", source) == ["m:1: self.part._hidden", "m:4: store._reader"]


def test_store_parts_use_only_each_others_public_names():
    # A part reaching into another's private fields (or the facade's) ties them together again.
    wrong = [hit for module in sorted(m for m in MODULES if _in(m, "connector.store"))
             for hit in _private_accesses(module, MODULES[module].read_text(encoding="utf-8"))]
    assert wrong == []


@pytest.mark.parametrize("part", STORE_PARTS)
def test_store_parts_do_not_import_the_facade(part):
    imports = {m for m, _ in GRAPH[f"connector.store.{part}"]}
    assert "connector.store.api" not in imports and "connector.store" not in imports
    source = MODULES[f"connector.store.{part}"].read_text(encoding="utf-8")
    assert "connector.store.api" not in source  # not even for type hints


def test_store_has_no_writer_only_methods():
    # What only a writer session needs lives in its parts (Storage, OperationLog), not on Store.
    from connector.store import Store

    plumbing = {"publish", "spool_dir", "spool_prefix", "remove_stale_spools", "write_bytes", "list_range_objects",
                "checkpoint_files", "dumps", "loads", "url", "operation", "log", "compact_log"}
    assert plumbing & set(dir(Store)) == set()
