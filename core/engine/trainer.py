"""The ``lightning.Trainer`` of a run: its arguments, precision, strategy and callbacks."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

from lmforge.contracts import Logger
from lmforge.engine.config import TrainerConfig
from lmforge.errors import ConfigError

# handled by LMModule itself (see its docstring), or not a Trainer argument
NOT_TRAINER_ARGS = {"gradient_clip_val", "nonfinite", "compile", "kernels", "sdpa_backend", "checkpoint_every_n_steps", "checkpoint_top_k"}


def precision(value: str) -> str:
    """``auto``: bf16-mixed on a CUDA device with bf16, 16-mixed on older ones, else 32-true."""
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def trainer_kwargs(cfg: TrainerConfig, model: torch.nn.Module | None = None) -> dict:
    """``lightning.Trainer`` arguments; ``model`` tells FSDP which blocks to shard."""
    from lmforge.engine.checkpointing import AtomicCheckpointIO

    _check_launch(cfg)
    kwargs = {k: v for k, v in asdict(cfg).items() if k not in NOT_TRAINER_ARGS and v is not None}
    kwargs["precision"] = precision(cfg.precision)
    kwargs["plugins"] = [AtomicCheckpointIO()]
    kwargs["use_distributed_sampler"] = False  # TokenDataModule splits the stream over ranks itself
    if cfg.strategy == "fsdp":
        kwargs["strategy"] = fsdp_strategy(model)
    if cfg.val_check_interval:  # Lightning refuses an interval longer than the run
        kwargs["val_check_interval"] = min(cfg.val_check_interval, cfg.max_steps * cfg.accumulate_grad_batches)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for whatever stays in fp32
    return kwargs


def fsdp_strategy(model: torch.nn.Module | None):
    """FSDP with one unit per repeated block: the modules held in the model's ModuleLists."""
    from lightning.pytorch.strategies import FSDPStrategy

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)] if model is not None else []
    blocks = {type(block) for blocks in lists for block in blocks}
    # a full state dict gathered on rank 0 keeps a checkpoint one plain file, as without FSDP
    return FSDPStrategy(auto_wrap_policy=blocks or None, sharding_strategy="FULL_SHARD", state_dict_type="full")


def _check_launch(cfg: TrainerConfig) -> None:
    """Lightning starts DDP ranks by re-running the command line, which under ``-m`` is the whole sweep."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.plugins.environments import SLURMEnvironment

    # under torchrun or srun (submitit's SLURM launcher) every rank is started for us: nothing is re-run
    launched = "TORCHELASTIC_RUN_ID" in os.environ or SLURMEnvironment.detect()
    if cfg.strategy not in ("ddp", "fsdp") or launched or not HydraConfig.initialized():
        return
    if HydraConfig.get().mode.name == "MULTIRUN":
        raise ConfigError(
            f"trainer.strategy={cfg.strategy} cannot run inside a Hydra multirun (-m): Lightning would re-run the "
            f"whole sweep once per device. Use trainer.strategy=ddp_spawn, or run each trial as its own lmforge train "
            f"(or under torchrun --nproc_per_node=N -m lmforge.cli train ...)"
        )


def callbacks(run_dir: Path, cfg: TrainerConfig, logging: bool) -> list:
    from lmforge.engine.checkpointing import LastCheckpoint, RngState

    found = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best-step{step}",
            auto_insert_metric_name=False,
            save_top_k=cfg.checkpoint_top_k,
            monitor="val/loss",
        ),
        LastCheckpoint(run_dir / "checkpoints", cfg.checkpoint_every_n_steps),  # what resume= continues from
        RngState(),
    ]
    if logging:
        found.append(LearningRateMonitor(logging_interval="step"))
    if cfg.enable_progress_bar:
        from lmforge.engine.console import StepProgressBar

        found.append(StepProgressBar(refresh_rate=max(1, cfg.log_every_n_steps // 2)))
    return found


def loggers(logger: Logger, run_dir: Path) -> list:
    """``metrics.csv`` in the run directory, unless the logger is ``none``, and the logger's own."""
    import warnings

    from lightning.pytorch.loggers import CSVLogger

    found = []
    if logger.metrics_csv:
        # metrics.csv goes straight into the run directory, which already holds our files
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
        found.append(CSVLogger(save_dir=run_dir, name="", version=""))
    return found + list(logger.build(run_dir))


