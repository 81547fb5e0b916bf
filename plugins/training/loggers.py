"""The built-in loggers: ``logger=csv|tensorboard|wandb|none``.

Every logger but ``none`` keeps ``metrics.csv`` in the run directory (the engine adds it),
so each run has the same local record to compare; ``tensorboard`` and ``wandb`` add
their own on top. Lightning and the backends are imported inside ``build``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from lmforge import hookimpl
from lmforge.contracts import Logger


class CSV(Logger):
    """``metrics.csv`` in the run directory, and nothing else."""

    name = "csv"

    def build(self, run_dir: Path) -> list:
        return []


class NoLogger(Logger):
    """No metrics at all (``summary.json`` is still written)."""

    name = "none"
    metrics_csv = False

    def build(self, run_dir: Path) -> list:
        return []


class TensorBoard(Logger):
    """TensorBoard event files in ``<run dir>/tensorboard/``."""

    name = "tensorboard"

    def build(self, run_dir: Path) -> list:
        # default_hp_metric would log a placeholder -1 "hp_metric" scalar to every run
        return [_tensorboard(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False, filename_suffix=".0")]


def _tensorboard(**kwargs):
    """A TensorBoardLogger that opens a new events file for each stage it logs.

    Event files are named by the second and opened with 'wb': the writer Lightning reopens
    for the final validation, within the same second as fit's closed, would overwrite the
    training events. After each stage the writer is dropped and the next gets a new suffix.
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    class StagedTensorBoardLogger(TensorBoardLogger):
        stages = itertools.count(1)

        def finalize(self, status: str) -> None:
            super().finalize(status)
            self._experiment = None
            self._kwargs["filename_suffix"] = f".{next(self.stages)}"

    return StagedTensorBoardLogger(**kwargs)


@dataclass
class WandbConfig:
    project: str = "lmforge"
    entity: Optional[str] = None  # team or user; None: your default entity
    run_name: Optional[str] = None  # None: the run directory, e.g. 2026-01-31/12-00-00
    tags: List[str] = field(default_factory=list)
    mode: Optional[str] = None  # online, offline, disabled; None: $WANDB_MODE, else online when logged in

    def __post_init__(self) -> None:
        if self.mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"mode must be online, offline, disabled or null, got {self.mode!r}")
        if not self.project:
            raise ValueError("project='': must name a W&B project; e.g. project=lmforge")


class Wandb(Logger):
    """Weights & Biases, files in ``<run dir>/wandb/``; offline unless you are logged in."""

    name = "wandb"
    Config = WandbConfig

    def build(self, run_dir: Path) -> list:
        from lightning.pytorch.loggers import WandbLogger
        from omegaconf import OmegaConf

        cfg = self.config
        config = run_dir / "config.yaml"  # the resolved run config, written before training
        return [
            WandbLogger(
                save_dir=str(run_dir),
                project=cfg.project,
                entity=cfg.entity,
                name=cfg.run_name or "/".join(run_dir.parts[-2:]),
                tags=list(cfg.tags) or None,
                mode=wandb_mode(cfg.mode),
                config=OmegaConf.to_container(OmegaConf.load(config)) if config.exists() else None,
            )
        ]


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


@hookimpl
def register_loggers(register):
    for cls in (CSV, TensorBoard, Wandb, NoLogger):
        register(cls)
