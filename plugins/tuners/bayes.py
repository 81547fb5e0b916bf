"""``tuner=bayes``: Bayesian optimisation, a Gaussian process with an acquisition function.

nevergrad's ``ParametrizedBO`` over the ``bayesian-optimization`` package: the first
``init_budget`` trials (default: the square root of the budget) are a quasi-random
design, then each ask maximises the acquisition (upper confidence bound by default)
over the model fitted to every told value. Choices and ints are relaxed to a continuous
space and rounded, which the GP tolerates through its noise term ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lmforge import hookimpl
from lmforge.contracts import Param, TunerConfig
from lmforge.plugins.tuners import NevergradTuner


@dataclass
class BayesConfig(TunerConfig):
    init_budget: Optional[int] = None  # random trials before the model; None = sqrt(budget)
    utility_kind: str = "ucb"  # ucb, ei or poi
    kappa: float = 2.576  # ucb: exploration weight
    xi: float = 0.0  # ei and poi: improvement margin
    alpha: float = 1e-6  # GP noise; raise it for noisy objectives or many choices
    gp_restarts: int = 0  # extra random restarts of the GP kernel fit per ask (bayes_opt uses 5: 7x slower)

    def __post_init__(self) -> None:
        if self.utility_kind not in ("ucb", "ei", "poi"):
            raise ValueError(f"tuner.utility_kind={self.utility_kind!r} is not one of ucb, ei, poi")
        if self.init_budget is not None and self.init_budget < 1:
            raise ValueError(f"tuner.init_budget={self.init_budget}: must be at least 1, or null for sqrt(budget); e.g. tuner.init_budget=4")
        for key, example in (("kappa", 2.576), ("xi", 0.0), ("gp_restarts", 0)):
            if getattr(self, key) < 0:
                raise ValueError(f"tuner.{key}={getattr(self, key)}: must be 0 or more; e.g. tuner.{key}={example}")
        if not self.alpha > 0:
            raise ValueError(f"tuner.alpha={self.alpha}: the GP noise must be above 0; e.g. tuner.alpha=1e-6")


class Bayes(NevergradTuner):
    name = "bayes"
    Config = BayesConfig

    def start(self, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        import warnings

        from lmforge.plugins.tuners._nevergrad import Session, bayes_family

        c = self.config
        family = bayes_family(c.init_budget, c.utility_kind, c.kappa, c.xi, c.alpha, c.gp_restarts)
        with warnings.catch_warnings():  # nevergrad warns about choices even with alpha > 0
            warnings.simplefilter("ignore")
            self.session = Session(family, space, budget, num_workers, seed)


@hookimpl
def register_tuners(register):
    register(Bayes)
