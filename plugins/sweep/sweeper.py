"""lmforge's own Hydra sweeper: a tuner asks, Hydra's launcher runs, the results go back.

Selected with ``hydra/sweeper=lmforge`` (``lmforge train -m tuner=...`` selects it for
you). Each batch, it asks the tuner for up to ``num_workers`` trials, launches them
through the configured launcher (basic, joblib, submitit...), reads each trial's
objective and tells it back. Every finished trial is appended to
``<sweep dir>/sweep_state.jsonl``; rerunning the same command with the same
``hydra.sweep.dir`` replays those trials into the tuner and carries on.

A search space that cannot compose (a key the config lacks, an option a group lacks) is
refused before the first trial. Past that, whatever goes wrong in one trial, its config
composition included, is that trial's failure: recorded, told to the tuner as ``inf``,
and the report is written at the end.

The plugin's ``register_hydra_plugins`` hook registers the sweeper and its config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from lmforge.errors import ConfigError, LmforgeError
from lmforge.plugins.sweep.space import format_value, parse_space, trial_overrides
from lmforge.plugins.sweep.state import PRUNER_ENV, PRUNING_DIR, Record, SweepState, loss

log = logging.getLogger("lmforge")

# Hydra instantiates only plugins named under hydra_plugins. (see hydra_plugin_class)
PLUGIN_MODULE = "hydra_plugins.lmforge_sweeper"


class SweepError(LmforgeError):
    """The sweep cannot go on: too many trials failed."""


@dataclass
class PrunerConf:
    kind: str = "none"  # none | median: stop a trial whose validation metric is worse than the median
    monitor: str = "val/loss"  # the validation metric logged during training; lower is better
    n_startup_trials: int = 2  # completed trials before any pruning
    n_warmup_steps: int = 0  # training steps before a trial may be pruned


@dataclass
class LmforgeSweeperConf:
    _target_: str = f"{PLUGIN_MODULE}.LmforgeSweeper"
    objective: str = "val_loss"  # a key of each trial's summary.json, else its return value
    direction: str = "min"  # min | max
    budget: int = 20  # trials in total
    num_workers: int = 1  # trials asked and launched together (the launcher's parallelism)
    seed: Optional[int] = None  # the tuner's seed; None = the run's seed
    max_failure_rate: float = 0.5  # stop once more than this share of the trials failed...
    min_failures: int = 3  # ...and at least this many did
    stop_at: Optional[float] = None  # stop once the objective is this good or better
    pruner: PrunerConf = field(default_factory=PrunerConf)


@dataclass
class Outcome:
    """What a trial hands back to the sweeper, through any launcher."""

    value: Any = None
    error: str = ""
    duration_s: float = 0.0
    run_dir: str = ""


class TimedTask:
    """Wraps the task function: times it and turns an exception into a failed ``Outcome``."""

    def __init__(self, task) -> None:
        self.task = task

    def __call__(self, cfg: DictConfig) -> Outcome:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
        start = time.perf_counter()
        try:
            value = self.task(cfg)
        except Exception as exc:  # a failed trial is a result, not the end of the sweep
            log.exception("trial failed")
            return Outcome(None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start, run_dir)
        return Outcome(value, "", time.perf_counter() - start, run_dir)


class LmforgeSweeper(Sweeper):
    """``hydra/sweeper=lmforge``: asks a tuner, launches its trials, records and reports them."""

    def __init__(self, objective: str, direction: str, budget: int, num_workers: int, seed: Optional[int],
                 max_failure_rate: float, min_failures: int, stop_at: Optional[float], pruner: Any) -> None:
        if direction not in ("min", "max"):
            raise ConfigError(f"hydra.sweeper.direction={direction!r}: use min or max")
        if budget < 1 or num_workers < 1:
            raise ConfigError(f"hydra.sweeper.budget={budget} and num_workers={num_workers} must be at least 1")
        self.objective, self.direction, self.budget, self.num_workers = objective, direction, budget, num_workers
        self.seed, self.max_failure_rate, self.min_failures, self.stop_at = seed, max_failure_rate, min_failures, stop_at
        self.pruner = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else dict(pruner or {})
        if self.pruner.get("kind", "none") not in ("none", "median"):
            raise ConfigError(f"hydra.sweeper.pruner.kind={self.pruner['kind']!r}: use none or median")

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=TimedTask(task_function), config=config)

    def sweep(self, arguments: list[str]) -> list[Record]:
        try:
            return self._sweep(arguments)
        except LmforgeError as exc:
            # Hydra would print it with a traceback and exit 1; lmforge's errors are the whole story
            print(f"lmforge: error: {exc}", file=sys.stderr)
            raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None

    def _sweep(self, arguments: list[str]) -> list[Record]:
        from lmforge.hydra_bridge import component_config
        from lmforge.plugins.sweep.report import write_report

        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        if self.config.get("tuner") is None:
            raise ConfigError("hydra/sweeper=lmforge needs a tuner: add tuner=random (or grid, bayes, nevergrad)")
        entry, tuner_config = component_config("tuner", self.config.tuner, "tuner")
        fixed, space = parse_space(arguments, getattr(tuner_config, "params", None))  # a third-party Config may lack it
        if not space:
            raise ConfigError("the sweep has nothing to search: give a range such as 'optimizer.lr=tag(log,interval(1e-4,1e-2))' or set tuner.params")
        self._check_space(fixed, space)
        seed = self.seed if self.seed is not None else int(self.config.get("seed", 0))
        tuner = entry.cls(tuner_config)
        tuner.start(space, self.budget, self.num_workers, seed)

        header = {"space": [dataclasses.asdict(p) for p in space], "fixed": fixed, "tuner": entry.cls.name,
                  "tuner_config": dataclasses.asdict(tuner_config), "seed": seed, "num_workers": self.num_workers,
                  "objective": self.objective, "direction": self.direction}
        state = SweepState(self.sweep_dir)
        previous, done = state.load()
        if previous is None:
            state.write_header(header)
        elif previous != header:
            changed = sorted(k for k in header if previous.get(k) != header[k])
            raise ConfigError(f"{self.sweep_dir} holds a sweep with another {', '.join(changed)}: resume it with the same command, or pick a new hydra.sweep.dir")
        elif done:
            log.info("resuming the sweep in %s: %d finished trials are replayed, not rerun", self.sweep_dir, len(done))
        records = dict(done)
        try:
            self._loop(tuner, fixed, records, state)
        finally:
            if records:
                write_report(self.sweep_dir, list(records.values()), [p.name for p in space], self.objective, self.direction, space)
        self._log_summary(records)
        return [records[n] for n in sorted(records)]

    def _loop(self, tuner, fixed: list[str], records: dict[int, Record], state: SweepState) -> None:
        while True:
            batch = []
            while len(batch) < self.num_workers and (trial := tuner.ask()) is not None:
                batch.append(trial)
            if not batch:
                return
            for trial in batch:
                if trial.number in records and records[trial.number].params != trial.params:
                    log.warning("trial %d asks %s on resume but recorded %s: keeping the record", trial.number, trial.params, records[trial.number].params)
            for record in self._launch([t for t in batch if t.number not in records], fixed):
                records[record.number] = record
                state.append(record)
            for trial in batch:
                tuner.tell(trial, loss(records[trial.number], self.direction))
            self._check_failures(records)
            if self.stop_at is not None and any(
                loss(r, self.direction) <= (self.stop_at if self.direction == "min" else -self.stop_at) for r in records.values()
            ):
                log.info("stopping: a trial reached stop_at=%s", self.stop_at)
                return

    def _check_space(self, fixed: list[str], space: list) -> None:
        """Compose the config at each choice and range end of each key: a key or option it lacks fails here.

        A key that composes only beside another key's option (``model.n_head`` with
        ``model=transformer``) passes: the trials that pair it otherwise fail on their own.
        """
        if error := self._compose_error(fixed):
            raise ConfigError(f"the fixed overrides {' '.join(fixed)} do not compose: {error}")
        options = [[f"{p.name}={format_value(c)}" for c in p.choices] for p in space if p.kind == "choice"]
        for p in space:
            for value in p.choices if p.kind == "choice" else (p.low, p.high):
                probe = f"{p.name}={format_value(value)}"
                if (error := self._compose_error([*fixed, probe])) and all(
                    self._compose_error([*fixed, other, probe]) for group in options for other in group if other.split("=")[0] != p.name
                ):
                    raise ConfigError(f"the search space's {probe} does not compose: {error}. "
                                      f"Fix {p.name} on the command line or in tuner.params")

    def _compose_error(self, overrides: list[str]) -> str:
        """Why Hydra cannot compose the task's config with ``overrides``, or ''."""
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except Exception as exc:  # Hydra's and OmegaConf's errors share no base class
            return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return ""

    def _launch(self, trials: list, fixed: list[str]) -> list[Record]:
        """Run trials through the launcher, in runs of consecutive numbers (the job numbers).

        A trial whose config does not compose fails here, without a launch: a launcher
        would raise for the whole batch instead.
        """
        records, groups = [], []
        for trial in trials:
            overrides = trial_overrides(fixed, trial.params)
            if error := self._compose_error(overrides):
                records.append(Record(trial.number, trial.params, overrides, None, "failed", 0.0, "", f"the config does not compose: {error}"))
                log.info("trial %d failed: %s", trial.number, records[-1].error)
            elif groups and groups[-1][-1][0].number == trial.number - 1:
                groups[-1].append((trial, overrides))
            else:
                groups.append([(trial, overrides)])
        for group in groups:
            pinned = [[*o, *self._pinned(t.number)] for t, o in group]
            try:
                results = self.launcher.launch(pinned, initial_job_idx=group[0][0].number)
            except Exception as exc:  # a launcher that fails a batch fails its trials, not the sweep
                log.exception("the launcher failed trials %s", [t.number for t, _ in group])
                error = f"{type(exc).__name__}: {exc}"
                records += [Record(t.number, t.params, o, None, "failed", 0.0, "", error) for t, o in group]
                continue
            records += [self._record(t, o, r) for (t, o), r in zip(group, results)]
        return records

    def _pinned(self, number: int) -> list[str]:
        """Overrides every trial gets besides its own: where the sweep lives, and the pruner's settings."""
        # the jobs write their pruning records here, whichever process or machine runs them
        pinned = [f"hydra.sweep.dir={format_value(str(self.sweep_dir))}"]
        if self.pruner.get("kind", "none") != "none":
            # env_set reaches the trial in every launcher's worker: that is how the pruner knows it is on
            found = json.dumps({"sweep_dir": str(self.sweep_dir), "number": number, "pruner": self.pruner})
            pinned.append(f"++hydra.job.env_set.{PRUNER_ENV}={format_value(found)}")
        return pinned

    def _record(self, trial, overrides: list[str], result) -> Record:
        from hydra.core.utils import JobStatus

        if result.status != JobStatus.COMPLETED:
            outcome = Outcome(None, f"{type(result._return_value).__name__}: {result._return_value}", 0.0, "")
        else:
            outcome = result.return_value
            if not isinstance(outcome, Outcome):
                outcome = Outcome(outcome)
        record = Record(trial.number, trial.params, overrides, None, "failed", round(outcome.duration_s, 3), outcome.run_dir, outcome.error)
        if not outcome.error:
            try:
                record.value = self._objective(outcome)
            except LmforgeError as exc:
                record.error = str(exc)
        if record.value is not None and math.isfinite(record.value):
            record.status = "ok"
        elif not record.error:
            record.error = f"non-finite objective {self.objective}={record.value}"
        pruned = _pruned(self.sweep_dir, trial.number)
        if pruned and record.status == "ok":
            record.status, record.steps, record.max_steps = "pruned", pruned.get("step"), pruned.get("max_steps")
        log.info("trial %d %s: %s=%s %s", trial.number, record.status, self.objective, record.value, record.error)
        return record

    def _objective(self, outcome: Outcome) -> float:
        """The objective: a key of the returned dict, else of summary.json, else the return value."""
        if isinstance(outcome.value, dict):
            if self.objective not in outcome.value:
                raise LmforgeError(f"hydra.sweeper.objective={self.objective!r} is not a key of the returned {sorted(outcome.value)}")
            return float(outcome.value[self.objective])
        summary = Path(outcome.run_dir) / "summary.json"
        if outcome.run_dir and summary.is_file():
            data = json.loads(summary.read_text(encoding="utf-8"))
            if self.objective not in data:
                raise LmforgeError(f"hydra.sweeper.objective={self.objective!r} is not in {summary}: choose one of {', '.join(sorted(data))}")
            return float(data[self.objective])
        if isinstance(outcome.value, (int, float)):
            return float(outcome.value)
        raise LmforgeError(f"the trial returned {outcome.value!r} and wrote no summary.json: no {self.objective!r} to read")

    def _check_failures(self, records: dict[int, Record]) -> None:
        failed = sum(r.status == "failed" for r in records.values())
        if failed >= self.min_failures and failed / len(records) > self.max_failure_rate:
            raise SweepError(
                f"{failed} of {len(records)} trials failed, more than hydra.sweeper.max_failure_rate={self.max_failure_rate}: "
                f"the errors are in {self.sweep_dir / 'sweep_results.csv'} and each trial's log; fix the cause, or raise max_failure_rate, "
                f"and rerun the same command to resume"
            )

    def _log_summary(self, records: dict[int, Record]) -> None:
        from lmforge.plugins.sweep.report import best_record, budget_saved

        by_status = {s: sum(r.status == s for r in records.values()) for s in ("ok", "pruned", "failed")}
        best = best_record(list(records.values()), self.direction)
        if best:
            log.info("best trial %d: %s=%s with %s", best.number, self.objective, best.value, " ".join(best.overrides))
        saved = budget_saved(list(records.values()))
        log.info("%d trials: %d ok, %d pruned, %d failed; pruning saved %.0f%% of the training steps; report in %s",
                 len(records), by_status["ok"], by_status["pruned"], by_status["failed"], 100 * saved, self.sweep_dir)



def _pruned(sweep_dir: Path, number: int) -> dict | None:
    path = sweep_dir / PRUNING_DIR / f"{number}.jsonl"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and (row := json.loads(line)).get("pruned"):
            return row
    return None
