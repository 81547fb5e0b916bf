"""What a run shows on the console: each line once, no tips, a progress bar over steps.

- Lightning gives its ``lightning`` logger a console handler of its own, while its
  records also reach the root logger, which Hydra sets up with the console and
  ``train.log``: every line showed twice, and the file lacked them. ``quiet()`` leaves
  them to the root's handlers only, so each shows once and ``train.log`` has them all.
- Lightning's advertisements ("Tip: ... litlogger") and the deprecation notices that
  Lightning and torch raise about each other are nothing a user can act on: they are
  dropped. Warnings about the user's own run (a dataloader bottleneck, a bad
  argument) still show.
- Lightning's bar counts batches of an epoch and titles itself ``Epoch 0/-2`` when a run is
bounded by ``max_steps`` instead of epochs; a language-model run is counted in optimizer
steps, so this bar shows ``train`` and ``step/max_steps``, from the step a resumed run
starts at.
"""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks import RichProgressBar

NOISE = ("💡 Tip:", "TPU available:", "HPU available:")  # adverts, and hardware a run cannot use here


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE)


def quiet() -> None:
    """Route Lightning's log lines through the root logger alone and drop its noise. Idempotent."""
    lightning = logging.getLogger("lightning")
    if logging.getLogger().hasHandlers():
        for handler in list(lightning.handlers):
            lightning.removeHandler(handler)
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in target.filters):
            target.addFilter(_DropNoise())
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(lightning|torch|torchmetrics)(\.|$)")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


class StepProgressBar(RichProgressBar):
    @property
    def total_train_batches(self) -> int:
        return self.trainer.max_steps

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'train':{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()
