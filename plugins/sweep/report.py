"""A sweep's report, written into the sweep directory.

- ``sweep_results.csv``: one row per trial (number, params, objective, status,
  duration, run directory, error, steps run);
- ``best.yaml``: the winning trial (YAML, with a comment saying how to rerun it) and its
  overrides, as a list that ``lmforge train`` or Hydra's ``compose`` takes as it is;
- ``sweep_summary.json``: counts by status, the best trial, the share of training steps
  pruning saved;
- ``optimization_history.png`` and ``parallel_coordinates.png`` (``plots``), drawn from the
  numbers in the CSV.

lmforge's sweeper writes it from ``sweep_state.jsonl``; for any other sweeper (Hydra's
basic grid) ``SweepResultsCallback`` builds it from the job directories at the end of
``-m``; ``lmforge sweep-report <sweep dir>`` rebuilds it from either.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shlex
from pathlib import Path
from typing import Any

from lmforge.files import atomic_write, atomic_write_json
from lmforge.plugins.sweep.state import STATE_FILE, Record, SweepState, loss

log = logging.getLogger("lmforge")

RESULTS, BEST, SUMMARY = "sweep_results.csv", "best.yaml", "sweep_summary.json"


def best_record(records: list[Record], direction: str) -> Record | None:
    """The best completed trial; a pruned trial stopped early, so it never wins."""
    done = [r for r in records if r.status == "ok" and math.isfinite(loss(r, direction))]
    return min(done, key=lambda r: (loss(r, direction), r.number)) if done else None


def budget_saved(records: list[Record]) -> float:
    """The share of training steps pruning saved: steps not run / steps full trials run."""
    full = [r.max_steps for r in records if r.max_steps]
    if not full:
        return 0.0
    per_trial = max(full)
    saved = sum(r.max_steps - r.steps for r in records if r.status == "pruned" and r.max_steps and r.steps is not None)
    return saved / (per_trial * len(records))


def write_report(sweep_dir: Path, records: list[Record], params: list[str], objective: str, direction: str, space: list | None = None) -> None:
    """Write the CSV, best.yaml, the summary and both plots. ``space``: the ``Param``s (or their dicts), for the plot's axes."""
    from lmforge.plugins.sweep.plots import plot_history, plot_parallel

    records = sorted(records, key=lambda r: r.number)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", *params, objective, "status", "duration_s", "run_dir", "error", "steps"])
    for r in records:
        writer.writerow([r.number, *(r.params.get(p, "") for p in params), "" if r.value is None else r.value, r.status, r.duration_s, r.run_dir, r.error, "" if r.steps is None else r.steps])
    atomic_write(sweep_dir / RESULTS, out.getvalue())

    best = best_record(records, direction)
    if best is not None:
        atomic_write(sweep_dir / BEST, best_yaml(best, len(records), objective, direction))
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "pruned", "failed")}
    summary = {"trials": len(records), **counts, "objective": objective, "direction": direction,
               "best": None if best is None else {"number": best.number, "value": best.value, "overrides": best.overrides},
               "budget_saved": budget_saved(records)}
    atomic_write_json(sweep_dir / SUMMARY, summary)
    plot_history(sweep_dir, records, objective, direction)
    plot_parallel(sweep_dir, records, params, objective, space)


def best_yaml(best: Record, trials: int, objective: str, direction: str) -> str:
    """best.yaml: a comment saying how to rerun the trial, then the trial as YAML."""
    import yaml

    rerun = "lmforge train " + " ".join(shlex.quote(o) for o in best.overrides)
    body = {"number": best.number, "objective": objective, "value": best.value, "run_dir": best.run_dir, "overrides": list(best.overrides)}
    return (
        f"# The best of {trials} trials ({direction} {objective}). Rerun it with\n#   {rerun}\n"
        f"# or compose(config_name='train', overrides=<overrides>).\n"
        + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=1_000_000)
    )


def records_from_jobs(sweep_dir: Path, objective: str) -> tuple[list[Record], list[str]]:
    """Records rebuilt from the job directories of any sweeper; params = the keys that vary."""
    from omegaconf import OmegaConf

    records = []
    for overrides_file in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        hydra_file = job / ".hydra" / "hydra.yaml"
        if not hydra_file.is_file() or job == sweep_dir:
            continue
        number = int(OmegaConf.load(hydra_file).hydra.job.num)
        overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides_file))]
        summary_file = job / "summary.json"
        value, status, error, duration = None, "failed", "no summary.json: the job did not finish", 0.0
        if summary_file.is_file():
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
            value = summary.get(objective)
            status, error = ("ok", "") if isinstance(value, (int, float)) and math.isfinite(value) else ("failed", f"no finite {objective}")
            duration = summary_file.stat().st_mtime - (job / ".hydra" / "config.yaml").stat().st_mtime
        params = dict(o.split("=", 1) for o in overrides if "=" in o)
        records.append(Record(number, params, overrides, value, status, round(duration, 3), str(job), error))
    keys = sorted({k for r in records for k in r.params})
    varying = [k for k in keys if len({r.params.get(k) for r in records}) > 1]
    for r in records:
        r.params = {k: _number(r.params.get(k, "")) for k in varying}
    return records, varying


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def report(sweep_dir: Path, objective: str = "val_loss", direction: str = "min") -> int:
    """(Re)write the report of ``sweep_dir``; returns the number of trials in it."""
    sweep_dir = Path(sweep_dir)
    header, done = SweepState(sweep_dir).load()
    if header is not None:
        records, params, space = list(done.values()), [p["name"] for p in header["space"]], header["space"]
        objective, direction = header["objective"], header["direction"]
    else:
        (records, params), space = records_from_jobs(sweep_dir, objective), None
    if records:
        write_report(sweep_dir, records, params, objective, direction, space)
    return len(records)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - Hydra < 1.1
    Callback = object


class SweepResultsCallback(Callback):
    """Writes the report after ``-m`` for sweepers that do not (Hydra's basic grid)."""

    def __init__(self, objective: str = "val_loss", direction: str = "min") -> None:
        self.objective, self.direction = objective, direction

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if (sweep_dir / STATE_FILE).is_file():
            return  # lmforge's sweeper wrote its own report, with statuses and durations
        try:
            n = report(sweep_dir, self.objective, self.direction)
        except Exception as exc:  # the trials are done; a report failure must not hide that
            log.warning("could not write the sweep report in %s: %s: %s", sweep_dir, type(exc).__name__, exc)
            return
        log.info("sweep report of %d trials in %s", n, sweep_dir / RESULTS)
