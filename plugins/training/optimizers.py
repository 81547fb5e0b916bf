"""The built-in optimizers: ``optimizer=adamw|sgd|adafactor``.

Each receives the engine's two parameter groups (matrices with ``weight_decay``, norms,
biases and embeddings without) and returns a torch optimizer. torch is imported inside
``build``, so registering them costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from lmforge import hookimpl
from lmforge.contracts import Optimizer, OptimizerConfig


@dataclass
class AdamWConfig(OptimizerConfig):
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    fused: Optional[bool] = None  # None: fused on CUDA, plain elsewhere

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={list(self.betas)}: must be two numbers in [0, 1); e.g. optimizer.betas=[0.9,0.95]")
        if not self.eps > 0:
            raise ValueError(f"eps={self.eps}: must be above 0; e.g. eps=1e-8")


class AdamW(Optimizer):
    """AdamW (Loshchilov & Hutter 2019), decoupled weight decay; the fused kernel on CUDA."""

    name = "adamw"
    Config = AdamWConfig

    def build(self, param_groups, on_cuda):
        import torch

        c = self.config
        fused = on_cuda if c.fused is None else c.fused
        return torch.optim.AdamW(param_groups, lr=c.lr, betas=tuple(c.betas), eps=c.eps, fused=fused)


@dataclass
class SGDConfig(OptimizerConfig):
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    dampening: float = 0.0
    weight_decay: float = 0.0  # L2 added to the gradient (SGD's decay is not decoupled)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum={self.momentum}: must be in [0, 1); e.g. momentum=0.9")
        if not 0.0 <= self.dampening < 1.0:
            raise ValueError(f"dampening={self.dampening}: must be in [0, 1); e.g. dampening=0.0")
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov=true needs momentum > 0 and dampening = 0, got momentum={self.momentum}, "
                f"dampening={self.dampening}; set optimizer.momentum=0.9 or optimizer.nesterov=false"
            )


class SGD(Optimizer):
    """SGD with (Nesterov) momentum."""

    name = "sgd"
    Config = SGDConfig

    def build(self, param_groups, on_cuda):
        import torch

        c = self.config
        return torch.optim.SGD(param_groups, lr=c.lr, momentum=c.momentum, dampening=c.dampening, nesterov=c.nesterov)


@dataclass
class AdafactorConfig(OptimizerConfig):
    """torch.optim.Adafactor (Shazeer & Stern 2018): factored second moments, no first moment."""

    lr: float = 1e-2  # caps the relative step: min(lr, 1/sqrt(t)) x RMS(parameter)
    beta2_decay: float = -0.8  # second-moment decay 1 - t^beta2_decay
    eps: List[Optional[float]] = field(default_factory=lambda: [None, 1e-3])  # (squared-grad floor, step floor)
    d: float = 1.0  # clips the update's RMS to d
    weight_decay: float = 0.0  # decoupled: parameter x (1 - lr x weight_decay) each step

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta2_decay > 0 or len(self.eps) != 2 or any(e is not None and e < 0 for e in self.eps) or self.d <= 0:
            raise ValueError(
                f"need beta2_decay <= 0, two eps values (null or >= 0) and d > 0, got beta2_decay={self.beta2_decay}, "
                f"eps={list(self.eps)}, d={self.d}"
            )


class Adafactor(Optimizer):
    """torch's own Adafactor (2.5+): its factored second moment saves the memory of AdamW's
    two full-size moments, with no extra dependency."""

    name = "adafactor"
    Config = AdafactorConfig

    def build(self, param_groups, on_cuda):
        import torch

        c = self.config
        return torch.optim.Adafactor(param_groups, lr=c.lr, beta2_decay=c.beta2_decay, eps=tuple(c.eps), d=c.d)


@hookimpl
def register_optimizers(register):
    for cls in (AdamW, SGD, Adafactor):
        register(cls)
