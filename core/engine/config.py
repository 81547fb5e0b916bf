"""The engine's config schemas: the ``data``, ``trainer``, ``loss`` and ``sample`` groups.

The YAML files in ``conf/`` give the values; these dataclasses give the keys and types,
so that ``data.batch_size=abc`` or ``trainer.max_step=10`` fails before any work starts.
Keys equal the arguments of what they configure (``trainer`` keys are
``lightning.Trainer`` arguments). The optimizer, scheduler and logger are components
with schemas of their own (``lmforge.plugins.training``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional


@dataclass
class DataConfig:
    seq_len: int = 256
    batch_size: int = 32
    val_fraction: float = 0.05
    num_workers: int = 0
    val_batches: int = 20  # batches per validation pass, 0 for the whole split
    sampling: str = "random"  # random windows, or sequential: each window once per epoch, shuffled

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {self.seq_len} and {self.batch_size}")
        if self.sampling not in ("random", "sequential"):
            raise ValueError(f"sampling must be random or sequential, got {self.sampling!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 exclusive, got {self.val_fraction}")


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
    checkpoint_every_n_steps: Optional[int] = None  # also refresh last.ckpt every n optimizer steps
    checkpoint_top_k: int = 1  # best checkpoints kept by validation loss
    nonfinite: str = "stop"  # a NaN/inf loss or gradient: stop (raise before the step) or skip the step
    compile: bool = False  # torch.compile the model's forward

    def __post_init__(self) -> None:
        if self.nonfinite not in ("stop", "skip"):
            raise ValueError(f"nonfinite must be stop or skip, got {self.nonfinite!r}")
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise ValueError(f"checkpoint_every_n_steps must be >= 1 or null, got {self.checkpoint_every_n_steps}")


@dataclass
class LossConfig:
    """The training objective on top of cross-entropy; metrics always report the plain one."""

    label_smoothing: float = 0.0  # mass spread uniformly over the vocabulary (Szegedy et al. 2016)
    z_loss: float = 0.0  # weight of mean logsumexp(logits)^2, keeps the softmax normaliser near 1 (PaLM)

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.z_loss < 0:
            raise ValueError(f"z_loss must be >= 0, got {self.z_loss}; PaLM used 1e-4")


@dataclass
class SampleConfig:
    # null: the collector's own prompts (stdlib: "def ", "import ", "class "), else the
    # first words of validation documents
    prompts: Optional[List[str]] = None
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: Optional[int] = 50


# the groups the engine reads, and their schemas
GROUP_SCHEMAS = {"data": DataConfig, "trainer": TrainerConfig, "loss": LossConfig, "sample": SampleConfig}
