"""Helpers shared by the tests: the real CLI in a subprocess, and a short-run preset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A small, fast run: ~0.3 MB of the standard library, a 2-layer model, 30 steps.

def write_jsonl(path: Path, rows: list, extra_lines: tuple[str, ...] = ()) -> Path:
    """``rows`` as JSON lines at ``path`` (then ``extra_lines`` as they are, malformed ones too)."""
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines))
    return path

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


# Text to train a tokenizer on when a test makes a run directory without training
TEXTS = ["def add(a, b):\n    return a + b\n", "import os\nprint(os.getcwd())\n", "class A:\n    pass\n"] * 30


def compose(*overrides: str):
    """The run config of TINY plus ``overrides``, composed as ``lmforge train`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from lmforge import hydra_bridge

    hydra_bridge.install()
    rnn = "model=rnn" in overrides
    tiny = [o for o in TINY if not (rnn and o.startswith("model.n_head="))]  # an RNN has no heads
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        return hydra_compose("train", overrides=[*tiny, *overrides])


def make_run(root: Path, *overrides: str, noise: float = 0.0, quiet_eos: bool = False, step: int = 7) -> Path:
    """A run directory as ``lmforge train`` leaves it, made without training: its checked
    config, a tokenizer trained on ``TEXTS`` and a checkpoint of a freshly built model.

    ``noise`` adds Gaussian noise of that scale to every weight (logit comparisons then
    mean something); ``quiet_eos`` zeroes the eos embedding, so a random model's greedy
    replies run long instead of stopping at once.
    """
    import torch
    from omegaconf import OmegaConf

    from lmforge import hydra_bridge

    spec = hydra_bridge.check(compose(*overrides))
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(spec.record())))
    tokenizer = spec.tokenizer.build()
    tokenizer.train(iter(TEXTS))
    tokenizer.save(run / "tokenizer.json")
    torch.manual_seed(0)
    model = spec.model.build().build(vocab_size=tokenizer.vocab_size, max_seq_len=spec.data.seq_len)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
        eos = tokenizer.special_ids.get("eos")
        if quiet_eos and eos is not None and hasattr(model, "wte"):
            model.wte.weight[eos] = 0.0  # tied: the eos logit stays 0 while the others spread wide
    state = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "global_step": step}
    torch.save(state, run / "checkpoints" / "last.ckpt")
    return run


def start_held(root: Path, name: str, overrides: list[str], env: dict, timeout: float = 300, command: str = "train"):
    """Start ``lmforge <command>`` (train, finetune) as run ``name`` in ``root`` and return it
    once a test plugin holds it: the plugin writes the file ``$PROBE_MARKER`` (set here) when
    it gets there.

    Output goes to ``<name>.out``: a pipe nobody reads could fill and stall the run.
    """
    import time

    marker = root / f"{name}.holding"
    with open(root / f"{name}.out", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli", command, *overrides, f"hydra.run.dir={root / name}"],
            cwd=root,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **env, "PROBE_MARKER": str(marker)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"run {name} never got to where it holds:\n{(root / f'{name}.out').read_text()}")
        time.sleep(0.1)
    return proc


HOLD_PLUGIN = '''
import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from lmforge import hookimpl


class Hold(Callback):
    """At global step $PROBE_HOLD_AT, write $PROBE_MARKER and wait until a signal ends the wait."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == int(os.environ["PROBE_HOLD_AT"]):
            Path(os.environ["PROBE_MARKER"]).write_text(str(trainer.global_step))
            while not trainer.received_sigterm:
                time.sleep(0.05)


@hookimpl
def train_callbacks(run_dir):
    return [Hold()] if os.environ.get("PROBE_HOLD_AT") else []
'''


def install_hold_plugin(root):
    """A plugin distribution on a path of its own: PYTHONPATH=<returned> loads it."""
    site = root / "site"
    (site / "probe_hold-1.0.dist-info").mkdir(parents=True)
    (site / "probe_hold.py").write_text(HOLD_PLUGIN)
    (site / "probe_hold-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-hold\nVersion: 1.0\n")
    (site / "probe_hold-1.0.dist-info" / "entry_points.txt").write_text("[lmforge]\nprobe_hold = probe_hold\n")
    return site
