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
    sampling: str = "random"  # random windows, or sequential: each window once per epoch, shuffled

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {self.seq_len} and {self.batch_size}")
        if self.sampling not in ("random", "sequential"):
            raise ValueError(f"sampling must be random or sequential, got {self.sampling!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 exclusive, got {self.val_fraction}")


@dataclass
class OptimizerConfig:
    """Keys every optimizer has; each option below adds its own, chosen by ``name``.

    One schema per option, so ``optimizer=sgd +optimizer.betas=[0.9,0.95]`` fails naming
    ``optimizer.betas`` and listing what sgd takes.
    """

    name: str = "adamw"
    lr: float = 1e-3  # peak learning rate; the scheduler scales it
    weight_decay: float = 0.1  # on matrices only: norms, biases and embeddings are spared

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class AdamWConfig(OptimizerConfig):
    name: str = "adamw"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    fused: Optional[bool] = None  # None: fused on CUDA, plain elsewhere

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}; e.g. optimizer.betas=[0.9,0.95]")


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    dampening: float = 0.0
    weight_decay: float = 0.0  # L2 added to the gradient (SGD's decay is not decoupled)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov=true needs momentum > 0 and dampening = 0, got momentum={self.momentum}, "
                f"dampening={self.dampening}; set optimizer.momentum=0.9 or optimizer.nesterov=false"
            )


@dataclass
class AdafactorConfig(OptimizerConfig):
    """torch.optim.Adafactor (Shazeer & Stern 2018): factored second moments, no first moment."""

    name: str = "adafactor"
    lr: float = 1e-2  # caps the relative step: min(lr, 1/sqrt(t)) x RMS(parameter)
    beta2_decay: float = -0.8  # second-moment decay 1 - t^beta2_decay
    eps: List[Optional[float]] = field(default_factory=lambda: [None, 1e-3])  # (squared-grad floor, step floor)
    d: float = 1.0  # clips the update's RMS to d
    weight_decay: float = 0.0  # decoupled: parameter x (1 - lr x weight_decay) each step

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta2_decay > 0 or len(self.eps) != 2 or self.d <= 0:
            raise ValueError(
                f"need beta2_decay <= 0, two eps values and d > 0, got beta2_decay={self.beta2_decay}, "
                f"eps={list(self.eps)}, d={self.d}"
            )


OPTIMIZERS = {"adamw": AdamWConfig, "sgd": SGDConfig, "adafactor": AdafactorConfig}


@dataclass
class SchedulerConfig:
    """Keys every schedule has: a linear warm-up from 0 to the peak lr. Options add their own."""

    name: str = "cosine"
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= getattr(self, "min_lr_ratio", 0.0) <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    name: str = "cosine"
    min_lr_ratio: float = 0.1  # final lr as a fraction of the peak


@dataclass
class LinearSchedulerConfig(SchedulerConfig):
    name: str = "linear"
    min_lr_ratio: float = 0.0


@dataclass
class ConstantSchedulerConfig(SchedulerConfig):
    name: str = "constant"


@dataclass
class WSDSchedulerConfig(SchedulerConfig):
    """Warm-up, stable, decay (Hägele et al. 2024; MiniCPM, Hu et al. 2024)."""

    name: str = "wsd"
    min_lr_ratio: float = 0.0
    decay_fraction: float = 0.2  # the last 20% of trainer.max_steps decays
    decay_shape: str = "1-sqrt"  # 1-sqrt (Hägele et al.) or linear

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.decay_shape not in ("1-sqrt", "linear"):
            raise ValueError(f"decay_shape must be 1-sqrt or linear, got {self.decay_shape!r}")


SCHEDULERS = {
    "cosine": CosineSchedulerConfig,
    "linear": LinearSchedulerConfig,
    "constant": ConstantSchedulerConfig,
    "wsd": WSDSchedulerConfig,
}


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
class LoggerConfig:
    """Keys every logger has (``csv``, ``tensorboard`` and ``none`` have no others)."""

    name: str = "csv"


@dataclass
class WandbLoggerConfig(LoggerConfig):
    name: str = "wandb"
    project: str = "lmforge"
    entity: Optional[str] = None  # team or user; None: your default entity
    run_name: Optional[str] = None  # None: the run directory, e.g. 2026-01-31/12-00-00
    tags: List[str] = field(default_factory=list)
    mode: Optional[str] = None  # online, offline, disabled; None: $WANDB_MODE, else online when logged in

    def __post_init__(self) -> None:
        if self.mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"mode must be online, offline, disabled or null, got {self.mode!r}")


LOGGERS = {"csv": LoggerConfig, "none": LoggerConfig, "tensorboard": LoggerConfig, "wandb": WandbLoggerConfig}


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
    prompts: List[str] = field(default_factory=lambda: ["def ", "import ", "class "])
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: Optional[int] = 50


GROUP_SCHEMAS = {
    "preprocess": PreprocessConfig,
    "data": DataConfig,
    "optimizer": OPTIMIZERS,  # one schema per option, chosen by the node's name
    "scheduler": SCHEDULERS,  # one schema per option, chosen by the node's name
    "trainer": TrainerConfig,
    "loss": LossConfig,
    "logger": LOGGERS,  # one schema per option, chosen by the node's name
    "sample": SampleConfig,
}
