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


@pytest.fixture(scope="session")
def chat_base(base_run, tmp_path_factory, finetune_env) -> Path:
    """``base_run`` fine-tuned on task=chat for a few steps: a base that knows the chat format,
    which preference optimization (task=dpo) aligns."""
    from finetune_support import SHORT, finetune

    root = tmp_path_factory.mktemp("chat_base")
    finetune(root, finetune_env, f"base={base_run}", "task=chat", *SHORT, "trainer.max_steps=10", "trainer.val_check_interval=10",
             "finetune.eval_examples=0", f"hydra.run.dir={root / 'run'}")
    return root / "run"
