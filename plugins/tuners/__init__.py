"""Tuners: the ask-and-tell optimisers behind ``lmforge train -m tuner=...``.

One thin module per option (``grid``, ``random``, ``bayes``, ``nevergrad``); the
nevergrad-backed ones import nevergrad only in ``_nevergrad.py``. ``pruning`` and
``report`` are plugins too: the median pruner's Lightning callback and the
``lmforge sweep-report`` command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmforge.contracts import Trial, Tuner


@dataclass
class TunerConfig:
    """Keys every tuner takes. The search space may come from here, the command line, or both."""

    # config key -> Hydra sweep grammar, e.g. {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"};
    # a sweep of the same key on the command line wins
    params: dict[str, Any] = field(default_factory=dict)


class NevergradTuner(Tuner):
    """A tuner whose ``start`` opens a ``_nevergrad.Session``; asks and tells go to it."""

    def ask(self) -> Trial | None:
        return self.session.ask()

    def tell(self, trial: Trial, value: float) -> None:
        self.session.tell(trial, value)
