"""LMModule in real, tiny Lightning runs: losses, metrics, non-finite handling, compile."""

from __future__ import annotations

import csv
import dataclasses
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassF1Score

from lmforge.errors import ConfigError
from lmforge.hydra_bridge import structured
from lmforge.engine import trainer as runtime
from lmforge.engine.losses import IGNORE_INDEX
from lmforge.engine.metrics import Throughput
from lmforge.engine.module import LMModule, NonFiniteError
from lmforge.engine.config import LossConfig, TrainerConfig
from lmforge.plugins.training.optimizers import AdamWConfig
from lmforge.plugins.training.schedulers import ConstantConfig as ConstantSchedulerConfig

V, T, B = 32, 16, 8  # vocabulary, sequence length, batch size
BYTES_PER_TOKEN = 3.0


def tiny_model() -> torch.nn.Module:
    from lmforge.plugins.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    return Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16)).build(vocab_size=V, max_seq_len=T)


def windows(n: int, seed: int = 0, holes: float = 0.0) -> TensorDataset:
    """Counting sequences (each token is the previous + 1), so the next token is learnable.

    ``holes`` is the share of targets set to -100, as a masked-LM batch has them.
    """
    g = torch.Generator().manual_seed(seed)
    seq = (torch.randint(0, V, (n, 1), generator=g) + torch.arange(T + 1)) % V  # (n, T+1)
    inputs, targets = seq[:, :-1].clone(), seq[:, 1:].clone()
    targets[torch.rand(n, T, generator=g) < holes] = IGNORE_INDEX
    return TensorDataset(inputs, targets)


def make_module(loss: LossConfig | None = None, fused: bool | None = None, **trainer) -> tuple[LMModule, TrainerConfig]:
    cfg = TrainerConfig(**{"max_steps": 12, "val_check_interval": None, "log_every_n_steps": 1, "enable_progress_bar": False, **trainer})
    optimizer = AdamWConfig(lr=1e-2, weight_decay=0.0, fused=fused)
    module = LMModule(
        tiny_model(), vocab_size=V, optimizer=optimizer, scheduler=ConstantSchedulerConfig(warmup_steps=0), loss=loss or LossConfig(),
        max_steps=cfg.max_steps, grad_clip=cfg.gradient_clip_val, nonfinite=cfg.nonfinite, compile=cfg.compile, bytes_per_token=BYTES_PER_TOKEN,
    )
    return module, cfg


def fit(tmp_path, module: LMModule, cfg: TrainerConfig, callbacks=(), checkpoints: bool = False) -> L.Trainer:
    found = list(callbacks) + [Throughput(B * T, module.model.flops_per_token(T))]
    if checkpoints:
        found += runtime.callbacks(tmp_path, cfg, logging=False)
    kwargs = runtime.trainer_kwargs(cfg)
    trainer = L.Trainer(**kwargs, callbacks=found, logger=CSVLogger(tmp_path, name="", version=""), enable_model_summary=False, enable_checkpointing=checkpoints, default_root_dir=tmp_path)
    train = DataLoader(windows(cfg.max_steps * B), batch_size=B)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=DataLoader(windows(2 * B, seed=1), batch_size=B))
    return trainer


def logged(tmp_path, key: str) -> list[float]:
    with open(tmp_path / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


class AtStep(Callback):
    """Applies ``poison(pl_module)`` at the start of global step ``step``; a returned handle is removed after it."""

    def __init__(self, step: int, poison) -> None:
        self.step, self.poison, self.handle = step, poison, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.handle is None:
            self.handle = self.poison(pl_module) or False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.handle:
            self.handle.remove()


def nan_logits(pl_module):
    return pl_module.model.register_forward_hook(lambda m, args, out: dataclasses.replace(out, logits=out.logits * math.nan))


def nan_gradient(pl_module):
    return next(pl_module.model.parameters()).register_hook(lambda grad: grad * math.inf)


def nan_weight(pl_module):
    with torch.no_grad():
        next(pl_module.model.parameters()).view(-1)[0] = math.nan


def test_the_loss_goes_down_and_every_metric_is_logged(tmp_path):
    module, cfg = make_module()
    trainer = fit(tmp_path, module, cfg)
    losses = logged(tmp_path, "train/loss")
    assert len(losses) == 12 and losses[-1] < losses[0] - 1.0, losses
    assert len(logged(tmp_path, "train/grad_norm")) == 12 and logged(tmp_path, "train/tokens_per_s")
    assert not logged(tmp_path, "train/mfu")  # MFU only on CUDA
    m = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert m["val/ppl"] == pytest.approx(math.exp(m["val/loss"]), rel=1e-5)
    assert m["val/bpb"] == pytest.approx(m["val/loss"] / (math.log(2) * BYTES_PER_TOKEN), rel=1e-5)
    assert 0 <= m["val/top1"] <= m["val/top5"] <= 1 and m["val/top1"] > 0.5  # a counting sequence is easy
    assert all(0 <= m[f"val/{k}"] <= 1 for k in ("precision", "recall", "f1"))


def test_validation_metrics_equal_a_direct_computation_over_all_batches(tmp_path):
    """Token-weighted over batches with different numbers of predicted positions (-100 holes)."""
    module, cfg = make_module()
    data = windows(3 * B, seed=2, holes=0.5)
    trainer = L.Trainer(**runtime.trainer_kwargs(cfg), logger=False, enable_model_summary=False)
    got = trainer.validate(module, DataLoader(data, batch_size=B), verbose=False)[0]
    inputs, targets = data.tensors
    with torch.no_grad():
        logits = module.model(inputs).logits.reshape(-1, V)  # (N, V)
    flat = targets.reshape(-1)
    keep = flat != IGNORE_INDEX
    assert got["val/loss"] == pytest.approx(F.cross_entropy(logits, flat, ignore_index=IGNORE_INDEX).item(), rel=1e-5)
    assert got["val/top1"] == pytest.approx((logits.argmax(-1) == flat)[keep].float().mean().item(), rel=1e-6)
    top5 = (logits.topk(5, dim=-1).indices == flat[:, None]).any(-1)[keep].float().mean().item()
    assert got["val/top5"] == pytest.approx(top5, rel=1e-6)
    f1 = MulticlassF1Score(num_classes=V, average="macro", ignore_index=IGNORE_INDEX)(logits.argmax(-1), flat).item()
    assert got["val/f1"] == pytest.approx(f1, abs=1e-6)


def test_validation_reports_the_plain_loss_whatever_the_objective(tmp_path):
    plain, cfg = make_module()
    smoothed, _ = make_module(LossConfig(label_smoothing=0.3, z_loss=1e-2))
    trainer = L.Trainer(**runtime.trainer_kwargs(cfg), logger=False, enable_model_summary=False)
    val = DataLoader(windows(B), batch_size=B)
    a, b = (trainer.validate(m, val, verbose=False)[0]["val/loss"] for m in (plain, smoothed))
    assert a == pytest.approx(b, rel=1e-6)


def test_grad_norm_is_logged_without_clipping(tmp_path):
    module, cfg = make_module(max_steps=3, gradient_clip_val=None)
    fit(tmp_path, module, cfg)
    norms = logged(tmp_path, "train/grad_norm")
    assert len(norms) == 3 and all(math.isfinite(n) and n > 0 for n in norms)


# fused=False: the flag is read on the host before each step. fused=True: the fused AdamW
# skips the update on the device and the host reads the flag later (the CUDA default; the
# CPU has the same fused kernel)
@pytest.mark.parametrize("fused", [False, True], ids=["host-check", "fused-deferred"])
@pytest.mark.parametrize("poison,what", [(nan_weight, "loss"), (nan_logits, "loss"), (nan_gradient, "gradient norm")])
def test_a_nonfinite_value_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path, poison, what, fused):
    module, cfg = make_module(max_steps=10, val_check_interval=2, fused=fused)
    with pytest.raises(NonFiniteError, match=rf"non-finite {what} at global step 5 \(here \w+\): .*trainer.nonfinite=skip"):
        fit(tmp_path, module, cfg, callbacks=[AtStep(5, poison)], checkpoints=True)
    optimizer = module.trainer.optimizers[0]
    assert {int(optimizer.state[p]["step"]) for p in module.parameters()} == {5}  # steps 0-4 applied, step 5 never
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # written at the validation after step 4, not from the bad state
    fresh, _ = make_module()
    fresh.load_state_dict(ckpt["state_dict"])
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


@pytest.mark.parametrize("fused", [False, True], ids=["host-check", "fused-deferred"])
def test_skip_drops_the_step_counts_it_and_finishes(tmp_path, fused, caplog):
    module, cfg = make_module(max_steps=8, nonfinite="skip", fused=fused)
    trainer = fit(tmp_path, module, cfg, callbacks=[AtStep(3, nan_logits)])
    assert trainer.global_step == 8 and module.skipped_steps.item() == 1
    assert logged(tmp_path, "train/skipped_steps")[-1] == 1.0
    assert "non-finite loss at global step 3 (here nan): optimizer step skipped (1 so far)" in caplog.text
    optimizer = trainer.optimizers[0]
    assert {int(optimizer.state[p]["step"]) for p in module.parameters()} == {7}  # one update fewer
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


@pytest.mark.parametrize("fused", [False, True], ids=["host-check", "fused-deferred"])
def test_a_skipped_step_leaves_weights_and_optimizer_state_exactly_alone(tmp_path, fused):
    class Snapshot(Callback):
        """The weights and optimizer state around the poisoned step 2."""

        def __init__(self) -> None:
            self.before = self.after = None

        def state(self, trainer, pl_module):
            optimizer = trainer.optimizers[0]
            return [p.detach().clone() for p in pl_module.parameters()] + [v.clone() for p in pl_module.parameters() for v in optimizer.state[p].values()]

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == 2:
                self.before = self.state(trainer, pl_module)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == 3:
                self.after = self.state(trainer, pl_module)

    snapshot = Snapshot()
    module, cfg = make_module(max_steps=4, nonfinite="skip", fused=fused)
    fit(tmp_path, module, cfg, callbacks=[AtStep(2, nan_gradient), snapshot])
    assert module.skipped_steps.item() == 1
    assert len(snapshot.before) == len(snapshot.after) > len(list(module.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(snapshot.before, snapshot.after))


def test_deterministic_runs_repeat_exactly(tmp_path):
    seen = []

    class Flag(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen.append(torch.are_deterministic_algorithms_enabled())

    states = []
    try:
        for i in range(2):
            module, cfg = make_module(max_steps=4, deterministic=True)
            fit(tmp_path / str(i), module, cfg, callbacks=[Flag()])
            states.append(module.state_dict())
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [True, True]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path):
    losses = {}
    for compiled in (False, True):
        module, cfg = make_module(max_steps=6, compile=compiled)
        fit(tmp_path / str(compiled), module, cfg)
        losses[compiled] = logged(tmp_path / str(compiled), "train/loss")
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-4)
    assert losses[True][-1] < losses[True][0] - 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="MFU is logged on CUDA only")
def test_mfu_is_logged_on_cuda(tmp_path):
    module, cfg = make_module(max_steps=4)
    fit(tmp_path, module, cfg)
    mfu = logged(tmp_path, "train/mfu")
    assert mfu and all(0 < x < 1 for x in mfu)


def test_a_bad_nonfinite_choice_names_the_key():
    with pytest.raises(ConfigError, match="trainer: nonfinite must be stop or skip, got 'maybe'"):
        structured(TrainerConfig, {"nonfinite": "maybe"}, "trainer", "trainer")
