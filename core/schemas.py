"""Typed schemas of the config groups that are not plugin components.

The YAML files in ``conf/`` give the values; these dataclasses give the keys and types,
so that ``data.batch_size=abc`` or ``trainer.max_step=10`` fails before any work starts.
Keys equal the arguments of what they configure (``trainer`` keys are
``lightning.Trainer`` arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional


@dataclass
class PreprocessConfig:
    steps: List[Any] = field(default_factory=list)  # each a dict with a 'name' and that step's options
    n_workers: int = 1


@dataclass
class DataConfig:
    seq_len: int = 256
    batch_size: int = 32
    val_fraction: float = 0.05
    num_workers: int = 0
    val_batches: int = 20  # batches per validation pass, 0 for the whole split

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {self.seq_len} and {self.batch_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 exclusive, got {self.val_fraction}")


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    fused: Optional[bool] = None  # None: fused on CUDA, plain elsewhere

    def __post_init__(self) -> None:
        if self.name != "adamw":
            raise ValueError(f"name={self.name!r} is not available; this version provides adamw")


@dataclass
class SchedulerConfig:
    name: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # final lr as a fraction of the peak

    def __post_init__(self) -> None:
        if self.name not in ("cosine", "constant"):
            raise ValueError(f"name={self.name!r} is not available; choose cosine or constant")


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: bf16-mixed on CUDA (16-mixed on GPUs without bf16), else 32-true
    max_steps: int = 1000
    val_check_interval: Optional[int] = 250  # in training batches (micro-batches with accumulation)
    limit_val_batches: Optional[Any] = None
    log_every_n_steps: int = 10
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = 1.0
    deterministic: Optional[Any] = None
    benchmark: Optional[bool] = None
    enable_progress_bar: bool = True
    num_sanity_val_steps: int = 0


@dataclass
class LoggerConfig:
    name: str = "csv"

    def __post_init__(self) -> None:
        if self.name not in ("csv", "none"):
            raise ValueError(f"name={self.name!r} is not available; choose csv or none")


@dataclass
class SampleConfig:
    prompts: List[str] = field(default_factory=lambda: ["def ", "import ", "class "])
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: Optional[int] = 50


GROUP_SCHEMAS = {
    "preprocess": PreprocessConfig,
    "data": DataConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
    "sample": SampleConfig,
}
