"""The built-in learning-rate schedules: ``scheduler=cosine|linear|constant|wsd``.

Every schedule warms up linearly over ``warmup_steps`` (``lmforge.contracts.Scheduler``),
then follows its own shape from the peak rate to ``min_lr_ratio`` x the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmforge import hookimpl
from lmforge.contracts import Scheduler, SchedulerConfig


@dataclass
class DecayConfig(SchedulerConfig):
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]; e.g. min_lr_ratio=0.1")


class _Decay(Scheduler):
    """From the peak down to ``min_lr_ratio`` along ``shape``, 0 -> 1 over the decay phase."""

    def shape(self, progress: float) -> float:
        return progress

    def multiplier(self, progress: float) -> float:
        return 1.0 - (1.0 - self.config.min_lr_ratio) * self.shape(progress)


@dataclass
class CosineConfig(DecayConfig):
    min_lr_ratio: float = 0.1


class Cosine(_Decay):
    """Cosine decay to ``min_lr_ratio`` at ``trainer.max_steps`` (Loshchilov & Hutter 2017)."""

    name = "cosine"
    Config = CosineConfig

    def shape(self, progress: float) -> float:
        return 0.5 * (1 - math.cos(math.pi * progress))


@dataclass
class LinearConfig(DecayConfig):
    pass


class Linear(_Decay):
    """A straight line down to ``min_lr_ratio`` at ``trainer.max_steps``."""

    name = "linear"
    Config = LinearConfig


@dataclass
class ConstantConfig(SchedulerConfig):
    pass


class Constant(Scheduler):
    """The peak rate after the warm-up, to the end."""

    name = "constant"
    Config = ConstantConfig

    def multiplier(self, progress: float) -> float:
        return 1.0


@dataclass
class WSDConfig(DecayConfig):
    """Warm-up, stable, decay (Hägele et al. 2024; MiniCPM, Hu et al. 2024)."""

    decay_fraction: float = 0.2  # the last 20% of trainer.max_steps decays
    decay_shape: str = "1-sqrt"  # 1-sqrt (Hägele et al.) or linear

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction={self.decay_fraction}: must be above 0 and at most 1; e.g. decay_fraction=0.2")
        if self.decay_shape not in ("1-sqrt", "linear"):
            raise ValueError(f"decay_shape must be 1-sqrt or linear, got {self.decay_shape!r}")


class WSD(_Decay):
    """The peak rate until the last ``decay_fraction`` of the run, then a cool-down by
    ``1 - sqrt(progress)`` or linearly. A run can stop anywhere in the stable phase and
    cool down later from that checkpoint."""

    name = "wsd"
    Config = WSDConfig

    def decay_start(self, max_steps: int) -> int:
        # the decay never starts before the warm-up ends, even in a short run
        return max(self.config.warmup_steps, max_steps - round(self.config.decay_fraction * max_steps))

    def shape(self, progress: float) -> float:
        return math.sqrt(progress) if self.config.decay_shape == "1-sqrt" else progress


@hookimpl
def register_schedulers(register):
    for cls in (Cosine, Linear, Constant, WSD):
        register(cls)
