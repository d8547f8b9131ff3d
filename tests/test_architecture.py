"""The package's layout keeps its promises (issue 12): stages in their folders, no
import cycles, small modules, exceptions in one place, no formulaic internals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mixedmodels"
MAX_LINES = 650


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(["mixedmodels", *parts])] = (path, is_package)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(sub) for sub in ast.walk(node)}
    return skipped


def _import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports at run time (deferred imports included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skipped or not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("mixedmodels"):
                target = node.module
            else:
                continue
            for alias in node.names:
                imported = f"{target}.{alias.name}"
                imported = imported if imported in modules else target
                if imported in modules and imported != name:
                    graph[name].add(imported)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("stage", ["formula", "design", "engine", "models", "results", "inference"])
def test_each_stage_has_its_folder(stage):
    assert (PACKAGE / stage / "__init__.py").exists()


def test_frontends_have_their_folder():
    for front in ("cli.py", "dask/__init__.py", "statsmodels/__init__.py"):
        assert (PACKAGE / "frontends" / front).exists()


def test_modules_are_small():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path, _ in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_exceptions_and_warnings_live_in_errors():
    elsewhere = []
    for name, (path, _) in _modules().items():
        if name == "mixedmodels.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Warning", "Exception")) for b in bases):
                    elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []


def test_no_formulaic_internals():
    for path, _ in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("formulaic.parser"), path
