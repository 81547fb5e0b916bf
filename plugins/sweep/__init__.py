"""Sweeping: lmforge's Hydra sweeper, its report and the median pruner, as one built-in plugin.

==================  ==============================================================
``sweeper.py``      ``LmforgeSweeper`` (``hydra/sweeper=lmforge``): a tuner asks,
                    Hydra's launcher runs, the results go back
``space.py``        the search space, read from Hydra's sweep grammar
``state.py``        ``sweep_state.jsonl``, the durable record resume reads
``report.py``       ``sweep_results.csv``, ``best.yaml``, ``sweep_summary.json``, and
                    ``SweepResultsCallback`` for sweeps by any other sweeper
``plots.py``        the report's two plots (matplotlib, imported when drawing)
``_pruning.py``     the median pruner's Lightning callback
==================  ==============================================================

It plugs in through three hooks, like any third-party plugin: ``register_hydra_plugins``
(the sweeper and its config), ``train_callbacks`` (the pruner, in the trials of a pruned
sweep) and ``register_commands`` (``lmforge sweep-report``). Importing this module
imports neither Hydra nor Lightning nor matplotlib: each hook imports what it needs.
"""

from __future__ import annotations

import json
import os
import sys

from lmforge import hookimpl
from lmforge.plugins.sweep.state import PRUNER_ENV

USAGE = "usage: lmforge sweep-report SWEEP_DIR [--objective KEY] [--direction min|max]"


@hookimpl
def register_hydra_plugins(register):
    # the sweeper under the hydra_plugins. name Hydra instantiates plugins from (see its docstring)
    from hydra_plugins.lmforge_sweeper import LmforgeSweeper

    from lmforge.plugins.sweep.sweeper import LmforgeSweeperConf

    register(LmforgeSweeper, group="hydra/sweeper", name="lmforge", node=LmforgeSweeperConf)


def sweep_pruner() -> dict | None:
    """The sweep dir, trial number and pruner settings when this job is a trial of a pruned sweep.

    lmforge's sweeper hands them to each trial it launches in ``PRUNER_ENV`` (through
    ``hydra.job.env_set``, so that every launcher's workers see them); elsewhere, None.
    """
    found = os.environ.get(PRUNER_ENV)
    return json.loads(found) if found else None


@hookimpl
def train_callbacks(run_dir):
    found = sweep_pruner()
    if found is None:
        return None
    from lmforge.plugins.sweep._pruning import MedianPruning

    return [MedianPruning(found["sweep_dir"], found["number"], **found["pruner"])]


def sweep_report(argv: list[str]) -> int:
    """``lmforge sweep-report``: rebuild a sweep's results table, best.yaml and plots."""
    import argparse
    from pathlib import Path

    from lmforge.plugins.sweep.report import RESULTS, report

    parser = argparse.ArgumentParser(prog="lmforge sweep-report", description="rebuild a sweep's report from sweep_state.jsonl or its job directories")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--objective", default="val_loss", help="summary.json key, for sweeps without sweep_state.jsonl")
    parser.add_argument("--direction", default="min", choices=("min", "max"))
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"lmforge sweep-report: {args.sweep_dir} is not a directory\n{USAGE}", file=sys.stderr)
        return 2
    n = report(args.sweep_dir, args.objective, args.direction)
    if n == 0:
        print(f"lmforge sweep-report: no trials in {args.sweep_dir}: no sweep_state.jsonl and no job directories", file=sys.stderr)
        return 1
    print(f"{n} trials: {args.sweep_dir / RESULTS}")
    return 0


@hookimpl
def register_commands(register):
    register("sweep-report", sweep_report, "rebuild a sweep's sweep_results.csv, best.yaml and plots")
