"""``lmforge sweep-report <sweep dir>``: rebuild a sweep's results table, best.yaml and plots."""

from __future__ import annotations

import sys

from lmforge import hookimpl

USAGE = "usage: lmforge sweep-report SWEEP_DIR [--objective KEY] [--direction min|max]"


def sweep_report(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from lmforge.sweep_report import RESULTS, report

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
