"""Data-parallel training: trainer=ddp through the real CLI on two CPU processes, trainer=fsdp composed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from support import TINY

RECORD_PLUGIN = '''
import json

from lightning.pytorch.callbacks import Callback

from lmforge import hookimpl


class Record(Callback):
    """Writes the input rows of every batch this rank trained on to <run dir>/consumed-rank<r>.json."""

    def __init__(self, run_dir):
        self.run_dir, self.rows = run_dir, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows += batch[0].tolist()

    def on_train_end(self, trainer, pl_module):
        record = {"world_size": trainer.world_size, "rows": self.rows}
        (self.run_dir / f"consumed-rank{trainer.global_rank}.json").write_text(json.dumps(record))


@hookimpl
def train_callbacks(run_dir):
    return [Record(run_dir)]
'''

SEQUENTIAL = [*TINY, "data.sampling=sequential", "trainer.val_check_interval=6"]


def train(root, env, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "train", *SEQUENTIAL, *args],
        cwd=root, env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def consumed(run_dir, rank: int) -> dict:
    return json.loads((run_dir / f"consumed-rank{rank}.json").read_text())


@pytest.mark.slow
def test_two_cpu_ranks_read_disjoint_shares_that_make_up_the_single_process_stream(tmp_path):
    site = tmp_path / "site"
    (site / "probe_record-1.0.dist-info").mkdir(parents=True)
    (site / "probe_record.py").write_text(RECORD_PLUGIN)
    (site / "probe_record-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-record\nVersion: 1.0\n")
    (site / "probe_record-1.0.dist-info" / "entry_points.txt").write_text("[lmforge]\nprobe_record = probe_record\n")
    env = {"LMFORGE_CACHE_DIR": str(tmp_path / "cache"), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "0", "PYTHONPATH": str(site)}

    train(tmp_path, env, "trainer.max_steps=12", f"hydra.run.dir={tmp_path / 'single'}")
    train(tmp_path, env, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=6", f"hydra.run.dir={tmp_path / 'ddp'}")

    run = tmp_path / "ddp"  # Lightning re-ran the command for rank 1: it must have used the same run directory
    ranks = [consumed(run, 0), consumed(run, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    rows = [Counter(tuple(row) for row in r["rows"]) for r in ranks]
    assert sum(rows[0].values()) == sum(rows[1].values()) == 6 * 8
    single = Counter(tuple(row) for row in consumed(tmp_path / "single", 0)["rows"])
    assert rows[0] + rows[1] == single  # together the ranks read exactly the single-process stream
    assert all(single[row] > 1 for row in rows[0] & rows[1])  # a window on both ranks only if its text repeats
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "train_ddp_process_1.log").is_file()
    assert json.loads((run / "summary.json").read_text())["steps"] == 6


def test_the_ddp_and_fsdp_options_compose_and_fsdp_wraps_each_block():
    from hydra import compose, initialize_config_module
    from lightning.pytorch.strategies import FSDPStrategy

    from lmforge import hydra_bridge
    from lmforge.plugins.models.transformer import Transformer
    from lmforge.engine import trainer as runtime

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        ddp = hydra_bridge.check(compose("train", overrides=["trainer=ddp", "trainer.devices=2"])).trainer
        fsdp = hydra_bridge.check(compose("train", overrides=["trainer=fsdp"])).trainer
    assert (ddp.strategy, ddp.devices, ddp.max_steps) == ("ddp", 2, 300)  # the rest comes from trainer/default
    assert runtime.trainer_kwargs(ddp)["use_distributed_sampler"] is False  # the data module splits the stream
    assert (fsdp.strategy, fsdp.accelerator, fsdp.precision) == ("fsdp", "gpu", "bf16-mixed")
    model = Transformer(Transformer.Config(n_layer=2, n_head=2, n_embd=16)).build(vocab_size=64, max_seq_len=16)
    strategy = runtime.trainer_kwargs(fsdp, model)["strategy"]
    assert isinstance(strategy, FSDPStrategy)
    wrapped = strategy.kwargs["auto_wrap_policy"]._module_classes
    block = {type(b) for m in model.modules() if isinstance(m, __import__("torch").nn.ModuleList) for b in m}
    assert set(wrapped) == block and len(block) == 1


def test_ddp_inside_a_hydra_multirun_is_refused_with_the_workarounds():
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lmforge import hydra_bridge
    from lmforge.errors import ConfigError
    from lmforge.engine import trainer as runtime

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        cfg = compose("train", overrides=["trainer=ddp"], return_hydra_config=True)
        trainer = hydra_bridge.check(compose("train", overrides=["trainer=ddp"])).trainer
    cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(ConfigError, match=r"trainer.strategy=ddp cannot run inside a Hydra multirun.*ddp_spawn"):
            runtime.trainer_kwargs(trainer)
    finally:
        HydraConfig.instance().cfg = None
