"""The LightningModule that trains any architecture meeting the contract."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lmforge.errors import ConfigError
from lmforge.plugins.training.optim import build_optimizer, lr_lambda
from lmforge.schemas import OptimizerConfig, SchedulerConfig


class LMModule(L.LightningModule):
    """Causal language modelling: predict token t+1 from tokens up to t.

    Gradient clipping happens here, in ``on_before_optimizer_step``, rather than through
    ``Trainer(gradient_clip_val=...)``: Lightning refuses that argument for a fused AdamW
    under mixed precision, and the clipped norm is worth logging anyway.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        objective: str,
        optimizer: OptimizerConfig,
        scheduler: SchedulerConfig,
        max_steps: int,
        grad_clip: float | None,
        log_every_n_steps: int,
    ) -> None:
        super().__init__()
        if objective != "causal":
            raise ConfigError(
                f"model: objective {objective!r} is not supported by this trainer yet; choose a causal architecture"
            )
        self.model = model
        self.optimizer_cfg, self.scheduler_cfg = optimizer, scheduler
        self.max_steps, self.grad_clip, self.log_every = max_steps, grad_clip, log_every_n_steps

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        idx, targets = batch[:, :-1], batch[:, 1:]  # (B, T), (B, T)
        logits = self.model(idx).logits  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros(2, device=self.device)  # (loss x windows, windows)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        n = batch.size(0)  # weight by windows so a short last batch does not skew the mean
        self._val_sum += torch.stack([self.loss(batch).detach().float() * n, torch.tensor(float(n), device=self.device)])

    def on_validation_epoch_end(self) -> None:
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        loss = total[0] / total[1]
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss.clamp(max=30)))

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip)
            if self.global_step % self.log_every == 0:
                self.log("train/grad_norm", norm)

    def configure_optimizers(self):
        on_cuda = self.device.type == "cuda"
        optimizer = build_optimizer(self.model, self.optimizer_cfg, on_cuda)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.scheduler_cfg, self.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class Throughput(Callback):
    """Counts training tokens and the time spent training, validation excluded."""

    def __init__(self, tokens_per_batch: int) -> None:
        self.tokens_per_batch = tokens_per_batch
        self.tokens = 0
        self.seconds = 0.0
        self._start: float | None = None
        self._val_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.tokens += self.tokens_per_batch * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._start is not None:  # validation time does not count as training time
            self._start += time.perf_counter() - self._val_start

    def on_train_end(self, trainer, pl_module) -> None:
        if self._start is not None:
            self.seconds = time.perf_counter() - self._start

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else math.nan
