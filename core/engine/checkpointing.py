"""Checkpoints a run can be resumed from exactly: atomic files, RNG state, SIGTERM.

``checkpoints/last.ckpt`` is the file ``resume=<run dir>`` continues from. It holds the
model, optimizer, scheduler, loop counters, the training loader's position
(``data.ResumableLoader``) and the Python, NumPy and torch RNG states (``RngState``),
all as tensors and plain types, so it loads with ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lmforge.files import atomic_write

log = logging.getLogger("lmforge")

LAST = "last.ckpt"
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process ended by the signal


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, fsyncs it and renames it into place.

    A run killed mid-write leaves the previous checkpoint intact, never half a file.
    Loading insists on ``weights_only=True``: a checkpoint that needs pickled objects
    is a bug in whatever put them there, found at the first resume rather than later.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only: Optional[bool] = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class RngState(Callback):
    """Saves and restores the Python, NumPy and torch (CPU and CUDA) generators."""

    def state_dict(self) -> dict[str, Any]:
        version, words, gauss = random.getstate()
        _, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": torch.tensor(words, dtype=torch.int64),  # 624 words and the position
            "python_version": version,
            "python_gauss": float("nan") if gauss is None else gauss,
            "numpy": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos),
            "numpy_gauss": [int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        gauss = None if np.isnan(state["python_gauss"]) else state["python_gauss"]
        random.setstate((state["python_version"], tuple(state["python"].tolist()), gauss))
        has_gauss, cached = state["numpy_gauss"]
        np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class LastCheckpoint(Checkpoint):
    """Keeps ``checkpoints/last.ckpt`` current: every ``every_n_steps`` optimizer steps
    (when set), after each validation during training, at the end, and on SIGTERM.

    A ``Checkpoint`` subclass, so Lightning runs it after the other callbacks of a batch
    and the file holds their state at that step.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (every
    rank at the same one under DDP); this callback's ``on_exception`` then writes the
    checkpoint, and the run wiring exits with ``SIGTERM_EXIT``.
    """

    def __init__(self, dirpath: Path, every_n_steps: int | None = None) -> None:
        self.path = Path(dirpath) / LAST
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _save(self, trainer) -> None:
        flush = getattr(trainer.lightning_module, "flush_nonfinite", None)
        if flush is not None:  # a fused step's non-finite flag is read before its state is saved
            flush()
        trainer.save_checkpoint(self.path, weights_only=False)  # every rank calls it: FSDP gathers, rank 0 writes
        self._saved_step = trainer.global_step

    def _fitting(self, trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._fitting(trainer) and trainer.global_step != self._saved_step:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._saved_step:
            self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self._fitting(trainer):
            self._save(trainer)
            log.warning(
                "received SIGTERM: saved step %d to %s; continue with lmforge train resume=%s",
                trainer.global_step, self.path, self.path.parent.parent,
            )
