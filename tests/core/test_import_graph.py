"""The core's rooms stay one-way (docs/ARCHITECTURE.md): no import cycles, and no module imports one on a higher
floor. Read statically with `ast`, function-level (lazy) imports included: a lazy import is still a dependency,
and a circle through one breaks as soon as someone hoists it."""

from __future__ import annotations

import ast
from pathlib import Path

import meshdream

# Rooms by floor, lowest first; a room may import its own floor and those below.
FLOORS = [
    {"errors", "files", "tensors", "progress", "images", "client", "presets"},
    {"geometry"},
    {"shapes", "generators"},
    {"texturing"},
    {"create"},  # a sentence to a textured mesh: shapes, then texturing
    {"jobs"},  # the job table: kind -> core function (named, imported on first use)
    {""},  # meshdream/__init__.py, the public API: above all it re-exports
    {"batch", "server"},
    {"cli", "__main__"},
]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports anywhere in its body. `from x import y` counts as an import
    of the submodule x.y where that is a module, else of x."""
    name = package.name
    files = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    graph = {}
    for module, (path, is_pkg) in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == name}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_pkg else module.split(".")[:-1]
                    base = base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
                    source = ".".join(base)
                else:
                    source = node.module or ""
                if source.split(".")[0] != name:
                    continue
                targets |= {f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names}
        graph[module] = targets - {module}
    return graph


def floor(module: str) -> int:
    room = module.split(".")[1] if "." in module else ""
    for level, rooms in enumerate(FLOORS):
        if room in rooms:
            return level
    raise AssertionError(f"{module} is in no room of FLOORS: give it a floor in {__file__}")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per import cycle found by depth-first search (each back edge closes one)."""
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                found.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} imports {t}" for m in sorted(graph) for t in sorted(graph[m]) if floor(t) > floor(m)]


def test_the_core_has_no_import_cycles_and_no_upward_imports():
    graph = import_graph(Path(meshdream.__file__).parent)
    assert len(graph) > 50 and "meshdream.generators.builtin" in graph["meshdream.generators.loading"]
    assert cycles(graph) == []
    assert violations(graph) == []


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "meshdream"
    (pkg / "geometry").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "geometry" / "__init__.py").write_text("from .mesh import load\n")
    (pkg / "geometry" / "mesh.py").write_text("def load():\n    from ..texturing import paint\n")
    (pkg / "texturing.py").write_text("from .geometry.mesh import load\n")
    graph = import_graph(pkg)
    assert graph["meshdream.geometry"] == {"meshdream.geometry.mesh"}
    assert cycles(graph) == [["meshdream.geometry.mesh", "meshdream.texturing", "meshdream.geometry.mesh"]]
    assert violations(graph) == ["meshdream.geometry.mesh imports meshdream.texturing"]
