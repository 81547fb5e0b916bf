"""The engine's config schemas: the ``data``, ``trainer``, ``loss`` and ``sample`` groups.

The YAML files in ``conf/`` give the values; these dataclasses give the keys and types,
so that ``data.batch_size=abc`` or ``trainer.max_step=10`` fails before any work starts.
Keys equal the arguments of what they configure (``trainer`` keys are
``lightning.Trainer`` arguments). The optimizer, scheduler and logger are components
with schemas of their own (``lmforge.plugins.training``).

Each ``__post_init__`` also checks the values, so that ``trainer.max_steps=0`` fails in
the config check rather than after the data stages. A message names the field as
``field=value: what is allowed; e.g. field=good``, and the Hydra bridge puts the group
in front of every field it names (``trainer.max_steps=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

# what lightning.Trainer(precision=) accepts (lightning 2.x), besides our own "auto"
PRECISIONS = (
    "auto", "64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true",
    "transformer-engine", "transformer-engine-float16", "64", "32", "16", "bf16",
)
# Lightning's accelerator names; strategies are too many to list and fail in Lightning
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")


def shown(value: Any) -> str:
    """A value as it is written on the command line: ``null``, ``true``, ``[0,1]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value and value.strip() == value and "," not in value else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown(v) for v in value) + "]"
    return str(value)


def bad_value(key: str, value: Any, allowed: str, example: Any) -> ValueError:
    """The error every config check raises: ``key=value: allowed; e.g. key=example``."""
    return ValueError(f"{key}={shown(value)}: {allowed}; e.g. {key}={shown(example)}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_count(config: Any, key: str, low: int, example: int, optional: bool = False) -> None:
    """``config.<key>`` must be an int of at least ``low`` (or None when ``optional``)."""
    value = getattr(config, key)
    if optional and value is None:
        return
    if not is_int(value) or value < low:
        allowed = {0: "must be 0 or more", 1: "must be at least 1"}.get(low, f"must be at least {low}")
        raise bad_value(key, value, allowed + (", or null" if optional else ""), example)


def valid_devices(devices: Any) -> bool:
    """What ``lightning.Trainer(devices=)`` accepts: a count, indices, ``auto`` or ``-1`` (all)."""
    if is_int(devices):
        return devices >= 1 or devices == -1
    if isinstance(devices, (list, tuple)):
        return bool(devices) and all(is_int(d) and d >= 0 for d in devices) and len(set(devices)) == len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return True
        if "," in text:  # "0,1" or "0,": device indices
            indices = [part.strip() for part in text.split(",") if part.strip()]
            return bool(indices) and all(part.isdigit() for part in indices)
        return text.isdigit() and int(text) >= 1
    return False


@dataclass
class DataConfig:
    seq_len: int = 256
    batch_size: int = 32
    val_fraction: float = 0.05
    num_workers: int = 0
    val_batches: int = 20  # batches per validation pass, 0 for the whole split
    sampling: str = "random"  # random windows, or sequential: each window once per epoch, shuffled

    def __post_init__(self) -> None:
        check_count(self, "seq_len", 1, 256)
        check_count(self, "batch_size", 1, 32)
        check_count(self, "num_workers", 0, 4)
        check_count(self, "val_batches", 0, 20)
        if self.sampling not in ("random", "sequential"):
            raise ValueError(f"sampling must be random or sequential, got {self.sampling!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad_value("val_fraction", self.val_fraction, "must be above 0 and below 1", 0.05)


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
    kernels: str = "auto"  # the loss path: auto, torch, chunked, liger or cce (lmforge.engine.kernels)
    sdpa_backend: str = "auto"  # scaled_dot_product_attention's kernel in training: auto (PyTorch's choice), flash, cudnn, efficient, math

    def __post_init__(self) -> None:
        kernels = ("auto", "torch", "chunked", "liger", "cce")  # lmforge.engine.kernels.KERNELS, without importing torch
        if self.kernels not in kernels:
            raise bad_value("kernels", self.kernels, f"must be one of {', '.join(kernels)}", "auto")
        backends = ("auto", "flash", "cudnn", "efficient", "math")
        if self.sdpa_backend not in backends:
            raise bad_value("sdpa_backend", self.sdpa_backend, f"must be one of {', '.join(backends)}", "auto")
        if self.nonfinite not in ("stop", "skip"):
            raise ValueError(f"nonfinite must be stop or skip, got {self.nonfinite!r}")
        check_count(self, "checkpoint_every_n_steps", 1, 100, optional=True)
        if self.accelerator not in ACCELERATORS:
            raise bad_value("accelerator", self.accelerator, f"must be one of {', '.join(ACCELERATORS)}", "gpu")
        if not valid_devices(self.devices):
            allowed = "must be a count of at least 1, a non-empty list of device indices, auto, -1 (all), or a string such as 2 or 0,1"
            raise bad_value("devices", self.devices, allowed, "auto")
        check_count(self, "num_nodes", 1, 1)
        if not self.strategy:
            raise bad_value("strategy", self.strategy, "must name a Lightning strategy such as auto, ddp or fsdp", "auto")
        if str(self.precision) not in PRECISIONS:
            raise bad_value("precision", self.precision, f"must be one of {', '.join(PRECISIONS)}", "bf16-mixed")
        check_count(self, "max_steps", 1, 1000)
        check_count(self, "val_check_interval", 1, 250, optional=True)
        limit = self.limit_val_batches  # a batch count, or a share of the split as a float
        if limit is not None and not ((is_int(limit) and limit >= 0) or (isinstance(limit, float) and 0.0 <= limit <= 1.0)):
            allowed = "must be a batch count (0 or more), a fraction of the split in [0.0, 1.0], or null"
            raise bad_value("limit_val_batches", limit, allowed, 10)
        check_count(self, "log_every_n_steps", 1, 10)
        check_count(self, "accumulate_grad_batches", 1, 4)
        if self.gradient_clip_val is not None and not self.gradient_clip_val > 0:
            raise bad_value("gradient_clip_val", self.gradient_clip_val, "must be above 0, or null for no clipping", 1.0)
        if self.deterministic not in (None, True, False, "warn"):
            raise bad_value("deterministic", self.deterministic, "must be true, false, warn or null", "true")
        check_count(self, "num_sanity_val_steps", -1, 2)
        if not is_int(self.checkpoint_top_k) or self.checkpoint_top_k < -1:
            raise bad_value("checkpoint_top_k", self.checkpoint_top_k, "must be -1 (keep all), 0 (none) or a count", 1)


@dataclass
class LossConfig:
    """The training objective on top of cross-entropy; metrics always report the plain one."""

    label_smoothing: float = 0.0  # mass spread uniformly over the vocabulary (Szegedy et al. 2016)
    z_loss: float = 0.0  # weight of mean logsumexp(logits)^2, keeps the softmax normaliser near 1 (PaLM)

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            # the wording an existing test and the docs show
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}; e.g. loss.label_smoothing=0.1")
        if self.z_loss < 0:
            raise bad_value("z_loss", self.z_loss, "must be 0 or more (PaLM used 1e-4)", 1e-4)


@dataclass
class SampleConfig:
    # null: the collector's own prompts (stdlib: "def ", "import ", "class "), else the
    # first words of validation documents
    prompts: Optional[List[str]] = None
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: Optional[int] = 50

    def __post_init__(self) -> None:
        check_count(self, "max_new_tokens", 1, 64)
        if not self.temperature >= 0:
            raise bad_value("temperature", self.temperature, "must be 0 (greedy) or more", 0.8)
        check_count(self, "top_k", 1, 50, optional=True)


# the groups the engine reads, and their schemas
GROUP_SCHEMAS = {"data": DataConfig, "trainer": TrainerConfig, "loss": LossConfig, "sample": SampleConfig}
