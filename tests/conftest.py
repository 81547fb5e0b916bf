"""Shared fixtures: an isolated plugin environment, a throwaway stage cache, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.loader import DISABLE_AUTOLOAD_ENV, load_plugins

REPO = Path(__file__).resolve().parents[1]

# A small, fast run: ~0.3 MB of the standard library, a 2-layer model, 30 steps.
TINY = [
    "collector.max_bytes=300000",
    "tokenizer.vocab_size=512",
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "data.seq_len=32",
    "data.batch_size=8",
    "data.val_batches=4",
    "trainer.max_steps=30",
    "trainer.val_check_interval=15",
    "trainer.enable_progress_bar=false",
    "scheduler.warmup_steps=5",
    "optimizer.lr=5e-3",
    "trainer.log_every_n_steps=5",
    "sample.max_new_tokens=8",
]


@pytest.fixture(autouse=True)
def isolated_plugins(monkeypatch, tmp_path_factory):
    """Load lmforge's own plugins only, and give every test a fresh registry and cache."""
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    load_plugins.cache_clear()
    yield
    load_plugins.cache_clear()


def lmforge(*args: str, cwd: Path, env: dict | None = None, check: bool = True, timeout: int = 600):
    """Run the real ``lmforge`` command line in a subprocess."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lmforge {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


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
