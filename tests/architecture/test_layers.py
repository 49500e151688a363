"""The layer contract: edgekd's floors only point down, and no module imports another in a cycle.

Every import counts, including those inside functions (a lazy import is how a cycle hides). Floors, top
to bottom; a module may import its own package and any lower floor, never a higher one nor a sibling
on its own floor:

    cli → api → pipeline → latency → {device, learn} → {compile, structure, data} → config
        → {models, results} → {errors, paths, atomic}

``edgekd.testing`` (fixtures shared by tests and benchmark scripts) sits above everything and nothing in
the package may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "edgekd"

FLOORS: list[set[str]] = [
    {"testing"},
    {"__main__"},
    {"cli"},
    {"api"},
    {"pipeline"},
    {"latency"},
    {"device", "learn"},
    {"compile", "structure", "data"},
    {"config"},
    {"models", "results"},
    {"errors", "paths", "atomic"},
]
FLOOR_OF = {name: level for level, names in enumerate(FLOORS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str) -> set[str]:
    """The edgekd modules ``name`` imports (``from pkg import submodule`` counts as the submodule)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node, name, path.name == "__init__.py")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t == "edgekd" or t.startswith("edgekd."))
    found.discard(name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def floor(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) == 1:  # the package itself (edgekd/__init__.py): only a docstring and the version
        return "edgekd", -1
    top = parts[1]
    if top not in FLOOR_OF:
        raise AssertionError(f"{module}: edgekd.{top} has no floor in the layer contract; add it to FLOORS")
    return top, FLOOR_OF[top]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    top, level = floor(module)
    wrong = []
    for target in sorted(GRAPH[module]):
        other, other_level = floor(target)
        if other == top or level == -1:
            continue
        if other_level <= level:
            wrong.append(f"{target} (floor {other_level}: {'/'.join(sorted(FLOORS[other_level]))})")
    assert not wrong, f"{module} (floor {level}) imports up or sideways: {', '.join(wrong)}"


CLI_MAY_IMPORT = ("edgekd.api", "edgekd.cli", "edgekd.errors")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("edgekd.cli")))
def test_the_cli_calls_only_the_api(module):
    wrong = sorted(t for t in GRAPH[module] if not any(t == a or t.startswith(a + ".") for a in CLI_MAY_IMPORT))
    assert not wrong, f"{module} reaches past edgekd.api: {', '.join(wrong)}"


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_local_device_needs_no_ssh():
    """``--device local`` must work without paramiko: nothing it imports pulls in the SSH transport."""
    assert "edgekd.device.ssh" not in reachable("edgekd.device.local")


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target in GRAPH and not state.get(target):
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if not state.get(name):
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_the_contract_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The checker itself: a lazy import of the pipeline inside a structure function is found."""
    planted = PACKAGE / "structure" / "groups.py"
    source = planted.read_text() + "\n\ndef _planted():\n    from edgekd.pipeline import compress  # noqa: F401\n"
    monkeypatch.setitem(MODULES, "edgekd.structure._planted", tmp_path / "planted.py")
    (tmp_path / "planted.py").write_text(source)
    assert "edgekd.pipeline.compress" in imports_of("edgekd.structure._planted")
    with pytest.raises(AssertionError, match="imports up or sideways"):
        GRAPH["edgekd.structure._planted"] = imports_of("edgekd.structure._planted")
        try:
            test_imports_point_down("edgekd.structure._planted")
        finally:
            del GRAPH["edgekd.structure._planted"]


def test_scripts_never_import_tests():
    """Benchmark scripts use the package (``edgekd.testing`` for fixtures), never the test tree."""
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    offenders = []
    for path in sorted(scripts.glob("*.py")):
        text = path.read_text()
        if "from tests" in text or "import tests" in text or '"tests"' in text:
            offenders.append(path.name)
    assert not offenders, f"scripts reaching into tests/: {', '.join(offenders)}"
