"""Docs, hookspecs and modules stay in step with the code."""

from __future__ import annotations

import inspect
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import lmforge
from lmforge import hookspecs
from lmforge.contracts import KINDS
from lmforge.testing import TokenizerContract

REPO = Path(__file__).resolve().parents[1]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "lmforge_spec")]


def test_there_are_hookspecs():
    assert {"register_models", "register_collectors", "config_package"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_has_a_full_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc.split()) >= 20, f"{hook} needs a docstring saying when it is called, its arguments and result"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_is_documented_in_the_plugin_guide(hook):
    guide = (REPO / "docs" / "plugins.md").read_text()
    assert f"### `{hook}`" in guide, f"docs/plugins.md has no '### `{hook}`' section"


@pytest.mark.parametrize("group", list(KINDS))
def test_every_kind_is_a_row_of_the_plugin_guides_kinds_table(group):
    """The guide's table gives each kind's group, hook, base class and contract suite."""
    kind = KINDS[group]
    cells = [f"`{group}`", f"`{kind.hook}`", f"`{kind.base.__name__}`", f"`{kind.base.__name__}Contract`"]
    rows = [line for line in (REPO / "docs" / "plugins.md").read_text().splitlines() if line.startswith(f"| `{group}` |")]
    assert any(all(cell in row for cell in cells) for row in rows), f"docs/plugins.md has no kinds-table row {' | '.join(cells)}"


def guide_listing(docstring: str) -> types.ModuleType:
    """The python listing of docs/plugins.md that starts with ``docstring``, run as a module."""
    guide = (REPO / "docs" / "plugins.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", guide, re.S) if c.startswith(f'"""{docstring}')]
    module = types.ModuleType("plugins_md_" + re.sub(r"\W", "_", docstring))
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, f"docs/plugins.md ({docstring})", "exec"), module.__dict__)
    return module


class TestCharacterTokenizerRecipe(TokenizerContract):
    """The guide's character-level recipe passes the tokenizer suite, transformers check included."""

    component = guide_listing("``tokenizer=chars``").Chars


def test_every_python_listing_of_the_plugin_guide_compiles():
    guide = (REPO / "docs" / "plugins.md").read_text()
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", guide, re.S)):
        compile(code, f"docs/plugins.md listing {i}", "exec")


def _modules() -> list[str]:
    import lmforge.plugins

    core = [m.name for m in pkgutil.iter_modules(lmforge.__path__, "lmforge.")]
    plugins = [m.name for m in pkgutil.walk_packages(lmforge.plugins.__path__, "lmforge.plugins.")]
    return sorted(set(core + plugins))


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter: no hidden import-order dependencies."""
    modules = _modules()
    assert "lmforge.run" in modules and "lmforge.plugins.models._transformer" in modules
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n    [sys.modules.pop(k) for k in list(sys.modules) if k.startswith('lmforge')]\n"
    # one interpreter per module would cost ~2 s each; clearing lmforge from sys.modules between
    # imports keeps each import independent of the others while third-party imports stay cached
    subprocess.run([sys.executable, "-c", code, *modules], check=True, cwd=REPO)


def test_the_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install torch==2.13.0 . && lmforge train" in readme
    test_command = 'pip install torch==2.13.0 -e ".[test]" && pytest'
    assert test_command in readme and test_command in ci


def test_package_version_is_exposed():
    assert lmforge.__version__ != "0.0.0+unknown"
