"""Trainer set-up for the run wiring: arguments, callbacks, loggers and samples."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger

from lmforge.errors import ConfigError
from lmforge.schemas import LoggerConfig, SampleConfig, TrainerConfig
from lmforge.plugins.training.generate import generate

# handled by LMModule itself (see its docstring), or not a Trainer argument
NOT_TRAINER_ARGS = {"gradient_clip_val", "nonfinite", "compile", "checkpoint_every_n_steps", "checkpoint_top_k"}


def precision(value: str) -> str:
    """``auto``: bf16-mixed on a CUDA device with bf16, 16-mixed on older ones, else 32-true."""
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def trainer_kwargs(cfg: TrainerConfig, model: torch.nn.Module | None = None) -> dict:
    """``lightning.Trainer`` arguments; ``model`` tells FSDP which blocks to shard."""
    from lmforge.plugins.training.checkpointing import AtomicCheckpointIO

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
    from lmforge.plugins.training.checkpointing import LastCheckpoint, RngState

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
        found.append(RichProgressBar(refresh_rate=max(1, cfg.log_every_n_steps // 2)))
    return found


def logger(cfg: LoggerConfig, run_dir: Path):
    """The run's loggers: metrics.csv always (unless ``none``), plus TensorBoard or W&B.

    Keeping metrics.csv under every logger gives each run the same local record to compare.
    """
    if cfg.name == "none":
        return False
    # metrics.csv goes straight into the run directory, which already holds our files
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    found = [CSVLogger(save_dir=run_dir, name="", version="")]
    if cfg.name == "tensorboard":
        # default_hp_metric would log a placeholder -1 "hp_metric" scalar to every run
        found.append(_tensorboard(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False, filename_suffix=".0"))
    elif cfg.name == "wandb":
        from lightning.pytorch.loggers import WandbLogger
        from omegaconf import OmegaConf

        config = run_dir / "config.yaml"  # the resolved run config, written before training
        found.append(
            WandbLogger(
                save_dir=str(run_dir),
                project=cfg.project,
                entity=cfg.entity,
                name=cfg.run_name or "/".join(run_dir.parts[-2:]),
                tags=list(cfg.tags) or None,
                mode=wandb_mode(cfg.mode),
                config=OmegaConf.to_container(OmegaConf.load(config)) if config.exists() else None,
            )
        )
    return found


def _tensorboard(**kwargs):
    """A TensorBoardLogger that opens a new events file for each stage it logs.

    Event files are named by the second and opened with 'wb': the writer Lightning reopens
    for the final validation, within the same second as fit's closed, would overwrite the
    training events. After each stage the writer is dropped and the next gets a new suffix.
    """
    import itertools

    from lightning.pytorch.loggers import TensorBoardLogger

    class TensorBoard(TensorBoardLogger):
        stages = itertools.count(1)

        def finalize(self, status: str) -> None:
            super().finalize(status)
            self._experiment = None
            self._kwargs["filename_suffix"] = f".{next(self.stages)}"

    return TensorBoard(**kwargs)


def wandb_mode(configured: str | None) -> str:
    """``logger.mode`` if set, else $WANDB_MODE, else online only when a W&B API key is found.

    A key comes from $WANDB_API_KEY or from the netrc file ``wandb login`` writes ($NETRC
    or ~/.netrc) for the host of $WANDB_BASE_URL; without one a run never asks to log in.
    """
    import netrc
    import os
    from urllib.parse import urlsplit

    if configured or os.environ.get("WANDB_MODE"):
        return configured or os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc
    try:
        found = netrc.netrc(os.environ.get("NETRC") or os.path.expanduser("~/.netrc")).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        found = None
    return "online" if found else "offline"


def samples(model, tokenizer, cfg: SampleConfig, device) -> str:
    """Continue each prompt with the trained model; returns the texts, one block each."""
    eos = tokenizer.special_ids.get("eos")
    generator = torch.Generator(device=device).manual_seed(0)
    blocks = []
    for prompt in cfg.prompts:
        ids = tokenizer.encode_batch([prompt])[0] or ([eos] if eos is not None else [0])
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        out = generate(model, idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=eos, generator=generator)
        blocks.append(f"=== prompt: {prompt!r}\n{tokenizer.decode(out[0].tolist())}\n")
    return "\n".join(blocks)
