"""The optimizer and schedule of a training run, from the chosen components.

Every optimizer gets the same two parameter groups, so weight decay never touches norms,
biases or embeddings. The optimizers and schedules themselves are components
(``optimizer=``, ``scheduler=``; the built-ins are in ``lmforge.plugins.training``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.contracts import Optimizer, Scheduler


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


def component(kind: str, value: Any):
    """A built component from itself or from its ``Config`` instance, found in the registry."""
    from lmforge.loader import load_plugins

    if not dataclass_instance(value):
        return value
    for entry in load_plugins()[1].components[kind].values():
        if type(value) is entry.cls.Config:
            return entry.cls(value)
    raise TypeError(f"no registered {kind} takes a {type(value).__name__}")


def dataclass_instance(value: Any) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def build_optimizer(model: nn.Module, optimizer: Optimizer | Any, on_cuda: bool) -> torch.optim.Optimizer:
    """``optimizer`` is the component, or its ``Config`` (the component is then looked up)."""
    optimizer = component("optimizer", optimizer)
    return optimizer.build(param_groups(model, optimizer.config.weight_decay), on_cuda)


def lr_lambda(scheduler: Scheduler | Any, max_steps: int):
    """The multiplier of the peak rate at each step; ``scheduler`` as in ``build_optimizer``."""
    return component("scheduler", scheduler).lr_lambda(max_steps)
