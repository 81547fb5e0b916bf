"""The package's import graph, parsed from the source: no cycles, and the core's boundaries hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"lmforge": REPO / "core", "lmforge.plugins": REPO / "plugins"}


def modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The lmforge modules ``name`` imports, at the top or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def core(name: str) -> bool:
    return name.startswith("lmforge") and not name.startswith("lmforge.plugins")


def test_the_core_has_no_import_cycle(graph):
    edges = {m: {d for d in deps if core(d)} for m, deps in graph.items() if core(m)}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_core_imports_no_plugin(graph):
    """Built-ins reach the core through entry points and hooks, like a third party's."""
    bad = {m: sorted(d for d in deps if not core(d)) for m, deps in graph.items() if core(m)}
    assert not {m: d for m, d in bad.items() if d}


def test_outside_the_engine_the_core_uses_only_its_entry_point(graph):
    """``lmforge.engine`` (and its config schemas) is all the run wiring and the commands see."""
    public = {"lmforge.engine", "lmforge.engine.config"}
    reaching = {
        m: sorted(d for d in deps if d.startswith("lmforge.engine.") and d not in public)
        for m, deps in graph.items()
        if core(m) and not m.startswith("lmforge.engine")
    }
    assert not {m: d for m, d in reaching.items() if d}


def test_the_graph_sees_the_imports_it_checks(graph):
    """The parser is not vacuous: the run wiring's known imports are found."""
    assert {"lmforge.engine", "lmforge.hydra_bridge", "lmforge.files"} <= graph["lmforge.run"]
    assert "lmforge.contracts" in graph["lmforge.loader"]


@pytest.mark.parametrize(
    "old,name",
    [
        ("lmforge.schemas", "TrainerConfig"),
        ("lmforge.schemas", "AdamWConfig"),
        ("lmforge.schemas", "CosineSchedulerConfig"),
        ("lmforge.contracts", "KIND_GROUPS"),
        ("lmforge.sweep_report", "SweepResultsCallback"),
    ],
)
def test_names_that_moved_still_import_with_a_warning(old, name):
    import importlib

    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match="moved|deprecated"):
        assert getattr(module, name) is not None


@pytest.mark.parametrize("old,name", [("lmforge.plugins.training.generate", "generate"), ("lmforge.plugins.training.losses", "lm_loss")])
def test_moved_engine_modules_still_import_with_a_warning(old, name):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to lmforge.engine"):
        module = importlib.import_module(old)
    assert callable(getattr(module, name))
