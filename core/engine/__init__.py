"""The training engine: Lightning around any architecture that meets the contract.

Its entry points are the three functions below; the run wiring (``lmforge.run``), the
evaluation (``lmforge.evaluate``) and commands that fine-tune or score a finished run
call them, and nothing outside this package imports its modules.

- ``token_data`` turns token arrays into a data module of ``(inputs, targets)`` batches
  for a training objective (``causal`` or ``masked``);
- ``fit`` trains a built model on any such data module (another objective or another
  data module, such as a fine-tuning task's, plugs in here) and returns what a run
  records: the final validation metrics, steps, tokens and throughput. It starts from
  the model's current weights (a fine-tuning run passes a model loaded from its base
  run), or resumes a checkpoint exactly with ``resume=``;
- ``validate`` scores a model on a data module's validation side.

Why it lives in ``core/`` and not in ``plugins/``: nothing chooses between engines. Every
run needs this one, and there is no second implementation a user would pick with
``engine=...``. What a user does swap is inside it, and each of those is a component
kind with its hook: the optimizer, the schedule and the logger
(``lmforge.plugins.training`` holds the built-ins), plus the ``train_callbacks`` hook.

Importing this package is cheap: torch and Lightning are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lmforge.engine.config import DataConfig, LossConfig, SampleConfig, TrainerConfig

if TYPE_CHECKING:
    import lightning as L
    import numpy as np
    import torch

    from lmforge.contracts import Logger, Optimizer, Scheduler, Tokenizer

__all__ = [
    "Chunk", "Completion", "DataConfig", "Fitted", "LossConfig", "SampleConfig", "Sampling", "TrainerConfig",
    "complete", "fit", "plot_curves", "sample", "seed", "stream", "token_data", "validate", "window_data",
    "LabelData", "encode_rows", "pad_rows", "predict_labels", "predict_proba",
]

# The generation API (lmforge.engine.generate) imports torch: it loads on first use.
# ``generate`` itself stays under lmforge.engine.generate, whose module name it shares.
_GENERATION = ("Chunk", "Completion", "Sampling", "complete", "stream")
# Training and predicting with a classification head (lmforge.classifier) imports torch too:
# its (inputs, targets) data module, its rows and its predictions
_CLASSIFY = ("LabelData", "encode_rows", "pad_rows", "predict_labels", "predict_proba")


@dataclass
class Fitted:
    """What ``fit`` returns: the final validation and the run's counts, for its records."""

    metrics: dict[str, float]  # val_loss (nats), val_ppl, val_bpb, val_top1, val_top5, val_precision...
    steps: int
    skipped_steps: int
    tokens: int
    tokens_per_s: float
    seconds: float
    device: str  # where it trained: Lightning hands the module back on the CPU
    precision: str
    is_global_zero: bool  # under DDP every rank returns; rank 0 writes the records


def seed(value: int) -> None:
    """Seed Python, NumPy and torch in this process and in data-loader workers."""
    from lmforge.engine import console

    console.quiet()
    import lightning as L

    L.seed_everything(value, workers=True)


def token_data(
    train: "np.ndarray",
    val: "np.ndarray",
    data: DataConfig,
    *,
    objective: str,
    tokenizer: "Tokenizer",
    seed: int,
    max_steps: int,
    accumulate: int = 1,
    starts: "tuple[np.ndarray, np.ndarray] | None" = None,
) -> "L.LightningDataModule":
    """A data module of ``(inputs, targets)`` windows of ``train`` and ``val`` for ``objective``;
    with ``starts`` (each document's first position in ``train`` and ``val``) its batches
    also carry each position's document id, ``(inputs, targets, documents)``."""
    from lmforge.engine.data import Objective, TokenDataModule

    target = Objective(objective, tokenizer.vocab_size, tokenizer.special_ids, tokenizer.name)
    return TokenDataModule(train, val, data, max_steps, accumulate, seed, target, starts)


def window_data(
    train: "tuple[np.ndarray, np.ndarray]",
    val: "tuple[np.ndarray, np.ndarray]",
    *,
    batch_size: int,
    seed: int,
    max_steps: int,
    accumulate: int = 1,
    val_batches: int = 0,
    what: str = "data.batch_size",
    documents: "tuple[np.ndarray, np.ndarray] | None" = None,
    tokens_per_window: int | None = None,
) -> "L.LightningDataModule":
    """A data module over ready-made ``(inputs, targets)`` windows, each an (N, T) array, with
    -100 in ``targets`` where nothing is predicted (a task's prompts, padding). Training reads
    every window once per pass, in an order seeded by ``(seed, pass)``, for ``max_steps`` steps,
    and resumes at the exact window; ``what`` is the config key a too-small split's error names.
    With ``documents`` (each position's document id in ``train`` and ``val``, (N, T) arrays) the
    batches also carry them, ``(inputs, targets, documents)``, for document-masked attention.
    A window of another shape (a preference pair's (5, T) rows) counts ``tokens_per_window``
    tokens for throughput, and its last axis is the sequence length."""
    from lmforge.engine.data import WindowDataModule

    return WindowDataModule(train, val, batch_size=batch_size, seed=seed, max_steps=max_steps, accumulate=accumulate,
                            val_batches=val_batches, what=what, documents=documents, tokens_per_window=tokens_per_window)


def fit(
    model: "torch.nn.Module",
    data: "L.LightningDataModule",
    *,
    vocab_size: int,
    trainer: TrainerConfig,
    optimizer: "Optimizer",
    scheduler: "Scheduler",
    loss: LossConfig,
    logger: "Logger",
    run_dir: Path,
    bytes_per_token: float | None = None,
    resume: str | None = None,
    callbacks: Sequence[Any] = (),
) -> Fitted:
    """Train ``model`` on ``data`` for ``trainer.max_steps`` optimizer steps, then validate.

    ``data`` yields ``(inputs, targets)`` batches with -100 where nothing is predicted and
    has ``seq_len`` and ``tokens_per_batch`` (as ``token_data``'s does), for throughput.
    Checkpoints go to ``run_dir/checkpoints``; ``resume`` is a checkpoint to continue from
    exactly. A SIGTERM saves ``last.ckpt`` and exits with status 143, a Ctrl-C likewise with 130
    (a second Ctrl-C stops at once).
    """
    import lightning as L

    from lmforge.engine import checkpointing, console
    from lmforge.engine import trainer as runtime
    from lmforge.engine.metrics import Throughput
    from lmforge.engine.module import LMModule

    console.quiet()
    module = LMModule(
        model, vocab_size=vocab_size, optimizer=optimizer, scheduler=scheduler, loss=loss, max_steps=trainer.max_steps,
        grad_clip=trainer.gradient_clip_val, nonfinite=trainer.nonfinite, compile=trainer.compile, bytes_per_token=bytes_per_token,
        kernels=trainer.kernels, sdpa_backend=trainer.sdpa_backend,
    )
    throughput = Throughput(data.tokens_per_batch, model.flops_per_token(data.seq_len))
    loggers = runtime.loggers(logger, run_dir)
    found = runtime.callbacks(run_dir, trainer, logging=bool(loggers)) + [throughput, *callbacks]
    pl_trainer = L.Trainer(
        **runtime.trainer_kwargs(trainer, model), callbacks=found, logger=loggers or False, default_root_dir=run_dir,
        enable_model_summary=False,  # the run logs the parameter count; Lightning's table adds a FLOPs 0 column
    )
    last = next(c for c in found if isinstance(c, checkpointing.LastCheckpoint))
    try:
        with last.ctrl_c_saves():
            pl_trainer.fit(module, datamodule=data, ckpt_path=resume)
    except checkpointing.SIGTERMException:
        raise SystemExit(last.exit_code) from None  # last.ckpt holds the step it stopped at: 143, or 130 for Ctrl-C
    metrics = pl_trainer.validate(module, datamodule=data, verbose=False)[0]
    return Fitted(
        metrics={f"val_{k[4:]}": float(v) for k, v in metrics.items() if k.startswith("val/")},
        steps=pl_trainer.global_step,
        skipped_steps=int(module.skipped_steps),
        tokens=throughput.tokens,
        tokens_per_s=throughput.tokens_per_second,
        seconds=throughput.seconds,
        device=str(pl_trainer.strategy.root_device),
        precision=str(pl_trainer.precision),
        is_global_zero=pl_trainer.is_global_zero,
    )


def validate(
    model: "torch.nn.Module",
    data: "L.LightningDataModule",
    *,
    vocab_size: int,
    loss: LossConfig | None = None,
    bytes_per_token: float | None = None,
    accelerator: str = "auto",
    precision: str = "auto",
) -> tuple[dict[str, float], str]:
    """Score ``model`` on ``data``'s validation side; returns the metrics (``loss``, ``ppl``,
    ``bpb``, ``top1``...) and the device that scored them."""
    import lightning as L

    from lmforge.engine import console
    from lmforge.engine import trainer as runtime
    from lmforge.engine.module import LMModule

    console.quiet()
    module = LMModule(model, vocab_size=vocab_size, loss=loss, bytes_per_token=bytes_per_token)
    pl_trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=runtime.precision(precision),
        logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    metrics = pl_trainer.validate(module, datamodule=data, verbose=False)[0]
    return {k[4:]: float(v) for k, v in metrics.items() if k.startswith("val/")}, str(pl_trainer.strategy.root_device)


def sample(model: "torch.nn.Module", tokenizer: "Tokenizer", prompts: list[str], cfg: SampleConfig, device: str) -> str:
    """Continue each prompt with ``model`` on ``device``; the texts, one block each."""
    from lmforge.engine.generate import samples

    return samples(model.to(device), tokenizer, prompts, cfg, device)



def plot_curves(metrics_csv: Path, out: Path) -> None:
    """Draw a run's ``metrics.csv`` as ``curves.png``: losses and learning rate against steps."""
    from lmforge.engine.curves import plot_curves as plot

    plot(metrics_csv, out)


def __getattr__(name: str) -> Any:
    if name in _GENERATION:
        import importlib

        module = "lmforge.engine.sampling" if name == "Sampling" else "lmforge.engine.generate"  # Sampling needs no torch
        return getattr(importlib.import_module(module), name)
    if name in _CLASSIFY:
        import importlib

        return getattr(importlib.import_module("lmforge.engine.classify"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
