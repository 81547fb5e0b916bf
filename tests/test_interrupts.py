"""Interrupts keep work: Ctrl-C in training saves like SIGTERM, a signal in a data stage is one line.

Each test runs the real ``lmforge train`` in a subprocess. A throwaway plugin holds it
at a known place (a training step, or inside the collect stage) and writes a marker, so
the test signals it there and not by timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from support import TINY, lmforge, start_held

HOLD_PLUGIN = '''
import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from lmforge import hookimpl
from lmforge.contracts import Collector, Document


class Hold(Callback):
    """At global step $PROBE_HOLD_AT, write $PROBE_MARKER and wait until a signal ends the wait."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == int(os.environ["PROBE_HOLD_AT"]):
            Path(os.environ["PROBE_MARKER"]).write_text(str(trainer.global_step))
            while not trainer.received_sigterm or os.environ.get("PROBE_STUCK"):
                time.sleep(0.05)


class Held(Collector):
    """Yields one document, writes $PROBE_MARKER, then waits for ever: a collect stage to interrupt."""

    name = "held"

    def documents(self, workdir, stats):
        yield Document(id="d0", text="a document " * 100, source="held")
        Path(os.environ["PROBE_MARKER"]).write_text("collect")
        while True:
            time.sleep(0.05)


@hookimpl
def register_collectors(register):
    register(Held)


@hookimpl
def train_callbacks(run_dir):
    return [Hold()] if os.environ.get("PROBE_HOLD_AT") else []
'''

RUN = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + [
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.checkpoint_every_n_steps=4",
]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A folder with the hold plugin installed and a stage cache the runs share."""
    root = tmp_path_factory.mktemp("interrupts")
    site = root / "site"
    (site / "probe_hold-1.0.dist-info").mkdir(parents=True)
    (site / "probe_hold.py").write_text(HOLD_PLUGIN)
    (site / "probe_hold-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-hold\nVersion: 1.0\n")
    (site / "probe_hold-1.0.dist-info" / "entry_points.txt").write_text("[lmforge]\nprobe_hold = probe_hold\n")
    env = {"LMFORGE_CACHE_DIR": str(root / "cache"), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "0", "PYTHONPATH": str(site)}
    return root, env


def start(root, env, name: str, *overrides: str, hold_at: int | None = None, stuck: bool = False) -> subprocess.Popen:
    """Start ``lmforge train`` as run ``name``; returns once the plugin holds it. Output goes to ``<name>.out``."""
    hold = {"PROBE_HOLD_AT": str(hold_at)} if hold_at is not None else {}
    hold |= {"PROBE_STUCK": "1"} if stuck else {}
    return start_held(root, name, list(overrides), {**env, **hold})


@pytest.mark.slow
def test_ctrl_c_in_training_saves_last_ckpt_prints_the_resume_command_and_exits_130(probe):
    root, env = probe
    proc = start(root, env, "int", *RUN, hold_at=7)
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    out = (root / "int.out").read_text()
    assert proc.returncode == 130, out
    assert "received SIGINT (Ctrl-C): saved step 7" in out and f"resume={root / 'int'}" in out
    assert "Traceback" not in out
    assert torch.load(root / "int" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 7


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(probe):
    """The first Ctrl-C asks for a save at the step's end; this step never ends, so only the second stops the run."""
    root, env = probe
    proc = start(root, env, "int2", *RUN, hold_at=5, stuck=True)
    os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while "Ctrl-C again stops at once" not in (root / "int2.out").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGINT, (root / "int2.out").read_text()


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_is_evaluable_on_its_split(probe):
    """Stopped before its records, the run has an early manifest.json naming its data stages."""
    root, env = probe
    proc = start(root, env, "term", *RUN, hold_at=5)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 143, (root / "term.out").read_text()
    assert not (root / "term" / "summary.json").exists()
    assert json.loads((root / "term" / "manifest.json").read_text())["complete"] is False
    out = lmforge("eval", str(root / "term"), cwd=root, env=env).stdout
    assert "val:" in out and "step 5" in out
    assert json.loads((root / "term" / "eval.json").read_text())["step"] == 5


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_a_data_stage_is_one_line_and_a_rerun_resumes(probe, signum):
    root, env = probe
    name = f"collect-{signum.name}"
    held = [o for o in TINY if not o.startswith("collector.")]
    proc = start(root, env, name, *held, "collector=held", f"cache_dir={root / name / 'cache'}")
    proc.send_signal(signum)
    proc.wait(timeout=60)
    out = (root / f"{name}.out").read_text()
    assert proc.returncode == 128 + signum, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert f"collect stage stopped by {signum.name}: its finished shards are kept" in out
    assert "rerun the same command to resume" in out
    assert list((root / name / "cache" / "collect").glob("*.partial")), "the partial stage is kept for the rerun"
