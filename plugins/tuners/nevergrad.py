"""``tuner=nevergrad``: any nevergrad optimiser by name (``NGOpt`` by default, ``CMA``,
``TwoPointsDE``, ``DE``, ``PSO``, ``OnePlusOne``...). See ``nevergrad.optimizers.registry``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge import hookimpl
from lmforge.contracts import Param, Trial, Tuner
from lmforge.plugins.tuners import TunerConfig


@dataclass
class NevergradConfig(TunerConfig):
    optimizer: str = "NGOpt"  # a name of nevergrad.optimizers.registry


class Nevergrad(Tuner):
    name = "nevergrad"
    Config = NevergradConfig

    def start(self, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        from lmforge.plugins.tuners._nevergrad import Session, optimizer_family

        self.session = Session(optimizer_family(self.config.optimizer), space, budget, num_workers, seed)

    def ask(self) -> Trial | None:
        return self.session.ask()

    def tell(self, trial: Trial, value: float) -> None:
        self.session.tell(trial, value)


@hookimpl
def register_tuners(register):
    register(Nevergrad)
