"""Metrics beyond the loss: token accuracy, macro precision/recall/F1, throughput and MFU.

Everything here stays on the device: values are tensors that Lightning moves to the host
at its logging interval, never one ``.item()`` per step.
"""

from __future__ import annotations

import math
import time

import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import Metric

from lmforge.engine.losses import IGNORE_INDEX

LN2 = math.log(2.0)

# Dense bf16 tensor-core peak per GPU, FLOP/s (vendor datasheets, no sparsity). Matched as a
# substring of torch.cuda.get_device_name(), the most specific entry first.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "H200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def peak_flops(device_name: str) -> float | None:
    """The bf16 dense peak of the GPU called ``device_name``, or None when not in the table."""
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None


def bits_per_byte(nll_nats: torch.Tensor, bytes_per_token: float) -> torch.Tensor:
    """Mean loss per token (nats) as bits per byte of text, comparable across tokenizers."""
    return nll_nats / (LN2 * bytes_per_token)


def topk_hits(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits`` (N, V), ``targets`` (N,) with ``IGNORE_INDEX`` holes.

    Returns the top-1 predictions (N,) and, per k in ``ks``, how many predicted positions
    have their target among the k most likely tokens (len(ks),). Ignored positions never
    count: -100 matches no token id.
    """
    top = logits.topk(min(max(ks), logits.size(-1)), dim=-1).indices  # (N, K)
    hit = top == targets[:, None]  # (N, K)
    return top[:, 0], torch.stack([hit[:, :k].any(dim=-1).sum() for k in ks])


class MacroPRF(Metric):
    """Macro precision, recall and F1 over the vocabulary, as torchmetrics defines them.

    Equal to ``MulticlassPrecision/Recall/F1Score(num_classes=V, average="macro",
    ignore_index=-100)``, without their (V, V) confusion matrix, which is 20 GB for a 50k
    vocabulary: three per-class counts suffice. Absent classes follow torchmetrics 1.x: a
    token id that is neither a target nor predicted would score 0/0 and is left out of the
    average (otherwise a 50k vocabulary, of which a validation pass sees a few thousand ids,
    would pull every score towards 0); a token predicted but never a target, or a target
    never predicted, is a real error and counts with 0.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        for name in ("tp", "predicted", "actual"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def _count(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # dropped positions go to an extra bin; bincount without weights is allowed under
        # torch.use_deterministic_algorithms (integer counts do not depend on order)
        return torch.bincount(torch.where(keep, ids, self.num_classes), minlength=self.num_classes + 1)[: self.num_classes]

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """``preds`` and ``targets`` (N,) token ids; targets may hold ``IGNORE_INDEX``."""
        keep = targets != IGNORE_INDEX
        self.tp += self._count(targets, keep & (preds == targets))
        self.predicted += self._count(preds, keep)
        self.actual += self._count(targets, keep)

    def compute(self) -> dict[str, torch.Tensor]:
        tp = self.tp.double()
        fp, fn = self.predicted - self.tp, self.actual - self.tp
        present = (self.tp + fp + fn) > 0

        def macro(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
            score = torch.where(den > 0, num / den.clamp(min=1), 0.0)  # 0/0 counts as 0 (zero_division=0)
            return (score * present).sum() / present.sum().clamp(min=1)

        return {
            "precision": macro(tp, tp + fp).float(),
            "recall": macro(tp, tp + fn).float(),
            "f1": macro(2 * tp, 2 * tp + fp + fn).float(),
        }


class Throughput(Callback):
    """Counts training tokens and time (validation excluded); logs tokens/s and, on CUDA, MFU.

    The rate covers the steps since the previous logging step. Host time stays within a
    step of device time because the non-finite check reads each step's flag back from the
    device at the next step.
    MFU (PaLM, Chowdhery et al. 2022) is ``flops_per_token x tokens/s / peak``, the peak summed
    over the devices, for GPUs in ``PEAK_BF16_FLOPS``.
    """

    def __init__(self, tokens_per_batch: int, flops_per_token: float | None = None) -> None:
        self.tokens_per_batch = tokens_per_batch
        self.flops_per_token = flops_per_token
        self.tokens = 0
        self.seconds = 0.0
        self._start: float | None = None
        self._val_start = 0.0
        self._mark = (0.0, 0, -1)  # (time, tokens, global step) at the previous rate
        self._peak: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        self._mark = (self._start, self.tokens, trainer.global_step)
        if pl_module.device.type == "cuda" and self.flops_per_token:
            peak = peak_flops(torch.cuda.get_device_name(pl_module.device))
            self._peak = peak * trainer.world_size if peak else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.tokens += self.tokens_per_batch * trainer.world_size
        step = trainer.global_step
        if step == self._mark[2] or step % trainer.log_every_n_steps:
            return
        now = time.perf_counter()
        then, tokens, _ = self._mark
        self._mark = (now, self.tokens, step)
        if now <= then:
            return
        rate = (self.tokens - tokens) / (now - then)
        pl_module.log("train/tokens_per_s", rate)
        if self._peak:
            pl_module.log("train/mfu", self.flops_per_token * rate / self._peak)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._start is not None:  # validation time does not count as training time
            spent = time.perf_counter() - self._val_start
            self._start += spent
            self._mark = (self._mark[0] + spent, *self._mark[1:])

    def on_train_end(self, trainer, pl_module) -> None:
        if self._start is not None:
            self.seconds = time.perf_counter() - self._start

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else math.nan
