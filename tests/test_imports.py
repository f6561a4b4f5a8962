"""The import graph of ``onnxgrad`` has no cycle.

Every ``import`` of an onnxgrad module counts, at module level or inside a
function (a lazy import hides a cycle from Python, not from a reader); only
imports under ``if TYPE_CHECKING:`` are left out, since they never run.
Edges from a module into its own parent package (``import onnxgrad`` inside
``onnxgrad._x``) are left out too: Python imports the parent first anyway.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports when it runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while stack:
        for node in ast.iter_child_nodes(stack.pop()):
            if _type_checking_only(node):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    found.add(target if target in modules else base)
            stack.append(node)
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def import_cycles(package: pathlib.Path) -> list[list[str]]:
    """Each import cycle among the package's modules, as the modules on it (Tarjan's components)."""
    modules = _modules(package)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_onnxgrad_has_no_import_cycle():
    cycles = import_cycles(ROOT / "onnxgrad")
    assert cycles == [], (
        f"Import cycles among {cycles}: move what both sides need into a lower module (as _graph, _spec and "
        "_parameter are), or import the other side for typing only under `if TYPE_CHECKING:`."
    )


def test_a_lazy_import_cycle_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (package / "d.py").write_text("from . import c\nimport pkg\n")
    assert import_cycles(package) == [["pkg.a", "pkg.b"]]
