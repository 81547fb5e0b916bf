"""A sweep's durable record: ``<sweep dir>/sweep_state.jsonl``.

The first line is a header describing the sweep (search space, fixed overrides, tuner,
seed, workers, objective); then one line per finished trial, appended and fsynced as
soon as the trial ends. A sweep killed mid-way therefore loses at most the trials that
were running, and a rerun with the same ``hydra.sweep.dir`` replays the recorded trials
into the tuner instead of running them again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.files import append_line, atomic_write

STATE_FILE = "sweep_state.jsonl"
PRUNING_DIR = ".pruning"  # <sweep dir>/.pruning/<trial number>.jsonl: intermediate values
# lmforge's sweeper sets this in each trial's environment (hydra.job.env_set) when it prunes:
# JSON {"sweep_dir", "number", "pruner": {...}}; the pruning callback reads nothing else
PRUNER_ENV = "LMFORGE_SWEEP_PRUNER"


@dataclass
class Record:
    """One finished trial. ``value`` is the objective as measured (not negated), None when failed."""

    number: int
    params: dict[str, Any]
    overrides: list[str]
    value: float | None
    status: str  # ok | failed | pruned
    duration_s: float
    run_dir: str
    error: str = ""
    steps: int | None = None  # training steps run, for pruned trials
    max_steps: int | None = None  # training steps a full trial runs
    extra: dict[str, Any] = field(default_factory=dict)


def loss(record: Record, direction: str) -> float:
    """What the tuner is told: minimised, ``inf`` for a failed trial."""
    if record.status == "failed" or record.value is None or not math.isfinite(record.value):
        return math.inf
    return record.value if direction == "min" else -record.value


class SweepState:
    def __init__(self, sweep_dir: Path) -> None:
        self.path = Path(sweep_dir) / STATE_FILE

    def load(self) -> tuple[dict | None, dict[int, Record]]:
        """The header and the finished trials by number; a line torn by a kill is dropped."""
        if not self.path.is_file():
            return None, {}
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            lines = lines[:-1]  # torn by a kill mid-write: the trial is rerun
            atomic_write(self.path, "".join(f"{line}\n" for line in lines))
        header, records = None, {}
        for line in lines:
            row = json.loads(line)
            if "header" in row:
                header = row["header"]
            else:
                record = Record(**row)
                records[record.number] = record
        return header, records

    def write_header(self, header: dict) -> None:
        atomic_write(self.path, json.dumps({"header": header}) + "\n")

    def append(self, record: Record) -> None:
        append_line(self.path, json.dumps(dataclasses.asdict(record), default=str))
