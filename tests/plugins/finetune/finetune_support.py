"""What the fine-tuning tests share besides fixtures: the settings of a short fine-tune,
the command, and where the throwaway task lives."""

from __future__ import annotations

from pathlib import Path

from support import TINY, lmforge

HERE = Path(__file__).resolve().parent
# TINY, shorter: the base only has to be a trained run, the tests fine-tune it
BASE = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + [
    "trainer.max_steps=10", "trainer.val_check_interval=10", "model.dropout=0.0",
]
# a short fine-tune that learns task=kind
SHORT = ["trainer.max_steps=30", "trainer.val_check_interval=15", "trainer.enable_progress_bar=false",
         "optimizer.lr=1e-2", "scheduler.warmup_steps=3", "finetune.batch_size=8", "finetune.eval_examples=24"]



def finetune(root: Path, env: dict, *args: str, check: bool = True):
    """``lmforge finetune`` in a subprocess, in ``root``."""
    return lmforge("finetune", *args, cwd=root, env=env, check=check)
