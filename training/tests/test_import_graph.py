"""The ``dlip`` package's imports point one way: no cycle between modules, and none between subpackages.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` anywhere in a module
(module level, inside functions, under ``TYPE_CHECKING``), relative or absolute. A function-level import still
makes a dependency; it only postpones the import error a cycle would cause, so it counts here.

Nodes of the subpackage graph are ``dlip``'s subpackages (``dlip.train``, ``dlip.eval``, ...) and its top-level
modules (``dlip.config``, ``dlip.cli``, ...), each one node.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dlip

ROOT = Path(dlip.__file__).resolve().parent


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root`` (``__init__`` names its package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. ``from pkg import name`` points at ``pkg.name`` when that is a
    module, else at ``pkg``."""
    files = module_files(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    targets.add(full if full in files else module)
        graph[name] = {t for t in targets if t.split(".")[0] == top and t in files and t != name}
    return graph


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def node(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module.count(".") == 0:
            continue  # the package's own __init__
        src = node(module)
        out.setdefault(src, set()).update(node(t) for t in targets if node(t) != src and t.count("."))
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None. Depth-first search; deterministic (sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _evidence(graph: dict[str, set[str]], cycle: list[str]) -> str:
    """For a subpackage cycle: which module imports which, per edge."""
    modules = import_graph(ROOT)
    lines = []
    for a, b in zip(cycle, cycle[1:]):
        pairs = sorted(f"{m} -> {t}" for m, ts in modules.items() for t in ts
                       if (m == a or m.startswith(a + ".")) and (t == b or t.startswith(b + ".")))
        lines.append(f"  {a} -> {b}: {', '.join(pairs[:3])}{' ...' if len(pairs) > 3 else ''}")
    return "\n".join(lines)


def test_no_cycle_between_modules():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle)


def test_no_cycle_between_subpackages():
    graph = subpackage_graph(import_graph(ROOT))
    cycle = find_cycle(graph)
    assert cycle is None, ("import cycle between subpackages: " + " -> ".join(cycle) + "\n"
                           + _evidence(graph, cycle))


# ---------------------------------------------------------------------------------------------------------------------
# The scan itself, on planted packages
# ---------------------------------------------------------------------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_a_cycle_hidden_in_a_function_is_found_and_named(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/one.py": "from ..b.two import f\n",
        "b/__init__.py": "",
        "b/two.py": "def f():\n    from pkg.a import one\n    return one\n",
        "c.py": "import pkg.a.one\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.a.one"] == {"pkg.b.two"} and graph["pkg.b.two"] == {"pkg.a.one"}
    assert graph["pkg.c"] == {"pkg.a.one"}
    assert find_cycle(graph) == ["pkg.a.one", "pkg.b.two", "pkg.a.one"]
    assert find_cycle(subpackage_graph(graph)) == ["pkg.a", "pkg.b", "pkg.a"]


def test_a_cycle_only_between_subpackages_is_found(tmp_path):
    """Modules a.x -> b.y and b.z -> a.w form no module cycle, but the subpackages a and b import each other."""
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/x.py": "from ..b import y\n",
        "a/w.py": "",
        "b/__init__.py": "",
        "b/y.py": "",
        "b/z.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a.w import T\n",
    })
    graph = import_graph(pkg)
    assert find_cycle(graph) is None
    assert find_cycle(subpackage_graph(graph)) == ["pkg.a", "pkg.b", "pkg.a"]


def test_an_acyclic_package_passes(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "from .x import f\n",
        "a/x.py": "import os\nfrom . import y\n",
        "a/y.py": "",
        "top.py": "from .a import x\nfrom pkg.a.y import *\n",
    })
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.a.x"}, "pkg.a.x": {"pkg.a.y"}, "pkg.a.y": set(),
                     "pkg.top": {"pkg.a.x", "pkg.a.y"}}
    assert find_cycle(graph) is None and find_cycle(subpackage_graph(graph)) is None
