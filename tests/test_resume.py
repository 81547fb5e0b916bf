"""A run stopped by SIGTERM or SIGKILL and resumed ends where an uninterrupted run ends.

Run A trains straight through. Run B is the same ``lmforge train`` in a subprocess; a
throwaway plugin holds it at a chosen step (so the test knows where it is), the test
signals it, and ``lmforge train resume=<run B>`` finishes the job. Final weights and the
final validation loss must equal run A's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch
from support import TINY, install_hold_plugin, lmforge, start_held

RUN = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + [
    "trainer.max_steps=24",
    "trainer.val_check_interval=8",  # validations at 8, 16, 24
    "trainer.checkpoint_every_n_steps=5",  # last.ckpt at 5, 8, 10, 15, 16, 20, 24
    "model.dropout=0.0",
]

@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Run A: the uninterrupted run, with the stage cache the other runs reuse."""
    root = tmp_path_factory.mktemp("resume")
    env = {"LMFORGE_CACHE_DIR": str(root / "cache"), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "0", "PYTHONPATH": str(install_hold_plugin(root))}
    lmforge("train", *RUN, f"hydra.run.dir={root / 'a'}", cwd=root, env=env)
    return root, env


def start(root, env, name: str, hold_at: int) -> subprocess.Popen:
    """Start run ``name`` as a real ``lmforge train``; returns it once it holds at ``hold_at``.

    Its output goes to ``<name>.out``: a pipe nobody reads could fill and stall the run.
    """
    return start_held(root, name, RUN, {**env, "PROBE_HOLD_AT": str(hold_at)})


def resume_and_compare(root, env, name: str) -> None:
    lmforge("train", *RUN, f"resume={root / name}", f"hydra.run.dir={root / (name + '_resumed')}", cwd=root, env=env)
    a = torch.load(root / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(root / (name + "_resumed") / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 24
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    first = json.loads((root / "a" / "summary.json").read_text())["val_loss"]
    again = json.loads((root / (name + "_resumed") / "summary.json").read_text())["val_loss"]
    assert again == pytest.approx(first, abs=1e-6)


def fit(run_dir, steps: int, sampling: str, accumulate: int, resume=None, stop_at: int | None = None):
    """The run wiring's data module, model, callbacks and trainer, in this process, on tiny data."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from lmforge.plugins.models.transformer import Transformer
    from lmforge.engine import checkpointing
    from lmforge.engine import trainer as runtime
    from lmforge.engine.data import TokenDataModule
    from lmforge.engine.module import LMModule
    from lmforge.engine.config import DataConfig, LossConfig, TrainerConfig
    from lmforge.plugins.training.optimizers import AdamWConfig
    from lmforge.plugins.training.schedulers import CosineConfig

    class Stop(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == stop_at and not trainer.received_sigterm:
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "Lightning's handler is missing"
                os.kill(os.getpid(), signal.SIGTERM)

    L.seed_everything(0)
    tokens = np.random.default_rng(0).integers(0, 64, 700).astype(np.uint16)
    data = DataConfig(seq_len=16, batch_size=4, val_batches=2, sampling=sampling)  # sequential: 10 windows, 2 batches an epoch
    trainer_cfg = TrainerConfig(max_steps=steps, val_check_interval=6, accumulate_grad_batches=accumulate, checkpoint_every_n_steps=4, enable_progress_bar=False, accelerator="cpu", devices=1)
    dm = TokenDataModule(tokens[:620], tokens[620:], data, steps, accumulate, 0)
    model = Transformer(Transformer.Config(n_layer=1, n_head=2, n_embd=16)).build(vocab_size=64, max_seq_len=16)
    module = LMModule(
        model, vocab_size=64, optimizer=AdamWConfig(lr=1e-2), scheduler=CosineConfig(warmup_steps=2), loss=LossConfig(),
        max_steps=trainer_cfg.max_steps, grad_clip=trainer_cfg.gradient_clip_val, nonfinite=trainer_cfg.nonfinite, compile=trainer_cfg.compile,
    )
    callbacks = runtime.callbacks(run_dir, trainer_cfg, logging=False) + [Stop()]
    trainer = L.Trainer(**runtime.trainer_kwargs(trainer_cfg, model), callbacks=callbacks, logger=False, default_root_dir=run_dir)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
    except checkpointing.SIGTERMException:
        return None
    return trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]


@pytest.mark.parametrize(
    "sampling,accumulate,stop_at",
    [("random", 1, 5), ("sequential", 1, 4), ("sequential", 2, 3)],
    ids=["random", "sequential-at-an-epoch-end", "sequential-accumulating"],
)
def test_a_run_stopped_by_sigterm_resumes_exactly_where_it_stopped(tmp_path, sampling, accumulate, stop_at):
    """In-process and tiny: SIGTERM at a step, resume from last.ckpt, same weights as straight through."""
    straight_loss = fit(tmp_path / "a", 10, sampling, accumulate)
    assert fit(tmp_path / "b", 10, sampling, accumulate, stop_at=stop_at) is None
    stopped = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert torch.load(stopped, weights_only=True)["global_step"] == stop_at
    resumed_loss = fit(tmp_path / "c", 10, sampling, accumulate, resume=str(stopped))
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    c = torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == c["global_step"] == 10
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(c["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert resumed_loss == pytest.approx(straight_loss, abs=1e-6)
    assert c["loops"]["fit_loop"]["state_dict"]["combined_loader"] == a["loops"]["fit_loop"]["state_dict"]["combined_loader"]


def test_a_checkpoint_holds_plain_tensors_rng_state_and_the_loader_position(tmp_path):
    fit(tmp_path, 5, "random", 1)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)  # no pickled objects
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "samples": 5 * 4, "world_size": 1}]
    rng = ckpt["callbacks"]["RngState"]
    assert rng["torch"].dtype == torch.uint8 and rng["python"].shape == (625,) and rng["numpy"].shape == (624,)
    assert len(ckpt["optimizer_states"]) == 1 and len(ckpt["lr_schedulers"]) == 1
    assert len(list(tmp_path.glob("checkpoints/best-*.ckpt"))) == 1  # trainer.checkpoint_top_k=1, by val/loss
    assert not list(tmp_path.glob("checkpoints/.*tmp*"))  # atomic writes leave no temporaries


def test_the_rng_state_round_trips_through_a_checkpoint():
    import random

    from lmforge.engine.checkpointing import RngState

    saved = RngState().state_dict()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(3)  # move every generator on
    RngState().load_state_dict(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_resumed_run_matches_an_uninterrupted_one(straight):
    root, env = straight
    proc = start(root, env, "term", hold_at=11)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    out = (root / "term.out").read_text()
    assert proc.returncode == 143, out
    assert "received SIGTERM: saved step 11" in out and f"resume={root / 'term'}" in out
    assert torch.load(root / "term" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 11
    resume_and_compare(root, env, "term")


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(straight):
    root, env = straight
    proc = start(root, env, "kill", hold_at=12)  # the step-10 checkpoint is the newest
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(root / "kill" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    resume_and_compare(root, env, "kill")


# resume= is checked before any stage: a corrupt, unsafe, mismatched or finished checkpoint is one error

SHORT = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + [
    "trainer.max_steps=8",
    "trainer.val_check_interval=4",  # best-step*.ckpt at 4 or 8, last.ckpt at 8
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 8-step run and the stage cache the resumes below reuse."""
    root = tmp_path_factory.mktemp("trained")
    env = {"LMFORGE_CACHE_DIR": str(root / "cache")}
    lmforge("train", *SHORT, f"hydra.run.dir={root / 'run'}", cwd=root, env=env)
    return root, env


@pytest.fixture
def copy(trained, tmp_path):
    """A copy of the trained run, free to damage."""
    import shutil

    root, env = trained
    shutil.copytree(root / "run", tmp_path / "run")
    return tmp_path / "run", env


def refused(run, env, *overrides, tmp_path):
    """``lmforge train resume=<run>``, which must fail before any stage; returns its output."""
    proc = lmforge("train", *SHORT, f"resume={run}", *overrides, f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path, env=env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "building stage" not in out and "collector:" not in out, out
    assert not (tmp_path / "again").exists()  # no run directory is left behind
    return out


def _finished_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_resume_from_a_corrupt_checkpoint_names_it_and_the_newest_intact_one(copy, tmp_path, damage):
    run, env = copy
    last = run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "random": bytes(range(256)) * 64}[damage])
    out = refused(run, env, tmp_path=tmp_path)
    best = next((run / "checkpoints").glob("best-step*.ckpt"))
    assert f"{last} is not a readable checkpoint, it is truncated or corrupt" in out
    assert f"newest intact checkpoint is {best.name}" in out and f"resume={best}" in out and "resume_fallback=true" in out


def test_resume_fallback_continues_from_the_newest_intact_checkpoint_and_clears_stale_temps(copy, tmp_path):
    run, env = copy
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    stale = run / "checkpoints" / f".last.ckpt.tmp-{_finished_pid()}"  # a save killed mid-write
    stale.write_bytes(b"half a checkpoint")
    proc = lmforge("train", *SHORT, "trainer.max_steps=10", f"resume={run}", "resume_fallback=true", f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path, env=env)
    best = next((run / "checkpoints").glob("best-step*.ckpt"))
    assert f"resume_fallback=true: resuming from the run's newest intact checkpoint {best}" in proc.stdout
    assert torch.load(tmp_path / "again" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    assert not stale.exists()


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PROBE_PWNED']}",))


def test_resume_from_a_checkpoint_with_a_pickle_payload_never_runs_it(copy, tmp_path):
    run, env = copy
    pwned = tmp_path / "pwned"
    os.environ["PROBE_PWNED"] = str(pwned)
    try:
        torch.save({"state_dict": {}, "global_step": 1, "x": Payload()}, run / "checkpoints" / "last.ckpt")
    finally:
        del os.environ["PROBE_PWNED"]
    out = refused(run, env, tmp_path=tmp_path)
    assert "last.ckpt holds Python objects that lmforge does not load" in out
    assert "weights_only" not in out
    assert not pwned.exists()


def test_resume_with_another_model_shape_or_vocabulary_names_what_changed_before_any_stage(copy, tmp_path):
    run, env = copy
    out = refused(run, env, "model.n_embd=64", "tokenizer.vocab_size=1024", tmp_path=tmp_path)
    assert "model.n_embd=64 (the checkpoint's run had 32)" in out
    assert "tokenizer.vocab_size=1024 (the checkpoint's run had 512)" in out


@pytest.mark.parametrize("max_steps", [8, 6])
def test_resuming_a_finished_run_says_there_is_nothing_to_train(copy, tmp_path, max_steps):
    run, env = copy
    out = refused(run, env, f"trainer.max_steps={max_steps}", tmp_path=tmp_path)
    assert f"is at step 8 and trainer.max_steps={max_steps}, so there is nothing left to train" in out
    assert "raise trainer.max_steps above 8" in out
