"""Optimizers and learning-rate schedules for the training engine.

``optimizer=adamw|sgd|adafactor`` and ``scheduler=cosine|linear|constant|wsd``; the
schemas (one per option) live in ``lmforge.schemas``. Every optimizer gets the same two
parameter groups, so weight decay never touches norms, biases or embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.schemas import AdafactorConfig, AdamWConfig, OptimizerConfig, SchedulerConfig, SGDConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms, biases and embeddings are left alone (as in GPT-2/3)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, on_cuda: bool) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if isinstance(cfg, AdamWConfig):
        fused = on_cuda if cfg.fused is None else cfg.fused
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)
    if isinstance(cfg, SGDConfig):
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening, nesterov=cfg.nesterov)
    if isinstance(cfg, AdafactorConfig):
        # torch's own Adafactor (2.5+): one less dependency than a Lion package, and its
        # factored second moment saves memory where AdamW keeps two full-size moments
        return torch.optim.Adafactor(groups, lr=cfg.lr, beta2_decay=cfg.beta2_decay, eps=tuple(cfg.eps), d=cfg.d)
    raise TypeError(f"optimizer={cfg.name}: no builder for {type(cfg).__name__}; choose adamw, sgd or adafactor")


def lr_lambda(cfg: SchedulerConfig, max_steps: int):
    """Multiplier of the peak lr at each step: linear warm-up, then the option's shape.

    - ``cosine``: cosine from 1 to ``min_lr_ratio`` at ``max_steps``;
    - ``linear``: straight line from 1 to ``min_lr_ratio`` at ``max_steps``;
    - ``constant``: 1 after the warm-up;
    - ``wsd``: 1 until the last ``decay_fraction`` of the run, then down to ``min_lr_ratio``
      by ``1 - sqrt(progress)`` (Hägele et al. 2024) or linearly. A run can be stopped
      anywhere in the stable phase and cooled down later from that checkpoint.
    """
    warmup = cfg.warmup_steps
    floor = getattr(cfg, "min_lr_ratio", 1.0)
    if cfg.name == "wsd":
        # decay never starts before the warm-up ends, even if the run is short
        decay_start = max(warmup, max_steps - round(cfg.decay_fraction * max_steps))
    else:
        decay_start = warmup

    def shape(progress: float) -> float:
        """Fraction of the way from the peak (1) to the floor, for progress in [0, 1]."""
        if cfg.name == "cosine":
            return 0.5 * (1 - math.cos(math.pi * progress))
        if cfg.name == "wsd" and cfg.decay_shape == "1-sqrt":
            return math.sqrt(progress)
        return progress  # linear, and wsd's linear decay

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.name == "constant" or step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
        return 1.0 - (1.0 - floor) * shape(progress)

    return factor
