"""The median pruner's Lightning callback (imports Lightning).

At each validation it appends ``{"step", "value"}`` to ``<sweep dir>/.pruning/<trial>.jsonl``
and compares the value with the values the sweep's completed trials (status ``ok`` in
``sweep_state.jsonl``) had at the same step: worse than their median, once at least
``n_startup_trials`` completed and from step ``n_warmup_steps`` on, it stops training and
writes a ``{"pruned": true}`` line, which the sweeper reads (Optuna's MedianPruner rule).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from lmforge.files import append_line, atomic_write
from lmforge.plugins.sweep.state import PRUNING_DIR, SweepState


class MedianPruning(Callback):
    def __init__(self, sweep_dir: str, number: int, kind: str = "median", monitor: str = "val/loss", n_startup_trials: int = 2, n_warmup_steps: int = 0) -> None:
        self.sweep_dir, self.number, self.monitor = Path(sweep_dir), number, monitor
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps
        self.path = self.sweep_dir / PRUNING_DIR / f"{number}.jsonl"
        self.pruned = False

    def _append(self, row: dict) -> None:
        append_line(self.path, json.dumps(row))

    def on_fit_start(self, trainer, pl_module) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, b"")  # a rerun trial (after a kill) starts afresh

    def _history(self, number: int) -> dict[int, float]:
        path = self.sweep_dir / PRUNING_DIR / f"{number}.jsonl"
        if not path.is_file():
            return {}
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {r["step"]: r["value"] for r in rows if "value" in r}

    def _median_at(self, step: int) -> float | None:
        _, records = SweepState(self.sweep_dir).load()
        values = []
        for record in records.values():
            if record.status != "ok" or record.number == self.number:
                continue
            earlier = {s: v for s, v in self._history(record.number).items() if s <= step}
            if earlier:
                values.append(earlier[max(earlier)])  # its value at this step, or the last before it
        if len(values) < max(self.n_startup_trials, 1):
            return None
        return statistics.median(values)

    def on_validation_end(self, trainer, pl_module) -> None:
        fitting = trainer.state.fn is not None and trainer.state.fn.value == "fit"  # not the final validate()
        if trainer.sanity_checking or not fitting or self.pruned or self.monitor not in trainer.callback_metrics:
            return
        step, value = trainer.global_step, float(trainer.callback_metrics[self.monitor])
        self._append({"step": step, "value": value})
        if step < self.n_warmup_steps:
            return
        median = self._median_at(step)
        if median is not None and (value > median or not math.isfinite(value)):
            self.pruned = True
            trainer.should_stop = True
            self._append({"pruned": True, "step": step, "max_steps": trainer.max_steps, "value": value, "median": median})
