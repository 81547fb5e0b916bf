"""Shared fixtures: an isolated plugin environment and a throwaway stage cache."""

from __future__ import annotations

import pytest

from lmforge.loader import DISABLE_AUTOLOAD_ENV, load_plugins

# tests/fixtures holds material for tests (a plugin package with its own suite), not tests
collect_ignore = ["fixtures"]


@pytest.fixture(autouse=True)
def isolated_plugins(monkeypatch, tmp_path_factory):
    """Load lmforge's own plugins only, and give every test a fresh registry and cache."""
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    load_plugins.cache_clear()
    yield
    load_plugins.cache_clear()


@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """Install a throwaway distribution on sys.path: modules plus a dist-info with entry points.

    importlib.metadata discovers it exactly as it would a pip-installed package.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)

    def make(name: str, entry_points: dict[str, str], files: dict[str, str], version: str = "1.0") -> None:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[lmforge]\n{lines}")
        load_plugins.cache_clear()

    return make
