"""The package's layout: imports flow one way between its rooms and never in a circle.

Rooms, lowest first (a module may import its own room and the rooms below it):
    foundation  ifcsr, ifcsr.errors, ifcsr.lazy, ifcsr.provenance, ifcsr.quiet
    weights     ifcsr.weights.*      downloads and caches of weights
    data        ifcsr.data.*         images, sample photos, degradations, datasets
    core        ifcsr.<module>       the paper: config, models, blend, losses, train, ...
    evaluation  ifcsr.evaluation.*   metrics, sweeps, baselines, benchmarks
    widgets     ifcsr.widgets.*      the explorer, curves, figures
    cli         ifcsr.cli.*          the command line
Every import counts, also those inside functions (lazy ones): parsed with `ast`, nothing is run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ifcsr"
ROOMS = ("foundation", "weights", "data", "core", "evaluation", "widgets", "cli")
FOUNDATION = {"ifcsr", "ifcsr.errors", "ifcsr.lazy", "ifcsr.provenance", "ifcsr.quiet"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ROOMS:
        return parts[1]
    return "core"


def _target(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    """The ifcsr module `name` refers to (a module, or the module holding the attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every ifcsr module that `module` imports, anywhere in its file."""
    path = MODULES[module]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _target(module, path.name == "__init__.py", node)
            names = [f"{base}.{a.name}" for a in node.names]  # `from pkg import module` names the module
        else:
            continue
        for name in names:
            if name == "ifcsr" or name.startswith("ifcsr."):
                known = _known(name)
                if known is not None and known != module:
                    out.add(known)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_rooms_exist_and_every_module_is_in_one():
    assert {room(m) for m in MODULES} == set(ROOMS)
    for sub in ROOMS[1:3] + ROOMS[4:]:
        assert (PACKAGE / sub / "__init__.py").is_file(), sub


def test_imports_flow_one_way():
    upward = [f"{m} ({room(m)}) imports {d} ({room(d)})" for m, deps in GRAPH.items() for d in sorted(deps)
              if ROOMS.index(room(d)) > ROOMS.index(room(m))]
    assert not upward, "imports against the flow:\n" + "\n".join(upward)


def test_no_import_cycles():
    # Tarjan's strongly connected components over the whole graph (lazy imports included).
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other (directly or round a loop): {cycles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_holds(module):
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text()))
    assert doc and len(doc.split()) >= 8, f"{module} opens with no docstring saying what it holds"


def test_a_known_upward_import_is_caught(tmp_path, monkeypatch):
    """The checker itself: an evaluation module imported from the core is reported."""
    fake = dict(GRAPH)
    fake["ifcsr.blend"] = GRAPH["ifcsr.blend"] | {"ifcsr.evaluation.metrics"}
    monkeypatch.setattr(__import__(__name__), "GRAPH", fake, raising=False)
    monkeypatch.setitem(globals(), "GRAPH", fake)
    with pytest.raises(AssertionError, match="ifcsr.blend \\(core\\) imports ifcsr.evaluation.metrics"):
        test_imports_flow_one_way()
