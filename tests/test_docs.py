"""Docs, hookspecs and modules stay in step with the code."""

from __future__ import annotations

import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lmforge
from lmforge import hookspecs

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
