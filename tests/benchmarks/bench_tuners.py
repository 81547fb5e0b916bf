"""Model-based tuners against random search on a 4-D shifted Rosenbrock, through the sweeper.

The objective is the synthetic Hydra app of the sweeper tests (no training), swept by
lmforge's own sweeper exactly as ``lmforge train -m`` would be. For each seed:

1. ``tuner=random`` runs 40 trials; its best value is the target;
2. ``tuner=bayes`` and ``tuner=nevergrad`` (NGOpt) run with ``hydra.sweeper.stop_at`` set
   to that target and a cap of 40 trials; the number of trials each needed is read from
   its ``sweep_state.jsonl`` (41 when it did not get there within 40).

    python tests/benchmarks/bench_tuners.py --seeds 10

Prints the per-seed table and the medians. Target: a median of at most 20 trials.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "plugins" / "tuners" / "synthetic_app.py"
SPACE = [f"x{i}=interval(-2.0,2.0)" for i in range(4)]
QUIET = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled", "hydra.output_subdir=null"]


def run(tuner: str, seed: int, budget: int, sweep_dir: Path, stop_at: float | None = None) -> list[float]:
    """The objective of every trial, in trial order."""
    args = [f"tuner={tuner}", "function=rosenbrock", *SPACE, f"hydra.sweeper.budget={budget}", f"hydra.sweeper.seed={seed}", *QUIET]
    if stop_at is not None:
        args.append(f"hydra.sweeper.stop_at={stop_at!r}")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, str(APP), "-m", *args, f"hydra.sweep.dir={sweep_dir}"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{tuner} seed {seed} failed:\n{proc.stdout}\n{proc.stderr}")
    rows = [json.loads(line) for line in (sweep_dir / "sweep_state.jsonl").read_text().splitlines()[1:]]
    return [r["value"] for r in sorted(rows, key=lambda r: r["number"])]


def needed(values: list[float], target: float, cap: int) -> int:
    """Trials until the best so far reaches ``target``; cap + 1 when it never does."""
    return next((i + 1 for i, v in enumerate(values) if v <= target), cap + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=40)
    args = parser.parse_args()
    start = time.perf_counter()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            target = min(run("random", seed, args.budget, Path(tmp) / f"random-{seed}"))
            row = {"seed": seed, "random_best": target}
            for tuner in ("bayes", "nevergrad"):
                values = run(tuner, seed, args.budget, Path(tmp) / f"{tuner}-{seed}", stop_at=target)
                row[tuner] = needed(values, target, args.budget)
            table.append(row)
            print(f"seed {seed}: random best@{args.budget} {target:9.4f}   bayes {row['bayes']:>3}   NGOpt {row['nevergrad']:>3}", flush=True)
    cap = f">{args.budget}"
    print(f"\n4-D shifted Rosenbrock on [-2, 2]^4; trials to reach random search's best after {args.budget} ({cap}: not reached)")
    print(f"{'seed':>4} | {'random best@' + str(args.budget):>15} | {'bayes':>6} | {'NGOpt':>6}")
    for row in table:
        cells = [cap if row[t] > args.budget else str(row[t]) for t in ("bayes", "nevergrad")]
        print(f"{row['seed']:>4} | {row['random_best']:>15.4f} | {cells[0]:>6} | {cells[1]:>6}")
    medians = {t: statistics.median(r[t] for r in table) for t in ("bayes", "nevergrad")}
    print(f"{'median':>4} | {statistics.median(r['random_best'] for r in table):>15.4f} | {medians['bayes']:>6g} | {medians['nevergrad']:>6g}")
    verdict = "met" if min(medians.values()) <= 20 else "NOT met"
    print(f"target (median <= 20 trials for bayes or NGOpt): {verdict}; took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
