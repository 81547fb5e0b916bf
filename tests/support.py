"""Helpers shared by the tests: the real CLI in a subprocess, and a short-run preset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


# TINY cut to the least that still runs every stage, for tests of a component other than the model
SMOKE = {
    "collector.max_bytes": "100000",
    "model.n_layer": "1",
    "data.val_batches": "1",
    "trainer.max_steps": "3",
    "trainer.val_check_interval": "3",
    "scheduler.warmup_steps": "1",
    "sample.max_new_tokens": "2",
}


def smoke_run(drop=()) -> list[str]:
    """TINY with SMOKE on top, as overrides, leaving out the keys in ``drop``."""
    overrides = dict(o.split("=", 1) for o in TINY) | SMOKE
    return [f"{key}={value}" for key, value in overrides.items() if key not in drop]
