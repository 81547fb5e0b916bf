"""Checkpoints a run can be resumed from exactly: atomic files, RNG state, SIGTERM and Ctrl-C.

``checkpoints/last.ckpt`` is the file ``resume=<run dir>`` continues from. It holds the
model, optimizer, scheduler, loop counters, the training loader's position
(``data.ResumableLoader``) and the Python, NumPy and torch RNG states (``RngState``),
all as tensors and plain types, so it loads with ``torch.load(path, weights_only=True)``.

A save that fails for want of space is an ``LmforgeError`` ("no space left on <folder>")
that leaves the previous file intact; each save first removes the temporary files of
saves whose process was killed (``lmforge.files.remove_stale_temps``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lmforge.errors import LmforgeError
from lmforge.files import atomic_write, remove_stale_temps

log = logging.getLogger("lmforge")

LAST = "last.ckpt"
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process ended by the signal
SIGINT_EXIT = 130  # 128 + SIGINT: Ctrl-C


class DiskFullError(LmforgeError):
    """A checkpoint that did not fit on its disk; the previous file of that name is intact."""


class _Recorded:
    """A file whose write errors are kept: torch.save reports a failed write only as an
    ``inline_container.cc`` RuntimeError, which does not say the disk is full."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


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
        remove_stale_temps(path.parent)  # what saves killed mid-write left, each the size of a checkpoint
        written: list[_Recorded] = []

        def write(f) -> None:
            written.append(_Recorded(f))
            torch.save(checkpoint, written[0])

        try:
            atomic_write(path, write)
        except (OSError, RuntimeError) as exc:
            cause = written[0].error if written and written[0].error else exc
            if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
                raise DiskFullError(
                    f"no space left on {path.parent} while saving {path.name} ({os.strerror(cause.errno)}); {kept}. "
                    f"Free space there (or lower trainer.checkpoint_top_k) and resume with resume={path.parent.parent}"
                ) from None
            raise

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only: Optional[bool] = None) -> dict[str, Any]:
        from lmforge.runs import read_state

        return read_state(path, map_location=map_location)  # weights only; a bad file is one error naming it


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
    checkpoint, and the run wiring exits with ``exit_code``. Within ``ctrl_c_saves`` a
    Ctrl-C (SIGINT) takes the same path and exits 130; a second Ctrl-C ends the process at once.
    """

    def __init__(self, dirpath: Path, every_n_steps: int | None = None) -> None:
        self.path = Path(dirpath) / LAST
        self.every_n_steps = every_n_steps
        self._saved_step = -1
        self.stopped_by: str | None = None  # "SIGTERM" or "SIGINT", once a signal stopped the training

    @property
    def exit_code(self) -> int:
        return SIGINT_EXIT if self.stopped_by == "SIGINT" else SIGTERM_EXIT

    @contextlib.contextmanager
    def ctrl_c_saves(self):
        """Around ``Trainer.fit``: Ctrl-C stops at the next batch boundary and saves, as SIGTERM
        does (Lightning's own Ctrl-C handling saves nothing and exits 1)."""

        def on_ctrl_c(signum, frame) -> None:
            if self.stopped_by == "SIGINT":  # the second Ctrl-C: stop now, whatever is being written
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
                return
            lightning_handler = signal.getsignal(signal.SIGTERM)
            if not callable(lightning_handler):  # Lightning has not started the loop yet: nothing to save
                raise KeyboardInterrupt
            self.stopped_by = "SIGINT"
            log.warning("Ctrl-C: saving %s at the end of this step (Ctrl-C again stops at once, without saving)", LAST)
            lightning_handler(signal.SIGTERM, frame)  # sets trainer.received_sigterm, under DDP on every rank

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

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
            self.stopped_by = self.stopped_by or "SIGTERM"
            self._save(trainer)
            run_dir = self.path.parent.parent
            command = "lmforge finetune" if (run_dir / "finetune.yaml").is_file() else "lmforge train"  # what wrote the run
            log.warning(
                "received %s: saved step %d to %s; continue with %s resume=%s",
                "SIGINT (Ctrl-C)" if self.stopped_by == "SIGINT" else "SIGTERM",
                trainer.global_step, self.path, command, run_dir,
            )
