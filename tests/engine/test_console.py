"""What a run shows: the step progress bar, and Lightning's lines routed once."""

from __future__ import annotations

import logging

import lightning as L

from lmforge.engine.console import StepProgressBar, quiet


def test_the_progress_bar_counts_optimizer_steps_out_of_max_steps():
    bar = StepProgressBar()
    trainer = L.Trainer(max_steps=7, callbacks=[bar], logger=False, enable_checkpointing=False)
    bar.setup(trainer, None, "fit")  # what fit() does before the first epoch
    assert bar.total_train_batches == 7
    assert "Epoch" not in bar._get_train_description(0) and bar._get_train_description(0).strip() == "train"


def test_lightning_lines_go_through_the_root_logger_only(caplog):
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)  # as Hydra's job logging sets it up
    try:
        quiet()
        assert not logging.getLogger("lightning").handlers
        assert logging.getLogger("lightning.pytorch").propagate
        with caplog.at_level(logging.INFO):
            logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: try our cloud")
            logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
        assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    finally:
        root.removeHandler(handler)
