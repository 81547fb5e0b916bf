"""Trainer set-up for the run wiring: arguments, callbacks, loggers and samples."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger

from lmforge.schemas import LoggerConfig, SampleConfig, TrainerConfig
from lmforge.plugins.training.generate import generate

# handled by LMModule itself (see its docstring), or not a Trainer argument
NOT_TRAINER_ARGS = {"gradient_clip_val"}


def precision(value: str) -> str:
    """``auto``: bf16-mixed on a CUDA device with bf16, 16-mixed on older ones, else 32-true."""
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def trainer_kwargs(cfg: TrainerConfig) -> dict:
    kwargs = {k: v for k, v in asdict(cfg).items() if k not in NOT_TRAINER_ARGS and v is not None}
    kwargs["precision"] = precision(cfg.precision)
    if cfg.val_check_interval:  # Lightning refuses an interval longer than the run
        kwargs["val_check_interval"] = min(cfg.val_check_interval, cfg.max_steps * cfg.accumulate_grad_batches)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for whatever stays in fp32
    return kwargs


def callbacks(run_dir: Path, cfg: TrainerConfig, logging: bool) -> list:
    found = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="step-{step}",
            auto_insert_metric_name=False,
            save_last=True,
            save_top_k=1,
            monitor="val/loss",
        ),
    ]
    if logging:
        found.append(LearningRateMonitor(logging_interval="step"))
    if cfg.enable_progress_bar:
        found.append(RichProgressBar(refresh_rate=max(1, cfg.log_every_n_steps // 2)))
    return found


def logger(cfg: LoggerConfig, run_dir: Path):
    if cfg.name == "none":
        return False
    # metrics.csv goes straight into the run directory, which already holds our files
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    return CSVLogger(save_dir=run_dir, name="", version="")


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
