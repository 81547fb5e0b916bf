"""The median rule of the pruner, on real sweep files (the end-to-end prune is in test_sweeper)."""

import json

from lmforge.plugins.sweep import sweep_pruner, train_callbacks
from lmforge.plugins.sweep._pruning import MedianPruning
from lmforge.plugins.sweep.state import PRUNING_DIR, Record, SweepState


def write_trial(sweep_dir, number, status, curve):
    (sweep_dir / PRUNING_DIR).mkdir(exist_ok=True)
    (sweep_dir / PRUNING_DIR / f"{number}.jsonl").write_text("".join(json.dumps({"step": s, "value": v}) + "\n" for s, v in curve))
    SweepState(sweep_dir).append(Record(number, {}, [], curve[-1][1], status, 1.0, ""))


def test_median_of_completed_trials_at_the_same_step(tmp_path):
    SweepState(tmp_path).write_header({})
    write_trial(tmp_path, 0, "ok", [(10, 5.0), (20, 4.0)])
    write_trial(tmp_path, 1, "ok", [(10, 6.0), (20, 4.5)])
    write_trial(tmp_path, 2, "pruned", [(10, 1.0)])  # pruned trials never set the bar
    pruner = MedianPruning(str(tmp_path), 3, n_startup_trials=2)
    assert pruner._median_at(10) == 5.5
    assert pruner._median_at(15) == 5.5  # between validations: each trial's last value before the step
    assert pruner._median_at(20) == 4.25


def test_no_pruning_before_enough_trials_completed(tmp_path):
    SweepState(tmp_path).write_header({})
    write_trial(tmp_path, 0, "ok", [(10, 5.0)])
    assert MedianPruning(str(tmp_path), 1, n_startup_trials=2)._median_at(10) is None
    assert MedianPruning(str(tmp_path), 1, n_startup_trials=1)._median_at(10) == 5.0


def test_the_pruner_adds_nothing_outside_a_sweep(tmp_path):
    assert sweep_pruner() is None and train_callbacks(tmp_path) is None
