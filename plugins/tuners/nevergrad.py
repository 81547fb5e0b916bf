"""``tuner=nevergrad``: any nevergrad optimiser by name (``NGOpt`` by default, ``CMA``,
``TwoPointsDE``, ``DE``, ``PSO``, ``OnePlusOne``...). See ``nevergrad.optimizers.registry``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge import hookimpl
from lmforge.contracts import Param, TunerConfig
from lmforge.plugins.tuners import NevergradTuner


@dataclass
class NevergradConfig(TunerConfig):
    optimizer: str = "NGOpt"  # a name of nevergrad.optimizers.registry

    def __post_init__(self) -> None:
        # the name is looked up in nevergrad's registry when the sweep starts: importing it here costs seconds
        if not self.optimizer:
            raise ValueError("tuner.optimizer='': must name a nevergrad optimizer; e.g. tuner.optimizer=NGOpt")


class Nevergrad(NevergradTuner):
    name = "nevergrad"
    Config = NevergradConfig

    def start(self, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        from lmforge.plugins.tuners._nevergrad import Session, optimizer_family

        self.session = Session(optimizer_family(self.config.optimizer), space, budget, num_workers, seed)


@hookimpl
def register_tuners(register):
    register(Nevergrad)
