"""Shared by the fine-tuning tests: a tiny pretrained base run, made once per session by a
real ``lmforge train``, and the throwaway task ``kind`` (``_toy_task.py``) installed as a
plugin distribution the CLI loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_support import BASE, HERE
from support import lmforge

@pytest.fixture(scope="session")
def finetune_env(tmp_path_factory) -> dict:
    """The environment a ``lmforge finetune`` subprocess runs in: task=kind installed, offline."""
    site = tmp_path_factory.mktemp("site")
    info = site / "toy_task-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-task\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lmforge]\nkind = _toy_task\n")
    return {
        "PYTHONPATH": f"{site}:{HERE}", "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "0",
        "LMFORGE_CACHE_DIR": str(tmp_path_factory.mktemp("ftcache")), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    }


@pytest.fixture(scope="session")
def base_run(tmp_path_factory, finetune_env) -> Path:
    """A finished ``lmforge train`` run of TINY settings, shared by every fine-tuning test."""
    root = tmp_path_factory.mktemp("base")
    lmforge("train", *BASE, f"hydra.run.dir={root / 'run'}", cwd=root, env=finetune_env)
    return root / "run"
